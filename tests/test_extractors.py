"""Tests of flow extractors (``flowscope._extractors``) through :class:`FlowTracker`.

Handmade traffic between a few hosts; the expected grouping (which packets
share a record, who sent how many) is counted here from the frames sent.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from flowscope import FiveTuple, FlowEnded, FlowTracker, IpPair, MacPair, open_capture
from flowscope._sinks import flow_to_dict
from flowscope_core import Endpoint, Extracted, FlowExtractor, PacketView

import packets as P

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND
H1, H2, H3 = P.ip("10.0.0.1"), P.ip("10.0.0.2"), P.ip("10.0.0.3")
M1, M2, M3 = bytes.fromhex("020000000001"), bytes.fromhex("020000000002"), bytes.fromhex("0200000000ff")


def frame(
    src: bytes, dst: bytes, kind: str, sport: int = 1000, dport: int = 80, macs: Tuple[bytes, bytes] = (M1, M2)
) -> bytes:
    """One Ethernet frame from ``src`` to ``dst``: a TCP ACK, a UDP datagram or an ICMP echo."""
    if kind == "tcp":
        l4, proto = P.tcp(sport, dport, P.ACK | P.PSH, payload=b"data"), P.TCP
    elif kind == "udp":
        l4, proto = P.udp(sport, dport, b"dgram"), P.UDP
    else:
        l4, proto = P.icmp(8, 0, b"ping"), P.ICMP
    return P.ether(P.ETH_IPV4, P.ipv4(src, dst, proto, l4), src=macs[0], dst=macs[1])


def run(tr: FlowTracker, frames: List[bytes], lt: int = 1) -> List[FlowEnded]:
    """Feed frames 1 ms apart and flush; the flow records."""
    for i, f in enumerate(frames):
        tr.feed(T0 + i * 1_000_000, f, lt)
    return [e for e in tr.flush() if isinstance(e, FlowEnded)]


TRAFFIC = [
    frame(H1, H2, "tcp", 1000, 80),
    frame(H2, H1, "tcp", 80, 1000, macs=(M2, M1)),
    frame(H1, H2, "udp", 5000, 53),
    frame(H1, H2, "icmp"),
    frame(H2, H1, "udp", 53, 5000, macs=(M2, M1)),
    frame(H1, H2, "tcp", 1001, 443),
    frame(H1, H3, "udp", 5000, 53, macs=(M1, M3)),
    frame(H3, H1, "tcp", 22, 2000, macs=(M3, M1)),
]


def test_five_tuple_is_the_default() -> None:
    recs = run(FlowTracker(extractor=FiveTuple()), TRAFFIC)
    default = run(FlowTracker(), TRAFFIC)
    key = lambda r: (r.flow.proto, r.flow.orig.addr, r.flow.orig.port, r.flow.resp.addr, r.flow.resp.port)  # noqa: E731
    assert sorted(map(key, recs)) == sorted(map(key, default))
    assert len(recs) == 6


def test_ip_pair_groups_all_traffic_between_two_hosts() -> None:
    recs = run(FlowTracker(extractor=IpPair()), TRAFFIC)
    got = {frozenset({r.flow.orig.addr, r.flow.resp.addr}): r for r in recs}
    assert set(got) == {frozenset({"10.0.0.1", "10.0.0.2"}), frozenset({"10.0.0.1", "10.0.0.3"})}
    r12 = got[frozenset({"10.0.0.1", "10.0.0.2"})]
    assert (r12.flow.orig.addr, r12.flow.orig.port, r12.flow.resp.port) == ("10.0.0.1", 0, 0)
    assert (r12.stats.orig.packets, r12.stats.resp.packets) == (4, 2)
    sent_12 = [f for f in TRAFFIC[:6] if f[26:30] == H1]
    assert r12.stats.orig.bytes == sum(len(f) for f in sent_12)
    r13 = got[frozenset({"10.0.0.1", "10.0.0.3"})]
    assert (r13.stats.orig.packets, r13.stats.resp.packets) == (1, 1)
    assert r13.flow.proto == 0 and r13.flow.community_id != ""


def test_mac_pair_groups_by_ethernet_addresses() -> None:
    recs = run(FlowTracker(extractor=MacPair()), TRAFFIC)
    got = {frozenset({r.flow.orig.addr, r.flow.resp.addr}): r for r in recs}
    assert set(got) == {
        frozenset({"02:00:00:00:00:01", "02:00:00:00:00:02"}),
        frozenset({"02:00:00:00:00:01", "02:00:00:00:00:ff"}),
    }
    r = got[frozenset({"02:00:00:00:00:01", "02:00:00:00:00:02"})]
    assert r.flow.orig.addr == "02:00:00:00:00:01"
    assert (r.stats.orig.packets, r.stats.resp.packets) == (4, 2)
    assert r.flow.community_id == ""


def test_mac_pair_ignores_frames_without_ethernet() -> None:
    raw = [f[14:] for f in TRAFFIC]
    assert run(FlowTracker(extractor=MacPair()), raw, lt=101) == []
    assert len(run(FlowTracker(extractor=IpPair()), raw, lt=101)) == 2


class ServicePort:
    """A custom extractor: one flow per (protocol, server port), clients aggregated.

    The server port is the lower of the two ports; ICMP is not tracked.
    """

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def extract(self, packet: PacketView) -> Optional[Extracted]:
        self.seen[type(packet.tcp).__name__] += 1
        if packet.proto not in (6, 17):
            return None
        to_server = packet.dst_port <= packet.src_port
        port = packet.dst_port if to_server else packet.src_port
        server = Endpoint(addr="0.0.0.0", port=port)
        client = Endpoint(addr="255.255.255.255", port=0)
        return Extracted(
            key=("svc", packet.proto, port),
            forward=to_server,
            src=client if to_server else server,
            dst=server if to_server else client,
            proto=packet.proto,
        )


def test_custom_extractor_class() -> None:
    ex = ServicePort()
    typed: FlowExtractor = ex  # the Protocol is satisfied structurally
    recs = run(FlowTracker(extractor=typed), TRAFFIC)
    got: Dict[Tuple[int, int], FlowEnded] = {(r.flow.proto, max(r.flow.orig.port, r.flow.resp.port)): r for r in recs}
    assert set(got) == {(6, 80), (6, 443), (6, 22), (17, 53)}
    # The port-22 flow's first packet came from the server, so the server side is its originator.
    assert (got[(6, 22)].flow.orig.addr, got[(6, 22)].flow.orig.port) == ("0.0.0.0", 22)
    udp53 = got[(17, 53)]
    assert (udp53.stats.orig.packets, udp53.stats.resp.packets) == (2, 1)
    assert udp53.stats.orig.payload_bytes == 10 and udp53.stats.resp.payload_bytes == 5
    tcp80 = got[(6, 80)]
    assert (tcp80.stats.orig.packets, tcp80.stats.resp.packets) == (1, 1)
    assert tcp80.history == "Dd"  # TCP state still runs for TCP keys
    assert ex.seen["TcpInfo"] == 4 and ex.seen["NoneType"] == 4  # every packet was offered


def test_extractor_sees_the_decoded_packet() -> None:
    views: List[PacketView] = []

    class Spy:
        def extract(self, packet: PacketView) -> Optional[Extracted]:
            views.append(packet)
            return None

    f = P.ether_vlans([42], P.ETH_IPV4, P.ipv4(H1, H2, P.UDP, P.udp(5000, 53, b"hello")))
    tr = FlowTracker(extractor=Spy())
    assert tr.feed(T0, f, 1, len(f) + 10) == []
    assert tr.flush() == []
    (v,) = views
    assert (v.ts, v.wire_len, v.link_type, v.frame) == (T0, len(f) + 10, 1, f)
    assert (v.ip_version, v.src_addr, v.dst_addr, v.proto, v.src_port, v.dst_port) == (4, H1, H2, 17, 5000, 53)
    assert v.payload == b"hello" and v.tcp is None and v.vlan == (42,) and v.tunnel == ()
    assert (v.src_mac, v.dst_mac) == (P.MAC_A, P.MAC_B)


def test_a_custom_extractor_is_used_when_reading_a_pcap_file(tmp_path: Path) -> None:
    # A classic pcap file is normally read by the fused loop, which inlines the
    # 5-tuple key; with another extractor the tracker must take the general path.
    path = tmp_path / "traffic.pcap"
    path.write_bytes(P.pcap_bytes((T0 + i * 1_000_000, f) for i, f in enumerate(TRAFFIC)))
    for extractor in (IpPair(), MacPair()):
        with open_capture(path) as reader:
            from_file = [e for e in FlowTracker(extractor=extractor).process(reader) if isinstance(e, FlowEnded)]
        fed = run(FlowTracker(extractor=extractor), TRAFFIC)
        assert len(from_file) == len(fed) == 2
        assert [flow_to_dict(e) for e in from_file] == [flow_to_dict(e) for e in fed]
