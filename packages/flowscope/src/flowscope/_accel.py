"""Which implementation of the fused pcap loop runs: compiled or interpreted.

``flowscope/_fastpath.py`` is the one source of the loop.  An installation
with a C compiler also has it compiled by Cython (see ``setup.py`` and
``_fastpath.pxd``), and Python then imports the extension module in place of
the ``.py`` file: same code, same records, about a quarter less time per
packet.  This module picks the implementation once, at import:

* ``FLOWSCOPE_PURE_PYTHON=1`` in the environment runs the interpreted source
  even where the extension exists (to debug, or to compare the two);
* in a source checkout (an editable install), an extension older than its
  source is not used: the source runs, with a warning to rebuild, so an edit
  to ``_fastpath.py`` can never be silently shadowed by a stale build.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType

from flowscope import _fastpath


def _is_extension(mod: ModuleType) -> bool:
    return not str(getattr(mod, "__file__", "")).endswith(".py")


def load_source() -> ModuleType:
    """The interpreted loop, loaded from ``_fastpath.py`` itself (cached)."""
    name = "flowscope._fastpath_source"
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_fastpath.py"))
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


def stale(extension: Path, source: Path) -> bool:
    """In a source checkout: is the built ``extension`` older than its ``source``?

    A checkout is recognised by ``setup.py`` two levels above the package
    (``packages/flowscope/setup.py``); an installed wheel has none, and its
    extension was built from the source installed beside it.
    """
    if not (source.parent.parent.parent / "setup.py").is_file():
        return False
    try:
        return extension.stat().st_mtime < source.stat().st_mtime
    except OSError:
        return False


run_pcap = _fastpath.run_pcap
COMPILED = _is_extension(_fastpath)
if COMPILED and os.environ.get("FLOWSCOPE_PURE_PYTHON") == "1":
    COMPILED = False
elif COMPILED and stale(Path(str(_fastpath.__file__)), Path(__file__).with_name("_fastpath.py")):
    warnings.warn(
        "flowscope: the compiled packet loop is older than _fastpath.py; running the source "
        "interpreted (rebuild with: pip install -e packages/flowscope)",
        RuntimeWarning,
        stacklevel=2,
    )
    COMPILED = False
if not COMPILED and _is_extension(_fastpath):
    run_pcap = load_source().run_pcap
