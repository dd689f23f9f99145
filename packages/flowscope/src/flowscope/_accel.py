"""Which implementation runs: the compiled modules or their Python source.

Two modules are compiled by Cython at install time where a C compiler is
present (see ``setup.py``): ``flowscope/_tracker.py``, whose ``.pxd`` makes
the per-flow state :class:`~flowscope._tracker.Flow` a C struct, and
``flowscope/_fastpath.py``, the fused per-packet loop, whose ``.pxd`` gives
its offsets, header fields and clock C types.  The ``.py`` files stay the
one source: Python imports the extension modules in their place, and runs
the same code interpreted where nothing was compiled.  Same records either
way; the compiled pair takes about 40 % less time per packet.

This module is imported before anything else in the package and decides
once, for both modules together (they share the ``Flow`` layout):

* ``FLOWSCOPE_PURE_PYTHON=1`` in the environment runs the Python source even
  where the extensions exist (to debug, or to compare the two);
* in a source checkout (an editable install), an extension older than its
  ``.py`` is not used: the source runs, with a warning to rebuild, so an
  edit can never be silently shadowed by a stale build.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence, Tuple

COMPILED_MODULES = ("_tracker", "_fastpath")
"""The modules that have a compiled form, by name inside the package."""

_HERE = Path(__file__).resolve().parent


def built_extension(name: str, package_dir: Path = _HERE) -> Optional[Path]:
    """The extension module file built for ``name`` in ``package_dir``, if any."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = package_dir / (name + suffix)
        if path.is_file():
            return path
    return None


def stale(extension: Path, source: Path) -> bool:
    """In a source checkout: is the built ``extension`` older than its ``source``?

    A checkout is recognised by ``setup.py`` two levels above the package
    (``packages/flowscope/setup.py``); an installed wheel has none, and its
    extensions were built from the sources installed beside them.  The
    ``.pxd`` beside the source counts as part of it.
    """
    if not (source.parent.parent.parent / "setup.py").is_file():
        return False
    try:
        built = extension.stat().st_mtime
        newest = max(p.stat().st_mtime for p in (source, source.with_suffix(".pxd")) if p.exists())
    except (OSError, ValueError):
        return False
    return built < newest


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Imports the compiled modules from their ``.py`` files instead of the extensions."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        package, _, name = fullname.rpartition(".")
        if package != __package__ or name not in COMPILED_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, _HERE / (name + ".py"))


def decide(package_dir: Path, pure_requested: bool) -> Tuple[bool, Optional[str]]:
    """Whether to use the extensions built in ``package_dir``, and why not (a warning) if that is news.

    No extension at all: a pure-Python install, nothing to say.  Otherwise
    the extensions are used unless ``pure_requested``, one is missing (the
    compiled loop needs the compiled ``Flow``, so half a build cannot run)
    or one is older than its source in a checkout.
    """
    built = {name: built_extension(name, package_dir) for name in COMPILED_MODULES}
    if all(p is None for p in built.values()):
        return False, None
    if pure_requested:
        return False, None
    missing = [n for n, p in built.items() if p is None]
    if missing:
        return False, f"flowscope: {', '.join(missing)} was not built"
    old = [n for n, p in built.items() if p is not None and stale(p, package_dir / (n + ".py"))]
    if old:
        return False, f"flowscope: the compiled {', '.join(old)} is older than its source"
    return True, None


def _choose() -> bool:
    """Apply :func:`decide` to this package: warn, and install the source finder when not compiled."""
    use, why = decide(_HERE, os.environ.get("FLOWSCOPE_PURE_PYTHON") == "1")
    if why is not None:
        warnings.warn(
            f"{why}; running the Python source (rebuild with: pip install -e packages/flowscope)",
            RuntimeWarning,
            stacklevel=3,
        )
    if not use:
        sys.meta_path.insert(0, _SourceFinder())  # hide whatever extensions exist
    return use


_choose()

from flowscope import _fastpath, _tracker  # noqa: E402  (after the choice above)

COMPILED = not any(str(m.__file__).endswith(".py") for m in (_fastpath, _tracker))
"""True when the compiled per-packet loop and flow state are in use."""
