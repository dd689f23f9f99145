"""DNS, mDNS and LLMNR over UDP and TCP: events, parsers and the plugin factory.

Theory of operation
-------------------
One factory, :class:`DnsParserFactory`, is both a
``DatagramParserFactory`` (UDP) and a ``SessionParserFactory`` (TCP).
Its ``detect`` is a plausibility check of the DNS header that does not
depend on the port: opcode assigned, Z bit clear, no RCODE in a query,
one to a few questions, record counts that fit in the message, and the
message (or, for a TCP message not yet complete, its first question)
parses.  Only two things relax on the well-known ports (53, 5353, 5355):
mDNS announcements carry no question, and mDNS queries may carry many.

UDP (:class:`DnsDatagramParser`)
    Each datagram is one message: it becomes one :class:`DnsMessage`, or
    one :class:`DnsError` when it is malformed.  Nothing is buffered.

TCP (:class:`DnsStreamParser`, RFC 1035 section 4.2.2 and RFC 7766)
    Each direction is a sequence of messages, each preceded by a 2-byte
    length.  A direction's state is a buffer holding at most one
    incomplete message (so at most ``2 + DnsConfig.max_message`` bytes),
    a count of bytes still to discard, and a stopped flag.  ``data``
    frames and parses every complete message in the chunk (several may
    arrive in one segment; one may span many); a message longer than
    ``max_message`` is reported and skipped without being buffered.
    A length below the 12-byte header is a malformed message: framing is
    still intact, so it is reported and skipped.

    Gaps.  The reassembler reports exactly how many bytes are missing.
    When the gap ends inside the body of the message being received (its
    length prefix is known), the message is reported lost and framing
    resumes at the next message.  Otherwise the next length prefix fell
    into the hole: there is no way to find a boundary again, so the
    direction stops with a :class:`DnsError`.  ``end`` with a partial
    message buffered reports it as cut off.

Error volume.  A flow that is not really DNS could produce an error per
packet; after ``DnsConfig.max_errors`` errors a flow's parser stays
silent about malformed input (and a TCP direction stops).

Variants.  The flow's ports choose the variant: 53 is plain DNS, else
5353 is mDNS (RFC 6762: the top bit of a question's class asks for a
unicast response and the top bit of a record's class is the cache-flush
bit; both are stripped from the class and reported), else 5355 is LLMNR
(RFC 4795, the DNS format unchanged).

The wire format itself is read by :mod:`flowscope.parsers._dnswire`,
which explains the presentation rules and why dnslib is not used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, FrozenSet, List, Optional, Tuple, Union

from flowscope_core import Detection, Direction, FlowInfo, Timestamp

from flowscope.parsers._dnswire import (
    CLASS_NAMES,
    HEADER_LEN,
    OPCODE_NAMES,
    DnsAnswer,
    DnsQuestion,
    DnsWireError,
    parse_message,
    slot_constructor,
)

__all__ = [
    "DNS_PORTS",
    "DnsAnswer",
    "DnsConfig",
    "DnsDatagramParser",
    "DnsError",
    "DnsEvent",
    "DnsMessage",
    "DnsParserFactory",
    "DnsQuestion",
    "DnsStreamParser",
    "factory",
    "message_event",
]

DNS_PORTS: FrozenSet[int] = frozenset({53, 5353, 5355})
"""DNS (RFC 1035), mDNS (RFC 6762) and LLMNR (RFC 4795)."""

_TCP = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsConfig:
    """Bounds of the DNS parsers; each default says why it is what it is."""

    max_message: int = 65535
    """Largest DNS-over-TCP message buffered.  65535 is the most a 2-byte
    length prefix can announce (RFC 1035 section 4.2.2), so the default
    never drops a real message; lower it to cap per-flow memory (a longer
    message is then reported and skipped, not buffered)."""
    max_errors: int = 16
    """Malformed messages reported per flow.  A real DNS flow has none or
    a handful; a non-DNS flow on a DNS port would otherwise make one
    event per packet."""
    detect_max_questions: int = 4
    """Most questions ``detect`` accepts off the DNS ports.  Unicast DNS
    always sends one (RFC 9619); a little slack tolerates odd clients
    while random bytes rarely pass."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsMessage:
    """One DNS, mDNS or LLMNR message (query or response)."""

    event_type: ClassVar[str] = "dns"
    ts: Timestamp
    """Packet time (ns) of the datagram or the segment that completed the message."""
    trans_id: int
    """The 16-bit message ID."""
    is_response: bool
    """QR bit: a response rather than a query."""
    opcode: str
    """``QUERY``, ``IQUERY``, ``STATUS``, ``NOTIFY``, ``UPDATE``, ``DSO`` or the number as text."""
    rcode: Optional[str]
    """Response code name (``NOERROR``, ``NXDOMAIN``…, else the number as text); ``None`` in queries."""
    truncated: bool
    """TC bit: the response was cut to fit (the client should retry over TCP)."""
    aa: bool
    """AA bit: authoritative answer."""
    rd: bool
    """RD bit: recursion desired."""
    ra: bool
    """RA bit: recursion available."""
    ad: bool
    """AD bit: authentic data (RFC 4035)."""
    cd: bool
    """CD bit: checking disabled (RFC 4035)."""
    qname: Optional[str]
    """First question's name, no trailing dot (root is ``"."``); ``None`` without a question."""
    qtype: Optional[str]
    """First question's type (``A``, ``AAAA``… or ``TYPEnnn``); ``None`` without a question."""
    qclass: Optional[str]
    """First question's class (``IN``… or ``CLASSnnn``); ``None`` without a question."""
    unicast_response: bool
    """mDNS: the first question asked for a unicast response (QU bit)."""
    answers: Tuple[DnsAnswer, ...]
    """The answer section."""
    authority: Tuple[DnsAnswer, ...]
    """The authority section."""
    additional: Tuple[DnsAnswer, ...]
    """The additional section (the EDNS OPT pseudo-record included, type ``OPT``)."""
    extra_questions: Tuple[DnsQuestion, ...]
    """Questions after the first (rare outside mDNS)."""
    qdcount: int
    """QDCOUNT from the header."""
    ancount: int
    """ANCOUNT from the header."""
    nscount: int
    """NSCOUNT from the header."""
    arcount: int
    """ARCOUNT from the header."""
    edns_udp_size: Optional[int]
    """EDNS UDP payload size from the OPT record; ``None`` without EDNS."""
    dnssec_ok: bool
    """EDNS DO bit: the sender wants DNSSEC records."""
    variant: str
    """``dns``, ``mdns`` or ``llmnr`` (from the flow's ports)."""
    transport: str
    """``udp`` or ``tcp``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsError:
    """A message (or a TCP stream position) that could not be parsed."""

    event_type: ClassVar[str] = "dns_error"
    ts: Timestamp
    """Packet time (ns) at which it was found."""
    reason: str
    """What was wrong, e.g. ``compression pointer does not point backwards``."""
    offset: Optional[int] = None
    """Byte offset in the message where it was found; ``None`` for stream-level problems."""
    trans_id: Optional[int] = None
    """The message ID, when at least its first two bytes were seen."""
    variant: str = "dns"
    """``dns``, ``mdns`` or ``llmnr``."""
    transport: str = "udp"
    """``udp`` or ``tcp``."""


DnsEvent = Union[DnsMessage, DnsError]
"""Everything the DNS parsers emit: a closed union."""

_message = slot_constructor(DnsMessage)

_RCODES: Tuple[str, ...] = (
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI", "12", "13", "14", "15",
)  # fmt: skip
"""Header RCODE (4 bits) to name, unassigned values as their number."""
_OPCODES: Tuple[str, ...] = tuple(OPCODE_NAMES.get(i) or str(i) for i in range(16))
"""Header OPCODE (4 bits) to name, unassigned values as their number."""


def message_event(payload: bytes, ts: Timestamp, variant: str = "dns", transport: str = "udp") -> DnsEvent:
    """Parse one whole DNS message into its event; never raises on any bytes."""
    try:
        wire = parse_message(payload, mdns=variant == "mdns")
    except DnsWireError as exc:
        return DnsError(
            ts=ts,
            reason=exc.reason,
            offset=exc.offset,
            trans_id=(payload[0] << 8 | payload[1]) if len(payload) >= 2 else None,
            variant=variant,
            transport=transport,
        )
    flags = wire.flags
    questions = wire.questions
    if questions:
        first = questions[0]
        qname: Optional[str] = first.name
        qtype: Optional[str] = first.type
        qclass: Optional[str] = first.qclass
        unicast = first.unicast_response
    else:
        qname = qtype = qclass = None
        unicast = False
    is_response = bool(flags & 0x8000)
    return _message(
        ts,
        wire.trans_id,
        is_response,
        _OPCODES[(flags >> 11) & 0xF],
        _RCODES[flags & 0xF] if is_response else None,
        bool(flags & 0x0200),
        bool(flags & 0x0400),
        bool(flags & 0x0100),
        bool(flags & 0x0080),
        bool(flags & 0x0020),
        bool(flags & 0x0010),
        qname,
        qtype,
        qclass,
        unicast,
        wire.answers,
        wire.authority,
        wire.additional,
        questions[1:],
        wire.qdcount,
        wire.ancount,
        wire.nscount,
        wire.arcount,
        wire.edns_udp_size,
        wire.dnssec_ok,
        variant,
        transport,
    )


def _variant(flow: FlowInfo) -> str:
    """``dns``, ``mdns`` or ``llmnr`` from the flow's ports (53 wins over the others)."""
    ports = (flow.orig.port, flow.resp.port)
    if 53 in ports:
        return "dns"
    if 5353 in ports:
        return "mdns"
    if 5355 in ports:
        return "llmnr"
    return "dns"


class DnsDatagramParser:
    """DNS over UDP: one event per datagram."""

    __slots__ = ("_variant", "_max_errors", "errors")

    def __init__(self, variant: str = "dns", config: DnsConfig = DnsConfig()) -> None:
        self._variant = variant
        self._max_errors = config.max_errors
        self.errors = 0
        """Malformed datagrams seen, reported or not."""

    def datagram(self, direction: Direction, payload: bytes, ts: Timestamp) -> List[DnsEvent]:
        """One datagram: a :class:`DnsMessage`, or a :class:`DnsError` while under the error bound."""
        event = message_event(payload, ts, self._variant, "udp")
        if type(event) is DnsError:
            self.errors += 1
            if self.errors > self._max_errors:
                return []
        return [event]

    def close(self, ts: Timestamp) -> List[DnsEvent]:
        """Nothing is pending between datagrams."""
        return []


class DnsStreamParser:
    """DNS over TCP: length-prefixed messages in each direction (see the module docstring)."""

    __slots__ = ("_variant", "_config", "_buf", "_skip", "_stopped", "errors")

    def __init__(self, variant: str = "dns", config: DnsConfig = DnsConfig()) -> None:
        self._variant = variant
        self._config = config
        self._buf = (bytearray(), bytearray())
        """Per direction: the start of at most one incomplete message, length prefix included."""
        self._skip = [0, 0]
        """Per direction: bytes still to discard (an oversized message, or one cut by a gap)."""
        self._stopped = [False, False]
        """Per direction: framing was lost; ignore the rest."""
        self.errors = 0
        """Malformed messages and stream problems seen, reported or not."""

    def _error(self, events: List[DnsEvent], ts: Timestamp, reason: str, trans_id: Optional[int] = None) -> None:
        """Record a stream-level problem, reported while under the error bound."""
        self.errors += 1
        if self.errors <= self._config.max_errors:
            events.append(DnsError(ts=ts, reason=reason, trans_id=trans_id, variant=self._variant, transport="tcp"))

    def data(self, direction: Direction, data: bytes, ts: Timestamp) -> List[DnsEvent]:
        """In-order bytes of one direction: every message they complete."""
        d = int(direction)
        events: List[DnsEvent] = []
        if self._stopped[d] or not data:
            return events
        pos = 0
        size = len(data)
        skip = self._skip[d]
        if skip:
            pos = min(skip, size)
            self._skip[d] = skip - pos
            if pos == size:
                return events
        buf = self._buf[d]
        if buf:
            buf += data[pos:] if pos else data
            view: Union[bytes, bytearray] = buf
            pos = 0
            size = len(buf)
        else:
            view = data
        max_message = self._config.max_message
        while size - pos >= 2:
            length = view[pos] << 8 | view[pos + 1]
            if length > max_message:
                self._error(events, ts, f"message of {length} bytes exceeds the {max_message}-byte limit")
                available = size - pos - 2
                if available < length:
                    self._skip[d] = length - available
                    pos = size
                    break
                pos += 2 + length
                continue
            end = pos + 2 + length
            if end > size:
                break
            event = message_event(bytes(view[pos + 2 : end]), ts, self._variant, "tcp")
            pos = end
            if type(event) is DnsError:
                self.errors += 1
                if self.errors > self._config.max_errors:
                    break
            events.append(event)
        if self.errors > self._config.max_errors:
            # Past the bound this is most likely not DNS at all: stop listening.
            self._stopped[d] = True
            buf.clear()
            return events
        if view is buf:
            del buf[:pos]
        elif pos < size:
            buf += data[pos:]
        return events

    def gap(self, direction: Direction, length: int, ts: Timestamp) -> List[DnsEvent]:
        """Missing bytes: resume at the next message when the gap ends inside the current one."""
        d = int(direction)
        events: List[DnsEvent] = []
        if self._stopped[d]:
            return events
        skip = self._skip[d]
        if skip:
            if length <= skip:
                self._skip[d] = skip - length
                return events
        else:
            buf = self._buf[d]
            if len(buf) >= 2:
                remaining = (buf[0] << 8 | buf[1]) + 2 - len(buf)
                if length <= remaining:
                    trans_id = (buf[2] << 8 | buf[3]) if len(buf) >= 4 else None
                    buf.clear()
                    self._skip[d] = remaining - length
                    self._error(events, ts, "message lost in a capture gap", trans_id)
                    return events
        self._buf[d].clear()
        self._skip[d] = 0
        self._stopped[d] = True
        self._error(events, ts, f"capture gap of {length} bytes hides the next message boundary; direction abandoned")
        return events

    def end(self, direction: Direction, ts: Timestamp) -> List[DnsEvent]:
        """The direction closed: a buffered partial message is reported as cut off."""
        d = int(direction)
        events: List[DnsEvent] = []
        buf = self._buf[d]
        if buf and not self._stopped[d]:
            trans_id = (buf[2] << 8 | buf[3]) if len(buf) >= 4 else None
            self._error(events, ts, f"stream ended inside a message ({len(buf)} bytes buffered)", trans_id)
        buf.clear()
        self._skip[d] = 0
        self._stopped[d] = True
        return events

    def close(self, ts: Timestamp) -> List[DnsEvent]:
        """The flow is over: report partial messages in either direction."""
        return self.end(Direction.ORIG, ts) + self.end(Direction.RESP, ts)


_DETECT_CLASSES = frozenset(CLASS_NAMES.values())
"""Question classes a plausible message asks for (IN, CH, HS, NONE, ANY)."""

_NBNS_TYPES = frozenset({"NIMLOC", "SRV"})
"""Numbers 32 and 33, which NBNS uses for its NB and NBSTAT questions."""
_NBNS_NAME = re.compile("[A-P]{32}")
"""An RFC 1001 first-level encoded NetBIOS name (16 bytes, a nibble per letter)."""


class DnsParserFactory:
    """Recognises DNS, mDNS and LLMNR over UDP and TCP and makes their parsers."""

    __slots__ = ("_config",)

    def __init__(self, config: DnsConfig = DnsConfig()) -> None:
        self._config = config

    @property
    def name(self) -> str:
        """``dns``: the flows' ``service`` name."""
        return "dns"

    @property
    def ports(self) -> FrozenSet[int]:
        """53, 5353 and 5355: a hint for ordering detection."""
        return DNS_PORTS

    @property
    def config(self) -> DnsConfig:
        """The bounds handed to every parser."""
        return self._config

    def detect(self, direction: Direction, data: bytes, flow: FlowInfo) -> Detection:
        """Port-independent plausibility check of a datagram or of a TCP stream's first bytes."""
        tcp = flow.proto == _TCP
        if tcp:
            if len(data) < 2:
                return Detection.NEED_MORE
            length = data[0] << 8 | data[1]
            if length < HEADER_LEN or length > self._config.max_message:
                return Detection.NO_MATCH
            body = data[2 : 2 + length]
        else:
            length = len(data)
            body = data
        if len(body) < HEADER_LEN:
            return Detection.NEED_MORE if tcp else Detection.NO_MATCH
        flags = body[2] << 8 | body[3]
        qdcount = body[4] << 8 | body[5]
        records = (body[6] << 8 | body[7]) + (body[8] << 8 | body[9]) + (body[10] << 8 | body[11])
        is_response = bool(flags & 0x8000)
        on_port = flow.orig.port in DNS_PORTS or flow.resp.port in DNS_PORTS
        if ((flags >> 11) & 0xF) not in OPCODE_NAMES or flags & 0x0040:
            return Detection.NO_MATCH
        if not is_response and flags & 0xF:
            return Detection.NO_MATCH
        if qdcount == 0:
            # Only mDNS announcements (responses with records) go without a question.
            if not (on_port and is_response and records):
                return Detection.NO_MATCH
        elif qdcount > self._config.detect_max_questions and not on_port:
            return Detection.NO_MATCH
        if qdcount * 5 + records * 11 > length - HEADER_LEN:
            return Detection.NO_MATCH
        mdns = _variant(flow) == "mdns"
        try:
            if len(body) < length:
                # A TCP message still arriving: judge its first question alone,
                # by reading the bytes so far as a one-question message.
                if qdcount == 0:
                    return Detection.NEED_MORE
                probe = bytes(body[:4]) + b"\x00\x01\x00\x00\x00\x00\x00\x00" + bytes(body[12:])
                try:
                    wire = parse_message(probe, mdns=mdns)
                except DnsWireError as exc:
                    if exc.truncated:
                        return Detection.NEED_MORE
                    raise
            else:
                wire = parse_message(bytes(body), mdns=mdns)
        except DnsWireError:
            return Detection.NO_MATCH
        if wire.questions:
            first = wire.questions[0]
            if first.qclass not in _DETECT_CLASSES:
                return Detection.NO_MATCH
            if first.type in _NBNS_TYPES and _NBNS_NAME.fullmatch(first.name.split(".", 1)[0]):
                # NetBIOS Name Service (RFC 1002) shares the DNS header; its
                # names are one 32-letter label in the A-P "first-level encoding".
                return Detection.NO_MATCH
        return Detection.MATCH

    def create(self, flow: FlowInfo) -> DnsStreamParser:
        """A DNS-over-TCP parser for one flow."""
        return DnsStreamParser(_variant(flow), self._config)

    def create_datagram(self, flow: FlowInfo) -> DnsDatagramParser:
        """A DNS-over-UDP parser for one flow."""
        return DnsDatagramParser(_variant(flow), self._config)


def factory() -> DnsParserFactory:
    """Entry point of the ``flowscope.parsers`` group: the DNS factory with default bounds."""
    return DnsParserFactory()
