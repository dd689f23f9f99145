"""The contracts between flowscope and its plugins.

Theory of operation
-------------------
The tracker owns the loop.  For each packet it asks a :class:`FlowExtractor`
for the flow key, updates the flow record, and, for TCP, feeds the segment
to one :class:`Reassembler` per direction.  The reassembler answers with
:data:`StreamEvent` values: in-order bytes, gaps, overlaps, the end of the
direction.  The first bytes of each direction go to every registered
parser factory's ``detect``; the first factory that says
:attr:`Detection.MATCH` creates the flow's parser, which from then on gets
every in-order byte (``data``), every hole (``gap``), the end of each
direction (``end``) and the end of the flow (``close``).  UDP payloads go
to a :class:`DatagramParser` the same way, one datagram at a time.

A parser may also have a read-only ``done`` property: once it is true (say,
after a TLS handshake, when only encrypted records follow), the engine calls
nothing more on that parser and stops reassembling the flow, which saves
most of the per-segment cost of long flows.

Parsers are sans-I/O: they take bytes and timestamps and return events.
They never read a clock, a file or a socket, and they never raise on
malformed traffic: they return an event that says what went wrong and stop
parsing that flow.

Factories are found through the entry-point group :data:`ENTRY_POINT_GROUP`.
Each entry point names a zero-argument callable that returns a factory.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, FrozenSet, Optional, Sequence, Union

from typing_extensions import Protocol, runtime_checkable

from flowscope_core._types import Direction, Extracted, FlowInfo, PacketView, Timestamp

ENTRY_POINT_GROUP = "flowscope.parsers"
"""The ``importlib.metadata`` entry-point group that parser plugins register in."""


@runtime_checkable
class SessionEvent(Protocol):
    """What a parser returns: a frozen dataclass with a class-level ``event_type``.

    ``event_type`` becomes the JSON record's ``event_type`` (``http``,
    ``quic``…); the dataclass fields become the record's other fields.
    """

    event_type: ClassVar[str]
    __dataclass_fields__: ClassVar[Dict[str, Any]]

    @property
    def ts(self) -> Timestamp:
        """Packet time of the bytes that completed the event."""
        ...


class FlowExtractor(Protocol):
    """Maps a decoded packet to a flow key (or ``None`` to ignore the packet)."""

    def extract(self, packet: PacketView) -> Optional[Extracted]:
        """The packet's flow key and endpoints, or ``None`` if it is not tracked."""
        ...


# --------------------------------------------------------------------------- streams


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamData:
    """In-order bytes of one direction."""

    offset: int
    """Stream offset of ``data[0]`` (0 is the first byte after the SYN, or the first seen)."""
    data: bytes
    """The bytes; never empty."""
    ts: Timestamp
    """Time of the segment that made these bytes deliverable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamGap:
    """Bytes of sequence space that were never seen; delivery resumes after them."""

    offset: int
    """Stream offset where the hole starts."""
    length: int
    """Number of bytes missing."""
    ts: Timestamp
    """Time at which the hole was given up on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOverlap:
    """A segment covered bytes that had already been received."""

    offset: int
    """Stream offset where the overlap starts."""
    length: int
    """Number of overlapping bytes."""
    differs: bool
    """True when the new bytes differ from the kept ones: the classic evasion signal."""
    ts: Timestamp
    """Time of the overlapping segment."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnd:
    """The direction is finished (FIN, RST, or the flow ended)."""

    reason: str
    """``fin``, ``rst`` or ``flow_end``."""
    ts: Timestamp
    """Time of the closing segment."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamLimit:
    """A reassembly bound was hit; bytes beyond it were dropped."""

    limit: str
    """``depth``, ``buffer`` or ``memcap``."""
    dropped: int
    """Bytes not kept because of the bound."""
    ts: Timestamp
    """Time at which it happened."""


StreamEvent = Union[StreamData, StreamGap, StreamOverlap, StreamEnd, StreamLimit]
"""Everything a :class:`Reassembler` emits: a closed union."""


class Reassembler(Protocol):
    """Turns one direction's TCP segments into an ordered byte stream."""

    def segment(self, seq: int, payload: bytes, ts: Timestamp, flags: int) -> Sequence[StreamEvent]:
        """Feed one segment (raw 32-bit ``seq``, TCP flag bits); returns what became deliverable."""
        ...

    def acked(self, ack: int, ts: Timestamp) -> Sequence[StreamEvent]:
        """The peer acknowledged up to ``ack``: sequence space below it never seen is a gap now."""
        ...

    def flush(self, ts: Timestamp) -> Sequence[StreamEvent]:
        """The flow is over: deliver what is buffered, reporting any holes as gaps."""
        ...

    @property
    def buffered(self) -> int:
        """Bytes held out of order right now."""
        ...

    @property
    def missed_bytes(self) -> int:
        """Total bytes reported as gaps so far."""
        ...


class ReassemblerFactory(Protocol):
    """Makes one :class:`Reassembler` per flow direction."""

    def __call__(self, flow: FlowInfo, direction: Direction) -> Reassembler:
        """A reassembler for ``direction`` of ``flow``."""
        ...


# --------------------------------------------------------------------------- parsers


class Detection(enum.Enum):
    """A factory's answer to "is this your protocol?"."""

    MATCH = "match"
    """Yes: create the parser."""
    NO_MATCH = "no_match"
    """No: never ask again for this flow."""
    NEED_MORE = "need_more"
    """Cannot tell yet: ask again when more bytes arrive."""


class SessionParser(Protocol):
    """Parses one TCP flow's reassembled byte streams (both directions)."""

    def data(self, direction: Direction, data: bytes, ts: Timestamp) -> Sequence[SessionEvent]:
        """In-order bytes of ``direction``."""
        ...

    def gap(self, direction: Direction, length: int, ts: Timestamp) -> Sequence[SessionEvent]:
        """``length`` bytes of ``direction`` are missing and will never come."""
        ...

    def end(self, direction: Direction, ts: Timestamp) -> Sequence[SessionEvent]:
        """``direction`` is closed (FIN or RST)."""
        ...

    def close(self, ts: Timestamp) -> Sequence[SessionEvent]:
        """The flow is over: emit whatever is pending (a request with no response…)."""
        ...


class DatagramParser(Protocol):
    """Parses one UDP flow's datagrams."""

    def datagram(self, direction: Direction, payload: bytes, ts: Timestamp) -> Sequence[SessionEvent]:
        """One datagram's payload."""
        ...

    def close(self, ts: Timestamp) -> Sequence[SessionEvent]:
        """The flow is over."""
        ...


class _Factory(Protocol):
    @property
    def name(self) -> str:
        """The protocol's name: the flow's ``service`` and usually the events' ``event_type``."""
        ...

    @property
    def ports(self) -> FrozenSet[int]:
        """Well-known ports: a hint that orders detection, never a requirement."""
        ...

    def detect(self, direction: Direction, data: bytes, flow: FlowInfo) -> Detection:
        """Look at the first bytes of a direction (or a datagram) and decide."""
        ...


class SessionParserFactory(_Factory, Protocol):
    """Recognises a TCP protocol and makes its parsers."""

    def create(self, flow: FlowInfo) -> SessionParser:
        """A parser for one flow (may raise ``MissingExtraError``)."""
        ...


class DatagramParserFactory(_Factory, Protocol):
    """Recognises a UDP protocol and makes its parsers."""

    def create_datagram(self, flow: FlowInfo) -> DatagramParser:
        """A parser for one flow (may raise ``MissingExtraError``)."""
        ...


ParserFactory = Union[SessionParserFactory, DatagramParserFactory]
"""What an entry point's callable returns (one object may be both)."""
