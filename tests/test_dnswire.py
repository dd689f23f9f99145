"""The lean DNS wire reader: hand-made messages, published examples, malformed bytes.

Expected values come from the RFCs (RFC 1035's compression example,
RFC 5952's IPv6 text forms) or are written by hand next to the bytes that
carry them; a property test also lets dnslib, an independent encoder,
build compressed messages whose contents the reader must give back.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import pytest
from flowscope.parsers._dnswire import (
    MAX_POINTER_HOPS,
    DnsAnswer,
    DnsQuestion,
    DnsWireError,
    WireMessage,
    class_name,
    parse_message,
    slot_constructor,
    type_name,
)
from flowscope.parsers.dns import DnsError, DnsMessage, message_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# --------------------------------------------------------------------------- building messages by hand


def name(text: str) -> bytes:
    """Uncompressed wire form of a dotted name (no escapes)."""
    if text == ".":
        return b"\x00"
    return b"".join(bytes([len(p)]) + p.encode() for p in text.split(".")) + b"\x00"


def ptr(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def header(ident: int = 0x1234, flags: int = 0x8180, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", ident, flags, qd, an, ns, ar)


def question(owner: bytes, qtype: int = 1, qclass: int = 1) -> bytes:
    return owner + struct.pack("!HH", qtype, qclass)


def rr(owner: bytes, rtype: int, rdata: bytes, ttl: int = 3600, rclass: int = 1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


QNAME_AT_12 = ptr(12)


def answer_message(rtype: int, rdata: bytes, qname: str = "example.com") -> bytes:
    """A response whose question is ``qname`` and whose one answer points back at it."""
    return header(an=1) + question(name(qname), rtype) + rr(QNAME_AT_12, rtype, rdata)


def one_answer(rtype: int, rdata: bytes, qname: str = "example.com") -> DnsAnswer:
    (answer,) = parse_message(answer_message(rtype, rdata, qname)).answers
    return answer


def wire_error(buf: bytes) -> DnsWireError:
    with pytest.raises(DnsWireError) as info:
        parse_message(buf)
    return info.value


# --------------------------------------------------------------------------- header and questions


def test_query_header_and_question() -> None:
    m = parse_message(header(ident=0xABCD, flags=0x0120) + question(name("www.Example.COM"), 28))
    assert isinstance(m, WireMessage)
    assert (m.trans_id, m.flags, m.qdcount, m.ancount, m.nscount, m.arcount) == (0xABCD, 0x0120, 1, 0, 0, 0)
    # Case is kept as received.
    assert m.questions == (DnsQuestion(name="www.Example.COM", type="AAAA", qclass="IN"),)
    assert (m.answers, m.authority, m.additional, m.edns_udp_size, m.dnssec_ok) == ((), (), (), None, False)


def test_root_name_is_a_dot() -> None:
    m = parse_message(header(an=1) + question(b"\x00", 2) + rr(b"\x00", 2, name("a.root-servers.net")))
    assert m.questions[0].name == "."
    assert (m.answers[0].name, m.answers[0].data) == (".", "a.root-servers.net")


def test_trailing_bytes_after_the_last_record_are_ignored() -> None:
    assert parse_message(header() + question(name("a.example")) + b"\xff\xff\xff").questions[0].name == "a.example"


def test_several_questions() -> None:
    m = parse_message(header(qd=2) + question(name("a.example"), 1) + question(ptr(14), 28))
    assert [(q.name, q.type) for q in m.questions] == [("a.example", "A"), ("example", "AAAA")]


# --------------------------------------------------------------------------- names and compression


def test_rfc1035_section_4_1_4_compression_example() -> None:
    """F.ISI.ARPA, FOO.F.ISI.ARPA (pointer to F.ISI.ARPA), ARPA (pointer into it) and the root."""
    f_isi_arpa = 12
    body = header(qd=1, an=3) + question(name("F.ISI.ARPA"), 1)
    arpa = f_isi_arpa + len(b"\x01F\x03ISI")
    body += rr(b"\x03FOO" + ptr(f_isi_arpa), 1, bytes([10, 0, 0, 1]))
    body += rr(ptr(arpa), 2, name("NS.ARPA"))
    body += rr(b"\x00", 2, ptr(arpa))
    m = parse_message(body)
    assert m.questions[0].name == "F.ISI.ARPA"
    assert [(a.name, a.data) for a in m.answers] == [("FOO.F.ISI.ARPA", "10.0.0.1"), ("ARPA", "NS.ARPA"), (".", "ARPA")]


def test_pointer_chains_are_followed() -> None:
    # c.example -> pointer to "b" + pointer to "example" in the question.
    body = header(an=2) + question(name("a.example"))
    b_at = len(body)
    body += rr(b"\x01b" + ptr(14), 1, bytes(4))
    body += rr(b"\x01c" + ptr(b_at), 1, bytes(4))
    assert [a.name for a in parse_message(body).answers] == ["b.example", "c.b.example"]


def test_pointer_to_itself_is_an_error_not_a_hang() -> None:
    body = header(an=1) + question(name("x.example"))
    body += rr(ptr(len(body)), 1, bytes(4))
    assert "backwards" in wire_error(body).reason


def test_mutual_pointers_are_an_error_not_a_hang() -> None:
    body = header(an=1) + question(name("x.example"))
    a_at = len(body)
    # Owner at a_at points to a_at + 2, which points back to a_at.
    body += ptr(a_at + 2) + ptr(a_at) + struct.pack("!HHIH", 1, 1, 0, 4) + bytes(4)
    assert "backwards" in wire_error(body).reason


def test_forward_pointer_is_an_error() -> None:
    body = header() + ptr(14) + b"\x00" + struct.pack("!HH", 1, 1)
    assert "backwards" in wire_error(body).reason


def test_pointer_hop_bound() -> None:
    """A name reached through MAX_POINTER_HOPS pointers resolves; one more is refused."""
    for followed, ok in ((MAX_POINTER_HOPS, True), (MAX_POINTER_HOPS + 1, False)):
        # A chain of pointers, each to the one before and the first to the
        # question name, kept in a NULL record's rdata (which is never read);
        # the A record's owner is one more pointer, to the chain's last link.
        links = followed - 1
        body = header(an=2) + question(name("a.example"))
        fixed = b"\x00" + struct.pack("!HHIH", 10, 1, 0, 2 * links)
        start = len(body) + len(fixed)
        body += fixed + b"".join(ptr(12 if i == 0 else start + 2 * (i - 1)) for i in range(links))
        body += rr(ptr(start + 2 * (links - 1)), 1, bytes(4))
        if ok:
            assert parse_message(body).answers[1].name == "a.example"
        else:
            assert "chain too long" in wire_error(body).reason


def test_name_of_255_octets_is_accepted_and_256_refused() -> None:
    # 4 labels of 63 octets = 4 * 64 = 256 octets + root: too long.
    too_long = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00"
    assert "longer than 255" in wire_error(header() + question(too_long)).reason
    # 3 * 64 + 1 + 61 + 1 (root) = 255 octets exactly.
    longest = b"".join(b"\x3f" + b"a" * 63 for _ in range(3)) + b"\x3d" + b"b" * 61 + b"\x00"
    assert len(longest) == 255
    assert len(parse_message(header() + question(longest)).questions[0].name) == 253


def test_name_too_long_through_a_pointer() -> None:
    base = b"".join(b"\x3f" + b"a" * 63 for _ in range(3)) + b"\x3d" + b"b" * 61 + b"\x00"
    body = header(an=1) + question(base) + rr(b"\x01x" + ptr(12), 1, bytes(4))
    assert "longer than 255" in wire_error(body).reason


def test_reserved_label_types_are_refused() -> None:
    assert "label type 0x40" in wire_error(header() + b"\x41x\x00" + struct.pack("!HH", 1, 1)).reason
    assert "label type 0x80" in wire_error(header() + b"\x81x\x00" + struct.pack("!HH", 1, 1)).reason


def test_name_escapes() -> None:
    odd = b"\x05a.b\\c" + b"\x03\x01\x7f\xff" + b"\x09Caf\xc3\xa9 Bar" + b"\x00"
    q = parse_message(header() + question(odd)).questions[0]
    # '.' and '\\' inside a label are escaped, control bytes and non-UTF-8 become
    # \DDD, UTF-8 text and spaces stay as they are (mDNS instance names).
    assert q.name == "a\\.b\\\\c.\\001\\127\\255.Café Bar"


def test_hostile_pointer_fan_out_stays_linear() -> None:
    """Pointers into every label of a 127-label name: refused after bounded work."""
    long_name = b"\x01a" * 127 + b"\x00"
    body = header(an=127) + question(long_name)
    for i in range(127):
        body += rr(b"\x00", 2, ptr(12 + 2 * i))
    started = time.perf_counter()
    assert "decoding work" in wire_error(body).reason
    assert time.perf_counter() - started < 0.5


# --------------------------------------------------------------------------- counts and truncation


def test_counts_larger_than_the_message_are_refused_at_once() -> None:
    assert "counts exceed" in wire_error(header(an=0xFFFF) + question(name("a.example"))).reason


@pytest.mark.parametrize("cut", [1, 5, 11])
def test_short_header(cut: int) -> None:
    assert wire_error(header()[:cut]).offset == 0


def test_truncated_rdata() -> None:
    full = answer_message(1, bytes([192, 0, 2, 1]))
    for cut in range(len(full) - 14, len(full)):
        assert wire_error(full[:cut]).reason


def test_rdata_length_past_the_end() -> None:
    body = header(an=1) + question(name("a.example")) + ptr(12) + struct.pack("!HHIH", 16, 1, 0, 50) + b"\x04abcd"
    assert "record data runs past" in wire_error(body).reason


def test_name_overrunning_its_rdata() -> None:
    # An empty CNAME rdata followed by more bytes: the name would be read from outside it.
    assert "overruns" in wire_error(answer_message(5, b"") + b"\x00").reason
    # CNAME rdata of 3 bytes holding a longer name.
    body = header(an=1) + question(name("a.example")) + ptr(12) + struct.pack("!HHIH", 5, 1, 0, 3) + name("x.example")
    assert "overruns" in wire_error(body).reason


@pytest.mark.parametrize(
    ("rtype", "rdata", "reason"),
    [
        (1, bytes(5), "A record data is not 4 bytes"),
        (28, bytes(4), "AAAA record data is not 16 bytes"),
        (15, b"\x00", "MX record data too short"),
        (33, b"\x00\x01\x00\x02", "SRV record data too short"),
        (6, name("ns.example") + name("h.example") + bytes(19), "SOA record data too short"),
        (16, b"\x05abc", "character-string overruns"),
        (5, b"", "runs past the end"),
    ],
)
def test_bad_rdata_of_presented_types(rtype: int, rdata: bytes, reason: str) -> None:
    assert reason in wire_error(answer_message(rtype, rdata)).reason


# --------------------------------------------------------------------------- presentation of every type


def test_a() -> None:
    assert one_answer(1, bytes([192, 0, 2, 255])).data == "192.0.2.255"


@pytest.mark.parametrize(
    ("hex_groups", "text"),
    [
        # RFC 5952 section 4: the recommended text form.
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"),
        ("2001:0db8:0000:0001:0001:0001:0001:0001", "2001:db8:0:1:1:1:1:1"),  # 4.2.2: no :: for one group
        ("2001:0000:0000:0001:0000:0000:0000:0001", "2001:0:0:1::1"),  # 4.2.3: the longer run
        ("2001:0db8:0000:0000:0001:0000:0000:0001", "2001:db8::1:0:0:1"),  # 4.2.3: the first of equal runs
        ("2001:0db8:0000:0000:0000:0000:aaaa:0001", "2001:db8::aaaa:1"),  # 4.3: lower case
        ("0000:0000:0000:0000:0000:0000:0000:0000", "::"),
        ("0000:0000:0000:0000:0000:0000:0000:0001", "::1"),
    ],
)
def test_aaaa_rfc5952(hex_groups: str, text: str) -> None:
    assert one_answer(28, bytes.fromhex(hex_groups.replace(":", ""))).data == text


@pytest.mark.parametrize(("rtype", "type_text"), [(5, "CNAME"), (2, "NS"), (12, "PTR"), (39, "DNAME")])
def test_single_name_types(rtype: int, type_text: str) -> None:
    a = one_answer(rtype, b"\x06target" + ptr(12))
    assert (a.type, a.data, a.txt) == (type_text, "target.example.com", None)
    assert one_answer(rtype, b"\x00").data == "."


def test_mx() -> None:
    assert one_answer(15, struct.pack("!H", 10) + b"\x04mail" + ptr(12)).data == "10 mail.example.com"


def test_srv() -> None:
    rdata = struct.pack("!HHH", 0, 5, 5060) + name("sipserver.example.com")
    a = one_answer(33, rdata, "_sip._tcp.example.com")
    assert (a.name, a.data) == ("_sip._tcp.example.com", "0 5 5060 sipserver.example.com")


def test_soa() -> None:
    timers = struct.pack("!5I", 2024010101, 7200, 3600, 1209600, 300)
    rdata = name("ns1.example.com") + b"\x0ahostmaster" + ptr(12) + timers
    assert one_answer(6, rdata).data == "ns1.example.com hostmaster.example.com 2024010101 7200 3600 1209600 300"


@pytest.mark.parametrize("rtype", [16, 99])
def test_txt_and_spf(rtype: int) -> None:
    a = one_answer(rtype, b"\x05v=spf\x01 \x00\x04caf\xc3")
    # Strings are concatenated; each is also kept; bytes that are not UTF-8 become \DDD.
    assert a.txt == ("v=spf", " ", "", "caf\\195")
    assert a.data == "v=spf caf\\195"
    empty = one_answer(rtype, b"")
    assert (empty.data, empty.txt) == ("", ())


@pytest.mark.parametrize(
    ("rtype", "type_text"),
    [(46, "RRSIG"), (48, "DNSKEY"), (65, "HTTPS"), (257, "CAA"), (10, "NULL"), (65534, "TYPE65534")],
)
def test_other_types_have_no_data(rtype: int, type_text: str) -> None:
    a = one_answer(rtype, b"\x01\x02\x03")
    assert (a.type, a.data, a.txt) == (type_text, None, None)


def test_type_and_class_names() -> None:
    assert [type_name(t) for t in (1, 28, 41, 52, 64, 65, 99, 255, 256, 32769, 54, 0)] == [
        "A", "AAAA", "OPT", "TLSA", "SVCB", "HTTPS", "SPF", "ANY", "URI", "DLV", "TYPE54", "TYPE0",
    ]  # fmt: skip
    assert [class_name(c) for c in (1, 3, 4, 254, 255, 2)] == ["IN", "CH", "HS", "NONE", "ANY", "CLASS2"]


def test_answer_fields() -> None:
    a = one_answer(1, bytes([10, 1, 2, 3]))
    assert a == DnsAnswer(
        name="example.com", type="A", ttl=3600, data="10.1.2.3", txt=None, rclass="IN", cache_flush=False
    )


def test_ttl_is_unsigned() -> None:
    body = header(an=1) + question(name("a.example")) + rr(ptr(12), 1, bytes(4), ttl=0xFFFFFFFF)
    assert parse_message(body).answers[0].ttl == 0xFFFFFFFF


def test_sections_and_edns() -> None:
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0x00008000, 0)
    body = header(an=1, ns=1, ar=2) + question(name("example.org"), 1)
    body += rr(ptr(12), 1, bytes([198, 51, 100, 1]))
    body += rr(ptr(12), 2, b"\x02ns" + ptr(12))
    body += rr(b"\x02ns" + ptr(12), 28, bytes(15) + b"\x01")
    body += opt
    m = parse_message(body)
    assert [a.data for a in m.answers] == ["198.51.100.1"]
    assert [a.data for a in m.authority] == ["ns.example.org"]
    assert [(a.name, a.type, a.data) for a in m.additional] == [("ns.example.org", "AAAA", "::1"), (".", "OPT", None)]
    assert (m.edns_udp_size, m.dnssec_ok) == (1232, True)
    assert m.additional[1].rclass == "CLASS1232"


def test_mdns_class_bits() -> None:
    body = header(flags=0x8400, qd=1, an=1) + question(name("printer.local"), 255, 0x8001)
    body += rr(ptr(12), 1, bytes([169, 254, 1, 2]), rclass=0x8001)
    plain = parse_message(body)
    assert (plain.questions[0].qclass, plain.answers[0].rclass) == ("CLASS32769", "CLASS32769")
    assert not plain.answers[0].cache_flush
    m = parse_message(body, mdns=True)
    assert (m.questions[0].qclass, m.questions[0].unicast_response) == ("IN", True)
    assert (m.answers[0].rclass, m.answers[0].cache_flush) == ("IN", True)


def test_slot_constructor_matches_keyword_init() -> None:
    build = slot_constructor(DnsQuestion)
    expected = DnsQuestion(name="a.example", type="MX", qclass="CH", unicast_response=True)
    assert build("a.example", "MX", "CH", True) == expected


def test_slot_constructor_refuses_field_names_it_uses_itself() -> None:
    @dataclass(frozen=True, slots=True)
    class Clash:
        o: int  # the generated function's own local

    with pytest.raises(ValueError, match="Clash"):
        slot_constructor(Clash)


# --------------------------------------------------------------------------- robustness


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_arbitrary_bytes_raise_only_the_typed_error(data: bytes, mdns: bool) -> None:
    try:
        parse_message(data, mdns=mdns)
    except DnsWireError as exc:
        assert 0 <= exc.offset <= len(data)


SAMPLE = (
    header(an=3, ns=1, ar=1)
    + question(name("www.example.com"), 1)
    + rr(ptr(12), 5, b"\x03cdn" + ptr(16))
    + rr(ptr(45), 1, bytes([192, 0, 2, 1]))  # "cdn.example.com" is the first rdata, at 45
    + rr(ptr(12), 16, b"\x03abc\x02de")
    + rr(ptr(16), 6, b"\x02ns" + ptr(16) + b"\x01h" + ptr(16) + bytes(20))
    + rr(b"\x00", 41, b"", ttl=0)
)


def test_every_prefix_is_reported_as_truncated() -> None:
    for cut in range(len(SAMPLE)):
        assert wire_error(SAMPLE[:cut]).truncated, cut


def test_structural_errors_are_not_truncation() -> None:
    body = header(an=1) + question(name("x.example"))
    assert not wire_error(body + rr(ptr(len(body)), 1, bytes(4))).truncated
    assert not wire_error(answer_message(1, bytes(5))).truncated


def test_sample_parses() -> None:
    m = parse_message(SAMPLE)
    assert [(a.name, a.data) for a in m.answers] == [
        ("www.example.com", "cdn.example.com"),
        ("cdn.example.com", "192.0.2.1"),
        ("www.example.com", "abcde"),
    ]
    assert m.authority[0].data == "ns.example.com h.example.com 0 0 0 0 0"


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_messages_never_escape_as_other_exceptions(edits: List[Tuple[int, int]]) -> None:
    buf = bytearray(SAMPLE)
    for pos, value in edits:
        buf[pos] = value
    event = message_event(bytes(buf), 0)
    assert isinstance(event, (DnsMessage, DnsError))


# --------------------------------------------------------------------------- an independent encoder


_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_names = st.lists(_label, min_size=1, max_size=4).map(".".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    qname=_names,
    cname=_names,
    mx=st.tuples(st.integers(0, 65535), _names),
    srv=st.tuples(st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535), _names),
    ipv4=st.tuples(*[st.integers(0, 255)] * 4),
    txt=st.lists(st.text(alphabet="abc xyz=;", max_size=20), min_size=1, max_size=3),
    ttl=st.integers(0, 2**31 - 1),
)
def test_dnslib_encoded_messages_read_back(
    qname: str,
    cname: str,
    mx: Tuple[int, str],
    srv: Tuple[int, int, int, str],
    ipv4: Tuple[int, int, int, int],
    txt: Sequence[str],
    ttl: int,
) -> None:
    """dnslib (independent code) compresses the names; the reader must return what went in."""
    dnslib = pytest.importorskip("dnslib")
    record = dnslib.DNSRecord(dnslib.DNSHeader(id=77, qr=1, aa=1, ra=1), q=dnslib.DNSQuestion(qname, dnslib.QTYPE.A))
    a_text = ".".join(map(str, ipv4))
    record.add_answer(dnslib.RR(qname, dnslib.QTYPE.CNAME, rdata=dnslib.CNAME(cname), ttl=ttl))
    record.add_answer(dnslib.RR(cname, dnslib.QTYPE.A, rdata=dnslib.A(a_text), ttl=ttl))
    record.add_answer(dnslib.RR(cname, dnslib.QTYPE.MX, rdata=dnslib.MX(mx[1], mx[0]), ttl=ttl))
    record.add_answer(dnslib.RR(cname, dnslib.QTYPE.SRV, rdata=dnslib.SRV(srv[0], srv[1], srv[2], srv[3]), ttl=ttl))
    record.add_answer(dnslib.RR(qname, dnslib.QTYPE.TXT, rdata=dnslib.TXT([t.encode() for t in txt]), ttl=ttl))
    m = parse_message(record.pack())
    assert m.trans_id == 77 and m.questions[0].name == qname
    got: List[Tuple[str, str, int, Optional[str]]] = [(a.name, a.type, a.ttl, a.data) for a in m.answers]
    assert got == [
        (qname, "CNAME", ttl, cname),
        (cname, "A", ttl, a_text),
        (cname, "MX", ttl, f"{mx[0]} {mx[1]}"),
        (cname, "SRV", ttl, f"{srv[0]} {srv[1]} {srv[2]} {srv[3]}"),
        (qname, "TXT", ttl, "".join(txt)),
    ]
    assert m.answers[4].txt == tuple(txt)
