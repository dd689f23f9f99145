"""flowscope-core: the stable vocabulary of flowscope.

Typing ``Protocol``s, frozen dataclasses, enums and exceptions, and nothing
that runs packets.  Third-party parser plugins depend on this package alone;
the ``flowscope`` package implements it.  See ``docs/plugins.md`` in the
repository for a plugin author's guide.
"""

from flowscope_core._errors import (
    CaptureFormatError,
    FlowscopeError,
    MissingExtraError,
    PluginLoadError,
)
from flowscope_core._events import (
    FlowEnded,
    FlowEvent,
    FlowSide,
    FlowStarted,
    FlowStats,
    Notice,
    SessionRecord,
)
from flowscope_core._protocols import (
    ENTRY_POINT_GROUP,
    DatagramParser,
    DatagramParserFactory,
    Detection,
    FlowExtractor,
    ParserFactory,
    Reassembler,
    ReassemblerFactory,
    SessionEvent,
    SessionParser,
    SessionParserFactory,
    StreamData,
    StreamEnd,
    StreamEvent,
    StreamGap,
    StreamLimit,
    StreamOverlap,
)
from flowscope_core._types import (
    NANOS_PER_SECOND,
    ConnState,
    Direction,
    EndReason,
    Endpoint,
    Extracted,
    FlowInfo,
    FlowState,
    L4Proto,
    Orientation,
    PacketView,
    TcpFlags,
    TcpInfo,
    Timestamp,
    proto_label,
)

__version__ = "0.1.0"

__all__ = [
    "ENTRY_POINT_GROUP",
    "NANOS_PER_SECOND",
    "CaptureFormatError",
    "ConnState",
    "DatagramParser",
    "DatagramParserFactory",
    "Detection",
    "Direction",
    "EndReason",
    "Endpoint",
    "Extracted",
    "FlowEnded",
    "FlowEvent",
    "FlowExtractor",
    "FlowInfo",
    "FlowSide",
    "FlowStarted",
    "FlowState",
    "FlowStats",
    "FlowscopeError",
    "L4Proto",
    "MissingExtraError",
    "Notice",
    "Orientation",
    "PacketView",
    "ParserFactory",
    "PluginLoadError",
    "Reassembler",
    "ReassemblerFactory",
    "SessionEvent",
    "SessionParser",
    "SessionParserFactory",
    "SessionRecord",
    "StreamData",
    "StreamEnd",
    "StreamEvent",
    "StreamGap",
    "StreamLimit",
    "StreamOverlap",
    "TcpFlags",
    "TcpInfo",
    "Timestamp",
    "__version__",
    "proto_label",
]
