"""Link-layer, tunnel and IP decoding down to the innermost transport header.

Theory of operation
-------------------
:meth:`Decoder.decode` takes one captured frame and its link type and walks
the headers with integer offsets into the frame: no object is built per
layer.  The walk is a loop over an "EtherType-like" state ``et``: the link
layer sets it, 802.1Q/QinQ, MPLS and PPPoE consume their header and set it
again, and an IP header whose payload is itself a tunnel (IP-in-IP, GRE,
ERSPAN, VXLAN, Geneve, Teredo, GTP-U) moves the offset to the inner packet
and goes round once more.  The loop is bounded by ``MAX_LAYERS`` so no frame,
however crafted, makes it spin.

The result is one flat tuple (see :data:`Decoded`) for the innermost
IPv4/IPv6 packet; the tracker unpacks it into locals.  Rare facts (VLAN ids,
removed tunnels, and the packet/byte counts of a datagram rebuilt from IP
fragments) travel in one optional ``meta`` tuple, ``None`` on the common
path, so the common path allocates only the result tuple and the two address
slices.

IP fragments are handed to :class:`~flowscope._fragments.Defragmenter`; when
a datagram completes, it is rebuilt as an unfragmented IP packet and decoded
again from the IP layer, so tunnels inside fragmented datagrams work too.

Malformed input never raises out of :meth:`Decoder.decode`: a short or
inconsistent header makes it return ``None`` and count the frame in
``malformed``.  Frames that are simply not IP (ARP, STP, LLC…) are counted in
``non_ip``.
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple

from typing_extensions import TypeAlias

from flowscope._fragments import Defragmenter, FragmentConfig

MAX_LAYERS = 16
"""Encapsulation headers walked per frame at most (VLAN tags, labels, tunnels)."""

VXLAN_PORTS = frozenset({4789, 8472})
"""IANA VXLAN port and the Linux kernel's historic default."""
GENEVE_PORT = 6081
TEREDO_PORT = 3544
GTPU_PORT = 2152

Meta: TypeAlias = Tuple[Tuple[int, ...], Tuple[str, ...], int, int]
"""(vlan ids, tunnels removed, packets, wire bytes) — the last two for rebuilt datagrams."""

Decoded: TypeAlias = Tuple[int, bytes, bytes, int, int, int, int, int, int, bytes, int, int, int, Optional[Meta]]
"""(proto, src, dst, sport, dport, tcp_flags, seq, ack, window, buf, payload_off,
payload_end, payload_len, meta).

``buf[payload_off:payload_end]`` is the captured L4 payload; ``payload_len``
is its length on the wire (larger when the capture was cut by a snap length).
For ICMP, ``sport``/``dport`` are the type and code.  ``tcp_flags`` is -1
for non-TCP packets.
"""

_TCP = struct.Struct("!HHIIBBH")
_UDP = struct.Struct("!HHH")
_H = struct.Struct("!H")
_I_LE = struct.Struct("<I")
_I_BE = struct.Struct("!I")

# EtherType-like states of the walk.
ET_IPV4 = 0x0800
ET_IPV6 = 0x86DD
ET_VLAN = 0x8100
ET_QINQ = 0x88A8
ET_QINQ_OLD = 0x9100
ET_MPLS = 0x8847
ET_MPLS_MC = 0x8848
ET_PPPOE = 0x8864
ET_TEB = 0x6558  # transparent Ethernet bridging: an Ethernet frame follows
ET_ERSPAN2 = 0x88BE
ET_ERSPAN3 = 0x22EB
ET_PPP = 0x880B
_ET_ETHER = -1  # internal: an Ethernet header starts at the offset
_ET_PPP_PROTO = -2  # internal: a PPP protocol field starts at the offset

_IPV6_EXT = frozenset({0, 43, 60, 135, 139, 140})  # hop-by-hop, routing, dst opts, mobility, HIP, shim6


class Decoder:
    """Decodes frames for one worker; owns that worker's IP defragmenter."""

    __slots__ = ("defrag", "non_ip", "malformed", "unknown_link")

    def __init__(self, fragments: Optional[FragmentConfig] = None) -> None:
        self.defrag = Defragmenter(fragments or FragmentConfig())
        self.non_ip = 0
        """Frames without an IP packet inside (ARP, LLDP…)."""
        self.malformed = 0
        """Frames whose headers were short or inconsistent."""
        self.unknown_link = 0
        """Frames of a link type the decoder does not know."""

    def decode(self, buf: bytes, lt: int, ts: int, wire_len: int) -> Optional[Decoded]:
        """Decode one frame; ``None`` when it carries nothing to track (counted)."""
        try:
            n = len(buf)
            return self._decode(buf, lt, ts, wire_len, 0, wire_len if wire_len > n else n, None, None)
        except (IndexError, struct.error):
            self.malformed += 1
            return None

    def _decode(
        self,
        buf: bytes,
        lt: int,
        ts: int,
        wire_len: int,
        off: int,
        end: int,
        vlans: Optional[Tuple[int, ...]],
        tunnels: Optional[Tuple[str, ...]],
    ) -> Optional[Decoded]:
        # ``end`` is where the current layer ends on the wire: the frame's original
        # length, narrowed by every enclosing length field (PPPoE, UDP, IP).  Payload
        # lengths come from it, as tshark computes them; only reads are clamped to
        # the captured bytes.
        blen = len(buf)
        # ---------------------------------------------------------------- link layer
        if lt == 1:
            et = _ET_ETHER
        elif lt == 101 or lt == 228 or lt == 229 or lt == 12 or lt == 14:
            et = ET_IPV4 if buf[off] >> 4 == 4 else ET_IPV6
        elif lt == 113:
            et = (buf[off + 14] << 8) | buf[off + 15]
            off += 16
        elif lt == 276:
            et = (buf[off] << 8) | buf[off + 1]
            off += 20
        elif lt == 0 or lt == 108:
            fam = _I_BE.unpack_from(buf, off)[0] if lt == 108 else _I_LE.unpack_from(buf, off)[0]
            if fam > 0xFFFF:  # written by a host of the other byte order
                fam = int.from_bytes(fam.to_bytes(4, "little"), "big")
            off += 4
            if fam == 2:
                et = ET_IPV4
            elif fam in (10, 23, 24, 26, 28, 30):  # AF_INET6 on Linux, NetBSD, FreeBSD, Darwin…
                et = ET_IPV6
            else:
                self.non_ip += 1
                return None
        elif lt == 104:
            et = (buf[off + 2] << 8) | buf[off + 3]
            off += 4
        elif lt == 9 or lt == 50:
            if buf[off] == 0xFF and buf[off + 1] == 0x03:
                off += 2
            et = _ET_PPP_PROTO
        else:
            self.unknown_link += 1
            return None

        for _ in range(MAX_LAYERS):
            if et == _ET_ETHER:
                et = (buf[off + 12] << 8) | buf[off + 13]
                off += 14
                if et < 0x0600:  # 802.3 length field: LLC/SNAP, not IP
                    self.non_ip += 1
                    return None
                continue

            if et == ET_IPV4:
                # ------------------------------------------------------------ IPv4
                b0 = buf[off]
                ihl = (b0 & 0x0F) << 2
                if b0 >> 4 != 4 or ihl < 20:
                    self.malformed += 1
                    return None
                tot = (buf[off + 2] << 8) | buf[off + 3]
                if tot < ihl:
                    if tot != 0:  # 0: TSO/LRO capture, length unknown
                        self.malformed += 1
                        return None
                    tot = end - off
                ip_end = off + tot
                if ip_end > end:
                    ip_end = end
                if off + ihl > ip_end or off + 20 > blen:  # header cut short
                    self.malformed += 1
                    return None
                proto = buf[off + 9]
                src = buf[off + 12 : off + 16]
                dst = buf[off + 16 : off + 20]
                if buf[off + 6] & 0x3F or buf[off + 7]:  # MF set or offset != 0
                    return self._fragment4(buf, off, ihl, ip_end, end, ts, wire_len, vlans, tunnels)
                l4 = off + ihl
                outer_v6 = False
            elif et == ET_IPV6:
                # ------------------------------------------------------------ IPv6
                if buf[off] >> 4 != 6:
                    self.malformed += 1
                    return None
                plen = (buf[off + 4] << 8) | buf[off + 5]
                proto = buf[off + 6]
                src = buf[off + 8 : off + 24]
                dst = buf[off + 24 : off + 40]
                l4 = off + 40
                ip_end = l4 + plen if plen else end  # 0: jumbogram or TSO capture
                if ip_end > end:
                    ip_end = end
                if l4 > ip_end or l4 > blen:  # header cut short
                    self.malformed += 1
                    return None
                if proto in _IPV6_EXT or proto == 44 or proto == 51:
                    while True:
                        if proto == 44:
                            return self._fragment6(buf, off, l4, ip_end, end, ts, wire_len, vlans, tunnels)
                        if proto == 51:  # AH: length in 4-octet units, minus 2
                            nxt, hl = buf[l4], (buf[l4 + 1] + 2) << 2
                        elif proto in _IPV6_EXT:
                            nxt, hl = buf[l4], (buf[l4 + 1] + 1) << 3
                        else:
                            break
                        proto = nxt
                        l4 += hl
                        if l4 > ip_end:
                            self.malformed += 1
                            return None
                outer_v6 = True
            elif et == ET_VLAN or et == ET_QINQ or et == ET_QINQ_OLD:
                vid = ((buf[off] << 8) | buf[off + 1]) & 0x0FFF
                vlans = (vid,) if vlans is None else vlans + (vid,)
                et = (buf[off + 2] << 8) | buf[off + 3]
                off += 4
                continue
            elif et == ET_MPLS or et == ET_MPLS_MC:
                while not buf[off + 2] & 0x01:  # bottom-of-stack bit
                    off += 4
                off += 4
                nib = buf[off] >> 4
                if nib == 4:
                    et = ET_IPV4
                elif nib == 6:
                    et = ET_IPV6
                elif nib == 0:  # pseudowire control word, then Ethernet
                    off += 4
                    et = _ET_ETHER
                else:
                    self.non_ip += 1
                    return None
                tunnels = _add(tunnels, "mpls")
                continue
            elif et == ET_PPPOE:
                if buf[off] != 0x11 or buf[off + 1] != 0x00:  # version 1, type 1, session data
                    self.non_ip += 1
                    return None
                plen = (buf[off + 4] << 8) | buf[off + 5]
                if off + 6 + plen < end:
                    end = off + 6 + plen
                off += 6
                et = _ET_PPP_PROTO
                tunnels = _add(tunnels, "pppoe")
                continue
            elif et == _ET_PPP_PROTO:
                p = buf[off]
                if p & 0x01:  # protocol-field compression: 1-byte protocol
                    off += 1
                else:
                    p = (p << 8) | buf[off + 1]
                    off += 2
                if p == 0x21:
                    et = ET_IPV4
                elif p == 0x57:
                    et = ET_IPV6
                else:
                    self.non_ip += 1
                    return None
                continue
            else:
                self.non_ip += 1
                return None

            # ---------------------------------------------------------------- transport
            cap_end = ip_end if ip_end <= blen else blen
            if proto == 6:
                sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(buf, l4)
                poff = l4 + ((doff >> 4) << 2)
                if poff > ip_end or doff < 0x50:
                    self.malformed += 1
                    return None
                meta = None if vlans is None and tunnels is None else (vlans or (), tunnels or (), 1, wire_len)
                return (6, src, dst, sport, dport, flags, seq, ack, win, buf, poff, cap_end, ip_end - poff, meta)
            if proto == 17:
                sport, dport, ulen = _UDP.unpack_from(buf, l4)
                poff = l4 + 8
                if ulen < 8 or l4 + ulen > ip_end:
                    if ulen != 0:
                        self.malformed += 1
                        return None
                    ulen = ip_end - l4  # 0: jumbogram
                udp_end = l4 + ulen
                # ---------------------------------------------------------- UDP tunnels
                if dport in VXLAN_PORTS or sport in VXLAN_PORTS:
                    if ulen >= 8 + 8 + 14 and buf[poff] & 0x08:
                        off = poff + 8
                        end = min(udp_end, end)
                        et = _ET_ETHER
                        tunnels = _add(tunnels, "vxlan")
                        continue
                elif dport == TEREDO_PORT or sport == TEREDO_PORT:
                    inner = _teredo_inner(buf, poff, min(udp_end, blen))
                    if inner >= 0:
                        off = inner
                        end = min(udp_end, end)
                        et = ET_IPV6
                        tunnels = _add(tunnels, "teredo")
                        continue
                elif dport == GTPU_PORT or sport == GTPU_PORT:
                    inner = _gtpu_inner(buf, poff, min(udp_end, blen))
                    if inner >= 0:
                        off = inner
                        end = min(udp_end, end)
                        et = ET_IPV4 if buf[inner] >> 4 == 4 else ET_IPV6
                        tunnels = _add(tunnels, "gtp")
                        continue
                elif dport == GENEVE_PORT or sport == GENEVE_PORT:
                    if buf[poff] >> 6 == 0:
                        ptype = (buf[poff + 2] << 8) | buf[poff + 3]
                        off = poff + 8 + ((buf[poff] & 0x3F) << 2)
                        end = min(udp_end, end)
                        if ptype == ET_TEB:
                            et = _ET_ETHER
                        else:
                            et = ptype
                        tunnels = _add(tunnels, "geneve")
                        continue
                meta = None if vlans is None and tunnels is None else (vlans or (), tunnels or (), 1, wire_len)
                return (17, src, dst, sport, dport, -1, 0, 0, 0, buf, poff, min(udp_end, cap_end), ulen - 8, meta)
            if proto == 4 or proto == 41:
                off = l4
                end = ip_end
                if proto == 4:
                    et = ET_IPV4
                    tunnels = _add(tunnels, "ip4ip6" if outer_v6 else "ip4ip")
                else:
                    et = ET_IPV6
                    tunnels = _add(tunnels, "ip6ip6" if outer_v6 else "ip6ip")
                continue
            if proto == 47:
                gre = _gre_inner(buf, l4, cap_end)
                if gre is not None:
                    et, off, name = gre
                    end = ip_end
                    tunnels = _add(tunnels, name)
                    continue
            # Any other protocol (ICMP, SCTP, ESP, undecodable GRE…): a flow keyed by the
            # addresses; ICMP's type and code and SCTP's ports stand in for ports.
            sport = dport = 0
            if proto == 1 or proto == 58 or proto == 132:
                if l4 + 4 <= cap_end:
                    if proto == 132:
                        sport, dport = (buf[l4] << 8) | buf[l4 + 1], (buf[l4 + 2] << 8) | buf[l4 + 3]
                    else:
                        sport, dport = buf[l4], buf[l4 + 1]
            meta = None if vlans is None and tunnels is None else (vlans or (), tunnels or (), 1, wire_len)
            return (proto, src, dst, sport, dport, -1, 0, 0, 0, buf, l4, cap_end, ip_end - l4, meta)
        self.malformed += 1
        return None

    # ------------------------------------------------------------------ fragments

    def _fragment4(
        self,
        buf: bytes,
        off: int,
        ihl: int,
        ip_end: int,
        end: int,
        ts: int,
        wire_len: int,
        vlans: Optional[Tuple[int, ...]],
        tunnels: Optional[Tuple[str, ...]],
    ) -> Optional[Decoded]:
        fw = (buf[off + 6] << 8) | buf[off + 7]
        key = (4, buf[off + 12 : off + 20], buf[off + 4 : off + 6], buf[off + 9])
        done = self.defrag.add(
            key,
            ts,
            wire_len,
            (fw & 0x1FFF) << 3,
            bool(fw & 0x2000),
            buf[off + ihl : min(ip_end, len(buf))],
            buf[off : off + ihl],
            vlans,
            tunnels,
        )
        if done is None:
            return None
        header, payload, npk, nbytes, vlans0, tunnels0 = done
        tot = len(header) + len(payload)
        if tot > 0xFFFF:
            self.malformed += 1
            return None
        rebuilt = header[:2] + tot.to_bytes(2, "big") + header[4:6] + b"\x00\x00" + header[8:] + payload
        return self._rebuilt(rebuilt, 228, ts, npk, nbytes, vlans0, tunnels0)

    def _fragment6(
        self,
        buf: bytes,
        off: int,
        fh: int,
        ip_end: int,
        end: int,
        ts: int,
        wire_len: int,
        vlans: Optional[Tuple[int, ...]],
        tunnels: Optional[Tuple[str, ...]],
    ) -> Optional[Decoded]:
        # The unfragmentable part (IPv6 header + extension headers before the fragment
        # header) is kept from the first fragment, with the fragment header removed.
        nxt = buf[fh]
        fo = (buf[fh + 2] << 8) | buf[fh + 3]
        key = (6, buf[off + 8 : off + 40], buf[fh + 4 : fh + 8], 0)
        done = self.defrag.add(
            key,
            ts,
            wire_len,
            fo & 0xFFF8,
            bool(fo & 0x0001),
            buf[fh + 8 : min(ip_end, len(buf))],
            buf[off:fh] + bytes((nxt,)),
            vlans,
            tunnels,
        )
        if done is None:
            return None
        header, payload, npk, nbytes, vlans0, tunnels0 = done
        unfrag, nxt = header[:-1], header[-1]
        plen = len(unfrag) - 40 + len(payload)
        if plen > 0xFFFF:
            self.malformed += 1
            return None
        if len(unfrag) == 40:
            fixed = unfrag[:4] + plen.to_bytes(2, "big") + bytes((nxt,)) + unfrag[7:]
        else:
            # The next-header field that pointed at the fragment header is the last
            # extension header's first byte; walking them again is rare enough.
            fixed = _ipv6_relink(unfrag, nxt, plen)
        return self._rebuilt(fixed + payload, 229, ts, npk, nbytes, vlans0, tunnels0)

    def _rebuilt(
        self,
        packet: bytes,
        lt: int,
        ts: int,
        npk: int,
        nbytes: int,
        vlans: Optional[Tuple[int, ...]],
        tunnels: Optional[Tuple[str, ...]],
    ) -> Optional[Decoded]:
        d = self._decode(packet, lt, ts, nbytes, 0, len(packet), vlans, tunnels)
        if d is None:
            return None
        m = d[13]
        meta: Meta = (m[0], m[1], npk, nbytes) if m is not None else ((), (), npk, nbytes)
        return d[:13] + (meta,)


def _add(tunnels: Optional[Tuple[str, ...]], name: str) -> Tuple[str, ...]:
    return (name,) if tunnels is None else tunnels + (name,)


def _teredo_inner(buf: bytes, p: int, end: int) -> int:
    """Offset of the IPv6 packet inside a Teredo payload, or -1 if it is not one."""
    if p + 2 <= end and buf[p] == 0 and buf[p + 1] == 1:  # authentication indicator
        if p + 4 > end:
            return -1
        p += 4 + buf[p + 2] + buf[p + 3] + 9
    if p + 2 <= end and buf[p] == 0 and buf[p + 1] == 0:  # origin indication
        p += 8
    if p + 40 > end or buf[p] >> 4 != 6:
        return -1
    plen = (buf[p + 4] << 8) | buf[p + 5]
    if p + 40 + plen != end:  # the inner packet must fill the datagram exactly
        return -1
    return p


def _gtpu_inner(buf: bytes, p: int, end: int) -> int:
    """Offset of the IP packet inside a GTPv1-U G-PDU, or -1."""
    if p + 8 > end:
        return -1
    flags = buf[p]
    if flags >> 5 != 1 or not flags & 0x10 or buf[p + 1] != 0xFF:  # version 1, GTP, G-PDU
        return -1
    q = p + 8
    if flags & 0x07:  # E, S or PN: 4 more bytes, the last one a next-extension type
        q += 4
        nxt = buf[q - 1]
        while nxt:
            ln = buf[q] << 2
            if ln == 0:
                return -1
            q += ln
            nxt = buf[q - 1]
    if q >= end or buf[q] >> 4 not in (4, 6):
        return -1
    return q


def _gre_inner(buf: bytes, p: int, end: int) -> Optional[Tuple[int, int, str]]:
    """(next state, offset, tunnel name) of what a GRE header carries, or ``None``."""
    fl = buf[p]
    ver = buf[p + 1] & 0x07
    ptype = (buf[p + 2] << 8) | buf[p + 3]
    if fl & 0x40:  # routing present (RFC 1701): obsolete, not decoded
        return None
    q = p + 4
    if fl & 0x80:  # checksum + reserved
        q += 4
    if fl & 0x20:  # key
        q += 4
    if fl & 0x10:  # sequence number
        q += 4
    if ver == 1:  # enhanced GRE (PPTP): optional acknowledgement number
        if buf[p + 1] & 0x80:
            q += 4
        if ptype != ET_PPP:
            return None
        return (_ET_PPP_PROTO, q + 2 if buf[q] == 0xFF and buf[q + 1] == 0x03 else q, "gre")
    if ver != 0 or q > end:
        return None
    if ptype == ET_IPV4 or ptype == ET_IPV6 or ptype == ET_MPLS:
        return (ptype, q, "gre")
    if ptype == ET_TEB:
        return (_ET_ETHER, q, "gre")
    if ptype == ET_ERSPAN2:
        # ERSPAN type II carries an 8-byte header and sets the GRE sequence bit;
        # type I has neither.
        return (_ET_ETHER, q + 8 if fl & 0x10 else q, "erspan")
    if ptype == ET_ERSPAN3:
        sub = 8 if buf[q + 11] & 0x01 else 0  # optional platform-specific subheader
        return (_ET_ETHER, q + 12 + sub, "erspan")
    return None


def _ipv6_relink(unfrag: bytes, nxt: int, plen: int) -> bytes:
    """The unfragmentable part with its last next-header set to ``nxt`` and length fixed."""
    b = bytearray(unfrag)
    b[4:6] = plen.to_bytes(2, "big")
    at = 6
    q = 40
    while q < len(b):
        at = q
        q += (b[q + 1] + 1) << 3
    b[at] = nxt
    return bytes(b)
