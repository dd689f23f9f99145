"""Sharding: N trackers with ``shard=(i, N)`` split the flows, and together equal one tracker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from conftest import corpus_pcaps
from flowscope import FlowTracker, event_to_dict, flow_hash, open_capture, shard_of


def _records(path: Path, shard: Optional[Tuple[int, int]], per_frame: bool) -> List[str]:
    tracker = FlowTracker(shard=shard)
    if per_frame:
        events = []
        for ts, frame, wire_len, lt in open_capture(path):
            events += tracker.feed(ts, frame, lt, wire_len)
        events += tracker.flush()
    else:
        events = list(tracker.process(open_capture(path)))
    out = []
    for ev in events:
        d = event_to_dict(ev)
        d.pop("flow_id")
        out.append(json.dumps(d, sort_keys=True))
    return sorted(out)


@pytest.mark.parametrize("per_frame", [False, True], ids=["fused-loop", "per-frame"])
@pytest.mark.parametrize("workers", [2, 3])
def test_shards_partition_the_flows_of_every_corpus_capture(corpus_dir: Path, workers: int, per_frame: bool) -> None:
    for path in corpus_pcaps():
        whole = _records(path, None, per_frame)
        parts = [_records(path, (i, workers), per_frame) for i in range(workers)]
        assert sorted(r for part in parts for r in part) == whole, path.name
        if len(whole) >= 20:  # a real split, not everything on one worker
            assert all(part for part in parts), path.name


def test_hash_is_symmetric_and_stable() -> None:
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    key = (6, a, 1234, b, 80)
    assert flow_hash(key) == flow_hash((6, bytes(a), 1234, bytes(b), 80))
    assert flow_hash((key, (10,))) == flow_hash(key)  # VLAN-wrapped keys shard by the 5-tuple
    assert 0 <= shard_of(key, 4) < 4
    assert flow_hash(("mac", b"\x00" * 6, b"\x01" * 6)) == flow_hash(("mac", b"\x00" * 6, b"\x01" * 6))


def test_hash_is_the_same_in_every_process() -> None:
    # Workers are separate processes: the hash must not depend on PYTHONHASHSEED.
    code = "from flowscope import flow_hash; print(flow_hash((17, bytes(4), 53, bytes([1]) * 4, 999)))"
    values = {
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True).stdout  # fmt: skip
        for seed in ("1", "2", "3")
    }
    assert len(values) == 1


def test_bad_shard_is_rejected() -> None:
    with pytest.raises(ValueError):
        FlowTracker(shard=(2, 2))
