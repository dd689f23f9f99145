"""The flow tracker: packets in, flow events out.

Theory of operation
-------------------
One :class:`FlowTracker` is one worker's whole state: its decoder (and IP
defragmenter), its flow table and its timers.  Nothing is global, so N
workers each own one.  The caller owns the loop: :meth:`FlowTracker.feed`
takes one frame and returns the events it caused; :meth:`expire` and
:meth:`flush` are the only other ways time moves.  Time is packet time
(the largest timestamp seen so far), never a wall clock.

Per packet (the hot path, kept flat on purpose):

1. decode to the innermost IP packet (:mod:`flowscope._decode`);
2. build the direction-agnostic key ``(proto, low addr, low port, high addr,
   high port)`` (plus the VLAN ids when configured), remembering whether
   the packet went low→high;
3. look the flow up in the table (an ``lru-dict``, whose eviction callback
   writes the least recently used flow when the table is full);
4. count packets, wire bytes and payload bytes for the packet's direction;
5. for TCP, advance each endpoint's Zeek-style state, the history letters
   and the retransmission count;
6. hand payload to the L7 engine when one is attached.

Directions are kept relative to the flow's first sender ("a").  Which side
is the originator is decided once, from the first packet: a pure SYN's
sender, a SYN-ACK's receiver, else the first sender.  The record swaps the
two sides when the originator is "b", and Zeek's ``^`` marks the history.

Timers are a lazy wheel: each flow sits in one one-second bucket at its
deadline (idle, close linger or active timeout, whichever is first).  A
packet only updates ``last_ts``; when a bucket comes due its flows are
re-checked and either written or moved to their new deadline, so a flow
costs timer work about once per timeout period, not once per packet.

Closing: after both FINs, or a RST, the flow lingers for
``tcp_close_linger_ns`` so late ACKs join it; a new SYN in that window
writes the old flow and starts a new one.
"""

from __future__ import annotations

from typing import Callable, Deque, Dict, Hashable, Iterable, Iterator, List, Optional, Protocol, Tuple

import heapq
from collections import deque

from lru import LRU

from flowscope_core import (
    ConnState,
    EndReason,
    Endpoint,
    FlowEnded,
    FlowEvent,
    FlowExtractor,
    FlowInfo,
    FlowSide,
    FlowStarted,
    FlowStats,
    Orientation,
    PacketView,
    TcpInfo,
    TcpFlags,
)
from flowscope._addr import addr_raw, addr_text
from flowscope._community_id import community_id
from flowscope._config import SECOND, TrackerConfig
from flowscope._decode import Decoded, Decoder
from flowscope._extractors import FiveTuple
from flowscope._make import maker
from flowscope._shard import shard_of

MASK32 = 0xFFFFFFFF
HALF32 = 0x80000000

# Endpoint states (see flowscope_core.FlowState); small ints on the hot path.
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET, ACTIVE = range(8)

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10

# History letter bits: six per direction, in the order letters are written per packet.
_LETTERS = "SHADFR"
_H_S, _H_H, _H_A, _H_D, _H_F, _H_R = 1, 2, 4, 8, 16, 32

_NO_EVENTS: List[FlowEvent] = []

PacketPredicate = Callable[[int, bytes, bytes, int, int, Tuple[int, ...]], bool]
"""A packet filter: ``(proto, src, dst, sport, dport, vlans) -> keep?``."""


def _letters(new: int, flip: bool) -> str:
    # Upper case for the originator; directions count from the first sender, so a
    # flipped flow writes them the other way round.
    out = ""
    for i in range(12):
        if new & (1 << i):
            ch = _LETTERS[i % 6]
            out += ch if (i < 6) != flip else ch.lower()
    return out


_HISTORY = ([_letters(n, False) for n in range(4096)], [_letters(n, True) for n in range(4096)])
"""History letters for each set of new letter bits, unflipped and flipped."""

# Positional constructors (see flowscope._make): records are built once per flow.
_endpoint = maker(Endpoint)
_flow_info = maker(FlowInfo)
_flow_side = maker(FlowSide)
_flow_stats = maker(FlowStats)
_flow_ended = maker(FlowEnded)


class L7Engine(Protocol):
    """What the tracker needs from the application-layer engine (see ``flowscope._l7``)."""

    pending: List[FlowEvent]
    """Events the engine produced; the tracker moves them to its output."""

    def packet(
        self, flow: "Flow", d: int, ts: int, flags: int, seq: int, ack: int, buf: bytes, poff: int, pend: int
    ) -> None:
        """One TCP segment or UDP datagram of ``flow`` in direction ``d`` (0 = first sender)."""

    def end(self, flow: "Flow", ts: int) -> None:
        """The flow is being written: flush its parsers."""


class Flow:
    """One flow's mutable state.  Internal: callers see :class:`FlowEnded` records."""

    __slots__ = (
        "key", "fid", "proto", "a_addr", "b_addr", "a_port", "b_port", "fwd",
        "pk0", "pk1", "by0", "by1", "pl0", "pl1", "first_ts", "last_ts",
        "hist", "hbits", "st", "anom", "flip", "basis",
        "vlans", "tunnels", "closed_ts", "timer", "dead", "info", "l7", "missed", "service", "touched",
    )  # fmt: skip

    def __init__(
        self, key: Hashable, fid: str, proto: int, a_addr: bytes, a_port: int, b_addr: bytes, b_port: int, fwd: bool, ts: int
    ) -> None:
        self.key = key
        self.fid = fid
        self.proto = proto
        self.a_addr = a_addr
        self.a_port = a_port
        self.b_addr = b_addr
        self.b_port = b_port
        self.fwd = fwd
        self.pk0 = self.pk1 = self.by0 = self.by1 = self.pl0 = self.pl1 = 0
        self.first_ts = self.last_ts = ts
        self.hist = ""
        self.hbits = 0
        # TCP: [state a, state b, next seq a, next seq b] in one list (one GC object).
        self.st = [INACTIVE, INACTIVE, -1, -1]
        # [retransmissions a, b, zero windows a, b], made on first need.
        self.anom: Optional[List[int]] = None
        self.flip = False
        self.basis = Orientation.FIRST_PACKET
        self.vlans: Tuple[int, ...] = ()
        self.tunnels: Tuple[str, ...] = ()
        self.closed_ts = -1
        self.timer = -1
        self.dead = False
        self.info: Optional[FlowInfo] = None
        self.l7: object = None
        self.missed = 0
        self.service: Optional[str] = None
        self.touched = -1

    def flow_info(self) -> FlowInfo:
        """The flow's identity (built once, on first need)."""
        info = self.info
        if info is None:
            if self.flip:
                oa, op, ra, rp = self.b_addr, self.b_port, self.a_addr, self.a_port
            else:
                oa, op, ra, rp = self.a_addr, self.a_port, self.b_addr, self.b_port
            info = _flow_info(
                self.fid,
                self.proto,
                _endpoint(addr_text(oa), op),
                _endpoint(addr_text(ra), rp),
                self.basis,
                community_id(self.proto, oa, ra, op, rp) if len(oa) in (4, 16) else "",
                self.vlans,
                self.tunnels,
            )
            self.info = info
        return info


class TrackerStats:
    """Counters of one tracker (read them any time)."""

    __slots__ = ("packets", "bytes", "flows", "evicted", "decoder")

    def __init__(self, decoder: Decoder) -> None:
        self.packets = 0
        """Frames fed."""
        self.bytes = 0
        """Wire bytes fed."""
        self.flows = 0
        """Flows created."""
        self.evicted = 0
        """Flows written because the table was full."""
        self.decoder = decoder

    def as_dict(self) -> Dict[str, int]:
        """Every counter by name, the decoder's and defragmenter's included."""
        d = self.decoder
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "flows": self.flows,
            "evicted": self.evicted,
            "non_ip": d.non_ip,
            "malformed": d.malformed,
            "unknown_link_type": d.unknown_link,
            "fragments_completed": d.defrag.completed,
            "fragments_expired": d.defrag.expired,
            "fragments_dropped": d.defrag.dropped,
        }


class FlowTracker:
    """Tracks flows for one worker.  Feed it frames; it returns events.

    ``extractor`` replaces the default innermost-5-tuple key (see
    :mod:`flowscope._extractors`); ``l7`` attaches application-layer parsing.
    ``emit_starts`` adds a :class:`FlowStarted` event for each new flow.
    ``shard=(i, n)`` makes this tracker worker ``i`` of ``n``: it keeps only
    the flows whose symmetric hash (:func:`flowscope.shard_of`) is ``i``, so
    ``n`` trackers fed the same packets split the flows between them.
    ``packet_filter`` (e.g. ``flowscope.compile_filter("tcp port 443")``) is
    asked about every decoded packet's innermost ``(proto, src, dst, sport,
    dport, vlans)``; packets it rejects are not tracked, as if a capture
    filter had dropped them.
    """

    def __init__(
        self,
        config: Optional[TrackerConfig] = None,
        *,
        extractor: Optional[FlowExtractor] = None,
        l7: Optional[L7Engine] = None,
        emit_starts: bool = False,
        shard: Optional[Tuple[int, int]] = None,
        packet_filter: Optional[PacketPredicate] = None,
    ) -> None:
        self.config = cfg = config or TrackerConfig()
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard must be (index, count) with 0 <= index < count, not {shard}")
        self._shard = shard
        self._filter = getattr(packet_filter, "match", packet_filter)  # the raw predicate: ~200 ns less per call
        self._decoder = Decoder(cfg.fragments)
        self._decode = self._decoder.decode
        self.stats = TrackerStats(self._decoder)
        # Look-ups go to a plain dict; recency lives in an lru-dict touched at most once
        # per flow per second of packet time, whose eviction callback writes the least
        # recently used flow when the table is full.  A per-packet lru-dict look-up
        # measured ~0.4 µs more than a dict's, a third of the per-packet budget.
        self._table: Dict[Hashable, Flow] = {}
        self._recency: "LRU[Hashable, Flow]" = LRU(cfg.max_flows, callback=self._on_evict)
        # A deque, so that the generators can hand events out one by one and leave
        # the undelivered ones in place (see _drain).
        self._out: Deque[FlowEvent] = deque()
        if isinstance(extractor, FiveTuple):
            # The default key runs inline on the fast path; only its option matters.
            self._vlan_key = extractor.vlan_in_key or cfg.vlan_in_key
            extractor = None
        else:
            self._vlan_key = cfg.vlan_in_key
        self._extractor = extractor
        self._l7 = l7
        self._emit_starts = emit_starts
        self._now = -1
        self._next_tick = -1
        self._buckets: Dict[int, List[Flow]] = {}
        self._heap: List[int] = []
        self._stale = 0
        self._nflows = 0
        self._idle = {6: cfg.tcp_idle_timeout_ns, 17: cfg.udp_idle_timeout_ns}
        self._idle_other = cfg.other_idle_timeout_ns
        self._linger = cfg.tcp_close_linger_ns
        self._active = cfg.active_timeout_ns if cfg.active_timeout_ns > 0 else 1 << 62

    # ------------------------------------------------------------------ public API

    @property
    def active_flows(self) -> int:
        """Flows currently held."""
        return len(self._table)

    @property
    def now(self) -> int:
        """The tracker's clock: the largest packet time seen (ns), -1 before any."""
        return self._now

    def feed(self, ts: int, frame: bytes, link_type: int = 1, wire_len: int = -1) -> List[FlowEvent]:
        """Process one frame; returns the events it caused (often none)."""
        self._packet(ts, frame, link_type, len(frame) if wire_len < 0 else wire_len)
        return self._take()

    def process(self, frames: Iterable[Tuple[int, bytes, int, int]], *, flush: bool = True) -> Iterator[FlowEvent]:
        """Feed every ``(ts_ns, frame, wire_len, link_type)`` and yield events as they happen.

        With ``flush`` (the default) every open flow is written at the end.
        """
        from flowscope._capture import CaptureReader

        if isinstance(frames, CaptureReader):
            add_secrets = getattr(self._l7, "add_secrets", None)
            if add_secrets is not None and frames.on_secrets is None:
                frames.on_secrets = add_secrets  # decryption secrets embedded in pcapng
            # The fused loop inlines the default 5-tuple key; a custom extractor takes the general path.
            layout = frames._take_pcap() if self._extractor is None else None
            if layout is not None:
                from flowscope._fastpath import run_pcap

                buf, order, nanos, link = layout
                yield from run_pcap(
                    self, buf, 24, order, nanos, link, frames.max_caplen, frames._fill, frames._fail, frames._at
                )
                if flush:
                    self._end_all()
                    yield from self._drain()
                return
        packet = self._packet
        out = self._out
        drain = self._drain
        for ts, frame, wire_len, lt in frames:
            packet(ts, frame, lt, wire_len)
            if out:
                yield from drain()
        if flush:
            self._end_all()
            yield from drain()

    def expire(self, now: int) -> List[FlowEvent]:
        """Advance the clock to ``now`` (ns) and write every flow that timed out by then."""
        if now > self._now:
            self._now = now
        self._tick(self._now)
        return self._take()

    def flush(self) -> List[FlowEvent]:
        """Write every open flow (``end_of_input``) and clear the table and fragments."""
        self._end_all()
        return self._take()

    def _end_all(self) -> None:
        ts = self._now
        for f in sorted(self._table.values(), key=_first_ts):
            self._end(f, EndReason.END_OF_INPUT, ts)
        self._table.clear()
        self._recency.clear()
        self._buckets.clear()
        self._heap.clear()
        self._stale = 0
        self._decoder.defrag.clear()

    # ------------------------------------------------------------------ hot path

    def _take(self) -> List[FlowEvent]:
        # The deque object stays the same (the fused loop holds a reference to it).
        out = self._out
        if not out:
            return _NO_EVENTS
        taken = list(out)
        out.clear()
        return taken

    def _drain(self) -> Iterator[FlowEvent]:
        """Yield the pending events, each leaving the queue only as it is handed out.

        A consumer interrupted while writing one (Ctrl-C) leaves the rest
        queued, so a later ``flush()`` still delivers them in order.
        """
        out = self._out
        while out:
            yield out.popleft()

    def _packet(self, ts: int, frame: bytes, lt: int, wire_len: int) -> None:
        st = self.stats
        st.packets += 1
        st.bytes += wire_len
        if ts > self._now:
            self._now = ts
            if ts >= self._next_tick:
                self._tick(ts)
        d = self._decode(frame, lt, ts, wire_len)
        if d is None:
            return
        if self._extractor is not None:
            self._packet_custom(ts, frame, lt, wire_len, d)
            return
        proto, src, dst, sport, dport, flags, seq, ack, win, buf, poff, pend, plen, meta = d
        if self._filter is not None and not self._filter(proto, src, dst, sport, dport, meta[0] if meta else ()):
            return
        if proto == 1 or proto == 58:
            ks = kd = 0
        else:
            ks, kd = sport, dport
        if src < dst or (src == dst and ks <= kd):
            fwd = True
            key: Hashable = (proto, src, ks, dst, kd)
        else:
            fwd = False
            key = (proto, dst, kd, src, ks)
        if meta is not None:
            npk, nby = meta[2], meta[3]
            if self._vlan_key and meta[0]:
                key = (key, meta[0])
        else:
            npk, nby = 1, wire_len
        f: Optional[Flow] = self._table.get(key)
        if f is None:
            if self._shard is not None and shard_of(key, self._shard[1]) != self._shard[0]:
                return
            f = self._new_flow(key, proto, src, sport, dst, dport, fwd, ts, flags, meta)
        elif flags >= 0 and f.closed_ts >= 0 and flags & 0x12 == _SYN:
            # A new SYN on a closed connection: port reuse starts a new flow.
            self._restart(f, ts)
            f = self._new_flow(key, proto, src, sport, dst, dport, fwd, ts, flags, meta)
        else:
            sec = ts // SECOND
            if f.touched != sec:
                f.touched = sec
                self._recency.get(key)
        dirn = 0 if fwd == f.fwd else 1
        if dirn:
            f.pk1 += npk
            f.by1 += nby
            f.pl1 += plen
        else:
            f.pk0 += npk
            f.by0 += nby
            f.pl0 += plen
        if ts > f.last_ts:
            f.last_ts = ts
        if flags >= 0:
            self._tcp(f, dirn, flags, seq, win, plen, ts)
        l7 = self._l7
        if l7 is not None and f.l7 is not False:
            l7.packet(f, dirn, ts, flags, seq, ack, buf, poff, pend)
            evs = l7.pending
            if evs:
                self._out.extend(evs)
                evs.clear()

    def _new_flow(
        self,
        key: Hashable,
        proto: int,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        fwd: bool,
        ts: int,
        flags: int,
        meta: Optional[Tuple[Tuple[int, ...], Tuple[str, ...], int, int]],
    ) -> Flow:
        self._nflows += 1
        self.stats.flows += 1
        f = Flow(key, f"{self.config.id_prefix}C{self._nflows:x}", proto, src, sport, dst, dport, fwd, ts)
        if flags >= 0 and flags & _SYN:
            if flags & _ACK:
                f.flip = True
                f.basis = Orientation.SYN_ACK
            else:
                f.basis = Orientation.SYN
        if meta is not None:
            f.vlans, f.tunnels = meta[0], meta[1]
        f.touched = ts // SECOND
        self._table[key] = f
        self._recency[key] = f
        idle = ts + self._idle.get(proto, self._idle_other)
        active = ts + self._active
        self._schedule(f, idle if idle < active else active)
        if self._emit_starts:
            self._out.append(FlowStarted(flow=f.flow_info(), ts=ts))
        return f

    def _tcp(self, f: Flow, d: int, fl: int, seq: int, win: int, plen: int, ts: int) -> None:
        st = f.st
        s = st[d]
        bits = 0
        if fl & _RST:
            st[d] = RESET
            bits = _H_R
        elif fl & _SYN:
            if fl & _ACK:
                bits = _H_H
                if st[1 - d] == SYN_SENT:
                    # Zeek: a SYN-ACK answering a SYN establishes both endpoints.
                    st[d] = st[1 - d] = ESTABLISHED
                elif s == INACTIVE or s == PARTIAL or s == SYN_SENT:
                    st[d] = SYN_ACK_SENT
            else:
                bits = _H_S
                if s == INACTIVE or s == PARTIAL:
                    st[d] = SYN_SENT
            st[2 + d] = (seq + 1 + plen) & MASK32
        else:
            if fl & _FIN:
                bits = _H_F
                if s != RESET:
                    st[d] = CLOSED
            elif s == INACTIVE:
                st[d] = PARTIAL
            elif (s == SYN_SENT or s == SYN_ACK_SENT) and fl & _ACK:
                st[d] = ESTABLISHED
                if st[1 - d] == SYN_ACK_SENT:
                    st[1 - d] = ESTABLISHED
            if plen:
                bits |= _H_D
                e = (seq + plen) & MASK32
                n = st[2 + d]
                if n < 0 or 0 < ((e - n) & MASK32) < HALF32:
                    st[2 + d] = e
                else:
                    self._retransmission(f, d)
            elif fl & _ACK and not fl & _FIN:
                bits |= _H_A
            if win == 0 and fl & _ACK:
                self._zero_window(f, d)
        if d:
            bits <<= 6
        new = bits & ~f.hbits
        if new:
            f.hbits |= new
            self._history(f, new)
        if f.closed_ts < 0 and (st[d] == RESET or (st[0] == CLOSED and st[1] == CLOSED)):
            f.closed_ts = ts
            self._schedule(f, ts + self._linger)

    @staticmethod
    def _retransmission(f: Flow, d: int) -> None:
        # Zeek writes 'T' at the 1st, 10th, 100th… retransmission of a direction.
        a = f.anom
        if a is None:
            a = f.anom = [0, 0, 0, 0]
        a[d] += 1
        r = a[d]
        if r == 1 or r == 10 or r == 100 or r == 1000 or r == 10000:
            f.hist += "t" if d != f.flip else "T"

    @staticmethod
    def _zero_window(f: Flow, d: int) -> None:
        a = f.anom
        if a is None:
            a = f.anom = [0, 0, 0, 0]
        a[2 + d] += 1
        z = a[2 + d]
        if z == 1 or z == 10 or z == 100 or z == 1000:
            f.hist += "w" if d != f.flip else "W"

    def _restart(self, f: Flow, ts: int) -> None:
        """Write a closed flow whose 5-tuple a new SYN reuses, and forget it."""
        self._end(f, EndReason.RST if (f.st[0] == RESET or f.st[1] == RESET) else EndReason.FIN, ts)
        del self._table[f.key]
        del self._recency[f.key]

    @staticmethod
    def _history(f: Flow, new: int) -> None:
        f.hist += _HISTORY[f.flip][new]

    # ------------------------------------------------------------------ custom extractors

    def _packet_custom(self, ts: int, frame: bytes, lt: int, wire_len: int, d: Decoded) -> None:
        assert self._extractor is not None
        meta0 = d[13]
        if self._filter is not None and not self._filter(d[0], d[1], d[2], d[3], d[4], meta0[0] if meta0 else ()):
            return
        view = packet_view(ts, frame, lt, wire_len, d)
        ex = self._extractor.extract(view)
        if ex is None:
            return
        proto, flags, seq, win, plen, meta = d[0], d[5], d[6], d[8], d[12], d[13]
        npk, nby = (meta[2], meta[3]) if meta is not None else (1, wire_len)
        key = ex.key
        f: Optional[Flow] = self._table.get(key)
        src_raw, dst_raw = addr_raw(ex.src.addr), addr_raw(ex.dst.addr)
        if f is None:
            if self._shard is not None and shard_of(key, self._shard[1]) != self._shard[0]:
                return
            f = self._new_flow(key, ex.proto, src_raw, ex.src.port, dst_raw, ex.dst.port, ex.forward, ts, flags, meta)
        else:
            sec = ts // SECOND
            if f.touched != sec:
                f.touched = sec
                self._recency.get(key)
        dirn = 0 if ex.forward == f.fwd else 1
        if dirn:
            f.pk1 += npk
            f.by1 += nby
            f.pl1 += plen
        else:
            f.pk0 += npk
            f.by0 += nby
            f.pl0 += plen
        if ts > f.last_ts:
            f.last_ts = ts
        if flags >= 0 and proto == 6 and ex.proto == 6:
            self._tcp(f, dirn, flags, seq, win, plen, ts)

    # ------------------------------------------------------------------ timers and ends

    def _schedule(self, f: Flow, deadline: int) -> None:
        sec = deadline // SECOND + 1
        if f.timer == sec:
            return
        if f.timer >= 0:
            self._stale += 1  # the old bucket entry stays behind until its second comes
        f.timer = sec
        b = self._buckets.get(sec)
        if b is None:
            self._buckets[sec] = [f]
            heapq.heappush(self._heap, sec)
        else:
            b.append(f)

    def _compact_timers(self) -> None:
        """Drop bucket entries of flows that ended or moved on.

        Ended (evicted, restarted) flows stay referenced from their old bucket
        until its second comes, which under a flood of new flows could hold far
        more dead flows than ``max_flows``.  Rebuilding the wheel from the live
        flows when stale entries outnumber them twice keeps it bounded at O(1)
        amortised cost.
        """
        buckets: Dict[int, List[Flow]] = {}
        for f in self._table.values():
            if f.timer >= 0:
                buckets.setdefault(f.timer, []).append(f)
        self._buckets = buckets
        self._heap = list(buckets)
        heapq.heapify(self._heap)
        self._stale = 0

    @property
    def timer_entries(self) -> int:
        """Entries in the timer wheel, stale ones included (bounded: see ``_compact_timers``)."""
        return sum(len(b) for b in self._buckets.values())

    def _deadline(self, f: Flow) -> int:
        if f.closed_ts >= 0:
            dl = f.closed_ts + self._linger
        else:
            dl = f.last_ts + self._idle.get(f.proto, self._idle_other)
        act = f.first_ts + self._active
        return act if act < dl else dl

    def _tick(self, now: int) -> None:
        sec_now = now // SECOND
        self._next_tick = (sec_now + 1) * SECOND
        heap = self._heap
        buckets = self._buckets
        while heap and heap[0] <= sec_now:
            sec = heapq.heappop(heap)
            for f in buckets.pop(sec, ()):
                if f.dead or f.timer != sec:
                    continue
                f.timer = -1
                dl = self._deadline(f)
                if dl <= now:
                    if f.closed_ts >= 0 and dl == f.closed_ts + self._linger:
                        reason = EndReason.RST if (f.st[0] == RESET or f.st[1] == RESET) else EndReason.FIN
                    elif dl == f.first_ts + self._active:
                        reason = EndReason.ACTIVE_TIMEOUT
                    else:
                        reason = EndReason.IDLE_TIMEOUT
                    self._end(f, reason, now)
                    del self._table[f.key]
                    del self._recency[f.key]
                else:
                    self._schedule(f, dl)

    def _on_evict(self, key: Hashable, f: Flow) -> None:
        self.stats.evicted += 1
        del self._table[key]
        self._end(f, EndReason.EVICTED, self._now)

    def _end(self, f: Flow, reason: EndReason, ts: int) -> None:
        if f.dead:
            return
        f.dead = True
        if f.timer >= 0:
            self._stale += 1
            if self._stale > 2 * len(self._table) + 4096:
                self._compact_timers()
        l7 = self._l7
        if l7 is not None and f.l7 is not None and f.l7 is not False:
            l7.end(f, ts)
            if l7.pending:
                self._out.extend(l7.pending)
                l7.pending.clear()
        self._out.append(flow_record(f, reason))


def _first_ts(f: Flow) -> int:
    return f.first_ts


def flow_record(f: Flow, reason: EndReason) -> FlowEnded:
    """The :class:`FlowEnded` record of a flow (orientation applied)."""
    a = _flow_side(f.pk0, f.by0, f.pl0)
    b = _flow_side(f.pk1, f.by1, f.pl1)
    if f.flip:
        a, b = b, a
        so, sr = f.st[1], f.st[0]
        hist = "^" + f.hist
    else:
        so, sr = f.st[0], f.st[1]
        hist = f.hist
    if f.proto != 6:
        so = ACTIVE if a.packets else INACTIVE
        sr = ACTIVE if b.packets else INACTIVE
    return _flow_ended(
        f.flow_info(),
        f.first_ts,
        _flow_stats(a, b, f.first_ts, f.last_ts, f.missed),
        hist,
        conn_state(f.proto, so, sr, hist, a.payload_bytes, b.payload_bytes),
        reason,
        f.service,
    )


def conn_state(proto: int, os_: int, rs: int, history: str, orig_size: int, resp_size: int) -> ConnState:
    """Zeek's ``conn_state`` from the two endpoints' final states (Zeek's conn/main.zeek)."""
    if proto == 17:
        if os_ == ACTIVE:
            return ConnState.SF if rs == ACTIVE else ConnState.S0
        return ConnState.SHR if rs == ACTIVE else ConnState.OTH
    if proto != 6:
        return ConnState.OTH  # Zeek gives ICMP and other protocols OTH
    o_inactive = os_ == INACTIVE or os_ == PARTIAL
    r_inactive = rs == INACTIVE or rs == PARTIAL
    if rs == RESET:
        if os_ == SYN_SENT or os_ == SYN_ACK_SENT or (os_ == RESET and orig_size == 0 and resp_size == 0):
            return ConnState.REJ
        return ConnState.RSTRH if o_inactive else ConnState.RSTR
    if os_ == RESET:
        if r_inactive:
            h = history.lstrip("^")
            if h.startswith("S") and "R" in h and not any(c in h[: h.index("R")] for c in "HAFGIQ"):
                return ConnState.RSTOS0
            return ConnState.OTH
        return ConnState.RSTO
    if rs == CLOSED and os_ == CLOSED:
        return ConnState.SF
    if os_ == CLOSED:
        return ConnState.SH if r_inactive else ConnState.S2
    if rs == CLOSED:
        return ConnState.SHR if o_inactive else ConnState.S3
    if os_ == SYN_SENT and rs == INACTIVE:
        return ConnState.S0
    if os_ == ESTABLISHED and rs == ESTABLISHED:
        return ConnState.S1
    return ConnState.OTH


def packet_view(ts: int, frame: bytes, lt: int, wire_len: int, d: Decoded) -> PacketView:
    """Materialise a :class:`PacketView` from a decoded frame (slow path only)."""
    proto, src, dst, sport, dport, flags, seq, ack, win, buf, poff, pend, plen, meta = d
    tcp = TcpInfo(seq=seq, ack=ack, flags=TcpFlags(flags), window=win) if flags >= 0 else None
    mac_src = frame[6:12] if lt == 1 and len(frame) >= 14 else None
    mac_dst = frame[0:6] if lt == 1 and len(frame) >= 14 else None
    return PacketView(
        ts=ts,
        wire_len=wire_len,
        link_type=lt,
        frame=frame,
        ip_version=4 if len(src) == 4 else 6,
        src_addr=src,
        dst_addr=dst,
        proto=proto,
        src_port=sport,
        dst_port=dport,
        tcp=tcp,
        payload=buf[poff:pend],
        vlan=meta[0] if meta is not None else (),
        tunnel=meta[1] if meta is not None else (),
        src_mac=mac_src,
        dst_mac=mac_dst,
    )


FrameCallback = Callable[[PacketView], None]
