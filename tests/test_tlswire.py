"""Tests of flowscope.parsers._tlswire: hellos, JA3/JA4, names and handshake reassembly.

Expected values come from published vectors (the JA4 specification's
example, Salesforce's JA3 README, a browserleaks.com capture), from the
corpus's tshark ground truth, and from hand-made bytes whose meaning is
known by construction.  This file also holds the test-only helpers that
decode corpus captures into TCP byte streams (until flowscope's own
reassembler lands) and build hello messages; ``test_tls.py`` imports them.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import dpkt
import pytest
from flowscope.parsers._tlswire import (
    CIPHER_SUITE_NAMES,
    HELLO_RETRY_REQUEST_RANDOM,
    ClientHello,
    ContentType,
    HandshakeLimits,
    HandshakeReassembler,
    HandshakeType,
    cipher_name,
    is_grease,
    ja3,
    ja3s,
    ja4,
    ja4_r,
    parse_certificate_list,
    parse_client_hello,
    parse_server_hello,
    version_name,
)
from hypothesis import given, settings
from hypothesis import strategies as st

# =========================================================================== helpers: building messages


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


def sni_ext(name: str) -> Tuple[int, bytes]:
    raw = name.encode()
    entry = b"\x00" + u16(len(raw)) + raw
    return 0x0000, u16(len(entry)) + entry


def alpn_ext(*names: bytes) -> Tuple[int, bytes]:
    entries = b"".join(bytes([len(n)]) + n for n in names)
    return 0x0010, u16(len(entries)) + entries


def u16_list_ext(ext_type: int, values: Sequence[int]) -> Tuple[int, bytes]:
    """An extension whose body is a 2-byte-length list of 16-bit values (groups, signature algorithms)."""
    body = b"".join(u16(v) for v in values)
    return ext_type, u16(len(body)) + body


def versions_ext(values: Sequence[int]) -> Tuple[int, bytes]:
    body = b"".join(u16(v) for v in values)
    return 0x002B, bytes([len(body)]) + body


def point_formats_ext(values: Sequence[int]) -> Tuple[int, bytes]:
    return 0x000B, bytes([len(values)]) + bytes(values)


def client_hello_body(
    *,
    version: int = 0x0303,
    ciphers: Sequence[int] = (0x1301,),
    extensions: Optional[Sequence[Tuple[int, bytes]]] = (),
    session_id: bytes = b"",
    compression: bytes = b"\x00",
) -> bytes:
    """A ClientHello body; ``extensions=None`` omits the extension block (SSL 3.0 style)."""
    out = u16(version) + bytes(range(32)) + bytes([len(session_id)]) + session_id
    out += u16(2 * len(ciphers)) + b"".join(u16(c) for c in ciphers)
    out += bytes([len(compression)]) + compression
    if extensions is not None:
        block = b"".join(u16(t) + u16(len(b)) + b for t, b in extensions)
        out += u16(len(block)) + block
    return out


def server_hello_body(
    *,
    version: int = 0x0303,
    cipher: int = 0x1301,
    extensions: Optional[Sequence[Tuple[int, bytes]]] = (),
    retry: bool = False,
    session_id: bytes = b"",
) -> bytes:
    random = HELLO_RETRY_REQUEST_RANDOM if retry else bytes(range(100, 132))
    out = u16(version) + random + bytes([len(session_id)]) + session_id + u16(cipher) + b"\x00"
    if extensions is not None:
        block = b"".join(u16(t) + u16(len(b)) + b for t, b in extensions)
        out += u16(len(block)) + block
    return out


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + u24(len(body)) + body


def record(content_type: int, payload: bytes, version: int = 0x0303) -> bytes:
    return bytes([content_type]) + u16(version) + u16(len(payload)) + payload


# =========================================================================== helpers: decoding captures

Endpoint = Tuple[str, int]
StreamItem = Tuple[int, str, Any, int]
"""``(side, kind, value, ts)``: side 0/1, kind ``data`` (bytes) or ``gap`` (length)."""


def _read_frames(path: Path) -> Iterator[Tuple[int, int, bytes]]:
    """``(ts_ns, linktype, frame)`` of every packet in a pcap or pcapng file (magic-number detected)."""
    data = path.read_bytes()
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        linktypes: List[int] = []
        pos = 0
        while pos + 12 <= len(data):
            block_type, block_len = struct.unpack_from(endian + "II", data, pos)
            body = pos + 8
            if block_type == 1:  # interface description
                linktypes.append(struct.unpack_from(endian + "H", data, body)[0])
            elif block_type == 6:  # enhanced packet (default resolution: microseconds)
                iface, hi, lo, caplen = struct.unpack_from(endian + "IIII", data, body)
                yield ((hi << 32) | lo) * 1000, linktypes[iface], data[body + 20 : body + 20 + caplen]
            elif block_type == 3:  # simple packet
                yield 0, linktypes[0], data[body + 4 : pos + block_len - 4]
            pos += block_len
        return
    formats = {
        b"\xd4\xc3\xb2\xa1": ("<", 1000),
        b"\xa1\xb2\xc3\xd4": (">", 1000),
        b"\x4d\x3c\xb2\xa1": ("<", 1),
        b"\xa1\xb2\x3c\x4d": (">", 1),
    }
    endian, scale = formats[data[:4]]
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack_from(endian + "IIII", data, pos)
        pos += 16
        yield sec * 1_000_000_000 + frac * scale, linktype, data[pos : pos + caplen]
        pos += caplen


def _ip_packet(linktype: int, frame: bytes) -> Any:
    """The IPv4/IPv6 packet inside a frame: Ethernet (VLAN, QinQ, PPPoE), BSD NULL, Linux SLL, raw IP."""
    try:
        if linktype == 1:
            pkt = dpkt.ethernet.Ethernet(frame).data
        elif linktype == 0:
            pkt = dpkt.loopback.Loopback(frame).data
        elif linktype == 113:
            pkt = dpkt.sll.SLL(frame).data
        elif linktype == 101:
            pkt = dpkt.ip.IP(frame) if frame[0] >> 4 == 4 else dpkt.ip6.IP6(frame)
        else:
            return None
    except (dpkt.UnpackError, IndexError, struct.error):
        return None
    while isinstance(pkt, (dpkt.pppoe.PPPoE, dpkt.ppp.PPP)):
        pkt = pkt.data
    return pkt if isinstance(pkt, (dpkt.ip.IP, dpkt.ip6.IP6)) else None


@functools.lru_cache(maxsize=8)
def _tcp_segments(path: Path) -> Dict[frozenset[Endpoint], List[Tuple[Endpoint, int, int, int, bytes]]]:
    """Every TCP segment of a capture, by conversation: ``(src, ts, seq, flags, payload)`` in file order."""
    conversations: Dict[frozenset[Endpoint], List[Tuple[Endpoint, int, int, int, bytes]]] = {}
    for ts, linktype, frame in _read_frames(path):
        ip = _ip_packet(linktype, frame)
        if ip is None or not isinstance(ip.data, dpkt.tcp.TCP):
            continue
        tcp = ip.data
        src = (str(ipaddress.ip_address(ip.src)), tcp.sport)
        dst = (str(ipaddress.ip_address(ip.dst)), tcp.dport)
        conversations.setdefault(frozenset((src, dst)), []).append((src, ts, tcp.seq, tcp.flags, bytes(tcp.data)))
    return conversations


@dataclass
class _InOrder:
    """One direction's in-order delivery: drops retransmitted bytes, holds early segments, reports holes at the end."""

    base: Optional[int] = None
    next_rel: int = 0
    early: Dict[int, bytes] = field(default_factory=dict)

    def segment(self, seq: int, flags: int, payload: bytes) -> List[Tuple[str, Any]]:
        if flags & dpkt.tcp.TH_SYN:
            self.base = (seq + 1) & 0xFFFFFFFF
            return []
        if not payload:
            return []
        if self.base is None:
            self.base = seq
        rel = (seq - self.base) & 0xFFFFFFFF
        if rel >= 0x80000000 or rel + len(payload) <= self.next_rel:
            return []  # before the stream start, or wholly retransmitted
        if rel > self.next_rel:
            if len(self.early.get(rel, b"")) < len(payload):
                self.early[rel] = payload
            return []
        out: List[Tuple[str, Any]] = [("data", payload[self.next_rel - rel :])]
        self.next_rel = rel + len(payload)
        out.extend(self._drain())
        return out

    def _drain(self) -> List[Tuple[str, Any]]:
        out: List[Tuple[str, Any]] = []
        while self.early:
            rel = min(self.early)
            if rel > self.next_rel:
                break
            payload = self.early.pop(rel)
            if rel + len(payload) > self.next_rel:
                out.append(("data", payload[self.next_rel - rel :]))
                self.next_rel = rel + len(payload)
        return out

    def flush(self) -> List[Tuple[str, Any]]:
        out: List[Tuple[str, Any]] = []
        while self.early:
            rel = min(self.early)
            if rel > self.next_rel:
                out.append(("gap", rel - self.next_rel))
                self.next_rel = rel
            out.extend(self._drain())
        return out


def tcp_stream_items(path: Path, a: Endpoint, b: Endpoint) -> List[StreamItem]:
    """The conversation between ``a`` (side 0) and ``b`` (side 1) as in-order deliveries, in capture order.

    Retransmitted bytes are dropped; out-of-order segments are held until
    the hole before them fills; holes never filled become ``gap`` items at
    the end, followed by the bytes after them.
    """
    sides = (_InOrder(), _InOrder())
    items: List[StreamItem] = []
    last_ts = 0
    for src, ts, seq, flags, payload in _tcp_segments(path).get(frozenset((a, b)), []):
        side = 0 if src == a else 1
        last_ts = ts
        items.extend((side, kind, value, ts) for kind, value in sides[side].segment(seq, flags, payload))
    for side in (0, 1):
        items.extend((side, kind, value, last_ts) for kind, value in sides[side].flush())
    return items


def corpus_captures_with_tls(corpus: Path) -> List[Tuple[Path, Dict[str, Any]]]:
    """``(capture, truth)`` for every corpus capture with at least one TCP TLS handshake."""
    found = []
    for truth_path in sorted(corpus.glob("*.truth.json")):
        truth = json.loads(truth_path.read_text())
        if any(r["transport"] != "quic" for r in truth["tls"]):
            stem = truth_path.name[: -len(".truth.json")]
            capture = next(p for p in (corpus / f"{stem}.pcap", corpus / f"{stem}.pcapng") if p.exists())
            found.append((capture, truth))
    return found


def flow_endpoints(truth: Dict[str, Any], flow: int) -> Tuple[Endpoint, Endpoint]:
    record = truth["flows"][flow]
    return (
        (record["initiator"]["ip"], record["initiator"]["port"]),
        (record["responder"]["ip"], record["responder"]["port"]),
    )


# =========================================================================== GREASE, names


def test_grease_values_are_exactly_the_rfc8701_set() -> None:
    expected = {0x0A0A + 0x1010 * i for i in range(16)}
    assert {v for v in range(0x10000) if is_grease(v)} == expected


def test_version_names() -> None:
    assert version_name(0x0300) == "SSLv3"
    assert version_name(0x0301) == "TLSv1.0"
    assert version_name(0x0303) == "TLSv1.2"
    assert version_name(0x0304) == "TLSv1.3"
    assert version_name(0x7F1C) == "0x7f1c"
    assert version_name(0xFB1A) == "0xfb1a"


def test_cipher_names_follow_iana() -> None:
    # Values and names from the IANA TLS Cipher Suites registry and the RFCs that define them.
    assert cipher_name(0x0004) == "TLS_RSA_WITH_RC4_128_MD5"
    assert cipher_name(0x002F) == "TLS_RSA_WITH_AES_128_CBC_SHA"
    assert cipher_name(0x009C) == "TLS_RSA_WITH_AES_128_GCM_SHA256"
    assert cipher_name(0x00FF) == "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"
    assert cipher_name(0x1301) == "TLS_AES_128_GCM_SHA256"
    assert cipher_name(0x1302) == "TLS_AES_256_GCM_SHA384"
    assert cipher_name(0x1303) == "TLS_CHACHA20_POLY1305_SHA256"
    assert cipher_name(0x5600) == "TLS_FALLBACK_SCSV"
    assert cipher_name(0xC011) == "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
    assert cipher_name(0xC02B) == "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
    assert cipher_name(0xC02F) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert cipher_name(0xC030) == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    assert cipher_name(0xCCA8) == "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
    assert cipher_name(0xCCA9) == "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
    assert cipher_name(0x0A0A) == "0x0a0a"
    assert cipher_name(0xFEFE) == "0xfefe"
    assert len(CIPHER_SUITE_NAMES) > 340
    assert all(name.startswith("TLS_") for name in CIPHER_SUITE_NAMES.values())


# =========================================================================== JA3 / JA4 published vectors

# The JA4 specification's worked example (FoxIO-LLC/ja4, technical_details/JA4.md):
# a Chrome ClientHello whose raw form is below and whose JA4 is t13d1516h2_8daaf6152771_e5627efa2ab1.
_SPEC_RAW = (
    "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"
    "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_"
    "0403,0804,0401,0503,0805,0501,0806,0601"
)
_CHROME_CIPHERS = (
    0x1301,
    0x1302,
    0x1303,
    0xC02B,
    0xC02F,
    0xC02C,
    0xC030,
    0xCCA9,
    0xCCA8,
    0xC013,
    0xC014,
    0x009C,
    0x009D,
    0x002F,
    0x0035,
)
_CHROME_SIGALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)


def _spec_example_hello() -> ClientHello:
    exts = [
        (0x3A3A, b""),  # GREASE extension
        sni_ext("example.com"),
        (0x0017, b""),
        (0xFF01, b"\x00"),
        u16_list_ext(0x000A, (0x8A8A, 0x001D, 0x0017, 0x0018)),
        point_formats_ext((0,)),
        (0x0023, b""),
        alpn_ext(b"h2", b"http/1.1"),
        (0x0005, b"\x01\x00\x00\x00\x00"),
        u16_list_ext(0x000D, _CHROME_SIGALGS),
        (0x0012, b""),
        (0x0033, b"\x00\x00"),
        (0x002D, b"\x01\x01"),
        versions_ext((0x4A4A, 0x0304, 0x0303)),
        (0x001B, b"\x00\x02\x00\x02"),
        (0x4469, b"\x00\x00"),
        (0x0015, b"\x00" * 10),
        (0x5A5A, b"\x00"),  # GREASE extension
    ]
    hello = parse_client_hello(client_hello_body(ciphers=(0x2A2A,) + _CHROME_CIPHERS, extensions=exts))
    assert hello is not None
    return hello


def test_ja4_specification_example() -> None:
    hello = _spec_example_hello()
    assert ja4_r(hello) == _SPEC_RAW
    assert ja4(hello) == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert ja4(hello, "q").startswith("q13d1516h2_")


def test_browserleaks_chrome_vector() -> None:
    """JA3 and JA4 published by browserleaks.com for one Chrome 143 hello (wire order given there as ja4_ro)."""
    order = (
        0x002D,
        0x0033,
        0x0010,
        0xFE0D,
        0x0017,
        0x44CD,
        0x0000,
        0x000B,
        0x000A,
        0x002B,
        0xFF01,
        0x0023,
        0x0012,
        0x0005,
        0x000D,
        0x001B,
    )
    bodies: Dict[int, bytes] = {
        0x0000: sni_ext("tls.browserleaks.com")[1],
        0x0010: alpn_ext(b"h2", b"http/1.1")[1],
        0x000A: u16_list_ext(0x000A, (4588, 29, 23, 24))[1],
        0x000B: point_formats_ext((0,))[1],
        0x000D: u16_list_ext(0x000D, _CHROME_SIGALGS)[1],
        0x002B: versions_ext((0x0304, 0x0303))[1],
    }
    hello = parse_client_hello(
        client_hello_body(ciphers=_CHROME_CIPHERS, extensions=[(t, bodies.get(t, b"")) for t in order])
    )
    assert hello is not None
    text, digest = ja3(hello)
    assert text == (
        "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,"
        "45-51-16-65037-23-17613-0-11-10-43-65281-35-18-5-13-27,4588-29-23-24,0"
    )
    assert digest == "98487aa16281980e7d1120d399efb6a4"
    assert ja4(hello) == "t13d1516h2_8daaf6152771_d8a2da3f94cd"


def test_ja3_salesforce_readme_example() -> None:
    """The JA3 README's example string and MD5, rebuilt from a TLS 1.0 hello with GREASE sprinkled in."""
    hello = parse_client_hello(
        client_hello_body(
            version=0x0301,
            ciphers=(0x0A0A, 47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4),
            extensions=[
                sni_ext("a.example"),
                (0xDADA, b""),
                u16_list_ext(10, (0xBABA, 23, 24, 25)),
                point_formats_ext((0,)),
            ],
        )
    )
    assert hello is not None
    assert ja3(hello) == (
        "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0",
        "ada70206e40642a3e4461f35503241d5",
    )


# =========================================================================== JA4 rules on hand-made hellos


def test_ja4_ssl3_without_extensions() -> None:
    hello = parse_client_hello(client_hello_body(version=0x0300, ciphers=(0x0004, 0x0005), extensions=None))
    assert hello is not None and hello.extensions == ()
    assert ja4(hello).startswith("ts3i020000_")
    assert ja4(hello).endswith("_000000000000")
    assert ja3(hello)[0] == "768,4-5,,,"


def test_ja4_alpn_that_is_not_alphanumeric_uses_hex_digits() -> None:
    # The JA4 specification (since 2024-08): first value 0xBA 0xAD gives "bd".
    hello = parse_client_hello(client_hello_body(extensions=[alpn_ext(b"\xba\xad")]))
    assert hello is not None
    assert ja4(hello)[8:10] == "bd"
    upper = parse_client_hello(client_hello_body(extensions=[alpn_ext(b"H2")]))
    assert upper is not None and ja4(upper)[8:10] == "H2"
    single = parse_client_hello(client_hello_body(extensions=[alpn_ext(b"x")]))
    assert single is not None and ja4(single)[8:10] == "xx"
    none = parse_client_hello(client_hello_body(extensions=[alpn_ext()]))
    assert none is not None and ja4(none)[8:10] == "00"


def test_ja4_counts_cap_at_99_and_unknown_versions_give_00() -> None:
    ciphers = tuple(range(0x0100, 0x0100 + 120))
    exts = [(0x1000 + i, b"") for i in range(105)] + [versions_ext((0x7F1C,))]
    hello = parse_client_hello(client_hello_body(ciphers=ciphers, extensions=exts))
    assert hello is not None
    assert ja4(hello)[:10] == "t00i999900"


def test_ja4_version_prefers_supported_versions_and_ignores_grease() -> None:
    hello = parse_client_hello(client_hello_body(version=0x0303, extensions=[versions_ext((0xFAFA, 0x0302, 0x0301))]))
    assert hello is not None
    assert ja4(hello)[1:3] == "11"


# =========================================================================== hello parsing


def test_client_hello_fields() -> None:
    body = client_hello_body(
        session_id=b"\x07" * 32,
        ciphers=(0xFAFA, 0x1301),
        extensions=[
            sni_ext("www.example.org"),
            alpn_ext(b"h2", b"http/1.1"),
            versions_ext((0x2A2A, 0x0304)),
            u16_list_ext(0x000D, (0x0403,)),
        ],
    )
    hello = parse_client_hello(body)
    assert hello is not None
    assert hello.legacy_version == 0x0303
    assert hello.random == bytes(range(32))
    assert hello.session_id == b"\x07" * 32
    assert hello.cipher_suites == (0xFAFA, 0x1301)
    assert hello.compression_methods == b"\x00"
    assert hello.server_name == "www.example.org"
    assert hello.alpn == ("h2", "http/1.1")
    assert hello.supported_versions == (0x2A2A, 0x0304)
    assert hello.signature_algorithms == (0x0403,)
    assert hello.extension_types == (0x0000, 0x0010, 0x002B, 0x000D)


def test_client_hello_truncated_at_every_length_never_raises() -> None:
    body = _spec_example_hello()
    raw = client_hello_body(ciphers=body.cipher_suites, extensions=list(body.extensions))
    assert parse_client_hello(raw) == body
    for cut in range(len(raw)):
        truncated = parse_client_hello(raw[:cut])
        # Cutting exactly after the compression methods leaves a valid extension-less hello.
        assert truncated is None or truncated.extensions == ()


def test_client_hello_rejects_bad_structure() -> None:
    assert parse_client_hello(client_hello_body(session_id=b"\x00" * 33)) is None
    odd_ciphers = bytearray(client_hello_body())
    odd_ciphers[36] = 3  # cipher_suites length must be even
    assert parse_client_hello(bytes(odd_ciphers)) is None
    overrun = client_hello_body(extensions=[sni_ext("a")])[:-1]
    assert parse_client_hello(overrun) is None


def test_server_hello_fields_and_retry() -> None:
    sh = parse_server_hello(server_hello_body(cipher=0x1302, extensions=[(0x002B, b"\x03\x04"), alpn_ext(b"h2")]))
    assert sh is not None
    assert sh.cipher_suite == 0x1302
    assert sh.selected_version == 0x0304 and sh.negotiated_version == 0x0304
    assert sh.alpn == "h2"
    assert not sh.is_hello_retry_request
    assert ja3s(sh) == ("771,4866,43-16", hashlib.md5(b"771,4866,43-16").hexdigest())
    hrr = parse_server_hello(server_hello_body(retry=True))
    assert hrr is not None and hrr.is_hello_retry_request
    old = parse_server_hello(server_hello_body(version=0x0300, extensions=None))
    assert old is not None and old.selected_version is None and old.negotiated_version == 0x0300
    assert parse_server_hello(server_hello_body()[:37]) is None


def test_certificate_list() -> None:
    chain = u24(3 + 2 + 3 + 4) + u24(2) + b"AB" + u24(4) + b"CDEF"
    assert parse_certificate_list(chain) == (b"AB", b"CDEF")
    assert parse_certificate_list(chain[:-1]) is None
    tls13 = b"\x00" + u24(3 + 2 + 2) + u24(2) + b"AB" + u16(0)
    assert parse_certificate_list(tls13, tls13=True) == (b"AB",)
    assert parse_certificate_list(b"") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    parse_client_hello(data)
    parse_server_hello(data)
    parse_certificate_list(data)
    parse_certificate_list(data, tls13=True)
    hello = parse_client_hello(data)
    if hello is not None:
        ja3(hello)
        ja4(hello)
    HandshakeReassembler().feed_records(data)
    HandshakeReassembler().feed_crypto(data)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0x0000, 0x000A, 0x000B, 0x000D, 0x0010, 0x002B, 0x0A0A]), st.binary(max_size=40)),
        max_size=8,
    )
)
def test_malformed_extension_bodies_keep_the_hello(extensions: List[Tuple[int, bytes]]) -> None:
    """A bad extension body empties that derived field; the hello and its fingerprints survive."""
    hello = parse_client_hello(client_hello_body(extensions=extensions))
    assert hello is not None and hello.extensions == tuple(extensions)
    ja3(hello)
    assert ja4(hello).count("_") == 2
    ja4_r(hello)
    server = parse_server_hello(server_hello_body(extensions=extensions))
    assert server is not None
    ja3s(server)


# =========================================================================== reassembly


def _flight() -> Tuple[bytes, List[Tuple[int, bytes]]]:
    """A server flight: ServerHello + Certificate + ServerHelloDone in two records (the chain split across them), then CCS."""
    sh = server_hello_body(cipher=0xC02F)
    cert = u24(3 + 600) + u24(600) + bytes(range(256)) * 2 + bytes(88)
    messages = handshake(2, sh) + handshake(11, cert) + handshake(14, b"")
    cut = 200
    data = record(22, messages[:cut]) + record(22, messages[cut:]) + record(20, b"\x01") + record(22, b"\x9f" * 40)
    return data, [(2, sh), (11, cert), (14, b""), (-20, b"")]


def test_messages_across_records_and_segments() -> None:
    data, expected = _flight()
    assert HandshakeReassembler().feed_records(data) == expected
    rx = HandshakeReassembler()
    got: List[Tuple[int, bytes]] = []
    for i in range(len(data)):
        got += rx.feed_records(data[i : i + 1])
    assert got == expected
    assert rx.encrypted and rx.error is None and rx.buffered == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_messages_at_any_split_points(cuts: List[int]) -> None:
    data, expected = _flight()
    rx = HandshakeReassembler()
    got: List[Tuple[int, bytes]] = []
    previous = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        got += rx.feed_records(data[previous:cut])
        previous = cut
    assert got == expected


def test_tls13_mode_keeps_parsing_after_change_cipher_spec() -> None:
    ch = handshake(1, client_hello_body())
    data = record(22, ch) + record(20, b"\x01") + record(22, ch)
    assert [t for t, _ in HandshakeReassembler().feed_records(data)] == [1, -20]
    rx = HandshakeReassembler()
    rx.set_tls13()
    assert [t for t, _ in rx.feed_records(data)] == [1, -20, 1]


def test_oversized_message_is_skipped_and_counted() -> None:
    rx = HandshakeReassembler(HandshakeLimits(max_message=100))
    big = handshake(11, bytes(500))
    data = record(22, big[:300]) + record(22, big[300:] + handshake(14, b""))
    assert rx.feed_records(data[:50]) == []
    assert rx.feed_records(data[50:]) == [(14, b"")]
    assert rx.skipped == 1 and rx.buffered == 0 and rx.error is None


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"\x17\x03\x03\x00\x05", None),
        (b"\x47\x45\x54\x20\x2f", "content type"),
        (b"\x16\x02\x00\x00\x05", "version"),
        (b"\x16\x03\x03\xff\xff", "length"),
    ],
)
def test_record_header_validation_is_sticky(header: bytes, reason: Optional[str]) -> None:
    rx = HandshakeReassembler()
    rx.feed_records(header[:3])
    items = rx.feed_records(header[3:] + b"\x00" * 5)
    if reason is None:
        assert items == [(-ContentType.APPLICATION_DATA, b"")] and rx.error is None
    else:
        assert items == [] and rx.error is not None and reason in rx.error
        assert rx.feed_records(record(22, handshake(14, b""))) == []


def test_feed_crypto_reassembles_without_record_layer() -> None:
    ch = handshake(HandshakeType.CLIENT_HELLO, client_hello_body())
    rx = HandshakeReassembler()
    assert rx.feed_crypto(ch[:10]) == []
    assert rx.feed_crypto(ch[10:] + handshake(8, b"xy")) == [(1, client_hello_body()), (8, b"xy")]


# =========================================================================== corpus ClientHellos


def _corpus_client_hellos(capture: Path, truth: Dict[str, Any]) -> List[Tuple[Dict[str, Any], ClientHello]]:
    """Each truth record's ClientHello, cut out of the client's byte stream."""
    pairs: List[Tuple[Dict[str, Any], ClientHello]] = []
    by_flow: Dict[int, List[int]] = {}
    for index, rec in enumerate(truth["tls"]):
        if rec["transport"] == "tcp" and rec["client_hello_frame"] is not None:
            by_flow.setdefault(rec["flow"], []).append(index)
    for flow, indexes in by_flow.items():
        first = truth["tls"][indexes[0]]
        client = (first["client"]["ip"], first["client"]["port"])
        server = (first["server"]["ip"], first["server"]["port"])
        rx = HandshakeReassembler()
        if any(truth["tls"][i]["hello_retry_request"] for i in indexes):
            rx.set_tls13()  # the second ClientHello follows a dummy ChangeCipherSpec
        hellos = []
        for side, kind, value, _ in tcp_stream_items(capture, client, server):
            if side == 0 and kind == "data":
                hellos += [parse_client_hello(body) for t, body in rx.feed_records(value) if t == 1]
        assert len(hellos) >= len(indexes), (capture.name, flow)
        for i, hello in zip(indexes, hellos):
            assert hello is not None
            pairs.append((truth["tls"][i], hello))
    return pairs


@pytest.mark.corpus
def test_corpus_client_hellos_match_tshark(corpus_dir: Path) -> None:
    checked = 0
    for capture, truth in corpus_captures_with_tls(corpus_dir):
        raw_by_index = {r["tls"]: r["ja4_r"] for r in truth["ja4_sources"]["records"]}
        index_of = {id(r): i for i, r in enumerate(truth["tls"])}
        for rec, hello in _corpus_client_hellos(capture, truth):
            where = (capture.name, rec["client_hello_frame"])
            assert ja3(hello) == (rec["ja3_full"], rec["ja3"]), where
            assert ja4(hello) == rec["ja4"], where
            assert ja4_r(hello) == raw_by_index[index_of[id(rec)]], where
            assert hello.server_name == rec["sni"], where
            assert list(hello.alpn) == rec["alpn_offered"], where
            assert [f"0x{v:04x}" for v in hello.supported_versions] == rec["client_supported_versions"], where
            assert f"0x{hello.legacy_version:04x}" == rec["client_version"], where
            checked += 1
    assert checked >= 85


def test_fingerprint_memo_tells_apart_every_field_it_reads_and_stays_bounded() -> None:
    from flowscope.parsers import _tlswire

    def hello(ciphers: Sequence[int], alpn: bytes, sigalgs: Sequence[int], sni: bool = True) -> ClientHello:
        exts = [alpn_ext(alpn), u16_list_ext(0x000D, sigalgs), versions_ext((0x0304,))]
        if sni:
            exts.insert(0, sni_ext("example.com"))
        h = parse_client_hello(client_hello_body(ciphers=ciphers, extensions=exts))
        assert h is not None
        return h

    base = hello((0x1301, 0x1302), b"h2", (0x0403,))
    variants = [
        hello((0x1302, 0x1301), b"h2", (0x0403,)),  # cipher order: same JA4, other JA3
        hello((0x1301, 0x1302), b"http/1.1", (0x0403,)),
        hello((0x1301, 0x1302), b"h2", (0x0804,)),
        hello((0x1301, 0x1302), b"h2", (0x0403,), sni=False),
    ]
    first = (ja3(base), ja4(base), ja4(base, "q"))
    assert (ja3(base), ja4(base), ja4(base, "q")) == first  # a hit gives what was computed
    for h in variants:
        # Memoised or not, the value is the one computed from scratch.
        _tlswire._JA3_MEMO.clear()
        _tlswire._JA4_MEMO.clear()
        cold = (ja3(h), ja4(h), ja4_r(h))
        assert (ja3(h), ja4(h), ja4_r(h)) == cold
    assert len({ja4(h) for h in variants[1:]} | {ja4(base)}) == 4
    assert ja4(variants[0]) == ja4(base) and ja3(variants[0]) != ja3(base)
    for i in range(_tlswire._MEMO_SIZE + 10):
        ja4(hello((0x1301, 0x1302), b"h2", (0x0400 + i % 60000,)))
    assert len(_tlswire._JA4_MEMO) <= _tlswire._MEMO_SIZE
