"""Tests of the frame decoder (``flowscope._decode``).

Every frame is laid out by ``tests/packets.py`` from the protocol
specifications; the expected 5-tuple, payload bytes, VLAN ids and tunnel
names are the ones the builder put in, never values read back from the
decoder.  Hypothesis then throws arbitrary bytes and mutated valid frames at
every supported link type: the decoder must return a tuple or ``None``,
never raise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope._decode import MAX_LAYERS, Decoded, Decoder

import packets as P

A4, B4 = P.ip("192.0.2.1"), P.ip("198.51.100.2")
C4, D4 = P.ip("203.0.113.7"), P.ip("203.0.113.8")
A6, B6 = P.ip("2001:db8::1"), P.ip("2001:db8:0:1::2")
C6, D6 = P.ip("2001:db8:ffff::7"), P.ip("2001:db8:ffff::8")

DATA = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"
QUERY = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"


def tcp4(src: bytes = A4, dst: bytes = B4, payload: bytes = DATA, sport: int = 49152, dport: int = 80) -> bytes:
    """An IPv4 packet with a PSH-ACK TCP segment."""
    seg = P.tcp(sport, dport, P.PSH | P.ACK, seq=1000, ack=2000, window=512, payload=payload, src=src, dst=dst)
    return P.ipv4(src, dst, P.TCP, seg)


def udp6(src: bytes = A6, dst: bytes = B6, payload: bytes = QUERY, sport: int = 5353, dport: int = 53) -> bytes:
    """An IPv6 packet with a UDP datagram."""
    return P.ipv6(src, dst, P.UDP, P.udp(sport, dport, payload, src=src, dst=dst))


def udp4(src: bytes = C4, dst: bytes = D4, payload: bytes = QUERY, sport: int = 40000, dport: int = 53) -> bytes:
    """An IPv4 packet with a UDP datagram."""
    return P.ipv4(src, dst, P.UDP, P.udp(sport, dport, payload, src=src, dst=dst))


@dataclass(frozen=True)
class Want:
    """What a frame must decode to."""

    proto: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    payload: bytes
    vlans: Tuple[int, ...] = ()
    tunnels: Tuple[str, ...] = ()


W_TCP4 = Want(P.TCP, A4, B4, 49152, 80, DATA)
W_UDP6 = Want(P.UDP, A6, B6, 5353, 53, QUERY)
W_UDP4 = Want(P.UDP, C4, D4, 40000, 53, QUERY)


def _w(base: Want, vlans: Tuple[int, ...] = (), tunnels: Tuple[str, ...] = ()) -> Want:
    return Want(base.proto, base.src, base.dst, base.sport, base.dport, base.payload, vlans, tunnels)


def bytearray_set(data: bytes, at: int, value: int) -> bytes:
    """``data`` with one byte replaced."""
    b = bytearray(data)
    b[at] = value
    return bytes(b)


def decode(
    frame: bytes, lt: int = 1, wire_len: Optional[int] = None, dec: Optional[Decoder] = None
) -> Optional[Decoded]:
    """Decode one frame with a fresh decoder (or ``dec``)."""
    d = dec if dec is not None else Decoder()
    return d.decode(frame, lt, 1_000_000_000, len(frame) if wire_len is None else wire_len)


def check(d: Optional[Decoded], want: Want) -> None:
    """Assert that a decoded tuple matches ``want`` field by field."""
    assert d is not None
    proto, src, dst, sport, dport, flags, seq, ack, win, buf, poff, pend, plen, meta = d
    assert (proto, src, dst, sport, dport) == (want.proto, want.src, want.dst, want.sport, want.dport)
    assert buf[poff:pend] == want.payload
    assert plen == len(want.payload)
    vlans, tunnels = (meta[0], meta[1]) if meta is not None else ((), ())
    assert tuple(vlans) == want.vlans
    assert tuple(tunnels) == want.tunnels
    if proto == P.TCP:
        assert (flags, seq, ack, win) == (P.PSH | P.ACK, 1000, 2000, 512)
    else:
        assert flags == -1


# ----------------------------------------------------------------------------- the builder itself


def test_builder_ipv4_header_matches_a_published_example() -> None:
    # The worked example of the Internet checksum on Wikipedia ("IPv4 header checksum"):
    # 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
    pkt = P.ipv4(P.ip("192.168.0.1"), P.ip("192.168.0.199"), P.UDP, bytes(0x73 - 20), ident=0, dont_fragment=True)
    assert pkt[:20].hex() == "45000073000040004011b861c0a80001c0a800c7"
    assert P.checksum(pkt[:20]) == 0  # a correct header sums to zero (RFC 1071)


def test_builder_transport_checksums_verify() -> None:
    for src, dst in ((A4, B4), (A6, B6)):
        seg = P.tcp(1, 2, P.ACK, seq=3, payload=b"odd", src=src, dst=dst)
        assert P.checksum(P.pseudo_header(src, dst, P.TCP, len(seg)) + seg) == 0
        dg = P.udp(1, 2, b"datagram", src=src, dst=dst)
        assert P.checksum(P.pseudo_header(src, dst, P.UDP, len(dg)) + dg) == 0


# ----------------------------------------------------------------------------- link types

LINK_CASES: List[Tuple[str, int, bytes, Want]] = [
    ("ethernet-ipv4", 1, P.ether(P.ETH_IPV4, tcp4()), W_TCP4),
    ("ethernet-ipv6", 1, P.ether(P.ETH_IPV6, udp6()), W_UDP6),
    ("sll-ipv4", 113, P.sll(P.ETH_IPV4, tcp4()), W_TCP4),
    ("sll-ipv6", 113, P.sll(P.ETH_IPV6, udp6(), packet_type=4), W_UDP6),
    ("sll2-ipv4", 276, P.sll2(P.ETH_IPV4, tcp4()), W_TCP4),
    ("sll2-ipv6", 276, P.sll2(P.ETH_IPV6, udp6()), W_UDP6),
    ("sll2-udp4-outbound", 276, P.sll2(P.ETH_IPV4, udp4(), packet_type=4), W_UDP4),
    ("sll-vlan", 113, P.sll(P.ETH_VLAN, P.vlan_tag(42, P.ETH_IPV4, tcp4())), _w(W_TCP4, (42,))),
    ("raw101-ipv4", 101, tcp4(), W_TCP4),
    ("raw101-ipv6", 101, udp6(), W_UDP6),
    ("raw12-ipv4", 12, tcp4(), W_TCP4),
    ("raw12-ipv6", 12, udp6(), W_UDP6),
    ("raw14-ipv4", 14, tcp4(), W_TCP4),
    ("raw14-ipv6", 14, udp6(), W_UDP6),
    ("ipv4-228", 228, tcp4(), W_TCP4),
    ("ipv6-229", 229, udp6(), W_UDP6),
    ("null-le-inet", 0, P.null_header(2, tcp4()), W_TCP4),
    ("null-le-inet6-bsd", 0, P.null_header(24, udp6()), W_UDP6),
    ("null-le-inet6-freebsd", 0, P.null_header(28, udp6()), W_UDP6),
    ("null-le-inet6-darwin", 0, P.null_header(30, udp6()), W_UDP6),
    ("null-le-inet6-linux", 0, P.null_header(10, udp6()), W_UDP6),
    ("null-written-big-endian", 0, P.null_header(2, tcp4(), order=">"), W_TCP4),
    ("null-be-inet6-darwin", 0, P.null_header(30, udp6(), order=">"), W_UDP6),
    ("loop-inet", 108, P.null_header(2, tcp4(), order=">"), W_TCP4),
    ("loop-inet6", 108, P.null_header(24, udp6(), order=">"), W_UDP6),
    ("chdlc-ipv4", 104, P.chdlc(P.ETH_IPV4, tcp4()), W_TCP4),
    ("chdlc-ipv6", 104, P.chdlc(P.ETH_IPV6, udp6()), W_UDP6),
    ("ppp9-ipv4", 9, P.ppp(P.PPP_IPV4, tcp4()), W_TCP4),
    ("ppp9-ipv6-no-address-control", 9, P.ppp(P.PPP_IPV6, udp6(), address_control=False), W_UDP6),
    ("ppp9-compressed-protocol", 9, P.ppp(P.PPP_IPV4, tcp4(), compress=True), W_TCP4),
    ("ppp50-ipv4", 50, P.ppp(P.PPP_IPV4, tcp4()), W_TCP4),
    ("ppp50-ipv6", 50, P.ppp(P.PPP_IPV6, udp6()), W_UDP6),
]


@pytest.mark.parametrize("lt,frame,want", [c[1:] for c in LINK_CASES], ids=[c[0] for c in LINK_CASES])
def test_link_types(lt: int, frame: bytes, want: Want) -> None:
    check(decode(frame, lt), want)


# ----------------------------------------------------------------------------- encapsulations


def _eth(packet: bytes) -> bytes:
    return P.ether(P.ethertype_of(packet), packet)


def _outer4(proto: int, payload: bytes) -> bytes:
    return P.ipv4(C4, D4, proto, payload)


def _outer6(proto: int, payload: bytes) -> bytes:
    return P.ipv6(C6, D6, proto, payload)


def _outer_udp(dport: int, payload: bytes, sport: int = 50000) -> bytes:
    return P.ether(P.ETH_IPV4, _outer4(P.UDP, P.udp(sport, dport, payload, src=C4, dst=D4)))


ENCAP_CASES: List[Tuple[str, bytes, Want]] = [
    # 802.1Q / 802.1ad
    ("vlan", P.ether_vlans([100], P.ETH_IPV4, tcp4()), _w(W_TCP4, (100,))),
    ("vlan-priority-tag-0", P.ether_vlans([0], P.ETH_IPV6, udp6()), _w(W_UDP6, (0,))),
    ("vlan-pcp-bits-ignored", P.ether(P.ETH_VLAN, P.vlan_tag(7, P.ETH_IPV4, tcp4(), pcp=5)), _w(W_TCP4, (7,))),
    ("qinq-88a8", P.ether_vlans([100, 200], P.ETH_IPV4, tcp4(), outer=P.ETH_QINQ), _w(W_TCP4, (100, 200))),
    ("qinq-9100", P.ether_vlans([4094, 1], P.ETH_IPV6, udp6(), outer=P.ETH_QINQ_OLD), _w(W_UDP6, (4094, 1))),
    ("triple-tag", P.ether_vlans([1, 2, 3], P.ETH_IPV4, tcp4(), outer=P.ETH_QINQ), _w(W_TCP4, (1, 2, 3))),
    # MPLS
    ("mpls-one-label", P.ether(P.ETH_MPLS, P.mpls([16], tcp4())), _w(W_TCP4, (), ("mpls",))),
    ("mpls-label-stack-ipv6", P.ether(P.ETH_MPLS, P.mpls([16, 17, 18], udp6())), _w(W_UDP6, (), ("mpls",))),
    (
        "mpls-pseudowire-control-word-ethernet",
        P.ether(P.ETH_MPLS, P.mpls([100, 200], b"\0\0\0\0" + P.ether(P.ETH_IPV4, tcp4()))),
        _w(W_TCP4, (), ("mpls",)),
    ),
    ("mpls-in-vlan", P.ether_vlans([3399], P.ETH_MPLS, P.mpls([30], tcp4())), _w(W_TCP4, (3399,), ("mpls",))),
    # PPPoE
    ("pppoe-ipv4", P.ether(P.ETH_PPPOE_SESSION, P.pppoe_session(P.PPP_IPV4, tcp4())), _w(W_TCP4, (), ("pppoe",))),
    ("pppoe-ipv6", P.ether(P.ETH_PPPOE_SESSION, P.pppoe_session(P.PPP_IPV6, udp6())), _w(W_UDP6, (), ("pppoe",))),
    (
        "pppoe-over-qinq",
        P.ether_vlans([3704, 2474], P.ETH_PPPOE_SESSION, P.pppoe_session(P.PPP_IPV4, tcp4()), outer=P.ETH_VLAN),
        _w(W_TCP4, (3704, 2474), ("pppoe",)),
    ),
    # GRE
    ("gre-ipv4-in-ipv4", P.ether(P.ETH_IPV4, _outer4(P.GRE, P.gre(P.ETH_IPV4, tcp4()))), _w(W_TCP4, (), ("gre",))),
    (
        "gre-checksum-key-seq",
        P.ether(P.ETH_IPV4, _outer4(P.GRE, P.gre(P.ETH_IPV6, udp6(), checksum_present=True, key=7, seq=9))),
        _w(W_UDP6, (), ("gre",)),
    ),
    ("gre-over-ipv6", P.ether(P.ETH_IPV6, _outer6(P.GRE, P.gre(P.ETH_IPV4, tcp4(), key=1))), _w(W_TCP4, (), ("gre",))),
    (
        "gre-teb-ethernet",
        P.ether(P.ETH_IPV4, _outer4(P.GRE, P.gre(P.ETH_TEB, P.ether_vlans([12], P.ETH_IPV4, tcp4())))),
        _w(W_TCP4, (12,), ("gre",)),
    ),
    (
        "gre-mpls",
        P.ether(P.ETH_IPV4, _outer4(P.GRE, P.gre(P.ETH_MPLS, P.mpls([5], tcp4())))),
        _w(W_TCP4, (), ("gre", "mpls")),
    ),
    (
        "erspan-type1",
        P.ether(P.ETH_IPV4, _outer4(P.GRE, P.gre(P.ETH_ERSPAN2, P.ether(P.ETH_IPV4, tcp4())))),
        _w(W_TCP4, (), ("erspan",)),
    ),
    (
        "erspan-type2",
        P.ether(P.ETH_IPV4, _outer4(P.GRE, P.gre(P.ETH_ERSPAN2, P.erspan2(P.ether(P.ETH_IPV6, udp6())), seq=5))),
        _w(W_UDP6, (), ("erspan",)),
    ),
    (
        "erspan-type3",
        P.ether(P.ETH_IPV4, _outer4(P.GRE, P.gre(P.ETH_ERSPAN3, P.erspan3(P.ether(P.ETH_IPV4, tcp4())), seq=5))),
        _w(W_TCP4, (), ("erspan",)),
    ),
    (
        "erspan-type3-platform-subheader",
        P.ether(
            P.ETH_IPV4,
            _outer4(P.GRE, P.gre(P.ETH_ERSPAN3, P.erspan3(P.ether(P.ETH_IPV4, tcp4()), subheader=True), seq=5)),
        ),
        _w(W_TCP4, (), ("erspan",)),
    ),
    (
        "pptp-enhanced-gre",
        P.ether(P.ETH_IPV4, _outer4(P.GRE, P.pptp_gre(3, P.ppp(P.PPP_IPV4, tcp4())))),
        _w(W_TCP4, (), ("gre",)),
    ),
    (
        "pptp-enhanced-gre-ack-no-address-control",
        P.ether(P.ETH_IPV4, _outer4(P.GRE, P.pptp_gre(3, P.ppp(P.PPP_IPV6, udp6(), address_control=False), ack=4))),
        _w(W_UDP6, (), ("gre",)),
    ),
    # UDP tunnels
    ("vxlan-4789", _outer_udp(4789, P.vxlan(42, P.ether(P.ETH_IPV4, tcp4()))), _w(W_TCP4, (), ("vxlan",))),
    ("vxlan-8472", _outer_udp(8472, P.vxlan(42, P.ether(P.ETH_IPV6, udp6()))), _w(W_UDP6, (), ("vxlan",))),
    (
        "vxlan-source-port",
        _outer_udp(50001, P.vxlan(1, P.ether_vlans([9], P.ETH_IPV4, tcp4())), sport=4789),
        _w(W_TCP4, (9,), ("vxlan",)),
    ),
    (
        "geneve-ethernet",
        _outer_udp(6081, P.geneve(P.ETH_TEB, P.ether(P.ETH_IPV4, tcp4()))),
        _w(W_TCP4, (), ("geneve",)),
    ),
    ("geneve-ipv4", _outer_udp(6081, P.geneve(P.ETH_IPV4, tcp4())), _w(W_TCP4, (), ("geneve",))),
    (
        "geneve-options-ipv6",
        _outer_udp(6081, P.geneve(P.ETH_IPV6, udp6(), options=bytes(range(8)))),
        _w(W_UDP6, (), ("geneve",)),
    ),
    ("teredo", _outer_udp(3544, P.teredo(udp6())), _w(W_UDP6, (), ("teredo",))),
    ("teredo-source-port", _outer_udp(61000, P.teredo(udp6()), sport=3544), _w(W_UDP6, (), ("teredo",))),
    ("teredo-origin-indication", _outer_udp(3544, P.teredo(udp6(), origin=True)), _w(W_UDP6, (), ("teredo",))),
    (
        "teredo-authentication-and-origin",
        _outer_udp(3544, P.teredo(udp6(), auth=(b"cid", b"auth"), origin=True)),
        _w(W_UDP6, (), ("teredo",)),
    ),
    ("gtpu-ipv4", _outer_udp(2152, P.gtpu(0x11223344, tcp4())), _w(W_TCP4, (), ("gtp",))),
    ("gtpu-ipv6", _outer_udp(2152, P.gtpu(1, udp6())), _w(W_UDP6, (), ("gtp",))),
    ("gtpu-extension-header", _outer_udp(2152, P.gtpu(1, tcp4(), extension=True)), _w(W_TCP4, (), ("gtp",))),
    # IP in IP
    ("ip4-in-ip4", P.ether(P.ETH_IPV4, _outer4(P.IPIP, tcp4())), _w(W_TCP4, (), ("ip4ip",))),
    ("ip6-in-ip4", P.ether(P.ETH_IPV4, _outer4(P.IPV6_IN, udp6())), _w(W_UDP6, (), ("ip6ip",))),
    ("ip4-in-ip6", P.ether(P.ETH_IPV6, _outer6(P.IPIP, tcp4())), _w(W_TCP4, (), ("ip4ip6",))),
    ("ip6-in-ip6", P.ether(P.ETH_IPV6, _outer6(P.IPV6_IN, udp6())), _w(W_UDP6, (), ("ip6ip6",))),
    (
        "ip6-in-ip4-in-gre-in-vlan",
        P.ether_vlans([5], P.ETH_IPV4, _outer4(P.GRE, P.gre(P.ETH_IPV4, P.ipv4(D4, C4, P.IPV6_IN, udp6())))),
        _w(W_UDP6, (5,), ("gre", "ip6ip")),
    ),
    (
        "gre-inside-pppoe-inside-qinq",
        P.ether_vlans(
            [10, 20], P.ETH_PPPOE_SESSION, P.pppoe_session(P.PPP_IPV4, _outer4(P.GRE, P.gre(P.ETH_IPV6, udp6()))),
            outer=P.ETH_QINQ,
        ),
        _w(W_UDP6, (10, 20), ("pppoe", "gre")),
    ),
    (
        "vxlan-carrying-vlan-and-mpls",
        _outer_udp(4789, P.vxlan(7, P.ether_vlans([300], P.ETH_MPLS, P.mpls([1], tcp4())))),
        _w(W_TCP4, (300,), ("vxlan", "mpls")),
    ),
    # IPv6 extension headers
    (
        "ipv6-hop-by-hop",
        _eth(P.ipv6(A6, B6, P.HOPOPTS, P.ext_header(P.UDP) + P.udp(5353, 53, QUERY))),
        W_UDP6,
    ),
    (
        "ipv6-dstopts-routing-hbh",
        _eth(
            P.ipv6(
                A6, B6, P.HOPOPTS,
                P.ext_header(P.ROUTING) + P.ext_header(P.DSTOPTS, bytes(14)) + P.ext_header(P.UDP)
                + P.udp(5353, 53, QUERY),
            )
        ),
        W_UDP6,
    ),
    (
        "ipv6-ah",
        _eth(P.ipv6(A6, B6, P.AH, P.ah_header(P.UDP) + P.udp(5353, 53, QUERY))),
        W_UDP6,
    ),
    (
        "ipv6-dstopts-then-ah-then-tcp",
        _eth(
            P.ipv6(
                A6, B6, P.DSTOPTS,
                P.ext_header(P.AH)
                + P.ah_header(P.TCP)
                + P.tcp(49152, 80, P.PSH | P.ACK, seq=1000, ack=2000, window=512, payload=DATA),
            )
        ),
        Want(P.TCP, A6, B6, 49152, 80, DATA),
    ),
    ("ipv4-options", _eth(P.ipv4(A4, B4, P.TCP, P.tcp(49152, 80, P.PSH | P.ACK, seq=1000, ack=2000, window=512,
                                                        payload=DATA), options=b"\x94\x04\0\0")), W_TCP4),
]  # fmt: skip


@pytest.mark.parametrize("frame,want", [c[1:] for c in ENCAP_CASES], ids=[c[0] for c in ENCAP_CASES])
def test_encapsulations(frame: bytes, want: Want) -> None:
    dec = Decoder()
    check(decode(frame, dec=dec), want)
    assert (dec.malformed, dec.non_ip, dec.unknown_link) == (0, 0, 0)


def test_tcp_options_move_the_payload() -> None:
    opts = b"\x02\x04\x05\xb4\x01\x03\x03\x07"  # MSS 1460, NOP, window scale 7
    seg = P.tcp(1, 2, P.PSH | P.ACK, seq=1000, ack=2000, window=512, payload=DATA, options=opts)
    check(decode(P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.TCP, seg))), Want(P.TCP, A4, B4, 1, 2, DATA))


def test_portless_protocols() -> None:
    echo = P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.ICMP, P.icmp(8, 0, b"ping" * 8)))
    d = decode(echo)
    assert d is not None
    assert d[:5] == (P.ICMP, A4, B4, 8, 0)  # type and code stand in for the ports
    assert d[12] == 8 + 32  # ICMP header and data: everything after the IP header
    unreach = P.ether(P.ETH_IPV6, P.ipv6(A6, B6, P.ICMPV6, P.icmp6(1, 4, src=A6, dst=B6)))
    d = decode(unreach)
    assert d is not None and d[:5] == (P.ICMPV6, A6, B6, 1, 4)
    d = decode(P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.SCTP, P.sctp(2905, 36412, b"\0" * 16))))
    assert d is not None and d[:5] == (P.SCTP, A4, B4, 2905, 36412)
    d = decode(P.ether(P.ETH_IPV4, P.ipv4(A4, B4, 50, b"\0\0\0\1" * 6)))  # ESP: no ports
    assert d is not None and d[:5] == (50, A4, B4, 0, 0) and d[12] == 24


def test_unknown_gre_is_a_gre_flow() -> None:
    # GRE carrying something that is not decoded (here: routing present, RFC 1701) is a flow of its own.
    pkt = _outer4(P.GRE, bytes([0x40, 0, 0x08, 0]) + b"\0" * 8 + tcp4())
    d = decode(P.ether(P.ETH_IPV4, pkt))
    assert d is not None and d[:5] == (P.GRE, C4, D4, 0, 0) and d[13] is None


def test_vxlan_without_the_i_flag_is_plain_udp() -> None:
    inner = P.ether(P.ETH_IPV4, tcp4())
    payload = struct.pack("!II", 0, 42 << 8) + inner
    d = decode(_outer_udp(4789, payload))
    assert d is not None
    assert d[:5] == (P.UDP, C4, D4, 50000, 4789) and d[12] == len(payload) and d[13] is None


def test_teredo_port_without_ipv6_is_plain_udp() -> None:
    d = decode(_outer_udp(3544, b"\x01" * 48))
    assert d is not None and d[:5] == (P.UDP, C4, D4, 50000, 3544) and d[13] is None


def test_deep_nesting_is_bounded() -> None:
    pkt = tcp4()
    for _ in range(3):
        pkt = P.ipv4(C4, D4, P.IPIP, pkt)
    check(decode(P.ether(P.ETH_IPV4, pkt)), _w(W_TCP4, (), ("ip4ip",) * 3))
    for _ in range(MAX_LAYERS + 2):
        pkt = P.ipv4(C4, D4, P.IPIP, pkt)
    dec = Decoder()
    assert decode(P.ether(P.ETH_IPV4, pkt), dec=dec) is None
    assert dec.malformed == 1


# ----------------------------------------------------------------------------- not IP, malformed


def test_non_ip_and_unknown_link_are_counted() -> None:
    dec = Decoder()
    arp = P.ether(P.ETH_ARP, bytes.fromhex("0001080006040001") + P.MAC_A + A4 + bytes(6) + B4)
    assert decode(arp, dec=dec) is None
    llc = P.MAC_B + P.MAC_A + struct.pack("!H", 38) + b"\x42\x42\x03" + bytes(35)  # 802.3 length field, STP
    assert decode(llc, dec=dec) is None
    assert decode(P.null_header(7, b"\0" * 20), lt=0, dec=dec) is None  # AF 7: not IP
    assert decode(P.ether(P.ETH_PPPOE_SESSION, P.pppoe_session(0xC021, b"\x01\x01\x00\x04")), dec=dec) is None  # LCP
    assert dec.non_ip == 4
    assert decode(tcp4(), lt=147, dec=dec) is None
    assert dec.unknown_link == 1
    assert dec.malformed == 0


TCP_ACK = P.tcp(1, 2, P.ACK)
MALFORMED: List[Tuple[str, int, bytes]] = [
    ("ipv4-ihl-too-small", 1, P.ether(P.ETH_IPV4, bytes([0x44]) + tcp4()[1:])),
    ("ipv4-total-below-header", 1, P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.TCP, P.tcp(1, 2, P.ACK), total_length=12))),
    ("ethertype-ipv4-version-6", 1, P.ether(P.ETH_IPV4, udp6())),
    ("ethertype-ipv6-version-4", 1, P.ether(P.ETH_IPV6, tcp4() + bytes(40))),
    ("tcp-data-offset-below-5", 1, P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.TCP, bytearray_set(TCP_ACK, 12, 0x40)))),
    ("tcp-data-offset-past-packet", 1, P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.TCP, bytearray_set(TCP_ACK, 12, 0xF0)))),
    ("udp-length-below-8", 1, P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.UDP, P.udp(1, 2, b"abc", length=4)))),
    ("udp-length-past-ip", 1, P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.UDP, P.udp(1, 2, b"abc", length=400)))),
    ("truncated-ethernet", 1, P.ether(P.ETH_IPV4, tcp4())[:10]),
    ("truncated-ipv4", 1, P.ether(P.ETH_IPV4, tcp4())[:25]),
    ("truncated-tcp", 1, P.ether(P.ETH_IPV4, tcp4())[:14 + 20 + 10]),
    ("truncated-ipv6-udp", 1, P.ether(P.ETH_IPV6, udp6())[:30]),
    ("ext-header-past-end", 1, P.ether(P.ETH_IPV6, P.ipv6(A6, B6, P.HOPOPTS, bytes([P.UDP, 200]) + bytes(6)))),
    ("truncated-sll", 113, P.sll(P.ETH_IPV4, tcp4())[:12]),
    ("truncated-null", 0, b"\x02\x00"),
]  # fmt: skip


@pytest.mark.parametrize("lt,frame", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_frames_are_counted(lt: int, frame: bytes) -> None:
    dec = Decoder()
    assert decode(frame, lt=lt, dec=dec) is None
    assert dec.malformed == 1


TRUNCATED_IP_HEADERS: List[Tuple[str, bytes]] = [
    ("ipv6-header-cut-no-next-header", P.ipv6(A6, B6, P.NO_NEXT, b"")[:30]),
    ("ipv6-header-cut-icmpv6", P.ipv6(A6, B6, P.ICMPV6, P.icmp6(128, 0))[:24]),
    ("ipv4-options-cut-esp", P.ipv4(A4, B4, 50, b"", options=bytes(40))[:28]),
]


@pytest.mark.parametrize("frame", [c[1] for c in TRUNCATED_IP_HEADERS], ids=[c[0] for c in TRUNCATED_IP_HEADERS])
def test_ip_header_cut_short_is_malformed(frame: bytes) -> None:
    dec = Decoder()
    assert decode(frame, lt=101, dec=dec) is None
    assert dec.malformed == 1


# ----------------------------------------------------------------------------- lengths


def test_snaplen_truncated_tcp_keeps_the_header_length() -> None:
    payload = bytes(range(256)) * 4
    frame = P.ether(P.ETH_IPV4, tcp4(payload=payload))
    cap = frame[:96]
    d = decode(cap, wire_len=len(frame))
    assert d is not None
    poff, pend, plen = d[10], d[11], d[12]
    assert plen == len(payload)
    assert poff == 14 + 20 + 20 and pend == 96
    assert d[9][poff:pend] == payload[: 96 - poff]


def test_snaplen_truncated_udp_keeps_the_udp_length() -> None:
    payload = b"x" * 1200
    frame = P.ether(P.ETH_IPV6, udp6(payload=payload))
    d = decode(frame[:100], wire_len=len(frame))
    assert d is not None
    assert d[12] == 1200 and d[11] == 100 and d[10] == 14 + 40 + 8


def test_snaplen_truncated_tunnel_keeps_inner_lengths() -> None:
    payload = b"y" * 900
    frame = _outer_udp(4789, P.vxlan(1, P.ether(P.ETH_IPV4, tcp4(payload=payload))))
    d = decode(frame[:128], wire_len=len(frame))
    assert d is not None
    assert d[:5] == (P.TCP, A4, B4, 49152, 80)
    assert d[12] == 900 and d[11] == 128


def test_ethernet_padding_is_not_payload() -> None:
    frame = P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.TCP, P.tcp(1, 2, P.ACK, seq=5, ack=6)))
    padded = frame + b"\0" * (60 - len(frame))
    d = decode(padded)
    assert d is not None and d[12] == 0 and d[10] == d[11]
    u = P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.UDP, P.udp(1, 2, b"ab")))
    d = decode(u + b"\xee" * (60 - len(u)))
    assert d is not None and d[12] == 2 and d[9][d[10] : d[11]] == b"ab"


def test_ip_total_length_beyond_the_frame_is_clamped() -> None:
    seg = P.tcp(1, 2, P.PSH | P.ACK, payload=b"z" * 40)
    frame = P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.TCP, seg, total_length=20 + len(seg) + 100))
    d = decode(frame)
    assert d is not None and d[12] == 40 and d[9][d[10] : d[11]] == b"z" * 40
    frame6 = P.ether(P.ETH_IPV6, P.ipv6(A6, B6, P.TCP, seg, payload_length=len(seg) + 64))
    d = decode(frame6)
    assert d is not None and d[12] == 40


def test_pppoe_length_shorter_than_ip_length_clamps() -> None:
    pkt = tcp4(payload=b"p" * 50)
    frame = P.ether(P.ETH_PPPOE_SESSION, P.pppoe_session(P.PPP_IPV4, pkt, length=2 + len(pkt) - 30))
    d = decode(frame)
    assert d is not None
    assert d[12] == 20 and d[9][d[10] : d[11]] == b"p" * 20
    assert d[13] is not None and d[13][1] == ("pppoe",)


def test_pppoe_length_beyond_frame_is_ignored() -> None:
    pkt = tcp4()
    frame = P.ether(P.ETH_PPPOE_SESSION, P.pppoe_session(P.PPP_IPV4, pkt, length=1400))
    check(decode(frame), _w(W_TCP4, (), ("pppoe",)))


def test_zero_ip_lengths_mean_the_rest_of_the_frame() -> None:
    # A TSO/LRO capture writes 0 in IPv4's total length (and IPv6's payload length).
    seg = P.tcp(49152, 80, P.PSH | P.ACK, seq=1000, ack=2000, window=512, payload=DATA)
    check(decode(P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.TCP, seg, total_length=0))), W_TCP4)
    seg6 = P.tcp(49152, 80, P.PSH | P.ACK, seq=1000, ack=2000, window=512, payload=DATA)
    want6 = Want(P.TCP, A6, B6, 49152, 80, DATA)
    check(decode(P.ether(P.ETH_IPV6, P.ipv6(A6, B6, P.TCP, seg6, payload_length=0))), want6)


# ----------------------------------------------------------------------------- never raises

LINK_TYPES = (0, 1, 9, 12, 14, 50, 101, 104, 108, 113, 228, 229, 276)

VALID_FRAMES: List[Tuple[int, bytes]] = (
    [(c[1], c[2]) for c in LINK_CASES]
    + [(1, c[1]) for c in ENCAP_CASES]
    + [
        (1, P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.UDP, P.udp(1, 2, b"f" * 16), ident=9, more_fragments=True))),
        (1, P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.UDP, b"g" * 16, ident=9, frag_offset=24))),
        (1, P.ether(P.ETH_IPV6, P.ipv6(A6, B6, P.FRAGMENT, P.frag_header(P.UDP, 0, True, 5) + P.udp(1, 2, b"h" * 16)))),
        (1, P.ether(P.ETH_IPV6, P.ipv6(A6, B6, P.FRAGMENT, P.frag_header(P.UDP, 24, False, 5) + b"i" * 8))),
    ]
)


def _fresh_decode(frames: Sequence[Tuple[int, bytes, int]]) -> None:
    """Decode in one fresh decoder (so fragments can meet); check what can be checked."""
    dec = Decoder()
    for lt, frame, wire_len in frames:
        r = dec.decode(frame, lt, 1_000_000_000, wire_len)
        if r is not None:
            src, dst, buf, poff, pend, plen = r[1], r[2], r[9], r[10], r[11], r[12]
            assert len(src) in (4, 16) and len(dst) == len(src)
            assert plen >= 0 and len(buf[poff:pend]) <= plen


@pytest.mark.parametrize("lt", LINK_TYPES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(lt: int, data: bytes) -> None:
    _fresh_decode([(lt, data, len(data)), (lt, data, len(data) + 1000)])


@st.composite
def mutated(draw: st.DrawFn) -> Tuple[int, bytes, int]:
    """A valid frame with a few bytes overwritten, cut short, or extended, and a wire length."""
    lt, frame = draw(st.sampled_from(VALID_FRAMES))
    b = bytearray(frame)
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(b) - 1))
        b[i] = draw(st.sampled_from([0, 1, 0x08, 0x11, 0x2C, 0x3A, 0x40, 0x45, 0x60, 0x7F, 0x80, 0xFF, b[i] ^ 0x01]))
    cut = draw(st.integers(0, len(b)))
    if draw(st.booleans()):
        b = b[:cut]
    else:
        b += draw(st.binary(max_size=16))
    wire = len(b) + draw(st.sampled_from([0, 0, 1, 500, 70000]))
    return lt, bytes(b), wire


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(mutated(), min_size=1, max_size=4))
def test_mutated_valid_frames_never_raise(frames: List[Tuple[int, bytes, int]]) -> None:
    _fresh_decode(frames)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lt=st.sampled_from(LINK_TYPES), head=st.sampled_from([f for _, f in VALID_FRAMES]), tail=st.binary(max_size=60))
def test_valid_prefixes_with_garbage_never_raise(lt: int, head: bytes, tail: bytes) -> None:
    # A real frame's first bytes read under the wrong link type, followed by garbage.
    frame = head[: len(head) // 2] + tail
    _fresh_decode([(lt, frame, len(frame))])
