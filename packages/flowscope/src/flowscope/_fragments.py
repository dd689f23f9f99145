"""IPv4 and IPv6 fragment reassembly, bounded in memory and in time.

Theory of operation
-------------------
Fragments are grouped by (version, addresses, identification, protocol).
Each group keeps the fragments' bytes, the header of the fragment at offset
0 and, once the last fragment (MF clear) arrives, the datagram's total
length.  When the pieces cover ``[0, total)`` without a hole the datagram is
rebuilt and handed back, together with the number of frames and wire bytes
that made it: every fragment counts as a packet of the rebuilt datagram's
flow.  Overlapping fragments are resolved first-by-offset-wins, the policy of
BSD-derived stacks; overlaps are counted.

Nothing here grows without bound: the number of pending datagrams, the
fragments per datagram and the total buffered bytes are capped
(:class:`FragmentConfig`), and a datagram not completed within the timeout
(packet time) is dropped.  Dropped and expired fragments are counted, never
raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Hashable, List, Optional, Tuple

from typing_extensions import TypeAlias

Completed: TypeAlias = Tuple[bytes, bytes, int, int, Optional[Tuple[int, ...]], Optional[Tuple[str, ...]]]
"""(first fragment's header, payload, frames, wire bytes, vlans, tunnels)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FragmentConfig:
    """Bounds of the defragmenter (one per worker)."""

    timeout_ns: int = 30 * 1_000_000_000
    """A datagram must complete within this much packet time (Linux ``ipfrag_time``: 30 s)."""
    max_datagrams: int = 8192
    """Datagrams pending at once; the oldest is dropped beyond this."""
    max_bytes: int = 16 * 1024 * 1024
    """Fragment bytes buffered in total (Linux's ``ipfrag_high_thresh`` is 4 MiB per netns)."""
    max_fragments: int = 256
    """Fragments per datagram: a 64 KiB datagram cut for a 1280-byte MTU needs 52."""
    max_datagram_size: int = 65535 + 40
    """Largest rebuilt datagram (IPv4's 16-bit total length; IPv6 payload plus header)."""


class _Pending:
    __slots__ = ("first_ts", "header", "frags", "total", "npk", "nbytes", "size", "vlans", "tunnels")

    def __init__(self, ts: int, vlans: Optional[Tuple[int, ...]], tunnels: Optional[Tuple[str, ...]]) -> None:
        self.first_ts = ts
        self.header: Optional[bytes] = None
        self.frags: List[Tuple[int, bytes]] = []
        self.total = -1
        self.npk = 0
        self.nbytes = 0
        self.size = 0
        self.vlans = vlans
        self.tunnels = tunnels


class Defragmenter:
    """Rebuilds fragmented IP datagrams for one worker."""

    def __init__(self, config: FragmentConfig) -> None:
        self.config = config
        self._pending: Dict[Hashable, _Pending] = {}
        self._bytes = 0
        self.completed = 0
        """Datagrams rebuilt."""
        self.expired = 0
        """Datagrams dropped unfinished (timeout, or a bound made room)."""
        self.dropped = 0
        """Fragments refused outright (too many, too large, inconsistent)."""
        self.overlaps = 0
        """Fragments that overlapped bytes already held."""

    @property
    def pending(self) -> int:
        """Datagrams waiting for fragments."""
        return len(self._pending)

    @property
    def buffered_bytes(self) -> int:
        """Fragment bytes held."""
        return self._bytes

    def add(
        self,
        key: Hashable,
        ts: int,
        wire_len: int,
        offset: int,
        more: bool,
        data: bytes,
        header: bytes,
        vlans: Optional[Tuple[int, ...]],
        tunnels: Optional[Tuple[str, ...]],
    ) -> Optional[Completed]:
        """Add one fragment; returns the rebuilt datagram when this one completed it."""
        cfg = self.config
        self._expire(ts)
        end = offset + len(data)
        if end > cfg.max_datagram_size or (more and not data):
            self.dropped += 1
            return None
        p = self._pending.get(key)
        if p is None:
            while len(self._pending) >= cfg.max_datagrams or (self._pending and self._bytes + len(data) > cfg.max_bytes):
                self._drop(next(iter(self._pending)))
            if self._bytes + len(data) > cfg.max_bytes:
                self.dropped += 1  # larger than the whole budget on its own
                return None
            p = _Pending(ts, vlans, tunnels)
            self._pending[key] = p
        elif len(p.frags) >= cfg.max_fragments or self._bytes + len(data) > cfg.max_bytes:
            self._drop(key)
            self.dropped += 1
            return None
        if offset == 0:
            p.header = header
            p.vlans, p.tunnels = vlans, tunnels
        if not more:
            if p.total >= 0 and p.total != end:
                self._drop(key)  # two different "last" fragments: inconsistent, give up
                self.dropped += 1
                return None
            p.total = end
        p.frags.append((offset, data))
        p.npk += 1
        p.nbytes += wire_len
        p.size += len(data)
        self._bytes += len(data)
        if p.total < 0 or p.header is None or p.size < p.total:
            return None
        payload = self._assemble(p)
        if payload is None:
            return None
        del self._pending[key]
        self._bytes -= p.size
        self.completed += 1
        return (p.header, payload, p.npk, p.nbytes, p.vlans, p.tunnels)

    def _assemble(self, p: _Pending) -> Optional[bytes]:
        frags = sorted(p.frags, key=lambda f: f[0])
        out = bytearray()
        covered = 0
        overlaps = 0
        for off, data in frags:
            if off > covered:
                return None  # a hole remains
            stop = off + len(data)
            if stop <= covered:
                overlaps += 1
                continue
            if off < covered:
                overlaps += 1
            out += data[covered - off :]
            covered = stop
            if covered >= p.total:
                break
        if covered < p.total:
            return None
        self.overlaps += overlaps
        return bytes(out[: p.total])

    def _drop(self, key: Hashable) -> None:
        p = self._pending.pop(key)
        self._bytes -= p.size
        self.expired += 1

    def _expire(self, ts: int) -> None:
        limit = ts - self.config.timeout_ns
        pend = self._pending
        while pend:
            key = next(iter(pend))
            if pend[key].first_ts > limit:
                return
            self._drop(key)

    def clear(self) -> None:
        """Forget every pending datagram (end of input); they count as expired."""
        self.expired += len(self._pending)
        self._pending.clear()
        self._bytes = 0
