"""A parser plugin written against ``flowscope_core`` alone: SSH identification lines.

RFC 4253 section 4.2: each side of an SSH connection first sends one line
``SSH-protoversion-softwareversion[ SP comments]`` CR LF (a server may send
other lines before it).  This plugin reports both sides' lines as one
``ssh`` record, which is all a passive observer can read before the key
exchange encrypts the rest.  It is deliberately small: it exists to prove
that a third-party package is discovered, fed and written like a built-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, FrozenSet, List, Optional, Sequence

from flowscope_core import Detection, Direction, FlowInfo, SessionEvent, Timestamp

MAX_LINE = 255  # RFC 4253: the identification string is at most 255 characters
MAX_PRELUDE = 4096  # bytes of server pre-banner lines tolerated before giving up


@dataclass(frozen=True, slots=True, kw_only=True)
class SshBanner:
    """Both identification strings of one SSH connection."""

    event_type: ClassVar[str] = "ssh"
    ts: Timestamp
    """Time of the segment that completed the record."""
    client: Optional[str]
    """The originator's identification string (without CR LF)."""
    server: Optional[str]
    """The responder's identification string."""


class SshBannerParser:
    """Collects the first ``SSH-`` line of each direction."""

    def __init__(self) -> None:
        self._buf = [b"", b""]
        self._line: List[Optional[str]] = [None, None]
        self._done = [False, False]
        self._emitted = False

    def data(self, direction: Direction, data: bytes, ts: Timestamp) -> Sequence[SessionEvent]:
        d = int(direction)
        if self._done[d] or self._emitted:
            return []
        buf = self._buf[d] + data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.startswith(b"SSH-"):
                self._line[d] = line.rstrip(b"\r")[:MAX_LINE].decode("ascii", "replace")
                self._done[d] = True
                break
        if len(buf) > MAX_PRELUDE:
            self._done[d] = True
            buf = b""
        self._buf[d] = buf
        if all(self._done) and not self._emitted:
            return self._emit(ts)
        return []

    def gap(self, direction: Direction, length: int, ts: Timestamp) -> Sequence[SessionEvent]:
        self._done[int(direction)] = True
        return []

    def end(self, direction: Direction, ts: Timestamp) -> Sequence[SessionEvent]:
        return []

    def close(self, ts: Timestamp) -> Sequence[SessionEvent]:
        if self._emitted or (self._line[0] is None and self._line[1] is None):
            return []
        return self._emit(ts)

    def _emit(self, ts: Timestamp) -> List[SessionEvent]:
        self._emitted = True
        return [SshBanner(ts=ts, client=self._line[0], server=self._line[1])]


class SshBannerFactory:
    """Recognises SSH by its identification line, on any port."""

    name = "ssh"
    ports: FrozenSet[int] = frozenset({22, 2222})

    def detect(self, direction: Direction, data: bytes, flow: FlowInfo) -> Detection:
        if data.startswith(b"SSH-"):
            return Detection.MATCH
        if len(data) < 4 and b"SSH-".startswith(data):
            return Detection.NEED_MORE
        return Detection.NO_MATCH

    def create(self, flow: FlowInfo) -> SshBannerParser:
        return SshBannerParser()


def factory() -> SshBannerFactory:
    """The entry point: ``flowscope.parsers`` → ``ssh``."""
    return SshBannerFactory()
