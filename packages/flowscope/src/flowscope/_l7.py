"""The application layer: reassembly, classification and parser dispatch.

Theory of operation
-------------------
The tracker hands every TCP segment and UDP datagram of a flow to
:meth:`L7.packet`.  Per flow, a :class:`_Session` holds two reassemblers
(TCP), the parser once one is chosen, and the state of classification.

Classification is port-independent.  The first bytes of each direction
(the first datagrams, for UDP) are shown to every factory's ``detect``;
factories whose ``ports`` contain one of the flow's ports are asked first,
so ports only order the questions.  The first ``MATCH`` wins and becomes
the flow's ``service``; ``NO_MATCH`` removes a factory for that flow;
``NEED_MORE`` waits for more bytes, up to ``detect_bytes`` per direction
(``detect_datagrams`` for UDP).  While detection is pending the stream
chunks are kept (bounded) and replayed, in arrival order across both
directions, into the parser once it exists, so a request seen before the
classification completed is not lost.

When no factory can match, reassembly stops for that flow (``flow.l7`` is
set to ``False``): unknown bulk traffic then costs the tracker nothing more.

Directions: the tracker counts directions from the flow's first sender;
parsers receive :class:`~flowscope_core.Direction` relative to the
originator.  Parser events reach the caller as
:class:`~flowscope_core.SessionRecord`; reassembly anomalies (overlapping
bytes that differ, bounds hit) as :class:`~flowscope_core.Notice`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

from flowscope_core import (
    Detection,
    Direction,
    FlowEvent,
    MissingExtraError,
    Notice,
    PluginLoadError,
    SessionEvent,
    SessionRecord,
    StreamData,
    StreamEnd,
    StreamEvent,
    StreamGap,
    StreamLimit,
    StreamOverlap,
)

from flowscope._reassembly import ReassemblyBudget, ReassemblyConfig, TcpReassembler
from flowscope._keylog import KeyLog
from flowscope._make import maker
from flowscope._registry import discover
from flowscope._tracker import Flow

_ORIG, _RESP = Direction.ORIG, Direction.RESP
TLS_KEY_LOG = 0x544C534B
"""The pcapng DSB secrets type of NSS key log text ("TLSK")."""
_session_record = maker(SessionRecord)


@dataclass(frozen=True, slots=True, kw_only=True)
class L7Config:
    """Bounds of the application layer (one per worker)."""

    reassembly: ReassemblyConfig = field(default_factory=ReassemblyConfig)
    """Per-direction reassembly bounds."""
    memcap: int = 256 * 1024 * 1024
    """Out-of-order bytes held by all flows' reassemblers together (Suricata's
    ``stream.reassembly.memcap`` default is 256 MiB)."""
    detect_bytes: int = 4096
    """Bytes per direction shown to ``detect`` before giving up (nDPI gives up after a
    handful of packets; 4 KiB covers a large ClientHello or request head)."""
    detect_datagrams: int = 4
    """Datagrams per direction shown to ``detect`` for UDP (a one-way flow stops after its own)."""
    missing_extra: str = "raise"
    """``raise``: a protocol whose extra is missing raises ``MissingExtraError``;
    ``notice``: it becomes a notice and the flow goes unparsed."""


class _Session:
    __slots__ = ("reasm", "parser", "factories", "pending", "seen", "head", "dgram", "finishable")

    def __init__(self, factories: List[Any]) -> None:
        self.reasm: List[Optional[TcpReassembler]] = [None, None]
        self.parser: Any = None
        self.factories = factories
        self.pending: List[Tuple[Direction, bytes, int]] = []
        self.seen = [0, 0]
        self.head = [b"", b""]
        self.dgram = False
        self.finishable = False


class L7:
    """Application-layer engine for one worker (see the module docstring)."""

    def __init__(self, factories: Sequence[Any], config: Optional[L7Config] = None) -> None:
        self.config = cfg = config or L7Config()
        self.pending: List[FlowEvent] = []
        self.budget = ReassemblyBudget(cfg.memcap)
        self._tcp = [f for f in factories if hasattr(f, "create")]
        self._udp = [f for f in factories if hasattr(f, "create_datagram")]
        self._missed_warned: set[str] = set()
        self.load_errors: Tuple[PluginLoadError, ...] = ()
        """Plugins that failed to load (set by :func:`default_engine`)."""
        self.keylog = KeyLog()
        """TLS secrets (NSS key log) shared by the parsers that can use them: filled from
        pcapng decryption-secrets blocks as the capture is read, or by the caller
        (``engine.keylog.add_file(path)`` for an SSLKEYLOGFILE)."""
        for f in factories:
            if hasattr(f, "keylog") and getattr(f, "keylog") is None:
                f.keylog = self.keylog

    def add_secrets(self, secrets_type: int, data: bytes) -> None:
        """A pcapng Decryption Secrets Block: TLS key log text is added to :attr:`keylog`."""
        if secrets_type == TLS_KEY_LOG:
            self.keylog.add_text(data)

    # -------------------------------------------------------------- per packet

    def packet(self, flow: Flow, d: int, ts: int, flags: int, seq: int, ack: int, buf: bytes, poff: int, pend: int) -> None:
        """One TCP segment or UDP datagram (``d`` counts from the first sender)."""
        s = flow.l7
        if s is None:
            s = self._start(flow)
            if s is None:
                return
        assert isinstance(s, _Session)
        direction = _RESP if (d == 1) != flow.flip else _ORIG
        if s.dgram:
            if pend > poff:
                self._datagram(flow, s, direction, buf[poff:pend], ts)
            return
        r = s.reasm[d]
        if r is None:
            r = s.reasm[d] = TcpReassembler(self.config.reassembly, self.budget)
        if pend > poff:
            payload = buf[poff:pend]
            p = s.parser
            if p is not None and r.take(seq, payload, flags):
                # In-order data for a chosen parser (most segments): straight to it.
                self._deliver(flow, s, p, direction, payload, ts)
            else:
                evs = r.segment(seq, payload, ts, flags)
                if evs:
                    self._stream(flow, s, direction, evs)
        elif flags & 0x07:
            evs = r.segment(seq, b"", ts, flags)
            if evs:
                self._stream(flow, s, direction, evs)
        if flags & 0x10:
            other = s.reasm[1 - d]
            if other is not None and other.buffered:
                evs = other.acked(ack, ts)
                if evs:
                    self._stream(flow, s, direction.other, evs)

    def end(self, flow: Flow, ts: int) -> None:
        """The flow is being written: flush reassembly, then close the parser."""
        s = flow.l7
        if not isinstance(s, _Session):
            return
        for d in (0, 1):
            r = s.reasm[d]
            if r is not None:
                direction = _RESP if (d == 1) != flow.flip else _ORIG
                evs = r.flush(ts)
                if evs and flow.l7 is s:
                    self._stream(flow, s, direction, evs)
                r.release()
        p = s.parser
        if p is not None and flow.l7 is s:
            try:
                self._emit(flow, p.close(ts))
            except Exception as e:  # a parser's bug must not end the run
                self._parser_failed(flow, s, ts, e)
        flow.l7 = False

    # -------------------------------------------------------------- internals

    def _start(self, flow: Flow) -> Optional[_Session]:
        cands = self._tcp if flow.proto == 6 else self._udp if flow.proto == 17 else None
        if not cands:
            flow.l7 = False
            return None
        ports = (flow.a_port, flow.b_port)
        hinted = [f for f in cands if f.ports and (ports[0] in f.ports or ports[1] in f.ports)]
        order = hinted + [f for f in cands if f not in hinted]
        s = _Session(order)
        s.dgram = flow.proto == 17
        flow.l7 = s
        return s

    def _stop(self, flow: Flow, s: _Session) -> None:
        for r in s.reasm:
            if r is not None:
                r.release()
        s.pending = []
        s.head = [b"", b""]
        flow.l7 = False

    def _emit(self, flow: Flow, events: Sequence[SessionEvent]) -> None:
        if events:
            info = flow.flow_info()
            for ev in events:
                self.pending.append(_session_record(info, ev))

    def _notice(self, flow: Flow, ts: int, kind: str, message: str, **details: Any) -> None:
        self.pending.append(
            Notice(ts=ts, kind=kind, message=message, flow=flow.flow_info(), details=tuple(details.items()))
        )

    def _create(self, flow: Flow, s: _Session, factory: Any, ts: int) -> bool:
        try:
            s.parser = factory.create_datagram(flow.flow_info()) if s.dgram else factory.create(flow.flow_info())
        except MissingExtraError as e:
            if self.config.missing_extra == "raise":
                raise
            if e.protocol not in self._missed_warned:
                self._missed_warned.add(e.protocol)
                self._notice(flow, ts, "missing_extra", str(e), protocol=e.protocol, install=e.install)
            return False
        flow.service = factory.name
        s.finishable = isinstance(getattr(type(s.parser), "done", None), property)
        return True

    def _classify(self, flow: Flow, s: _Session, direction: Direction, data: bytes, ts: int) -> Optional[bool]:
        """True: a parser now exists; False: nothing can match; None: undecided."""
        info = flow.flow_info()
        keep = []
        for f in s.factories:
            verdict = f.detect(direction, data, info)
            if verdict is Detection.MATCH:
                if self._create(flow, s, f, ts):
                    return True
                return False
            if verdict is Detection.NEED_MORE:
                keep.append(f)
        s.factories = keep
        return None if keep else False

    def _datagram(self, flow: Flow, s: _Session, direction: Direction, payload: bytes, ts: int) -> None:
        try:
            self._datagram_unguarded(flow, s, direction, payload, ts)
        except MissingExtraError:
            raise
        except Exception as e:  # a parser's bug must not end the run: that flow goes unparsed
            self._parser_failed(flow, s, ts, e)

    def _parser_failed(self, flow: Flow, s: _Session, ts: int, e: Exception) -> None:
        name = flow.service or "detection"
        self._notice(flow, ts, "parser_error", f"the {name} parser raised {type(e).__name__}: {e}; the flow is no longer parsed",
                     parser=name, error=type(e).__name__)  # fmt: skip
        self._stop(flow, s)

    def _datagram_unguarded(self, flow: Flow, s: _Session, direction: Direction, payload: bytes, ts: int) -> None:
        p = s.parser
        if p is None:
            got = self._classify(flow, s, direction, payload, ts)
            if not got:
                seen = s.seen
                seen[direction] += 1
                limit = self.config.detect_datagrams
                # Up to ``detect_datagrams`` per direction; a one-way flow stops after its own.
                if got is False or (seen[direction] >= limit and (seen[1 - direction] == 0 or seen[1 - direction] >= limit)):
                    self._stop(flow, s)
                return
            p = s.parser
        self._emit(flow, p.datagram(direction, payload, ts))
        if s.finishable and p.done:
            self._stop(flow, s)

    def _deliver(self, flow: Flow, s: _Session, p: Any, direction: Direction, data: bytes, ts: int) -> None:
        """One in-order chunk to the session's parser: what ``_stream`` does for a lone ``StreamData``."""
        try:
            self._emit(flow, p.data(direction, data, ts))
            if s.finishable and p.done:
                self._stop(flow, s)
        except MissingExtraError:
            raise
        except Exception as e:  # a parser's bug must not end the run: that flow goes unparsed
            self._parser_failed(flow, s, ts, e)

    def _stream(self, flow: Flow, s: _Session, direction: Direction, evs: Sequence[StreamEvent]) -> None:
        try:
            self._stream_unguarded(flow, s, direction, evs)
        except MissingExtraError:
            raise
        except Exception as e:  # a parser's bug must not end the run: that flow goes unparsed
            self._parser_failed(flow, s, evs[0].ts if evs else 0, e)

    def _stream_unguarded(self, flow: Flow, s: _Session, direction: Direction, evs: Sequence[StreamEvent]) -> None:
        for ev in evs:
            if flow.l7 is not s:
                return
            if isinstance(ev, StreamData):
                p = s.parser
                if p is not None:
                    self._emit(flow, p.data(direction, ev.data, ev.ts))
                    if s.finishable and p.done:
                        self._stop(flow, s)
                        return
                    continue
                limit = self.config.detect_bytes
                s.pending.append((direction, ev.data, ev.ts))
                s.seen[direction] += len(ev.data)
                head = s.head[direction]
                if len(head) < limit:
                    head = s.head[direction] = head + ev.data[: limit - len(head)]
                got = self._classify(flow, s, direction, head, ev.ts)
                if got:
                    p = s.parser
                    chunks, s.pending = s.pending, []
                    s.head = [b"", b""]
                    for dd, data, t in chunks:
                        self._emit(flow, p.data(dd, data, t))
                        if s.finishable and p.done:
                            self._stop(flow, s)
                            return
                elif got is False or s.seen[direction] >= limit:
                    # Nothing matched, or a whole detect window of one side left every
                    # factory undecided: not a protocol we parse.  Stopping here also
                    # bounds what is held for replay to about detect_bytes per side.
                    self._stop(flow, s)
                    return
            elif isinstance(ev, StreamGap):
                flow.missed += ev.length
                p = s.parser
                if p is not None:
                    self._emit(flow, p.gap(direction, ev.length, ev.ts))
                elif s.factories:
                    self._stop(flow, s)  # cannot classify across a hole
                    return
            elif isinstance(ev, StreamEnd):
                p = s.parser
                if p is not None:
                    self._emit(flow, p.end(direction, ev.ts))
            elif isinstance(ev, StreamOverlap):
                if ev.differs:
                    self._notice(
                        flow, ev.ts, "tcp_overlap_mismatch",
                        "overlapping TCP segments carried different bytes (possible evasion)",
                        direction=direction.name.lower(), offset=ev.offset, length=ev.length,
                    )  # fmt: skip
            elif isinstance(ev, StreamLimit):
                self._notice(
                    flow, ev.ts, "reassembly_limit", f"reassembly {ev.limit} limit reached",
                    direction=direction.name.lower(), limit=ev.limit, dropped=ev.dropped,
                )  # fmt: skip


def default_engine(protocols: Optional[Sequence[str]] = None, config: Optional[L7Config] = None) -> L7:
    """An engine with every installed parser (or only ``protocols``)."""
    found = discover(protocols)
    engine = L7(found.factories, config)
    engine.load_errors = found.errors
    return engine
