"""TCP stream reassembly: one direction's segments in, ordered bytes out.

Theory of operation
-------------------
A :class:`TcpReassembler` follows one direction of one TCP connection.  It
is sans-I/O and has no clock: the caller feeds it segments (raw 32-bit
sequence number, payload, timestamp, flag bits) and acknowledgements seen
in the *other* direction, and it answers with
:data:`~flowscope_core.StreamEvent` values.  It is usable on its own, without
the flow tracker (see :func:`reassemble`).

**Sequence space.**  Sequence numbers wrap at 2**32.  The reassembler keeps
*stream offsets* instead: unbounded integers counting from the first byte
of the stream.  A SYN fixes offset 0 at ``seq + 1`` (a SYN may carry data,
which then starts at offset 0).  Without a SYN (a mid-stream pick-up) the
first segment that carries data, a FIN or a RST fixes offset 0 at its own
sequence number.  A pure ACK does not: keep-alive probes are sent with
``SND.NXT - 1`` and would fake a one-byte hole at the start (tshark's
"Follow TCP stream", which starts at the first segment of any kind, shows
exactly that).  Every later sequence number is read as the offset nearest to
the next byte to deliver (serial-number arithmetic, RFC 1982), so streams
longer than 4 GiB keep working.  A segment more than 2**30 bytes (the
largest window RFC 7323 allows) beyond that point cannot be valid and is
dropped.  If the first segment seen was not the first one sent (capture
reordering at a pick-up), the earlier data lies *before* offset 0: it is
trimmed and counted in :attr:`TcpReassembler.dropped_bytes`.  Buffering the
first segment in the hope that something earlier arrives would delay every
pick-up for a case that cannot be told apart from real loss; tshark's follow
makes the same choice.

**Delivery** (the model is aioquic's stream receiver).  ``delivered`` is the
offset of the next byte to deliver.  A segment that starts exactly there
while nothing is buffered is the fast path: it becomes one
:class:`~flowscope_core.StreamData` holding the caller's ``payload`` object
itself, without a copy.  Bytes below ``delivered`` are trimmed (a
retransmission), bytes above it are kept out of order in a sorted list of
non-overlapping chunks (the range set), and whenever the chunk at
``delivered`` exists, it and every chunk touching it are delivered, one
``StreamData`` each (no joining copy).  ``StreamData.ts`` is the time of the
segment that made the bytes deliverable.

**Overlaps.**  Bytes that arrive for a part of the stream that is already
held are compared with it.  Among buffered (undelivered) chunks, the
:class:`OverlapPolicy` decides which copy is kept (``FIRST``, ``LAST`` or
Suricata's ``BSD``, which is also what tshark's follow does), and a
:class:`~flowscope_core.StreamOverlap` reports the overlap with
``differs=True`` when the two copies disagree: the classic IDS-evasion
signal (Ptacek and Newsham, 1998).  Delivered data is not kept, except the
last delivered segment (a reference, no copy, at most
``compare_window`` bytes long), so a retransmission of that segment is
compared too; the typical evasion, a segment sent twice with different
content back to back, is caught that way.  Retransmissions of older
delivered data are trimmed silently (counted in
:attr:`TcpReassembler.retransmitted_bytes`) because nothing is left to
compare them with.  Exact duplicates never produce duplicate bytes.

**Gaps.**  A hole becomes a :class:`~flowscope_core.StreamGap` of its exact
size (and :attr:`TcpReassembler.missed_bytes` grows by it) in four cases;
delivery then resumes after it:

* the peer acknowledged bytes this direction never showed us
  (:meth:`TcpReassembler.acked`): a receiver that acknowledged data will
  never see it again, so waiting is pointless (Zeek's "content gap" logic;
  tshark's follow uses acknowledgements the same way).  An ACK captured
  before the data it covers (directions tapped separately) turns that data
  into a gap, so a caller facing such captures may call ``acked`` late;
* a bound was hit (below): the lowest hole is given up;
* a RST arrived: the direction is over, buffered data is delivered behind
  gaps and :class:`~flowscope_core.StreamEnd` ``rst`` follows;
* :meth:`TcpReassembler.flush` (the flow is over): the same, with ``fin``
  if a FIN was seen, else ``flow_end``.

**The end.**  A FIN fixes the end of the stream at ``seq + len(payload)``
(the FIN's own sequence number is not a byte).  ``StreamEnd("fin")`` comes
once every byte before it was delivered or declared a gap, so a FIN that
overtakes the data still ends the stream in the right place.  Data beyond
the FIN is dropped, and a FIN that ends before already delivered data
contradicts it and is ignored.  A RST is accepted whatever its sequence
number: checking it against the receive window needs both directions, which
is the tracker's job.  A RST's payload is diagnostic text, not stream data
(RFC 9293, 3.5.3), and is dropped.  After ``StreamEnd`` nothing more is
emitted; later segments are only counted.

**Bounds** (all in :class:`ReassemblyConfig`).  ``depth`` is the stream
offset at which delivery stops for good; the first byte dropped because of
it raises one :class:`~flowscope_core.StreamLimit` ``depth``.  Out-of-order
data is bounded per direction in bytes (``max_buffered``) and in chunks
(``max_segments``), and across reassemblers by a shared
:class:`ReassemblyBudget`.  When a segment would break one of them, the
reassembler gives up its lowest hole (``StreamLimit`` ``buffer`` or
``memcap``, then ``StreamGap``) and delivers what follows, until the bounds
hold again; so the budget's ``used`` never exceeds its ``memcap`` between
calls, whatever the input.  Buffered bytes are counted as payload bytes; the
per-chunk overhead is what ``max_segments`` bounds.
"""

from __future__ import annotations

import enum
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Tuple

from flowscope._make import maker
from flowscope_core import (
    StreamData,
    StreamEnd,
    StreamEvent,
    StreamGap,
    StreamLimit,
    StreamOverlap,
    Timestamp,
)

__all__ = [
    "OverlapPolicy",
    "Reassembled",
    "ReassemblyBudget",
    "ReassemblyConfig",
    "TcpReassembler",
    "reassemble",
]

_MASK = 0xFFFFFFFF
_HALF = 0x80000000
_WRAP = 0x100000000
_FIN = 0x01
_SYN = 0x02
_RST = 0x04
_CONTROL = _FIN | _SYN | _RST

_MAX_WINDOW = 1 << 30
"""The largest receive window TCP can advertise (RFC 7323, 2.3: shift 14)."""


# StreamData built through its slots (flowscope._make): the fast path's main cost otherwise.
_stream_data: Callable[[int, bytes, Timestamp], StreamData] = maker(StreamData)


class OverlapPolicy(enum.Enum):
    """Which copy wins when a segment covers bytes that are already buffered.

    Bytes already delivered are never replaced, whatever the policy: they
    have left the reassembler.  The default is :attr:`FIRST`: it is the
    simplest rule to reason about, the only one that treats buffered and
    delivered bytes alike, and it agrees with :attr:`BSD` (Suricata's
    default: ``OS_POLICY_DEFAULT = OS_POLICY_BSD``) in every overlap shape
    but one, a new segment that starts before a held one.
    """

    FIRST = "first"
    """Keep the bytes received first."""
    LAST = "last"
    """Newer bytes replace buffered ones."""
    BSD = "bsd"
    """New bytes win over a held segment only if the new segment starts before it.

    Suricata's BSD policy.  tshark's "Follow TCP stream" ends up with the
    same bytes (it applies whole segments, in arrival order, once they reach
    the delivery point): on the test corpus this policy reproduces its
    output byte for byte.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class ReassemblyConfig:
    """Every bound of one direction's reassembly, with its reason."""

    depth: int = 1 << 20
    """Stream offset at which delivery stops (1 MiB).

    Suricata's ``stream.reassembly.depth`` defaults to 1mb: what application
    parsers look at (HTTP headers, TLS handshakes, DNS over TCP) lies at the
    start of a stream, and bulk bodies beyond it cost memory and time for
    nothing.  Gaps count: it is an offset, not a byte count.
    """
    max_buffered: int = 256 << 10
    """Out-of-order bytes held per direction (256 KiB).

    Twice Linux's default receive buffer (``tcp_rmem[1]``, 128 KiB), which
    bounds what a sender has in flight past one lost segment until
    autotuning grows it; a hole that far behind is better reported as a gap
    than waited for.
    """
    max_segments: int = 1024
    """Out-of-order chunks held per direction.

    ``max_buffered`` spread over full-size (1460-byte) segments is about 180
    chunks, so ordinary loss never hits this; it stops a flood of 1-byte
    segments with holes between them from costing ~100 bytes of Python
    overhead per payload byte and keeps every insertion cheap.
    """
    overlap_policy: OverlapPolicy = OverlapPolicy.FIRST
    """Which copy of doubly received, not yet delivered bytes is kept (see :class:`OverlapPolicy`)."""
    compare_window: int = 65535
    """Longest last-delivered segment kept (by reference) to compare retransmissions with.

    65535 is the largest TCP payload a non-jumbo IP packet carries, so every
    segment qualifies: the cost is one reference per direction, the payload
    of its latest segment.  0 turns the comparison off.
    """

    def __post_init__(self) -> None:
        for name in ("depth", "max_buffered", "max_segments", "compare_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"ReassemblyConfig.{name} must not be negative")
        if not isinstance(self.overlap_policy, OverlapPolicy):
            raise TypeError("ReassemblyConfig.overlap_policy must be an OverlapPolicy")


_DEFAULT_CONFIG = ReassemblyConfig()


class ReassemblyBudget:
    """A memory cap on out-of-order bytes, shared by many reassemblers.

    One per tracker (or worker).  Each :class:`TcpReassembler` adds what it
    buffers to :attr:`used` and takes it back when the bytes are delivered,
    dropped or :meth:`TcpReassembler.release`\\ d.  A reassembler that would
    push :attr:`used` past :attr:`memcap` gives up its own lowest hole (a gap)
    instead, so ``used <= memcap`` holds between calls.  Not thread-safe: a
    budget belongs to one worker, like its reassemblers.
    """

    __slots__ = ("memcap", "used")

    def __init__(self, memcap: int) -> None:
        if memcap < 0:
            raise ValueError("ReassemblyBudget memcap must not be negative")
        self.memcap = memcap
        """Most out-of-order payload bytes all reassemblers together may hold."""
        self.used = 0
        """Bytes held right now."""

    @property
    def available(self) -> int:
        """Bytes that may still be buffered."""
        return max(0, self.memcap - self.used)

    def __repr__(self) -> str:
        return f"ReassemblyBudget(memcap={self.memcap}, used={self.used})"


class TcpReassembler:
    """Reassembles one direction of a TCP connection (see the module docstring).

    Implements :class:`flowscope_core.Reassembler`.
    """

    __slots__ = (
        "_base",
        "_budget",
        "_buffered",
        "_chunks",
        "_depth",
        "_depth_hit",
        "_delivered",
        "_dropped",
        "_ended",
        "_fin",
        "_limit",
        "_max_buffered",
        "_max_segments",
        "_missed",
        "_next_seq",
        "_origins",
        "_policy",
        "_retransmitted",
        "_starts",
        "_tail",
        "_window",
    )

    def __init__(self, config: ReassemblyConfig = _DEFAULT_CONFIG, budget: Optional[ReassemblyBudget] = None) -> None:
        self._depth = config.depth
        self._max_buffered = config.max_buffered
        self._max_segments = config.max_segments
        self._policy = config.overlap_policy
        self._window = config.compare_window
        self._budget = budget
        self._base = -1
        """Raw sequence number of offset 0; -1 until the stream starts."""
        self._next_seq = -1
        """Raw sequence number of ``_delivered``; -1 disables the fast path."""
        self._delivered = 0
        self._limit = config.depth
        """No byte at or beyond this offset is delivered: min(depth, FIN), or the end."""
        self._fin: Optional[int] = None
        self._ended = False
        self._depth_hit = False
        self._starts: List[int] = []
        """Offsets of the out-of-order chunks, ascending; all above ``_delivered``."""
        self._chunks: List[bytes] = []
        """The chunks themselves, parallel to ``_starts``, never overlapping."""
        self._origins: List[int] = []
        """Start offset of the segment each chunk came from (for the BSD policy)."""
        self._buffered = 0
        self._tail = b""
        """The last delivered chunk (it ends at ``_delivered``), or empty."""
        self._missed = 0
        self._retransmitted = 0
        self._dropped = 0

    # ------------------------------------------------------------------ counters

    @property
    def buffered(self) -> int:
        """Out-of-order payload bytes held right now."""
        return self._buffered

    @property
    def buffered_segments(self) -> int:
        """Out-of-order chunks held right now."""
        return len(self._starts)

    @property
    def missed_bytes(self) -> int:
        """Total bytes reported as gaps so far."""
        return self._missed

    @property
    def delivered(self) -> int:
        """Stream offset of the next byte to deliver (bytes delivered plus gaps)."""
        return self._delivered

    @property
    def retransmitted_bytes(self) -> int:
        """Payload bytes that arrived for a part of the stream already held or delivered."""
        return self._retransmitted

    @property
    def dropped_bytes(self) -> int:
        """Payload bytes discarded: beyond depth or FIN, before the pick-up, after the end, RST text."""
        return self._dropped

    @property
    def ended(self) -> bool:
        """True once ``StreamEnd`` was emitted (or the reassembler was released)."""
        return self._ended

    # ------------------------------------------------------------------ input

    def segment(self, seq: int, payload: bytes, ts: Timestamp, flags: int) -> List[StreamEvent]:
        """Feed one segment of this direction; returns what became deliverable.

        ``seq`` is the raw 32-bit sequence number, ``flags`` the TCP flag
        bits (:class:`flowscope_core.TcpFlags` or a plain ``int``).
        """
        off = self._delivered
        if self.take(seq, payload, flags):
            return [_stream_data(off, payload, ts)]
        return self._segment(seq, payload, len(payload), ts, flags)

    def take(self, seq: int, payload: bytes, flags: int) -> bool:
        """The common case of :meth:`segment` without building its event.

        When ``payload`` is exactly the next in-order data (no control flag,
        nothing buffered, within the depth limit) it is taken as delivered
        and the result is True: the caller hands it on itself, as the one
        ``StreamData`` that :meth:`segment` would have returned, at offset
        ``delivered - len(payload)``.  Otherwise nothing changes and the
        result is False: call :meth:`segment`.
        """
        n = len(payload)
        if seq == self._next_seq and n and not flags & _CONTROL and not self._starts:
            end = self._delivered + n
            if end < self._limit:
                self._delivered = end
                self._next_seq = (seq + n) & _MASK
                self._tail = payload if n <= self._window else b""
                return True
        return False

    def acked(self, ack: int, ts: Timestamp) -> List[StreamEvent]:
        """The peer acknowledged everything below ``ack`` (raw 32-bit).

        Sequence space below it that this direction never showed is lost
        for good: it becomes a gap now, followed by the buffered data behind
        it.  Acknowledgements at or below the delivered point, more than the
        largest window ahead, or before this direction started are ignored.
        """
        nxt = self._next_seq
        if nxt < 0:
            return []
        d = (ack - nxt) & _MASK
        if d == 0 or d > _MAX_WINDOW or self._ended:
            return []
        target = min(self._delivered + d, self._limit)
        out: List[StreamEvent] = []
        while self._delivered < target:
            self._skip_hole(target, ts, out)
        self._check_end(ts, out)
        return out

    def flush(self, ts: Timestamp) -> List[StreamEvent]:
        """The flow is over: holes become gaps, buffered data is delivered, then ``StreamEnd``.

        The end's reason is ``fin`` if a FIN was seen (the space up to it
        becomes a gap if need be), else ``flow_end``.  Nothing is emitted
        after this, nor by a second call.
        """
        if self._ended:
            return []
        out: List[StreamEvent] = []
        self._drain(ts, out)
        self._end("fin" if self._fin is not None else "flow_end", ts, out)
        return out

    def release(self) -> None:
        """Drop everything buffered and return it to the budget (the flow was dropped)."""
        if self._budget is not None:
            self._budget.used -= self._buffered
        self._buffered = 0
        self._starts.clear()
        self._chunks.clear()
        self._origins.clear()
        self._tail = b""
        self._ended = True
        self._limit = self._delivered

    # ------------------------------------------------------------------ internals

    def _segment(self, seq: int, payload: bytes, n: int, ts: Timestamp, flags: int) -> List[StreamEvent]:
        """Everything the fast path does not cover."""
        if flags & _SYN:
            seq = (seq + 1) & _MASK
        if self._base < 0:
            if self._ended or not (n or flags & _CONTROL):
                return []
            self._base = seq
            self._next_seq = seq
        d = (seq - self._next_seq) & _MASK
        if d >= _HALF:
            d -= _WRAP
        off = self._delivered + d
        if self._ended:
            old = min(n, max(0, -d))
            self._retransmitted += old
            self._dropped += n - old
            return []
        if d > _MAX_WINDOW:
            self._dropped += n
            return []
        out: List[StreamEvent] = []
        if flags & _FIN and self._fin is None and off + n >= self._delivered:
            self._set_fin(off + n)
        if flags & _RST:
            self._dropped += n
            self._drain(ts, out)
            self._end("rst", ts, out)
            return out
        if n:
            self._data(off, payload, ts, out)
        self._check_end(ts, out)
        return out

    def _data(self, off: int, payload: bytes, ts: Timestamp, out: List[StreamEvent]) -> None:
        """Trim one segment's payload to what is new and wanted, then deliver or buffer it."""
        n = len(payload)
        s = off
        e = off + n
        if s < 0:
            cut = min(e, 0) - s
            self._dropped += cut
            s += cut
        delivered = self._delivered
        if s < delivered:
            old_end = min(e, delivered)
            self._retransmitted += old_end - s
            tail = self._tail
            if tail:
                a = max(s, delivered - len(tail))
                if a < old_end:
                    t0 = delivered - len(tail)
                    differs = payload[a - off : old_end - off] != tail[a - t0 : old_end - t0]
                    out.append(StreamOverlap(offset=a, length=old_end - a, differs=differs, ts=ts))
            s = old_end
        limit = self._limit
        if e > limit:
            over = e - max(s, limit)
            self._dropped += over
            if limit == self._depth and (self._fin is None or self._fin > limit) and not self._depth_hit:
                self._depth_hit = True
                out.append(StreamLimit(limit="depth", dropped=over, ts=ts))
            e = max(s, limit)
        if s >= e:
            return
        data = payload if (s == off and e == off + n) else payload[s - off : e - off]
        starts = self._starts
        if s == delivered and (not starts or e <= starts[0]):
            out.append(_stream_data(s, data, ts))
            self._advance(e, data)
            if starts and starts[0] == e:
                self._deliver_run(ts, out)
            return
        self._insert(s, data, off, ts, out)
        if self._starts[0] == self._delivered:
            self._deliver_run(ts, out)
        self._enforce(ts, out)

    def _insert(self, s: int, data: bytes, origin: int, ts: Timestamp, out: List[StreamEvent]) -> None:
        """Put ``data`` (entirely above ``delivered``) into the chunk list under the policy.

        ``origin`` is where the segment that brought ``data`` started before
        any trimming; the BSD policy compares it with the held chunks' own.
        """
        starts = self._starts
        chunks = self._chunks
        origins = self._origins
        e = s + len(data)
        i = bisect_right(starts, s) - 1
        lo = i if i >= 0 and starts[i] + len(chunks[i]) > s else i + 1
        hi = bisect_left(starts, e, lo)
        if lo == hi:
            starts.insert(lo, s)
            chunks.insert(lo, data)
            origins.insert(lo, origin)
            self._account(len(data))
            return
        policy = self._policy
        new_s: List[int] = []
        new_c: List[bytes] = []
        new_o: List[int] = []
        overlaps: List[Tuple[int, int, bool]] = []
        right: Optional[Tuple[int, bytes, int]] = None
        cur = s  # first byte of ``data`` neither placed nor discarded yet
        for j in range(lo, hi):
            cs = starts[j]
            c = chunks[j]
            co = origins[j]
            ce = cs + len(c)
            a = cs if cs > s else s
            b = ce if ce < e else e
            overlaps.append((a, b, data[a - s : b - s] != c[a - cs : b - cs]))
            if policy is OverlapPolicy.LAST or (policy is OverlapPolicy.BSD and origin < co):
                if cs < a:
                    new_s.append(cs)
                    new_c.append(c[: a - cs])
                    new_o.append(co)
                if ce > b:
                    right = (b, c[b - cs :], co)
            else:
                if a > cur:
                    new_s.append(cur)
                    new_c.append(data[cur - s : a - s])
                    new_o.append(origin)
                new_s.append(cs)
                new_c.append(c)
                new_o.append(co)
                cur = b
        if cur < e:
            new_s.append(cur)
            new_c.append(data[cur - s :])
            new_o.append(origin)
        if right is not None:
            new_s.append(right[0])
            new_c.append(right[1])
            new_o.append(right[2])
        removed = sum(len(c) for c in chunks[lo:hi])
        starts[lo:hi] = new_s
        chunks[lo:hi] = new_c
        origins[lo:hi] = new_o
        self._account(sum(len(c) for c in new_c) - removed)
        self._report_overlaps(overlaps, ts, out)

    def _report_overlaps(self, overlaps: List[Tuple[int, int, bool]], ts: Timestamp, out: List[StreamEvent]) -> None:
        """One ``StreamOverlap`` per contiguous run of overlapped bytes."""
        run_a, run_b, run_diff = overlaps[0]
        for a, b, diff in overlaps[1:]:
            if a == run_b:
                run_b = b
                run_diff = run_diff or diff
            else:
                out.append(StreamOverlap(offset=run_a, length=run_b - run_a, differs=run_diff, ts=ts))
                run_a, run_b, run_diff = a, b, diff
        out.append(StreamOverlap(offset=run_a, length=run_b - run_a, differs=run_diff, ts=ts))
        for a, b, _ in overlaps:
            self._retransmitted += b - a

    def _account(self, n: int) -> None:
        """``n`` more bytes are buffered (negative: fewer)."""
        self._buffered += n
        if self._budget is not None:
            self._budget.used += n

    def _advance(self, end: int, last: bytes) -> None:
        """Bytes up to ``end`` were delivered, ``last`` being the final chunk."""
        self._delivered = end
        self._next_seq = (self._base + end) & _MASK
        self._tail = last if len(last) <= self._window else b""

    def _deliver_run(self, ts: Timestamp, out: List[StreamEvent]) -> None:
        """Deliver the buffered chunks that start at ``delivered`` and follow each other."""
        starts = self._starts
        chunks = self._chunks
        d = self._delivered
        k = 0
        count = len(starts)
        while k < count and starts[k] == d:
            c = chunks[k]
            out.append(_stream_data(d, c, ts))
            d += len(c)
            k += 1
        if k:
            last = chunks[k - 1]
            del starts[:k]
            del chunks[:k]
            del self._origins[:k]
            self._account(self._delivered - d)
            self._advance(d, last)

    def _skip_hole(self, upto: int, ts: Timestamp, out: List[StreamEvent]) -> None:
        """Declare the hole at ``delivered`` a gap (up to the next chunk or ``upto``) and deliver on."""
        target = min(self._starts[0], upto) if self._starts else upto
        length = target - self._delivered
        out.append(StreamGap(offset=self._delivered, length=length, ts=ts))
        self._missed += length
        self._delivered = target
        self._next_seq = (self._base + target) & _MASK
        self._tail = b""
        if self._starts and self._starts[0] == target:
            self._deliver_run(ts, out)

    def _enforce(self, ts: Timestamp, out: List[StreamEvent]) -> None:
        """Give up lowest holes until the per-direction bounds and the budget hold."""
        budget = self._budget
        while self._starts:
            if self._buffered > self._max_buffered or len(self._starts) > self._max_segments:
                reason = "buffer"
            elif budget is not None and budget.used > budget.memcap:
                reason = "memcap"
            else:
                return
            out.append(StreamLimit(limit=reason, dropped=self._starts[0] - self._delivered, ts=ts))
            self._skip_hole(self._starts[0], ts, out)

    def _drain(self, ts: Timestamp, out: List[StreamEvent]) -> None:
        """Deliver everything buffered behind gaps, then a gap up to a known FIN."""
        while self._starts:
            self._skip_hole(self._starts[0], ts, out)
        if self._fin is not None and self._delivered < self._limit:
            self._skip_hole(self._limit, ts, out)

    def _set_fin(self, fin: int) -> None:
        """The stream ends at ``fin``: stop there and drop buffered bytes beyond it."""
        self._fin = fin
        if fin < self._limit:
            self._limit = fin
        starts = self._starts
        chunks = self._chunks
        while starts and starts[-1] >= fin:
            starts.pop()
            self._origins.pop()
            c = chunks.pop()
            self._dropped += len(c)
            self._account(-len(c))
        if starts and starts[-1] + len(chunks[-1]) > fin:
            c = chunks[-1]
            keep = fin - starts[-1]
            chunks[-1] = c[:keep]
            self._dropped += len(c) - keep
            self._account(keep - len(c))

    def _check_end(self, ts: Timestamp, out: List[StreamEvent]) -> None:
        """Emit ``StreamEnd("fin")`` once everything before the FIN is accounted for."""
        if self._fin is not None and self._delivered >= self._limit and not self._ended:
            self._end("fin", ts, out)

    def _end(self, reason: str, ts: Timestamp, out: List[StreamEvent]) -> None:
        out.append(StreamEnd(reason=reason, ts=ts))
        self._ended = True
        self._limit = self._delivered
        if self._buffered:
            self._account(-self._buffered)
        self._starts.clear()
        self._chunks.clear()
        self._origins.clear()


@dataclass(frozen=True, slots=True, kw_only=True)
class Reassembled:
    """What :func:`reassemble` returns."""

    data: bytes
    """Every delivered byte in stream order; gaps are left out (see ``gaps``)."""
    gaps: Tuple[Tuple[int, int], ...]
    """``(offset, length)`` of each gap, in stream order."""
    events: Tuple[StreamEvent, ...]
    """Everything the reassembler emitted, the final flush included."""


def reassemble(
    segments: Iterable[Tuple[int, bytes, int, int]],
    config: ReassemblyConfig = _DEFAULT_CONFIG,
) -> Reassembled:
    """Reassemble one direction from ``(seq, payload, ts, flags)`` tuples, then flush.

    A convenience for users who have segments and want the stream, without
    a flow tracker.  No acknowledgements are involved: holes become gaps at
    the end (or when a bound is hit).
    """
    r = TcpReassembler(config)
    events: List[StreamEvent] = []
    last_ts = 0
    for seq, payload, ts, flags in segments:
        events.extend(r.segment(seq, payload, ts, flags))
        last_ts = ts
    events.extend(r.flush(last_ts))
    data = b"".join(ev.data for ev in events if isinstance(ev, StreamData))
    gaps = tuple((ev.offset, ev.length) for ev in events if isinstance(ev, StreamGap))
    return Reassembled(data=data, gaps=gaps, events=tuple(events))
