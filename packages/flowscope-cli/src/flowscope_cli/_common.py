"""What both commands share: exit codes, error lines, output files, progress."""

from __future__ import annotations

import enum
import gc
import os
import signal
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, List, Optional, TextIO, Tuple

from flowscope import CaptureFormatError, CaptureReader, FlowTracker, open_capture
from flowscope_core import FlowEvent


class Exit(enum.IntEnum):
    """Exit codes (documented in ``docs/cli.md``)."""

    OK = 0
    DAMAGED = 1
    """A capture was truncated or corrupt: the records before the damage were written."""
    USAGE = 2
    """Bad arguments (argparse's own code)."""
    UNREADABLE = 3
    """An input could not be opened or is not a capture."""
    MISSING_EXTRA = 4
    """A protocol's optional dependency is not installed."""
    INTERRUPTED = 130
    """Ctrl-C: what was finished was written first."""


def version_text(prog: str) -> str:
    """What ``--version`` prints: the versions, and whether the packet loop runs compiled."""
    import flowscope

    how = "compiled packet loop" if flowscope.COMPILED else "interpreted packet loop (no compiled build in use)"
    return f"{prog} (flowscope {flowscope.__version__}, {how}, Python {sys.version.split()[0]})"


def error(prog: str, message: str) -> None:
    """One actionable line on standard error."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()


def open_reported(prog: str, path: str) -> "tuple[Optional[CaptureReader], Exit]":
    """Open a capture; on failure, report it in one line and give the exit status it earns.

    A capture cut inside its file header is damaged (status 1); anything that is not a
    capture, or cannot be read, is status 3.
    """
    try:
        return open_capture(path), Exit.OK
    except FileNotFoundError:
        error(prog, f"{path}: no such file")
    except IsADirectoryError:
        error(prog, f"{path}: is a directory, not a capture file")
    except PermissionError:
        error(prog, f"{path}: permission denied")
    except CaptureFormatError as e:
        if e.reason.startswith("truncated"):  # a capture after all, cut inside its file header
            error(prog, f"{e.path}: capture damaged at byte offset {e.offset}: {e.reason}; no packet could be read")
            return None, Exit.DAMAGED
        error(prog, f"{e.path}: not a pcap or pcapng capture ({e.reason})")
    except OSError as e:
        error(prog, f"{path}: {e.strerror or e}")
    return None, Exit.UNREADABLE


def demo_capture() -> Path:
    """The small capture packaged with the CLI (see ``data/README.md``)."""
    with resources.as_file(resources.files("flowscope_cli") / "data" / "demo.pcap") as p:
        return Path(p)


def open_output(path: Optional[str]) -> TextIO:
    """Standard output, or a file (``-`` is standard output too)."""
    if path is None or path == "-":
        return sys.stdout
    return open(path, "w", encoding="utf-8", newline="")


def quiet_broken_pipe() -> None:
    """After the reader went away (``| head``): silence the final flush of stdout."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


class Progress:
    """A one-line progress display on standard error, only when it is a terminal."""

    def __init__(self, enabled: Optional[bool] = None, stream: IO[str] = sys.stderr) -> None:
        self.enabled = stream.isatty() if enabled is None else enabled
        self._stream = stream
        self._last = 0.0
        self._shown = False
        self._lock = threading.Lock()

    def update(self, name: str, reader: Optional[CaptureReader], packets: int, flows: int) -> None:
        """Redraw at most 5 times a second."""
        if not self.enabled:
            return
        with self._lock:
            self._draw(name, reader, packets, flows)

    def _draw(self, name: str, reader: Optional[CaptureReader], packets: int, flows: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        pct = ""
        if reader is not None and reader.size:
            frac = min(1.0, reader.offset / reader.size)
            bar = "#" * int(frac * 20)
            pct = f"[{bar:<20}] {frac * 100:5.1f}% "
        self._stream.write(f"\r{pct}{packets:,} packets, {flows:,} flows  {name[-40:]}\x1b[K")
        self._stream.flush()
        self._shown = True

    def done(self) -> None:
        """Erase the line."""
        with self._lock:
            if self._shown:
                self._stream.write("\r\x1b[K")
                self._stream.flush()
                self._shown = False


class Housekeeper:
    """A background thread for what the packet loop should not do per packet.

    It redraws the progress line from the reader's offset and the tracker's
    counters, so the loop needs no per-packet hook (and keeps its fast
    path), and it owns garbage collection: the loop runs with the automatic
    cyclic collector off — on a 50,000-flow capture the collector cost
    15-40 % of the CPU time, triggered by the flow records' allocations —
    and this thread runs a full collection every ``gc_every`` seconds, so
    reference cycles (the built-in parsers leave none; a plugin's may) are
    freed within seconds and memory stays bounded.  A full collection walks
    every live object (about 1 µs each: 0.13 s with 10,000 flows held and
    their parsers), and it holds the interpreter lock, so the interval
    stretches to 50 times the last collection's cost: collection never
    takes more than about 2 % of the run however many flows are held.
    """

    def __init__(self, progress: Progress, gc_every: float = 5.0) -> None:
        self.progress = progress
        self._gc_every = gc_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flowscope-housekeeper", daemon=True)
        self._what: Optional[tuple[str, CaptureReader, FlowTracker]] = None
        self._gc_was_enabled = gc.isenabled()

    def watch(self, name: str, reader: CaptureReader, tracker: FlowTracker) -> None:
        """The capture now being read."""
        self._what = (name, reader, tracker)

    @property
    def watched(self) -> bool:
        """Whether any capture was opened and read."""
        return self._what is not None

    def __enter__(self) -> "Housekeeper":
        gc.disable()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop.is_set():
            return  # already stopped (it is stopped before the report is drawn)
        self._stop.set()
        self._thread.join()
        self.progress.done()
        if self._gc_was_enabled:
            gc.enable()

    def _run(self) -> None:
        last_gc = time.monotonic()
        interval = self._gc_every
        while not self._stop.wait(0.2):
            what = self._what
            if what is not None:
                name, reader, tracker = what
                self.progress.update(name, reader, tracker.stats.packets, tracker.stats.flows)
            now = time.monotonic()
            if now - last_gc >= interval:
                gc.collect()
                last_gc = time.monotonic()
                interval = max(self._gc_every, 50 * (last_gc - now))


class Interrupt:
    """Ctrl-C, taken only where it cannot cut a flow's records apart.

    A ``KeyboardInterrupt`` raised wherever SIGINT happens to land can stop the
    tracker half way through a packet: a flow entered in the table whose
    ``flow_start`` was not queued yet, say, so the records written at the end
    contradict each other.  While this is installed (a context manager, main
    thread only), SIGINT only sets a flag, and :meth:`check` raises
    ``KeyboardInterrupt`` at the next safe point: before the next read of a
    capture (at most one 64 KiB chunk later), after an event was written, or
    in a replay's wait.  A second Ctrl-C raises at once: while the open flows
    are being written after the first, or when the first could not be taken
    (reading a pipe that stays silent, writing to one that is full).  A SIGINT
    ignored when the command started (a background job) stays ignored.
    """

    def __init__(self) -> None:
        self.pending = False
        self.taken = False
        self._previous: object = None
        self._installed = False

    def __enter__(self) -> "Interrupt":
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._on_signal)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._installed = False

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.taken or self.pending:
            self.taken = True
            raise KeyboardInterrupt
        self.pending = True

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed and not yet taken."""
        if self.pending and not self.taken:
            self.taken = True
            raise KeyboardInterrupt

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` in slices of at most 0.1 s, checking between them."""
        end = time.monotonic() + seconds
        while True:
            self.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))


def capture_paths(args_captures: List[str], demo: bool) -> Iterator[str]:
    """The inputs in order; the packaged demo when asked for or when none is given."""
    if demo or not args_captures:
        yield str(demo_capture())
    yield from args_captures


def feed_captures(
    prog: str,
    captures: Iterable[str],
    tracker: FlowTracker,
    write: Callable[[FlowEvent], None],
    keeper: Housekeeper,
    *,
    written: str,
    interrupt: Optional[Interrupt] = None,
    verb: str = "used",
    paced: Optional[Callable[[CaptureReader], Iterable[Tuple[int, bytes, int, int]]]] = None,
) -> Exit:
    """Read every capture, in order, into one tracker and write its events; flush at the end.

    A capture that cannot be opened or is damaged is reported in one line (the
    packets before the damage "were ``verb``") and the others are still read;
    the status is the worst seen.  ``paced`` wraps a reader (flow-replay's
    pacing); unwrapped, the reader reaches the tracker as it is, so its fused
    pcap loop runs.  Ctrl-C is taken at a safe point (``interrupt``, installed
    here; pass one when its :meth:`Interrupt.sleep` is needed beforehand): the
    open flows are written, then ``PROG: error: interrupted; <written>``, and
    the status is ``INTERRUPTED``; one pressed after the last safe point ends
    the run the same way.  A second Ctrl-C during that flush, and
    ``MissingExtraError``, reach the caller.
    """
    with interrupt if interrupt is not None else Interrupt() as taken_at:
        try:
            status = _feed(prog, captures, tracker, write, keeper, taken_at.check, verb, paced)
            taken_at.check()
        except KeyboardInterrupt:
            keeper.progress.done()
            for ev in tracker.flush():
                write(ev)
            error(prog, f"interrupted; {written}")
            return Exit.INTERRUPTED
    return status


def _feed(
    prog: str,
    captures: Iterable[str],
    tracker: FlowTracker,
    write: Callable[[FlowEvent], None],
    keeper: Housekeeper,
    check: Callable[[], None],
    verb: str,
    paced: Optional[Callable[[CaptureReader], Iterable[Tuple[int, bytes, int, int]]]],
) -> Exit:
    status = Exit.OK
    for path in captures:
        reader, failed = open_reported(prog, path)
        if reader is None:
            status = max(status, failed)
            continue
        keeper.watch(path, reader, tracker)
        reader.on_read = check
        with reader:
            frames = reader if paced is None else paced(reader)
            try:
                for ev in tracker.process(frames, flush=False):
                    write(ev)
                    check()
            except CaptureFormatError as e:
                keeper.progress.done()
                error(prog, f"{e.path}: capture damaged at byte offset {e.offset}: {e.reason}; "
                      f"the {reader.packets:,} packets before it were {verb}")  # fmt: skip
                status = max(status, Exit.DAMAGED)
    for ev in tracker.flush():
        write(ev)
    return status
