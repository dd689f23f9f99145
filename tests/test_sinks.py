"""Tests of the record sinks (``flowscope._sinks``): the JSON-lines contract of EVENTS.md and CSV.

Field names and types are the ones ``docs/EVENTS.md`` lists for every
record and for ``flow`` records; timestamps are checked against the corpus
truth (epoch seconds of each flow's first frame, rounded there to 1 µs).
The hand-formatted hot path :func:`flow_json` must equal
``json.dumps(flow_to_dict(ev))`` with compact separators on every corpus
flow and on awkward handmade ones.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import pytest

import flowscope
from flowscope import CsvSink, FlowEnded, FlowTracker, JsonLinesSink, TrackerConfig, event_to_dict
from flowscope._sinks import FLOW_FIELDS, flow_json, flow_to_dict
from flowscope_core import ConnState, EndReason, FlowEvent, FlowStarted, Notice, SessionRecord

import packets as P
from conftest import corpus_pcaps, load_truth

PCAPS = corpus_pcaps()
SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND

TypeSpec = Union[type, Tuple[type, ...]]
COMMON: Dict[str, TypeSpec] = {"event_type": str, "flow_id": str, "ts": float, "proto": str, "orig_h": str,
                               "orig_p": int, "resp_h": str, "resp_p": int, "community_id": str}  # fmt: skip
FLOW: Dict[str, TypeSpec] = {**COMMON, "duration": float, "orig_pkts": int, "resp_pkts": int, "orig_bytes": int,
                             "resp_bytes": int, "orig_payload_bytes": int, "resp_payload_bytes": int,
                             "missed_bytes": int, "history": str, "conn_state": str, "end_reason": str,
                             "service": (str, type(None)), "vlan": list, "tunnel": list}  # fmt: skip
"""EVENTS.md's fields of a ``flow`` record and their JSON types."""


@lru_cache(maxsize=None)
def corpus_events(name: str) -> Tuple[FlowEvent, ...]:
    """Every event of one corpus capture (application layer included), computed once."""
    return tuple(flowscope.events(next(p for p in PCAPS if p.name == name)))


def _ids(paths: List[Path]) -> List[str]:
    return [p.stem for p in paths]


def check_flow_record(d: Dict[str, Any]) -> None:
    """One parsed ``flow`` line against EVENTS.md."""
    assert list(d) == list(FLOW)  # names, and the documented order
    for k, t in FLOW.items():
        assert isinstance(d[k], t), (k, d[k])
        assert not isinstance(d[k], bool)
    assert d["event_type"] == "flow"
    assert d["community_id"].startswith("1:") or d["community_id"] == ""
    assert d["conn_state"] in {c.value for c in ConnState}
    assert d["end_reason"] in {e.value for e in EndReason}
    assert d["proto"] in ("tcp", "udp", "icmp", "icmp6", "sctp") or d["proto"].startswith("ip-")
    for h in (d["orig_h"], d["resp_h"]):
        assert str(ipaddress.ip_address(h)) == h  # IPv6 compressed, lower case
    assert all(isinstance(v, int) and 0 <= v < 4096 for v in d["vlan"])
    assert all(isinstance(t, str) for t in d["tunnel"])
    assert d["duration"] >= 0 and min(d["orig_pkts"], d["resp_pkts"], d["orig_bytes"], d["resp_bytes"]) >= 0


@pytest.mark.corpus
@pytest.mark.parametrize("pcap", PCAPS, ids=_ids(PCAPS))
def test_json_lines_follow_the_contract(pcap: Path) -> None:
    out = io.StringIO()
    sink = JsonLinesSink(out)
    evs = corpus_events(pcap.name)
    for ev in evs:
        sink.write(ev)
    text = out.getvalue()
    assert text.endswith("\n") and sink.written == len(evs) == text.count("\n")
    parsed = [json.loads(line) for line in text.splitlines()]
    flows = [d for d in parsed if d["event_type"] == "flow"]
    assert len(flows) == sum(isinstance(e, FlowEnded) for e in evs)
    for d in flows:
        check_flow_record(d)
    for d in parsed:
        for k, t in COMMON.items():
            if d["event_type"] != "notice" or k in d:
                assert isinstance(d[k], t), (d["event_type"], k)
    # flow_id joins L7 records to their flow record.
    flow_ids = {d["flow_id"] for d in flows}
    assert {d["flow_id"] for d in parsed if d["event_type"] not in ("flow", "notice")} <= flow_ids
    # ts: the first frame of each truth conversation (µs in the truth file).
    first: Dict[Tuple[str, frozenset[Tuple[str, int]]], float] = {}
    for d in flows:
        conv = (d["proto"], frozenset({(d["orig_h"], d["orig_p"]), (d["resp_h"], d["resp_p"])}))
        first[conv] = min(first.get(conv, d["ts"]), d["ts"])
    for f in load_truth(pcap)["flows"]:
        conv = (f["proto"], frozenset({(f["initiator"]["ip"], f["initiator"]["port"]),
                                       (f["responder"]["ip"], f["responder"]["port"])}))  # fmt: skip
        assert abs(first[conv] - f["first_ts"]) <= 1.5e-6, f


@pytest.mark.corpus
def test_flow_json_equals_json_dumps_on_every_corpus_flow(corpus_dir: Path) -> None:
    n = 0
    for p in PCAPS:
        for ev in corpus_events(p.name):
            if isinstance(ev, FlowEnded):
                assert flow_json(ev) == json.dumps(flow_to_dict(ev), separators=(",", ":")) + "\n"
                n += 1
    assert n >= 2231


def _handmade_records(prefix: str) -> List[FlowEnded]:
    tr = FlowTracker(TrackerConfig(id_prefix=prefix))
    a6, b6 = P.ip("2001:DB8::1"), P.ip("2001:db8:0:0:1::2")
    frames = [
        P.ether_vlans([7, 8], P.ETH_IPV6, P.ipv6(a6, b6, P.UDP, P.udp(1, 2, b"x")), outer=P.ETH_QINQ),
        P.ether(P.ETH_IPV4, P.ipv4(P.ip("192.0.2.9"), P.ip("192.0.2.10"), P.GRE,
                                   P.gre(P.ETH_IPV4, P.ipv4(P.ip("10.0.0.1"), P.ip("10.0.0.2"), 89, b"ospf")))),
        P.ether(P.ETH_IPV4, P.ipv4(P.ip("10.0.0.1"), P.ip("10.0.0.2"), P.TCP, P.tcp(1, 2, P.SYN))),
    ]  # fmt: skip
    for i, f in enumerate(frames):
        tr.feed(T0 + i * 123_457, f)
    return [e for e in tr.flush() if isinstance(e, FlowEnded)]


@pytest.mark.parametrize("prefix", ["", 'w"1\\-', "w\u00e9\u2603-", "\t\n"])
def test_flow_json_equals_json_dumps_on_awkward_records(prefix: str) -> None:
    recs = _handmade_records(prefix)
    assert len(recs) == 3
    for ev in recs:
        line = flow_json(ev)
        assert line == json.dumps(flow_to_dict(ev), separators=(",", ":")) + "\n"
        d = json.loads(line)
        check_flow_record(d)
        assert d["flow_id"].startswith(prefix)
    by_proto = {json.loads(flow_json(e))["proto"]: json.loads(flow_json(e)) for e in recs}
    assert by_proto["udp"]["orig_h"] == "2001:db8::1" and by_proto["udp"]["resp_h"] == "2001:db8::1:0:0:2"
    assert by_proto["udp"]["vlan"] == [7, 8] and by_proto["udp"]["tunnel"] == []
    assert by_proto["ip-89"]["tunnel"] == ["gre"] and by_proto["ip-89"]["orig_p"] == 0
    assert by_proto["tcp"]["history"] == "S" and by_proto["tcp"]["service"] is None
    assert by_proto["tcp"]["ts"] == (T0 + 2 * 123_457) / SECOND


def test_csv_header_and_rows() -> None:
    recs = _handmade_records("c-")
    out = io.StringIO()
    sink = CsvSink(out)
    for ev in recs:
        sink.write(ev)
    sink.write(Notice(ts=T0, kind="x", message="not a flow"))  # skipped
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == FLOW_FIELDS == tuple(FLOW)
    assert len(rows) == 1 + len(recs) and sink.written == len(recs)
    for row, ev in zip(rows[1:], recs):
        d = flow_to_dict(ev)
        for k, cell in zip(FLOW_FIELDS, row):
            v = d[k]
            want = ";".join(map(str, v)) if isinstance(v, list) else "" if v is None else str(v)
            assert cell == want, k
    udp = next(r for r in rows[1:] if r[3] == "udp")
    assert udp[FLOW_FIELDS.index("vlan")] == "7;8"


def test_other_events_to_dicts_and_type_filter() -> None:
    tr = FlowTracker(emit_starts=True)
    f = P.ether(P.ETH_IPV4, P.ipv4(P.ip("10.0.0.1"), P.ip("10.0.0.2"), P.UDP, P.udp(1, 2, b"x")))
    evs: List[FlowEvent] = list(tr.feed(T0, f)) + list(tr.flush())
    start = next(e for e in evs if isinstance(e, FlowStarted))
    d = event_to_dict(start)
    assert d["event_type"] == "flow_start" and d["flow_id"] == start.flow.flow_id and d["ts"] == T0 / SECOND
    assert d["vlan"] == [] and d["tunnel"] == []
    n = event_to_dict(Notice(ts=T0, kind="k", message="m", details=(("a", 1), ("b", None))))
    assert n == {"event_type": "notice", "ts": T0 / SECOND, "kind": "k", "message": "m", "a": 1, "b": None}
    out = io.StringIO()
    sink = JsonLinesSink(out, types=frozenset({"flow"}))
    for e in evs:
        sink.write(e)
    assert [json.loads(x)["event_type"] for x in out.getvalue().splitlines()] == ["flow"]
    with pytest.raises(TypeError):
        event_to_dict("not an event")  # type: ignore[arg-type]


@pytest.mark.corpus
def test_session_records_carry_their_fields(corpus_dir: Path) -> None:
    name = next(p.name for p in PCAPS if p.name.startswith("suri_dns-udp"))
    recs = [e for e in corpus_events(name) if isinstance(e, SessionRecord)]
    assert recs
    for r in recs:
        d = event_to_dict(r)
        assert d["event_type"] == r.event.event_type
        assert d["ts"] == r.event.ts / SECOND
        for k in COMMON:
            assert k in d
        json.dumps(d)
