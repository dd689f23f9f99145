"""The compiled fused loop against its own source, interpreted.

``flowscope/_fastpath.py`` is compiled by Cython at install time (typed by
``_fastpath.pxd``) where a C compiler is present, as it is for this test
suite's setup (README command 2).  Both must hand out the same events in the
same order, with the application layer on, on every classic-pcap corpus
capture; the flow-only comparison with the general path lives in
``test_flows_corpus.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

import flowscope
from flowscope import FlowTracker, default_engine
from flowscope import _fastpath
from flowscope._accel import load_source, stale
from flowscope._sinks import event_to_dict
from flowscope_core import CaptureFormatError, FlowEvent

from conftest import corpus_pcaps
from test_flows_corpus import CLASSIC, pcap_layout


def _run(run_pcap: Callable[..., Iterator[FlowEvent]], data: bytes, chunk: int) -> List[Dict[str, Any]]:
    """Every event, application layer on, with the file handed over ``chunk`` bytes at a time."""
    tr = FlowTracker(l7=default_engine())
    order, nanos, link = pcap_layout(data)
    fed = [24 + chunk]

    def more(buf: bytes, pos: int, need: int) -> bytes:
        start = fed[0]
        fed[0] = start + max(chunk, need)
        return buf[pos:] + data[start : fed[0]]

    def damage(offset: int, reason: str) -> CaptureFormatError:
        return CaptureFormatError("<test>", offset, reason)

    evs = list(run_pcap(tr, data[: fed[0]], 24, order, nanos, link, 1 << 24, more, damage, lambda o, n: None))
    evs += tr.flush()
    return [event_to_dict(e) for e in evs]


def test_this_setup_runs_the_compiled_loop() -> None:
    # README command (2) installs with Cython and a C compiler: the extension must exist and be in use.
    assert not str(_fastpath.__file__).endswith(".py"), (
        "flowscope/_fastpath was not compiled: reinstall with `pip install -e packages/flowscope` "
        "where Cython and a C compiler are available"
    )
    assert flowscope.COMPILED is (os.environ.get("FLOWSCOPE_PURE_PYTHON") != "1")


@pytest.mark.parametrize("pcap", CLASSIC, ids=[p.stem for p in CLASSIC])
def test_compiled_and_interpreted_loops_give_the_same_events(pcap: Path) -> None:
    data = pcap.read_bytes()
    compiled = _run(_fastpath.run_pcap, data, 65536)
    assert compiled == _run(load_source().run_pcap, data, 65536)
    # Records cut by the chunk boundaries change nothing either.
    assert compiled == _run(_fastpath.run_pcap, data, 1000)


def test_pure_python_can_be_forced_from_the_environment() -> None:
    env = dict(os.environ, FLOWSCOPE_PURE_PYTHON="1")
    code = "import flowscope, flowscope._accel as a; print(flowscope.COMPILED, a.run_pcap.__module__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "flowscope._fastpath_source"]


def test_a_build_older_than_its_source_is_stale_only_in_a_checkout(tmp_path: Path) -> None:
    pkg = tmp_path / "packages" / "flowscope" / "src" / "flowscope"
    pkg.mkdir(parents=True)
    ext = pkg / "_fastpath.cpython-311-x86_64-linux-gnu.so"
    src = pkg / "_fastpath.py"
    ext.write_bytes(b"")
    src.write_text("")
    past = time.time() - 100
    os.utime(ext, (past, past))
    assert not stale(ext, src)  # no setup.py above: an installed wheel
    (tmp_path / "packages" / "flowscope" / "setup.py").write_text("")
    assert stale(ext, src)
    os.utime(src, (past - 100, past - 100))
    assert not stale(ext, src)
    assert not stale(pkg / "missing.so", src)


def test_the_corpus_has_classic_pcaps_to_compare() -> None:
    assert len(CLASSIC) >= 5 and len(CLASSIC) <= len(corpus_pcaps())
