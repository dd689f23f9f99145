"""Tests for :mod:`flowscope._reassembly`.

Three kinds of evidence:

* Hypothesis properties against independent models: any segmentation,
  reordering and duplication of a random stream gives the stream back; a
  byte-by-byte model of each overlap policy predicts the kept bytes and every
  ``StreamOverlap``; dropped segments give exactly the gaps the drop mask
  predicts; random garbage never breaks the event contract or a bound.
* Real captures compared with tshark's "Follow TCP stream" (digests in
  ``tests/data/reassembly``, made by ``make_expected.py`` there).
* Hand-made segments for each documented edge case.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope._reassembly import (
    OverlapPolicy,
    Reassembled,
    ReassemblyBudget,
    ReassemblyConfig,
    TcpReassembler,
    reassemble,
)
from flowscope_core import (
    Reassembler,
    StreamData,
    StreamEnd,
    StreamEvent,
    StreamGap,
    StreamLimit,
    StreamOverlap,
    TcpFlags,
)

FIN = int(TcpFlags.FIN)
SYN = int(TcpFlags.SYN)
RST = int(TcpFlags.RST)
PSH = int(TcpFlags.PSH)
ACK = int(TcpFlags.ACK)
MOD = 1 << 32

PROPERTY = settings(max_examples=100, deadline=None)


# --------------------------------------------------------------------------- helpers


class Stream:
    """Feeds one reassembler and checks the event contract after every call.

    Data and gaps must tile the stream from offset 0 with no hole or overlap
    and agree with ``delivered`` and ``missed_bytes``; nothing may follow
    ``StreamEnd``; the reassembler's own bounds must hold.
    """

    def __init__(self, reassembler: TcpReassembler, config: Optional[ReassemblyConfig] = None) -> None:
        self.r = reassembler
        self.config = config or ReassemblyConfig()
        self.data = bytearray()
        self.offset = 0
        self.chunks: List[Tuple[int, bytes]] = []
        self.gaps: List[Tuple[int, int]] = []
        self.overlaps: List[StreamOverlap] = []
        self.limits: List[StreamLimit] = []
        self.end: Optional[StreamEnd] = None
        self.events: List[StreamEvent] = []

    def take(self, events: Sequence[StreamEvent]) -> List[StreamEvent]:
        for ev in events:
            assert self.end is None, f"{ev} after {self.end}"
            if isinstance(ev, StreamData):
                assert ev.offset == self.offset and len(ev.data) > 0
                self.data += ev.data
                self.chunks.append((ev.offset, ev.data))
                self.offset += len(ev.data)
            elif isinstance(ev, StreamGap):
                assert ev.offset == self.offset and ev.length > 0
                self.gaps.append((ev.offset, ev.length))
                self.offset += ev.length
            elif isinstance(ev, StreamOverlap):
                assert ev.length > 0
                self.overlaps.append(ev)
            elif isinstance(ev, StreamLimit):
                assert ev.limit in ("depth", "buffer", "memcap") and ev.dropped >= 0
                self.limits.append(ev)
            else:
                assert ev.reason in ("fin", "rst", "flow_end")
                self.end = ev
        assert self.offset == self.r.delivered
        assert sum(length for _, length in self.gaps) == self.r.missed_bytes
        assert 0 <= self.r.buffered <= max(self.config.max_buffered, 0)
        assert self.r.buffered_segments <= self.config.max_segments
        assert (self.r.buffered == 0) == (self.r.buffered_segments == 0)
        self.events.extend(events)
        return list(events)

    def seg(self, seq: int, payload: bytes = b"", flags: int = ACK, ts: int = 0) -> List[StreamEvent]:
        return self.take(self.r.segment(seq % MOD, payload, ts, flags))

    def acked(self, ack: int, ts: int = 0) -> List[StreamEvent]:
        return self.take(self.r.acked(ack % MOD, ts))

    def flush(self, ts: int = 0) -> List[StreamEvent]:
        events = self.take(self.r.flush(ts))
        assert self.end is not None and self.r.buffered == 0 and self.r.ended
        return events

    def filled(self, size: int) -> List[Optional[int]]:
        """Byte at each offset below ``size`` as delivered, ``None`` where a gap was."""
        out: List[Optional[int]] = [None] * size
        for offset, chunk in self.chunks:
            for i, byte in enumerate(chunk[: max(0, size - offset)]):
                out[offset + i] = byte
        return out


def uncovered(size: int, pieces: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Maximal ``(offset, length)`` runs of ``[0, size)`` that no piece ``[a, b)`` covers."""
    seen = [False] * size
    for a, b in pieces:
        for i in range(a, b):
            seen[i] = True
    runs: List[Tuple[int, int]] = []
    i = 0
    while i < size:
        if seen[i]:
            i += 1
            continue
        j = i
        while j < size and not seen[j]:
            j += 1
        runs.append((i, j - i))
        i = j
    return runs


def merged(gaps: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Adjacent gaps joined (an ``acked`` boundary may split one hole in two)."""
    out: List[Tuple[int, int]] = []
    for offset, length in gaps:
        if out and out[-1][0] + out[-1][1] == offset:
            out[-1] = (out[-1][0], out[-1][1] + length)
        else:
            out.append((offset, length))
    return out


isns = st.one_of(st.integers(MOD - 4000, MOD - 1), st.integers(0, MOD - 1))
"""Initial sequence numbers, half of them so close to 2**32 that the stream wraps."""


@st.composite
def cut(draw: st.DrawFn, start: int, end: int, max_pieces: int = 30) -> List[Tuple[int, int]]:
    """``[start, end)`` split into consecutive ``(a, b)`` pieces."""
    if end - start <= 1:
        return [(start, end)] if end > start else []
    points = draw(st.lists(st.integers(start + 1, end - 1), max_size=max_pieces - 1, unique=True))
    bounds = [start, *sorted(points), end]
    return list(zip(bounds, bounds[1:]))


# --------------------------------------------------------------------------- properties


@PROPERTY
@given(
    payload=st.binary(min_size=1, max_size=3000),
    isn=isns,
    syn=st.booleans(),
    syn_data=st.booleans(),
    fin=st.booleans(),
    policy=st.sampled_from(list(OverlapPolicy)),
    data=st.data(),
)
def test_any_segmentation_order_and_duplication_gives_the_stream_back(
    payload: bytes, isn: int, syn: bool, syn_data: bool, fin: bool, policy: OverlapPolicy, data: st.DataObject
) -> None:
    n = len(payload)
    pieces = data.draw(cut(0, n))
    extra = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 500)), max_size=12))
    pieces += [(a, min(n, a + length)) for a, length in extra]
    order = data.draw(st.permutations(pieces))
    config = ReassemblyConfig(overlap_policy=policy)
    s = Stream(TcpReassembler(config), config)
    base = isn + 1 if syn else isn
    first_end = 0
    if syn:
        first_end = data.draw(st.integers(0, n)) if syn_data else 0
        s.seg(isn, payload[:first_end], SYN)
    else:
        # A pick-up: the first segment seen must start the stream (see the next test).
        first = next(p for p in order if p[0] == 0)
        s.seg(base, payload[first[0] : first[1]], ACK | PSH)
    for a, b in order:
        flags = ACK | (FIN if fin and b == n else 0)
        s.seg(base + a, payload[a:b], flags)
    if fin and first_end == n:
        s.seg(base + n, b"", ACK | FIN)
    assert bytes(s.data) == payload
    assert s.gaps == [] and s.r.missed_bytes == 0 and s.r.buffered == 0
    assert all(not ov.differs for ov in s.overlaps)
    assert (s.end is not None) == fin
    s.flush()
    assert s.end is not None and s.end.reason == ("fin" if fin else "flow_end")
    assert bytes(s.data) == payload


@PROPERTY
@given(payload=st.binary(min_size=2, max_size=2000), isn=isns, data=st.data())
def test_pickup_starts_at_first_segment_and_drops_what_lies_before(
    payload: bytes, isn: int, data: st.DataObject
) -> None:
    n = len(payload)
    start = data.draw(st.integers(1, n - 1))
    s = Stream(TcpReassembler())
    s.seg(isn + start, payload[start:])
    s.seg(isn, payload)
    assert bytes(s.data) == payload[start:]
    assert s.r.dropped_bytes == start
    assert s.r.retransmitted_bytes == n - start


@st.composite
def conflicts(draw: st.DrawFn) -> Tuple[bytes, int, List[Tuple[int, bytes]], OverlapPolicy]:
    """A stream whose first piece is held back, and its other pieces shuffled with rewrites."""
    payload = draw(st.binary(min_size=2, max_size=1500))
    n = len(payload)
    k = draw(st.integers(1, n - 1))
    originals = [(a, payload[a:b]) for a, b in draw(cut(k, n))]
    rewrites = []
    for a, length in draw(st.lists(st.tuples(st.integers(k, n - 1), st.integers(1, 300)), min_size=1, max_size=10)):
        b = min(n, a + length)
        rewrites.append((a, draw(st.binary(min_size=b - a, max_size=b - a))))
    order = draw(st.permutations(originals + rewrites))
    return payload, k, list(order), draw(st.sampled_from(list(OverlapPolicy)))


@PROPERTY
@given(case=conflicts(), isn=isns)
def test_overlapping_rewrites_follow_the_policy_and_report_differences(
    case: Tuple[bytes, int, List[Tuple[int, bytes]], OverlapPolicy], isn: int
) -> None:
    """Compare with a byte-by-byte model: which copy each byte keeps, and every overlap."""
    payload, k, order, policy = case
    n = len(payload)
    held: List[Optional[int]] = [None] * n
    owner = [0] * n
    config = ReassemblyConfig(overlap_policy=policy)
    s = Stream(TcpReassembler(config), config)
    s.seg(isn, b"", SYN)
    for a, content in order:
        expected: List[Tuple[int, int, bool]] = []
        for i, byte in enumerate(content, a):
            if held[i] is None:
                held[i], owner[i] = byte, a
                continue
            differs = held[i] != byte
            if expected and expected[-1][0] + expected[-1][1] == i:
                o, length, d = expected[-1]
                expected[-1] = (o, length + 1, d or differs)
            else:
                expected.append((i, 1, differs))
            if policy is OverlapPolicy.LAST or (policy is OverlapPolicy.BSD and a < owner[i]):
                held[i], owner[i] = byte, a
        events = s.seg(isn + 1 + a, content)
        got = [(ev.offset, ev.length, ev.differs) for ev in events if isinstance(ev, StreamOverlap)]
        assert got == expected
        assert not any(isinstance(ev, (StreamData, StreamGap)) for ev in events)
    s.seg(isn + 1, payload[:k])
    assert bytes(s.data) == payload[:k] + bytes(b for b in held[k:] if b is not None)
    assert len(s.data) == n and s.r.buffered == 0
    if policy is OverlapPolicy.FIRST:
        assert bytes(s.data[k:]) == bytes(order_first_bytes(order, k, n))


def order_first_bytes(order: Sequence[Tuple[int, bytes]], k: int, n: int) -> bytearray:
    """The bytes that arrived first at each offset of ``[k, n)`` (FIRST's definition)."""
    out = bytearray(n - k)
    seen = [False] * (n - k)
    for a, content in order:
        for i, byte in enumerate(content, a - k):
            if not seen[i]:
                out[i], seen[i] = byte, True
    return out


@PROPERTY
@given(payload=st.binary(min_size=1, max_size=2500), isn=isns, data=st.data())
def test_dropped_segments_become_exact_gaps_at_flush_or_ack(
    payload: bytes, isn: int, data: st.DataObject
) -> None:
    n = len(payload)
    pieces = data.draw(cut(0, n))
    kept = [p for p in pieces if data.draw(st.booleans())]
    extra = data.draw(st.lists(st.sampled_from(kept), max_size=5)) if kept else []
    order: List[Optional[Tuple[int, int]]] = list(data.draw(st.permutations(kept + extra))) + [None]
    order = data.draw(st.permutations(order))
    mode = data.draw(st.sampled_from(["flush", "ack_fin", "ack_then_flush"]))
    s = Stream(TcpReassembler())
    s.seg(isn, b"", SYN)
    for piece in order:
        if piece is None:
            s.seg(isn + 1 + n, b"", ACK | FIN)
        else:
            s.seg(isn + 1 + piece[0], payload[piece[0] : piece[1]])
    holes = uncovered(n, kept)
    assert (s.end is not None) == (holes == [])
    if mode == "flush":
        s.flush()
        assert s.gaps == holes
    elif mode == "ack_fin":
        s.acked(isn + 1 + n + 1)
        assert s.gaps == holes
    else:
        m = data.draw(st.integers(0, n))
        s.acked(isn + 1 + m)
        assert all(offset + length <= max(m, 0) for offset, length in s.gaps)
        assert merged(s.gaps) == [(o, min(length, m - o)) for o, length in holes if o < m]
        s.flush()
        assert merged(s.gaps) == holes
    assert s.end is not None and s.end.reason == "fin"
    assert s.r.missed_bytes == sum(length for _, length in holes)
    filled = s.filled(n)
    assert all(b is None or b == payload[i] for i, b in enumerate(filled))
    assert sum(b is None for b in filled) == s.r.missed_bytes


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(
                st.sampled_from(["seg0", "seg1"]),
                st.one_of(st.integers(0, 3000), st.integers(0, MOD - 1)),
                st.binary(max_size=120),
                st.integers(0, 255),
            ),
            st.tuples(
                st.sampled_from(["ack0", "ack1"]),
                st.one_of(st.integers(0, 3000), st.integers(0, MOD - 1)),
                st.just(b""),
                st.just(0),
            ),
        ),
        max_size=60,
    ),
    isn=isns,
    policy=st.sampled_from(list(OverlapPolicy)),
)
def test_garbage_never_breaks_the_contract_or_a_bound(
    ops: List[Tuple[str, int, bytes, int]], isn: int, policy: OverlapPolicy
) -> None:
    config = ReassemblyConfig(depth=1500, max_buffered=200, max_segments=4, overlap_policy=policy, compare_window=50)
    budget = ReassemblyBudget(300)
    streams = [Stream(TcpReassembler(config, budget), config) for _ in range(2)]
    for op, number, payload, flags in ops:
        s = streams[int(op[-1])]
        if op.startswith("seg"):
            s.seg(isn + number, payload, flags)
        else:
            s.acked(isn + number)
        assert budget.used == sum(x.r.buffered for x in streams) <= budget.memcap
        assert s.r.delivered <= max(config.depth, 0) or s.r.delivered == 0
    for s in streams:
        s.flush()
        assert s.r.flush(0) == [] and s.r.segment(isn, b"x", 0, 0) == []
    assert budget.used == 0


# --------------------------------------------------------------------------- hand-made cases


def test_fast_path_hands_over_the_payload_object_itself() -> None:
    r = TcpReassembler()
    r.segment(100, b"", 0, SYN)
    payload = b"GET / HTTP/1.1\r\n"
    events = r.segment(101, payload, 5, ACK | PSH)
    assert len(events) == 1 and isinstance(events[0], StreamData)
    assert events[0].data is payload and events[0].offset == 0 and events[0].ts == 5
    assert events[0] == StreamData(offset=0, data=payload, ts=5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.binary(min_size=0, max_size=40), st.sampled_from([0, FIN, RST])), max_size=30))
def test_take_is_segment_without_the_event(steps: List[Tuple[int, bytes, int]]) -> None:
    # Two reassemblers fed alike: one through segment() only, one trying take() first.
    # take() succeeds exactly when segment() would return a lone StreamData at the
    # delivered point, and both end in the same state.
    a, b = TcpReassembler(ReassemblyConfig(depth=300)), TcpReassembler(ReassemblyConfig(depth=300))
    for r in (a, b):
        r.segment(1000, b"", 0, SYN)
    seq = 1001
    for t, (jump, data, flags) in enumerate(steps):
        s = seq + (0 if jump < 2 else jump * 7)  # mostly in order, sometimes ahead
        before = b.delivered
        want = a.segment(s, data, t, flags)
        if b.take(s, data, flags):
            assert want == [StreamData(offset=before, data=data, ts=t)]
        else:
            assert b.segment(s, data, t, flags) == want
        assert (b.delivered, b.buffered, b.missed_bytes) == (a.delivered, a.buffered, a.missed_bytes)
        seq = s + len(data)
    assert b.flush(99) == a.flush(99)


def test_take_declines_what_segment_must_judge() -> None:
    r = TcpReassembler()
    r.segment(100, b"", 0, SYN)
    assert not r.take(101, b"", ACK)  # no data
    assert not r.take(101, b"x", FIN)  # a control flag
    assert not r.take(105, b"x", ACK)  # ahead of the stream
    assert r.take(101, b"abc", ACK) and r.delivered == 3
    r.segment(110, b"later", 1, ACK)  # out of order: buffered
    assert not r.take(104, b"d", ACK)  # something is buffered: segment() delivers both
    assert r.delivered == 3


def test_implements_the_core_protocol() -> None:
    r: Reassembler = TcpReassembler()
    assert r.buffered == 0 and r.missed_bytes == 0


def test_syn_with_payload_and_wraparound() -> None:
    s = Stream(TcpReassembler())
    s.seg(MOD - 3, b"ab", SYN)
    s.seg(MOD - 3 + 1 + 2, b"cdef")
    s.seg(4, b"gh")
    assert bytes(s.data) == b"abcdefgh" and s.r.delivered == 8


def test_retransmitted_last_segment_is_compared() -> None:
    s = Stream(TcpReassembler())
    s.seg(1, b"", SYN)
    s.seg(2, b"GOOD")
    (ov,) = s.seg(2, b"EVIL")
    assert ov == StreamOverlap(offset=0, length=4, differs=True, ts=0)
    assert s.seg(3, b"OOD!") == [
        StreamOverlap(offset=1, length=3, differs=False, ts=0),
        StreamData(offset=4, data=b"!", ts=0),
    ]
    assert bytes(s.data) == b"GOOD!"
    assert s.r.retransmitted_bytes == 7


def test_compare_window_zero_keeps_nothing() -> None:
    config = ReassemblyConfig(compare_window=0)
    s = Stream(TcpReassembler(config), config)
    s.seg(1, b"", SYN)
    s.seg(2, b"GOOD")
    assert s.seg(2, b"EVIL") == []
    assert s.r.retransmitted_bytes == 4 and bytes(s.data) == b"GOOD"


def test_fin_that_overtakes_data_ends_the_stream_when_the_hole_fills() -> None:
    s = Stream(TcpReassembler())
    s.seg(10, b"", SYN)
    s.seg(11, b"abc")
    assert s.seg(17, b"ghi", ACK | FIN) == []
    s.seg(20, b"late")
    assert s.r.dropped_bytes == 4
    events = s.seg(14, b"def")
    assert [type(e) for e in events] == [StreamData, StreamData, StreamEnd]
    assert bytes(s.data) == b"abcdefghi" and s.end == StreamEnd(reason="fin", ts=0)


def test_fin_without_data_and_its_acknowledgement() -> None:
    s = Stream(TcpReassembler())
    s.seg(0, b"", SYN)
    s.seg(1, b"hello")
    s.seg(11, b"", ACK | FIN)
    assert s.end is None
    s.acked(12)
    assert s.gaps == [(5, 5)] and s.end is not None and s.end.reason == "fin"


def test_rst_flushes_holes_and_ends() -> None:
    s = Stream(TcpReassembler())
    s.seg(0, b"", SYN)
    s.seg(1, b"ab")
    s.seg(5, b"ef")
    events = s.seg(7, b"diagnostic", ACK | RST, ts=9)
    assert events == [
        StreamGap(offset=2, length=2, ts=9),
        StreamData(offset=4, data=b"ef", ts=9),
        StreamEnd(reason="rst", ts=9),
    ]
    assert s.seg(7, b"more") == [] and s.r.flush(10) == []
    assert s.r.dropped_bytes == len(b"diagnostic") + 4


def test_depth_limit_is_reported_once_and_fin_still_ends() -> None:
    config = ReassemblyConfig(depth=10)
    s = Stream(TcpReassembler(config), config)
    s.seg(0, b"", SYN)
    s.seg(1, b"0123456")
    events = s.seg(8, b"789abc")
    assert events == [StreamLimit(limit="depth", dropped=3, ts=0), StreamData(offset=7, data=b"789", ts=0)]
    assert s.seg(14, b"defg") == []
    s.seg(18, b"", ACK | FIN)
    assert bytes(s.data) == b"0123456789" and s.end is not None and s.end.reason == "fin"
    assert len(s.limits) == 1 and s.r.dropped_bytes == 7


def test_buffer_limit_gives_up_the_lowest_hole() -> None:
    config = ReassemblyConfig(max_buffered=5)
    s = Stream(TcpReassembler(config), config)
    s.seg(0, b"", SYN)
    s.seg(1, b"ab")
    s.seg(6, b"fgh")
    events = s.seg(10, b"jkl")
    assert events == [
        StreamLimit(limit="buffer", dropped=3, ts=0),
        StreamGap(offset=2, length=3, ts=0),
        StreamData(offset=5, data=b"fgh", ts=0),
    ]
    assert s.r.buffered == 3
    s.seg(9, b"i")
    assert bytes(s.data) == b"abfghijkl"


def test_segment_limit() -> None:
    config = ReassemblyConfig(max_segments=2)
    s = Stream(TcpReassembler(config), config)
    s.seg(0, b"", SYN)
    for offset in (2, 4, 6):
        s.seg(1 + offset, b"x")
    assert [e.limit for e in s.limits] == ["buffer"] and s.gaps == [(0, 2)]
    assert s.r.buffered_segments == 2


def test_memcap_is_shared_and_released() -> None:
    budget = ReassemblyBudget(10)
    a = Stream(TcpReassembler(budget=budget))
    b = Stream(TcpReassembler(budget=budget))
    a.seg(0, b"", SYN)
    b.seg(0, b"", SYN)
    a.seg(5, b"12345678")
    assert budget.used == 8 and budget.available == 2
    events = b.seg(5, b"abcd")
    assert events[0] == StreamLimit(limit="memcap", dropped=4, ts=0)
    assert budget.used == 8 and b.r.buffered == 0 and bytes(b.data) == b"abcd"
    a.r.release()
    assert budget.used == 0 and a.r.ended
    assert a.r.segment(1, b"x", 0, ACK) == []


def test_segments_beyond_any_window_and_stale_acks_are_ignored() -> None:
    s = Stream(TcpReassembler())
    s.seg(0, b"", SYN)
    s.seg(1 + (1 << 30) + 1, b"far", ACK | RST)
    assert s.end is None and s.r.dropped_bytes == 3
    s.seg(1, b"abc")
    assert s.acked(0) == [] and s.acked(4) == [] and s.acked(4 + (1 << 30) + 1) == []
    assert s.acked(1 << 31) == []


def test_pure_ack_does_not_start_a_pickup() -> None:
    """A keep-alive (SND.NXT - 1) must not fake a one-byte hole."""
    s = Stream(TcpReassembler())
    assert s.seg(999, b"") == [] and s.acked(5) == []
    s.seg(1000, b"data")
    assert s.gaps == [] and bytes(s.data) == b"data"


def test_flush_of_an_empty_direction_and_twice() -> None:
    r = TcpReassembler()
    assert r.flush(3) == [StreamEnd(reason="flow_end", ts=3)]
    assert r.flush(4) == [] and r.acked(1, 5) == []


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        ReassemblyConfig(depth=-1)
    with pytest.raises(TypeError):
        ReassemblyConfig(overlap_policy="first")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ReassemblyBudget(-1)


def test_reassemble_convenience() -> None:
    result = reassemble([(7, b"", 0, SYN), (12, b"fgh", 2, ACK), (8, b"abc", 1, ACK), (16, b"", 3, ACK | FIN)])
    assert isinstance(result, Reassembled)
    assert result.data == b"abcfgh" and result.gaps == ((3, 1), (7, 1))
    assert result.events[-1] == StreamEnd(reason="fin", ts=3)


# --------------------------------------------------------------------------- bounds at scale


def test_hundred_thousand_flows_share_one_budget() -> None:
    config = ReassemblyConfig(max_buffered=400, max_segments=3)
    budget = ReassemblyBudget(16_000_000)
    head = b"h" * 100
    body = b"b" * 250
    limits: Dict[str, int] = {"buffer": 0, "memcap": 0, "depth": 0}
    reassemblers = []
    for i in range(100_000):
        r = TcpReassembler(config, budget)
        reassemblers.append(r)
        isn = (i * 2654435761) % MOD
        for offset, payload in ((0, head), (1000, body), (1400, body)):
            for ev in r.segment((isn + offset) % MOD, payload, i, ACK):
                if isinstance(ev, StreamLimit):
                    limits[ev.limit] += 1
            assert budget.used <= budget.memcap
            assert r.buffered <= config.max_buffered
    assert limits["buffer"] > 0 and limits["memcap"] > 0
    assert budget.used == sum(r.buffered for r in reassemblers)
    for r in reassemblers:
        r.release()
    assert budget.used == 0


# --------------------------------------------------------------------------- corpus vs tshark


CAPTURES = (
    "zeek_tcp_reassembly.pcap",
    "suri_tcp-overlap.pcap",
    "zeek_pppoe-over-qinq.pcap",
    "ndpi_tumblr.pcap",
)


@dataclass(frozen=True)
class Segment:
    """One TCP segment as decoded from a capture."""

    ts: int
    src: str
    dst: str
    seq: int
    ack: int
    flags: int
    payload: bytes


def _endpoint(family: int, addr: bytes, port: int) -> str:
    """An endpoint spelled as tshark's follow names it."""
    text = socket.inet_ntop(family, addr)
    return f"[{text}]:{port}" if family == socket.AF_INET6 else f"{text}:{port}"


def tcp_segments(path: Path) -> Iterator[Segment]:
    """Every TCP segment of an Ethernet capture, in file order (VLAN, QinQ and PPPoE undone)."""
    with path.open("rb") as f:
        for ts, frame in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(frame)
            ip = eth.data
            if isinstance(ip, dpkt.pppoe.PPPoE):
                # dpkt trusts the IP length over the PPPoE one, so the padding of a
                # minimum-size Ethernet frame would become TCP payload: cut first.
                start = 14 + 4 * len(getattr(eth, "vlan_tags", None) or [])
                assert frame[start - 2 : start] == b"\x88\x64"
                ppp = frame[start + 6 : start + 6 + ip.len]
                ip = dpkt.ip.IP(ppp[2:]) if ppp[:2] == b"\x00\x21" else None
            if isinstance(ip, dpkt.ip.IP):
                family = socket.AF_INET
            elif isinstance(ip, dpkt.ip6.IP6):
                family = socket.AF_INET6
            else:
                continue
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP):
                continue
            yield Segment(
                ts=round(ts * 1_000_000_000),
                src=_endpoint(family, ip.src, tcp.sport),
                dst=_endpoint(family, ip.dst, tcp.dport),
                seq=tcp.seq,
                ack=tcp.ack,
                flags=tcp.flags,
                payload=bytes(tcp.data),
            )


@dataclass
class Side:
    """One direction of a corpus flow: its stream and where tshark's count starts."""

    stream: Stream
    first_seq: Optional[int] = None
    """Sequence number of the first segment of any kind (tshark's offset 0)."""
    start_seq: Optional[int] = None
    """Sequence number of the first segment that starts our stream."""
    before_flush: List[StreamEvent] = field(default_factory=list)


def replay(path: Path, config: ReassemblyConfig) -> Dict[FrozenSet[str], Dict[str, Side]]:
    """Feed each direction's segments in file order, with the peer's ACKs, like tshark's follow."""
    flows: Dict[FrozenSet[str], Dict[str, Side]] = {}
    for seg in tcp_segments(path):
        sides = flows.setdefault(frozenset((seg.src, seg.dst)), {})
        for endpoint in (seg.src, seg.dst):
            if endpoint not in sides:
                sides[endpoint] = Side(Stream(TcpReassembler(config), config))
        if seg.flags & ACK:
            sides[seg.dst].stream.acked(seg.ack, seg.ts)
        side = sides[seg.src]
        data_seq = (seg.seq + 1) % MOD if seg.flags & SYN else seg.seq
        if side.first_seq is None:
            side.first_seq = data_seq
        if side.start_seq is None and (seg.payload or seg.flags & (SYN | FIN | RST)):
            side.start_seq = data_seq
        side.stream.seg(seg.seq, seg.payload, seg.flags, seg.ts)
    for sides in flows.values():
        for side in sides.values():
            side.before_flush = list(side.stream.events)
            side.stream.flush()
    return flows


Run = Tuple[int, int, str, int]
"""A run of contiguous bytes: gap before it, length, sha256, stream offset."""


def runs_of(events: Sequence[StreamEvent]) -> List[Run]:
    """Delivered bytes cut at gaps, like the expectation files (trailing gaps dropped)."""
    runs: List[Run] = []
    gap = 0
    current = bytearray()
    start = 0
    for ev in events:
        if isinstance(ev, StreamData):
            if not current:
                start = ev.offset
            current += ev.data
        elif isinstance(ev, StreamGap):
            if current:
                runs.append((gap, len(current), hashlib.sha256(current).hexdigest(), start))
                current = bytearray()
                gap = 0
            gap += ev.length
    if current:
        runs.append((gap, len(current), hashlib.sha256(current).hexdigest(), start))
    return runs


@pytest.mark.parametrize("policy", list(OverlapPolicy), ids=lambda p: p.value)
@pytest.mark.parametrize("capture", CAPTURES)
@pytest.mark.corpus
def test_corpus_streams_match_tshark_follow(
    corpus_dir: Path, data_dir: Path, capture: str, policy: OverlapPolicy
) -> None:
    """Every direction of every stream against ``tshark -z follow,tcp,raw,N``.

    With the BSD policy every run of bytes must equal tshark's.  FIRST and
    LAST may differ only in runs where the capture itself holds two
    different versions of the same bytes, and the reassembler must have said
    so with a ``StreamOverlap(differs=True)`` inside that run.  tshark starts
    counting at a direction's first segment of any kind, we at the first one
    that carries data (see the module docstring): the leading gap is
    compared after taking that difference out.
    """
    path = corpus_dir / capture
    expected = json.loads((data_dir / "reassembly" / (path.stem + ".follow.json")).read_text())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected["sha256"]
    flows = replay(path, ReassemblyConfig(depth=1 << 40, overlap_policy=policy))
    assert len(flows) == len(expected["streams"])
    compared = 0
    for stream in expected["streams"]:
        sides = flows[frozenset(stream["nodes"])]
        for node, want in zip(stream["nodes"], stream["sides"]):
            side = sides[node]
            got = runs_of(side.before_flush)
            assert [(g, n) for g, n, _, _ in got][1:] == [(g, n) for g, n, _ in want["runs"]][1:]
            if got:
                assert side.first_seq is not None and side.start_seq is not None
                shift = (side.start_seq - side.first_seq) % MOD
                assert (got[0][0] + shift, got[0][1]) == tuple(want["runs"][0][:2])
            for (_, length, digest, start), (_, _, want_digest) in zip(got, want["runs"]):
                if digest == want_digest:
                    continue
                assert policy is not OverlapPolicy.BSD, f"stream {stream['stream']} {node}: run at {start}"
                assert any(
                    ov.differs and ov.offset < start + length and start < ov.offset + ov.length
                    for ov in side.stream.overlaps
                ), f"stream {stream['stream']} {node}: run at {start} differs without a reported overlap"
            compared += len(got)
            # flush only adds to the end: what tshark showed is untouched
            assert side.stream.events[: len(side.before_flush)] == side.before_flush
            assert side.stream.end is not None
    assert compared > 0


@pytest.mark.corpus
def test_corpus_overlap_with_different_data_is_reported(corpus_dir: Path) -> None:
    """suricata-verify's eve-overlap-payload-01: "GOOD" sent, then "EVIL" at the same place."""
    flows = replay(corpus_dir / "suri_tcp-overlap.pcap", ReassemblyConfig())
    (sides,) = flows.values()
    client = sides["1.1.1.1:12345"].stream
    assert bytes(client.data) == b"GOOD"
    assert [(o.offset, o.length, o.differs) for o in client.overlaps] == [(0, 4, True)]
