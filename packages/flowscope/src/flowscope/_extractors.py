"""Flow extractors: how packets are grouped into flows.

The default, :class:`FiveTuple`, is the innermost IP 5-tuple with both
directions on one key; the tracker runs it inline on its fast path, so
passing ``FiveTuple()`` costs nothing.  Any object with an ``extract``
method (the :class:`flowscope_core.FlowExtractor` protocol) can replace it;
the tracker then builds a :class:`~flowscope_core.PacketView` per packet for
it, which is slower but fully general.
"""

from __future__ import annotations

from typing import Optional

from flowscope_core import Endpoint, Extracted, PacketView

from flowscope._addr import addr_text


class FiveTuple:
    """The innermost (protocol, addresses, ports), direction-agnostic (the default).

    ICMP's type and code are not part of the key, so an echo request and its
    reply share one flow.  ``vlan_in_key`` adds the VLAN ids to the key.
    """

    def __init__(self, *, vlan_in_key: bool = False) -> None:
        self.vlan_in_key = vlan_in_key

    def extract(self, packet: PacketView) -> Optional[Extracted]:
        """The 5-tuple key of a packet (``None`` without IP)."""
        if not packet.ip_version:
            return None
        ports = packet.proto not in (1, 58)
        sp = packet.src_port if ports else 0
        dp = packet.dst_port if ports else 0
        a = (packet.src_addr, sp)
        b = (packet.dst_addr, dp)
        fwd = a <= b
        lo, hi = (a, b) if fwd else (b, a)
        key: object = (packet.proto, lo[0], lo[1], hi[0], hi[1])
        if self.vlan_in_key and packet.vlan:
            key = (key, packet.vlan)
        return Extracted(
            key=key,
            forward=fwd,
            src=Endpoint(addr=addr_text(packet.src_addr), port=packet.src_port),
            dst=Endpoint(addr=addr_text(packet.dst_addr), port=packet.dst_port),
            proto=packet.proto,
        )


class IpPair:
    """One flow per pair of IP addresses, whatever the protocol and ports."""

    def extract(self, packet: PacketView) -> Optional[Extracted]:
        """The address-pair key of a packet (``None`` without IP)."""
        if not packet.ip_version:
            return None
        s, d = packet.src_addr, packet.dst_addr
        fwd = s <= d
        return Extracted(
            key=("ip", s, d) if fwd else ("ip", d, s),
            forward=fwd,
            src=Endpoint(addr=addr_text(s), port=0),
            dst=Endpoint(addr=addr_text(d), port=0),
            proto=0,
        )


class MacPair:
    """One flow per pair of Ethernet addresses (the frame's outermost Ethernet header)."""

    def extract(self, packet: PacketView) -> Optional[Extracted]:
        """The MAC-pair key of a packet (``None`` for frames without Ethernet)."""
        s, d = packet.src_mac, packet.dst_mac
        if s is None or d is None:
            return None
        fwd = s <= d
        return Extracted(
            key=("mac", s, d) if fwd else ("mac", d, s),
            forward=fwd,
            src=Endpoint(addr=addr_text(s), port=0),
            dst=Endpoint(addr=addr_text(d), port=0),
            proto=0,
        )
