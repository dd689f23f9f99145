"""Flow events: the values the tracker hands to its caller.

Every event is a frozen, slotted, keyword-only dataclass.  ``FlowEvent`` is
the closed union of the tracker's own events, so ``match`` with
``assert_never`` is checked by mypy.  Application-layer events are produced
by parsers (see :mod:`flowscope_core._protocols`) and reach the caller as
:class:`SessionRecord`, which joins a parser's event with its flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple, Union

from flowscope_core._protocols import SessionEvent
from flowscope_core._types import ConnState, EndReason, FlowInfo, Timestamp


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowSide:
    """Counters for one direction of a flow."""

    packets: int
    """Packets sent, retransmissions and IP fragments included."""
    bytes: int
    """Sum of the original (wire) frame lengths sent."""
    payload_bytes: int
    """L4 payload bytes sent as seen (retransmissions counted again)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowStats:
    """Both directions' counters and the flow's time span."""

    orig: FlowSide
    """Sent by the originator."""
    resp: FlowSide
    """Sent by the responder."""
    first_ts: Timestamp
    """Time of the first packet."""
    last_ts: Timestamp
    """Time of the last packet."""
    missed_bytes: int
    """TCP sequence space never seen (reassembly gaps), both directions."""

    @property
    def duration_ns(self) -> int:
        """Nanoseconds from the first packet to the last."""
        return self.last_ts - self.first_ts


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowStarted:
    """The first packet of a new flow was seen."""

    event_type: ClassVar[str] = "flow_start"
    flow: FlowInfo
    """Identity of the new flow."""
    ts: Timestamp
    """Time of its first packet."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowEnded:
    """A flow's record: written once when the flow ends (``event_type`` ``flow``)."""

    event_type: ClassVar[str] = "flow"
    flow: FlowInfo
    """Identity of the flow."""
    ts: Timestamp
    """Time of the flow's first packet (as the JSON contract specifies)."""
    stats: FlowStats
    """Packet, byte and time counters."""
    history: str
    """Zeek's connection history letters; upper case for the originator."""
    conn_state: ConnState
    """Zeek's connection state code."""
    end_reason: EndReason
    """Why the record was written."""
    service: Optional[str]
    """Classified application protocol (``http``, ``tls``, ``dns``…) or ``None``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """An application-layer event from a parser, joined with its flow."""

    flow: FlowInfo
    """The flow the event belongs to."""
    event: SessionEvent
    """The parser's event; its ``event_type`` names the JSON record."""

    @property
    def ts(self) -> Timestamp:
        """The event's own timestamp."""
        return self.event.ts


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """Something worth knowing that is not a record: malformed input, a bound hit.

    Notices are how "malformed traffic is normal input" surfaces: the tracker
    counts and skips, and says so here rather than raising.
    """

    event_type: ClassVar[str] = "notice"
    ts: Timestamp
    """Packet time at which it happened."""
    kind: str
    """A stable identifier, e.g. ``reassembly_overlap_mismatch``, ``parser_error``."""
    message: str
    """A human-readable explanation."""
    flow: Optional[FlowInfo] = None
    """The flow concerned, if any."""
    details: Tuple[Tuple[str, Union[str, int, float, bool, None]], ...] = ()
    """Extra key/value facts, kept as pairs so the event stays hashable."""


FlowEvent = Union[FlowStarted, FlowEnded, SessionRecord, Notice]
"""Everything a tracker can emit: a closed union."""
