"""The DNS parsers and factory: corpus captures against tshark's truth, TCP framing, detection.

The corpus tests pull DNS payloads out of each capture with a small
test-only decoder (dpkt reads the capture; Ethernet, VLAN, IPv4/IPv6 with
fragment reassembly, GRE and IP-in-IP are unwrapped by hand below), run
the parsers over them exactly as the tracker would (one datagram parser
per UDP flow, one stream parser per TCP flow fed its segments in sequence
order) and compare every message with the truth the way the corpus's
``score.py`` does, and more strictly: answers and authority records with
their TTLs, TXT strings, flags and counts.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import pytest
from conftest import corpus_pcaps, load_truth
from flowscope.parsers.dns import (
    DnsAnswer,
    DnsConfig,
    DnsDatagramParser,
    DnsError,
    DnsEvent,
    DnsMessage,
    DnsParserFactory,
    DnsStreamParser,
    factory,
    message_event,
)
from flowscope_core import (
    DatagramParser,
    DatagramParserFactory,
    Detection,
    Direction,
    Endpoint,
    FlowInfo,
    Orientation,
    SessionEvent,
    SessionParser,
    SessionParserFactory,
)
from hypothesis import given, settings
from hypothesis import strategies as st

# --------------------------------------------------------------------------- capture decoding (test only)

Addr = Tuple[str, int]


def _frames(path: Path) -> Iterator[Tuple[int, bytes]]:
    """(ns timestamp, frame) from a pcap or pcapng, recognised by magic number."""
    import dpkt

    with path.open("rb") as f:
        magic = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        for ts, buf in reader:
            yield int(round(float(ts) * 1e9)), bytes(buf)


class _Defrag:
    """IPv4/IPv6 fragment reassembly, enough for the corpus (no overlaps, no timeouts)."""

    def __init__(self) -> None:
        self.pending: Dict[Tuple[Any, ...], List[Tuple[int, bool, bytes]]] = {}

    def add(self, key: Tuple[Any, ...], offset: int, more: bool, data: bytes) -> Optional[bytes]:
        frags = self.pending.setdefault(key, [])
        frags.append((offset, more, data))
        frags.sort(key=lambda f: f[0])
        if frags[-1][1]:
            return None
        out = b""
        for off, _, piece in frags:
            if off > len(out):
                return None
            out = out[:off] + piece
        del self.pending[key]
        return out


def _addr(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _ip(pkt: bytes, defrag: _Defrag, depth: int = 0) -> Iterator[Tuple[int, str, str, bytes]]:
    """(IP protocol, src, dst, L4 bytes) of the innermost IP packet(s)."""
    if len(pkt) < 20 or depth > 3:
        return
    version = pkt[0] >> 4
    if version == 4:
        ihl = (pkt[0] & 0xF) * 4
        total, ident, frag = struct.unpack_from("!HHH", pkt, 2)
        proto = pkt[9]
        src, dst = pkt[12:16], pkt[16:20]
        body: Optional[bytes] = pkt[ihl:total]
        if frag & 0x3FFF:
            body = defrag.add((4, src, dst, ident, proto), (frag & 0x1FFF) * 8, bool(frag & 0x2000), pkt[ihl:total])
    elif version == 6:
        proto = pkt[6]
        src, dst = pkt[8:24], pkt[24:40]
        body = pkt[40 : 40 + struct.unpack_from("!H", pkt, 4)[0]]
        while proto in (0, 43, 60, 44) and body:
            if proto == 44:
                offmore, ident = struct.unpack_from("!HI", body, 2)
                proto = body[0]
                body = defrag.add((6, src, dst, ident, proto), offmore & 0xFFF8, bool(offmore & 1), body[8:])
                break
            proto, body = body[0], body[(body[1] + 1) * 8 :]
    else:
        return
    if body is None:
        return
    if proto == 47:  # GRE: flags/version, protocol, then optional checksum, key, sequence
        gflags, ethertype = struct.unpack_from("!HH", body, 0)
        skip = 4 + 4 * (bool(gflags & 0x8000) + bool(gflags & 0x2000) + bool(gflags & 0x1000))
        if ethertype in (0x0800, 0x86DD):
            yield from _ip(body[skip:], defrag, depth + 1)
        return
    if proto in (4, 41):
        yield from _ip(body, defrag, depth + 1)
        return
    yield proto, _addr(src), _addr(dst), body


@dataclass
class _Capture:
    """The DNS-port traffic of one capture."""

    udp: List[Tuple[int, Addr, Addr, bytes]] = field(default_factory=list)
    """(ts, src, dst, payload) of every UDP datagram to or from a DNS port."""
    tcp: Dict[Tuple[Addr, Addr], List[Tuple[int, int, int, bytes]]] = field(default_factory=dict)
    """(src, dst) -> [(seq, tcp flags, ts, payload)] for TCP segments to or from a DNS port."""


PORTS = frozenset({53, 5353, 5355})


def _decode(path: Path) -> _Capture:
    cap = _Capture()
    defrag = _Defrag()
    for ts, frame in _frames(path):
        ethertype, off = struct.unpack_from("!H", frame, 12)[0], 14
        while ethertype in (0x8100, 0x88A8):
            ethertype, off = struct.unpack_from("!H", frame, off + 2)[0], off + 4
        if ethertype not in (0x0800, 0x86DD):
            continue
        for proto, src, dst, l4 in _ip(frame[off:], defrag):
            if proto == 17 and len(l4) >= 8:
                sport, dport, ulen = struct.unpack_from("!HHH", l4, 0)
                if sport in PORTS or dport in PORTS:
                    cap.udp.append((ts, (src, sport), (dst, dport), l4[8:ulen]))
            elif proto == 6 and len(l4) >= 20:
                sport, dport, seq = struct.unpack_from("!HHI", l4, 0)
                if sport in PORTS or dport in PORTS:
                    payload = l4[(l4[12] >> 4) * 4 :]
                    cap.tcp.setdefault(((src, sport), (dst, dport)), []).append((seq, l4[13], ts, payload))
    return cap


def _stream_chunks(segments: List[Tuple[int, int, int, bytes]]) -> List[Tuple[int, bytes]]:
    """A direction's segments as in-order (ts, bytes) chunks: sorted by sequence, duplicates trimmed."""
    syn = [seq for seq, flags, _, _ in segments if flags & 0x02]
    base = (syn[0] + 1) if syn else min(seq for seq, _, _, _ in segments)
    ordered = sorted((((seq - base) & 0xFFFFFFFF), ts, data) for seq, _, ts, data in segments if data)
    chunks: List[Tuple[int, bytes]] = []
    nxt = 0
    for rel, ts, data in ordered:
        if rel + len(data) <= nxt:
            continue
        assert rel <= nxt, "the corpus DNS-over-TCP streams have no holes"
        chunks.append((ts, data[nxt - rel :]))
        nxt = rel + len(data)
    return chunks


def _flow(orig: Addr, resp: Addr, proto: int) -> FlowInfo:
    return FlowInfo(
        flow_id="t",
        proto=proto,
        orig=Endpoint(addr=orig[0], port=orig[1]),
        resp=Endpoint(addr=resp[0], port=resp[1]),
        orientation=Orientation.FIRST_PACKET,
        community_id="",
        vlan=(),
        tunnel=(),
    )


Record = Tuple[str, Addr, Addr, DnsEvent]
"""(transport, src, dst, event)."""


def _run_parsers(cap: _Capture) -> List[Record]:
    """Run the factory's parsers over a capture's DNS traffic, as the tracker would."""
    fac = factory()
    out: List[Record] = []
    udp_parsers: Dict[frozenset[Addr], Tuple[Addr, DnsDatagramParser]] = {}
    for ts, src, dst, payload in cap.udp:
        key = frozenset((src, dst))
        if key not in udp_parsers:
            udp_parsers[key] = (src, fac.create_datagram(_flow(src, dst, 17)))
        orig, parser = udp_parsers[key]
        direction = Direction.ORIG if src == orig else Direction.RESP
        out.extend(("udp", src, dst, e) for e in parser.datagram(direction, payload, ts))
    done: Set[frozenset[Addr]] = set()
    for (src, dst), _ in cap.tcp.items():
        key = frozenset((src, dst))
        if key in done:
            continue
        done.add(key)
        tparser = fac.create(_flow(src, dst, 6))
        for direction, (a, b) in ((Direction.ORIG, (src, dst)), (Direction.RESP, (dst, src))):
            segments = cap.tcp.get((a, b))
            for ts, chunk in _stream_chunks(segments) if segments else []:
                out.extend(("tcp", a, b, e) for e in tparser.data(direction, chunk, ts))
            out.extend(("tcp", a, b, e) for e in tparser.end(direction, 0))
    return out


# --------------------------------------------------------------------------- comparison with the truth

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
OPCODES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE"}


def _norm(name: Optional[str]) -> Optional[str]:
    """score.py's name normalisation: lower case, no trailing dot, root stays ``.``."""
    if name is None:
        return None
    low = name.lower()
    return low if low == "." else low.rstrip(".")


def _truth_rrs(rrs: Sequence[Dict[str, Any]]) -> Set[Tuple[Any, ...]]:
    return {(_norm(r["name"]), r["type_name"], r["ttl"], r["data"], tuple(r.get("txt_strings") or ())) for r in rrs}


def _our_rrs(rrs: Sequence[Any]) -> Set[Tuple[Any, ...]]:
    return {(_norm(r.name), r.type, r.ttl, r.data, r.txt or ()) for r in rrs}


def _compare(truth: Dict[str, Any], ours: List[Record]) -> Tuple[int, List[str]]:
    """Match truth records to ours as score.py does; return (matched, problems)."""
    by_conv: Dict[Tuple[str, frozenset[Addr]], List[DnsMessage]] = {}
    for transport, src, dst, event in ours:
        if isinstance(event, DnsMessage):
            by_conv.setdefault((transport, frozenset((src, dst))), []).append(event)
    used: Set[int] = set()
    problems: List[str] = []
    matched = 0
    for t in truth.get("dns", []):
        src = (t["src"]["ip"], t["src"]["port"])
        dst = (t["dst"]["ip"], t["dst"]["port"])
        cands = by_conv.get((t["transport"], frozenset((src, dst))), [])
        got = next(
            (
                o
                for o in cands
                if id(o) not in used
                and o.trans_id == t["id"]
                and o.is_response == t["is_response"]
                and _norm(o.qname) == _norm(t["qname"])
            ),
            None,
        )
        label = f"frame {t['frame']} id={t['id']} {t['qname']}"
        if got is None:
            problems.append(f"{label}: missing")
            continue
        used.add(id(got))
        matched += 1
        want_qtype = (t["questions"] or [{}])[0].get("type_name")
        counts = t["counts"]
        checks: Dict[str, Tuple[Any, Any]] = {
            "qtype": (got.qtype, want_qtype),
            "rcode": (got.rcode, None if t["rcode"] is None else RCODES.get(t["rcode"], str(t["rcode"]))),
            "opcode": (got.opcode, OPCODES[t["opcode"]]),
            "truncated": (got.truncated, t["truncated"]),
            "variant": (got.variant, t["variant"]),
            "transport": (got.transport, t["transport"]),
            "counts": (
                (got.qdcount, got.ancount, got.nscount, got.arcount),
                (counts["questions"], counts["answers"], counts["authority"], counts["additional"]),
            ),
        }
        # tshark sometimes decodes fewer records than the header counts (mDNS);
        # score.py skips the answer comparison then, and so do we.
        if counts["answers"] == len(t["answers"]):
            checks["answers"] = (_our_rrs(got.answers), _truth_rrs(t["answers"]))
        if counts["authority"] == len(t["authority"]):
            checks["authority"] = (_our_rrs(got.authority), _truth_rrs(t["authority"]))
        for what, (have, want) in checks.items():
            if have != want:
                problems.append(f"{label}: {what} {have!r} != truth {want!r}")
    return matched, problems


DNS_CAPTURES = [p for p in corpus_pcaps() if load_truth(p).get("dns")]


@pytest.mark.corpus
@pytest.mark.parametrize("pcap", DNS_CAPTURES, ids=[p.name for p in DNS_CAPTURES])
def test_corpus_capture_matches_truth(pcap: Path) -> None:
    truth = load_truth(pcap)
    ours = _run_parsers(_decode(pcap))
    errors = [e for _, _, _, e in ours if isinstance(e, DnsError)]
    assert errors == []
    matched, problems = _compare(truth, ours)
    assert problems == []
    assert matched == len(truth["dns"])
    # Nothing extra either: every message we emit is one tshark saw.
    assert len(ours) == len(truth["dns"])


@pytest.mark.corpus
def test_corpus_tcp_streams_byte_by_byte(corpus_dir: Path) -> None:
    """Real DNS-over-TCP streams fed one byte at a time give the same messages as whole segments."""
    streams = 0
    for pcap in DNS_CAPTURES:
        for segments in _decode(pcap).tcp.values():
            stream = b"".join(chunk for _, chunk in _stream_chunks(segments))
            if not stream:
                continue
            whole = _summary(_tcp().data(Direction.ORIG, stream, 0))
            parser = _tcp()
            events = [e for i in range(len(stream)) for e in parser.data(Direction.ORIG, stream[i : i + 1], i)]
            assert _summary(events) == whole
            assert whole and all(kind == "msg" for kind, *_ in whole)
            streams += 1
    assert streams >= 4


@pytest.mark.corpus
def test_corpus_is_present_or_skipped(corpus_dir: Path) -> None:
    """Guard against the parametrised test silently running on nothing."""
    assert len(DNS_CAPTURES) >= 7


# --------------------------------------------------------------------------- detection


def test_factory_and_parsers_satisfy_the_core_protocols() -> None:
    """Checked by mypy (these annotations) and at run time."""
    session: SessionParserFactory = factory()
    datagram: DatagramParserFactory = factory()
    assert session.name == datagram.name == "dns"
    assert session.ports == frozenset({53, 5353, 5355})
    flow = _flow(("192.0.2.1", 40000), ("192.0.2.53", 53), 6)
    stream_parser: SessionParser = session.create(flow)
    datagram_parser: DatagramParser = datagram.create_datagram(flow)
    events: Sequence[SessionEvent] = datagram_parser.datagram(Direction.ORIG, QUERY, 1)
    events = [*events, *stream_parser.data(Direction.ORIG, b"\x00\x05junk!", 2)]
    assert all(isinstance(e, SessionEvent) for e in events)
    assert [e.event_type for e in events] == ["dns", "dns_error"]


@pytest.mark.corpus
def test_detect_accepts_every_corpus_dns_message(corpus_dir: Path) -> None:
    fac = factory()
    seen = 0
    for pcap in DNS_CAPTURES:
        cap = _decode(pcap)
        for _, src, dst, payload in cap.udp:
            # Port-independent: pretend the flow runs between two random ports...
            off_port = _flow(("192.0.2.1", 40000), ("192.0.2.2", 40001), 17)
            on_port = _flow(src, dst, 17)
            result = fac.detect(Direction.ORIG, payload, off_port)
            if payload[4:6] == b"\x00\x00":
                # ...except mDNS announcements, which have no question to judge.
                result = fac.detect(Direction.ORIG, payload, on_port)
            assert result is Detection.MATCH, (pcap.name, payload[:16].hex())
            seen += 1
        for segments in cap.tcp.values():
            chunks = _stream_chunks(segments)
            if chunks:
                stream = b"".join(c for _, c in chunks)
                flow = _flow(("192.0.2.1", 40000), ("192.0.2.2", 40001), 6)
                assert fac.detect(Direction.ORIG, stream, flow) is Detection.MATCH
                # Any prefix is either enough or asks for more: never a wrong "no".
                for cut in range(0, min(len(stream), 80)):
                    assert fac.detect(Direction.ORIG, stream[:cut], flow) in (Detection.MATCH, Detection.NEED_MORE)
                seen += 1
    assert seen > 100


@pytest.mark.corpus
def test_detect_rejects_other_udp_protocols_in_the_corpus(corpus_dir: Path) -> None:
    """Every non-DNS UDP payload of the corpus (QUIC, NTP, DHCP, NBNS…) is turned down."""
    fac = factory()
    rejected = 0
    for pcap in corpus_pcaps():
        defrag = _Defrag()
        for _, frame in _frames(pcap):
            if len(frame) < 14:
                continue
            ethertype, off = struct.unpack_from("!H", frame, 12)[0], 14
            while ethertype in (0x8100, 0x88A8):
                ethertype, off = struct.unpack_from("!H", frame, off + 2)[0], off + 4
            if ethertype not in (0x0800, 0x86DD):
                continue
            for proto, src, dst, l4 in _ip(frame[off:], defrag):
                if proto != 17 or len(l4) < 8:
                    continue
                sport, dport, ulen = struct.unpack_from("!HHH", l4, 0)
                if sport in PORTS or dport in PORTS:
                    continue
                flow = _flow((src, sport), (dst, dport), 17)
                assert fac.detect(Direction.ORIG, l4[8:ulen], flow) is Detection.NO_MATCH, (pcap.name, sport, dport)
                rejected += 1
    assert rejected > 50


def test_detect_rejects_implausible_headers() -> None:
    fac = factory()
    flow = _flow(("192.0.2.1", 40000), ("192.0.2.2", 40001), 17)
    good = _msg(0x1234, 0x0100, [_q("example.com", 1)])
    assert fac.detect(Direction.ORIG, good, flow) is Detection.MATCH
    assert fac.detect(Direction.ORIG, good[:11], flow) is Detection.NO_MATCH
    bad_opcode = good[:2] + bytes([0x18, 0x00]) + good[4:]  # opcode 3 is unassigned
    assert fac.detect(Direction.ORIG, bad_opcode, flow) is Detection.NO_MATCH
    z_bit = good[:2] + bytes([0x01, 0x40]) + good[4:]
    assert fac.detect(Direction.ORIG, z_bit, flow) is Detection.NO_MATCH
    query_rcode = good[:2] + bytes([0x01, 0x03]) + good[4:]
    assert fac.detect(Direction.ORIG, query_rcode, flow) is Detection.NO_MATCH
    no_question = good[:4] + b"\x00\x00" + good[6:12]
    assert fac.detect(Direction.ORIG, no_question, flow) is Detection.NO_MATCH
    many_questions = _msg(1, 0x0100, [_q(f"h{i}.example", 1) for i in range(5)])
    assert fac.detect(Direction.ORIG, many_questions, flow) is Detection.NO_MATCH
    assert fac.detect(Direction.ORIG, many_questions, _flow(("192.0.2.1", 5353), ("224.0.0.251", 5353), 17)) is (
        Detection.MATCH
    )
    odd_class = _msg(1, 0x0100, [_q("example.com", 1, qclass=7)])
    assert fac.detect(Direction.ORIG, odd_class, flow) is Detection.NO_MATCH
    counts_too_big = good[:6] + b"\x00\x10" + good[8:]
    assert fac.detect(Direction.ORIG, counts_too_big, flow) is Detection.NO_MATCH


def test_detect_tcp_uses_the_length_prefix() -> None:
    fac = factory()
    flow = _flow(("192.0.2.1", 40000), ("192.0.2.2", 40001), 6)
    m = _msg(7, 0x0100, [_q("www.example.org", 28)])
    framed = _frame(m)
    assert fac.detect(Direction.ORIG, framed, flow) is Detection.MATCH
    assert fac.detect(Direction.ORIG, framed[:1], flow) is Detection.NEED_MORE
    assert fac.detect(Direction.ORIG, framed[:10], flow) is Detection.NEED_MORE
    # The header and the first question are enough before the message completes.
    big = _msg(7, 0x8180, [_q("www.example.org", 16)], an=[_rr("www.example.org", 16, b"\x40" + b"x" * 64)] * 8)
    framed_big = _frame(big)
    assert fac.detect(Direction.ORIG, framed_big[:60], flow) is Detection.MATCH
    # A length prefix that disagrees with the header's counts, or is too short.
    assert fac.detect(Direction.ORIG, struct.pack("!H", 5) + m, flow) is Detection.NO_MATCH
    assert fac.detect(Direction.ORIG, struct.pack("!H", len(m) - 8) + m, flow) is Detection.NO_MATCH
    # Garbage that only looks framed.
    assert fac.detect(Direction.ORIG, b"\x00\x20" + b"\xff" * 300, flow) is Detection.NO_MATCH


# --------------------------------------------------------------------------- message building (test only)


def _name(text: str) -> bytes:
    if text == ".":
        return b"\x00"
    return b"".join(bytes([len(p)]) + p.encode() for p in text.split(".")) + b"\x00"


def _q(name: str, qtype: int, qclass: int = 1) -> bytes:
    return _name(name) + struct.pack("!HH", qtype, qclass)


def _rr(name: str, rtype: int, rdata: bytes, ttl: int = 300, rclass: int = 1) -> bytes:
    return _name(name) + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def _msg(ident: int, flags: int, qd: Sequence[bytes], an: Sequence[bytes] = (), ns: Sequence[bytes] = ()) -> bytes:
    return struct.pack("!6H", ident, flags, len(qd), len(an), len(ns), 0) + b"".join([*qd, *an, *ns])


def _frame(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


QUERY = _msg(0xBEEF, 0x0100, [_q("www.example.com", 1)])
RESPONSE = _msg(
    0xBEEF,
    0x8180,
    [_q("www.example.com", 1)],
    an=[_rr("www.example.com", 5, _name("example.net")), _rr("example.net", 1, bytes([192, 0, 2, 7]))],
)
NXDOMAIN = _msg(0x0102, 0x8183, [_q("nope.example", 28)], ns=[
    _rr("example", 6, _name("ns.example") + _name("admin.example") + struct.pack("!5I", 1, 2, 3, 4, 5))
])  # fmt: skip
STREAM = _frame(QUERY) + _frame(RESPONSE) + _frame(NXDOMAIN)


def _summary(events: Sequence[DnsEvent]) -> List[Tuple[Any, ...]]:
    """Events without their timestamps, for comparing different feedings of one stream."""
    out: List[Tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, DnsMessage):
            out.append(("msg", e.trans_id, e.is_response, e.qname, e.rcode, e.answers, e.authority))
        else:
            out.append(("err", e.reason, e.trans_id))
    return out


# --------------------------------------------------------------------------- UDP


def test_udp_one_event_per_datagram() -> None:
    parser = factory().create_datagram(_flow(("192.0.2.1", 40000), ("192.0.2.53", 53), 17))
    (q,) = parser.datagram(Direction.ORIG, QUERY, 10)
    (r,) = parser.datagram(Direction.RESP, RESPONSE, 20)
    assert isinstance(q, DnsMessage) and isinstance(r, DnsMessage)
    assert (q.ts, q.trans_id, q.is_response, q.rcode, q.qname, q.qtype, q.rd) == (
        10, 0xBEEF, False, None, "www.example.com", "A", True,
    )  # fmt: skip
    assert (r.ts, r.is_response, r.rcode, r.ra, r.transport, r.variant) == (20, True, "NOERROR", True, "udp", "dns")
    assert [(a.name, a.type, a.data) for a in r.answers] == [
        ("www.example.com", "CNAME", "example.net"),
        ("example.net", "A", "192.0.2.7"),
    ]
    assert parser.close(30) == []


def test_udp_malformed_datagram_is_an_error_event() -> None:
    parser = factory().create_datagram(_flow(("192.0.2.1", 40000), ("192.0.2.53", 53), 17))
    (e,) = parser.datagram(Direction.RESP, RESPONSE[:-3], 5)
    assert isinstance(e, DnsError)
    assert (e.ts, e.trans_id, e.transport, e.event_type) == (5, 0xBEEF, "udp", "dns_error")
    assert "past the end" in e.reason
    (short,) = parser.datagram(Direction.RESP, b"\x01", 6)
    assert isinstance(short, DnsError) and short.trans_id is None


def test_udp_error_reports_are_bounded() -> None:
    parser = DnsDatagramParser("dns", DnsConfig(max_errors=3))
    reported = [e for i in range(10) for e in parser.datagram(Direction.ORIG, b"junk", i)]
    assert len(reported) == 3 and parser.errors == 10
    # Valid messages still come through.
    assert isinstance(parser.datagram(Direction.ORIG, QUERY, 11)[0], DnsMessage)


def test_variant_comes_from_the_ports() -> None:
    fac = factory()
    mdns = fac.create_datagram(_flow(("192.0.2.1", 5353), ("224.0.0.251", 5353), 17))
    # QU question: the unicast-response bit is stripped from the class.
    (e,) = mdns.datagram(Direction.ORIG, _msg(0, 0, [_q("printer.local", 33, qclass=0x8001)]), 1)
    assert isinstance(e, DnsMessage)
    assert (e.variant, e.qclass, e.unicast_response) == ("mdns", "IN", True)
    llmnr = fac.create_datagram(_flow(("192.0.2.1", 61000), ("224.0.0.252", 5355), 17))
    (e,) = llmnr.datagram(Direction.ORIG, QUERY, 1)
    assert isinstance(e, DnsMessage) and e.variant == "llmnr"
    # On plain DNS the top class bit is just part of the class.
    dns = fac.create_datagram(_flow(("192.0.2.1", 5353), ("192.0.2.53", 53), 17))
    (e,) = dns.datagram(Direction.ORIG, _msg(0, 0, [_q("x.example", 1, qclass=0x8001)]), 1)
    assert isinstance(e, DnsMessage) and (e.variant, e.qclass, e.unicast_response) == ("dns", "CLASS32769", False)


def test_message_event_equals_a_keyword_built_message() -> None:
    """The fast positional constructor puts every value in its field."""
    expected = DnsMessage(
        ts=99,
        trans_id=0xBEEF,
        is_response=True,
        opcode="QUERY",
        rcode="NOERROR",
        truncated=False,
        aa=False,
        rd=True,
        ra=True,
        ad=False,
        cd=False,
        qname="www.example.com",
        qtype="A",
        qclass="IN",
        unicast_response=False,
        answers=(
            DnsAnswer(name="www.example.com", type="CNAME", ttl=300, data="example.net"),
            DnsAnswer(name="example.net", type="A", ttl=300, data="192.0.2.7"),
        ),
        authority=(),
        additional=(),
        extra_questions=(),
        qdcount=1,
        ancount=2,
        nscount=0,
        arcount=0,
        edns_udp_size=None,
        dnssec_ok=False,
        variant="llmnr",
        transport="tcp",
    )
    assert message_event(RESPONSE, 99, "llmnr", "tcp") == expected


def test_header_flags_opcode_and_rcode_names() -> None:
    e = message_event(_msg(1, 0x8000 | (5 << 11) | 0x0400 | 0x0200 | 0x0020 | 0x0010 | 9, [_q("z.example", 6)]), 0)
    assert isinstance(e, DnsMessage)
    assert (e.opcode, e.rcode, e.aa, e.truncated, e.ad, e.cd, e.rd, e.ra) == (
        "UPDATE", "NOTAUTH", True, True, True, True, False, False,
    )  # fmt: skip
    e = message_event(_msg(1, 0x8000 | (3 << 11) | 13, [_q("z.example", 6)]), 0)
    assert isinstance(e, DnsMessage) and (e.opcode, e.rcode) == ("3", "13")
    e = message_event(_msg(1, 6 << 11, [_q("z.example", 6)]), 0)
    assert isinstance(e, DnsMessage) and (e.opcode, e.rcode) == ("DSO", None)


# --------------------------------------------------------------------------- TCP


def _tcp() -> DnsStreamParser:
    return factory().create(_flow(("192.0.2.1", 40000), ("192.0.2.53", 53), 6))


def test_tcp_several_messages_in_one_chunk() -> None:
    parser = _tcp()
    events = parser.data(Direction.ORIG, STREAM, 1)
    assert [e.trans_id for e in events] == [0xBEEF, 0xBEEF, 0x0102]
    assert all(isinstance(e, DnsMessage) and e.transport == "tcp" for e in events)
    last = events[2]
    assert isinstance(last, DnsMessage) and last.rcode == "NXDOMAIN"
    assert last.authority[0].data == "ns.example admin.example 1 2 3 4 5"
    assert parser.close(2) == []


def test_tcp_message_split_at_every_offset() -> None:
    whole = _summary(_tcp().data(Direction.ORIG, STREAM, 1))
    for cut in range(len(STREAM) + 1):
        parser = _tcp()
        events = list(parser.data(Direction.ORIG, STREAM[:cut], 1))
        events += parser.data(Direction.ORIG, STREAM[cut:], 2)
        assert _summary(events) == whole, cut
        assert parser.close(3) == []


def test_tcp_event_time_is_the_completing_chunk() -> None:
    parser = _tcp()
    framed = _frame(RESPONSE)
    assert parser.data(Direction.RESP, framed[:20], 100) == []
    (e,) = parser.data(Direction.RESP, framed[20:], 200)
    assert e.ts == 200


def test_tcp_directions_are_independent() -> None:
    parser = _tcp()
    q, r = _frame(QUERY), _frame(RESPONSE)
    assert parser.data(Direction.ORIG, q[:5], 1) == []
    (resp,) = parser.data(Direction.RESP, r, 2)
    (query,) = parser.data(Direction.ORIG, q[5:], 3)
    assert isinstance(resp, DnsMessage) and resp.is_response
    assert isinstance(query, DnsMessage) and not query.is_response


def test_tcp_malformed_message_keeps_framing() -> None:
    parser = _tcp()
    events = parser.data(Direction.ORIG, _frame(b"\x00\x01garbage!") + _frame(b"tiny") + _frame(QUERY), 1)
    assert [type(e) for e in events] == [DnsError, DnsError, DnsMessage]


def test_tcp_gap_inside_a_message_resynchronises() -> None:
    parser = _tcp()
    r = _frame(RESPONSE)
    assert parser.data(Direction.RESP, r[:10], 1) == []
    (lost,) = parser.gap(Direction.RESP, 20, 2)
    assert isinstance(lost, DnsError) and lost.trans_id == 0xBEEF and "gap" in lost.reason
    assert parser.data(Direction.RESP, r[30:], 3) == []  # the rest of the lost message
    (nxt,) = parser.data(Direction.RESP, _frame(NXDOMAIN), 4)
    assert isinstance(nxt, DnsMessage) and nxt.trans_id == 0x0102


def test_tcp_gap_ending_exactly_at_the_message_end_resynchronises() -> None:
    parser = _tcp()
    r = _frame(RESPONSE)
    parser.data(Direction.RESP, r[:2], 1)
    assert len(parser.gap(Direction.RESP, len(r) - 2, 2)) == 1
    (nxt,) = parser.data(Direction.RESP, _frame(QUERY), 3)
    assert isinstance(nxt, DnsMessage)


def test_tcp_gap_over_a_length_prefix_stops_the_direction() -> None:
    parser = _tcp()
    (stop,) = parser.gap(Direction.RESP, 10, 1)
    assert isinstance(stop, DnsError) and "abandoned" in stop.reason
    assert parser.data(Direction.RESP, _frame(QUERY), 2) == []
    # The other direction carries on.
    assert len(parser.data(Direction.ORIG, _frame(QUERY), 3)) == 1
    parser = _tcp()
    r = _frame(RESPONSE)
    parser.data(Direction.RESP, r[:10], 1)
    (stop,) = parser.gap(Direction.RESP, len(r), 2)  # past the end of this message
    assert isinstance(stop, DnsError) and "abandoned" in stop.reason
    assert parser.data(Direction.RESP, _frame(QUERY), 3) == []


def test_tcp_end_inside_a_message_is_reported() -> None:
    parser = _tcp()
    parser.data(Direction.ORIG, _frame(QUERY)[:9], 1)
    (cut,) = parser.end(Direction.ORIG, 2)
    assert isinstance(cut, DnsError) and cut.trans_id == 0xBEEF and "ended inside" in cut.reason
    assert parser.close(3) == []


def test_tcp_oversized_message_is_skipped_not_buffered() -> None:
    parser = DnsStreamParser("dns", DnsConfig(max_message=64))
    big = _frame(RESPONSE + b"\x00" * 100)
    events = parser.data(Direction.RESP, big[:50], 1)
    assert len(events) == 1 and isinstance(events[0], DnsError)
    assert parser.data(Direction.RESP, big[50:], 2) == []
    assert [type(e) for e in parser.data(Direction.RESP, _frame(QUERY), 3)] == [DnsMessage]


def test_tcp_error_bound_stops_the_direction() -> None:
    parser = DnsStreamParser("dns", DnsConfig(max_errors=2))
    events = parser.data(Direction.ORIG, _frame(b"x" * 12) * 5 + _frame(QUERY), 1)
    assert [type(e) for e in events] == [DnsError, DnsError]
    assert parser.data(Direction.ORIG, _frame(QUERY), 2) == []


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=8))
def test_tcp_any_split_gives_the_same_events(cuts: List[int]) -> None:
    points = sorted(set(cuts))
    parser = _tcp()
    events: List[DnsEvent] = []
    prev = 0
    for point in [*points, len(STREAM)]:
        events += parser.data(Direction.ORIG, STREAM[prev:point], point)
        prev = point
    assert _summary(events) == _summary(_tcp().data(Direction.ORIG, STREAM, 0))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=5))
def test_tcp_arbitrary_bytes_never_raise(data: bytes, cuts: List[int]) -> None:
    parser = _tcp()
    prev = 0
    for point in [*sorted(set(c for c in cuts if c <= len(data))), len(data)]:
        parser.data(Direction.ORIG, data[prev:point], 1)
        prev = point
    parser.gap(Direction.ORIG, 3, 2)
    parser.close(3)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_detect_and_udp_never_raise(data: bytes) -> None:
    fac = factory()
    for proto in (6, 17):
        fac.detect(Direction.ORIG, data, _flow(("192.0.2.1", 5353), ("192.0.2.2", 5353), proto))
    udp = fac.create_datagram(_flow(("192.0.2.1", 1), ("192.0.2.2", 53), 17))
    assert len(udp.datagram(Direction.ORIG, data, 0)) == 1


def test_entry_point_target() -> None:
    fac = factory()
    assert isinstance(fac, DnsParserFactory)
    assert fac.config == DnsConfig()
