"""Finding parser factories through the ``flowscope.parsers`` entry-point group.

The built-in HTTP, TLS, DNS and QUIC parsers register exactly as a plugin
does (see the ``[project.entry-points]`` table of flowscope's
``pyproject.toml``), so nothing is special-cased.  Each entry point names a
zero-argument callable that returns a factory.  A plugin that fails to load
becomes a :class:`~flowscope_core.PluginLoadError` in the result, naming the
plugin and its distribution, and every other plugin keeps working.

When two entry points share a name, a third-party one replaces the built-in
(flowscope's own are loaded first), so a user can swap a parser without
forking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Dict, List, Optional, Sequence, Tuple

from flowscope_core import ENTRY_POINT_GROUP, PluginLoadError

BUILTIN_DISTRIBUTION = "flowscope"


@dataclass(frozen=True, slots=True, kw_only=True)
class Discovered:
    """What :func:`discover` found."""

    factories: Tuple[Any, ...] = ()
    """Loaded factories, by name, built-ins first."""
    errors: Tuple[PluginLoadError, ...] = field(default=())
    """Plugins that failed to load."""


def _is_factory(obj: Any) -> bool:
    return (
        isinstance(getattr(obj, "name", None), str)
        and hasattr(obj, "detect")
        and (hasattr(obj, "create") or hasattr(obj, "create_datagram"))
    )


def _dist_name(ep: metadata.EntryPoint) -> Optional[str]:
    dist = getattr(ep, "dist", None)
    return None if dist is None else str(dist.metadata["Name"])


def discover(
    names: Optional[Sequence[str]] = None, *, entry_points: Optional[Sequence[metadata.EntryPoint]] = None
) -> Discovered:
    """Load every parser factory registered in the entry-point group.

    ``names`` keeps only those protocols; ``entry_points`` replaces the
    installed ones (for tests).
    """
    eps = list(entry_points) if entry_points is not None else list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    eps.sort(key=lambda ep: 0 if _dist_name(ep) == BUILTIN_DISTRIBUTION else 1)
    by_name: Dict[str, Any] = {}
    errors: List[PluginLoadError] = []
    for ep in eps:
        if names is not None and ep.name not in names:
            continue
        dist = _dist_name(ep)
        try:
            target = ep.load()
            # A function or a class is called; an object that already is a factory is used.
            obj = target() if isinstance(target, type) or (callable(target) and not _is_factory(target)) else target
        except Exception as e:  # a plugin's import error must not stop the others
            errors.append(PluginLoadError(ep.name, dist, f"{type(e).__name__}: {e}"))
            continue
        if not _is_factory(obj):
            errors.append(
                PluginLoadError(ep.name, dist, "the entry point did not give a parser factory (name, detect, create)")
            )
            continue
        by_name[obj.name] = obj
    return Discovered(factories=tuple(by_name.values()), errors=tuple(errors))
