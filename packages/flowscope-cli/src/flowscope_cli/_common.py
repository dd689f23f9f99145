"""What both commands share: exit codes, error lines, output files, progress."""

from __future__ import annotations

import enum
import os
import sys
import time
from importlib import resources
from pathlib import Path
from typing import IO, Iterator, List, Optional, TextIO

from flowscope import CaptureReader


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


def error(prog: str, message: str) -> None:
    """One actionable line on standard error."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()


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

    def update(self, name: str, reader: Optional[CaptureReader], packets: int, flows: int) -> None:
        """Redraw at most 5 times a second."""
        if not self.enabled:
            return
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
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False


def capture_paths(args_captures: List[str], demo: bool) -> Iterator[str]:
    """The inputs in order; the packaged demo when asked for or when none is given."""
    if demo or not args_captures:
        yield str(demo_capture())
    yield from args_captures
