"""Plain value types shared by every layer: time, protocols, flags and enums.

Timestamps are integer nanoseconds since the Unix epoch everywhere in
flowscope.  Integers keep pcapng's nanosecond captures exact and compare
without float surprises; sinks convert to seconds only at the edge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Hashable, Optional, Tuple

from typing_extensions import TypeAlias

Timestamp: TypeAlias = int
"""Nanoseconds since the Unix epoch (UTC)."""

NANOS_PER_SECOND = 1_000_000_000


class L4Proto(enum.IntEnum):
    """IP protocol numbers that flowscope tracks by name (IANA assignments)."""

    ICMP = 1
    TCP = 6
    UDP = 17
    ICMPV6 = 58
    SCTP = 132

    @property
    def label(self) -> str:
        """The lower-case name used in JSON records (``tcp``, ``udp``, ``icmp``…)."""
        return _PROTO_LABELS[self]


_PROTO_LABELS = {
    L4Proto.ICMP: "icmp",
    L4Proto.TCP: "tcp",
    L4Proto.UDP: "udp",
    L4Proto.ICMPV6: "icmp6",
    L4Proto.SCTP: "sctp",
}


_LABEL_BY_NUMBER = {int(k): v for k, v in _PROTO_LABELS.items()}


def proto_label(number: int) -> str:
    """Name of an IP protocol number for records: ``tcp``, ``udp``… or ``ip-<n>``."""
    label = _LABEL_BY_NUMBER.get(number)
    return label if label is not None else f"ip-{number}"


class TcpFlags(enum.IntFlag):
    """The TCP header's flag bits (RFC 9293 plus ECN, RFC 3168)."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


class Direction(enum.IntEnum):
    """Which side sent some bytes, relative to the flow's orientation."""

    ORIG = 0
    """Sent by the originator (``orig_h``/``orig_p``) towards the responder."""
    RESP = 1
    """Sent by the responder back to the originator."""

    @property
    def other(self) -> Direction:
        """The opposite direction."""
        return Direction.RESP if self is Direction.ORIG else Direction.ORIG


class Orientation(str, enum.Enum):
    """How the tracker decided which side of a flow is the originator."""

    SYN = "syn"
    """The originator sent a TCP SYN without ACK."""
    SYN_ACK = "syn_ack"
    """No SYN was seen; the originator received a SYN-ACK."""
    FIRST_PACKET = "first_packet"
    """Neither was seen (UDP, mid-stream TCP): the sender of the first packet."""


class EndReason(str, enum.Enum):
    """Why a flow record was written (the ``end_reason`` field)."""

    FIN = "fin"
    """Both sides sent a FIN, and the close linger (late ACKs) has passed."""
    RST = "rst"
    """A side reset the connection."""
    IDLE_TIMEOUT = "idle_timeout"
    """No packet for longer than the idle timeout of its protocol and state."""
    ACTIVE_TIMEOUT = "active_timeout"
    """The flow lasted longer than the active timeout; a new record continues it."""
    EVICTED = "evicted"
    """The flow table was full and this was its least recently used flow."""
    END_OF_INPUT = "end_of_input"
    """The source ended (or ``flush()`` was called) while the flow was open."""


class FlowState(str, enum.Enum):
    """One endpoint's TCP state, as Zeek's TCP analyser tracks it.

    The pair of endpoint states at the end of a flow gives ``conn_state``.
    UDP and other protocols use only ``INACTIVE`` and ``ACTIVE``.
    """

    INACTIVE = "inactive"
    """Has sent nothing yet."""
    SYN_SENT = "syn_sent"
    """Sent a SYN."""
    SYN_ACK_SENT = "syn_ack_sent"
    """Sent a SYN-ACK."""
    PARTIAL = "partial"
    """Sent data or ACKs without a SYN being seen (mid-stream pick-up)."""
    ESTABLISHED = "established"
    """Completed the handshake."""
    CLOSED = "closed"
    """Sent a FIN."""
    RESET = "reset"
    """Sent a RST."""
    ACTIVE = "active"
    """A non-TCP endpoint that has sent at least one packet."""


class ConnState(str, enum.Enum):
    """Zeek's ``conn_state`` summary codes (see Zeek's conn.log documentation)."""

    S0 = "S0"
    """Connection attempt seen, no reply."""
    S1 = "S1"
    """Connection established, not terminated."""
    SF = "SF"
    """Normal establishment and termination (for UDP: both sides sent)."""
    REJ = "REJ"
    """Connection attempt rejected."""
    S2 = "S2"
    """Established, close attempt by originator seen (but no reply)."""
    S3 = "S3"
    """Established, close attempt by responder seen (but no reply)."""
    RSTO = "RSTO"
    """Established, originator aborted (sent a RST)."""
    RSTR = "RSTR"
    """Responder sent a RST."""
    RSTOS0 = "RSTOS0"
    """Originator sent a SYN followed by a RST, never saw a SYN-ACK."""
    RSTRH = "RSTRH"
    """Responder sent a SYN-ACK followed by a RST, never saw a SYN."""
    SH = "SH"
    """Originator sent a SYN followed by a FIN, never saw a SYN-ACK."""
    SHR = "SHR"
    """Responder sent a SYN-ACK followed by a FIN, never saw a SYN."""
    OTH = "OTH"
    """No SYN seen, just midstream traffic."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One side of a flow: an address in text form and a port."""

    addr: str
    """IPv4 dotted quad, IPv6 in RFC 5952 compressed lower-case form, or a MAC."""
    port: int
    """TCP/UDP port; ICMP type (originator) or code (responder); 0 otherwise."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpInfo:
    """The TCP header fields of one segment."""

    seq: int
    """Sequence number (raw, 32-bit)."""
    ack: int
    """Acknowledgement number (raw, 32-bit)."""
    flags: TcpFlags
    """Flag bits."""
    window: int
    """Advertised window, unscaled."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketView:
    """One decoded packet, made only for callers who ask for packets.

    The tracker's own fast path never builds these; a custom
    :class:`FlowExtractor` or a packet callback receives them.
    """

    ts: Timestamp
    """Capture time, nanoseconds since the epoch."""
    wire_len: int
    """The frame's original length on the wire (may exceed ``len(frame)``)."""
    link_type: int
    """The capture's LINKTYPE_* value for this frame."""
    frame: bytes
    """The captured frame, starting at the link-layer header."""
    ip_version: int
    """4 or 6 for the innermost IP header; 0 if the frame carried no IP."""
    src_addr: bytes
    """Innermost source address, 4 or 16 raw bytes (empty without IP)."""
    dst_addr: bytes
    """Innermost destination address (empty without IP)."""
    proto: int
    """Innermost IP protocol number (6 TCP, 17 UDP…), 0 without IP."""
    src_port: int
    """Source port (ICMP: type); 0 when the protocol has none."""
    dst_port: int
    """Destination port (ICMP: code); 0 when the protocol has none."""
    tcp: Optional[TcpInfo]
    """TCP header fields, or ``None`` for other protocols."""
    payload: bytes
    """The L4 payload as captured (after IP reassembly when it applied)."""
    vlan: Tuple[int, ...]
    """802.1Q/802.1ad VLAN ids, outermost first."""
    tunnel: Tuple[str, ...]
    """Encapsulations removed on the way in, outermost first."""
    src_mac: Optional[bytes]
    """Innermost Ethernet source MAC, if the frame had an Ethernet header."""
    dst_mac: Optional[bytes]
    """Innermost Ethernet destination MAC."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Extracted:
    """What a :class:`FlowExtractor` returns for a packet that belongs to a flow."""

    key: Hashable
    """The flow key: equal for both directions of one flow."""
    forward: bool
    """True when the packet travels from ``a`` to ``b`` of the key's own order."""
    src: Endpoint
    """The packet's sender."""
    dst: Endpoint
    """The packet's receiver."""
    proto: int
    """IP protocol number the flow is recorded under."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowInfo:
    """The identity of a flow as parsers and sinks see it."""

    flow_id: str
    """Unique within one run; the same on the flow record and its L7 records."""
    proto: int
    """IP protocol number."""
    orig: Endpoint
    """The originator (SYN sender, else first sender)."""
    resp: Endpoint
    """The responder."""
    orientation: Orientation
    """How the originator was chosen."""
    community_id: str
    """Community ID v1 (seed 0) of the 5-tuple."""
    vlan: Tuple[int, ...]
    """VLAN ids of the flow's first packet, outermost first."""
    tunnel: Tuple[str, ...]
    """Encapsulations removed from the flow's first packet, outermost first."""
