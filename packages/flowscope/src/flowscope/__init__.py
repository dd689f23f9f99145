"""flowscope: deep packet inspection for Python.

The front door is :func:`events` (every event of a capture or of any
iterable of frames) and :func:`flows` (flow records only, the fastest mode).
:class:`FlowTracker` is the per-worker engine underneath for callers who own
their loop; :func:`open_capture` reads pcap and pcapng files.  The
vocabulary (events, Protocols, errors) comes from ``flowscope_core`` and is
re-exported here.  :data:`COMPILED` tells whether the per-packet loop runs
compiled (built by Cython at install time where a C compiler is present) or
interpreted (the same source; set ``FLOWSCOPE_PURE_PYTHON=1`` to force it).
"""

from flowscope_core import (
    CaptureFormatError,
    ConnState,
    Direction,
    EndReason,
    FlowEnded,
    FlowEvent,
    FlowInfo,
    FlowStarted,
    MissingExtraError,
    Notice,
    PluginLoadError,
    SessionRecord,
)

from flowscope._accel import COMPILED
from flowscope._api import Source, events, flows, frames
from flowscope._capture import CaptureReader, open_capture
from flowscope._community_id import community_id
from flowscope._config import TrackerConfig
from flowscope._extractors import FiveTuple, IpPair, MacPair
from flowscope._filter import FilterSyntaxError, PacketFilter, compile_filter
from flowscope._fragments import FragmentConfig
from flowscope._frames import to_arrow, to_arrow_batches, to_pandas
from flowscope._l7 import L7, L7Config, default_engine
from flowscope._live import BpfCompileError, LiveCapture, compile_bpf, live
from flowscope._reassembly import OverlapPolicy, ReassemblyBudget, ReassemblyConfig, TcpReassembler
from flowscope._registry import Discovered, discover
from flowscope._shard import flow_hash, shard_of
from flowscope._sinks import CsvSink, JsonLinesSink, event_to_dict
from flowscope._tracker import FlowTracker, L7Engine, TrackerStats

__version__ = "0.1.0"

__all__ = [
    "COMPILED",
    "L7",
    "BpfCompileError",
    "CaptureFormatError",
    "CaptureReader",
    "ConnState",
    "CsvSink",
    "Direction",
    "Discovered",
    "EndReason",
    "FilterSyntaxError",
    "FiveTuple",
    "FlowEnded",
    "FlowEvent",
    "FlowInfo",
    "FlowStarted",
    "FlowTracker",
    "FragmentConfig",
    "IpPair",
    "JsonLinesSink",
    "L7Config",
    "L7Engine",
    "LiveCapture",
    "MacPair",
    "MissingExtraError",
    "Notice",
    "OverlapPolicy",
    "PacketFilter",
    "PluginLoadError",
    "ReassemblyBudget",
    "ReassemblyConfig",
    "SessionRecord",
    "Source",
    "TcpReassembler",
    "TrackerConfig",
    "TrackerStats",
    "__version__",
    "community_id",
    "compile_bpf",
    "compile_filter",
    "default_engine",
    "discover",
    "event_to_dict",
    "events",
    "flow_hash",
    "flows",
    "frames",
    "live",
    "open_capture",
    "shard_of",
    "to_arrow",
    "to_arrow_batches",
    "to_pandas",
]
