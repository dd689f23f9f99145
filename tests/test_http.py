"""Tests for :mod:`flowscope.parsers.http`.

Corpus captures are decoded here with dpkt (test-only; Ethernet, 802.1Q/QinQ,
MPLS, PPPoE, Linux SLL, BSD loopback, VXLAN on UDP 4789, Teredo on UDP 3544
and IP-in-IP; other encapsulations are skipped, and no corpus capture with
HTTP truth needs them), each TCP direction is put in sequence order without
duplicates, and both directions are fed in packet order, as the tracker does.
The records are compared with the tshark ground truth.  Hand-made
conversations cover what the corpus does not.
"""

from __future__ import annotations

import gc
import socket
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, DefaultDict, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope.parsers.http import (
    HttpConfig,
    HttpError,
    HttpEvent,
    HttpParserFactory,
    HttpSessionParser,
    HttpTransaction,
    factory,
)
from flowscope_core import (
    Detection,
    Direction,
    Endpoint,
    FlowInfo,
    MissingExtraError,
    Orientation,
    SessionParser,
    SessionParserFactory,
)

from conftest import corpus_pcaps, load_truth

ORIG, RESP = Direction.ORIG, Direction.RESP
FLOW = FlowInfo(
    flow_id="f1",
    proto=6,
    orig=Endpoint(addr="192.0.2.1", port=40000),
    resp=Endpoint(addr="192.0.2.2", port=80),
    orientation=Orientation.SYN,
    community_id="1:test",
    vlan=(),
    tunnel=(),
)

# --------------------------------------------------------------------------- corpus decoding (test-only)

Addr = Tuple[str, int]


def _frames(path: Path) -> Iterator[Tuple[int, bytes, int]]:
    """(ts in ns, frame, link type) for every frame; pcap or pcapng by magic number."""
    with path.open("rb") as f:
        magic = f.read(4)
        f.seek(0)
        reader: Any = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        link = reader.datalink()
        for ts, buf in reader:
            yield int(round(float(ts) * 1e9)), bytes(buf), link


def _link_payload(buf: bytes, link: int) -> Any:
    if link == 1:
        return dpkt.ethernet.Ethernet(buf).data
    if link == 113:
        return dpkt.sll.SLL(buf).data
    if link in (0, 108):
        return dpkt.loopback.Loopback(buf).data
    return None


def _innermost_ip(pkt: Any) -> Any:
    """Strip PPPoE/PPP and IP-carried tunnels (VXLAN, Teredo, IP-in-IP) down to the innermost IP."""
    for _ in range(8):
        if isinstance(pkt, dpkt.pppoe.PPPoE):
            pkt = pkt.data
            continue
        if isinstance(pkt, dpkt.ppp.PPP):
            pkt = pkt.data
            continue
        if not isinstance(pkt, (dpkt.ip.IP, dpkt.ip6.IP6)):
            return None
        inner = pkt.data
        if isinstance(inner, (dpkt.ip.IP, dpkt.ip6.IP6)):
            pkt = inner
            continue
        if isinstance(inner, dpkt.udp.UDP) and 4789 in (inner.sport, inner.dport):
            pkt = dpkt.ethernet.Ethernet(bytes(inner.data)[8:]).data
            continue
        if isinstance(inner, dpkt.udp.UDP) and 3544 in (inner.sport, inner.dport):
            payload = bytes(inner.data)
            if payload[:2] == b"\x00\x01" and len(payload) >= 4:  # authentication indicator
                payload = payload[4 + payload[2] + payload[3] + 9 :]
            if payload[:2] == b"\x00\x00":  # origin indication
                payload = payload[8:]
            if not payload or payload[0] >> 4 != 6:
                return None
            pkt = dpkt.ip6.IP6(payload)
            continue
        return pkt
    return None


def _addr(ip: Any) -> Tuple[str, str]:
    family = socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6
    return socket.inet_ntop(family, ip.src), socket.inet_ntop(family, ip.dst)


class _Stream:
    """One TCP direction put in order: duplicates dropped, early segments kept until their turn."""

    def __init__(self) -> None:
        self.base: Optional[int] = None
        self.delivered = 0
        self.early: Dict[int, bytes] = {}

    def segment(self, seq: int, payload: bytes, syn: bool) -> List[bytes]:
        if syn:
            self.base = (seq + 1) & 0xFFFFFFFF
        if not payload:
            return []
        if self.base is None:
            self.base = seq
        off = ((seq - self.base + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if off > self.delivered:
            if len(payload) > len(self.early.get(off, b"")):
                self.early[off] = payload
            return []
        out: List[bytes] = []
        if off + len(payload) > self.delivered:
            out.append(payload[self.delivered - off :])
            self.delivered = off + len(payload)
        while True:
            ready = [o for o in self.early if o <= self.delivered]
            if not ready:
                break
            for o in sorted(ready):
                data = self.early.pop(o)
                if o + len(data) > self.delivered:
                    out.append(data[self.delivered - o :])
                    self.delivered = o + len(data)
        return out

    def leftovers(self) -> List[Tuple[int, bytes]]:
        out = []
        for o in sorted(self.early):
            data = self.early[o]
            if o + len(data) <= self.delivered:
                continue
            gap = max(0, o - self.delivered)
            out.append((gap, data[max(0, self.delivered - o) :]))
            self.delivered = o + len(data)
        return out


@dataclass
class _Flow:
    """One TCP conversation as the tracker would drive it: detect, then feed."""

    orig: Addr
    streams: Tuple[_Stream, _Stream] = field(default_factory=lambda: (_Stream(), _Stream()))
    first: List[bytes] = field(default_factory=lambda: [b"", b""])
    early: List[Tuple[Direction, bytes, int]] = field(default_factory=list)
    parser: Optional[SessionParser] = None
    dead: bool = False
    events: List[Any] = field(default_factory=list)


def _run_capture(path: Path, fac: HttpParserFactory) -> Dict[FrozenSet[Addr], List[Any]]:
    flows: Dict[FrozenSet[Addr], _Flow] = {}
    for ts, buf, link in _frames(path):
        try:
            ip = _innermost_ip(_link_payload(buf, link))
        except (dpkt.UnpackError, IndexError, ValueError):
            continue
        if ip is None or not isinstance(ip.data, dpkt.tcp.TCP):
            continue
        tcp = ip.data
        src_ip, dst_ip = _addr(ip)
        src, dst = (src_ip, tcp.sport), (dst_ip, tcp.dport)
        key = frozenset({src, dst})
        flow = flows.get(key)
        if flow is None:
            flow = flows[key] = _Flow(orig=src)
        d = ORIG if src == flow.orig else RESP
        syn = bool(tcp.flags & dpkt.tcp.TH_SYN)
        for chunk in flow.streams[d].segment(tcp.seq, bytes(tcp.data), syn):
            _deliver(flow, fac, d, chunk, ts)
    for flow in flows.values():
        for d in (ORIG, RESP):
            for gap, data in flow.streams[d].leftovers():
                if flow.parser is not None and gap:
                    flow.events.extend(flow.parser.gap(d, gap, 0))
                _deliver(flow, fac, d, data, 0)
        if flow.parser is not None:
            for d in (ORIG, RESP):
                flow.events.extend(flow.parser.end(d, 0))
            flow.events.extend(flow.parser.close(0))
    return {k: f.events for k, f in flows.items() if f.events}


def _deliver(flow: _Flow, fac: HttpParserFactory, d: Direction, chunk: bytes, ts: int) -> None:
    if flow.dead:
        return
    if flow.parser is not None:
        flow.events.extend(flow.parser.data(d, chunk, ts))
        return
    flow.early.append((d, chunk, ts))
    flow.first[d] += chunk
    verdict = fac.detect(d, flow.first[d], FLOW)
    if verdict is Detection.NO_MATCH:
        flow.dead = True
    elif verdict is Detection.MATCH:
        flow.parser = fac.create(FLOW)
        for dd, cc, tt in flow.early:
            flow.events.extend(flow.parser.data(dd, cc, tt))


HTTP_CAPTURES = [p for p in corpus_pcaps() if load_truth(p).get("http")]


@pytest.mark.corpus
@pytest.mark.parametrize("pcap", HTTP_CAPTURES, ids=[p.name for p in HTTP_CAPTURES])
def test_corpus_matches_tshark(pcap: Path, corpus_dir: Path) -> None:
    truth = load_truth(pcap)
    ours = _run_capture(pcap, factory())
    txns: DefaultDict[FrozenSet[Addr], List[HttpTransaction]] = defaultdict(list)
    for key, events in ours.items():
        errors = [e for e in events if isinstance(e, HttpError)]
        assert not errors, errors
        txns[key] = [e for e in events if isinstance(e, HttpTransaction)]
    wanted: DefaultDict[FrozenSet[Addr], int] = defaultdict(int)
    for t in truth["http"]:
        key = frozenset({(t["client"]["ip"], t["client"]["port"]), (t["server"]["ip"], t["server"]["port"])})
        wanted[key] += 1
        cands = [o for o in txns[key] if o.method == t["method"] and o.uri == t["uri"]]
        assert cands, f"missing {t['method']} {t['uri']}"
        o = cands[0]
        txns[key].remove(o)
        assert (o.host, o.user_agent, o.status_code, o.response_content_type) == (
            t["host"],
            t["user_agent"],
            t["status"],
            t["content_type"],
        )
        assert o.version == t["version"]
        assert o.request_content_type == t["request_content_type"]
        assert o.response_transfer_encoding == t["transfer_encoding"]
        assert o.content_encoding == t["content_encoding"]
    leftover = {k: v for k, v in txns.items() if v}
    assert not leftover, f"transactions tshark does not have: {leftover}"


@pytest.mark.corpus
def test_corpus_body_lengths(corpus_dir: Path) -> None:
    """Body lengths against tshark's Content-Length, where the body was reassembled whole."""
    checked = 0
    for pcap in HTTP_CAPTURES:
        truth = load_truth(pcap)
        ours = _run_capture(pcap, factory())
        for t in truth["http"]:
            if t["content_length"] is None or not t["response_body_reassembled"] or t["status"] in (204, 304):
                continue
            key = frozenset({(t["client"]["ip"], t["client"]["port"]), (t["server"]["ip"], t["server"]["port"])})
            o = next(e for e in ours[key] if isinstance(e, HttpTransaction) and e.uri == t["uri"])
            assert o.response_body_len == t["content_length"]
            assert o.response_complete
            checked += 1
    assert checked >= 10


# --------------------------------------------------------------------------- hand-made conversations

Conv = Sequence[Tuple[Direction, bytes]]


def feed(conv: Conv, splits: Optional[Sequence[Sequence[int]]] = None, end: bool = True) -> List[HttpEvent]:
    """Feed each (direction, bytes) at ts = 1000 * its index, cut at ``splits[i]`` if given."""
    parser = factory().create(FLOW)
    events: List[HttpEvent] = []
    for i, (d, data) in enumerate(conv):
        ts = 1000 * (i + 1)
        cuts = sorted(set(c for c in (splits[i] if splits else ()) if 0 < c < len(data)))
        prev = 0
        for c in [*cuts, len(data)]:
            events.extend(parser.data(d, data[prev:c], ts))
            prev = c
    if end:
        for d in (ORIG, RESP):
            events.extend(parser.end(d, 99_000))
    events.extend(parser.close(100_000))
    return events


def feed_bytewise(conv: Conv) -> List[HttpEvent]:
    return feed(conv, [list(range(1, len(data))) for _, data in conv])


def only_txns(events: Sequence[HttpEvent]) -> List[HttpTransaction]:
    assert all(isinstance(e, (HttpTransaction, HttpError)) for e in events)
    return [e for e in events if isinstance(e, HttpTransaction)]


def req(method: str, uri: str, *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    lines = [f"{method} {uri} HTTP/{version}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def resp(status: str, *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    lines = [f"HTTP/{version} {status}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts: bytes, trailers: str = "") -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return out + b"0\r\n" + trailers.encode() + b"\r\n"


PIPELINED: Conv = [
    (ORIG, req("GET", "/a", "Host: example.com", "User-Agent: ua/1")
     + req("GET", "/b", "Host: example.com") + req("GET", "/c", "Host: example.com")),
    (RESP, resp("200 OK", "Content-Type: text/plain", "Content-Length: 3", body=b"abc")
     + resp("404 Not Found", "Content-Type: text/html", "Content-Length: 0")
     + resp("200 OK", "Content-Type: image/png", "Transfer-Encoding: chunked", body=chunked(b"12345", b"67"))),
]
CHUNKED_TRAILERS: Conv = [
    (ORIG, req("POST", "/up", "Host: h", "Content-Type: application/json", "Transfer-Encoding: chunked",
               body=chunked(b'{"a":', b"1}", trailers="X-Sum: 9\r\n"))),
    (RESP, resp("201 Created", "Transfer-Encoding: chunked", "Content-Type: text/plain",
                body=chunked(b"made", b"!", trailers="Content-Type: evil/trailer\r\nX-T: 1\r\n"))),
]
CONTINUE: Conv = [
    (ORIG, req("POST", "/form", "Host: h", "Expect: 100-continue", "Content-Length: 11",
               "Content-Type: application/x-www-form-urlencoded")),
    (RESP, resp("100 Continue")),
    (ORIG, b"hello=world"),
    (RESP, resp("200 OK", "Content-Type: text/html", "Content-Length: 2", body=b"ok")),
]
HEAD_THEN_GET: Conv = [
    (ORIG, req("HEAD", "/big", "Host: h") + req("GET", "/small", "Host: h")),
    (RESP, resp("200 OK", "Content-Type: video/mp4", "Content-Length: 1000000")
     + resp("200 OK", "Content-Type: text/plain", "Content-Length: 5", body=b"small")),
]
HEAD_CHUNKED: Conv = [
    (ORIG, req("GET", "/x", "Host: h") + req("HEAD", "/y", "Host: h") + req("GET", "/z", "Host: h")),
    (RESP, resp("200 OK", "Content-Type: a/x", "Transfer-Encoding: chunked", body=b"5;ext=1\r\nli\r\nn\r\n" + chunked(b"e\nline\n"))
     + resp("200 OK", "Content-Type: a/y", "Transfer-Encoding: chunked")
     + resp("200 OK", "Content-Type: a/z", "Content-Length: 4", body=b"zzzz")),
]
NO_BODY_STATUSES: Conv = [
    (ORIG, req("GET", "/n", "Host: h") + req("GET", "/m", "Host: h") + req("GET", "/k", "Host: h")),
    (RESP, resp("204 No Content", "Content-Length: 7")
     + resp("304 Not Modified", "Content-Type: image/png", "Content-Length: 9")
     + resp("200 OK", "Content-Length: 2", "Content-Type: text/plain", body=b"hi")),
]
UNTIL_CLOSE: Conv = [
    (ORIG, req("GET", "/old", "Host: h", version="1.0")),
    (RESP, resp("200 OK", "Content-Type: text/plain", version="1.0", body=b"part one,")),
    (RESP, b" part two"),
]
CONNECT_TUNNEL: Conv = [
    (ORIG, req("CONNECT", "example.com:443", "Host: example.com:443")),
    (RESP, resp("200 Connection established")),
    (ORIG, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    (RESP, b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56"),
]
CONNECT_REFUSED: Conv = [
    (ORIG, req("CONNECT", "example.com:443", "Host: example.com:443")),
    (RESP, resp("407 Proxy Authentication Required", "Content-Type: text/html", "Content-Length: 4", body=b"auth")),
    (ORIG, req("CONNECT", "example.com:443", "Host: example.com:443", "Proxy-Authorization: Basic eDp5")),
    (RESP, resp("200 OK")),
    (ORIG, b"\x16\x03\x01\x00\x05hello"),
]
WEBSOCKET: Conv = [
    (ORIG, req("GET", "/chat", "Host: h", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13")),
    (RESP, resp("101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade") + b"\x81\x05hello"),
    (ORIG, b"\x81\x85\x00\x00\x00\x00hello"),
]
ORPHAN_RESPONSE: Conv = [
    (RESP, resp("200 OK", "Content-Type: text/css", "Content-Length: 1", body=b"x")),
    (ORIG, req("GET", "/next", "Host: h")),
    (RESP, resp("200 OK", "Content-Type: text/html", "Content-Length: 0")),
]
BARE_LF: Conv = [
    (ORIG, b"GET /bar/ HTTP/1.1\nHost: h\n\nGET /foo/ HTTP/1.1\nHost: h\n\n"),
    (RESP, b"HTTP/1.0 200 OK\nContent-Type: text/plain\nConnection: keep-alive\nContent-Length: 4\n\nbody"
     b"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nuntil close"),
]
MALFORMED_HEADER: Conv = [
    (ORIG, req("GET", "/y", "Host: h")),
    (RESP, b"HTTP/1.1 302 Found\r\nContent-Type: text/html\r\nContent-Length: 1, 2\r\n\r\n"),
]
GARBAGE_AFTER_REQUEST: Conv = [
    (ORIG, req("GET", "/ok", "Host: h")),
    (ORIG, b"\x00\x01\x02 not http\r\n\r\n"),
    (RESP, resp("200 OK", "Content-Length: 0")),
]
EXAMPLES: Dict[str, Conv] = {
    "orphan_response": ORPHAN_RESPONSE,
    "bare_lf": BARE_LF,
    "malformed_header": MALFORMED_HEADER,
    "garbage_after_request": GARBAGE_AFTER_REQUEST,
    "pipelined": PIPELINED,
    "chunked_trailers": CHUNKED_TRAILERS,
    "continue": CONTINUE,
    "head_then_get": HEAD_THEN_GET,
    "head_chunked": HEAD_CHUNKED,
    "no_body_statuses": NO_BODY_STATUSES,
    "until_close": UNTIL_CLOSE,
    "connect_tunnel": CONNECT_TUNNEL,
    "connect_refused": CONNECT_REFUSED,
    "websocket": WEBSOCKET,
}


def test_pipelining_pairs_in_order() -> None:
    a, b, c = only_txns(feed(PIPELINED))
    assert (a.method, a.uri, a.host, a.user_agent, a.status_code, a.response_content_type) == (
        "GET", "/a", "example.com", "ua/1", 200, "text/plain")
    assert (b.uri, b.status_code, b.status_msg, b.response_content_type, b.response_body_len) == (
        "/b", 404, "Not Found", "text/html", 0)
    assert (c.uri, c.status_code, c.response_content_type, c.response_body_len) == ("/c", 200, "image/png", 7)
    assert c.response_transfer_encoding == "chunked"
    assert [t.trans_depth for t in (a, b, c)] == [1, 2, 3]
    assert a.ts == b.ts == c.ts == 1000  # all three requests began in the first segment
    assert all(t.request_complete and t.response_complete for t in (a, b, c))


def test_chunked_bodies_with_trailers() -> None:
    (t,) = only_txns(feed(CHUNKED_TRAILERS))
    assert (t.method, t.request_content_type, t.request_transfer_encoding, t.request_body_len) == (
        "POST", "application/json", "chunked", 7)
    # a trailer field never overrides a header
    assert (t.status_code, t.response_content_type, t.response_body_len) == (201, "text/plain", 5)


def test_100_continue_is_interim() -> None:
    (t,) = only_txns(feed(CONTINUE))
    assert (t.status_code, t.info_codes, t.request_body_len, t.response_body_len) == (200, (100,), 11, 2)
    assert t.ts == 1000


def test_only_interim_response_leaves_status_null() -> None:
    (t,) = only_txns(feed(CONTINUE[:2]))
    assert t.status_code is None and t.info_codes == (100,) and not t.request_complete


def test_head_response_has_no_body() -> None:
    head, get = only_txns(feed(HEAD_THEN_GET))
    assert (head.method, head.status_code, head.response_content_type, head.response_body_len) == (
        "HEAD", 200, "video/mp4", 0)
    assert (get.method, get.uri, get.status_code, get.response_content_type, get.response_body_len) == (
        "GET", "/small", 200, "text/plain", 5)


def test_head_between_chunked_responses() -> None:
    x, y, z = only_txns(feed(HEAD_CHUNKED))
    assert [(t.uri, t.response_content_type, t.response_body_len) for t in (x, y, z)] == [
        ("/x", "a/x", 12), ("/y", "a/y", 0), ("/z", "a/z", 4)]


def test_head_response_arriving_in_pieces() -> None:
    conv: Conv = [(ORIG, req("HEAD", "/", "Host: h")), (RESP, resp("200 OK", "Content-Length: 50")),
                  (ORIG, req("GET", "/2", "Host: h")), (RESP, resp("200 OK", "Content-Length: 1", body=b"x"))]
    one, two = only_txns(feed(conv))
    assert (one.method, one.response_body_len, two.uri, two.status_code, two.response_body_len) == (
        "HEAD", 0, "/2", 200, 1)


def test_204_and_304_have_no_body() -> None:
    n, m, k = only_txns(feed(NO_BODY_STATUSES))
    assert [(t.uri, t.status_code, t.response_body_len) for t in (n, m, k)] == [
        ("/n", 204, 0), ("/m", 304, 0), ("/k", 200, 2)]
    assert m.response_content_type == "image/png" and k.response_content_type == "text/plain"


def test_response_framed_by_close() -> None:
    (t,) = only_txns(feed(UNTIL_CLOSE))
    assert (t.version, t.response_version, t.status_code, t.response_body_len, t.response_complete) == (
        "HTTP/1.0", "HTTP/1.0", 200, 18, True)


def test_response_framed_by_close_cut_by_gap() -> None:
    parser = factory().create(FLOW)
    events = [*parser.data(ORIG, UNTIL_CLOSE[0][1], 1), *parser.data(RESP, UNTIL_CLOSE[1][1], 2),
              *parser.gap(RESP, 100, 3)]
    (t,) = only_txns(events)  # emitted at the gap, not at close
    assert (t.status_code, t.response_body_len, t.response_complete) == (200, 9, False)
    assert not only_txns(parser.close(4))


def test_request_without_response() -> None:
    (t,) = only_txns(feed([(ORIG, req("GET", "/lonely", "Host: h", "User-Agent: x"))], end=False))
    assert (t.method, t.uri, t.host, t.status_code, t.response_content_type, t.ts) == (
        "GET", "/lonely", "h", None, None, 1000)
    assert t.request_complete and not t.response_complete


def test_response_without_request() -> None:
    first, second = only_txns(feed(ORPHAN_RESPONSE))
    assert (first.method, first.uri, first.status_code, first.response_content_type, first.ts) == (
        None, None, 200, "text/css", 1000)
    assert (second.method, second.uri, second.status_code, second.trans_depth) == ("GET", "/next", 200, 2)


def test_roles_come_from_content_not_orientation() -> None:
    swapped = [(RESP if d is ORIG else ORIG, data) for d, data in PIPELINED]
    assert only_txns(feed(swapped)) == only_txns(feed(PIPELINED))


def test_connect_tunnel_ends_http() -> None:
    events = feed(CONNECT_TUNNEL)
    assert not [e for e in events if isinstance(e, HttpError)]
    (t,) = only_txns(events)
    assert (t.method, t.uri, t.status_code, t.response_body_len) == ("CONNECT", "example.com:443", 200, 0)


def test_connect_refused_then_retried() -> None:
    events = feed(CONNECT_REFUSED)
    assert not [e for e in events if isinstance(e, HttpError)]
    first, second = only_txns(events)
    assert (first.status_code, first.response_body_len, second.status_code, second.trans_depth) == (407, 4, 200, 2)


def test_websocket_upgrade_ends_http() -> None:
    events = feed(WEBSOCKET)
    assert not [e for e in events if isinstance(e, HttpError)]
    (t,) = only_txns(events)
    assert (t.uri, t.status_code, t.info_codes) == ("/chat", 101, ())


def test_refused_upgrade_keeps_parsing() -> None:
    conv: Conv = [
        (ORIG, req("GET", "/", "Host: h", "Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings", "HTTP2-Settings: A")),
        (RESP, resp("200 OK", "Content-Length: 2", body=b"ok")),
        (ORIG, req("GET", "/again", "Host: h")),
        (RESP, resp("200 OK", "Content-Length: 0")),
    ]
    one, two = only_txns(feed(conv))
    assert (one.status_code, two.uri, two.status_code) == (200, "/again", 200)


def test_garbage_first_is_an_error() -> None:
    events = feed([(ORIG, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(40)))])
    assert len(events) == 1 and isinstance(events[0], HttpError)
    assert (events[0].reason, events[0].direction, events[0].fatal, events[0].ts) == ("not_http", "orig", True, 1000)


def test_garbage_after_a_request_stops_the_flow() -> None:
    events = feed(GARBAGE_AFTER_REQUEST)
    err = [e for e in events if isinstance(e, HttpError)]
    assert [(e.reason, e.direction, e.fatal) for e in err] == [("request_malformed", "orig", True)]
    (t,) = only_txns(events)  # the good request is still reported, unanswered
    assert (t.uri, t.status_code) == ("/ok", None)


def test_bad_response_is_an_error() -> None:
    conv: Conv = [(ORIG, req("GET", "/", "Host: h")), (RESP, b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n")]
    events = feed(conv)
    assert [type(e) for e in events] == [HttpError, HttpTransaction]
    assert isinstance(events[0], HttpError)
    assert (events[0].reason, events[0].direction) == ("response_malformed", "resp")


def test_malformed_header_keeps_what_was_read() -> None:
    # httptools hands over a field when the next one starts, so the one just before the fault is lost
    conv: Conv = [(ORIG, b"GET /x HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nBad Header : y\r\n\r\n")]
    events = feed(conv)
    assert [(e.reason, e.direction) for e in events if isinstance(e, HttpError)] == [("request_malformed", "orig")]
    (t,) = only_txns(events)
    assert (t.method, t.uri, t.host, t.request_headers_truncated, t.request_complete) == ("GET", "/x", "h", True, False)
    (t,) = only_txns(feed(MALFORMED_HEADER))
    assert (t.uri, t.status_code, t.response_content_type, t.response_complete) == ("/y", 302, "text/html", False)


def test_server_direction_starting_mid_body_is_ignored() -> None:
    conv: Conv = [(ORIG, req("GET", "/a", "Host: h")), (RESP, b"</html>\r\n"), (ORIG, req("GET", "/b", "Host: h"))]
    events = feed(conv)
    errs = [e for e in events if isinstance(e, HttpError)]
    assert [(e.reason, e.direction, e.fatal) for e in errs] == [("unsynchronised", "resp", False)]
    assert [(t.uri, t.status_code) for t in only_txns(events)] == [("/a", None), ("/b", None)]


def test_client_gap_stops_requests_but_pairs_pending() -> None:
    parser = factory().create(FLOW)
    ev = [*parser.data(ORIG, req("POST", "/p", "Host: h", "Content-Length: 100", body=b"x" * 10), 1),
          *parser.gap(ORIG, 50, 2),
          *parser.data(ORIG, b"x" * 40 + req("GET", "/never-parsed", "Host: h"), 3),
          *parser.data(RESP, resp("413 Too Large", "Content-Length: 0"), 4),
          *parser.close(5)]
    (t,) = only_txns(ev)
    assert (t.uri, t.status_code, t.request_body_len, t.request_complete) == ("/p", 413, 10, False)


def test_header_bound_is_an_error() -> None:
    parser = HttpSessionParser(HttpConfig(max_header_bytes=1024))
    events = [*parser.data(ORIG, b"GET / HTTP/1.1\r\nHost: h\r\n", 1)]
    for i in range(100):
        events.extend(parser.data(ORIG, b"X-Filler-%d: %s\r\n" % (i, b"y" * 40), 2))
    assert [e.reason for e in events if isinstance(e, HttpError)] == ["header_section_too_large"]


def test_values_are_latin1_and_bounded() -> None:
    cfg = HttpConfig(max_value_bytes=8, max_uri_bytes=4, max_headers=2)
    parser = HttpSessionParser(cfg)
    data = b"GET /abcdef HTTP/1.1\r\nUser-Agent: caf\xe9 au lait\r\nHost: h\r\nReferer: never-seen\r\n\r\n"
    events = [*parser.data(ORIG, data, 1), *parser.close(2)]
    (t,) = only_txns(events)
    assert (t.uri, t.user_agent, t.host, t.referrer, t.request_headers_truncated) == (
        "/abc", "caf\xe9 au", "h", None, True)


def test_pending_requests_are_bounded() -> None:
    parser = HttpSessionParser(HttpConfig(max_pending_requests=2))
    events = list(parser.data(ORIG, b"".join(req("GET", f"/{i}", "Host: h") for i in range(4)), 1))
    assert [t.uri for t in only_txns(events)] == ["/0", "/1"]  # evicted, unanswered
    events = list(parser.data(RESP, resp("200 OK", "Content-Length: 0") * 4, 2))
    got = only_txns(events)
    # the answers owed to the evicted requests are not paired with later ones
    assert [(t.uri, t.status_code) for t in got] == [(None, 200), (None, 200), ("/2", 200), ("/3", 200)]


def test_bare_lf_lines_are_accepted() -> None:
    bar, foo = only_txns(feed(BARE_LF))
    assert [(t.uri, t.host, t.status_code, t.response_content_type, t.response_body_len) for t in (bar, foo)] == [
        ("/bar/", "h", 200, "text/plain", 4), ("/foo/", "h", 200, "text/plain", 11)]


def test_webdav_method() -> None:
    conv: Conv = [(ORIG, req("PROPFIND", "/dav/", "Host: h", "Depth: 1", "Content-Length: 0")),
                  (RESP, resp("207 Multi-Status", "Content-Type: application/xml", "Content-Length: 0"))]
    (t,) = only_txns(feed(conv))
    assert (t.method, t.status_code, t.response_content_type) == ("PROPFIND", 207, "application/xml")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_bytewise_feeding_is_identical(name: str) -> None:
    conv = EXAMPLES[name]
    assert feed_bytewise(conv) == feed(conv)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(EXAMPLES)), st.data())
def test_any_split_is_identical(name: str, data: st.DataObject) -> None:
    conv = EXAMPLES[name]
    splits = [data.draw(st.lists(st.integers(0, len(chunk)), max_size=6)) for _, chunk in conv]
    assert feed(conv, splits) == feed(conv)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([ORIG, RESP]), st.binary(max_size=64)), max_size=8),
       st.sampled_from(["data", "gap", "end"]))
def test_arbitrary_bytes_never_raise(chunks: List[Tuple[Direction, bytes]], last: str) -> None:
    parser = factory().create(FLOW)
    for d, data in chunks:
        parser.data(d, data, 1)
    if last == "gap":
        parser.gap(ORIG, 10, 2)
    elif last == "end":
        parser.end(RESP, 2)
    for e in parser.close(3):
        assert isinstance(e, (HttpTransaction, HttpError))


PREFIXES = st.sampled_from([b"GET / HTTP/1.1\r\nHost: h\r\n", b"HTTP/1.1 200 OK\r\n", b"HEAD /x HTTP/1.1\r\n\r\n", b""])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([ORIG, RESP]), PREFIXES, st.binary(max_size=48)), max_size=6))
def test_malformed_after_a_valid_start_never_raises(chunks: List[Tuple[Direction, bytes, bytes]]) -> None:
    parser = factory().create(FLOW)
    for d, head, tail in chunks:
        for e in parser.data(d, head + tail, 1):
            assert isinstance(e, (HttpTransaction, HttpError))
    parser.close(2)


# --------------------------------------------------------------------------- detection and the factory


@pytest.mark.parametrize(
    ("data", "want"),
    [
        (b"", Detection.NEED_MORE),
        (b"G", Detection.NEED_MORE),
        (b"GET /index.html HT", Detection.NEED_MORE),
        (b"GET /index.html HTTP/1.1\r", Detection.NEED_MORE),
        (b"GET /index.html HTTP/1.1\r\n", Detection.MATCH),
        (b"GET /bar/ HTTP/1.1\nHost: x\n", Detection.MATCH),
        (b"\r\nPOST /x HTTP/1.0\r\nHost: a\r\n", Detection.MATCH),
        (b"PROPFIND /dav HTTP/1.1\r\n", Detection.MATCH),
        (b"MKCALENDAR /cal HTTP/1.1\r\n", Detection.MATCH),
        (b"CONNECT example.com:443 HTTP/1.1\r\n", Detection.MATCH),
        (b"OPTIONS * HTTP/1.1\r\n", Detection.MATCH),
        (b"HTTP/1.1 200 OK\r\n", Detection.MATCH),
        (b"HTTP/1.0 404", Detection.MATCH),
        (b"HTTP/1.", Detection.NEED_MORE),
        (b"HTTP/2 200\r\n", Detection.NO_MATCH),
        (b"HTTP/1.1 2x0", Detection.NO_MATCH),
        (b"FOO / HTTP/1.1\r\n", Detection.NO_MATCH),
        (b"get / HTTP/1.1\r\n", Detection.NO_MATCH),
        (b"GET / FTP/1.1\r\n", Detection.NO_MATCH),
        (b"GET /a b HTTP/1.1\r\n", Detection.NO_MATCH),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Detection.NO_MATCH),
        (b"\x16\x03\x01\x02\x00", Detection.NO_MATCH),
        (b"SSH-2.0-OpenSSH_9.6\r\n", Detection.NO_MATCH),
    ],
)
def test_detect(data: bytes, want: Detection) -> None:
    assert factory().detect(ORIG, data, FLOW) is want


def test_detect_lookahead_is_bounded() -> None:
    fac = HttpParserFactory(HttpConfig(detect_lookahead=64))
    assert fac.detect(ORIG, b"GET /" + b"a" * 40, FLOW) is Detection.NEED_MORE
    assert fac.detect(ORIG, b"GET /" + b"a" * 100, FLOW) is Detection.MATCH
    assert fac.detect(ORIG, b"GETX" + b"a" * 100, FLOW) is Detection.NO_MATCH
    assert fac.detect(ORIG, b"\r\n" * 40, FLOW) is Detection.NO_MATCH


def test_factory_shape() -> None:
    fac: SessionParserFactory = factory()
    assert fac.name == "http"
    assert {80, 8080, 8000, 8008, 8888, 3128} <= fac.ports
    parser: SessionParser = fac.create(FLOW)
    assert isinstance(parser, HttpSessionParser)


def test_missing_httptools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httptools", None)
    fac = factory()
    assert fac.detect(ORIG, b"GET / HTTP/1.1\r\n", FLOW) is Detection.MATCH
    with pytest.raises(MissingExtraError) as info:
        fac.create(FLOW)
    assert info.value.extra == "http" and "pip install" in str(info.value)


def test_finished_sessions_leave_no_reference_cycles() -> None:
    # llhttp holds the side's bound callbacks and the side holds llhttp: the session
    # breaks that cycle when it finishes, so reference counting frees a flow's parser
    # state at once and a long run does not lean on the cyclic garbage collector.
    def one(pipelined: bool, head: bool) -> None:
        p = HttpSessionParser()
        method = b"HEAD" if head else b"GET"
        reqs = [method + b" /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(3 if pipelined else 1)]
        p.data(Direction.ORIG, b"".join(reqs), 1)
        for _ in reqs:
            p.data(Direction.RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + (b"" if head else b"ok"), 2)
        p.close(3)

    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for pipelined in (False, True):
            for head in (False, True):
                for _ in range(20):
                    one(pipelined, head)
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()


def _run_session(steps: Sequence[Tuple[str, Direction, bytes]]) -> List[HttpEvent]:
    """Feed ``("data"|"end"|"gap", direction, bytes)`` steps, then close; every event, in order."""
    p = HttpSessionParser()
    out: List[HttpEvent] = []
    for i, (what, d, data) in enumerate(steps):
        if what == "data":
            out += p.data(d, data, i + 1)
        elif what == "end":
            out += p.end(d, i + 1)
        else:
            out += p.gap(d, len(data), i + 1)
    out += p.close(len(steps) + 1)
    return out


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("last", ["end", "gap"])
def test_a_flow_failed_while_its_upgrade_request_was_held_still_ends_cleanly(method: str, last: str) -> None:
    # The 400 releases the held client bytes; they are malformed, which fails the
    # flow from inside the response's handling (for HEAD, from inside the code that
    # then starts a new llhttp parser); the response direction then ends.
    req = method.encode() + b" /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    evs = _run_session(
        [
            ("data", Direction.ORIG, req + b"\x00\x01 not http \r\n\r\n"),
            ("data", Direction.RESP, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
            (last, Direction.RESP, b"xx"),
        ]
    )
    txns = [e for e in evs if isinstance(e, HttpTransaction)]
    errors = [e for e in evs if isinstance(e, HttpError)]
    assert [(t.method, t.uri, t.status_code) for t in txns] == [(method, "/chat", 400)]
    assert [e.reason for e in errors] == ["request_malformed"]


def test_connect_answered_without_a_body_hands_the_tunnel_over() -> None:
    # "200 Connection established" with Content-Length: 0 completes inside the piece
    # that carries its headers; what follows is the tunnel (TLS here), not HTTP.
    evs = _run_session(
        [
            ("data", Direction.ORIG, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
            ("data", Direction.RESP, b"HTTP/1.1 200 Connection established\r\nContent-Length: 0\r\n\r\n"),
            ("data", Direction.ORIG, b"\x16\x03\x01\x00\x05hello"),
            ("data", Direction.RESP, b"\x16\x03\x03\x00\x05world"),
        ]
    )
    assert [type(e).__name__ for e in evs] == ["HttpTransaction"]
    (txn,) = evs
    assert isinstance(txn, HttpTransaction) and (txn.method, txn.status_code) == ("CONNECT", 200)
