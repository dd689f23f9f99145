"""Tests of the application-layer engine (``flowscope._l7.L7``) behind a real tracker.

The engine is driven the way a user drives it: handmade frames
(``tests/packets.py``) fed to a :class:`~flowscope.FlowTracker` with
``l7=L7(factories, config)``.  The factories are small fakes that record
every call, so each test states exactly what the plugin contract of
``docs/plugins.md`` promises: classification by content whatever the port,
port hints that only order the questions, ``NEED_MORE`` with replay of the
buffered chunks in arrival order, ``NO_MATCH`` that ends reassembly for the
flow, gaps, overlaps and bounds reported as the contract says, and a
memory budget that holds across 100k flows.  Real HTTP and TLS factories
check port independence with real protocols.
"""

from __future__ import annotations

import struct
import time
from typing import Any, Callable, FrozenSet, Iterable, List, Optional, Sequence, Tuple

import pytest

from flowscope import FlowEnded, FlowTracker, L7, L7Config, Notice, ReassemblyConfig, SessionRecord, TrackerConfig
from flowscope._tracker import Flow
from flowscope.parsers import http as http_parser
from flowscope.parsers import tls as tls_parser
from flowscope_core import Detection, Direction, FlowEvent, FlowInfo, MissingExtraError, Orientation, Timestamp

import packets as P
from packets import ACK, FIN, PSH, SYN

SECOND = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * SECOND
PA = PSH | ACK
ORIG, RESP = Direction.ORIG, Direction.RESP
C, S = True, False  # who sends: the client (SYN sender) or the server

# --------------------------------------------------------------------------- fakes

Verdict = Callable[[Direction, bytes], Detection]
Call = Tuple[Any, ...]


class RecordingParser:
    """A SessionParser and DatagramParser that records every call and returns nothing."""

    def __init__(self, flow: FlowInfo) -> None:
        self.flow = flow
        self.calls: List[Call] = []

    def data(self, direction: Direction, data: bytes, ts: Timestamp) -> Sequence[Any]:
        self.calls.append(("data", direction, bytes(data), ts))
        return ()

    def gap(self, direction: Direction, length: int, ts: Timestamp) -> Sequence[Any]:
        self.calls.append(("gap", direction, length, ts))
        return ()

    def end(self, direction: Direction, ts: Timestamp) -> Sequence[Any]:
        self.calls.append(("end", direction, ts))
        return ()

    def datagram(self, direction: Direction, payload: bytes, ts: Timestamp) -> Sequence[Any]:
        self.calls.append(("datagram", direction, bytes(payload), ts))
        return ()

    def close(self, ts: Timestamp) -> Sequence[Any]:
        self.calls.append(("close", ts))
        return ()

    def stream(self, direction: Direction) -> bytes:
        """Every byte ``data`` received for ``direction``, joined."""
        return b"".join(c[2] for c in self.calls if c[0] == "data" and c[1] is direction)


def match_prefix(prefix: bytes) -> Verdict:
    """MATCH when a direction starts with ``prefix``, NEED_MORE while it still may."""

    def verdict(direction: Direction, data: bytes) -> Detection:
        if data.startswith(prefix):
            return Detection.MATCH
        if prefix.startswith(data):
            return Detection.NEED_MORE
        return Detection.NO_MATCH

    return verdict


def always(answer: Detection) -> Verdict:
    """The same answer whatever the bytes."""
    return lambda direction, data: answer


class FakeFactory:
    """A factory (TCP, or UDP with ``udp=True``) whose ``detect`` follows ``verdict`` and records its questions."""

    def __init__(self, name: str, verdict: Verdict, *, ports: Iterable[int] = (), udp: bool = False,
                 missing: Optional[MissingExtraError] = None) -> None:  # fmt: skip
        self._name = name
        self._ports = frozenset(ports)
        self._verdict = verdict
        self._missing = missing
        self.asked: List[Tuple[Direction, bytes]] = []
        self.parsers: List[RecordingParser] = []
        if udp:
            self.create_datagram = self._make
        else:
            self.create = self._make

    @property
    def name(self) -> str:
        return self._name

    @property
    def ports(self) -> FrozenSet[int]:
        return self._ports

    def detect(self, direction: Direction, data: bytes, flow: FlowInfo) -> Detection:
        self.asked.append((direction, bytes(data)))
        return self._verdict(direction, data)

    def _make(self, flow: FlowInfo) -> RecordingParser:
        if self._missing is not None:
            raise self._missing
        p = RecordingParser(flow)
        self.parsers.append(p)
        return p

    @property
    def parser(self) -> RecordingParser:
        """The one parser this factory made."""
        assert len(self.parsers) == 1, self.parsers
        return self.parsers[0]


# --------------------------------------------------------------------------- traffic


class Conv:
    """Both ends of one TCP connection, seen by a tracker; sequence numbers kept like a real stack's."""

    def __init__(self, tracker: FlowTracker, *, client: Tuple[str, int] = ("10.0.0.1", 40000),
                 server: Tuple[str, int] = ("10.0.0.2", 5555), t0: int = T0) -> None:  # fmt: skip
        self.tr = tracker
        self.addr = {C: P.ip(client[0]), S: P.ip(server[0])}
        self.port = {C: client[1], S: server[1]}
        self.isn = {C: 1000, S: 0x7FFFFF00}
        self.nxt = {C: 1000, S: 0x7FFFFF00}  # next sequence number each side sends in order
        self.t = t0
        self.events: List[FlowEvent] = []

    def frame(self, who: bool, flags: int, payload: bytes, seq: int, ack: int) -> bytes:
        src, dst = self.addr[who], self.addr[not who]
        seg = P.tcp(self.port[who], self.port[not who], flags, seq=seq, ack=ack, payload=payload, src=src, dst=dst)
        return P.ether(P.ETH_IPV4, P.ipv4(src, dst, P.TCP, seg))

    def send(self, who: bool, flags: int, payload: bytes = b"", *, at: Optional[int] = None,
             ack: Optional[int] = None) -> List[FlowEvent]:  # fmt: skip
        """Send a segment; ``at`` is a stream offset (out of order: the in-order point does not move).

        ``ack`` defaults to everything the other side sent in order, as a real receiver would.
        """
        base = (self.isn[who] + 1) & 0xFFFFFFFF
        if at is None:
            seq = self.nxt[who]
            self.nxt[who] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        else:
            seq = (base + at) & 0xFFFFFFFF
        if ack is None:
            ack = self.nxt[not who] if flags & ACK else 0
        self.t += MS
        evs = self.tr.feed(self.t, self.frame(who, flags, payload, seq, ack))
        self.events.extend(evs)
        return evs

    def skip(self, who: bool, n: int) -> None:
        """``who`` sent ``n`` bytes that the capture lost."""
        self.nxt[who] = (self.nxt[who] + n) & 0xFFFFFFFF

    def offset(self, who: bool) -> int:
        """Stream offset of ``who``'s next in-order byte."""
        return (self.nxt[who] - self.isn[who] - 1) & 0xFFFFFFFF

    def handshake(self) -> None:
        self.send(C, SYN)
        self.send(S, SYN | ACK)
        self.send(C, ACK)

    def close(self) -> None:
        self.send(C, FIN | ACK)
        self.send(S, FIN | ACK)
        self.send(C, ACK)

    def flush(self) -> List[FlowEvent]:
        evs = self.tr.flush()
        self.events.extend(evs)
        return evs

    def flow(self) -> Flow:
        """The tracker's live state of this connection (the engine's view of it)."""
        (f,) = self.tr._table.values()
        return f


def tracker(factories: Sequence[Any], config: Optional[L7Config] = None) -> Tuple[FlowTracker, L7]:
    engine = L7(factories, config)
    return FlowTracker(l7=engine), engine


def records(events: Iterable[FlowEvent]) -> List[SessionRecord]:
    return [e for e in events if isinstance(e, SessionRecord)]


def notices(events: Iterable[FlowEvent], kind: str) -> List[Notice]:
    return [e for e in events if isinstance(e, Notice) and e.kind == kind]


def flow_records(events: Iterable[FlowEvent]) -> List[FlowEnded]:
    return [e for e in events if isinstance(e, FlowEnded)]


def udp_frame(src: Tuple[str, int], dst: Tuple[str, int], payload: bytes) -> bytes:
    s, d = P.ip(src[0]), P.ip(dst[0])
    return P.ether(P.ETH_IPV4, P.ipv4(s, d, P.UDP, P.udp(src[1], dst[1], payload, src=s, dst=d)))


# --------------------------------------------------------------------------- real protocols, unusual ports


def client_hello(server_name: str) -> bytes:
    """A TLS 1.2 ClientHello record with an SNI extension (RFC 5246 7.4.1.2, RFC 6066 3)."""
    name = server_name.encode("ascii")
    sni_list = struct.pack("!BH", 0, len(name)) + name
    sni = struct.pack("!H", len(sni_list)) + sni_list
    extensions = struct.pack("!HH", 0, len(sni)) + sni
    body = (
        b"\x03\x03" + bytes(range(32))  # client_version, random
        + b"\x00"  # session_id
        + struct.pack("!H", 4) + b"\xc0\x2f\x00\x9c"  # cipher_suites
        + b"\x01\x00"  # compression_methods: null
        + struct.pack("!H", len(extensions)) + extensions
    )  # fmt: skip
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def real_factories() -> List[Any]:
    # HTTP first: on port 80 it would be asked first anyway; TLS must still win there.
    return [http_parser.factory(), tls_parser.factory()]


def test_http_request_on_port_5555_is_http() -> None:
    tr, _ = tracker(real_factories())
    conv = Conv(tr, server=("10.0.0.2", 5555))
    conv.handshake()
    conv.send(C, PA, b"GET /status HTTP/1.1\r\nHost: example.test\r\n\r\n")
    conv.send(S, PA, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    conv.close()
    conv.flush()
    (flow,) = flow_records(conv.events)
    assert flow.service == "http"
    (rec,) = records(conv.events)
    ev: Any = rec.event
    assert (ev.event_type, ev.method, ev.host, ev.uri, ev.status_code) == ("http", "GET", "example.test", "/status", 200)


def test_tls_on_port_80_is_tls() -> None:
    tr, _ = tracker(real_factories())
    conv = Conv(tr, server=("10.0.0.2", 80))
    conv.handshake()
    conv.send(C, PA, client_hello("tls.example.test"))
    conv.close()
    conv.flush()
    (flow,) = flow_records(conv.events)
    assert flow.service == "tls"
    recs = records(conv.events)
    assert [r.event.event_type for r in recs] == ["tls"]
    ev: Any = recs[0].event
    assert ev.server_name == "tls.example.test"


# --------------------------------------------------------------------------- ordering by port hints


def test_port_hints_order_detection_but_do_not_decide() -> None:
    first = FakeFactory("first", always(Detection.MATCH))
    hinted = FakeFactory("hinted", always(Detection.MATCH), ports={5555})
    # On the hinted port the hinted factory is asked first, though listed second.
    tr, _ = tracker([first, hinted])
    conv = Conv(tr, server=("10.0.0.2", 5555))
    conv.handshake()
    conv.send(C, PA, b"hello")
    assert conv.flow().service == "hinted"
    assert first.asked == [] and hinted.asked == [(ORIG, b"hello")]
    # On another port the list order decides.
    first2 = FakeFactory("first", always(Detection.MATCH))
    hinted2 = FakeFactory("hinted", always(Detection.MATCH), ports={5555})
    tr, _ = tracker([first2, hinted2])
    conv = Conv(tr, server=("10.0.0.2", 6666))
    conv.handshake()
    conv.send(C, PA, b"hello")
    assert conv.flow().service == "first"
    assert hinted2.asked == []


def test_a_hinted_factory_that_says_no_does_not_get_the_flow() -> None:
    hinted = FakeFactory("hinted", always(Detection.NO_MATCH), ports={5555})
    other = FakeFactory("other", match_prefix(b"hello"))
    tr, _ = tracker([hinted, other])
    conv = Conv(tr, server=("10.0.0.2", 5555))
    conv.handshake()
    conv.send(C, PA, b"hello world")
    conv.send(C, PA, b"more")
    assert conv.flow().service == "other"
    assert hinted.asked == [(ORIG, b"hello world")]  # asked once: NO_MATCH is final for the flow
    assert hinted.parsers == [] and other.parser.stream(ORIG) == b"hello worldmore"


def test_client_port_hint_counts_too() -> None:
    plain = FakeFactory("plain", always(Detection.MATCH))
    hinted = FakeFactory("hinted", always(Detection.MATCH), ports={40000})
    tr, _ = tracker([plain, hinted])
    conv = Conv(tr, client=("10.0.0.1", 40000), server=("10.0.0.2", 6666))
    conv.handshake()
    conv.send(C, PA, b"x")
    assert conv.flow().service == "hinted"


# --------------------------------------------------------------------------- NEED_MORE and replay


def test_need_more_waits_and_replays_chunks_in_arrival_order_across_directions() -> None:
    # Decides on the client's first 5 bytes; the server's bytes never decide.
    def verdict(direction: Direction, data: bytes) -> Detection:
        if direction is RESP:
            return Detection.NEED_MORE
        return match_prefix(b"MAGIC")(direction, data)

    f = FakeFactory("magic", verdict)
    tr, _ = tracker([f])
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"MA")
    conv.send(S, PA, b"srv1")
    conv.send(C, PA, b"G")
    conv.send(S, PA, b"srv2")
    assert f.parsers == []
    t_match = conv.t + MS
    conv.send(C, PA, b"IC+rest")
    conv.send(S, PA, b"srv3")
    p = f.parser
    got = [(c[1], c[2]) for c in p.calls if c[0] == "data"]
    assert got == [(ORIG, b"MA"), (RESP, b"srv1"), (ORIG, b"G"), (RESP, b"srv2"), (ORIG, b"IC+rest"), (RESP, b"srv3")]
    # Replayed chunks keep the time of the segment that made them deliverable.
    times = [c[3] for c in p.calls if c[0] == "data"]
    assert times == sorted(times) and times[4] == t_match
    # detect saw each direction's first bytes joined, never the other direction's.
    assert f.asked == [(ORIG, b"MA"), (RESP, b"srv1"), (ORIG, b"MAG"), (RESP, b"srv1srv2"), (ORIG, b"MAGIC+rest")]
    assert conv.flow().service == "magic"


def test_replay_keeps_out_of_order_segments_in_stream_order() -> None:
    f = FakeFactory("magic", match_prefix(b"MAGIC"))
    tr, _ = tracker([f])
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"GIC!", at=2, ack=conv.nxt[S])  # arrives first, held by reassembly
    conv.send(C, PA, b"MA", at=0, ack=conv.nxt[S])
    assert f.asked == [(ORIG, b"MA"), (ORIG, b"MAGIC!")]
    assert f.parser.stream(ORIG) == b"MAGIC!"


def test_detect_is_shown_at_most_detect_bytes() -> None:
    f = FakeFactory("late", lambda d, data: Detection.MATCH if len(data) >= 8 else Detection.NEED_MORE)
    tr, _ = tracker([f], L7Config(detect_bytes=8))
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"12345")
    conv.send(C, PA, b"6789abc")
    assert f.asked == [(ORIG, b"12345"), (ORIG, b"12345678")]
    assert f.parser.stream(ORIG) == b"123456789abc"  # the parser gets everything, not only what detect saw


def test_detection_gives_up_once_a_direction_is_past_detect_bytes() -> None:
    f = FakeFactory("never", always(Detection.NEED_MORE))
    tr, engine = tracker([f], L7Config(detect_bytes=16))
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"c" * 10)
    conv.send(S, PA, b"s" * 10)
    assert conv.flow().l7 is not False
    conv.send(C, PA, b"c" * 10)  # a whole detect window of the client left every factory undecided
    assert conv.flow().l7 is False
    asked = len(f.asked)
    conv.send(C, PA, b"c" * 10)
    conv.send(S, PA, b"x" * 10, at=conv.offset(S) + 100)  # out of order: would be buffered
    assert len(f.asked) == asked and engine.budget.used == 0
    conv.flush()
    assert flow_records(conv.events)[0].service is None


def test_detection_gives_up_when_one_direction_is_past_detect_bytes_and_the_other_silent() -> None:
    f = FakeFactory("never", always(Detection.NEED_MORE))
    tr, _ = tracker([f], L7Config(detect_bytes=16))
    conv = Conv(tr)
    conv.handshake()
    conv.send(S, PA, b"s" * 10)
    assert conv.flow().l7 is not False
    conv.send(S, PA, b"s" * 10)
    assert conv.flow().l7 is False


def _held_for_detection(flow: Flow) -> int:
    """Stream bytes the engine holds for a flow while detection is pending (its ``_Session.pending``)."""
    s: Any = flow.l7
    return sum(len(chunk[1]) for chunk in s.pending) if s not in (None, False) else 0


def test_bytes_held_for_detection_are_bounded_by_detect_bytes() -> None:
    f = FakeFactory("never", always(Detection.NEED_MORE))
    detect = 64
    tr, engine = tracker([f], L7Config(detect_bytes=detect))
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"hi")  # the client says a little, then only the server talks
    for _ in range(200):
        conv.send(S, PA, b"s" * 1000)
        # One chunk may straddle the limit; more than that is unbounded growth.
        assert _held_for_detection(conv.flow()) <= 2 + detect + 1000
    assert engine.budget.used == 0


# --------------------------------------------------------------------------- directions


def test_directions_are_relative_to_the_originator_whoever_is_seen_first() -> None:
    f = FakeFactory("any", always(Detection.MATCH))
    tr, _ = tracker([f])
    conv = Conv(tr)
    # The SYN was not captured: the SYN-ACK's receiver is the originator.
    conv.send(S, SYN | ACK, ack=conv.isn[C] + 1)
    conv.nxt[C] += 1
    conv.send(C, ACK)
    conv.send(S, PA, b"banner")
    conv.send(C, PA, b"request")
    info = f.parser.flow
    assert info.orientation is Orientation.SYN_ACK
    assert (info.orig.port, info.resp.port) == (40000, 5555)
    assert f.parser.stream(ORIG) == b"request" and f.parser.stream(RESP) == b"banner"


def test_midstream_pickup_makes_the_first_sender_the_originator() -> None:
    f = FakeFactory("any", always(Detection.MATCH))
    tr, _ = tracker([f])
    conv = Conv(tr)
    conv.send(S, PA, b"response first")
    conv.send(C, PA, b"then a request")
    info = f.parser.flow
    assert info.orientation is Orientation.FIRST_PACKET
    assert (info.orig.port, info.resp.port) == (5555, 40000)  # the server, seen first, is ORIG
    assert f.parser.stream(ORIG) == b"response first" and f.parser.stream(RESP) == b"then a request"


# --------------------------------------------------------------------------- NO_MATCH


def test_no_match_everywhere_stops_reassembly_for_the_flow() -> None:
    a = FakeFactory("a", always(Detection.NO_MATCH))
    b = FakeFactory("b", match_prefix(b"BBB"))
    tr, engine = tracker([a, b], L7Config(memcap=1 << 20))
    conv = Conv(tr)
    conv.handshake()
    assert conv.flow().l7 is not False  # a session exists once packets were handed over
    conv.send(C, PA, b"xyz")
    assert conv.flow().l7 is False
    assert a.asked == [(ORIG, b"xyz")] and b.asked == [(ORIG, b"xyz")]
    conv.send(S, PA, b"BBB")  # the other direction is not asked any more
    conv.send(C, PA, b"out of order", at=conv.offset(C) + 50)
    assert b.asked == [(ORIG, b"xyz")] and engine.budget.used == 0
    conv.close()
    conv.flush()
    assert flow_records(conv.events)[0].service is None
    assert b.parsers == []


def test_flows_of_other_protocols_never_start_a_session() -> None:
    f = FakeFactory("tcp-only", always(Detection.MATCH))
    tr, _ = tracker([f])
    tr.feed(T0, udp_frame(("10.0.0.1", 1000), ("10.0.0.2", 2000), b"datagram"))
    (flow,) = tr._table.values()
    assert flow.l7 is False and f.asked == []


# --------------------------------------------------------------------------- gaps, overlaps, bounds


def test_gaps_reach_the_parser_and_the_flow_record() -> None:
    f = FakeFactory("any", always(Detection.MATCH))
    tr, _ = tracker([f])
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"head")
    conv.skip(C, 100)  # lost in the capture...
    conv.send(C, PA, b"tail")  # ...so this waits behind a hole
    assert [c[0] for c in f.parser.calls] == ["data"]
    conv.send(S, ACK)  # the server acknowledged the lost bytes: they will never come
    conv.send(S, PA, b"resp")
    conv.skip(S, 7)
    conv.send(S, PA, b"more")  # this hole is only given up when the flow ends
    conv.flush()
    assert [c[:3] if c[0] in ("data", "gap") else c[:2] for c in f.parser.calls] == [
        ("data", ORIG, b"head"),
        ("gap", ORIG, 100),  # at the server's ACK
        ("data", ORIG, b"tail"),
        ("data", RESP, b"resp"),
        ("end", ORIG),  # the flow ends: each direction is flushed and ended, then the parser closed
        ("gap", RESP, 7),
        ("data", RESP, b"more"),
        ("end", RESP),
        ("close", conv.t),
    ]
    (flow,) = flow_records(conv.events)
    assert flow.stats.missed_bytes == 107


def test_a_gap_before_classification_stops_the_flow_but_is_counted() -> None:
    f = FakeFactory("never", always(Detection.NEED_MORE))
    tr, _ = tracker([f])
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"ab")
    conv.skip(C, 30)
    conv.send(C, PA, b"cd")
    conv.send(S, ACK)
    assert conv.flow().l7 is False
    conv.flush()
    assert flow_records(conv.events)[0].stats.missed_bytes == 30


def test_overlapping_different_bytes_give_a_notice() -> None:
    f = FakeFactory("any", always(Detection.MATCH))
    tr, _ = tracker([f])
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"GOOD")
    off = conv.offset(C)
    conv.send(C, PA, b"EVIL", at=off - 4, ack=conv.nxt[S])  # a retransmission with other bytes
    conv.send(C, PA, b"later", at=off + 10, ack=conv.nxt[S])  # held out of order...
    conv.send(C, PA, b"LATER", at=off + 10, ack=conv.nxt[S])  # ...and overlapped with other bytes
    conv.send(C, PA, b"later", at=off + 10, ack=conv.nxt[S])  # same bytes again: no notice
    found = notices(conv.events, "tcp_overlap_mismatch")
    assert [dict(n.details) for n in found] == [
        {"direction": "orig", "offset": 0, "length": 4},
        {"direction": "orig", "offset": 14, "length": 5},
    ]
    assert all(n.flow is not None and n.flow.resp.port == 5555 for n in found)
    assert f.parser.stream(ORIG) == b"GOOD"  # delivered bytes are never replaced


def test_reassembly_bounds_give_notices() -> None:
    f = FakeFactory("any", always(Detection.MATCH))
    cfg = L7Config(reassembly=ReassemblyConfig(depth=64, max_buffered=32), memcap=1 << 20)
    tr, _ = tracker([f], cfg)
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"a" * 8)
    conv.send(C, PA, b"b" * 20, at=18, ack=conv.nxt[S])
    conv.send(C, PA, b"c" * 20, at=40, ack=conv.nxt[S])  # 40 bytes held > 32: the first hole is given up
    conv.send(S, PA, b"z" * 100)  # past depth 64
    buf = notices(conv.events, "reassembly_limit")
    details = [dict(n.details) for n in buf]
    assert details == [
        {"direction": "orig", "limit": "buffer", "dropped": 10},
        {"direction": "resp", "limit": "depth", "dropped": 36},
    ]
    assert ("gap", ORIG, 10) in [c[:3] for c in f.parser.calls]
    conv.send(S, PA, b"y" * 10)
    conv.send(S, FIN | ACK)
    # Past the depth the parser gets nothing more, not even a gap; the direction still ends.
    resp = [c[0] for c in f.parser.calls if c[0] != "close" and c[1] is RESP]
    assert resp == ["data", "end"] and f.parser.stream(RESP) == b"z" * 64


def test_memcap_gives_a_notice_and_holds() -> None:
    f = FakeFactory("any", always(Detection.MATCH))
    tr, engine = tracker([f], L7Config(memcap=100))
    convs = [Conv(tr, client=("10.0.0.1", 40000 + i)) for i in range(3)]
    for conv in convs:
        conv.handshake()
        conv.send(C, PA, b"x")
        conv.send(C, PA, b"y" * 60, at=conv.offset(C) + 5, ack=conv.nxt[S])
        assert engine.budget.used <= 100
    # The first flow's 60 bytes fit; each later one would pass 100 and gives up its own hole.
    limits = [[dict(n.details) for n in notices(conv.events, "reassembly_limit")] for conv in convs]
    hit = {"direction": "orig", "limit": "memcap", "dropped": 5}
    assert limits == [[], [hit], [hit]]
    assert engine.budget.used == 60
    tr.flush()
    assert engine.budget.used == 0


# --------------------------------------------------------------------------- the parser's life


def test_end_per_direction_then_close_once() -> None:
    f = FakeFactory("any", always(Detection.MATCH))
    tr = FlowTracker(TrackerConfig(tcp_close_linger_ns=SECOND), l7=L7([f]))
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"q")
    conv.send(S, PA, b"r")
    conv.send(C, FIN | ACK)
    conv.send(S, FIN | ACK)
    conv.send(C, ACK)
    assert [c[:2] for c in f.parser.calls] == [("data", ORIG), ("data", RESP), ("end", ORIG), ("end", RESP)]
    conv.events.extend(tr.expire(conv.t + 3 * SECOND))  # the close linger ends the flow
    assert [c[0] for c in f.parser.calls][-1] == "close"
    assert [c[0] for c in f.parser.calls].count("close") == 1
    tr.flush()
    assert [c[0] for c in f.parser.calls].count("close") == 1
    assert flow_records(conv.events)[0].service == "any"


def test_parser_events_become_session_records_of_their_flow() -> None:
    from dataclasses import dataclass
    from typing import ClassVar

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Echo:
        event_type: ClassVar[str] = "echo"
        ts: Timestamp
        text: str

    class EchoParser(RecordingParser):
        def data(self, direction: Direction, data: bytes, ts: Timestamp) -> Sequence[Any]:
            return [Echo(ts=ts, text=data.decode())]

    class EchoFactory(FakeFactory):
        def _make(self, flow: FlowInfo) -> RecordingParser:
            return EchoParser(flow)

    tr, _ = tracker([EchoFactory("echo", always(Detection.MATCH))])
    conv = Conv(tr)
    conv.handshake()
    (rec,) = conv.send(C, PA, b"hi")
    assert isinstance(rec, SessionRecord) and rec.event == Echo(ts=conv.t, text="hi") and rec.ts == conv.t
    assert rec.flow.orig.port == 40000 and rec.flow.flow_id == conv.flow().fid


def test_an_exception_from_a_parser_becomes_a_notice_and_the_run_goes_on() -> None:
    class Broken(RecordingParser):
        def data(self, direction: Direction, data: bytes, ts: Timestamp) -> Sequence[Any]:
            raise RuntimeError("plugin bug")

    class BrokenFactory(FakeFactory):
        def _make(self, flow: FlowInfo) -> RecordingParser:
            return Broken(flow)

    tr, _ = tracker([BrokenFactory("broken", always(Detection.MATCH))])
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"x")
    found = [e for e in conv.events if isinstance(e, Notice)]
    assert [n.kind for n in found] == ["parser_error"]
    assert "plugin bug" in found[0].message and dict(found[0].details)["error"] == "RuntimeError"
    assert conv.flow().l7 is False  # that flow is no longer parsed
    conv.send(S, PA, b"y")  # and nothing else breaks
    conv.flush()
    assert flow_records(conv.events)[0].service == "broken"


class DoneParser(RecordingParser):
    """Declares itself done once it has been given ``END``."""

    @property
    def done(self) -> bool:
        return any(c[0] in ("data", "datagram") and b"END" in c[2] for c in self.calls)


class DoneFactory(FakeFactory):
    def _make(self, flow: FlowInfo) -> RecordingParser:
        p = DoneParser(flow)
        self.parsers.append(p)
        return p


def test_a_done_parser_gets_nothing_more_and_reassembly_stops() -> None:
    f = DoneFactory("fin", always(Detection.MATCH))
    tr, engine = tracker([f])
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"hello")
    conv.send(S, PA, b"END of the interesting part")
    assert conv.flow().l7 is False
    conv.send(C, PA, b"ignored")
    conv.send(S, PA, b"not buffered", at=conv.offset(S) + 100)
    assert engine.budget.used == 0
    conv.close()
    conv.flush()
    # Not even close(): what a parser has to say, it says before it is done.
    assert [c[:3] for c in f.parser.calls] == [("data", ORIG, b"hello"), ("data", RESP, b"END of the interesting part")]
    assert flow_records(conv.events)[0].service == "fin"


def test_done_is_honoured_during_the_replay() -> None:
    f = DoneFactory("fin", lambda d, data: Detection.MATCH if b"GO" in data else Detection.NEED_MORE)
    tr, _ = tracker([f])
    conv = Conv(tr)
    conv.handshake()
    conv.send(C, PA, b"END")
    conv.send(S, PA, b"x")
    conv.send(C, PA, b"GO")
    assert [c[:3] for c in f.parser.calls] == [("data", ORIG, b"END")]
    assert conv.flow().l7 is False


def test_a_done_datagram_parser_gets_nothing_more() -> None:
    f = DoneFactory("fin", always(Detection.MATCH), udp=True)
    tr, _ = tracker([f])
    a, b = ("10.0.0.1", 1000), ("10.0.0.2", 2000)
    tr.feed(T0, udp_frame(a, b, b"first"))
    tr.feed(T0 + 1, udp_frame(b, a, b"END"))
    tr.feed(T0 + 2, udp_frame(a, b, b"after"))
    tr.flush()
    assert [c[:3] for c in f.parser.calls] == [("datagram", ORIG, b"first"), ("datagram", RESP, b"END")]


# --------------------------------------------------------------------------- missing extras


def test_missing_extra_raises_by_default() -> None:
    missing = MissingExtraError("fake", "fakeextra", "flowscope-fake")
    tr, _ = tracker([FakeFactory("fake", always(Detection.MATCH), missing=missing)])
    conv = Conv(tr)
    conv.handshake()
    with pytest.raises(MissingExtraError) as info:
        conv.send(C, PA, b"x")
    assert info.value.install == "pip install 'flowscope-fake[fakeextra]'"


def test_missing_extra_as_notice_once_per_protocol() -> None:
    missing = MissingExtraError("fake", "fakeextra")
    f = FakeFactory("fake", always(Detection.MATCH), missing=missing)
    tr, _ = tracker([f], L7Config(missing_extra="notice"))
    events: List[FlowEvent] = []
    for i in range(3):
        conv = Conv(tr, client=("10.0.0.1", 40000 + i), t0=T0 + i * SECOND)
        conv.handshake()
        conv.send(C, PA, b"x")
        conv.close()
        events += conv.events
    events += tr.flush()
    (n,) = notices(events, "missing_extra")
    assert dict(n.details) == {"protocol": "fake", "install": "pip install 'flowscope[fakeextra]'"}
    assert "pip install 'flowscope[fakeextra]'" in n.message
    flows = flow_records(events)
    assert len(flows) == 3 and all(fl.service is None for fl in flows)
    assert len(f.asked) == 3  # each flow still classified, then left unparsed


# --------------------------------------------------------------------------- UDP


def test_udp_detect_judges_each_datagram_and_the_parser_starts_with_the_match() -> None:
    f = FakeFactory("dg", lambda d, data: Detection.MATCH if data == b"hello" else Detection.NEED_MORE, udp=True)
    tr, _ = tracker([f])
    a, b = ("10.0.0.1", 1000), ("10.0.0.2", 2000)
    tr.feed(T0, udp_frame(a, b, b"noise"))
    tr.feed(T0 + 1, udp_frame(b, a, b"hello"))
    tr.feed(T0 + 2, udp_frame(a, b, b"after"))
    evs = tr.flush()
    assert f.asked == [(ORIG, b"noise"), (RESP, b"hello")]  # one datagram at a time, never joined
    assert f.parser.calls == [("datagram", RESP, b"hello", T0 + 1), ("datagram", ORIG, b"after", T0 + 2), ("close", T0 + 2)]
    assert flow_records(evs)[0].service == "dg"


def test_udp_classification_gives_up_after_detect_datagrams_per_direction() -> None:
    f = FakeFactory("dg", always(Detection.NEED_MORE), udp=True)
    tr, _ = tracker([f], L7Config(detect_datagrams=3))
    a, b = ("10.0.0.1", 1000), ("10.0.0.2", 2000)
    for i in range(10):
        tr.feed(T0 + 2 * i, udp_frame(a, b, b"q%d" % i))
        tr.feed(T0 + 2 * i + 1, udp_frame(b, a, b"r%d" % i))
    assert [d for d, _ in f.asked] == [ORIG, RESP] * 3
    (flow,) = tr._table.values()
    assert flow.l7 is False


def test_udp_one_way_flow_shows_detect_detect_datagrams() -> None:
    f = FakeFactory("dg", always(Detection.NEED_MORE), udp=True)
    tr, _ = tracker([f], L7Config(detect_datagrams=3))
    for i in range(10):
        tr.feed(T0 + i, udp_frame(("10.0.0.1", 1000), ("10.0.0.2", 2000), b"q%d" % i))
    assert len(f.asked) == 3


# --------------------------------------------------------------------------- the memory bound


class NullParser:
    """A parser that ignores everything (the memory test's parsers must not keep what they see)."""

    def data(self, direction: Direction, data: bytes, ts: Timestamp) -> Sequence[Any]:
        return ()

    def gap(self, direction: Direction, length: int, ts: Timestamp) -> Sequence[Any]:
        return ()

    def end(self, direction: Direction, ts: Timestamp) -> Sequence[Any]:
        return ()

    def close(self, ts: Timestamp) -> Sequence[Any]:
        return ()


class CountingFactory:
    """Matches every flow; counts the parsers it makes and keeps none of them."""

    name = "sink"
    ports: FrozenSet[int] = frozenset()

    def __init__(self) -> None:
        self.created = 0

    def detect(self, direction: Direction, data: bytes, flow: FlowInfo) -> Detection:
        return Detection.MATCH

    def create(self, flow: FlowInfo) -> NullParser:
        self.created += 1
        return NullParser()


@pytest.mark.slow
def test_memcap_holds_over_100k_flows_with_out_of_order_data() -> None:
    """100k TCP flows, each leaving data behind a hole, past per-flow and global caps.

    Frames come from one template (``tests/packets.py``) with the client
    address and port patched in: checksums go stale, which the decoder does
    not check, and building 300k frames stays cheap.
    """
    memcap = 16 * 1024
    cfg = L7Config(reassembly=ReassemblyConfig(max_buffered=512, max_segments=4), memcap=memcap)
    f = CountingFactory()
    engine = L7([f], cfg)
    tr = FlowTracker(TrackerConfig(max_flows=20_000), l7=engine)
    budget = engine.budget
    src, dst = P.ip("10.0.0.1"), P.ip("10.1.0.1")
    seq0 = 1000

    def template(seq: int, payload: bytes) -> bytearray:
        return bytearray(P.ether(P.ETH_IPV4, P.ipv4(src, dst, P.TCP, P.tcp(1, 80, PA, seq=seq, ack=1, payload=payload))))

    # In order, then behind a 64-byte hole, then behind a 10-byte hole: 800 bytes > max_buffered.
    templates = [template(seq0, b"h" * 16), template(seq0 + 80, b"o" * 400), template(seq0 + 490, b"p" * 400)]
    ip_src, tcp_sport = 14 + 12, 14 + 20
    flows = 100_000
    ts = T0
    peak = 0
    limits = 0
    started = time.perf_counter()
    for i in range(flows):
        client, port = divmod(i, 50_000)
        for t in templates:
            t[ip_src : ip_src + 4] = bytes((10, 2 + client, 0, 1))
            struct.pack_into("!H", t, tcp_sport, 1024 + port)
            ts += 1000
            for ev in tr.feed(ts, bytes(t)):
                if isinstance(ev, Notice) and ev.kind == "reassembly_limit":
                    limits += 1
            used = budget.used
            assert 0 <= used <= memcap
            if used > peak:
                peak = used
    elapsed = time.perf_counter() - started
    assert tr.stats.flows == flows and tr.stats.evicted == flows - 20_000
    assert f.created == flows
    assert peak > memcap - 400  # the cap was reached, so it is what held
    assert limits >= flows  # every flow hit its buffer bound or the memcap at least once
    tr.flush()
    assert budget.used == 0
    assert elapsed < 60  # a guard against pathological slowness, not a benchmark
