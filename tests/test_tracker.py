"""Tests of the flow tracker (``flowscope._tracker``) fed handmade frames.

Expected histories and ``conn_state`` codes follow Zeek's documentation of
``conn.log`` (``base/protocols/conn/main.zeek``: the ``conn_state`` function
and the ``history`` letters) and, where the documentation is silent, Zeek's
TCP analyser (which endpoint state a SYN-ACK moves to).  Community IDs on
records are the published baseline values of corelight/community-id-spec.
Timeouts are the documented defaults (TCP 300 s, UDP and ICMP 60 s, close
linger 5 s), checked with one second of slack for the timer wheel's
one-second buckets.
"""

from __future__ import annotations

import ipaddress
from typing import List, Optional, Sequence, Tuple

import pytest

from flowscope import (
    ConnState,
    EndReason,
    FiveTuple,
    FlowEnded,
    FlowStarted,
    FlowTracker,
    TrackerConfig,
)
from flowscope_core import FlowEvent, Orientation

import packets as P
from packets import ACK, FIN, PSH, RST, SYN

SECOND = 1_000_000_000
MS = 1_000_000
T0 = 1_600_000_000 * SECOND
PA = PSH | ACK

C, S = True, False  # who sends: the client (connection initiator) or the server


class Conv:
    """Both ends of one TCP connection, with sequence numbers kept like a real stack's."""

    def __init__(
        self,
        tracker: FlowTracker,
        *,
        client: Tuple[str, int] = ("10.0.0.1", 40000),
        server: Tuple[str, int] = ("10.0.0.2", 80),
        t0: int = T0,
        vlan: Optional[int] = None,
    ) -> None:
        self.tr = tracker
        self.addr = {C: P.ip(client[0]), S: P.ip(server[0])}
        self.port = {C: client[1], S: server[1]}
        self.seq = {C: 1000, S: 700000}
        self.t = t0
        self.vlan = vlan
        self.events: List[FlowEvent] = []
        self.sent = {C: [0, 0, 0], S: [0, 0, 0]}  # packets, wire bytes, payload bytes

    def frame(self, who: bool, flags: int, payload: bytes, seq: int, window: int) -> bytes:
        src, dst = self.addr[who], self.addr[not who]
        ack = self.seq[not who] if flags & ACK else 0
        seg = P.tcp(self.port[who], self.port[not who], flags, seq=seq, ack=ack, window=window, payload=payload,
                    src=src, dst=dst)  # fmt: skip
        pkt = P.ip_packet(src, dst, P.TCP, seg)
        et = P.ethertype_of(pkt)
        return P.ether(et, pkt) if self.vlan is None else P.ether_vlans([self.vlan], et, pkt)

    def send(
        self,
        who: bool,
        flags: int,
        payload: bytes = b"",
        *,
        at: Optional[int] = None,
        window: int = 65535,
        seq: Optional[int] = None,
    ) -> List[FlowEvent]:
        """Send one segment (10 ms after the previous one unless ``at``); returns the tracker's events."""
        self.t = self.t + 10 * MS if at is None else at
        s = self.seq[who] if seq is None else seq
        f = self.frame(who, flags, payload, s, window)
        if seq is None:
            self.seq[who] = (s + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        c = self.sent[who]
        c[0] += 1
        c[1] += len(f)
        c[2] += len(payload)
        evs = self.tr.feed(self.t, f)
        self.events += evs
        return evs


def records(events: Sequence[FlowEvent]) -> List[FlowEnded]:
    """The flow records among events."""
    return [e for e in events if isinstance(e, FlowEnded)]


def only(events: Sequence[FlowEvent]) -> FlowEnded:
    """The one flow record among events."""
    recs = records(events)
    assert len(recs) == 1, recs
    return recs[0]


Step = Tuple[bool, int, bytes]
HANDSHAKE: List[Step] = [(C, SYN, b""), (S, SYN | ACK, b""), (C, ACK, b"")]
REQ = b"GET / HTTP/1.0\r\n\r\n"
RESP = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"
EXCHANGE: List[Step] = [(C, PA, REQ), (S, ACK, b""), (S, PA, RESP)]

# (name, steps, history, conn_state, end reason once the flow is left alone for 301 s)
TCP_PATHS: List[Tuple[str, List[Step], str, ConnState, EndReason]] = [
    ("S0", [(C, SYN, b"")], "S", ConnState.S0, EndReason.IDLE_TIMEOUT),
    ("REJ", [(C, SYN, b""), (S, RST | ACK, b"")], "Sr", ConnState.REJ, EndReason.RST),
    ("SF", HANDSHAKE + EXCHANGE + [(C, FIN | ACK, b""), (S, FIN | ACK, b""), (C, ACK, b"")], "ShADadFf",
     ConnState.SF, EndReason.FIN),
    ("S1", HANDSHAKE + EXCHANGE, "ShADad", ConnState.S1, EndReason.IDLE_TIMEOUT),
    ("RSTO", HANDSHAKE + EXCHANGE + [(C, RST | ACK, b"")], "ShADadR", ConnState.RSTO, EndReason.RST),
    ("RSTO-scan", [(C, SYN, b""), (S, SYN | ACK, b""), (C, RST, b"")], "ShR", ConnState.RSTO, EndReason.RST),
    ("RSTR", HANDSHAKE + EXCHANGE + [(S, RST | ACK, b"")], "ShADadr", ConnState.RSTR, EndReason.RST),
    ("RSTOS0", [(C, SYN, b""), (C, RST, b"")], "SR", ConnState.RSTOS0, EndReason.RST),
    ("RSTRH", [(S, SYN | ACK, b""), (S, RST, b"")], "^hr", ConnState.RSTRH, EndReason.RST),
    ("SH", [(C, SYN, b""), (C, FIN, b"")], "SF", ConnState.SH, EndReason.IDLE_TIMEOUT),
    ("SHR", [(S, SYN | ACK, b""), (S, FIN | ACK, b"")], "^hf", ConnState.SHR, EndReason.IDLE_TIMEOUT),
    ("OTH-midstream", [(C, PA, REQ), (S, ACK, b""), (S, PA, RESP)], "Dad", ConnState.OTH, EndReason.IDLE_TIMEOUT),
    ("OTH-lone-syn-ack", [(S, SYN | ACK, b"")], "^h", ConnState.OTH, EndReason.IDLE_TIMEOUT),
    ("S2", HANDSHAKE + [(C, FIN | ACK, b""), (S, ACK, b"")], "ShAFa", ConnState.S2, EndReason.IDLE_TIMEOUT),
    ("S3", HANDSHAKE + [(S, FIN | ACK, b""), (C, ACK, b"")], "ShAf", ConnState.S3, EndReason.IDLE_TIMEOUT),
    ("SF-syn-ack-first", [(S, SYN | ACK, b""), (C, ACK, b""), (C, PA, REQ), (S, PA, RESP), (C, FIN | ACK, b""),
                          (S, FIN | ACK, b""), (C, ACK, b"")], "^hADdFf", ConnState.SF, EndReason.FIN),
    ("SF-ipv6", HANDSHAKE + [(C, FIN | ACK, b""), (S, FIN | ACK, b""), (C, ACK, b"")], "ShAFf", ConnState.SF,
     EndReason.FIN),
]  # fmt: skip


def play(steps: Sequence[Step], *, v6: bool = False, tracker: Optional[FlowTracker] = None) -> Tuple[Conv, FlowEnded]:
    """Play steps on a fresh connection, then leave it alone for 301 s; its one record."""
    tr = tracker if tracker is not None else FlowTracker()
    if v6:
        conv = Conv(tr, client=("2001:db8::1", 40000), server=("2001:db8::2", 443))
    else:
        conv = Conv(tr)
    for who, flags, payload in steps:
        conv.send(who, flags, payload)
    conv.events += tr.expire(conv.t + 301 * SECOND)
    assert tr.active_flows == 0
    return conv, only(conv.events)


@pytest.mark.parametrize("name,steps,history,state,reason", TCP_PATHS, ids=[c[0] for c in TCP_PATHS])
def test_tcp_state_paths(name: str, steps: List[Step], history: str, state: ConnState, reason: EndReason) -> None:
    conv, rec = play(steps, v6=name.endswith("ipv6"))
    assert rec.history == history
    assert rec.conn_state == state
    assert rec.end_reason == reason
    # The client is the originator in every path: SYN sender, SYN-ACK receiver or first sender.
    assert (rec.flow.orig.addr, rec.flow.orig.port) == (text_addr(conv.addr[C]), conv.port[C])
    assert (rec.flow.resp.addr, rec.flow.resp.port) == (text_addr(conv.addr[S]), conv.port[S])
    o, r = rec.stats.orig, rec.stats.resp
    assert [o.packets, o.bytes, o.payload_bytes] == conv.sent[C]
    assert [r.packets, r.bytes, r.payload_bytes] == conv.sent[S]
    assert rec.flow.proto == P.TCP
    expect = Orientation.SYN if history.startswith("S") else (
        Orientation.SYN_ACK if history.startswith("^") else Orientation.FIRST_PACKET)  # fmt: skip
    assert rec.flow.orientation == expect
    assert rec.stats.duration_ns == (len(steps) - 1) * 10 * MS


def text_addr(raw: bytes) -> str:
    """Text form of a raw address (the standard library's, not flowscope's)."""
    return str(ipaddress.ip_address(raw))


def test_syn_then_syn_ack_is_s1() -> None:
    _, rec = play([(C, SYN, b""), (S, SYN | ACK, b"")])
    assert rec.history == "Sh"
    assert rec.conn_state == ConnState.S1


def test_reset_after_syn_ack_is_rstr() -> None:
    _, rec = play([(C, SYN, b""), (S, SYN | ACK, b""), (S, RST | ACK, b"")])
    assert rec.history == "Shr"
    assert rec.conn_state == ConnState.RSTR


def test_half_closed_flow_that_goes_quiet_ends_by_idle_timeout() -> None:
    # EndReason.FIN means both FINs and the linger; one FIN then silence is idle.
    _, rec = play(HANDSHAKE + [(C, FIN | ACK, b""), (S, ACK, b"")])
    assert rec.conn_state == ConnState.S2
    assert rec.end_reason == EndReason.IDLE_TIMEOUT


# ----------------------------------------------------------------------------- anomalies


def test_retransmissions_are_t_logarithmically() -> None:
    tr = FlowTracker()
    conv = Conv(tr)
    for who, flags, payload in HANDSHAKE:
        conv.send(who, flags, payload)
    first = conv.seq[C]
    conv.send(C, PA, REQ)
    conv.send(C, PA, REQ, seq=first)
    rec = only(tr.flush())
    assert rec.history == "ShADT"
    tr = FlowTracker()
    conv = Conv(tr)
    for who, flags, payload in HANDSHAKE + [(C, PA, REQ)]:
        conv.send(who, flags, payload)
    sfirst = conv.seq[S]
    conv.send(S, PA, RESP)
    for _ in range(9):
        conv.send(S, PA, RESP, seq=sfirst)
    rec = only(tr.flush())
    assert rec.history == "ShADdt"  # 9 retransmissions: one 't'
    assert rec.stats.resp.packets == 11 and rec.stats.resp.payload_bytes == 10 * len(RESP)  # and the SYN-ACK
    conv.tr = tr = FlowTracker()
    conv.t += SECOND
    conv.send(S, PA, RESP, seq=sfirst)  # a fresh tracker: the server is now the first sender (orig)
    for _ in range(10):
        conv.send(S, PA, RESP, seq=sfirst)
    assert only(tr.flush()).history == "DTT"  # 10 retransmissions: a second T


def test_zero_window_is_w() -> None:
    tr = FlowTracker()
    conv = Conv(tr)
    for who, flags, payload in HANDSHAKE + [(S, ACK, b"")]:
        conv.send(who, flags, payload)
    conv.send(C, ACK, window=0)
    conv.send(S, ACK, window=0)
    assert only(tr.flush()).history == "ShAaWw"


# ----------------------------------------------------------------------------- closing, reuse


def _sf(tr: FlowTracker, t0: int = T0) -> Conv:
    conv = Conv(tr, t0=t0)
    for who, flags, payload in HANDSHAKE + EXCHANGE + [(C, FIN | ACK, b""), (S, FIN | ACK, b"")]:
        conv.send(who, flags, payload)
    return conv


def test_late_ack_within_the_close_linger_joins_the_flow() -> None:
    tr = FlowTracker()
    conv = _sf(tr)
    closed = conv.t
    assert conv.send(C, ACK, at=closed + 2 * SECOND) == []
    assert tr.expire(closed + 4 * SECOND) == []
    rec = only(tr.expire(closed + 7 * SECOND))
    assert rec.end_reason == EndReason.FIN and rec.history == "ShADadFf"
    assert rec.stats.orig.packets == conv.sent[C][0]
    assert rec.stats.last_ts == closed + 2 * SECOND


def test_packet_after_the_close_linger_starts_a_new_flow() -> None:
    tr = FlowTracker()
    conv = _sf(tr)
    closed = conv.t
    evs = conv.send(C, ACK, at=closed + 7 * SECOND)
    rec = only(evs)
    assert rec.end_reason == EndReason.FIN and rec.stats.orig.packets == conv.sent[C][0] - 1
    assert tr.active_flows == 1
    late = only(tr.flush())
    assert late.history == "A" and late.conn_state == ConnState.OTH


def test_new_syn_on_a_closed_connection_is_port_reuse() -> None:
    tr = FlowTracker()
    conv = _sf(tr)
    before = list(conv.sent[C])
    evs = conv.send(C, SYN, at=conv.t + SECOND)
    first = only(evs)
    assert first.end_reason == EndReason.FIN and first.history == "ShADadFf"
    assert first.stats.orig.packets == before[0]
    conv.send(S, SYN | ACK)
    conv.send(C, ACK)
    second = only(tr.flush())
    assert second.flow.flow_id != first.flow.flow_id
    assert second.history == "ShA" and second.stats.orig.packets == 2 and second.stats.resp.packets == 1
    assert tr.stats.flows == 2


# ----------------------------------------------------------------------------- timeouts


def _udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"x") -> bytes:
    pkt = P.ip_packet(P.ip(src), P.ip(dst), P.UDP, P.udp(sport, dport, payload))
    return P.ether(P.ethertype_of(pkt), pkt)


def _icmp_echo(src: str, dst: str, icmp_type: int) -> bytes:
    s, d = P.ip(src), P.ip(dst)
    if len(s) == 4:
        return P.ether(P.ETH_IPV4, P.ipv4(s, d, P.ICMP, P.icmp(icmp_type, 0, b"ping")))
    return P.ether(P.ETH_IPV6, P.ipv6(s, d, P.ICMPV6, P.icmp6(icmp_type, 0, b"ping", src=s, dst=d)))


OTHER = _udp("192.0.2.200", "192.0.2.201", 1, 2)  # an unrelated packet that only moves the clock


@pytest.mark.parametrize(
    "frame,idle",
    [
        (_udp("10.0.0.1", "10.0.0.2", 5000, 53), 60),
        (_icmp_echo("10.0.0.1", "10.0.0.2", 8), 60),
        (Conv(FlowTracker()).frame(C, SYN, b"", 1, 1024), 300),
    ],
    ids=["udp-60s", "icmp-60s", "tcp-300s"],
)
def test_idle_timeout_by_packet_time(frame: bytes, idle: int) -> None:
    tr = FlowTracker()

    def mine(evs: List[FlowEvent]) -> List[FlowEnded]:
        return [r for r in records(evs) if r.flow.orig.addr == "10.0.0.1"]

    tr.feed(T0, frame)
    assert mine(tr.feed(T0 + (idle - 1) * SECOND, OTHER)) == []
    tr.feed(T0 + (idle - 1) * SECOND + SECOND // 2, frame)  # activity pushes the deadline
    assert mine(tr.feed(T0 + (2 * idle - 2) * SECOND, OTHER)) == []
    recs = mine(tr.feed(T0 + (2 * idle + 1) * SECOND, OTHER))
    assert len(recs) == 1
    rec = recs[0]
    assert rec.end_reason == EndReason.IDLE_TIMEOUT
    assert rec.stats.orig.packets == 2
    assert rec.stats.last_ts == T0 + (idle - 1) * SECOND + SECOND // 2


def test_idle_timeout_by_expire() -> None:
    tr = FlowTracker()
    tr.feed(T0, _udp("10.0.0.1", "10.0.0.2", 5000, 53))
    tr.feed(T0, _icmp_echo("10.0.0.1", "10.0.0.2", 8))
    tr.feed(T0, Conv(tr).frame(C, SYN, b"", 1, 1024))
    assert tr.expire(T0 + 59 * SECOND) == []
    assert tr.now == T0 + 59 * SECOND
    recs = records(tr.expire(T0 + 62 * SECOND))
    assert sorted(r.flow.proto for r in recs) == [P.ICMP, P.UDP]
    assert all(r.end_reason == EndReason.IDLE_TIMEOUT for r in recs)
    assert tr.expire(T0 + 299 * SECOND) == []
    rec = only(tr.expire(T0 + 302 * SECOND))
    assert rec.flow.proto == P.TCP and rec.end_reason == EndReason.IDLE_TIMEOUT
    assert tr.active_flows == 0


def _active_run(active_s: int, every_s: int, count: int) -> List[FlowEnded]:
    tr = FlowTracker(TrackerConfig(active_timeout_ns=active_s * SECOND))
    frame = _udp("10.0.0.1", "10.0.0.2", 5000, 53, b"abcd")
    reply = _udp("10.0.0.2", "10.0.0.1", 53, 5000, b"ef")
    evs: List[FlowEvent] = []
    for i in range(count):
        evs += tr.feed(T0 + i * every_s * SECOND, frame)
        evs += tr.feed(T0 + i * every_s * SECOND + 1000, reply)
    evs += tr.flush()
    recs = records(evs)
    assert sum(r.stats.orig.packets for r in recs) == count
    assert sum(r.stats.resp.packets for r in recs) == count
    assert sum(r.stats.orig.bytes for r in recs) == count * len(frame)
    assert sum(r.stats.orig.payload_bytes + r.stats.resp.payload_bytes for r in recs) == count * 6
    assert {(r.flow.orig.addr, r.flow.orig.port) for r in recs} == {("10.0.0.1", 5000)}
    assert [r.stats.first_ts for r in recs] == sorted(r.stats.first_ts for r in recs)
    assert recs[-1].end_reason == EndReason.END_OF_INPUT
    assert all(r.end_reason == EndReason.ACTIVE_TIMEOUT for r in recs[:-1])
    return recs


def test_active_timeout_splits_records_and_counts_add_up() -> None:
    # 120 s active timeout, a packet pair every 10 s for 400 s: records of at most ~120 s.
    recs = _active_run(120, 10, 41)
    assert len(recs) >= 3
    assert all(r.stats.duration_ns <= 121 * SECOND for r in recs)


def test_active_timeout_shorter_than_idle_timeout() -> None:
    recs = _active_run(10, 1, 26)
    assert len(recs) >= 2
    assert all(r.stats.duration_ns <= 11 * SECOND for r in recs)


# ----------------------------------------------------------------------------- table bounds


def test_lru_eviction_writes_the_least_recently_used_flow() -> None:
    tr = FlowTracker(TrackerConfig(max_flows=2))
    a = _udp("10.0.0.1", "10.0.0.9", 1001, 53)
    b = _udp("10.0.0.2", "10.0.0.9", 1002, 53)
    c = _udp("10.0.0.3", "10.0.0.9", 1003, 53)
    assert tr.feed(T0, a) == []
    assert tr.feed(T0 + SECOND, b) == []
    assert tr.feed(T0 + 2 * SECOND, a) == []  # a is now more recent than b
    rec = only(tr.feed(T0 + 3 * SECOND, c))
    assert rec.end_reason == EndReason.EVICTED
    assert rec.flow.orig.addr == "10.0.0.2"
    assert tr.stats.evicted == 1 and tr.active_flows == 2
    rest = records(tr.flush())
    assert sorted(r.flow.orig.addr for r in rest) == ["10.0.0.1", "10.0.0.3"]
    assert [r.stats.orig.packets for r in rest if r.flow.orig.addr == "10.0.0.1"] == [2]


def test_table_never_exceeds_max_flows() -> None:
    tr = FlowTracker(TrackerConfig(max_flows=5))
    evicted = 0
    for i in range(50):
        evicted += len(records(tr.feed(T0 + i * SECOND, _udp(f"10.0.1.{i}", "10.0.0.9", 1000 + i, 53))))
        assert tr.active_flows <= 5
    assert evicted == tr.stats.evicted == 45


# ----------------------------------------------------------------------------- keys


def test_vlan_in_key() -> None:
    pkt = P.ipv4(P.ip("10.0.0.1"), P.ip("10.0.0.2"), P.UDP, P.udp(5000, 53, b"q"))
    f10 = P.ether_vlans([10], P.ETH_IPV4, pkt)
    f20 = P.ether_vlans([20], P.ETH_IPV4, pkt)
    for tr, want in (
        (FlowTracker(), [((10,), 2)]),
        (FlowTracker(TrackerConfig(vlan_in_key=True)), [((10,), 1), ((20,), 1)]),
        (FlowTracker(extractor=FiveTuple(vlan_in_key=True)), [((10,), 1), ((20,), 1)]),
    ):
        tr.feed(T0, f10)
        tr.feed(T0 + MS, f20)
        got = sorted((r.flow.vlan, r.stats.orig.packets) for r in records(tr.flush()))
        assert got == want


def test_icmp_echo_request_and_reply_are_one_flow() -> None:
    tr = FlowTracker()
    tr.feed(T0, _icmp_echo("1.2.3.4", "5.6.7.8", 8))
    tr.feed(T0 + 5 * MS, _icmp_echo("5.6.7.8", "1.2.3.4", 0))
    rec = only(tr.flush())
    assert rec.flow.proto == P.ICMP
    assert (rec.flow.orig.addr, rec.flow.orig.port, rec.flow.resp.addr, rec.flow.resp.port) == (
        "1.2.3.4", 8, "5.6.7.8", 0)  # fmt: skip
    assert (rec.stats.orig.packets, rec.stats.resp.packets) == (1, 1)
    assert rec.flow.community_id == "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="
    assert rec.stats.duration_ns == 5 * MS


def test_icmp_conn_state_is_oth() -> None:
    tr = FlowTracker()
    tr.feed(T0, _icmp_echo("1.2.3.4", "5.6.7.8", 8))
    tr.feed(T0 + 5 * MS, _icmp_echo("5.6.7.8", "1.2.3.4", 0))
    assert only(tr.flush()).conn_state == ConnState.OTH


def test_icmpv6_echo_community_id() -> None:
    a, b = "fe80:1:203:405:607:809:a0b:c0d", "fe80:1011:1213:1415:1617:1819:1a1b:1c1d"
    tr = FlowTracker()
    tr.feed(T0, _icmp_echo(a, b, 128))
    tr.feed(T0 + MS, _icmp_echo(b, a, 129))
    rec = only(tr.flush())
    assert (rec.flow.proto, rec.stats.orig.packets, rec.stats.resp.packets) == (P.ICMPV6, 1, 1)
    assert rec.flow.community_id == "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="


def test_udp_conn_states_duration_and_payload() -> None:
    tr = FlowTracker()
    q = _udp("10.0.0.1", "10.0.0.2", 5000, 53, b"question")
    a = _udp("10.0.0.2", "10.0.0.1", 53, 5000, b"the answer")
    lone = _udp("10.0.0.3", "10.0.0.2", 5001, 53, b"?")
    tr.feed(T0, q)
    tr.feed(T0 + 1500 * MS, a)
    tr.feed(T0 + 2 * SECOND, lone)
    recs = {r.flow.orig.addr: r for r in records(tr.flush())}
    both, one = recs["10.0.0.1"], recs["10.0.0.3"]
    assert both.conn_state == ConnState.SF and both.history == ""
    assert (both.stats.orig.payload_bytes, both.stats.resp.payload_bytes) == (8, 10)
    assert (both.stats.orig.bytes, both.stats.resp.bytes) == (len(q), len(a))
    assert both.stats.duration_ns == 1500 * MS and both.ts == T0
    assert one.conn_state == ConnState.S0 and one.stats.resp.packets == 0 and one.stats.duration_ns == 0


@pytest.mark.parametrize(
    "proto,want",
    [
        (P.TCP, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
        (P.UDP, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="),
        (P.SCTP, "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8="),
        (46, "1:ikv3kmf89luf73WPz1jOs49S768="),  # RSVP: no ports
    ],
    ids=["tcp", "udp", "sctp", "rsvp"],
)
def test_community_id_on_records(proto: int, want: str) -> None:
    a, b = P.ip("1.2.3.4"), P.ip("5.6.7.8")
    if proto == P.TCP:
        # A SYN-ACK first: the record is flipped (orig is its receiver); the hash is the same.
        frames = [P.ipv4(b, a, P.TCP, P.tcp(3344, 1122, SYN | ACK)), P.ipv4(a, b, P.TCP, P.tcp(1122, 3344, ACK))]
    elif proto == P.UDP:
        frames = [P.ipv4(a, b, P.UDP, P.udp(1122, 3344, b"x")), P.ipv4(b, a, P.UDP, P.udp(3344, 1122, b"y"))]
    elif proto == P.SCTP:
        frames = [P.ipv4(a, b, P.SCTP, P.sctp(1122, 3344, bytes(16))), P.ipv4(b, a, P.SCTP, P.sctp(3344, 1122))]
    else:
        frames = [P.ipv4(a, b, proto, bytes(20)), P.ipv4(b, a, proto, bytes(20))]
    tr = FlowTracker()
    for i, f in enumerate(frames):
        tr.feed(T0 + i * MS, P.ether(P.ETH_IPV4, f))
    rec = only(tr.flush())
    assert rec.flow.community_id == want
    assert (rec.stats.orig.packets, rec.stats.resp.packets) == (1, 1)
    if proto == P.TCP:
        assert (rec.flow.orig.addr, rec.flow.orig.port) == ("1.2.3.4", 1122)
        assert rec.history == "^hA"


# ----------------------------------------------------------------------------- misc


def test_flow_started_events_and_counters() -> None:
    tr = FlowTracker(emit_starts=True)
    f = _udp("10.0.0.1", "10.0.0.2", 5000, 53)
    evs = tr.feed(T0, f, 1, len(f) + 100)  # wire length beyond the captured bytes
    assert len(evs) == 1 and isinstance(evs[0], FlowStarted)
    assert evs[0].flow.orig.addr == "10.0.0.1" and evs[0].ts == T0
    assert tr.feed(T0 + 1, f) == []
    tr.feed(T0 + 2, b"\x00" * 10)  # too short for Ethernet: counted, not raised
    rec = only(tr.flush())
    assert rec.flow.flow_id == evs[0].flow.flow_id
    assert rec.stats.orig.bytes == 2 * len(f) + 100
    st = tr.stats.as_dict()
    assert (st["packets"], st["bytes"], st["flows"], st["malformed"]) == (3, 2 * len(f) + 110, 1, 1)


def test_id_prefix_keeps_workers_apart() -> None:
    tr = FlowTracker(TrackerConfig(id_prefix="w3-"))
    tr.feed(T0, _udp("10.0.0.1", "10.0.0.2", 5000, 53))
    assert only(tr.flush()).flow.flow_id.startswith("w3-")
