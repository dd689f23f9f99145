"""Tests of flowscope.parsers.tls: the TLS-over-TCP session parser and its factory.

Every TCP handshake of the public corpus is replayed through the parser and
compared with tshark's ground truth; each conversation is also fed whole
per direction, one byte at a time and at Hypothesis-chosen split points,
which must give the same records.  Hand-made flights cover the pairing
rules, certificates, bounds and malformed input.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from flowscope.parsers import tls as tls_module
from flowscope.parsers._tlswire import HandshakeLimits, cipher_name, ja3, ja4, parse_client_hello
from flowscope.parsers.tls import TlsConfig, TlsError, TlsHandshake, TlsParser, TlsParserFactory, factory
from flowscope_core import (
    ENTRY_POINT_GROUP,
    Detection,
    Direction,
    Endpoint,
    FlowInfo,
    Orientation,
    SessionEvent,
    SessionParser,
    SessionParserFactory,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tlswire import (
    StreamItem,
    alpn_ext,
    client_hello_body,
    corpus_captures_with_tls,
    flow_endpoints,
    handshake,
    record,
    server_hello_body,
    sni_ext,
    tcp_stream_items,
    u24,
    versions_ext,
)

ORIG, RESP = Direction.ORIG, Direction.RESP
FLOW = FlowInfo(
    flow_id="f1",
    proto=6,
    orig=Endpoint(addr="192.0.2.1", port=50000),
    resp=Endpoint(addr="198.51.100.7", port=443),
    orientation=Orientation.SYN,
    community_id="1:test",
    vlan=(),
    tunnel=(),
)
# tshark's negotiated_version_name → flowscope's version names.
TSHARK_VERSION_NAMES = {
    "SSL 3.0": "SSLv3",
    "TLS 1.0": "TLSv1.0",
    "TLS 1.1": "TLSv1.1",
    "TLS 1.2": "TLSv1.2",
    "TLS 1.3": "TLSv1.3",
}

Feed = List[Tuple[Direction, str, Any, int]]


def run(
    feed: Sequence[Tuple[Direction, str, Any, int]], parser: Optional[TlsParser] = None, close: bool = True
) -> List[SessionEvent]:
    """Feed ``(direction, "data"|"gap", bytes|length, ts)`` items, then ``close()``."""
    parser = parser if parser is not None else TlsParser()
    out: List[SessionEvent] = []
    last = 0
    for direction, kind, value, ts in feed:
        out += parser.data(direction, value, ts) if kind == "data" else parser.gap(direction, value, ts)
        last = ts
    if close:
        out += parser.close(last)
    return out


def without_ts(events: Sequence[SessionEvent]) -> List[Any]:
    return [dataclasses.replace(e, ts=0) for e in events]


def as_feed(items: Sequence[StreamItem]) -> Feed:
    return [(Direction(side), kind, value, ts) for side, kind, value, ts in items]


def handshakes(events: Sequence[SessionEvent]) -> List[TlsHandshake]:
    return [e for e in events if isinstance(e, TlsHandshake)]


def errors(events: Sequence[SessionEvent]) -> List[TlsError]:
    return [e for e in events if isinstance(e, TlsError)]


# =========================================================================== corpus


def _expected(rec: Dict[str, Any]) -> Dict[str, Any]:
    """The TlsHandshake fields that tshark's record determines."""
    version = None
    if rec["negotiated_version"] is not None:
        name = rec["negotiated_version_name"]
        version = TSHARK_VERSION_NAMES[name] if name is not None else rec["negotiated_version"]
    certs = rec["certificates"]
    return {
        "server_name": rec["sni"],
        "client_version": rec["client_version"],
        "client_supported_versions": tuple(rec["client_supported_versions"]),
        "alpn_offered": tuple(rec["alpn_offered"]),
        "alpn_selected": rec["alpn_selected"],
        "version": version,
        "cipher": None if rec["cipher_suite"] is None else cipher_name(int(rec["cipher_suite"], 16)),
        "server_version_legacy": rec["server_version"],
        "ja3": rec["ja3"],
        "ja3_string": rec["ja3_full"],
        "ja3s": rec["ja3s"],
        "ja3s_string": rec["ja3s_full"],
        "ja4": rec["ja4"],
        "hello_retry_request": rec["hello_retry_request"],
        "cert_subject_cn": rec["server_cert_subject_cn"],
        "cert_issuer_cn": rec["server_cert_issuer_cn"],
        "cert_san_dns": tuple(certs[0]["san_dns"]) if certs else (),
        "cert_chain_len": len(certs) if certs else None,
    }


@pytest.mark.corpus
def test_corpus_handshakes_match_tshark(corpus_dir: Path) -> None:
    mismatches: List[Tuple[Any, ...]] = []
    compared = 0
    for capture, truth in corpus_captures_with_tls(corpus_dir):
        by_flow: Dict[int, List[Dict[str, Any]]] = {}
        for rec in truth["tls"]:
            if rec["transport"] != "quic":
                by_flow.setdefault(rec["flow"], []).append(rec)
        for flow, recs in by_flow.items():
            orig, resp = flow_endpoints(truth, flow)
            events = run(as_feed(tcp_stream_items(capture, orig, resp)))
            got = handshakes(events)
            if errors(events) or len(got) != len(recs):
                mismatches.append((capture.name, flow, "records", len(got), len(recs), errors(events)))
                continue
            for event, rec in zip(got, recs):
                compared += 1
                diff = {k: (getattr(event, k), v) for k, v in _expected(rec).items() if getattr(event, k) != v}
                if diff:
                    mismatches.append((capture.name, flow, "fields", diff))
                client = (rec["client"]["ip"], rec["client"]["port"])
                assert event.client_is_orig == (client == orig)
    assert mismatches == []
    assert compared >= 85


@pytest.mark.corpus
def test_every_corpus_tcp_flow_is_detected_and_parsed_cleanly(corpus_dir: Path) -> None:
    """TLS flows (and only they) are detected; each gives exactly tshark's records and no error."""
    tls_factory = factory()
    problems: List[Tuple[Any, ...]] = []
    detected = 0
    for truth_path in sorted(corpus_dir.glob("*.truth.json")):
        stem = truth_path.name[: -len(".truth.json")]
        capture = next(p for p in (corpus_dir / f"{stem}.pcap", corpus_dir / f"{stem}.pcapng") if p.exists())
        truth = json.loads(truth_path.read_text())
        for flow in truth["flows"]:
            if flow["proto"] != "tcp" or flow["payload_bytes_i2r"] + flow["payload_bytes_r2i"] == 0:
                continue
            orig, resp = flow_endpoints(truth, flow["id"])
            feed = as_feed(tcp_stream_items(capture, orig, resp))
            first = next((item for item in feed if item[1] == "data"), None)
            expected = sum(1 for r in truth["tls"] if r["flow"] == flow["id"] and r["transport"] == "tcp")
            if first is None:
                continue
            detection = tls_factory.detect(first[0], first[2], FLOW)
            if detection is not Detection.MATCH:
                if expected:
                    problems.append((stem, flow["id"], detection))
                continue
            detected += 1
            events = run(feed, tls_factory.create(FLOW))
            if errors(events) or len(handshakes(events)) != expected:
                problems.append((stem, flow["id"], len(handshakes(events)), expected, errors(events)))
    assert problems == []
    assert detected >= 80


def _coalesced(feed: Feed) -> Feed:
    """Consecutive data of one direction joined: each direction's bytes 'whole' between turns."""
    out: Feed = []
    for item in feed:
        if out and item[1] == "data" and out[-1][1] == "data" and out[-1][0] == item[0]:
            out[-1] = (item[0], "data", out[-1][2] + item[2], item[3])
        else:
            out.append(item)
    return out


def _resplit(feed: Feed, sizes: Sequence[int]) -> Feed:
    """Every data item cut into pieces whose lengths cycle through ``sizes``."""
    out: Feed = []
    k = 0
    for direction, kind, value, ts in feed:
        if kind != "data":
            out.append((direction, kind, value, ts))
            continue
        pos = 0
        while pos < len(value):
            size = sizes[k % len(sizes)]
            k += 1
            out.append((direction, kind, value[pos : pos + size], ts))
            pos += size
    return out


def _corpus_feeds(corpus: Path) -> List[Tuple[str, Feed]]:
    feeds = []
    for capture, truth in corpus_captures_with_tls(corpus):
        for flow in sorted({r["flow"] for r in truth["tls"] if r["transport"] != "quic"}):
            orig, resp = flow_endpoints(truth, flow)
            feeds.append((f"{capture.name}#{flow}", as_feed(tcp_stream_items(capture, orig, resp))))
    return feeds


@pytest.mark.corpus
def test_corpus_whole_and_byte_at_a_time_give_the_same_records(corpus_dir: Path) -> None:
    for name, feed in _corpus_feeds(corpus_dir):
        baseline = without_ts(run(feed))
        assert baseline, name
        assert without_ts(run(_coalesced(feed))) == baseline, name
        assert without_ts(run(_resplit(feed, [1]))) == baseline, name


_SPLIT_SAMPLES = (
    "zeek_tls_tls1.2.pcap#0",
    "ndpi_tumblr.pcap#9",
    "arkime_tls-split-client-hello.pcap#0",
    "ndpi_http_ipv6.pcap#5",
)


_feed_cache: Dict[Path, List[Tuple[str, Feed]]] = {}


def _sample_feeds(corpus: Path) -> List[Tuple[str, Feed]]:
    if corpus not in _feed_cache:
        _feed_cache[corpus] = [(n, f) for n, f in _corpus_feeds(corpus) if n in _SPLIT_SAMPLES]
    return _feed_cache[corpus]


@pytest.mark.corpus
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=20))
def test_corpus_records_survive_any_split_points(corpus_dir: Path, sizes: List[int]) -> None:
    feeds = dict(_sample_feeds(corpus_dir))
    for name in _SPLIT_SAMPLES:
        baseline = without_ts(run(feeds[name]))
        assert without_ts(run(_resplit(feeds[name], sizes))) == baseline, name


# =========================================================================== hand-made flights


def _certificate(subject: str, issuer: str, sans: Sequence[str]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org"), x509.NameAttribute(NameOID.COMMON_NAME, subject)]
            )
        )
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def _chain(*ders: bytes) -> bytes:
    entries = b"".join(u24(len(d)) + d for d in ders)
    return u24(len(entries)) + entries


CH_BODY = client_hello_body(
    ciphers=(0x0A0A, 0xC02F, 0x1301),
    extensions=[sni_ext("shop.example"), alpn_ext(b"h2", b"http/1.1"), versions_ext((0x0304, 0x0303))],
)
CH = record(22, handshake(1, CH_BODY), version=0x0301)
SH12 = handshake(2, server_hello_body(cipher=0xC02F, extensions=[alpn_ext(b"h2"), (0xFF01, b"\x00")]))
SH13 = handshake(2, server_hello_body(cipher=0x1301, extensions=[(0x002B, b"\x03\x04"), (0x0033, b"\x00\x1d\x00\x00")]))
HRR = handshake(
    2, server_hello_body(cipher=0x1301, retry=True, extensions=[(0x002B, b"\x03\x04"), (0x0033, b"\x00\x1d")])
)
SHD = handshake(14, b"")
CCS = record(20, b"\x01")
APPDATA = record(23, b"\x42" * 64)


def test_tls12_handshake_with_certificate_chain() -> None:
    leaf = _certificate("shop.example", "Example Issuing CA", ["shop.example", "www.shop.example"])
    ca = _certificate("Example Issuing CA", "Example Root", [])
    events = run(
        [
            (ORIG, "data", CH, 10),
            (RESP, "data", record(22, SH12 + handshake(11, _chain(leaf, ca)))[:700], 20),
            (RESP, "data", record(22, SH12 + handshake(11, _chain(leaf, ca)))[700:] + record(22, SHD), 21),
            (ORIG, "data", CCS + APPDATA, 30),
        ],
        close=False,
    )
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, TlsHandshake)
    hello = parse_client_hello(CH_BODY)
    assert hello is not None
    assert event == TlsHandshake(
        ts=21,
        version="TLSv1.2",
        client_version="0x0303",
        client_supported_versions=("0x0304", "0x0303"),
        server_name="shop.example",
        alpn_offered=("h2", "http/1.1"),
        alpn_selected="h2",
        cipher="TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ja3=ja3(hello)[1],
        ja3_string="771,49199-4865,0-16-43,,",
        ja3s=hashlib.md5(b"771,49199,16-65281").hexdigest(),
        ja3s_string="771,49199,16-65281",
        ja4=ja4(hello),
        cert_subject_cn="shop.example",
        cert_issuer_cn="Example Issuing CA",
        cert_san_dns=("shop.example", "www.shop.example"),
        hello_retry_request=False,
        cert_chain_len=2,
        transport="tcp",
        server_version_legacy="0x0303",
        client_is_orig=True,
    )
    for value in dataclasses.asdict(event).values():
        assert value is None or isinstance(value, (str, int, bool)) or all(isinstance(v, str) for v in value)


def test_hello_retry_request_gives_two_records() -> None:
    ch2_body = client_hello_body(
        ciphers=(0x1301,), extensions=[sni_ext("shop.example"), versions_ext((0x0304,)), (0x0033, b"\x00\x00")]
    )
    events = run(
        [
            (ORIG, "data", CH, 1),
            (RESP, "data", record(22, HRR) + CCS, 2),
            (ORIG, "data", CCS + record(22, handshake(1, ch2_body)), 3),
            (RESP, "data", record(22, SH13) + CCS + APPDATA, 4),
        ],
        close=False,
    )
    first, second = handshakes(events)
    assert (first.ts, first.hello_retry_request, first.version, first.ja3s_string) == (
        2,
        True,
        "TLSv1.3",
        "771,4865,43-51",
    )
    assert first.alpn_offered == ("h2", "http/1.1")
    assert (second.ts, second.hello_retry_request, second.version, second.alpn_offered) == (4, False, "TLSv1.3", ())
    assert second.cert_chain_len is None and second.cert_subject_cn is None
    assert errors(events) == []


def test_roles_come_from_the_hellos_not_the_orientation() -> None:
    events = run([(RESP, "data", CH, 1), (ORIG, "data", record(22, SH13), 2)], close=False)
    (event,) = handshakes(events)
    assert event.client_is_orig is False and event.server_name == "shop.example" and event.version == "TLSv1.3"


def test_lone_client_hello_is_written_at_close() -> None:
    parser = TlsParser()
    assert parser.data(ORIG, CH, 5) == []
    (event,) = handshakes(parser.close(9))
    assert (event.ts, event.server_name, event.version, event.cipher, event.ja3s) == (
        5,
        "shop.example",
        None,
        None,
        None,
    )
    assert parser.close(10) == ()


def test_server_hello_without_client_hello() -> None:
    (event,) = handshakes(run([(RESP, "data", record(22, SH12 + SHD), 3)], close=False))
    assert (event.ja3, event.ja4, event.client_version, event.server_name) == (None, None, None, None)
    assert (event.version, event.alpn_selected, event.cert_chain_len, event.client_is_orig) == (
        "TLSv1.2",
        "h2",
        None,
        True,
    )


def test_tls12_record_written_at_change_cipher_spec_when_no_certificate() -> None:
    # An abbreviated (resumed) handshake: ServerHello, ChangeCipherSpec, encrypted Finished.
    events = run(
        [(ORIG, "data", CH, 1), (RESP, "data", record(22, SH12) + CCS + record(22, b"\x8e" * 40), 2)], close=False
    )
    (event,) = handshakes(events)
    assert event.ts == 2 and event.cert_chain_len is None and errors(events) == []


def test_gap_in_server_direction_writes_the_waiting_record() -> None:
    parser = TlsParser()
    assert parser.data(ORIG, CH, 1) == []
    assert parser.data(RESP, record(22, SH12), 2) == []
    (event,) = handshakes(parser.gap(RESP, 1000, 3))
    assert event.version == "TLSv1.2" and event.cert_chain_len is None and event.ts == 3
    assert parser.data(RESP, record(22, SHD), 4) == ()


def test_gap_in_client_direction_still_pairs_later_server_hello() -> None:
    parser = TlsParser()
    parser.data(ORIG, CH, 1)
    assert parser.gap(ORIG, 50, 2) == []
    assert parser.data(ORIG, b"\x17\x03", 3) == ()
    (event,) = handshakes(parser.data(RESP, record(22, SH13), 4))
    assert event.server_name == "shop.example" and event.version == "TLSv1.3"


def test_end_of_both_directions_writes_pending_records() -> None:
    parser = TlsParser()
    parser.data(ORIG, CH, 1)
    assert parser.end(ORIG, 2) == []
    (event,) = handshakes(parser.end(RESP, 3))
    assert event.server_name == "shop.example" and event.version is None


def test_garbage_is_a_fatal_error_after_pending_records() -> None:
    parser = TlsParser()
    parser.data(ORIG, CH, 1)
    events = parser.data(RESP, b"HTTP/1.1 400 Bad Request\r\n\r\n", 2)
    assert [type(e) for e in events] == [TlsHandshake, TlsError]
    error = events[1]
    assert isinstance(error, TlsError)
    assert (error.reason, error.direction, error.fatal, error.ts) == ("record_malformed", "resp", True, 2)
    assert parser.data(RESP, record(22, SH12), 3) == () and parser.close(4) == ()


@pytest.mark.parametrize(
    ("feed", "reason"),
    [
        ([(ORIG, CH), (ORIG, record(22, SH12))], "hello_from_wrong_side"),
        ([(ORIG, CH), (RESP, CH)], "hello_from_wrong_side"),
        ([(ORIG, record(22, handshake(1, CH_BODY[:40])))], "client_hello_malformed"),
        ([(RESP, record(22, handshake(2, b"\x03\x03")))], "server_hello_malformed"),
    ],
)
def test_protocol_violations(feed: List[Tuple[Direction, bytes]], reason: str) -> None:
    events = run([(d, "data", data, i) for i, (d, data) in enumerate(feed)])
    (error,) = errors(events)
    assert error.reason == reason and error.fatal


def test_pending_client_hellos_are_bounded() -> None:
    parser = TlsParser(TlsConfig(max_pending_hellos=2))
    assert parser.data(ORIG, CH + CH, 1) == []
    (oldest,) = handshakes(parser.data(ORIG, CH, 2))
    assert oldest.ts == 1 and oldest.version is None
    assert len(handshakes(parser.close(3))) == 2


def test_oversized_certificate_is_skipped_not_fatal() -> None:
    parser = TlsParser(TlsConfig(limits=HandshakeLimits(max_message=1000)))
    big = handshake(11, _chain(b"\x30" * 3000))
    parser.data(ORIG, CH, 1)
    events = parser.data(RESP, record(22, SH12 + big[:2000]) + record(22, big[2000:] + SHD), 2)
    assert [type(e) for e in events] == [TlsHandshake, TlsError]
    record_event, error = events
    assert isinstance(record_event, TlsHandshake) and isinstance(error, TlsError)
    assert record_event.cert_chain_len is None and record_event.version == "TLSv1.2"
    assert error.reason == "handshake_message_too_large" and not error.fatal


def test_undecodable_certificate_and_missing_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    leaf = _certificate("a.example", "CA", ["a.example"])
    flight = [(ORIG, "data", CH, 1), (RESP, "data", record(22, SH12 + handshake(11, _chain(b"\x30\x03junk", leaf))), 2)]
    (broken,) = handshakes(run(flight))
    assert (broken.cert_chain_len, broken.cert_subject_cn, broken.cert_san_dns) == (2, None, ())
    monkeypatch.setattr(tls_module, "HAVE_CRYPTOGRAPHY", False)
    flight[1] = (RESP, "data", record(22, SH12 + handshake(11, _chain(leaf))), 2)
    (plain,) = handshakes(run(flight))
    assert (plain.cert_chain_len, plain.cert_subject_cn, plain.cert_issuer_cn, plain.ja3s_string) == (
        1,
        None,
        None,
        "771,49199,16-65281",
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([ORIG, RESP]),
            st.one_of(
                st.binary(max_size=200),
                st.binary(max_size=200).map(lambda b: record(22, b)),
                st.binary(max_size=200).map(lambda b: record(22, handshake(1, CH_BODY[:20] + b))),
                st.sampled_from([CH, record(22, SH12), record(22, SH13), record(22, HRR), CCS, record(22, SHD)]),
            ),
            st.sampled_from(["data", "data", "data", "gap", "end"]),
        ),
        max_size=8,
    )
)
def test_arbitrary_input_never_raises(steps: List[Tuple[Direction, bytes, str]]) -> None:
    parser = TlsParser()
    out: List[SessionEvent] = []
    for i, (direction, data, kind) in enumerate(steps):
        if kind == "data":
            out += parser.data(direction, data, i)
        elif kind == "gap":
            out += parser.gap(direction, len(data) + 1, i)
        else:
            out += parser.end(direction, i)
    out += parser.close(len(steps))
    assert all(isinstance(e, (TlsHandshake, TlsError)) for e in out)


# =========================================================================== detection and factory


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", Detection.NEED_MORE),
        (b"\x16", Detection.NEED_MORE),
        (b"\x16\x03\x01\x02", Detection.NEED_MORE),
        (b"\x16\x03\x01\x02\x00", Detection.NEED_MORE),
        (CH[:6], Detection.MATCH),
        (CH, Detection.MATCH),
        (record(22, SH12), Detection.MATCH),
        (record(22, SH12, version=0x0300), Detection.MATCH),
        (b"GET / HTTP/1.1\r\n", Detection.NO_MATCH),
        (b"\x16\x02", Detection.NO_MATCH),
        (b"\x16\x03\x05", Detection.NO_MATCH),
        (b"\x16\x03\x01\x00\x00\x01", Detection.NO_MATCH),
        (record(22, SHD), Detection.NO_MATCH),
        (record(23, b"x" * 20), Detection.NO_MATCH),
        (record(22, handshake(1, b"\x7f\x7f" + bytes(40))), Detection.NO_MATCH),
        (b"\x80\x2e\x01\x03\x01", Detection.NO_MATCH),  # SSL 2.0-format ClientHello
    ],
)
def test_detection(data: bytes, expected: Detection) -> None:
    assert factory().detect(ORIG, data, FLOW) is expected
    assert factory().detect(RESP, data, FLOW) is expected


def test_factory_and_entry_point() -> None:
    made: SessionParserFactory = factory()
    parser: SessionParser = made.create(FLOW)
    assert isinstance(parser, TlsParser) and isinstance(made, TlsParserFactory)
    assert made.name == "tls"
    assert {443, 8443, 993, 995, 465, 636, 853, 5061} <= made.ports
    (entry,) = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "tls"]
    assert entry.value == "flowscope.parsers.tls:factory"
    assert entry.load()().name == "tls"
