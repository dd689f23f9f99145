"""``flow-replay`` as a user runs it, and the CLI reference that documents it.

Most tests drive the installed console script through :mod:`subprocess`;
the pacing tests call :func:`flowscope_cli.replay.run` with an injected
clock, so they never sleep.  Expectations come from elsewhere than the
command under test: ``flow-summary``'s records, the corpus's tshark truth
(payload byte counts, HTTP requests, DNS messages), tshark's "Follow TCP
stream" digests in ``tests/data/reassembly``, RFC 1035's TCP framing, and
hand-made packets whose streams are known by construction.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

from flowscope import FlowEnded, FlowTracker, default_engine
from flowscope_cli import replay
from flowscope_cli._common import demo_capture

import packets as P
from packets import ACK, FIN, PSH, SYN

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCS = REPO / "docs" / "cli.md"

Record = Dict[str, Any]


# ---------------------------------------------------------------------------- helpers


def command(name: str) -> List[str]:
    """The installed console script beside this interpreter, else ``python -m``."""
    script = BIN / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "flowscope_cli." + name.split("-", 1)[1]]


def cli(name: str, *args: str, cwd: Optional[Path] = None, timeout: float = 120) -> "subprocess.CompletedProcess[str]":
    """Run ``flow-replay``/``flow-summary`` with ``args``; output captured as text."""
    return subprocess.run(
        command(name) + list(args), capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )


def records(text: str) -> List[Record]:
    """Parse JSON lines."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def corpus(corpus_dir: Path, *stems: str) -> List[str]:
    """Paths of named corpus captures."""
    out = []
    for s in stems:
        matches = sorted(corpus_dir.glob(s + ".pcap*"))
        assert matches, s
        out.append(str(matches[0]))
    return out


def all_corpus(corpus_dir: Path) -> List[str]:
    """Every corpus capture, sorted by name."""
    return sorted(str(p) for p in corpus_dir.iterdir() if p.suffix in (".pcap", ".pcapng"))


def check_event_order(recs: Sequence[Record]) -> None:
    """Per flow: one start, then its L7 records, then one flow record."""
    state: Dict[str, str] = {}
    for r in recs:
        fid = r.get("flow_id")
        kind = r["event_type"]
        if fid is None:
            continue
        if kind == "flow_start":
            assert fid not in state, f"{fid} started twice"
            state[fid] = "open"
        elif kind == "flow":
            assert state.get(fid) == "open", f"{fid} ended without being open"
            state[fid] = "ended"
        else:
            assert state.get(fid) == "open", f"{kind} record of {fid} outside its flow's lifetime"
    assert all(v == "ended" for v in state.values())


# ---------------------------------------------------------------------------- the command line


def test_help_names_every_option_and_exit_code() -> None:
    for argv in (command("flow-replay"), [sys.executable, "-m", "flowscope_cli.replay"]):
        res = subprocess.run(argv + ["--help"], capture_output=True, text=True, check=False, timeout=60)
        assert res.returncode == 0, res.stderr
        text = res.stdout
        for action in replay.build_parser()._actions:
            for opt in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), opt
        codes = text.split("exit status:")[1].split("examples:")[0]
        for code in (0, 1, 2, 3, 4, 130):
            assert re.search(rf"^\s+{code}\s+\S", codes, re.M), code


def test_no_argument_replays_the_demo_as_a_log_consistent_with_jsonl() -> None:
    log = cli("flow-replay", "--no-progress")
    js = cli("flow-replay", "--demo", "--format", "jsonl")
    assert log.returncode == 0 and js.returncode == 0, log.stderr + js.stderr
    assert log.stderr == "" and js.stderr == ""
    lines = log.stdout.splitlines()
    recs = records(js.stdout)
    assert len(lines) == len(recs) > 100
    stamp = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})Z (\S+)\s+(\S+) (\S+) ")
    kinds = set()
    for line, r in zip(lines, recs):
        m = stamp.match(line)
        assert m, line
        kind = r["event_type"]
        kinds.add(kind)
        assert (m.group(3), m.group(4)) == (kind, r["flow_id"]), line
        # The log's time is the event's (for a flow record: its last packet's).
        us = round(r["ts"] * 1e6) + (round(r["duration"] * 1e6) if kind == "flow" else 0)
        sec = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
        assert sec * 1_000_000 + int(m.group(2)) == us, line
        orig = f"[{r['orig_h']}]:{r['orig_p']}" if ":" in r["orig_h"] else f"{r['orig_h']}:{r['orig_p']}"
        resp = f"[{r['resp_h']}]:{r['resp_p']}" if ":" in r["resp_h"] else f"{r['resp_h']}:{r['resp_p']}"
        assert f" {r['proto']} {orig} -> {resp}" in line, line
        if kind == "flow":
            for fact in (
                f"pkts={r['orig_pkts']}/{r['resp_pkts']}",
                f"bytes={r['orig_bytes']}/{r['resp_bytes']}",
                f"state={r['conn_state']}",
                f"history={r['history'] or '-'}",
                f"reason={r['end_reason']}",
                f"service={r['service'] or '-'}",
            ):
                assert fact in line, (fact, line)
        elif kind == "http":
            status = "-" if r["status_code"] is None else str(r["status_code"])
            assert line.endswith(f"  {r['method']} {r['host']} {r['uri']} -> {status}"), line
        elif kind == "dns":
            if r["qname"] is not None:
                assert f" {r['qname']} {r['qtype']}" in line, line
            assert ("  reply " if r["is_response"] else "  query ") in line
            for a in r["answers"][:4]:
                assert (a["data"] or a["type"]) in line
    assert {"flow_start", "flow", "http", "dns"} <= kinds


def test_jsonl_flow_records_equal_flow_summary_on_the_demo() -> None:
    rep = cli("flow-replay", "--demo", "-f", "jsonl")
    summ = cli("flow-summary", "--demo", "-f", "jsonl")
    assert rep.returncode == summ.returncode == 0
    rep_recs = records(rep.stdout)
    # Everything but the starts is what flow-summary writes, record for record.
    assert [r for r in rep_recs if r["event_type"] != "flow_start"] == records(summ.stdout)
    check_event_order(rep_recs)
    starts = [r["ts"] for r in rep_recs if r["event_type"] == "flow_start"]
    assert starts == sorted(starts) and len(starts) == sum(r["event_type"] == "flow" for r in rep_recs)
    # The same with a capture filter.
    rep = cli("flow-replay", "--demo", "-f", "jsonl", "--filter", "udp port 53 or host 208.80.152.3")
    summ = cli("flow-summary", "--demo", "-f", "jsonl", "--filter", "udp port 53 or host 208.80.152.3")
    filtered = [r for r in records(rep.stdout) if r["event_type"] != "flow_start"]
    assert filtered == records(summ.stdout) and 0 < len(filtered) < len(rep_recs)
    assert {r["resp_p"] for r in filtered} == {53, 80}


@pytest.mark.corpus
def test_jsonl_equals_flow_summary_on_the_whole_corpus_and_streams_in_order(corpus_dir: Path) -> None:
    paths = all_corpus(corpus_dir)
    rep = cli("flow-replay", "-f", "jsonl", *paths)
    summ = cli("flow-summary", "-f", "jsonl", *paths)
    assert rep.returncode == summ.returncode, rep.stderr + summ.stderr
    assert rep.stderr == summ.stderr.replace("flow-summary", "flow-replay").replace("were used", "were replayed")
    rep_recs = records(rep.stdout)
    summ_recs = records(summ.stdout)
    assert [r for r in rep_recs if r["event_type"] == "flow"] == [r for r in summ_recs if r["event_type"] == "flow"]
    assert [r for r in rep_recs if r["event_type"] != "flow_start"] == summ_recs
    check_event_order(rep_recs)
    # A start carries the flow's first packet time and identity.
    first = {r["flow_id"]: r for r in rep_recs if r["event_type"] == "flow"}
    for r in rep_recs:
        if r["event_type"] == "flow_start":
            f = first[r["flow_id"]]
            assert (r["ts"], r["orig_h"], r["orig_p"], r["resp_h"], r["resp_p"], r["community_id"]) == (
                f["ts"], f["orig_h"], f["orig_p"], f["resp_h"], f["resp_p"], f["community_id"],
            )  # fmt: skip


def test_events_stream_while_replaying_and_ctrl_c_writes_open_flows() -> None:
    # The demo spans 6.4 s: at --speed 2 its last packet is due 3.2 s after the first.
    proc = subprocess.Popen(
        command("flow-replay") + ["--demo", "--speed", "2", "-f", "jsonl"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["event_type"] == "flow_start"
        assert proc.poll() is None, "the first event arrived only after the replay ended"
        proc.send_signal(signal.SIGINT)
        # Read through the same buffered streams (communicate() would skip what readline() buffered).
        out = proc.stdout.read()
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["flow-replay: error: interrupted; open flows were written"]
    recs = [first] + records(out)
    check_event_order(recs)
    assert recs[-1]["event_type"] == "flow" and recs[-1]["end_reason"] == "end_of_input"
    full = records(cli("flow-replay", "--demo", "-f", "jsonl").stdout)
    assert len(recs) < len(full)  # interrupted before the end of the demo


def test_pipe_into_head_ends_quietly(tmp_path: Path) -> None:
    demo = str(demo_capture())
    # Far more than a pipe buffer (64 KiB), so the writer does meet the closed pipe.
    argv = " ".join(command("flow-replay") + ["-f", "jsonl"] + [demo] * 40)
    res = subprocess.run(
        ["bash", "-c", f"{argv} | head -1; echo rc=${{PIPESTATUS[0]}} >&2"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert len(res.stdout.splitlines()) == 1
    assert json.loads(res.stdout)["event_type"] == "flow_start"
    assert res.stderr == "rc=0\n"


def test_log_lines_escape_what_the_network_sent(tmp_path: Path) -> None:
    """A host header carrying a terminal escape sequence is printed escaped, on one line."""
    req = b"GET /a HTTP/1.1\r\nHost: ex\x1b[2J\x7f.com\r\n\r\n"
    recs = conversation(A4, B4, 1111, [(0, req)], [(0, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")], T0)
    cap = tmp_path / "esc.pcap"
    cap.write_bytes(P.pcap_bytes(recs, nanos=True))
    log, js = tmp_path / "log", tmp_path / "js"
    assert replay.run([str(cap), "-o", str(log), "--no-progress"]) == 0
    assert replay.run([str(cap), "-o", str(js), "-f", "jsonl", "--only", "http"]) == 0
    (http,) = records(js.read_text())
    assert "\x1b" in http["host"]  # the record keeps what was sent
    text = log.read_text()
    assert "\x1b" not in text and "\x7f" not in text and text.isascii()
    (line,) = [ln for ln in text.splitlines() if " http " in ln]
    escaped = "".join(c if " " <= c < "\x7f" else f"\\x{ord(c):02x}" for c in http["host"])
    assert escaped.startswith(r"ex\x1b[2J") and line.endswith(f"  GET {escaped} /a -> 200"), line


# ---------------------------------------------------------------------------- errors


def test_missing_file_and_non_capture_exit_3(tmp_path: Path) -> None:
    missing = cli("flow-replay", str(tmp_path / "nope.pcap"))
    assert missing.returncode == 3 and missing.stdout == ""
    assert missing.stderr == f"flow-replay: error: {tmp_path / 'nope.pcap'}: no such file\n"
    text = tmp_path / "notes.txt"
    text.write_text("these are not packets\n")
    bad = cli("flow-replay", str(text))
    assert bad.returncode == 3 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1
    assert bad.stderr.startswith(f"flow-replay: error: {text}: not a pcap or pcapng capture")
    # A good capture after a bad one is still replayed; the status stays 3.
    both = cli("flow-replay", str(text), "--demo", "-f", "jsonl")
    assert both.returncode == 3 and len(records(both.stdout)) > 100


def test_truncated_capture_writes_events_then_one_error_line_and_exits_1(tmp_path: Path) -> None:
    data = demo_capture().read_bytes()
    cut = tmp_path / "cut.pcap"
    # Cut inside a record: through its header and a few bytes of its frame.
    offsets, pos = [], 24
    while pos < len(data):
        offsets.append(pos)
        (caplen,) = struct.unpack_from("<I", data, pos + 8)
        pos += 16 + caplen
    target = offsets[len(offsets) // 2]
    cut.write_bytes(data[: target + 20])
    res = cli("flow-replay", str(cut), "-f", "jsonl")
    assert res.returncode == 1
    recs = records(res.stdout)
    assert recs and recs[-1]["event_type"] == "flow"
    check_event_order(recs)
    assert len(res.stderr.splitlines()) == 1
    assert re.fullmatch(
        rf"flow-replay: error: {re.escape(str(cut))}: capture damaged at byte offset {target}: .*; "
        rf"the {len(offsets) // 2} packets before it were replayed\n",
        res.stderr,
    ), res.stderr
    # The same records flow-summary writes from the damaged file.
    summ = cli("flow-summary", str(cut), "-f", "jsonl")
    assert [r for r in recs if r["event_type"] != "flow_start"] == records(summ.stdout)


def test_bad_arguments_exit_2_and_unwritable_outputs_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = cli("flow-replay", "--demo", "--speed", "0")
    assert res.returncode == 2 and res.stdout == "" and "--speed: must be a positive number" in res.stderr
    for args in (["--speed", "-1"], ["--speed", "x"], ["--speed", "inf"], ["--max-gap", "-1"],
                 ["--speed", "2", "--realtime"], ["--max-flows", "0"], ["--max-stream-bytes", "0"],
                 ["--max-stream-bytes", "12q"], ["--filter", "tcp port"], ["--format", "csv"]):  # fmt: skip
        try:
            status = replay.run(["--demo", "--no-progress", *args])
        except SystemExit as e:
            status = int(str(e.code))
        assert status == 2, args
        out, err = capsys.readouterr()
        assert out == "" and err.startswith(("usage: flow-replay", "flow-replay: error:")), args
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = cli("flow-replay", "--demo", "--write-streams", str(blocker / "sub"))
    assert res.returncode == 3 and res.stdout == "" and len(res.stderr.splitlines()) == 1
    res = cli("flow-replay", "--demo", "-o", str(blocker / "out.log"))
    assert res.returncode == 3 and len(res.stderr.splitlines()) == 1


# ---------------------------------------------------------------------------- pacing (injected clock)


class FakeClock:
    """``monotonic``/``sleep`` that never sleep; each clock read costs ``cost`` seconds."""

    def __init__(self, cost: float = 0.0) -> None:
        self.t = 1000.0
        self.cost = cost
        self.sleeps: List[float] = []
        self.wakes: List[float] = []
        self.reads: List[float] = []

    def monotonic(self) -> float:
        self.t += self.cost
        self.reads.append(self.t)
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.t += seconds
        self.wakes.append(self.t)


A4, B4 = P.ip("192.0.2.1"), P.ip("192.0.2.2")
T0 = 1_700_000_000 * 1_000_000_000


def udp_capture(path: Path, times_s: Sequence[float]) -> Path:
    """A capture of one UDP datagram at each time (seconds after ``T0``)."""
    recs = []
    for i, t in enumerate(times_s):
        frame = P.ether(P.ETH_IPV4, P.ipv4(A4, B4, P.UDP, P.udp(40000, 9999, b"x%d" % i, src=A4, dst=B4)))
        recs.append((T0 + round(t * 1e9), frame))
    path.write_bytes(P.pcap_bytes(recs, nanos=True))
    return path


def paced(tmp_path: Path, times_s: Sequence[float], *args: str, cost: float = 0.0) -> FakeClock:
    clock = FakeClock(cost)
    cap = udp_capture(tmp_path / "t.pcap", times_s)
    out = tmp_path / "out.jsonl"
    status = replay.run(
        [str(cap), "-f", "jsonl", "-o", str(out), "--no-progress", *args], sleep=clock.sleep, monotonic=clock.monotonic
    )
    assert status == 0
    assert sum(r["orig_pkts"] for r in records(out.read_text()) if r["event_type"] == "flow") == len(times_s)
    return clock


def test_speed_divides_gaps_and_max_gap_caps_them(tmp_path: Path) -> None:
    clock = paced(tmp_path, [0, 0.5, 2.5, 102.5, 102.5, 103.0], "--speed", "2", "--max-gap", "5")
    assert clock.sleeps == pytest.approx([0.25, 1.0, 5.0, 0.25])
    clock = paced(tmp_path, [0, 0.5, 2.5, 102.5], "--speed", "0.5", "--max-gap", "3")
    assert clock.sleeps == pytest.approx([1.0, 3.0, 3.0])
    # The default cap is 5 s; --realtime is speed 1.
    clock = paced(tmp_path, [0, 1.5, 3601.5], "--realtime")
    assert clock.sleeps == pytest.approx([1.5, 5.0])


def test_pacing_is_scheduled_from_the_start_so_processing_time_does_not_drift(tmp_path: Path) -> None:
    # Every clock read costs 10 ms: a naive sleep(gap) would end 10 ms late per packet.
    clock = paced(tmp_path, [i * 1.0 for i in range(20)], "--realtime", cost=0.01)
    start = clock.reads[0]
    assert len(clock.wakes) == 19
    for k, woke in enumerate(clock.wakes, 1):
        assert woke == pytest.approx(start + k, abs=1e-9)
    # When replaying falls behind (reads cost more than the gaps), it catches up without sleeping.
    clock = paced(tmp_path, [i * 0.001 for i in range(20)], "--realtime", cost=0.01)
    assert clock.sleeps == []


def test_backwards_timestamps_cost_no_wait_and_default_is_unpaced(tmp_path: Path) -> None:
    clock = paced(tmp_path, [0, 2, 1, 3], "--speed", "1")
    assert clock.sleeps == pytest.approx([2.0, 1.0])
    clock = paced(tmp_path, [0, 2, 1, 3, 50])
    assert clock.sleeps == [] and clock.reads == []


def test_pacer_rejects_nonsense() -> None:
    for speed, gap in ((0.0, 1.0), (-1.0, 1.0), (float("inf"), 1.0), (float("nan"), 1.0), (1.0, -1.0)):
        with pytest.raises(ValueError):
            replay.Pacer(speed, gap)


# ---------------------------------------------------------------------------- stream files


def index(directory: Path) -> List[Record]:
    """``streams.jsonl`` of a stream directory."""
    return records((directory / "streams.jsonl").read_text())


@pytest.mark.corpus
def test_streams_match_truth_payload_bytes_and_requests(corpus_dir: Path, tmp_path: Path) -> None:
    """Captures without retransmissions: each file holds exactly the direction's TCP payload."""
    caps = corpus(corpus_dir, "zeek_http_pipelined-requests", "suri_dns-tcp-multirequest-buffer")
    out = tmp_path / "streams"
    res = cli("flow-replay", "-f", "jsonl", "--write-streams", str(out), *caps)
    assert res.returncode == 0, res.stderr
    idx = index(out)
    by_tuple = {(r["src_h"], r["src_p"], r["dst_h"], r["dst_p"]): r for r in idx}
    assert len(by_tuple) == len(idx) == 4
    # Files and index agree; nothing else is in the directory.
    assert sorted(p.name for p in out.iterdir()) == sorted([r["file"] for r in idx] + ["streams.jsonl"])
    for r in idx:
        assert (out / r["file"]).stat().st_size == r["bytes"]
        assert r["gaps"] == [] and r["missed_bytes"] == 0 and not r["truncated"]
        assert r["end"] == "fin"
    contents: Dict[Tuple[str, int, str, int], bytes] = {}
    for cap in caps:
        truth = json.loads(Path(cap).with_suffix(".truth.json").read_text())
        for f in truth["flows"]:
            assert f["tcp_retransmissions"] == 0 and f["tcp_out_of_order"] == 0
            i, rr = f["initiator"], f["responder"]
            o = by_tuple[(i["ip"], i["port"], rr["ip"], rr["port"])]
            s = by_tuple[(rr["ip"], rr["port"], i["ip"], i["port"])]
            assert (o["direction"], s["direction"]) == ("orig", "resp")
            assert (o["bytes"], s["bytes"]) == (f["payload_bytes_i2r"], f["payload_bytes_r2i"])
            assert o["flow_id"] == s["flow_id"]
            name = o["file"]
            assert name.endswith(f"_{i['ip']}.{i['port']}-{rr['ip']}.{rr['port']}_{o['flow_id']}.orig")
            assert s["file"].endswith(f"_{rr['ip']}.{rr['port']}-{i['ip']}.{i['port']}_{o['flow_id']}.resp")
            for r in (o, s):
                contents[(r["src_h"], r["src_p"], r["dst_h"], r["dst_p"])] = (out / r["file"]).read_bytes()
        # HTTP: the request lines, in the order tshark saw them.
        http = truth["http"]
        if http:
            client, server = http[0]["client"], http[0]["server"]
            req = contents[(client["ip"], client["port"], server["ip"], server["port"])]
            pos = 0
            for t in http:
                line = f"{t['method']} {t['uri']} {t['version']}\r\n".encode()
                at = req.find(line, pos)
                assert at >= pos and req.find(b"Host: " + t["host"].encode(), at) > at
                pos = at + len(line)
            assert req.startswith(f"{http[0]['method']} ".encode())
        # DNS over TCP: each direction is a run of 2-byte-length-prefixed messages (RFC 1035 4.2.2).
        sent: Dict[Tuple[str, int], List[Tuple[int, str]]] = defaultdict(list)
        for m in truth["dns"]:
            sent[(m["src"]["ip"], m["src"]["port"])].append((m["id"], m["qname"]))
        for (ip, port), expected in sent.items():
            key = next(k for k in contents if k[:2] == (ip, port))
            assert dns_messages(contents[key]) == expected


def dns_messages(stream: bytes) -> List[Tuple[int, str]]:
    """(id, first question name) of each length-prefixed DNS message; the stream must end on a boundary."""
    out = []
    pos = 0
    while pos < len(stream):
        (n,) = struct.unpack_from("!H", stream, pos)
        msg = stream[pos + 2 : pos + 2 + n]
        assert len(msg) == n
        (ident, qdcount) = struct.unpack_from("!H2xH", msg, 0)
        labels, i = [], 12
        while qdcount and msg[i]:
            labels.append(msg[i + 1 : i + 1 + msg[i]].decode())
            i += 1 + msg[i]
        out.append((ident, ".".join(labels)))
        pos += 2 + n
    return out


FOLLOW = ("zeek_tcp_reassembly", "suri_tcp-overlap", "zeek_pppoe-over-qinq", "ndpi_tumblr")


@pytest.mark.corpus
def test_streams_equal_tshark_follow_tcp_stream(corpus_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    """Every run of bytes tshark's "Follow TCP stream" shows is in the file, at its place, gaps listed."""
    caps = corpus(corpus_dir, *FOLLOW)
    out = tmp_path / "streams"
    res = cli("flow-replay", "-f", "jsonl", "--write-streams", str(out), *caps)
    assert res.returncode == 0, res.stderr
    # Stream files change nothing in the records.
    plain = cli("flow-summary", "-f", "jsonl", *caps)
    assert [r for r in records(res.stdout) if r["event_type"] != "flow_start"] == records(plain.stdout)
    idx = index(out)
    by_tuple: Dict[Tuple[str, str], List[Record]] = defaultdict(list)
    for r in sorted(idx, key=lambda r: r["file"]):
        src = f"[{r['src_h']}]:{r['src_p']}" if ":" in r["src_h"] else f"{r['src_h']}:{r['src_p']}"
        dst = f"[{r['dst_h']}]:{r['dst_p']}" if ":" in r["dst_h"] else f"{r['dst_h']}:{r['dst_p']}"
        by_tuple[(src, dst)].append(r)
    checked = 0
    for stem in FOLLOW:
        expected = json.loads((data_dir / "reassembly" / (stem + ".follow.json")).read_text())
        assert expected["sha256"] == hashlib.sha256(Path(corpus(corpus_dir, stem)[0]).read_bytes()).hexdigest()
        for stream in expected["streams"]:
            nodes = stream["nodes"]
            for k, side in enumerate(stream["sides"]):
                runs = side["runs"]
                if not runs:
                    continue
                r = by_tuple[(nodes[k], nodes[1 - k])].pop(0)
                data = (out / r["file"]).read_bytes()
                gaps: Dict[int, int] = defaultdict(int)
                for at, n in r["gaps"]:
                    gaps[at] += n
                pos = 0
                for j, (gap_before, length, digest) in enumerate(runs):
                    if j:  # tshark shows a keep-alive's fake 1-byte hole before the first run
                        assert gaps.get(pos, 0) == gap_before, (stem, stream["stream"], k, j)
                    where = (stem, stream["stream"], k, j)
                    assert hashlib.sha256(data[pos : pos + length]).hexdigest() == digest, where
                    pos += length
                    checked += 1
                # tshark never shows what waits behind a hole at the end of the capture; the file may.
                assert len(data) >= pos
    assert checked > 50


def tcp_frame(
    src: bytes, dst: bytes, sport: int, dport: int, flags: int, seq: int, ack: int, payload: bytes = b""
) -> bytes:
    """An Ethernet frame carrying one TCP segment over IPv4 or IPv6."""
    seg = P.tcp(sport, dport, flags, seq=seq, ack=ack, payload=payload, src=src, dst=dst)
    if len(src) == 16:
        return P.ether(P.ETH_IPV6, P.ipv6(src, dst, P.TCP, seg))
    return P.ether(P.ETH_IPV4, P.ipv4(src, dst, P.TCP, seg))


def conversation(c: bytes, s: bytes, cport: int, client: List[Tuple[int, bytes]], server: List[Tuple[int, bytes]],
                 t0: int, ack_past: int = 0) -> List[Tuple[int, bytes]]:  # fmt: skip
    """Handshake, the client's segments (offset, bytes) in the given order, the server's, FINs.

    The client's ISN is 1000 and the server's 5000; ``ack_past`` makes the
    server acknowledge that far into the client's stream first.
    """
    ci, si = 1000, 5000
    pk = [
        tcp_frame(c, s, cport, 80, SYN, ci, 0),
        tcp_frame(s, c, 80, cport, SYN | ACK, si, ci + 1),
        tcp_frame(c, s, cport, 80, ACK, ci + 1, si + 1),
    ]
    for off, data in client:
        pk.append(tcp_frame(c, s, cport, 80, PSH | ACK, ci + 1 + off, si + 1, data))
    if ack_past:
        pk.append(tcp_frame(s, c, 80, cport, ACK, si + 1, ci + 1 + ack_past))
    cend = max(off + len(d) for off, d in client)
    for off, data in server:
        pk.append(tcp_frame(s, c, 80, cport, PSH | ACK, si + 1 + off, ci + 1 + cend, data))
    send = max(off + len(d) for off, d in server)
    pk += [
        tcp_frame(c, s, cport, 80, FIN | ACK, ci + 1 + cend, si + 1 + send),
        tcp_frame(s, c, 80, cport, FIN | ACK, si + 1 + send, ci + 2 + cend),
        tcp_frame(c, s, cport, 80, ACK, ci + 2 + cend, si + 2 + send),
    ]
    return [(t0 + i * 1000, f) for i, f in enumerate(pk)]


C6, S6 = P.ip("2001:db8::1"), P.ip("2001:db8::2")


def handmade(path: Path) -> Path:
    """Three connections: a hole the server acknowledges, reordering, IPv6."""
    recs = conversation(A4, B4, 1111, [(0, b"AAAA"), (8, b"CCCC")], [(3, b"lo"), (0, b"hel")], T0, ack_past=12)
    recs += conversation(C6, S6, 2222, [(0, b"GET / HTTP/1.0\r\n\r\n")], [(0, b"HTTP/1.0 200 OK\r\n\r\n")], T0 + 10**9)
    recs += conversation(A4, B4, 3333, [(0, b"0123456789")], [(0, b"ok")], T0 + 2 * 10**9)
    path.write_bytes(P.pcap_bytes(recs, nanos=True))
    return path


def test_streams_of_handmade_connections(tmp_path: Path) -> None:
    cap = handmade(tmp_path / "h.pcap")
    out = tmp_path / "s"
    assert replay.run([str(cap), "--write-streams", str(out), "-o", str(tmp_path / "log"), "--no-progress"]) == 0
    idx = {(r["src_p"], r["dst_p"]): r for r in index(out)}
    assert len(idx) == 6
    hole = idx[(1111, 80)]
    assert (out / hole["file"]).read_bytes() == b"AAAACCCC"
    assert (hole["gaps"], hole["gap_count"], hole["missed_bytes"], hole["end"]) == ([[4, 4]], 1, 4, "fin")
    assert hole["file"] == "20231114T221320.000000Z_192.0.2.1.1111-192.0.2.2.80_C1.orig"
    reordered = idx[(80, 1111)]
    assert (out / reordered["file"]).read_bytes() == b"hello" and reordered["gaps"] == []
    assert reordered["file"] == "20231114T221320.000000Z_192.0.2.2.80-192.0.2.1.1111_C1.resp"
    v6 = idx[(2222, 80)]
    assert v6["file"] == "20231114T221321.000000Z_2001.db8..1.2222-2001.db8..2.80_C2.orig"
    assert (out / v6["file"]).read_bytes() == b"GET / HTTP/1.0\r\n\r\n"
    assert (out / idx[(80, 2222)]["file"]).read_bytes() == b"HTTP/1.0 200 OK\r\n\r\n"
    assert (out / idx[(3333, 80)]["file"]).read_bytes() == b"0123456789"
    # A second run into the same directory replaces the files, it does not append.
    assert replay.run([str(cap), "--write-streams", str(out), "-o", str(tmp_path / "log"), "--no-progress"]) == 0
    assert (out / hole["file"]).read_bytes() == b"AAAACCCC" and len(index(out)) == 6
    # --max-stream-bytes is a stream offset: the hole counts, what lies beyond is cut.
    cut = tmp_path / "cut"
    argv = [str(cap), "--write-streams", str(cut), "--max-stream-bytes", "6", "-o", os.devnull, "--no-progress"]
    assert replay.run(argv) == 0
    idx = {(r["src_p"], r["dst_p"]): r for r in index(cut)}
    assert (cut / idx[(1111, 80)]["file"]).read_bytes() == b"AAAA" and idx[(1111, 80)]["truncated"]
    assert (cut / idx[(3333, 80)]["file"]).read_bytes() == b"012345" and idx[(3333, 80)]["truncated"]
    assert (cut / idx[(80, 3333)]["file"]).read_bytes() == b"ok" and not idx[(80, 3333)]["truncated"]


def test_one_open_file_handle_is_enough_for_interleaved_flows(tmp_path: Path) -> None:
    a = conversation(A4, B4, 1001, [(0, b"a1"), (2, b"a2"), (4, b"a3")], [(0, b"A")], T0)
    b = conversation(A4, B4, 1002, [(0, b"b1"), (2, b"b2"), (4, b"b3")], [(0, b"B")], T0 + 1)
    merged = sorted(a + b)  # the two connections' packets alternate
    out = tmp_path / "s"
    writer = replay.StreamWriter(out, default_engine(), replay.StreamWriterConfig(open_files=1))
    tracker = FlowTracker(l7=writer, emit_starts=True)
    evs = list(tracker.process(((ts, f, len(f), 1) for ts, f in merged)))
    writer.close()
    assert sum(isinstance(e, FlowEnded) for e in evs) == 2
    got = {(r["src_p"], r["dst_p"]): (out / r["file"]).read_bytes() for r in index(out)}
    assert got == {(1001, 80): b"a1a2a3", (80, 1001): b"A", (1002, 80): b"b1b2b3", (80, 1002): b"B"}


def test_flows_only_still_writes_streams_and_the_demo_streams_carry_its_http(tmp_path: Path) -> None:
    out = tmp_path / "s"
    res = cli("flow-replay", "--demo", "--flows-only", "-f", "jsonl", "--write-streams", str(out))
    assert res.returncode == 0, res.stderr
    recs = records(res.stdout)
    assert {r["event_type"] for r in recs} == {"flow_start", "flow"}
    full = records(cli("flow-replay", "--demo", "-f", "jsonl").stdout)
    requests = [r for r in full if r["event_type"] == "http"]
    files = {r["flow_id"]: (out / r["file"]).read_bytes() for r in index(out) if r["direction"] == "orig"}
    for h in requests:
        assert f"{h['method']} {h['uri']} HTTP/1.1\r\nHost: {h['host']}\r\n".encode() in files[h["flow_id"]]
    flows = {r["flow_id"]: r for r in recs if r["event_type"] == "flow"}
    assert len(index(out)) > 10
    for r in index(out):
        f = flows[r["flow_id"]]
        if "t" not in f["history"].lower():
            # Without retransmissions every payload byte the flow carried is in its file, once.
            assert r["bytes"] + r["missed_bytes"] == f[f"{r['direction']}_payload_bytes"]


# ---------------------------------------------------------------------------- the CLI reference


def doc_commands() -> List[str]:
    """Every ``$ …`` line of the ``console`` blocks of docs/cli.md, in order."""
    text = DOCS.read_text()
    blocks = re.findall(r"^```console\n(.*?)^```", text, re.M | re.S)
    return [line[2:] for b in blocks for line in b.splitlines() if line.startswith("$ ")]


def test_cli_reference_covers_every_option_of_both_commands() -> None:
    from flowscope_cli import summary

    text = DOCS.read_text()
    for parser in (replay.build_parser(), summary.build_parser()):
        for action in parser._actions:
            for opt in action.option_strings:
                assert f"`{opt}" in text, opt
    for code in (0, 1, 2, 3, 4, 130):
        assert re.search(rf"^\| `{code}` \|", text, re.M), code


def test_every_example_in_the_cli_reference_runs(tmp_path: Path) -> None:
    cmds = doc_commands()
    assert sum(c.startswith("flow-") for c in cmds) >= 10
    assert any(c.startswith("flow-replay") for c in cmds) and any(c.startswith("flow-summary") for c in cmds)
    for name in ("capture.pcap", "day1.pcap", "day2.pcap"):
        shutil.copyfile(demo_capture(), tmp_path / name)
    shims = tmp_path / "bin"
    shims.mkdir()
    for name in ("flow-replay", "flow-summary"):
        (shims / name).write_text("#!/bin/sh\nexec " + " ".join(command(name)) + ' "$@"\n')
        (shims / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{shims}{os.pathsep}{os.environ.get('PATH', '')}")
    for cmd in cmds:
        res = subprocess.run(
            ["bash", "-o", "pipefail", "-c", cmd],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert res.returncode == 0, (cmd, res.stderr)
        assert "error" not in res.stderr and "Traceback" not in res.stderr, (cmd, res.stderr)
        assert res.stdout or " -o " in cmd, cmd
