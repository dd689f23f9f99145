"""A small, typed packet builder for tests.

Every function lays out one protocol header from its specification (field
widths and constants written out here, lengths computed here) and returns
``bytes``; layers are stacked by nesting calls, innermost first::

    frame = ether(ETH_IPV4, ipv4(A, B, TCP, tcp(1234, 80, ACK, payload=b"hi", src=A, dst=B)))

Nothing here imports flowscope: the tests compare what the decoder reads
against what these builders wrote, so the two must stay independent.

Checksums: the IPv4 header checksum is always computed (RFC 791/1071).  TCP,
UDP and ICMPv6 checksums are computed when the addresses are passed
(``src``/``dst``, for the pseudo-header of RFC 9293/768/8200); ICMPv4's
needs none.  The decoder does not verify checksums, but a capture written
from these frames opens cleanly in Wireshark.
"""

from __future__ import annotations

import socket
import struct
from typing import BinaryIO, Iterable, Optional, Sequence, Tuple, Union

# ----------------------------------------------------------------------------- constants

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
ETH_QINQ_OLD = 0x9100
ETH_MPLS = 0x8847
ETH_PPPOE_SESSION = 0x8864
ETH_TEB = 0x6558
ETH_ERSPAN2 = 0x88BE
ETH_ERSPAN3 = 0x22EB
ETH_PPP = 0x880B

ICMP = 1
TCP = 6
UDP = 17
IPIP = 4
IPV6_IN = 41
GRE = 47
ICMPV6 = 58
SCTP = 132
HOPOPTS = 0
ROUTING = 43
FRAGMENT = 44
AH = 51
DSTOPTS = 60
NO_NEXT = 59

PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def ip(text: str) -> bytes:
    """The raw bytes of an IPv4 or IPv6 address in text form."""
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


# ----------------------------------------------------------------------------- checksums


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): ones' complement of the ones' complement sum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """The IPv4 (RFC 793) or IPv6 (RFC 8200 §8.1) pseudo-header that transport checksums cover."""
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def _with_l4_checksum(seg: bytearray, at: int, src: bytes, dst: bytes, proto: int, udp: bool = False) -> bytes:
    if src and dst:
        c = checksum(pseudo_header(src, dst, proto, len(seg)) + bytes(seg))
        if udp and c == 0:
            c = 0xFFFF  # RFC 768: a computed zero is sent as all ones
        struct.pack_into("!H", seg, at, c)
    return bytes(seg)


# ----------------------------------------------------------------------------- link layers


def ether(ethertype: int, payload: bytes, *, dst: bytes = MAC_B, src: bytes = MAC_A) -> bytes:
    """Ethernet II: destination, source, EtherType."""
    return dst + src + struct.pack("!H", ethertype) + payload


def vlan_tag(vid: int, ethertype: int, payload: bytes, *, pcp: int = 0) -> bytes:
    """One 802.1Q tag's TCI and inner EtherType (the outer EtherType names the tag)."""
    return struct.pack("!HH", (pcp << 13) | (vid & 0x0FFF), ethertype) + payload


def ether_vlans(vids: Sequence[int], ethertype: int, payload: bytes, *, outer: int = ETH_VLAN) -> bytes:
    """Ethernet with stacked VLAN tags, outermost first; ``outer`` is the first tag's TPID."""
    inner = payload
    et = ethertype
    for i, vid in enumerate(reversed(vids)):
        inner = vlan_tag(vid, et, inner)
        et = outer if i == len(vids) - 1 else ETH_VLAN
    return ether(et, inner)


def sll(protocol: int, payload: bytes, *, packet_type: int = 0, addr: bytes = MAC_A) -> bytes:
    """Linux cooked capture v1 (LINKTYPE_LINUX_SLL): 16 bytes."""
    return struct.pack("!HHH", packet_type, 1, len(addr)) + addr.ljust(8, b"\0") + struct.pack("!H", protocol) + payload


def sll2(protocol: int, payload: bytes, *, ifindex: int = 2, packet_type: int = 0, addr: bytes = MAC_A) -> bytes:
    """Linux cooked capture v2 (LINKTYPE_LINUX_SLL2): 20 bytes."""
    return struct.pack("!HHIHBB", protocol, 0, ifindex, 1, packet_type, len(addr)) + addr.ljust(8, b"\0") + payload


def null_header(family: int, payload: bytes, *, order: str = "<") -> bytes:
    """BSD loopback (LINKTYPE_NULL, host order; LINKTYPE_LOOP, network order): the address family."""
    return struct.pack(order + "I", family) + payload


def chdlc(protocol: int, payload: bytes) -> bytes:
    """Cisco HDLC: address (unicast 0x0F), control 0, protocol (an EtherType)."""
    return struct.pack("!BBH", 0x0F, 0x00, protocol) + payload


def ppp(protocol: int, payload: bytes, *, address_control: bool = True, compress: bool = False) -> bytes:
    """PPP in HDLC-like framing (RFC 1662): optional FF 03, then the protocol field."""
    head = b"\xff\x03" if address_control else b""
    proto = bytes((protocol,)) if compress else struct.pack("!H", protocol)
    return head + proto + payload


# ----------------------------------------------------------------------------- shims


def mpls(labels: Sequence[int], payload: bytes, *, ttl: int = 64) -> bytes:
    """An MPLS label stack (RFC 3032); the last label carries the bottom-of-stack bit."""
    out = b""
    for i, label in enumerate(labels):
        bos = 1 if i == len(labels) - 1 else 0
        out += struct.pack("!I", (label << 12) | (bos << 8) | ttl)
    return out + payload


def pppoe_session(protocol: int, payload: bytes, *, session: int = 0x1234, length: Optional[int] = None) -> bytes:
    """PPPoE session stage (RFC 2516): ver/type 0x11, code 0, session, length, PPP protocol."""
    body = struct.pack("!H", protocol) + payload
    return struct.pack("!BBHH", 0x11, 0x00, session, len(body) if length is None else length) + body


# ----------------------------------------------------------------------------- IP


def ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    *,
    ident: int = 1,
    ttl: int = 64,
    dont_fragment: bool = False,
    more_fragments: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
    total_length: Optional[int] = None,
) -> bytes:
    """IPv4 (RFC 791) with a correct header checksum; ``frag_offset`` is in bytes (multiple of 8)."""
    if len(options) % 4:
        raise ValueError("IPv4 options must be padded to 32 bits")
    ihl = 5 + len(options) // 4
    flags = (0x4000 if dont_fragment else 0) | (0x2000 if more_fragments else 0) | (frag_offset >> 3)
    tot = ihl * 4 + len(payload) if total_length is None else total_length
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, ident, flags, ttl, proto, 0, src, dst) + options)
    struct.pack_into("!H", hdr, 10, checksum(bytes(hdr)))
    return bytes(hdr) + payload


def ipv6(
    src: bytes,
    dst: bytes,
    next_header: int,
    payload: bytes,
    *,
    hop_limit: int = 64,
    flow_label: int = 0,
    payload_length: Optional[int] = None,
) -> bytes:
    """IPv6 (RFC 8200); ``payload`` includes any extension headers (see :func:`ext_header`)."""
    plen = len(payload) if payload_length is None else payload_length
    return struct.pack("!IHBB", (6 << 28) | flow_label, plen, next_header, hop_limit) + src + dst + payload


def ext_header(next_header: int, body: bytes = b"\0" * 6) -> bytes:
    """A hop-by-hop, destination-options or routing header: next header, length in 8-octet units - 1.

    ``body`` (padded here with zeros) is what follows the two fixed bytes.
    """
    body = body + b"\0" * (-(len(body) + 2) % 8)
    return struct.pack("!BB", next_header, (len(body) + 2) // 8 - 1) + body


def ah_header(next_header: int, icv: bytes = b"\0" * 12) -> bytes:
    """An authentication header (RFC 4302): length in 4-octet units - 2."""
    body = struct.pack("!HII", 0, 0x100, 1) + icv
    return struct.pack("!BB", next_header, (len(body) + 2) // 4 - 2) + body


def frag_header(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    """The IPv6 fragment header (RFC 8200 §4.5); ``offset`` in bytes (multiple of 8)."""
    return struct.pack("!BBHI", next_header, 0, offset | (1 if more else 0), ident)


def ip_packet(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    """IPv4 or IPv6 by the addresses' length."""
    return ipv4(src, dst, proto, payload) if len(src) == 4 else ipv6(src, dst, proto, payload)


def ethertype_of(packet: bytes) -> int:
    """The EtherType of an IP packet, from its version nibble."""
    return ETH_IPV4 if packet[0] >> 4 == 4 else ETH_IPV6


# ----------------------------------------------------------------------------- transport


def tcp(
    sport: int,
    dport: int,
    flags: int,
    *,
    seq: int = 0,
    ack: int = 0,
    window: int = 65535,
    payload: bytes = b"",
    options: bytes = b"",
    src: bytes = b"",
    dst: bytes = b"",
) -> bytes:
    """A TCP segment (RFC 9293); the checksum is filled in when ``src``/``dst`` are given."""
    if len(options) % 4:
        raise ValueError("TCP options must be padded to 32 bits")
    doff = 5 + len(options) // 4
    seg = bytearray(
        struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, doff << 4, flags, window, 0, 0)
        + options
        + payload
    )
    return _with_l4_checksum(seg, 16, src, dst, TCP)


def udp(
    sport: int, dport: int, payload: bytes, *, src: bytes = b"", dst: bytes = b"", length: Optional[int] = None
) -> bytes:
    """A UDP datagram (RFC 768); ``length`` overrides the length field."""
    seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload) if length is None else length, 0) + payload)
    return _with_l4_checksum(seg, 6, src, dst, UDP, udp=True)


def icmp(icmp_type: int, code: int, payload: bytes = b"", *, ident: int = 1, seq: int = 1) -> bytes:
    """ICMPv4 (RFC 792) with identifier and sequence (the echo layout)."""
    msg = bytearray(struct.pack("!BBHHH", icmp_type, code, 0, ident, seq) + payload)
    struct.pack_into("!H", msg, 2, checksum(bytes(msg)))
    return bytes(msg)


def icmp6(
    icmp_type: int, code: int, payload: bytes = b"", *, ident: int = 1, seq: int = 1, src: bytes = b"", dst: bytes = b""
) -> bytes:
    """ICMPv6 (RFC 4443); the checksum covers the IPv6 pseudo-header when addresses are given."""
    msg = bytearray(struct.pack("!BBHHH", icmp_type, code, 0, ident, seq) + payload)
    return _with_l4_checksum(msg, 2, src, dst, ICMPV6)


def sctp(sport: int, dport: int, payload: bytes = b"", *, vtag: int = 0) -> bytes:
    """An SCTP common header (RFC 9260) followed by ``payload`` (chunks); checksum left zero."""
    return struct.pack("!HHII", sport, dport, vtag, 0) + payload


# ----------------------------------------------------------------------------- tunnels


def gre(
    protocol: int,
    payload: bytes,
    *,
    checksum_present: bool = False,
    key: Optional[int] = None,
    seq: Optional[int] = None,
    version: int = 0,
    ack: Optional[int] = None,
) -> bytes:
    """GRE (RFC 2784/2890), or enhanced GRE for PPTP (RFC 2637) with ``version=1``."""
    b0 = (0x80 if checksum_present else 0) | (0x20 if key is not None else 0) | (0x10 if seq is not None else 0)
    b1 = (0x80 if ack is not None else 0) | (version & 0x07)
    out = struct.pack("!BBH", b0, b1, protocol)
    if checksum_present:
        out += b"\0\0\0\0"
    if key is not None:
        out += struct.pack("!I", key)
    if seq is not None:
        out += struct.pack("!I", seq)
    if ack is not None:
        out += struct.pack("!I", ack)
    return out + payload


def pptp_gre(call_id: int, payload: bytes, *, seq: Optional[int] = 1, ack: Optional[int] = None) -> bytes:
    """Enhanced GRE carrying PPP: key = payload length (16 bits) and call id (16 bits)."""
    return gre(ETH_PPP, payload, key=(len(payload) << 16) | call_id, seq=seq, version=1, ack=ack)


def erspan2(frame: bytes, *, session: int = 1, vlan: int = 0, index: int = 0) -> bytes:
    """The 8-byte ERSPAN type II header (version 1) and the mirrored frame."""
    return struct.pack("!HHI", (1 << 12) | vlan, session & 0x3FF, index & 0xFFFFF) + frame


def erspan3(frame: bytes, *, session: int = 1, subheader: bool = False) -> bytes:
    """The 12-byte ERSPAN type III header (version 2), with the optional 8-byte platform subheader."""
    head = struct.pack("!HHIHH", (2 << 12), session & 0x3FF, 0x01020304, 0, 1 if subheader else 0)
    return head + (b"\x08" + b"\0" * 7 if subheader else b"") + frame


def vxlan(vni: int, frame: bytes) -> bytes:
    """VXLAN (RFC 7348): flags with the I bit, reserved, 24-bit VNI, reserved."""
    return struct.pack("!II", 0x08000000, vni << 8) + frame


def geneve(protocol: int, payload: bytes, *, vni: int = 1, options: bytes = b"") -> bytes:
    """Geneve (RFC 8926): version 0, options length in 4-byte units, protocol type, VNI."""
    if len(options) % 4:
        raise ValueError("Geneve options are multiples of 4 bytes")
    return struct.pack("!BBHI", len(options) // 4, 0, protocol, vni << 8) + options + payload


def teredo(packet: bytes, *, auth: Optional[Tuple[bytes, bytes]] = None, origin: bool = False) -> bytes:
    """Teredo (RFC 4380): optional authentication and origin indications, then IPv6."""
    out = b""
    if auth is not None:
        client_id, value = auth
        out += struct.pack("!HBB", 1, len(client_id), len(value)) + client_id + value + b"N" * 8 + b"\0"
    if origin:
        out += struct.pack("!HH4s", 0, 0xFFFF ^ 3544, bytes(b ^ 0xFF for b in ip("192.0.2.1")))
    return out + packet


def gtpu(teid: int, packet: bytes, *, extension: bool = False) -> bytes:
    """GTPv1-U G-PDU (3GPP TS 29.281); with ``extension`` a PDU session container header."""
    if not extension:
        return struct.pack("!BBHI", 0x30, 0xFF, len(packet), teid) + packet
    opt = struct.pack("!HBB", 0, 0, 0x85)  # sequence, N-PDU, next extension: PDU session container
    ext = struct.pack("!BBBB", 1, 0x00, 0x09, 0)  # length 1 (4 bytes), content, no next extension
    body = opt + ext + packet
    return struct.pack("!BBHI", 0x34, 0xFF, len(body), teid) + body


# ----------------------------------------------------------------------------- captures

Record = Union[Tuple[int, bytes], Tuple[int, bytes, int]]
"""``(ts_ns, frame)`` or ``(ts_ns, frame, wire_len)``."""


def _records(records: Iterable[Record]) -> Iterable[Tuple[int, bytes, int]]:
    for r in records:
        if len(r) == 2:
            yield r[0], r[1], len(r[1])
        else:
            yield r[0], r[1], r[2]


def pcap_bytes(records: Iterable[Record], *, link: int = 1, nanos: bool = False, order: str = "<") -> bytes:
    """A classic pcap file (version 2.4) of the records."""
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = bytearray(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, link))
    for ts, frame, wire_len in _records(records):
        sec, ns = divmod(ts, 1_000_000_000)
        frac = ns if nanos else ns // 1000
        out += struct.pack(order + "IIII", sec, frac, len(frame), wire_len) + frame
    return bytes(out)


def pcapng_bytes(records: Iterable[Record], *, link: int = 1) -> bytes:
    """A pcapng file: one section, one interface (default microsecond resolution), EPBs."""

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(0x00000001, struct.pack("<HHI", link, 0, 262144))
    for ts, frame, wire_len in _records(records):
        us = ts // 1000
        out += block(0x00000006, struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(frame), wire_len) + frame)
    return out


def write_pcap(stream: BinaryIO, records: Iterable[Record], *, link: int = 1, nanos: bool = False) -> None:
    """Write :func:`pcap_bytes` to an open binary stream."""
    stream.write(pcap_bytes(records, link=link, nanos=nanos))
