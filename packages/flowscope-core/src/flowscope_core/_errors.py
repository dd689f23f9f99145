"""Exceptions: for callers' mistakes and the environment, never for traffic.

Malformed packets are normal input and become counters or notices; these
exceptions say that a file is not a capture, that an extra is missing or
that a plugin could not be loaded.  Each subclasses the nearest builtin.
"""

from __future__ import annotations

from typing import Optional


class FlowscopeError(Exception):
    """Base class of every exception flowscope raises on purpose."""


class CaptureFormatError(FlowscopeError, ValueError):
    """A capture file is not a capture, or is truncated or corrupt at ``offset``.

    Every packet before ``offset`` has already been delivered when this is
    raised, so nothing before the damage is lost.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path = path
        """The file (or a description of the stream) that failed."""
        self.offset = offset
        """Byte offset of the first damaged byte."""
        self.reason = reason
        """What was wrong there."""
        super().__init__(f"{path}: {reason} at byte offset {offset}")


class MissingExtraError(FlowscopeError, ImportError):
    """A protocol needs an optional dependency that is not installed."""

    def __init__(self, protocol: str, extra: str, package: str = "flowscope") -> None:
        self.protocol = protocol
        """The protocol that needs it (``http``…)."""
        self.extra = extra
        """The extra that installs it."""
        self.install = f"pip install '{package}[{extra}]'"
        """The command that fixes it."""
        super().__init__(f"parsing {protocol} needs the '{extra}' extra: run {self.install}")


class PluginLoadError(FlowscopeError, ImportError):
    """A parser plugin's entry point could not be loaded or did not give a factory."""

    def __init__(self, plugin: str, distribution: Optional[str], reason: str) -> None:
        self.plugin = plugin
        """The entry point's name."""
        self.distribution = distribution
        """The distribution that registered it, if known."""
        self.reason = reason
        """What went wrong."""
        dist = f" (from distribution {distribution!r})" if distribution else ""
        super().__init__(f"parser plugin {plugin!r}{dist} failed to load: {reason}")
