"""Tests of the pandas/Arrow export (``flowscope._frames``).

Truth: the JSON lines of ``flowscope.events`` (the public contract; a frame
must hold the same columns and values, ``ts`` aside, which must hold the
event's exact nanoseconds), the corpus's tshark ground truth (packets and
bytes each endpoint sent; how many HTTP requests, DNS messages and TLS/QUIC
handshakes a capture has, with their host/URI, query name, SNI and JA4),
timestamps fed in by hand, and the dtypes written out below from the
documented mapping (docs/events.md: string → ``string``, integer → ``int64``,
nullable integer → ``Int64``…).  pandas and pyarrow are optional: those
tests skip without them, and two tests hide them to see the error that names
the extra to install.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

import flowscope
from flowscope import FlowEnded, JsonLinesSink, SessionRecord, open_capture
from flowscope._frames import (
    KINDS,
    QUESTION_FIELDS,
    RR_FIELDS,
    SCHEMAS,
    arrow_schema,
    to_arrow,
    to_arrow_batches,
    to_pandas,
)
from flowscope._sinks import FLOW_FIELDS
from flowscope.parsers._dnswire import DnsAnswer, DnsQuestion
from flowscope.parsers.dns import DnsError, DnsMessage
from flowscope.parsers.http import HttpError, HttpTransaction
from flowscope.parsers.quic import QuicError, QuicHandshake
from flowscope.parsers.tls import TlsError, TlsHandshake
from flowscope_core import FlowEvent, MissingExtraError, Notice

import packets as P
from conftest import corpus_pcaps, load_truth

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
PCAPS = corpus_pcaps()
HEAD = ["event_type", "flow_id", "ts", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "community_id"]

FLOW_DTYPES = {
    "event_type": "string", "flow_id": "string", "ts": "datetime64[ns, UTC]", "proto": "string",
    "orig_h": "string", "orig_p": "int64", "resp_h": "string", "resp_p": "int64", "community_id": "string",
    "duration": "float64", "orig_pkts": "int64", "resp_pkts": "int64", "orig_bytes": "int64",
    "resp_bytes": "int64", "orig_payload_bytes": "int64", "resp_payload_bytes": "int64",
    "missed_bytes": "int64", "history": "string", "conn_state": "string", "end_reason": "string",
    "service": "string", "vlan": "object", "tunnel": "object",
}  # fmt: skip
"""docs/events.md's pandas dtypes of a ``flow`` frame, written out."""

SOME_DTYPES = {
    "http": {"status_code": "Int64", "request_body_len": "int64", "method": "string", "info_codes": "object",
             "request_complete": "bool", "ts": "datetime64[ns, UTC]"},
    "tls": {"cert_chain_len": "Int64", "client_is_orig": "boolean", "hello_retry_request": "bool",
            "alpn_offered": "object", "ja4": "string"},
    "dns": {"trans_id": "int64", "rcode": "string", "answers": "object", "edns_udp_size": "Int64",
            "is_response": "bool", "ancount": "int64"},
    "quic": {"quic_version": "string", "hello_retry_request": "bool", "cert_san_dns": "object"},
    "notice": {"orig_p": "Int64", "kind": "string", "ts": "datetime64[ns, UTC]"},
}  # fmt: skip
"""Spot checks of the other declared types (nullable integers and booleans included)."""


@pytest.fixture
def pd() -> Any:
    return pytest.importorskip("pandas")


@pytest.fixture
def pa() -> Any:
    return pytest.importorskip("pyarrow")


def _ids(paths: List[Path]) -> List[str]:
    return [p.stem for p in paths]


def _pcap(prefix: str) -> Path:
    found = [p for p in PCAPS if p.name.startswith(prefix)]
    if not found:
        pytest.skip(f"corpus capture {prefix}* not found")
    return found[0]


@lru_cache(maxsize=None)
def corpus_events(path: Path, flows_only: bool = False) -> Tuple[FlowEvent, ...]:
    """Every event of a corpus capture, computed once."""
    return tuple(flowscope.events(path, flows_only=flows_only))


def json_records(evs: Tuple[FlowEvent, ...], event_type: Optional[str]) -> List[Dict[str, Any]]:
    """The events as the JSON-lines sink writes them, parsed back."""
    out = io.StringIO()
    sink = JsonLinesSink(out, types=None if event_type is None else frozenset({event_type}))
    for ev in evs:
        sink.write(ev)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _plain(pd: Any, v: Any) -> Any:
    """A pandas cell as the JSON value it stands for (``ts`` as epoch seconds)."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, pd.Timestamp):
        return v.value / NS
    if isinstance(v, float) and v != v:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def frame_records(pd: Any, df: Any) -> List[Dict[str, Any]]:
    return [{k: _plain(pd, v) for k, v in zip(df.columns, row)} for row in df.itertuples(index=False, name=None)]


def table_records(pa: Any, tbl: Any) -> List[Dict[str, Any]]:
    """An Arrow table's rows with ``ts`` as epoch seconds (from its integer nanoseconds)."""
    i = tbl.schema.get_field_index("ts")
    tbl = tbl.set_column(i, "ts", tbl.column("ts").cast(pa.int64()))
    rows: List[Dict[str, Any]] = tbl.to_pylist()
    for r in rows:
        r["ts"] = r["ts"] / NS
    return rows


def dtypes(df: Any) -> Dict[str, str]:
    return {k: str(v) for k, v in df.dtypes.items()}


# ------------------------------------------------------------------ optional extras


def test_missing_pandas_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now fails
    with pytest.raises(MissingExtraError) as ei:
        to_pandas([])
    assert ei.value.extra == "pandas"
    assert "pip install 'flowscope[pandas]'" in str(ei.value)
    assert isinstance(ei.value, ImportError)


def test_missing_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    for call in (lambda: to_arrow([]), lambda: to_arrow_batches([]), lambda: arrow_schema("flow")):
        with pytest.raises(MissingExtraError) as ei:
            call()
        assert ei.value.extra == "arrow"
        assert "pip install 'flowscope[arrow]'" in str(ei.value)


# ------------------------------------------------------------------ schemas


def test_schemas_are_the_records_fields() -> None:
    names = {t: [c.name for c in cols] for t, cols in SCHEMAS.items()}
    assert tuple(names["flow"]) == FLOW_FIELDS
    assert names["flow_start"] == HEAD + ["vlan", "tunnel"]
    assert names["notice"] == HEAD + ["kind", "message"]
    classes: Dict[str, Any] = {
        "http": HttpTransaction, "http_error": HttpError, "tls": TlsHandshake, "tls_error": TlsError,
        "dns": DnsMessage, "dns_error": DnsError, "quic": QuicHandshake, "quic_error": QuicError,
    }  # fmt: skip
    kinds = {"str": "str", "int": "int", "bool": "bool", "Tuple[str, ...]": "list<str>",
             "Tuple[int, ...]": "list<int>", "Tuple[DnsAnswer, ...]": "list<rr>",
             "Tuple[DnsQuestion, ...]": "list<question>"}  # fmt: skip
    for t, cls in classes.items():
        assert cls.event_type == t
        fields = [f for f in dataclasses.fields(cls) if f.name != "ts"]
        assert names[t] == HEAD + [f.name for f in fields], t
        # Kind and nullability follow each field's annotation (Optional[...] is nullable).
        for col, f in zip(SCHEMAS[t][len(HEAD) :], fields):
            annotation = str(f.type)
            optional = annotation.startswith("Optional[")
            assert col.nullable == optional, (t, f.name)
            assert col.kind == kinds[annotation[9:-1] if optional else annotation], (t, f.name)
    assert [n for n, _ in RR_FIELDS] == [f.name for f in dataclasses.fields(DnsAnswer)]
    assert [n for n, _ in QUESTION_FIELDS] == [f.name for f in dataclasses.fields(DnsQuestion)]
    # One kind per column name, whatever the record type.
    for cols in SCHEMAS.values():
        for c in cols:
            assert KINDS[c.name] == c.kind, c.name


@pytest.mark.parametrize("event_type", sorted(SCHEMAS))
def test_empty_results_keep_their_columns(pd: Any, pa: Any, event_type: str) -> None:
    want = [c.name for c in SCHEMAS[event_type]]
    df = to_pandas([], event_type=event_type)
    assert list(df.columns) == want and len(df) == 0
    got = dtypes(df)
    for t, d in [("flow", FLOW_DTYPES), *SOME_DTYPES.items()]:
        if t == event_type:
            assert {k: got[k] for k in d} == d
    tbl = to_arrow([], event_type=event_type)
    assert tbl.num_rows == 0 and tbl.schema == arrow_schema(event_type)
    batches = list(to_arrow_batches(iter(()), event_type=event_type))
    assert len(batches) == 1 and batches[0].num_rows == 0 and batches[0].schema == arrow_schema(event_type)
    assert tbl.schema.field("ts").type == pa.timestamp("ns", tz="UTC")


def test_empty_union_has_the_common_head(pd: Any, pa: Any) -> None:
    assert list(to_pandas([], event_type=None).columns) == HEAD
    assert to_arrow([], event_type="a_plugin_type").schema.names == HEAD


# ------------------------------------------------------------------ corpus


@pytest.mark.corpus
@pytest.mark.parametrize("pcap", PCAPS, ids=_ids(PCAPS))
def test_flow_rows_equal_the_json_lines(pd: Any, pa: Any, pcap: Path) -> None:
    evs = corpus_events(pcap, True)
    want = json_records(evs, "flow")
    df = to_pandas(pcap, flows_only=True)
    assert list(df.columns) == list(FLOW_FIELDS)
    assert dtypes(df) == FLOW_DTYPES
    assert frame_records(pd, df) == want
    assert [t.value for t in df["ts"]] == [e.ts for e in evs if isinstance(e, FlowEnded)]  # ns kept
    tbl = to_arrow(pcap, flows_only=True)
    assert tbl.schema == arrow_schema("flow")
    assert table_records(pa, tbl) == want


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["zeek_wikipedia", "zeek_tunnels_teredo", "ndpi_tumblr", "zeek_pppoe-over-qinq"])
def test_packets_per_endpoint_match_truth(pd: Any, name: str) -> None:
    pcap = _pcap(name)
    df = to_pandas(pcap)
    sides = []
    for me, peer in (("orig", "resp"), ("resp", "orig")):
        part = df[["proto", f"{me}_h", f"{me}_p", f"{peer}_h", f"{peer}_p", f"{me}_pkts", f"{me}_bytes"]]
        sides.append(part.set_axis(["proto", "h", "p", "peer_h", "peer_p", "pkts", "bytes"], axis=1))
    sent = pd.concat(sides).groupby(["proto", "h", "p", "peer_h", "peer_p"])[["pkts", "bytes"]].sum()
    got = {k: (int(r.pkts), int(r.bytes)) for k, r in sent.iterrows()}
    truth = load_truth(pcap)["flows"]
    assert truth
    for f in truth:
        i, r = f["initiator"], f["responder"]
        assert (i["ip"], i["port"]) != (r["ip"], r["port"])
        assert got[(f["proto"], i["ip"], i["port"], r["ip"], r["port"])] == (f["pkts_i2r"], f["bytes_i2r"]), f
        assert got[(f["proto"], r["ip"], r["port"], i["ip"], i["port"])] == (f["pkts_r2i"], f["bytes_r2i"]), f
    # Nothing more: the truth has every TCP/UDP conversation (ICMP is not in it).
    tcp_udp = sum(v[0] for k, v in got.items() if k[0] in ("tcp", "udp"))
    assert tcp_udp == sum(f["pkts_i2r"] + f["pkts_r2i"] for f in truth)


def _na(pd: Any, values: Any) -> List[Any]:
    return [None if v is pd.NA else v for v in values]


@pytest.mark.corpus
@pytest.mark.parametrize("pcap", PCAPS, ids=_ids(PCAPS))
def test_application_frames_have_the_truths_rows(pd: Any, pa: Any, pcap: Path) -> None:
    truth = load_truth(pcap)
    evs = corpus_events(pcap)
    http = to_pandas(evs, event_type="http")
    assert len(http) == len(truth["http"]) == truth["summary"]["http_requests"]
    got_http = Counter(zip(_na(pd, http["method"]), _na(pd, http["host"]), _na(pd, http["uri"])))
    assert got_http == Counter((t["method"], t["host"], t["uri"]) for t in truth["http"])
    dns = to_pandas(evs, event_type="dns")
    assert len(dns) == len(truth["dns"]) == truth["summary"]["dns_messages"]
    got_dns = Counter(zip(dns["trans_id"].tolist(), dns["is_response"].tolist(), _na(pd, dns["qname"])))
    assert got_dns == Counter((t["id"], t["is_response"], t["qname"]) for t in truth["dns"])
    for event_type, transport in (("tls", "tcp"), ("quic", "quic")):
        tbl = to_arrow(evs, event_type=event_type)
        want = [t for t in truth["tls"] if t["transport"] == transport]
        assert tbl.num_rows == len(want)
        assert Counter(tbl.column("server_name").to_pylist()) == Counter(t["sni"] for t in want)
        assert Counter(tbl.column("ja4").to_pylist()) == Counter(t["ja4"] for t in want)
        assert tbl.schema == arrow_schema(event_type)
    # Every record type's rows equal its JSON lines, in pandas and in Arrow.
    for event_type in ("http", "dns", "tls", "quic"):
        want_rows = json_records(evs, event_type)
        df = to_pandas(evs, event_type=event_type)
        assert frame_records(pd, df) == want_rows
        got = dtypes(df)
        assert {k: got[k] for k in SOME_DTYPES[event_type]} == SOME_DTYPES[event_type]
        assert table_records(pa, to_arrow(evs, event_type=event_type)) == want_rows


@pytest.mark.corpus
def test_dns_answers_are_lists_of_structs(pa: Any) -> None:
    pcap = _pcap("zeek_dns-txt-multiple")
    tbl = to_arrow(pcap, event_type="dns")
    answers = tbl.column("answers").type
    assert pa.types.is_list(answers) and pa.types.is_struct(answers.value_type)
    resp = [r for r in tbl.to_pylist() if r["is_response"]]
    truth = [t for t in load_truth(pcap)["dns"] if t["is_response"]]
    assert len(resp) == len(truth) == 1
    want = [(a["name"], a["type_name"], a["ttl"], a["data"], a.get("txt_strings")) for a in truth[0]["answers"]]
    assert [(a["name"], a["type"], a["ttl"], a["data"], a["txt"]) for a in resp[0]["answers"]] == want


@pytest.mark.corpus
def test_every_input_form_gives_the_same_frame(pd: Any) -> None:
    pcap = _pcap("zeek_tunnels_teredo")
    want = to_pandas(pcap, event_type="dns")
    assert len(want) == 10
    with open(pcap, "rb") as f:
        forms: List[Any] = [
            str(pcap), f, open_capture(pcap), list(open_capture(pcap)),
            ((ts, frame, lt) for ts, frame, _wl, lt in open_capture(pcap)), corpus_events(pcap),
        ]  # fmt: skip
        for form in forms:
            pd.testing.assert_frame_equal(to_pandas(form, event_type="dns"), want)


@pytest.mark.corpus
def test_batches_cut_anywhere_give_the_same_table(pd: Any, pa: Any) -> None:
    pcap = _pcap("zeek_wikipedia")
    whole = to_arrow(pcap, event_type="dns")
    assert whole.num_rows == 40
    batches = list(to_arrow_batches(pcap, event_type="dns", batch_size=7))
    assert [b.num_rows for b in batches] == [7] * 5 + [5]
    assert all(b.schema == arrow_schema("dns") for b in batches)
    assert pa.Table.from_batches(batches).equals(whole)
    assert to_arrow(pcap, event_type="dns", batch_size=3).equals(whole)
    pd.testing.assert_frame_equal(to_pandas(pcap, event_type="dns", batch_size=3), to_pandas(pcap, event_type="dns"))
    with pytest.raises(ValueError):
        to_pandas(pcap, batch_size=0)


@pytest.mark.corpus
def test_flows_only_skips_the_service(pd: Any) -> None:
    pcap = _pcap("zeek_wikipedia")
    full = to_pandas(pcap)
    assert Counter(_na(pd, full["service"])) == {"dns": 22, "http": 9, None: 3}  # flow-summary --demo's table
    assert to_pandas(pcap, flows_only=True)["service"].isna().all()


@pytest.mark.corpus
def test_union_of_every_record(pd: Any, pa: Any) -> None:
    pcap = _pcap("suri_tcp-overlap")
    evs = corpus_events(pcap)
    want = json_records(evs, None)
    assert {d["event_type"] for d in want} >= {"flow", "notice"}
    df = to_pandas(evs, event_type=None)
    assert list(df.columns[: len(HEAD)]) == HEAD and len(df) == len(want)
    union = list(dict.fromkeys(k for d in want for k in d))
    assert sorted(df.columns) == sorted(union)
    for got, d in zip(frame_records(pd, df), want):
        assert got == {k: d.get(k) for k in df.columns}
    assert dtypes(df)["orig_pkts"] == "Int64" and dtypes(df)["offset"] == "Int64"
    for got, d in zip(table_records(pa, to_arrow(evs, event_type=None)), want):
        assert got == {k: d.get(k) for k in df.columns}


# ------------------------------------------------------------------ hand-made events


def _frames() -> List[Tuple[int, bytes, int]]:
    a, b = P.ip("10.0.0.1"), P.ip("10.0.0.2")
    udp = P.ether(P.ETH_IPV4, P.ipv4(a, b, P.UDP, P.udp(4000, 9, b"x", src=a, dst=b)))
    syn = P.ether(P.ETH_IPV4, P.ipv4(a, b, P.TCP, P.tcp(4001, 9, P.SYN, src=a, dst=b)))
    return [(T0 + 123_456_789, udp, 1), (T0 + 987_654_321_987, syn, 1)]


def test_timestamps_keep_their_nanoseconds(pd: Any, pa: Any) -> None:
    df = to_pandas(_frames())
    assert [t.value for t in df["ts"]] == [T0 + 123_456_789, T0 + 987_654_321_987]
    assert str(df["ts"].dt.tz) == "UTC"
    assert df["ts"].iloc[0] == pd.Timestamp("2023-11-14 22:13:20.123456789", tz="UTC")
    tbl = to_arrow(_frames())
    assert tbl.column("ts").cast(pa.int64()).to_pylist() == [T0 + 123_456_789, T0 + 987_654_321_987]
    assert list(df["proto"]) == ["udp", "tcp"] and list(df["conn_state"]) == ["S0", "S0"]
    starts = to_pandas(_frames(), event_type="flow_start")
    assert list(starts.columns) == HEAD + ["vlan", "tunnel"] and len(starts) == 2


def test_columns_that_appear_late_or_change_type(pd: Any, pa: Any) -> None:
    notices: List[FlowEvent] = [
        Notice(ts=T0, kind="a", message="no details"),
        Notice(ts=T0 + 1, kind="b", message="m", details=(("x", 1), ("offset", 5))),
        Notice(ts=T0 + 2, kind="c", message="m", details=(("x", "text"),)),
    ]
    for size in (1, 2, 100):
        tbl = to_arrow(notices, event_type="notice", batch_size=size)
        assert tbl.schema.names == HEAD + ["kind", "message", "x", "offset"]
        assert tbl.column("x").to_pylist() == [None, "1", "text"]  # int then str: strings
        assert tbl.column("offset").type == pa.int64() and tbl.column("offset").to_pylist() == [None, 5, None]
        assert tbl.column("flow_id").to_pylist() == [None, None, None]  # notices without a flow
        df = to_pandas(notices, event_type="notice", batch_size=size)
        assert list(df.columns) == tbl.schema.names
        assert _na(pd, df["x"]) == [None, 1, "text"]
        assert _na(pd, df["offset"]) == [None, 5, None] and str(df["offset"].dtype) == "Int64"
        assert str(df["orig_p"].dtype) == "Int64"


def test_events_of_one_type_only(pd: Any) -> None:
    evs = list(flowscope.events(_frames(), emit_starts=True))
    assert {type(e).__name__ for e in evs} == {"FlowStarted", "FlowEnded"}
    assert len(to_pandas(evs)) == 2 and len(to_pandas(evs, event_type="flow_start")) == 2
    assert len(to_pandas(evs, event_type=None)) == 4
    assert len(to_pandas(evs, event_type="http")) == 0
    assert not any(isinstance(e, SessionRecord) for e in evs)


def test_a_null_where_none_is_declared_is_kept_as_null(pd: Any, pa: Any) -> None:
    flow = next(e for e in flowscope.events(_frames()) if isinstance(e, FlowEnded)).flow
    bad = TlsError(ts=T0, reason="r", message="m", direction="orig", fatal=None)  # type: ignore[arg-type]
    good = TlsError(ts=T0, reason="r", message="m", direction="resp", fatal=True)
    df = to_pandas([SessionRecord(flow=flow, event=good)], event_type="tls_error")
    assert str(df["fatal"].dtype) == "bool" and list(df["fatal"]) == [True]
    df = to_pandas([SessionRecord(flow=flow, event=e) for e in (good, bad)], event_type="tls_error")
    assert str(df["fatal"].dtype) == "boolean" and _na(pd, df["fatal"]) == [True, None]
    tbl = to_arrow([SessionRecord(flow=flow, event=e) for e in (good, bad)], event_type="tls_error")
    assert tbl.column("fatal").to_pylist() == [True, None] and tbl.schema == arrow_schema("tls_error")
