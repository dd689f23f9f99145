"""Tests of IP fragment reassembly (``flowscope._fragments`` through the decoder and tracker).

A UDP datagram is built whole by ``tests/packets.py`` and cut into IPv4 or
IPv6 fragments here, at 8-byte boundaries as RFC 791 and RFC 8200 require.
Whatever the delivery order (in order, reversed, shuffled by Hypothesis,
with duplicates and overlapping copies), the datagram must come out exactly
once, byte for byte, with every frame that carried it counted as a packet
of its flow and every frame's wire length counted as its bytes, as tshark
counts them in the corpus ground truth.  Floods of unfinished datagrams
must stay inside the configured bounds.
"""

from __future__ import annotations

import random
from typing import List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope import EndReason, FlowEnded, FlowTracker, FragmentConfig, TrackerConfig
from flowscope._decode import Decoded, Decoder
from flowscope._fragments import Defragmenter

import packets as P

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND
A4, B4 = P.ip("10.1.1.1"), P.ip("10.2.2.2")
A6, B6 = P.ip("2001:db8::a"), P.ip("2001:db8::b")


def datagram(size: int, sport: int = 5000, dport: int = 53, v6: bool = False) -> Tuple[bytes, bytes]:
    """A UDP datagram (header and payload) with a ``size``-byte payload, and that payload."""
    payload = bytes((i * 7 + 3) & 0xFF for i in range(size))
    src, dst = (A6, B6) if v6 else (A4, B4)
    return P.udp(sport, dport, payload, src=src, dst=dst), payload


def pieces(total: int, cuts: Sequence[int]) -> List[Tuple[int, int]]:
    """The ``[start, end)`` ranges between sorted cut points (multiples of 8)."""
    edges = [0, *sorted(set(c for c in cuts if 0 < c < total)), total]
    return [(a, b) for a, b in zip(edges, edges[1:])]


def frag4(l4: bytes, ranges: Sequence[Tuple[int, int]], ident: int = 0x4242, vlan: Optional[int] = None) -> List[bytes]:
    """Ethernet frames carrying IPv4 fragments of ``l4`` (a UDP datagram)."""
    out = []
    for a, b in ranges:
        pkt = P.ipv4(A4, B4, P.UDP, l4[a:b], ident=ident, more_fragments=b < len(l4), frag_offset=a)
        out.append(P.ether(P.ETH_IPV4, pkt) if vlan is None else P.ether_vlans([vlan], P.ETH_IPV4, pkt))
    return out


def frag6(l4: bytes, ranges: Sequence[Tuple[int, int]], ident: int = 0x77, hop_by_hop: bool = False) -> List[bytes]:
    """Ethernet frames carrying IPv6 fragments of ``l4``, optionally after a hop-by-hop header."""
    out = []
    for a, b in ranges:
        body = P.frag_header(P.UDP, a, b < len(l4), ident) + l4[a:b]
        if hop_by_hop:
            pkt = P.ipv6(A6, B6, P.HOPOPTS, P.ext_header(P.FRAGMENT) + body)
        else:
            pkt = P.ipv6(A6, B6, P.FRAGMENT, body)
        out.append(P.ether(P.ETH_IPV6, pkt))
    return out


def feed_decoder(frames: Sequence[bytes], dec: Optional[Decoder] = None) -> List[Tuple[int, Decoded]]:
    """Decode frames 10 ms apart; the (index, result) of every frame that gave a result."""
    d = dec if dec is not None else Decoder()
    out = []
    for i, f in enumerate(frames):
        r = d.decode(f, 1, T0 + i * 10_000_000, len(f))
        if r is not None:
            out.append((i, r))
    return out


def assert_rebuilt(results: List[Tuple[int, Decoded]], frames: Sequence[bytes], payload: bytes, v6: bool) -> None:
    """Exactly one result: the whole datagram, counting every frame up to the completing one."""
    assert len(results) == 1
    i, d = results[0]
    proto, src, dst, sport, dport = d[:5]
    assert (proto, sport, dport) == (P.UDP, 5000, 53)
    assert (src, dst) == ((A6, B6) if v6 else (A4, B4))
    assert d[9][d[10] : d[11]] == payload
    assert d[12] == len(payload)
    meta = d[13]
    assert meta is not None
    assert meta[2] == i + 1
    assert meta[3] == sum(len(f) for f in frames[: i + 1])


ORDERS = ["in-order", "reversed", "last-first", "shuffled"]


def _order(frames: List[bytes], how: str) -> List[bytes]:
    if how == "reversed":
        return frames[::-1]
    if how == "last-first":
        return frames[-1:] + frames[:-1]
    if how == "shuffled":
        out = frames[:]
        random.Random(7).shuffle(out)
        return out
    return frames


@pytest.mark.parametrize("how", ORDERS)
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_fragments_in_any_order(v6: bool, how: str) -> None:
    l4, payload = datagram(1000, v6=v6)
    ranges = pieces(len(l4), [248, 496, 744])
    frames = _order(frag6(l4, ranges) if v6 else frag4(l4, ranges), how)
    dec = Decoder()
    assert_rebuilt(feed_decoder(frames, dec), frames, payload, v6)
    assert dec.defrag.completed == 1
    assert dec.defrag.pending == 0 and dec.defrag.buffered_bytes == 0


def test_ipv6_fragments_after_an_extension_header() -> None:
    l4, payload = datagram(600, v6=True)
    frames = frag6(l4, pieces(len(l4), [200, 400]), hop_by_hop=True)
    assert_rebuilt(feed_decoder(frames), frames, payload, True)


def test_duplicates_count_as_packets_and_give_one_datagram() -> None:
    l4, payload = datagram(800)
    frames = frag4(l4, pieces(len(l4), [256, 512]))
    sent = [frames[0], frames[1], frames[0], frames[1], frames[2]]
    dec = Decoder()
    assert_rebuilt(feed_decoder(sent, dec), sent, payload, False)
    assert dec.defrag.completed == 1


def test_overlapping_fragments_give_the_original_datagram() -> None:
    l4, payload = datagram(700, v6=True)
    ranges = [(0, 304), (200, 504), (496, len(l4)), (104, 208)]
    frames = frag6(l4, ranges)
    dec = Decoder()
    assert_rebuilt(feed_decoder(frames, dec), frames, payload, True)
    assert dec.defrag.overlaps >= 2


def test_overlap_policy_lower_offset_wins() -> None:
    # The module's documented policy (BSD): bytes from the fragment with the lower offset win.
    d = Defragmenter(FragmentConfig())
    key = ("k",)
    assert d.add(key, 0, 100, 8, True, b"B" * 16, b"", None, None) is None
    assert d.add(key, 0, 100, 24, False, b"C" * 8, b"", None, None) is None
    done = d.add(key, 0, 100, 0, True, b"A" * 16, b"H", None, None)
    assert done is not None
    header, payload, npk, nbytes, _, _ = done
    assert header == b"H"
    assert payload == b"A" * 16 + b"B" * 8 + b"C" * 8
    assert (npk, nbytes) == (3, 300)


@st.composite
def deliveries(draw: st.DrawFn) -> Tuple[bool, bytes, bytes, List[Tuple[int, int]]]:
    """A datagram, a partition into 2+ fragments, extra overlapping copies and a delivery order."""
    v6 = draw(st.booleans())
    l4, payload = datagram(draw(st.integers(9, 900)), v6=v6)
    n8 = (len(l4) - 1) // 8  # 8 * n8 is the last offset a fragment can start at
    cuts = draw(st.lists(st.integers(1, n8).map(lambda k: 8 * k), min_size=1, max_size=8))
    ranges = pieces(len(l4), cuts)
    extra = draw(
        st.lists(
            st.tuples(st.integers(0, n8), st.integers(1, 20))
            .map(lambda t: (8 * t[0], min(len(l4), 8 * (t[0] + t[1]))))
            .filter(lambda r: r != (0, len(l4))),
            max_size=4,
        )
    )
    order = draw(st.permutations(ranges + extra))
    return v6, l4, payload, list(order)


def first_cover(order: Sequence[Tuple[int, int]], total: int) -> int:
    """Index of the first delivery after which the ranges delivered so far cover ``[0, total)``."""
    have: List[Tuple[int, int]] = []
    for i, r in enumerate(order):
        have.append(r)
        reach = 0
        for a, b in sorted(have):
            if a > reach:
                break
            reach = max(reach, b)
        if reach >= total:
            return i
    raise AssertionError("the deliveries never cover the datagram")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=deliveries())
def test_any_delivery_gives_the_datagram_once(case: Tuple[bool, bytes, bytes, List[Tuple[int, int]]]) -> None:
    v6, l4, payload, order = case
    frames = frag6(l4, order) if v6 else frag4(l4, order)
    results = feed_decoder(frames)
    assert results, "the datagram was never rebuilt"
    # The first result is the datagram, completed exactly when the pieces first cover it.
    assert results[0][0] == first_cover(order, len(l4))
    assert_rebuilt(results[:1], frames, payload, v6)


def test_rebuilt_datagram_is_one_flow_counting_every_fragment() -> None:
    l4, payload = datagram(1400)
    frames = frag4(l4, pieces(len(l4), [480, 960]), vlan=77)
    reply = P.ether_vlans([77], P.ETH_IPV4, P.ipv4(B4, A4, P.UDP, P.udp(53, 5000, b"ok", src=B4, dst=A4)))
    tr = FlowTracker()
    evs = []
    for i, f in enumerate(frames + [reply]):
        evs += tr.feed(T0 + i * 1000, f)
    evs += tr.flush()
    recs = [e for e in evs if isinstance(e, FlowEnded)]
    assert len(recs) == 1
    r = recs[0]
    assert (r.flow.orig.addr, r.flow.orig.port, r.flow.resp.port) == ("10.1.1.1", 5000, 53)
    assert r.stats.orig.packets == 3
    assert r.stats.orig.bytes == sum(len(f) for f in frames)
    assert r.stats.orig.payload_bytes == 1400
    assert (r.stats.resp.packets, r.stats.resp.bytes, r.stats.resp.payload_bytes) == (1, len(reply), 2)
    assert r.flow.vlan == (77,)
    assert tr.stats.as_dict()["fragments_completed"] == 1


def test_fragmented_tunnel_and_fragments_inside_a_tunnel() -> None:
    # Outer IPv4 datagram carrying GRE, fragmented: the rebuilt datagram's tunnel is found.
    inner = P.ipv4(A4, B4, P.UDP, P.udp(5000, 53, b"q" * 300, src=A4, dst=B4))
    outer_l4 = P.gre(P.ETH_IPV4, inner)
    c, d = P.ip("192.0.2.1"), P.ip("192.0.2.2")
    outer = [
        P.ether(P.ETH_IPV4, P.ipv4(c, d, P.GRE, outer_l4[a:b], ident=5, more_fragments=b < len(outer_l4),
                                   frag_offset=a))
        for a, b in pieces(len(outer_l4), [160])
    ]
    res = feed_decoder(outer)
    assert len(res) == 1
    r = res[0][1]
    assert r[:5] == (P.UDP, A4, B4, 5000, 53)
    assert r[13] is not None and r[13][1] == ("gre",) and r[13][2] == 2
    # Inner IPv6 fragments inside GRE: the tunnel of the first fragment stays on the datagram.
    l4, payload = datagram(500, v6=True)
    inner_frames = [
        P.ether(P.ETH_IPV4, P.ipv4(c, d, P.GRE, P.gre(P.ETH_IPV6, six)))
        for six in (
            P.ipv6(A6, B6, P.FRAGMENT, P.frag_header(P.UDP, a, b < len(l4), 9) + l4[a:b])
            for a, b in pieces(len(l4), [256])
        )
    ]
    res = feed_decoder(inner_frames[::-1])
    assert len(res) == 1
    r = res[0][1]
    assert r[:5] == (P.UDP, A6, B6, 5000, 53) and r[9][r[10] : r[11]] == payload
    assert r[13] is not None and r[13][1] == ("gre",)


# ----------------------------------------------------------------------------- time and bounds


def test_incomplete_datagram_expires_after_the_timeout() -> None:
    dec = Decoder(FragmentConfig(timeout_ns=30 * SECOND))
    l4, _ = datagram(600)
    first, second = frag4(l4, pieces(len(l4), [304]), ident=1)
    other = frag4(datagram(100)[0], [(0, 56)], ident=2)[0]
    assert dec.decode(first, 1, T0, len(first)) is None
    assert dec.decode(other, 1, T0 + 29 * SECOND, len(other)) is None
    assert (dec.defrag.expired, dec.defrag.pending) == (0, 2)
    # 31 s after the first fragment: ident 1 is dropped; ident 2, first seen 2 s earlier, stays.
    assert dec.decode(other, 1, T0 + 31 * SECOND, len(other)) is None
    assert (dec.defrag.expired, dec.defrag.pending) == (1, 1)
    # The second half of ident 1 now starts a new datagram instead of completing the old one.
    assert dec.decode(second, 1, T0 + 31 * SECOND, len(second)) is None
    assert (dec.defrag.completed, dec.defrag.pending) == (0, 2)


def test_expiry_is_packet_time_and_counted_by_the_tracker() -> None:
    tr = FlowTracker(TrackerConfig(fragments=FragmentConfig(timeout_ns=30 * SECOND)))
    l4, _ = datagram(600)
    first, second = frag4(l4, pieces(len(l4), [304]), ident=1)
    tr.feed(T0, first)
    ping = P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.ICMP, P.icmp(8, 0)))
    tr.feed(T0 + 31 * SECOND, ping)
    assert tr.feed(T0 + 31 * SECOND, second) == []  # the first half is gone: no datagram
    assert tr.stats.as_dict()["fragments_expired"] == 1
    assert tr.stats.as_dict()["fragments_completed"] == 0
    evs = tr.flush()
    assert tr.stats.as_dict()["fragments_expired"] == 2  # flush gives up the second half too
    assert all(e.flow.proto == P.ICMP for e in evs if isinstance(e, FlowEnded))
    assert [e.end_reason for e in evs if isinstance(e, FlowEnded)] == [EndReason.END_OF_INPUT]


def test_flood_of_unfinished_datagrams_is_bounded() -> None:
    cfg = FragmentConfig(max_datagrams=16, max_bytes=4096, max_fragments=4)
    dec = Decoder(cfg)
    for i in range(2000):
        f = frag4(bytes(400), [(0, 200)], ident=i)[0]
        dec.decode(f, 1, T0 + i, len(f))
        assert dec.defrag.pending <= 16
        assert dec.defrag.buffered_bytes <= 4096
    assert dec.defrag.expired >= 2000 - 16


def test_too_many_fragments_of_one_datagram_are_refused() -> None:
    cfg = FragmentConfig(max_fragments=4)
    d = Defragmenter(cfg)
    for k in range(10):
        d.add("x", T0, 60, 8 * k, True, b"z" * 8, b"", None, None)
        assert d.buffered_bytes <= 4 * 8
    assert d.dropped >= 1


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 64), st.booleans(), st.integers(1, 700), st.integers(0, 3)),
        max_size=120,
    )
)
def test_bounds_hold_under_any_flood(ops: List[Tuple[int, int, bool, int, int]]) -> None:
    cfg = FragmentConfig(max_datagrams=8, max_bytes=2048, max_fragments=5, timeout_ns=5 * SECOND)
    d = Defragmenter(cfg)
    ts = T0
    for key, off8, more, size, dt in ops:
        ts += dt * SECOND
        d.add(key, ts, size + 34, 8 * off8, more, bytes(size), b"h", None, None)
        assert d.pending <= cfg.max_datagrams
        assert d.buffered_bytes <= cfg.max_bytes
        assert d.buffered_bytes >= 0


def test_one_fragment_larger_than_max_bytes_is_refused() -> None:
    d = Defragmenter(FragmentConfig(max_bytes=1000))
    d.add("a", T0, 1500, 0, True, bytes(1400), b"h", None, None)
    assert d.buffered_bytes <= 1000
