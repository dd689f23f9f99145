"""Real traffic against independent truth, from the captures bundled in ``tests/data/corpus``.

These run in a plain clone (the full corpus is optional): every flow, HTTP
transaction, DNS message and TLS/QUIC handshake that tshark reports must be
reported identically, compared the way the corpus's ``score.py`` compares.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, DefaultDict, Dict, FrozenSet, List, Tuple

import pytest

from flowscope import event_to_dict, events

BUNDLED = Path(__file__).resolve().parent / "data" / "corpus"
CAPTURES = sorted(BUNDLED.glob("*.pcap"))

Conv = Tuple[str, FrozenSet[Tuple[str, int]]]
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}  # RFC 1035 4.1.1


def _conv(proto: str, a: Tuple[str, int], b: Tuple[str, int]) -> Conv:
    return (proto, frozenset({a, b}))


def _ep(d: Dict[str, Any]) -> Tuple[str, int]:
    return (str(d["ip"]).lower(), int(d["port"]))


def _records(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(json.dumps(event_to_dict(ev))) for ev in events(path)]


def _by_conv(recs: List[Dict[str, Any]], types: Tuple[str, ...]) -> DefaultDict[Conv, List[Dict[str, Any]]]:
    out: DefaultDict[Conv, List[Dict[str, Any]]] = defaultdict(list)
    for r in recs:
        if r["event_type"] in types:
            out[_conv(r["proto"], (r["orig_h"], r["orig_p"]), (r["resp_h"], r["resp_p"]))].append(r)
    return out


def test_the_bundle_is_there() -> None:
    assert len(CAPTURES) == 9
    for p in CAPTURES:
        assert p.with_suffix(".truth.json").is_file()


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_bundled_capture_matches_its_truth(path: Path) -> None:
    truth = json.loads(path.with_suffix(".truth.json").read_text())
    recs = _records(path)

    # flows: per endpoint, all records of one 5-tuple summed
    ours: DefaultDict[Conv, DefaultDict[Tuple[str, int], List[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for r in recs:
        if r["event_type"] == "flow":
            k = _conv(r["proto"], (r["orig_h"], r["orig_p"]), (r["resp_h"], r["resp_p"]))
            for side in ("orig", "resp"):
                c = ours[k][(r[f"{side}_h"], r[f"{side}_p"])]
                c[0] += r[f"{side}_pkts"]
                c[1] += r[f"{side}_bytes"]
                c[2] += r[f"{side}_payload_bytes"]
    for f in truth["flows"]:
        i, j = _ep(f["initiator"]), _ep(f["responder"])
        got = ours.get(_conv(f["proto"], i, j))
        assert got is not None, f"flow {i}<->{j} missing"
        assert got[i] == [f["pkts_i2r"], f["bytes_i2r"], f["payload_bytes_i2r"]], (i, j)
        assert got[j] == [f["pkts_r2i"], f["bytes_r2i"], f["payload_bytes_r2i"]], (i, j)

    # http: in order within the conversation, by method and URI
    http = _by_conv(recs, ("http",))
    for t in truth["http"]:
        cands = http[_conv("tcp", _ep(t["client"]), _ep(t["server"]))]
        o = next(o for o in cands if o["method"] == t["method"] and o["uri"] == t["uri"])
        cands.remove(o)
        assert (o["host"], o["user_agent"], o["status_code"], o["response_content_type"]) == (
            t.get("host"), t.get("user_agent"), t.get("status"), t.get("content_type"))  # fmt: skip

    # dns: by id, direction and name; the answer set with presentation data
    dns = _by_conv(recs, ("dns",))
    for t in truth["dns"]:
        cands = dns[_conv(t["transport"], _ep(t["src"]), _ep(t["dst"]))]
        o = next(o for o in cands if o["trans_id"] == t["id"] and o["is_response"] == t["is_response"]
                 and (o["qname"] or "").rstrip(".").lower() == (t.get("qname") or "").rstrip(".").lower())  # fmt: skip
        cands.remove(o)
        assert o["qtype"] == (t.get("questions") or [{}])[0].get("type_name")
        if t["is_response"]:
            assert o["rcode"] == RCODES.get(t["rcode"], t["rcode"])

        def answers(xs: List[Dict[str, Any]], key: str) -> set[Tuple[Any, ...]]:
            return {(a["name"].lower().rstrip("."), a[key], None if a.get("data") is None else str(a["data"]).lower().rstrip("."))
                    for a in xs or []}  # fmt: skip

        assert answers(o["answers"], "type") == answers(t.get("answers") or [], "type_name")

    # tls and quic handshakes, in order within the conversation
    hs = _by_conv(recs, ("tls", "quic"))
    seen: DefaultDict[Conv, int] = defaultdict(int)
    for t in truth["tls"]:
        k = _conv("udp" if t.get("transport") == "quic" else "tcp", _ep(t["client"]), _ep(t["server"]))
        o = hs[k][seen[k]]
        seen[k] += 1
        assert o["server_name"] == t.get("sni")
        assert o["ja3"] == t.get("ja3") and o["ja3s"] == t.get("ja3s")
        assert list(o["alpn_offered"]) == list(t.get("alpn_offered") or [])
        assert o["cert_subject_cn"] == t.get("server_cert_subject_cn")
        if t.get("ja4") is not None:
            assert o["ja4"] == t["ja4"]
