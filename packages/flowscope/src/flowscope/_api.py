"""The front door: open a capture (or any iterable of frames) and iterate events.

>>> import flowscope
>>> for ev in flowscope.events("tests/data/sample.pcap"):   # doctest: +SKIP
...     print(ev)

``source`` may be a path, an open binary file, a :class:`CaptureReader`, or
any iterable of ``(timestamp, frame)`` / ``(timestamp, frame, link_type)`` /
``(timestamp, frame, wire_len, link_type)`` tuples.  Timestamps are integer
nanoseconds, or float seconds (converted).
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Iterable, Iterator, Optional, Tuple, Union

from flowscope_core import CaptureFormatError, FlowEnded, FlowEvent, FlowExtractor

from flowscope._capture import CaptureReader, open_capture
from flowscope._config import TrackerConfig
from flowscope._tracker import FlowTracker, L7Engine

Source = Union[str, "os.PathLike[str]", BinaryIO, CaptureReader, Iterable[Tuple[Any, ...]]]
"""Anything :func:`events` accepts as packets."""

Frame = Tuple[int, bytes, int, int]


def frames(source: Source) -> Iterable[Frame]:
    """Normalise a source to ``(ts_ns, frame, wire_len, link_type)`` tuples."""
    if isinstance(source, CaptureReader):
        return source
    if isinstance(source, (str, os.PathLike)) or hasattr(source, "read"):
        return open_capture(source)  # type: ignore[arg-type]
    return _from_iterable(source)


def _from_iterable(items: Iterable[Tuple[Any, ...]]) -> Iterator[Frame]:
    for item in items:
        n = len(item)
        if n == 4:
            ts, frame, wire_len, lt = item
        elif n == 3:
            ts, frame, lt = item
            wire_len = len(frame)
        elif n == 2:
            ts, frame = item
            lt, wire_len = 1, len(frame)
        else:
            raise ValueError(f"a frame is (ts, bytes[, link_type]) or (ts, bytes, wire_len, link_type), not {n} items")
        if not isinstance(ts, int):
            ts = round(float(ts) * 1_000_000_000)
        yield ts, bytes(frame), int(wire_len), int(lt)


def events(
    source: Source,
    *,
    config: Optional[TrackerConfig] = None,
    flows_only: bool = False,
    extractor: Optional[FlowExtractor] = None,
    emit_starts: bool = False,
    l7: Optional[L7Engine] = None,
    bpf: Optional[str] = None,
) -> Iterator[FlowEvent]:
    """Every event of a source, in packet order; open flows are written at the end.

    ``flows_only`` skips application-layer parsing (the fastest mode).
    ``bpf`` is a capture filter in pcap-filter syntax (``"tcp port 443"``,
    see :func:`flowscope.compile_filter`); rejected packets are not tracked.
    """
    if l7 is None and not flows_only:
        from flowscope._l7 import default_engine

        l7 = default_engine()
    packet_filter = None
    if bpf is not None:
        from flowscope._filter import compile_filter

        packet_filter = compile_filter(bpf)
    tracker = FlowTracker(config, extractor=extractor, l7=l7, emit_starts=emit_starts, packet_filter=packet_filter)
    src = frames(source)
    try:
        try:
            yield from tracker.process(src)
        except CaptureFormatError:
            # Damage: what was read before it still counts, so its flows are written
            # before the error reaches the caller.
            yield from tracker.flush()
            raise
    finally:
        close = getattr(src, "close", None)
        if close is not None:
            close()


def flows(source: Source, *, config: Optional[TrackerConfig] = None) -> Iterator[FlowEnded]:
    """Only the flow records of a source, without application-layer parsing."""
    for ev in events(source, config=config, flows_only=True):
        if isinstance(ev, FlowEnded):
            yield ev
