"""Ctrl-C taken at safe points only (flowscope_cli._common.Interrupt, CaptureReader.on_read).

A ``KeyboardInterrupt`` raised wherever SIGINT lands can stop the tracker in
the middle of a packet; the CLI defers it to points where every packet handed
out so far was processed completely.  The end-to-end proof (a replay
interrupted mid-stream writes consistent records) is in ``test_cli_replay.py``.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import List

import pytest

from flowscope import FlowEnded, FlowStarted, FlowTracker, open_capture
from flowscope._capture import CaptureLimits
from flowscope_cli._common import Interrupt, demo_capture


def test_sigint_is_deferred_to_check_and_a_second_one_raises_at_once() -> None:
    with Interrupt() as interrupt:
        interrupt.check()  # nothing pressed: no effect
        signal.raise_signal(signal.SIGINT)  # does not raise here
        assert interrupt.pending
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        interrupt.check()  # taken once only
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # while the open flows are written: at once
    # The previous handler is back.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_interruptible_sleep_stops_within_a_slice() -> None:
    with Interrupt() as interrupt:
        interrupt.sleep(0.05)
        interrupt.pending = True
        with pytest.raises(KeyboardInterrupt):
            interrupt.sleep(60)


@pytest.mark.parametrize("emit_starts", [False, True])
def test_stopping_at_a_read_leaves_the_tracker_consistent(emit_starts: bool) -> None:
    # Stop reading the demo at its 5th chunk of 1,000 bytes; the flows then flushed
    # must each have been started (no record of a half-processed packet).
    calls: List[int] = []

    def on_read() -> None:
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt

    tracker = FlowTracker(emit_starts=emit_starts)
    events = []
    with open_capture(demo_capture(), limits=CaptureLimits(chunk_bytes=1000)) as reader:
        reader.on_read = on_read
        with pytest.raises(KeyboardInterrupt):
            for ev in tracker.process(reader, flush=False):
                events.append(ev)
        done = reader.packets
    events += tracker.flush()
    assert len(calls) == 5 and done > 0
    ended = [e for e in events if isinstance(e, FlowEnded)]
    assert ended and sum(e.stats.orig.packets + e.stats.resp.packets for e in ended) <= done
    if emit_starts:
        started = {e.flow.flow_id for e in events if isinstance(e, FlowStarted)}
        assert started == {e.flow.flow_id for e in ended}


def test_on_read_is_called_once_per_chunk(tmp_path: Path) -> None:
    size = demo_capture().stat().st_size
    calls: List[int] = []
    with open_capture(demo_capture(), limits=CaptureLimits(chunk_bytes=4096)) as reader:
        reader.on_read = lambda: calls.append(1)
        n = sum(1 for _ in reader)
    assert n > 0
    assert size // 4096 <= len(calls) <= size // 4096 + 3


def test_a_second_ctrl_c_before_the_first_was_taken_raises_at_once() -> None:
    # Blocked on a silent pipe, the first Ctrl-C cannot be taken: the second one must work.
    with Interrupt() as interrupt:
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert interrupt.taken
        interrupt.check()  # already taken: nothing more


def test_an_ignored_sigint_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with Interrupt() as interrupt:
            signal.raise_signal(signal.SIGINT)
            assert not interrupt.pending
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
