"""``--workers N``: flows sharded across worker processes, one output.

Theory of operation
-------------------
Each worker process opens the same captures and runs its own
:class:`~flowscope.FlowTracker` with ``shard=(i, N)``: it decodes every
packet but keeps only the flows whose symmetric hash is ``i`` (both
directions of a flow hash alike).  Reading a file N times costs little —
it comes from the page cache, and the reader is the cheapest part of the
pipeline — whereas handing packets from one reader to N processes would
cost a copy and a pickle per packet.  This is run-to-completion per worker,
as Suricata's ``workers`` mode and Zeek's cluster do.

Workers format their records themselves (JSON lines or CSV rows) and send
them to the parent in batches through pipes; for the table report they send
the events (pickled) and the parent aggregates.  The parent only writes.
Errors (a damaged capture) are reported once, by worker 0.  Ctrl-C reaches
every process of the terminal's process group: each worker flushes its open
flows and sends them before it stops, and the parent writes them.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import signal
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from flowscope import CaptureFormatError, FlowTracker, PacketFilter, TrackerConfig, open_capture
from flowscope._sinks import CsvSink, JsonLinesSink
from flowscope_core import FlowEvent, MissingExtraError

_BATCH = 1 << 16  # bytes of text per message: large enough to amortise the pipe, small enough to stream


class _Text:
    """A text stream that collects what a sink writes."""

    def __init__(self) -> None:
        self.parts: List[str] = []
        self.size = 0

    def write(self, s: str) -> int:
        self.parts.append(s)
        self.size += len(s)
        return len(s)

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        self.size = 0
        return text


def _worker(conn: Connection, captures: Sequence[str], index: int, count: int, config: TrackerConfig,
            flows_only: bool, fmt: str, packet_filter: Optional[PacketFilter],
            keylog: Optional[str]) -> None:  # fmt: skip
    l7 = None
    if not flows_only:
        from flowscope import default_engine

        l7 = default_engine()
        if keylog is not None:
            l7.keylog.add_file(keylog)
    # Flow ids must stay unique across workers (EVENTS.md): each worker prefixes its own.
    config = dataclasses.replace(config, id_prefix=f"{config.id_prefix}W{index}.")
    tracker = FlowTracker(config, l7=l7, shard=(index, count), packet_filter=packet_filter)
    text = _Text()
    events: List[FlowEvent] = []
    write: Callable[[FlowEvent], None]
    if fmt == "jsonl":
        write = JsonLinesSink(text).write  # type: ignore[arg-type]
    elif fmt == "csv":
        sink = CsvSink(text)  # type: ignore[arg-type]
        text.take()  # the parent writes the header once
        write = sink.write
    else:
        write = events.append

    # The terminal's Ctrl-C and the parent's forwarded one may both arrive: only the
    # first interrupts; a second one during the flush that follows is ignored.
    interrupted = [False]

    def on_sigint(signum: int, frame: Any) -> None:
        if not interrupted[0]:
            interrupted[0] = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)

    def send(message: bytes) -> None:
        # Ctrl-C must not cut a message in half: SIGINT waits until it is sent, then
        # KeyboardInterrupt is raised at a point where the pipe is consistent.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            conn.send_bytes(message)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def ship(force: bool = False) -> None:
        if text.size >= _BATCH or (force and text.size):
            send(b"T" + text.take().encode("utf-8"))
        if len(events) >= 2048 or (force and events):
            send(b"E" + pickle.dumps(events, protocol=pickle.HIGHEST_PROTOCOL))
            events.clear()

    def control(kind: str, payload: Any) -> None:
        send(b"C" + pickle.dumps((kind, payload)))

    try:
        try:
            for path in captures:
                try:
                    reader = open_capture(path)
                except (OSError, CaptureFormatError):
                    continue  # the parent reported it
                last = time.monotonic()
                with reader:
                    try:
                        for ev in tracker.process(reader, flush=False):
                            write(ev)
                            ship()
                            if time.monotonic() - last > 0.25:
                                last = time.monotonic()
                                control("progress", (index, path, reader.offset, reader.size,
                                                     tracker.stats.packets, tracker.stats.flows))  # fmt: skip
                    except CaptureFormatError as e:
                        if index == 0:
                            control("damaged", (e.path, e.offset, e.reason, reader.packets))
            for ev in tracker.flush():
                write(ev)
        except KeyboardInterrupt:
            for ev in tracker.flush():
                write(ev)
            control("interrupted", None)
        except MissingExtraError as e:
            control("missing_extra", str(e))
        ship(force=True)
        control("stats", tracker.stats.as_dict())
    finally:
        conn.close()


class Result:
    """What the parent learnt from the workers."""

    def __init__(self) -> None:
        self.damaged: List[Tuple[str, int, str, int]] = []
        self.interrupted = False
        self.missing_extra: Optional[str] = None
        self.stats: Dict[str, int] = {}


def run_workers(
    captures: Sequence[str],
    count: int,
    config: TrackerConfig,
    flows_only: bool,
    fmt: str,
    packet_filter: Optional[PacketFilter],
    keylog: Optional[str],
    write_text: Callable[[str], Any],
    on_event: Callable[[FlowEvent], None],
    on_progress: Callable[[str, int, Optional[int], int, int], None],
) -> Result:
    """Run ``count`` sharded workers over ``captures``; write their output as it comes.

    Ctrl-C: the workers (same process group) flush their open flows and send
    them; the parent keeps draining until they are done.  A SIGINT sent to the
    parent alone is passed on to the workers.
    """
    ctx = multiprocessing.get_context("fork")
    conns: List[Connection] = []
    procs = []
    for i in range(count):
        parent_end, child_end = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(child_end, list(captures), i, count, config, flows_only, fmt, packet_filter, keylog), daemon=True)
        p.start()
        child_end.close()
        conns.append(parent_end)
        procs.append(p)
    result = Result()
    per_worker: List[Dict[str, int]] = []
    flows_seen = [0] * count

    def interrupted(signum: int, frame: Any) -> None:
        if not result.interrupted:
            result.interrupted = True
            for p in procs:
                if p.pid is not None and p.is_alive():
                    os.kill(p.pid, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        _drain(conns, result, per_worker, flows_seen, write_text, on_event, on_progress)
    finally:
        signal.signal(signal.SIGINT, previous)
    for p in procs:
        p.join()
    if per_worker:
        merged = dict(per_worker[0])  # packets, bytes and decoder counters: every worker saw every packet
        for key in ("flows", "evicted"):
            merged[key] = sum(w.get(key, 0) for w in per_worker)
        result.stats = merged
    return result


def _drain(
    conns: List[Connection],
    result: Result,
    per_worker: List[Dict[str, int]],
    flows_seen: List[int],
    write_text: Callable[[str], Any],
    on_event: Callable[[FlowEvent], None],
    on_progress: Callable[[str, int, Optional[int], int, int], None],
) -> None:
    live = list(conns)
    while live:
        ready = wait(live)
        for c in ready:
            assert isinstance(c, Connection)
            try:
                msg = c.recv_bytes()
            except (EOFError, OSError):
                live.remove(c)
                continue
            tag, body = msg[:1], msg[1:]
            if tag == b"T":
                # A signal handler interrupting a large write would make it short and
                # cut a line: SIGINT waits until the batch is written.
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
                try:
                    write_text(body.decode("utf-8"))
                finally:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            elif tag == b"E":
                for ev in pickle.loads(body):
                    on_event(ev)
            else:
                kind, payload = pickle.loads(body)
                if kind == "progress":
                    index, path, offset, size, packets, flows = payload
                    flows_seen[index] = flows
                    if index == 0:
                        on_progress(path, offset, size, packets, sum(flows_seen))
                elif kind == "damaged":
                    result.damaged.append(payload)
                elif kind == "interrupted":
                    result.interrupted = True
                elif kind == "missing_extra":
                    result.missing_extra = payload
                elif kind == "stats":
                    per_worker.append(payload)
