"""The compiled modules against their own Python source.

``flowscope/_tracker.py`` and ``flowscope/_fastpath.py`` are compiled by
Cython at install time (typed by their ``.pxd`` files) where a C compiler is
present, as it is for this test suite's setup (README command 2).  The same
``flow-summary`` run, once compiled and once with ``FLOWSCOPE_PURE_PYTHON=1``
(the Python source, interpreted), must write the same bytes and exit alike:
on every corpus capture, application layer on, and on seeded handmade
traffic that takes every branch the fused loop hands off, with and without
the options that change its key and packet judgement.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import pytest

import flowscope
from flowscope import _fastpath, _tracker
from flowscope._accel import COMPILED_MODULES, built_extension, decide, stale

import packets as P
from conftest import corpus_pcaps
from test_flows_corpus import Traffic


def _summary(args: List[str], pure: bool) -> Tuple[int, str, str]:
    env = dict(os.environ)
    env.pop("FLOWSCOPE_PURE_PYTHON", None)
    if pure:
        env["FLOWSCOPE_PURE_PYTHON"] = "1"
    code = "import sys, flowscope; from flowscope_cli.summary import main; sys.stderr.write(f'compiled={flowscope.COMPILED}\\n'); sys.exit(main())"
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600)
    return out.returncode, out.stdout, out.stderr


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    tmp = tmp_path_factory.mktemp("accel")
    paths = [str(p) for p in corpus_pcaps()]
    for seed in (1, 2, 3):
        path = tmp / f"traffic-{seed}.pcap"
        path.write_bytes(P.pcap_bytes(Traffic(seed).build(), nanos=seed == 2))
        paths.append(str(path))
    return paths


def test_this_setup_runs_the_compiled_modules() -> None:
    # README command (2) installs with Cython and a C compiler: the extensions must exist and be in use.
    for name in COMPILED_MODULES:
        assert built_extension(name) is not None, (
            f"flowscope.{name} was not compiled: reinstall with `pip install -e packages/flowscope` "
            "where Cython and a C compiler are available"
        )
    in_use = [not str(mod.__file__).endswith(".py") for mod in (_tracker, _fastpath)]
    want = os.environ.get("FLOWSCOPE_PURE_PYTHON") != "1"
    assert in_use == [want, want] and flowscope.COMPILED is want


@pytest.mark.parametrize(
    "options",
    [["--format", "jsonl"], ["--format", "jsonl", "--flows-only", "--vlan-in-key", "-F", "tcp or udp or icmp"]],
    ids=["default", "vlan-key-and-filter"],
)
def test_compiled_and_interpreted_write_the_same_records(captures: List[str], options: List[str]) -> None:
    compiled = _summary([*options, *captures], pure=False)
    interpreted = _summary([*options, *captures], pure=True)
    assert "compiled=True" in compiled[2] and "compiled=False" in interpreted[2]
    assert compiled[0] == interpreted[0]
    assert compiled[1] == interpreted[1]
    assert compiled[1].count('"event_type":"flow"') > 300


def test_a_build_older_than_its_source_is_stale_only_in_a_checkout(tmp_path: Path) -> None:
    pkg = tmp_path / "packages" / "flowscope" / "src" / "flowscope"
    pkg.mkdir(parents=True)
    ext = pkg / "_tracker.cpython-311-x86_64-linux-gnu.so"
    src = pkg / "_tracker.py"
    ext.write_bytes(b"")
    src.write_text("")
    past = time.time() - 100
    os.utime(ext, (past, past))
    assert not stale(ext, src)  # no setup.py above: an installed wheel
    (tmp_path / "packages" / "flowscope" / "setup.py").write_text("")
    assert stale(ext, src)
    os.utime(src, (past - 100, past - 100))
    assert not stale(ext, src)
    src.with_suffix(".pxd").write_text("")  # the .pxd is part of the source
    assert stale(ext, src)
    assert not stale(pkg / "missing.so", src)


def test_built_extensions_are_found_by_their_platform_suffix(tmp_path: Path) -> None:
    assert built_extension("_tracker", tmp_path) is None
    (tmp_path / "_tracker.py").write_text("")
    assert built_extension("_tracker", tmp_path) is None
    from importlib.machinery import EXTENSION_SUFFIXES

    (tmp_path / ("_tracker" + EXTENSION_SUFFIXES[0])).write_bytes(b"")
    assert built_extension("_tracker", tmp_path) == tmp_path / ("_tracker" + EXTENSION_SUFFIXES[0])
    assert COMPILED_MODULES == ("_tracker", "_fastpath")


@pytest.mark.parametrize("cli", ["summary", "replay"])
@pytest.mark.parametrize("pure", [False, True])
def test_version_says_which_loop_runs(cli: str, pure: bool) -> None:
    env = dict(os.environ)
    env.pop("FLOWSCOPE_PURE_PYTHON", None)
    if pure:
        env["FLOWSCOPE_PURE_PYTHON"] = "1"
    out = subprocess.run(
        [sys.executable, "-m", f"flowscope_cli.{cli}", "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert f"(flowscope {flowscope.__version__}, " in out.stdout
    assert ("interpreted packet loop" in out.stdout) is pure
    assert ("compiled packet loop" in out.stdout) is not pure


def test_what_runs_is_decided_for_both_modules_together(tmp_path: Path) -> None:
    from importlib.machinery import EXTENSION_SUFFIXES

    pkg = tmp_path / "site-packages" / "flowscope"  # an installed wheel: no setup.py above
    pkg.mkdir(parents=True)
    for name in COMPILED_MODULES:
        (pkg / (name + ".py")).write_text("")
    assert decide(pkg, pure_requested=False) == (False, None)  # pure-Python install: silent
    (pkg / ("_fastpath" + EXTENSION_SUFFIXES[0])).write_bytes(b"")
    use, why = decide(pkg, pure_requested=False)
    assert not use and why is not None and "_tracker was not built" in why  # half a build cannot run
    (pkg / ("_tracker" + EXTENSION_SUFFIXES[0])).write_bytes(b"")
    assert decide(pkg, pure_requested=False) == (True, None)
    assert decide(pkg, pure_requested=True) == (False, None)
