"""``flow-replay``: run captures through the tracker and stream events as they happen.

Theory of operation
-------------------
One :class:`~flowscope.FlowTracker` (with ``emit_starts=True``) reads the
captures in order, as one stream of packets.  Events leave the moment the
tracker produces them: a flow's start with its first packet, an HTTP, TLS or
DNS record when its parser completes it, a flow's record when the flow ends
(FIN/RST linger, an idle or active timeout, eviction) and, at the very end,
the flows still open.  Timeouts run on packet time, so a flow that times
out is written when the first packet past its deadline is replayed; there
is no timer between packets.  Each event is written and flushed at once,
so it reaches a pipe or a terminal without waiting for a buffer to fill.

**Pacing.**  By default packets are fed as fast as possible.  With
``--speed N`` (``--realtime`` is ``N = 1``) a :class:`Pacer` sleeps before
each packet so that the gap since the previous packet, divided by ``N``, is
reproduced.  It schedules every packet against one start instant (the
wall-clock moment of the first packet plus the sum of the scaled gaps so
far) rather than sleeping each gap in turn, so the time spent processing
packets and the sleeps' own lateness do not accumulate into drift; a replay
that fell behind catches up without sleeping.  No single wait exceeds
``--max-gap`` seconds of wall time, so an hour of silence in a capture does
not stall the replay (the excess is dropped from the schedule, not owed).
Timestamps that go backwards (a capture merged from two interfaces) cost no
wait: packet time is the largest timestamp seen, as for the tracker.  The
clock (``monotonic``) and ``sleep`` are parameters, so tests run without
sleeping.

**Stream files** (``--write-streams DIR``).  The tracker hands every TCP
segment and UDP datagram to its application-layer engine through one small
interface (``pending``, ``packet()``, ``end()``: the ``L7Engine`` protocol
of ``flowscope._tracker``).  :class:`StreamWriter` implements that
interface and wraps the real engine, so it sees each TCP segment with the
flow it belongs to, its direction, sequence and acknowledgement numbers and
flags, exactly as the engine does, without a second decoding pass.  It runs
its own :class:`~flowscope.TcpReassembler` per direction (the engine's stop
at 1 MiB and stop altogether for flows no parser recognises, while a stream
file is wanted for exactly those), with Suricata's BSD overlap policy, the
one whose output equals Wireshark's "Follow TCP Stream" byte for byte, and
appends the reassembled bytes to one file per direction.  Gaps are not
written: the bytes after a gap follow directly, and the gap's position in
the file and its length go to the index ``streams.jsonl``, one line per
direction, written when the flow ends.

The tracker keeps one per-flow slot for the engine (``flow.l7``): ``None``
before the first packet, ``False`` once the engine gave up on the flow
(which also stops the tracker from calling the engine again).  For TCP
flows the writer puts its own state in that slot and swaps the wrapped
engine's state in around each call to it, so the wrapped engine behaves
exactly as if it were attached alone (its records are unchanged; a test
checks that) while the writer keeps receiving segments after the engine
stopped.  Other protocols go straight to the wrapped engine.

Bounds: each direction's file stops at ``--max-stream-bytes`` of stream
offset (the reassembler's ``depth``), out-of-order bytes are bounded per
direction and in total (:class:`StreamWriterConfig`), per-flow state lives
only as long as the flow does (so the tracker's ``--max-flows`` bounds it),
and files are written through a small LRU of open handles, so the number of
open files stays fixed however many flows are open.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, TextIO, Tuple

from flowscope import (
    L7,
    FilterSyntaxError,
    FlowTracker,
    JsonLinesSink,
    OverlapPolicy,
    ReassemblyBudget,
    ReassemblyConfig,
    TcpReassembler,
    TrackerConfig,
    compile_filter,
    event_to_dict,
)
from flowscope._tracker import Flow
from flowscope_core import (
    FlowEnded,
    FlowEvent,
    FlowInfo,
    FlowStarted,
    MissingExtraError,
    Notice,
    SessionRecord,
    StreamData,
    StreamEnd,
    StreamEvent,
    StreamGap,
    StreamLimit,
    proto_label,
)
from typing_extensions import assert_never

from flowscope_cli._common import (
    Exit,
    Housekeeper,
    Interrupt,
    Progress,
    capture_paths,
    error,
    feed_captures,
    open_output,
    quiet_broken_pipe,
    version_text,
)

PROG = "flow-replay"

NS = 1_000_000_000
MIB = 1 << 20

DESCRIPTION = """\
Replay packet captures (pcap or pcapng, gzip-compressed too) through the
flow tracker in packet order and print each event the moment it happens:
a flow starts, an HTTP/TLS/DNS transaction completes, a flow ends.  Paced
in real time, N times faster, or (the default) as fast as possible.  With
--write-streams, each direction of every TCP connection is also written to
a file of its own, reassembled, the way tcpflow does.
"""

EPILOG = """\
formats:
  log     one readable line per event: UTC time, event type, flow id,
          protocol and addresses (originator -> responder), key facts (default)
  jsonl   one JSON object per line: the records of flow-summary --format jsonl
          (the field contract is EVENTS.md) plus a flow_start record when
          each flow begins

pacing:
  default       as fast as possible
  --realtime    keep the capture's own timing (same as --speed 1)
  --speed N     N times faster than the capture (0.5: half speed)
  --max-gap S   never wait more than S seconds between two packets (default 5)

stream files (--write-streams DIR):
  DIR/<start>_<src>.<sport>-<dst>.<dport>_<flow id>.<orig|resp>
      the reassembled bytes one side sent, e.g.
      20110318T190608.652003Z_141.142.220.118.35634-208.80.152.2.80_C4.orig
      (':' in IPv6 addresses becomes '.'; bytes missing from the capture are
      left out, and listed in the index)
  DIR/streams.jsonl
      one line per direction written: flow_id, direction, file, bytes, gaps…

exit status:
  0  success
  1  a capture was truncated or corrupt (events before the damage were written)
  2  bad arguments
  3  an input could not be read or is not a capture, or an output could not be written
  4  a protocol's optional dependency is missing (the message names the pip install)
  130 interrupted (Ctrl-C); open flows were written first

examples:
  flow-replay --demo
  flow-replay capture.pcap --realtime
  flow-replay capture.pcap --speed 10 --format jsonl | grep '"event_type":"http"'
  flow-replay capture.pcap --write-streams streams/
"""


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamWriterConfig:
    """Bounds of ``--write-streams``, each with its reason."""

    max_stream_bytes: int = 16 * MIB
    """Stream offset at which a direction's file stops (16 MiB).

    Enough for every request and response head and most objects a person
    opens by hand, while a capture of bulk transfers cannot fill the disk
    with one copy of itself per flow; ``--max-stream-bytes`` raises it.
    """
    open_files: int = 32
    """Stream files kept open at once (an LRU; the others are closed and reopened to append).

    Captures interleave a few busy connections, so a handful of handles
    absorbs almost every write; 32 stays far below the usual 1024
    descriptors per process whatever the number of open flows.
    """
    max_buffered: int = ReassemblyConfig().max_buffered
    """Out-of-order bytes held per direction: the engine's own bound (256 KiB)."""
    max_segments: int = ReassemblyConfig().max_segments
    """Out-of-order chunks held per direction: the engine's own bound (1024)."""
    memcap: int = 64 * MIB
    """Out-of-order bytes held by every direction together (64 MiB).

    A quarter of the engine's memcap, which it keeps for itself: the writer
    only needs to bridge reordering, and a hole it gives up on becomes a
    listed gap, not a loss of what follows.
    """
    max_gaps_listed: int = 256
    """Gaps listed per direction in ``streams.jsonl`` (all are counted in ``gap_count``)."""

    def __post_init__(self) -> None:
        for name in ("max_stream_bytes", "open_files"):
            if getattr(self, name) < 1:
                raise ValueError(f"StreamWriterConfig.{name} must be at least 1")
        for name in ("max_buffered", "max_segments", "memcap", "max_gaps_listed"):
            if getattr(self, name) < 0:
                raise ValueError(f"StreamWriterConfig.{name} must not be negative")


# ---------------------------------------------------------------------------- pacing


class Pacer:
    """Sleeps before each packet so that packet-time gaps are reproduced at ``speed``.

    See the module docstring: every packet is due at ``start + sum of the
    scaled, capped gaps so far``, so lateness never accumulates.
    """

    __slots__ = ("_speed", "_max_gap", "_sleep", "_now", "_start", "_due", "_last")

    def __init__(
        self,
        speed: float,
        max_gap: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError("speed must be a positive number")
        if not (max_gap >= 0 and math.isfinite(max_gap)):
            raise ValueError("max_gap must be zero or a positive number")
        self._speed = speed
        self._max_gap = max_gap
        self._sleep = sleep
        self._now = monotonic
        self._start = 0.0
        self._due = 0.0
        """Seconds after ``_start`` at which the latest packet is due."""
        self._last: Optional[int] = None
        """The largest packet time seen (ns)."""

    def wait(self, ts: int) -> None:
        """Return when the packet with time ``ts`` (ns) is due."""
        last = self._last
        if last is None:
            self._last = ts
            self._start = self._now()
            return
        if ts <= last:
            return
        self._last = ts
        gap = (ts - last) / NS / self._speed
        self._due += gap if gap < self._max_gap else self._max_gap
        delay = self._start + self._due - self._now()
        if delay > 0:
            self._sleep(delay)

    def paced(self, frames: Iterable[Tuple[int, bytes, int, int]]) -> Iterator[Tuple[int, bytes, int, int]]:
        """The frames, each released when it is due."""
        wait = self.wait
        for fr in frames:
            wait(fr[0])
            yield fr


# ---------------------------------------------------------------------------- stream files


class StreamWriteError(OSError):
    """A stream file or the index could not be written (disk full, permissions…)."""


class _Handles:
    """A small LRU of open stream files: append-only writes, bounded descriptors."""

    def __init__(self, directory: Path, capacity: int) -> None:
        self._dir = directory
        self._cap = capacity
        self._open: "OrderedDict[str, BinaryIO]" = OrderedDict()

    def write(self, name: str, data: bytes, fresh: bool) -> None:
        """Append ``data`` to ``name``; ``fresh`` truncates it first (a file of an earlier run)."""
        f = self._open.get(name)
        if f is None:
            f = open(self._dir / name, "wb" if fresh else "ab")
            self._open[name] = f
            if len(self._open) > self._cap:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(name)
        f.write(data)

    def close(self, name: str) -> None:
        """Close one file if it is open."""
        f = self._open.pop(name, None)
        if f is not None:
            f.close()

    def close_all(self) -> None:
        """Close every open file."""
        while self._open:
            self._open.popitem()[1].close()


class _Side:
    """One direction of one TCP flow: its reassembler and what was written of it."""

    __slots__ = ("reasm", "name", "written", "gaps", "gap_count", "missed", "truncated", "end")

    def __init__(self, reasm: TcpReassembler) -> None:
        self.reasm = reasm
        self.name: Optional[str] = None
        self.written = 0
        self.gaps: List[Tuple[int, int]] = []
        self.gap_count = 0
        self.missed = 0
        self.truncated = False
        self.end: Optional[str] = None


class _Tap:
    """The writer's per-flow state; it occupies ``flow.l7`` for TCP flows."""

    __slots__ = ("inner", "sides")

    def __init__(self) -> None:
        self.inner: object = None
        """The wrapped engine's own state for this flow (``None``, ``False`` or its session)."""
        self.sides: List[Optional[_Side]] = [None, None]
        """Indexed like the tracker's directions: 0 is the flow's first sender."""


def _compact_time(ts: int) -> str:
    sec, ns = divmod(ts, NS)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(sec)) + f".{ns // 1000:06d}Z"


def stream_file_name(flow: FlowInfo, first_ts: int, from_orig: bool) -> str:
    """``<start>_<src>.<sport>-<dst>.<dport>_<flow id>.<orig|resp>``, the sender first (as tcpflow)."""
    a, b = (flow.orig, flow.resp) if from_orig else (flow.resp, flow.orig)
    src = a.addr.replace(":", ".")
    dst = b.addr.replace(":", ".")
    fid = "".join(c if c.isalnum() or c in "-_" else "_" for c in flow.flow_id)
    return f"{_compact_time(first_ts)}_{src}.{a.port}-{dst}.{b.port}_{fid}.{'orig' if from_orig else 'resp'}"


class StreamWriter:
    """An application-layer engine wrapper that also writes TCP streams to files.

    ``inner`` is the engine to wrap (``None`` with ``--flows-only``).  It
    implements the tracker's ``L7Engine`` protocol: pass it as
    ``FlowTracker(l7=...)``.  :meth:`close` must be called at the end (after
    the tracker's ``flush()``, which ends every flow).
    """

    def __init__(self, directory: Path, inner: Optional[L7], config: Optional[StreamWriterConfig] = None) -> None:
        self.config = cfg = config or StreamWriterConfig()
        self._inner = inner
        self.pending: List[FlowEvent] = inner.pending if inner is not None else []
        self._reasm_config = ReassemblyConfig(
            depth=cfg.max_stream_bytes,
            max_buffered=cfg.max_buffered,
            max_segments=cfg.max_segments,
            overlap_policy=OverlapPolicy.BSD,
        )
        self._budget = ReassemblyBudget(cfg.memcap)
        self._dir = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._index: Optional[TextIO] = open(directory / "streams.jsonl", "w", encoding="utf-8")
        except OSError as e:
            raise StreamWriteError(e.errno, f"cannot write streams to {directory}: {e.strerror}") from None
        self._files = _Handles(directory, cfg.open_files)
        self.files_written = 0
        """Stream files created."""

    # -------------------------------------------------------------- the L7Engine protocol

    def packet(
        self, flow: Flow, d: int, ts: int, flags: int, seq: int, ack: int, buf: bytes, poff: int, pend: int
    ) -> None:
        """One TCP segment or UDP datagram of ``flow`` (``d`` counts from the first sender)."""
        inner = self._inner
        if flow.proto != 6:
            if inner is None:
                flow.l7 = False  # nothing to do for this flow: the tracker stops calling
            else:
                inner.packet(flow, d, ts, flags, seq, ack, buf, poff, pend)
            return
        tap = flow.l7
        if not isinstance(tap, _Tap):
            tap = _Tap()
            flow.l7 = tap
        if inner is not None and tap.inner is not False:
            flow.l7 = tap.inner
            try:
                inner.packet(flow, d, ts, flags, seq, ack, buf, poff, pend)
            finally:
                tap.inner = flow.l7
                flow.l7 = tap
        try:
            side = tap.sides[d]
            if side is None:
                side = tap.sides[d] = _Side(TcpReassembler(self._reasm_config, self._budget))
            if pend > poff or flags & 0x07:
                evs = side.reasm.segment(seq, buf[poff:pend] if pend > poff else b"", ts, flags)
                if evs:
                    self._stream(flow, d, side, evs)
            if flags & 0x10:
                other = tap.sides[1 - d]
                if other is not None and other.reasm.buffered:
                    evs = other.reasm.acked(ack, ts)
                    if evs:
                        self._stream(flow, 1 - d, other, evs)
        except OSError as e:
            raise StreamWriteError(e.errno, f"cannot write streams to {self._dir}: {e.strerror}") from None

    def end(self, flow: Flow, ts: int) -> None:
        """The flow is being written: end the wrapped engine's session, then the stream files."""
        tap = flow.l7
        inner = self._inner
        if not isinstance(tap, _Tap):
            if inner is not None:
                inner.end(flow, ts)
            return
        if inner is not None and tap.inner is not None and tap.inner is not False:
            flow.l7 = tap.inner
            inner.end(flow, ts)
        flow.l7 = False
        try:
            for d in (0, 1):
                side = tap.sides[d]
                if side is not None:
                    evs = side.reasm.flush(ts)
                    if evs:
                        self._stream(flow, d, side, evs)
                    side.reasm.release()
            for d in (0, 1) if not flow.flip else (1, 0):
                side = tap.sides[d]
                if side is not None and (side.written or side.gap_count):
                    self._index_line(flow, d, side)
                    if side.name is not None:
                        self._files.close(side.name)
        except OSError as e:
            raise StreamWriteError(e.errno, f"cannot write streams to {self._dir}: {e.strerror}") from None

    # -------------------------------------------------------------- internals

    def _stream(self, flow: Flow, d: int, side: _Side, evs: Sequence[StreamEvent]) -> None:
        for ev in evs:
            if isinstance(ev, StreamData):
                fresh = side.name is None
                if fresh:
                    side.name = stream_file_name(flow.flow_info(), flow.first_ts, (d == 1) == flow.flip)
                    self.files_written += 1
                assert side.name is not None
                self._files.write(side.name, ev.data, fresh)
                side.written += len(ev.data)
            elif isinstance(ev, StreamGap):
                side.gap_count += 1
                side.missed += ev.length
                if len(side.gaps) < self.config.max_gaps_listed:
                    side.gaps.append((side.written, ev.length))
            elif isinstance(ev, StreamLimit):
                if ev.limit == "depth":
                    side.truncated = True
            elif isinstance(ev, StreamEnd):
                side.end = ev.reason

    def _index_line(self, flow: Flow, d: int, side: _Side) -> None:
        info = flow.flow_info()
        from_orig = (d == 1) == flow.flip
        a, b = (info.orig, info.resp) if from_orig else (info.resp, info.orig)
        rec: Dict[str, Any] = {
            "flow_id": info.flow_id,
            "community_id": info.community_id,
            "direction": "orig" if from_orig else "resp",
            "src_h": a.addr,
            "src_p": a.port,
            "dst_h": b.addr,
            "dst_p": b.port,
            "file": side.name,
            "bytes": side.written,
            "missed_bytes": side.missed,
            "gap_count": side.gap_count,
            "gaps": [list(g) for g in side.gaps],
            "truncated": side.truncated,
            "end": side.end,
        }
        assert self._index is not None
        self._index.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def close(self) -> None:
        """Close every file (the index last)."""
        self._files.close_all()
        if self._index is not None:
            self._index.close()
            self._index = None


# ---------------------------------------------------------------------------- the log format


@functools.lru_cache(maxsize=64)
def _second(sec: int) -> str:
    # Events come in time order, so a few cached seconds save almost every strftime.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))


def iso_time(ts: int) -> str:
    """ISO-8601 UTC with microseconds: ``2011-03-18T19:06:07.096535Z``."""
    sec, ns = divmod(ts, NS)
    return f"{_second(sec)}.{ns // 1000:06d}Z"


def _txt(v: Any, limit: int = 200) -> str:
    """A value from the network made safe for one log line.

    Control and non-ASCII characters are escaped (``\\x1b``, ``\\u00e9``), so a
    hostile host name can neither break the line nor drive the terminal, and
    no output encoding can fail; long values are shortened.
    """
    if v is None or v == "":
        return "-"
    s = str(v)
    if not (s.isascii() and s.isprintable()):
        s = s.encode("unicode_escape").decode("ascii")
    if len(s) > limit:
        s = s[: limit - 3] + "..."
    return s


def _ep(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _tuple(flow: FlowInfo) -> str:
    o, r = flow.orig, flow.resp
    label = proto_label(flow.proto)
    if flow.proto == 1 or flow.proto == 58:
        return f"{label} {o.addr} -> {r.addr} type {o.port} code {r.port}"
    if flow.proto in (6, 17, 132):
        return f"{label} {_ep(o.addr, o.port)} -> {_ep(r.addr, r.port)}"
    return f"{label} {o.addr} -> {r.addr}"


def _dns_facts(e: Any) -> str:
    answers = getattr(e, "answers", ()) or ()
    qname, qtype = getattr(e, "qname", None), getattr(e, "qtype", None)
    if qname is None and answers:
        # mDNS announcements carry no question: name the first answer instead.
        qname, qtype = answers[0].name, answers[0].type
    q = f"{_txt(qname)} {_txt(qtype)}"
    if not getattr(e, "is_response", False):
        return f"query {q}"
    shown = [_txt(a.data if a.data is not None else a.type, 80) for a in answers[:4]]
    if len(answers) > 4:
        shown.append(f"+{len(answers) - 4} more")
    rcode = getattr(e, "rcode", None)
    if not shown:
        return f"reply {q} -> {_txt(rcode)}, no answers"
    result = ", ".join(shown)
    if rcode not in (None, "NOERROR"):
        result += f" ({rcode})"
    return f"reply {q} -> {result}"


_HEAD = frozenset(
    ("event_type", "flow_id", "ts", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "community_id")
)


def _generic_facts(ev: FlowEvent) -> str:
    """Key facts of an event the log has no special rendering for (plugins, parser errors)."""
    parts = []
    for k, v in event_to_dict(ev).items():
        if k in _HEAD or v is None or v is False or v == [] or v == "":
            continue
        parts.append(f"{k}={_txt(json.dumps(v) if isinstance(v, (list, dict)) else v, 80)}")
        if len(parts) == 6:
            break
    return " ".join(parts)


def format_log(ev: FlowEvent) -> str:
    """One readable line for an event (no newline)."""
    if isinstance(ev, FlowEnded):
        s = ev.stats
        facts = (
            f"pkts={s.orig.packets}/{s.resp.packets} bytes={s.orig.bytes}/{s.resp.bytes} "
            f"state={ev.conn_state.value} history={_txt(ev.history)} reason={ev.end_reason.value} "
            f"service={_txt(ev.service)} duration={(s.last_ts - s.first_ts) / NS:.6f}s"
        )
        if s.missed_bytes:
            facts += f" missed={s.missed_bytes}"
        # The time of the flow's last packet: the log reads in time order (jsonl's ``ts``
        # is the first packet's, as the record contract says).
        return f"{iso_time(s.last_ts)} {'flow':<10} {ev.flow.flow_id} {_tuple(ev.flow)}  {facts}"
    if isinstance(ev, FlowStarted):
        fl = ev.flow
        extra = ""
        if fl.vlan:
            extra += " vlan=" + ",".join(map(str, fl.vlan))
        if fl.tunnel:
            extra += " tunnel=" + ",".join(fl.tunnel)
        return f"{iso_time(ev.ts)} {'flow_start':<10} {fl.flow_id} {_tuple(fl)}{' ' + extra if extra else ''}"
    if isinstance(ev, SessionRecord):
        e = ev.event
        kind = e.event_type
        if kind == "http":
            status = getattr(e, "status_code", None)
            facts = (
                f"{_txt(getattr(e, 'method', None), 20)} {_txt(getattr(e, 'host', None), 100)} "
                f"{_txt(getattr(e, 'uri', None))} -> {'-' if status is None else status}"
            )
        elif kind in ("tls", "quic"):
            facts = (
                f"sni={_txt(getattr(e, 'server_name', None), 100)} version={_txt(getattr(e, 'version', None))} "
                f"ja4={_txt(getattr(e, 'ja4', None))}"
            )
        elif kind == "dns":
            facts = _dns_facts(e)
        else:
            facts = _generic_facts(ev)
        return f"{iso_time(e.ts)} {kind:<10} {ev.flow.flow_id} {_tuple(ev.flow)}  {facts}"
    if isinstance(ev, Notice):
        where = f"{ev.flow.flow_id} {_tuple(ev.flow)}" if ev.flow is not None else "-"
        return f"{iso_time(ev.ts)} {'notice':<10} {where}  {_txt(ev.kind, 60)}: {_txt(ev.message)}"
    assert_never(ev)


# ---------------------------------------------------------------------------- the command


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be zero or more seconds, not {text}")
    return v


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = 1
    if t and t[-1] in units:
        mult = units[t[-1]]
        t = t[:-1]
    try:
        v = int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 4096, 512k, 16M)") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, not {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The command line (also used by the docs test)."""
    p = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=version_text(PROG))
    p.add_argument("captures", nargs="*", metavar="CAPTURE", help="pcap/pcapng files, replayed in order as one stream; none: the demo")
    p.add_argument("-f", "--format", choices=("log", "jsonl"), default="log", help="output format (default: log)")
    p.add_argument("-o", "--output", metavar="FILE", help="write events here instead of standard output")
    p.add_argument("--demo", action="store_true", help="replay the small capture packaged with flowscope-cli (first)")
    p.add_argument("-F", "--filter", metavar="EXPR", help="track only packets matching this pcap-filter expression, e.g. 'tcp port 443 and not host 10.0.0.1' (applied to the innermost packet, after decapsulation)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_positive_float, metavar="N", help="replay N times faster than captured (1: real time; default: as fast as possible)")
    pace.add_argument("--realtime", action="store_true", help="replay at the capture's own pace (--speed 1)")
    p.add_argument("--max-gap", type=_seconds, default=5.0, metavar="SECONDS", help="longest wait between two packets when pacing (default: %(default)s)")
    p.add_argument("--only", metavar="TYPES", help="comma-separated event types to print, e.g. flow,http (default: all)")
    p.add_argument("--write-streams", metavar="DIR", help="also write each TCP direction's reassembled bytes to a file in DIR")
    p.add_argument("--max-stream-bytes", type=_size, default=StreamWriterConfig().max_stream_bytes, metavar="SIZE", help="stop each stream file at this stream offset (default: 16M)")
    p.add_argument("--flows-only", action="store_true", help="flow events only: skip HTTP/TLS/DNS parsing (stream files still work)")
    p.add_argument("--vlan-in-key", action="store_true", help="keep flows on different VLANs apart")
    p.add_argument("--max-flows", type=int, default=TrackerConfig().max_flows, metavar="N", help="flow table capacity; least recently used flows end as 'evicted' when full (default: %(default)s)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None, help="force the progress line on standard error")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    return p


def _writer(fmt: str, out: TextIO, types: Optional[frozenset[str]]) -> Callable[[FlowEvent], None]:
    """The per-event output function: writes one event and flushes, so it streams."""
    flush = out.flush
    if fmt == "jsonl":
        sink = JsonLinesSink(out, types=types).write

        def write_jsonl(ev: FlowEvent) -> None:
            sink(ev)
            flush()

        return write_jsonl
    put = out.write

    def write_log(ev: FlowEvent) -> None:
        if types is not None:
            kind = ev.event.event_type if isinstance(ev, SessionRecord) else ev.event_type
            if kind not in types:
                return
        put(format_log(ev) + "\n")
        flush()

    return write_log


def run(
    argv: Optional[Sequence[str]] = None,
    *,
    sleep: Optional[Callable[[float], None]] = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Run the command; returns the exit status.

    ``sleep``/``monotonic`` pace the replay; the default sleep wakes up every
    0.1 s to see whether Ctrl-C was pressed.
    """
    args = build_parser().parse_args(argv)
    if args.max_flows < 1:
        error(PROG, "--max-flows must be at least 1")
        return Exit.USAGE
    captures = list(capture_paths(args.captures, args.demo))
    types = frozenset(t.strip() for t in args.only.split(",") if t.strip()) if args.only else None
    speed: Optional[float] = 1.0 if args.realtime else args.speed
    packet_filter = None
    if args.filter is not None:
        try:
            packet_filter = compile_filter(args.filter)
        except FilterSyntaxError as e:
            error(PROG, f"--filter: {e}")
            return Exit.USAGE
    config = TrackerConfig(max_flows=args.max_flows, vlan_in_key=args.vlan_in_key)
    engine: Optional[L7] = None
    if not args.flows_only:
        from flowscope import default_engine

        engine = default_engine()
        for problem in engine.load_errors:  # a broken plugin is reported, the others keep working
            sys.stderr.write(f"{PROG}: warning: {problem}\n")
    streams: Optional[StreamWriter] = None
    if args.write_streams:
        try:
            streams = StreamWriter(
                Path(args.write_streams), engine, StreamWriterConfig(max_stream_bytes=args.max_stream_bytes)
            )
        except StreamWriteError as e:
            error(PROG, str(e.strerror))
            return Exit.UNREADABLE
    tracker = FlowTracker(
        config, l7=streams if streams is not None else engine, emit_starts=True, packet_filter=packet_filter
    )
    try:
        out = open_output(args.output)
    except OSError as e:
        error(PROG, f"cannot write {args.output}: {e.strerror}")
        if streams is not None:
            streams.close()
        return Exit.UNREADABLE
    show = args.progress
    if show is None:
        show = sys.stderr.isatty() and not (out is sys.stdout and sys.stdout.isatty())
    progress = Progress(show)
    interrupt = Interrupt()
    pause = interrupt.sleep if sleep is None else sleep
    pacer = Pacer(speed, args.max_gap, sleep=pause, monotonic=monotonic) if speed is not None else None
    write = _writer(args.format, out, types)
    keeper = Housekeeper(progress).__enter__()
    try:
        try:
            # Unpaced, the reader goes to the tracker as it is (its fused pcap loop).
            status = feed_captures(PROG, captures, tracker, write, keeper, written="open flows were written",
                                   interrupt=interrupt, verb="replayed",
                                   paced=None if pacer is None else pacer.paced)  # fmt: skip
        except MissingExtraError as e:
            progress.done()
            error(PROG, str(e))
            return Exit.MISSING_EXTRA
        except StreamWriteError as e:
            progress.done()
            error(PROG, str(e.strerror))
            return Exit.UNREADABLE
        progress.done()
        out.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
        return Exit.OK
    finally:
        keeper.__exit__(None, None, None)
        if streams is not None:
            streams.close()
        if out is not sys.stdout:
            out.close()
    return status


def main() -> None:
    """Console-script entry point."""
    try:
        code = int(run())
    except KeyboardInterrupt:
        # A second Ctrl-C while the open flows were being written.
        code = int(Exit.INTERRUPTED)
    sys.exit(code)


if __name__ == "__main__":
    main()
