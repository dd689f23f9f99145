"""TLS handshake wire format: hellos, fingerprints and message reassembly.

Sans-I/O and free of optional dependencies, so that every protocol that
carries a TLS handshake can share it: TLS over TCP (:mod:`flowscope.parsers.tls`)
and QUIC, whose CRYPTO frames carry the same handshake messages without the
record layer.

What lives here
---------------
* :func:`parse_client_hello` / :func:`parse_server_hello` turn a handshake
  message *body* (the bytes after the 4-byte handshake header) into frozen
  values, or ``None`` when the structure does not add up.  The fields that
  fingerprints need (SNI, ALPN, supported versions, groups, point formats,
  signature algorithms) are derived once, when the value is built.
* :func:`ja3` / :func:`ja3s` (Salesforce's definition) and :func:`ja4` /
  :func:`ja4_r` (FoxIO's JA4 TLS *client* fingerprint, which is
  BSD-licensed; the other JA4+ methods are not implemented here).
* :func:`version_name` and :func:`cipher_name` give readable names, from the
  IANA registries, for record fields.
* :class:`HandshakeReassembler` turns one direction's bytes into complete
  handshake messages.

Theory of operation (:class:`HandshakeReassembler`)
----------------------------------------------------
TLS sends handshake messages (a 1-byte type, a 3-byte length, the body) as
the payload of records of content type 22.  A message may span several
records and a record may hold several messages; records themselves are
split across TCP segments in any way.  The reassembler therefore works in
two layers, each with a small amount of state:

1. *Record framing* (:meth:`HandshakeReassembler.feed_records` only).  At a
   record boundary it needs the 5-byte header; a header cut by a segment
   boundary is kept (at most 4 bytes) until the rest arrives.  Inside a
   record it only counts the bytes still to come, so record bodies are never
   buffered: handshake bytes go on to layer 2 and other bytes are skipped.
   A header whose content type, major version or length is impossible puts
   the reassembler in a sticky error state (:attr:`HandshakeReassembler.error`)
   and it ignores everything after: resynchronising on a byte stream that
   has lost its framing would only produce garbage.  Every record that is
   not a handshake record is reported in-band, in stream order, as the item
   ``(-content_type, b"")`` so that a caller sees, for example, where a
   ChangeCipherSpec fell between handshake messages.

2. *Message assembly* (both ``feed_records`` and
   :meth:`HandshakeReassembler.feed_crypto`).  Handshake bytes accumulate
   in one buffer until a whole message is present; when the buffer is
   empty and a chunk holds whole messages they are cut straight out of the
   chunk without copying it.  A message whose declared length exceeds
   :attr:`HandshakeLimits.max_message` is *skipped*, not buffered: its bytes
   are counted off as they arrive and :attr:`HandshakeReassembler.skipped`
   goes up, so the buffer never holds more than ``max_message + 3`` bytes.

Encryption: in TLS 1.2 and earlier, a ChangeCipherSpec record means that
every later record of that direction is encrypted, so handshake records
after it (the encrypted Finished) are skipped rather than misread.  In TLS
1.3, ChangeCipherSpec is a meaningless compatibility record (RFC 8446 D.4)
and the client may even send its second ClientHello after one; a caller
that learns the connection is TLS 1.3 (a HelloRetryRequest, or a
ServerHello that selected 1.3) calls :meth:`HandshakeReassembler.set_tls13`
so that ChangeCipherSpec no longer ends the plaintext.  TLS 1.3 sends its
encrypted handshake in application-data records, which are never parsed.

SSL 2.0-format ClientHellos (no record layer of type 22) are not parsed.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Dict, List, Mapping, Optional, Set, Tuple, TypeVar

__all__ = [
    "CIPHER_SUITE_NAMES",
    "HELLO_RETRY_REQUEST_RANDOM",
    "ClientHello",
    "ContentType",
    "ExtensionType",
    "HandshakeItem",
    "HandshakeLimits",
    "HandshakeReassembler",
    "HandshakeType",
    "ServerHello",
    "cipher_name",
    "is_grease",
    "ja3",
    "ja3s",
    "ja4",
    "ja4_r",
    "parse_certificate_list",
    "parse_client_hello",
    "parse_server_hello",
    "version_name",
]


class ContentType:
    """TLS record content types (RFC 8446 section 5.1, RFC 6520)."""

    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    HEARTBEAT = 24


class HandshakeType:
    """Handshake message types that flowscope acts on (IANA TLS HandshakeType)."""

    HELLO_REQUEST = 0
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    NEW_SESSION_TICKET = 4
    ENCRYPTED_EXTENSIONS = 8
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20
    CERTIFICATE_STATUS = 22


class ExtensionType:
    """Extension types that the hello parsers decode (IANA ExtensionType)."""

    SERVER_NAME = 0x0000
    SUPPORTED_GROUPS = 0x000A
    EC_POINT_FORMATS = 0x000B
    SIGNATURE_ALGORITHMS = 0x000D
    ALPN = 0x0010
    SUPPORTED_VERSIONS = 0x002B


HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
"""The ServerHello.random that marks a HelloRetryRequest (RFC 8446 section 4.1.3)."""

_U16X2 = struct.Struct(">HH")


def is_grease(value: int) -> bool:
    """True for the RFC 8701 GREASE values ``0x0a0a``, ``0x1a1a`` … ``0xfafa``."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


# A set lookup is several times cheaper than a call on the fingerprint path.
_GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))


def _u16_list(data: bytes, start: int, end: int) -> Tuple[int, ...]:
    """Big-endian 16-bit values in ``data[start:end]`` (an odd last byte is ignored)."""
    count = (end - start) >> 1
    if count <= 0:
        return ()
    return struct.unpack_from(f">{count}H", data, start)


def _vector16(body: bytes) -> Tuple[int, ...]:
    """A ``uint16 list<..>`` with a 2-byte length prefix, clipped to what is present."""
    if len(body) < 2:
        return ()
    end = min(len(body), 2 + ((body[0] << 8) | body[1]))
    return _u16_list(body, 2, end)


def _server_name(body: bytes) -> Optional[str]:
    """The first host_name of a server_name extension (RFC 6066 section 3)."""
    n = len(body)
    if n < 2:
        return None
    end = min(n, 2 + ((body[0] << 8) | body[1]))
    p = 2
    while p + 3 <= end:
        name_type = body[p]
        length = (body[p + 1] << 8) | body[p + 2]
        p += 3
        if p + length > end:
            return None
        if name_type == 0:
            return body[p : p + length].decode("utf-8", "replace")
        p += length
    return None


def _protocol_names(body: bytes) -> Tuple[bytes, ...]:
    """The raw protocol names of an ALPN extension (RFC 7301 section 3.1)."""
    n = len(body)
    if n < 2:
        return ()
    end = min(n, 2 + ((body[0] << 8) | body[1]))
    names: List[bytes] = []
    p = 2
    while p < end:
        length = body[p]
        p += 1
        if p + length > end:
            break
        names.append(body[p : p + length])
        p += length
    return tuple(names)


def _decode_names(raw: Tuple[bytes, ...]) -> Tuple[str, ...]:
    return tuple(name.decode("utf-8", "replace") for name in raw)


# --------------------------------------------------------------------------- hellos


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHello:
    """A parsed ClientHello (RFC 8446 section 4.1.2; also SSL 3.0 to TLS 1.2).

    The constructor takes the wire fields; the convenience fields below them
    are derived from ``extensions`` when the value is built (the first
    occurrence of an extension wins; a malformed extension body yields an
    empty value rather than rejecting the whole hello).
    """

    legacy_version: int
    """``client_version`` / ``legacy_version`` (``0x0303`` for TLS 1.2 and 1.3)."""
    random: bytes
    """The 32-byte client random."""
    session_id: bytes
    """The legacy session id (0 to 32 bytes)."""
    cipher_suites: Tuple[int, ...]
    """Offered cipher suites in wire order, GREASE included."""
    compression_methods: bytes
    """Offered compression methods (normally ``b"\\x00"``)."""
    extensions: Tuple[Tuple[int, bytes], ...]
    """``(type, body)`` pairs in wire order, GREASE included; empty for SSL 3.0 hellos without extensions."""

    server_name: Optional[str] = field(init=False)
    """SNI host name (the first ``host_name`` entry), or ``None``."""
    alpn_raw: Tuple[bytes, ...] = field(init=False)
    """ALPN protocol names exactly as sent (JA4 needs the bytes)."""
    alpn: Tuple[str, ...] = field(init=False)
    """ALPN protocol names, decoded as UTF-8 with replacement characters."""
    supported_versions: Tuple[int, ...] = field(init=False)
    """The supported_versions extension's list, GREASE included; empty when absent."""
    supported_groups: Tuple[int, ...] = field(init=False)
    """The supported_groups (elliptic curves) list, GREASE included."""
    ec_point_formats: Tuple[int, ...] = field(init=False)
    """The ec_point_formats list."""
    signature_algorithms: Tuple[int, ...] = field(init=False)
    """The signature_algorithms list in wire order, GREASE included."""
    extension_types: Tuple[int, ...] = field(init=False)
    """Extension types in wire order, GREASE included."""

    def __post_init__(self) -> None:
        server_name: Optional[str] = None
        alpn_raw: Tuple[bytes, ...] = ()
        versions: Tuple[int, ...] = ()
        groups: Tuple[int, ...] = ()
        formats: Tuple[int, ...] = ()
        sigalgs: Tuple[int, ...] = ()
        seen: Set[int] = set()
        for ext_type, body in self.extensions:
            if ext_type in seen:
                continue
            seen.add(ext_type)
            if ext_type == ExtensionType.SERVER_NAME:
                server_name = _server_name(body)
            elif ext_type == ExtensionType.SUPPORTED_GROUPS:
                groups = _vector16(body)
            elif ext_type == ExtensionType.EC_POINT_FORMATS and body:
                formats = tuple(body[1 : 1 + body[0]])
            elif ext_type == ExtensionType.SIGNATURE_ALGORITHMS:
                sigalgs = _vector16(body)
            elif ext_type == ExtensionType.ALPN:
                alpn_raw = _protocol_names(body)
            elif ext_type == ExtensionType.SUPPORTED_VERSIONS and body:
                versions = _u16_list(body, 1, min(len(body), 1 + body[0]))
        setter = object.__setattr__
        setter(self, "server_name", server_name)
        setter(self, "alpn_raw", alpn_raw)
        setter(self, "alpn", _decode_names(alpn_raw))
        setter(self, "supported_versions", versions)
        setter(self, "supported_groups", groups)
        setter(self, "ec_point_formats", formats)
        setter(self, "signature_algorithms", sigalgs)
        setter(self, "extension_types", tuple([ext_type for ext_type, _ in self.extensions]))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHello:
    """A parsed ServerHello or HelloRetryRequest (RFC 8446 section 4.1.3)."""

    legacy_version: int
    """``server_version`` / ``legacy_version`` (``0x0303`` in TLS 1.3)."""
    random: bytes
    """The 32-byte server random (a fixed value for a HelloRetryRequest)."""
    session_id: bytes
    """The (echoed) legacy session id."""
    cipher_suite: int
    """The selected cipher suite."""
    compression_method: int
    """The selected compression method."""
    extensions: Tuple[Tuple[int, bytes], ...]
    """``(type, body)`` pairs in wire order."""

    is_hello_retry_request: bool = field(init=False)
    """True when ``random`` is the HelloRetryRequest constant."""
    selected_version: Optional[int] = field(init=False)
    """The supported_versions extension's value (TLS 1.3 and later), else ``None``."""
    alpn: Optional[str] = field(init=False)
    """The selected ALPN protocol, or ``None``."""

    def __post_init__(self) -> None:
        selected: Optional[int] = None
        alpn: Optional[str] = None
        for ext_type, body in self.extensions:
            if ext_type == ExtensionType.SUPPORTED_VERSIONS and selected is None and len(body) >= 2:
                selected = (body[0] << 8) | body[1]
            elif ext_type == ExtensionType.ALPN and alpn is None:
                names = _protocol_names(body)
                if names:
                    alpn = names[0].decode("utf-8", "replace")
        setter = object.__setattr__
        setter(self, "is_hello_retry_request", self.random == HELLO_RETRY_REQUEST_RANDOM)
        setter(self, "selected_version", selected)
        setter(self, "alpn", alpn)

    @property
    def negotiated_version(self) -> int:
        """The version in use: ``selected_version`` when present, else ``legacy_version``."""
        return self.selected_version if self.selected_version is not None else self.legacy_version

    @property
    def extension_types(self) -> Tuple[int, ...]:
        """Extension types in wire order."""
        return tuple(ext_type for ext_type, _ in self.extensions)


def _parse_extensions(body: bytes, p: int) -> Optional[Tuple[Tuple[int, bytes], ...]]:
    """The extension block starting at ``p``; ``()`` when there is none, ``None`` if it overruns.

    Bytes after a well-formed extension block are tolerated (as by OpenSSL
    before 1.1 and by tshark), since some old stacks pad their hellos.
    """
    n = len(body)
    if p == n:
        return ()
    if p + 2 > n:
        return None
    end = p + 2 + ((body[p] << 8) | body[p + 1])
    if end > n:
        return None
    p += 2
    exts: List[Tuple[int, bytes]] = []
    unpack = _U16X2.unpack_from
    while p < end:
        if p + 4 > end:
            return None
        ext_type, length = unpack(body, p)
        p += 4
        if p + length > end:
            return None
        exts.append((ext_type, body[p : p + length]))
        p += length
    return tuple(exts)


def parse_client_hello(body: bytes) -> Optional[ClientHello]:
    """Parse a ClientHello message body; ``None`` if its structure is malformed.

    ``body`` is what follows the 4-byte handshake header (type 1 and a
    3-byte length), exactly as :class:`HandshakeReassembler` yields it.
    """
    body = bytes(body)
    n = len(body)
    # version(2) random(32) session_id<0..32>(1+) cipher_suites<2..>(2+) compression<1..>(1+)
    if n < 38:
        return None
    sid_len = body[34]
    if sid_len > 32:
        return None
    p = 35 + sid_len
    if p + 2 > n:
        return None
    cs_len = (body[p] << 8) | body[p + 1]
    p += 2
    if cs_len & 1 or p + cs_len > n:
        return None
    ciphers = _u16_list(body, p, p + cs_len)
    p += cs_len
    if p >= n:
        return None
    comp_len = body[p]
    p += 1
    if p + comp_len > n:
        return None
    compression = body[p : p + comp_len]
    extensions = _parse_extensions(body, p + comp_len)
    if extensions is None:
        return None
    return ClientHello(
        legacy_version=(body[0] << 8) | body[1],
        random=body[2:34],
        session_id=body[35 : 35 + sid_len],
        cipher_suites=ciphers,
        compression_methods=compression,
        extensions=extensions,
    )


def parse_server_hello(body: bytes) -> Optional[ServerHello]:
    """Parse a ServerHello (or HelloRetryRequest) body; ``None`` if malformed."""
    body = bytes(body)
    n = len(body)
    # version(2) random(32) session_id(1+) cipher_suite(2) compression_method(1)
    if n < 38:
        return None
    sid_len = body[34]
    if sid_len > 32:
        return None
    p = 35 + sid_len
    if p + 3 > n:
        return None
    extensions = _parse_extensions(body, p + 3)
    if extensions is None:
        return None
    return ServerHello(
        legacy_version=(body[0] << 8) | body[1],
        random=body[2:34],
        session_id=body[35:p],
        cipher_suite=(body[p] << 8) | body[p + 1],
        compression_method=body[p + 2],
        extensions=extensions,
    )


def parse_certificate_list(body: bytes, tls13: bool = False) -> Optional[Tuple[bytes, ...]]:
    """The DER certificates of a Certificate message body, in the order sent.

    TLS 1.2 and earlier send ``certificate_list<0..2^24-1>`` of 3-byte
    length-prefixed certificates (RFC 5246 section 7.4.2); TLS 1.3 prefixes a
    request context and gives each certificate its own extensions (RFC 8446
    section 4.4.2).  ``None`` when the lengths do not add up.
    """
    n = len(body)
    p = 0
    if tls13:
        if n < 1:
            return None
        p = 1 + body[0]
    if p + 3 > n:
        return None
    end = p + 3 + ((body[p] << 16) | (body[p + 1] << 8) | body[p + 2])
    if end > n:
        return None
    p += 3
    certs: List[bytes] = []
    while p < end:
        if p + 3 > end:
            return None
        length = (body[p] << 16) | (body[p + 1] << 8) | body[p + 2]
        p += 3
        if p + length > end:
            return None
        certs.append(bytes(body[p : p + length]))
        p += length
        if tls13:
            if p + 2 > end:
                return None
            p += 2 + ((body[p] << 8) | body[p + 1])
            if p > end:
                return None
    return tuple(certs)


# --------------------------------------------------------------------------- fingerprints


def _md5_hex(text: str) -> str:
    # JA3 is defined on MD5; it is a fingerprint, not a security measure.
    return hashlib.md5(text.encode("ascii"), usedforsecurity=False).hexdigest()


def _join_ints(values: Tuple[int, ...]) -> str:
    return "-".join([str(v) for v in values if v not in _GREASE])


# Fingerprints are memoised on exactly the fields they read: real traffic
# repeats a few client and server stacks many times over, so most hellos hit.
# Each cache is dropped whole when it reaches _MEMO_SIZE entries (bounded memory,
# no bookkeeping per hit).
_MEMO_SIZE = 4096
T = TypeVar("T")
_JA3_MEMO: Dict[Tuple[object, ...], Tuple[str, str]] = {}
_JA3S_MEMO: Dict[Tuple[object, ...], Tuple[str, str]] = {}
_JA4_MEMO: Dict[Tuple[object, ...], str] = {}


def _remember(memo: Dict[Tuple[object, ...], T], key: Tuple[object, ...], value: T) -> T:
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    memo[key] = value
    return value


def ja3(ch: ClientHello) -> Tuple[str, str]:
    """The JA3 string and its MD5 (Salesforce's definition).

    ``SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats``
    in decimal, list items joined by ``-``, GREASE values removed from the
    cipher, extension and group lists, and the ClientHello's legacy version
    (never the record layer's or supported_versions').
    """
    key = (ch.legacy_version, ch.cipher_suites, ch.extension_types, ch.supported_groups, ch.ec_point_formats)
    hit = _JA3_MEMO.get(key)
    return hit if hit is not None else _remember(_JA3_MEMO, key, _ja3(ch))


def _ja3(ch: ClientHello) -> Tuple[str, str]:
    text = ",".join(
        (
            str(ch.legacy_version),
            _join_ints(ch.cipher_suites),
            _join_ints(ch.extension_types),
            _join_ints(ch.supported_groups),
            "-".join([str(v) for v in ch.ec_point_formats]),
        )
    )
    return text, _md5_hex(text)


def ja3s(sh: ServerHello) -> Tuple[str, str]:
    """The JA3S string (``SSLVersion,Cipher,Extensions``, legacy version) and its MD5."""
    key = (sh.legacy_version, sh.cipher_suite, sh.extension_types)
    hit = _JA3S_MEMO.get(key)
    if hit is not None:
        return hit
    text = f"{sh.legacy_version},{sh.cipher_suite},{_join_ints(sh.extension_types)}"
    return _remember(_JA3S_MEMO, key, (text, _md5_hex(text)))


_JA4_VERSIONS = MappingProxyType(
    {
        0x0304: "13",
        0x0303: "12",
        0x0302: "11",
        0x0301: "10",
        0x0300: "s3",
        0x0002: "s2",
        0xFEFF: "d1",
        0xFEFD: "d2",
        0xFEFC: "d3",
    }
)
_JA4_EMPTY_HASH = "000000000000"
# SNI and ALPN are counted in part a but left out of part c's hash.
_JA4_UNHASHED_EXTENSIONS = frozenset({ExtensionType.SERVER_NAME, ExtensionType.ALPN})
# Four lower-case hex digits; the bound method is the cheapest formatter per item.
_HEX4 = "%04x".__mod__


def _ja4_alpn(ch: ClientHello) -> str:
    """First and last character of the first ALPN value (hex digits if either is not alphanumeric)."""
    if not ch.alpn_raw or not ch.alpn_raw[0]:
        return "00"
    value = ch.alpn_raw[0]
    first, last = value[0], value[-1]
    if first < 0x80 and last < 0x80 and chr(first).isalnum() and chr(last).isalnum():
        return chr(first) + chr(last)
    return f"{first:02x}"[0] + f"{last:02x}"[1]


def _ja4_parts(ch: ClientHello, transport: str) -> Tuple[str, str, str, str]:
    """JA4 part a, the sorted cipher list, the sorted extension list and the signature algorithms."""
    versions = [v for v in ch.supported_versions if v not in _GREASE]
    version = max(versions) if versions else ch.legacy_version
    ciphers = sorted([c for c in ch.cipher_suites if c not in _GREASE])
    ext_types = [t for t in ch.extension_types if t not in _GREASE]
    sni = "d" if ExtensionType.SERVER_NAME in ext_types else "i"
    part_a = (
        f"{transport}{_JA4_VERSIONS.get(version, '00')}{sni}"
        f"{min(len(ciphers), 99):02d}{min(len(ext_types), 99):02d}{_ja4_alpn(ch)}"
    )
    cipher_list = ",".join(map(_HEX4, ciphers))
    ext_list = ",".join(map(_HEX4, [t for t in sorted(ext_types) if t not in _JA4_UNHASHED_EXTENSIONS]))
    sig_list = ",".join(map(_HEX4, [s for s in ch.signature_algorithms if s not in _GREASE]))
    return part_a, cipher_list, ext_list, sig_list


def _sha256_12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12] if text else _JA4_EMPTY_HASH


def ja4(ch: ClientHello, transport: str = "t") -> str:
    """FoxIO's JA4 TLS client fingerprint, e.g. ``t13d1516h2_8daaf6152771_e5627efa2ab1``.

    ``transport`` is ``"t"`` (TCP), ``"q"`` (QUIC) or ``"d"`` (DTLS).  GREASE
    values are ignored everywhere; the version is the highest
    supported_versions value, else the legacy version (``00`` when not in
    JA4's table); counts are capped at 99; part c hashes the sorted
    extensions without SNI and ALPN, then ``_`` and the signature algorithms
    in wire order (no ``_`` when there are none); an empty list hashes to
    ``000000000000``.
    """
    alpn = ch.alpn_raw[0] if ch.alpn_raw else None
    key = (transport, ch.legacy_version, ch.supported_versions, ch.cipher_suites, ch.extension_types, alpn,
           ch.signature_algorithms)  # fmt: skip
    hit = _JA4_MEMO.get(key)
    if hit is not None:
        return hit
    part_a, cipher_list, ext_list, sig_list = _ja4_parts(ch, transport)
    part_c = f"{ext_list}_{sig_list}" if sig_list else ext_list
    part_c_hash = _sha256_12(part_c) if ext_list else _JA4_EMPTY_HASH
    return _remember(_JA4_MEMO, key, f"{part_a}_{_sha256_12(cipher_list)}_{part_c_hash}")


def ja4_r(ch: ClientHello, transport: str = "t") -> str:
    """JA4's raw (unhashed) form: part a, then the lists that :func:`ja4` hashes."""
    part_a, cipher_list, ext_list, sig_list = _ja4_parts(ch, transport)
    raw = f"{part_a}_{cipher_list}_{ext_list}"
    return f"{raw}_{sig_list}" if sig_list else raw


# --------------------------------------------------------------------------- names

_VERSION_NAMES = MappingProxyType(
    {
        0x0002: "SSLv2",
        0x0300: "SSLv3",
        0x0301: "TLSv1.0",
        0x0302: "TLSv1.1",
        0x0303: "TLSv1.2",
        0x0304: "TLSv1.3",
        0xFEFF: "DTLSv1.0",
        0xFEFD: "DTLSv1.2",
        0xFEFC: "DTLSv1.3",
    }
)


def version_name(version: int) -> str:
    """``TLSv1.2``-style name of a protocol version, or ``0x7f1c``-style hex when unknown."""
    name = _VERSION_NAMES.get(version)
    return name if name is not None else f"0x{version:04x}"


def cipher_name(suite: int) -> str:
    """IANA name of a cipher suite, or ``0x1301``-style hex when unassigned or GREASE."""
    name = CIPHER_SUITE_NAMES.get(suite)
    return name if name is not None else f"0x{suite:04x}"


# The IANA "TLS Cipher Suites" registry (tls-parameters-4), assigned values
# only: reserved ranges, GREASE and private-use values fall back to hex.
_CIPHER_SUITE_TABLE = """
0000 TLS_NULL_WITH_NULL_NULL
0001 TLS_RSA_WITH_NULL_MD5
0002 TLS_RSA_WITH_NULL_SHA
0003 TLS_RSA_EXPORT_WITH_RC4_40_MD5
0004 TLS_RSA_WITH_RC4_128_MD5
0005 TLS_RSA_WITH_RC4_128_SHA
0006 TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5
0007 TLS_RSA_WITH_IDEA_CBC_SHA
0008 TLS_RSA_EXPORT_WITH_DES40_CBC_SHA
0009 TLS_RSA_WITH_DES_CBC_SHA
000A TLS_RSA_WITH_3DES_EDE_CBC_SHA
000B TLS_DH_DSS_EXPORT_WITH_DES40_CBC_SHA
000C TLS_DH_DSS_WITH_DES_CBC_SHA
000D TLS_DH_DSS_WITH_3DES_EDE_CBC_SHA
000E TLS_DH_RSA_EXPORT_WITH_DES40_CBC_SHA
000F TLS_DH_RSA_WITH_DES_CBC_SHA
0010 TLS_DH_RSA_WITH_3DES_EDE_CBC_SHA
0011 TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA
0012 TLS_DHE_DSS_WITH_DES_CBC_SHA
0013 TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA
0014 TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA
0015 TLS_DHE_RSA_WITH_DES_CBC_SHA
0016 TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA
0017 TLS_DH_anon_EXPORT_WITH_RC4_40_MD5
0018 TLS_DH_anon_WITH_RC4_128_MD5
0019 TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA
001A TLS_DH_anon_WITH_DES_CBC_SHA
001B TLS_DH_anon_WITH_3DES_EDE_CBC_SHA
001E TLS_KRB5_WITH_DES_CBC_SHA
001F TLS_KRB5_WITH_3DES_EDE_CBC_SHA
0020 TLS_KRB5_WITH_RC4_128_SHA
0021 TLS_KRB5_WITH_IDEA_CBC_SHA
0022 TLS_KRB5_WITH_DES_CBC_MD5
0023 TLS_KRB5_WITH_3DES_EDE_CBC_MD5
0024 TLS_KRB5_WITH_RC4_128_MD5
0025 TLS_KRB5_WITH_IDEA_CBC_MD5
0026 TLS_KRB5_EXPORT_WITH_DES_CBC_40_SHA
0027 TLS_KRB5_EXPORT_WITH_RC2_CBC_40_SHA
0028 TLS_KRB5_EXPORT_WITH_RC4_40_SHA
0029 TLS_KRB5_EXPORT_WITH_DES_CBC_40_MD5
002A TLS_KRB5_EXPORT_WITH_RC2_CBC_40_MD5
002B TLS_KRB5_EXPORT_WITH_RC4_40_MD5
002C TLS_PSK_WITH_NULL_SHA
002D TLS_DHE_PSK_WITH_NULL_SHA
002E TLS_RSA_PSK_WITH_NULL_SHA
002F TLS_RSA_WITH_AES_128_CBC_SHA
0030 TLS_DH_DSS_WITH_AES_128_CBC_SHA
0031 TLS_DH_RSA_WITH_AES_128_CBC_SHA
0032 TLS_DHE_DSS_WITH_AES_128_CBC_SHA
0033 TLS_DHE_RSA_WITH_AES_128_CBC_SHA
0034 TLS_DH_anon_WITH_AES_128_CBC_SHA
0035 TLS_RSA_WITH_AES_256_CBC_SHA
0036 TLS_DH_DSS_WITH_AES_256_CBC_SHA
0037 TLS_DH_RSA_WITH_AES_256_CBC_SHA
0038 TLS_DHE_DSS_WITH_AES_256_CBC_SHA
0039 TLS_DHE_RSA_WITH_AES_256_CBC_SHA
003A TLS_DH_anon_WITH_AES_256_CBC_SHA
003B TLS_RSA_WITH_NULL_SHA256
003C TLS_RSA_WITH_AES_128_CBC_SHA256
003D TLS_RSA_WITH_AES_256_CBC_SHA256
003E TLS_DH_DSS_WITH_AES_128_CBC_SHA256
003F TLS_DH_RSA_WITH_AES_128_CBC_SHA256
0040 TLS_DHE_DSS_WITH_AES_128_CBC_SHA256
0041 TLS_RSA_WITH_CAMELLIA_128_CBC_SHA
0042 TLS_DH_DSS_WITH_CAMELLIA_128_CBC_SHA
0043 TLS_DH_RSA_WITH_CAMELLIA_128_CBC_SHA
0044 TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA
0045 TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA
0046 TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA
0067 TLS_DHE_RSA_WITH_AES_128_CBC_SHA256
0068 TLS_DH_DSS_WITH_AES_256_CBC_SHA256
0069 TLS_DH_RSA_WITH_AES_256_CBC_SHA256
006A TLS_DHE_DSS_WITH_AES_256_CBC_SHA256
006B TLS_DHE_RSA_WITH_AES_256_CBC_SHA256
006C TLS_DH_anon_WITH_AES_128_CBC_SHA256
006D TLS_DH_anon_WITH_AES_256_CBC_SHA256
0084 TLS_RSA_WITH_CAMELLIA_256_CBC_SHA
0085 TLS_DH_DSS_WITH_CAMELLIA_256_CBC_SHA
0086 TLS_DH_RSA_WITH_CAMELLIA_256_CBC_SHA
0087 TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA
0088 TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA
0089 TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA
008A TLS_PSK_WITH_RC4_128_SHA
008B TLS_PSK_WITH_3DES_EDE_CBC_SHA
008C TLS_PSK_WITH_AES_128_CBC_SHA
008D TLS_PSK_WITH_AES_256_CBC_SHA
008E TLS_DHE_PSK_WITH_RC4_128_SHA
008F TLS_DHE_PSK_WITH_3DES_EDE_CBC_SHA
0090 TLS_DHE_PSK_WITH_AES_128_CBC_SHA
0091 TLS_DHE_PSK_WITH_AES_256_CBC_SHA
0092 TLS_RSA_PSK_WITH_RC4_128_SHA
0093 TLS_RSA_PSK_WITH_3DES_EDE_CBC_SHA
0094 TLS_RSA_PSK_WITH_AES_128_CBC_SHA
0095 TLS_RSA_PSK_WITH_AES_256_CBC_SHA
0096 TLS_RSA_WITH_SEED_CBC_SHA
0097 TLS_DH_DSS_WITH_SEED_CBC_SHA
0098 TLS_DH_RSA_WITH_SEED_CBC_SHA
0099 TLS_DHE_DSS_WITH_SEED_CBC_SHA
009A TLS_DHE_RSA_WITH_SEED_CBC_SHA
009B TLS_DH_anon_WITH_SEED_CBC_SHA
009C TLS_RSA_WITH_AES_128_GCM_SHA256
009D TLS_RSA_WITH_AES_256_GCM_SHA384
009E TLS_DHE_RSA_WITH_AES_128_GCM_SHA256
009F TLS_DHE_RSA_WITH_AES_256_GCM_SHA384
00A0 TLS_DH_RSA_WITH_AES_128_GCM_SHA256
00A1 TLS_DH_RSA_WITH_AES_256_GCM_SHA384
00A2 TLS_DHE_DSS_WITH_AES_128_GCM_SHA256
00A3 TLS_DHE_DSS_WITH_AES_256_GCM_SHA384
00A4 TLS_DH_DSS_WITH_AES_128_GCM_SHA256
00A5 TLS_DH_DSS_WITH_AES_256_GCM_SHA384
00A6 TLS_DH_anon_WITH_AES_128_GCM_SHA256
00A7 TLS_DH_anon_WITH_AES_256_GCM_SHA384
00A8 TLS_PSK_WITH_AES_128_GCM_SHA256
00A9 TLS_PSK_WITH_AES_256_GCM_SHA384
00AA TLS_DHE_PSK_WITH_AES_128_GCM_SHA256
00AB TLS_DHE_PSK_WITH_AES_256_GCM_SHA384
00AC TLS_RSA_PSK_WITH_AES_128_GCM_SHA256
00AD TLS_RSA_PSK_WITH_AES_256_GCM_SHA384
00AE TLS_PSK_WITH_AES_128_CBC_SHA256
00AF TLS_PSK_WITH_AES_256_CBC_SHA384
00B0 TLS_PSK_WITH_NULL_SHA256
00B1 TLS_PSK_WITH_NULL_SHA384
00B2 TLS_DHE_PSK_WITH_AES_128_CBC_SHA256
00B3 TLS_DHE_PSK_WITH_AES_256_CBC_SHA384
00B4 TLS_DHE_PSK_WITH_NULL_SHA256
00B5 TLS_DHE_PSK_WITH_NULL_SHA384
00B6 TLS_RSA_PSK_WITH_AES_128_CBC_SHA256
00B7 TLS_RSA_PSK_WITH_AES_256_CBC_SHA384
00B8 TLS_RSA_PSK_WITH_NULL_SHA256
00B9 TLS_RSA_PSK_WITH_NULL_SHA384
00BA TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256
00BB TLS_DH_DSS_WITH_CAMELLIA_128_CBC_SHA256
00BC TLS_DH_RSA_WITH_CAMELLIA_128_CBC_SHA256
00BD TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256
00BE TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256
00BF TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA256
00C0 TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256
00C1 TLS_DH_DSS_WITH_CAMELLIA_256_CBC_SHA256
00C2 TLS_DH_RSA_WITH_CAMELLIA_256_CBC_SHA256
00C3 TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256
00C4 TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256
00C5 TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA256
00C6 TLS_SM4_GCM_SM3
00C7 TLS_SM4_CCM_SM3
00FF TLS_EMPTY_RENEGOTIATION_INFO_SCSV
1301 TLS_AES_128_GCM_SHA256
1302 TLS_AES_256_GCM_SHA384
1303 TLS_CHACHA20_POLY1305_SHA256
1304 TLS_AES_128_CCM_SHA256
1305 TLS_AES_128_CCM_8_SHA256
1306 TLS_AEGIS_256_SHA384
1307 TLS_AEGIS_128L_SHA256
5600 TLS_FALLBACK_SCSV
C001 TLS_ECDH_ECDSA_WITH_NULL_SHA
C002 TLS_ECDH_ECDSA_WITH_RC4_128_SHA
C003 TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA
C004 TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA
C005 TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA
C006 TLS_ECDHE_ECDSA_WITH_NULL_SHA
C007 TLS_ECDHE_ECDSA_WITH_RC4_128_SHA
C008 TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA
C009 TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
C00A TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA
C00B TLS_ECDH_RSA_WITH_NULL_SHA
C00C TLS_ECDH_RSA_WITH_RC4_128_SHA
C00D TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA
C00E TLS_ECDH_RSA_WITH_AES_128_CBC_SHA
C00F TLS_ECDH_RSA_WITH_AES_256_CBC_SHA
C010 TLS_ECDHE_RSA_WITH_NULL_SHA
C011 TLS_ECDHE_RSA_WITH_RC4_128_SHA
C012 TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA
C013 TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA
C014 TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA
C015 TLS_ECDH_anon_WITH_NULL_SHA
C016 TLS_ECDH_anon_WITH_RC4_128_SHA
C017 TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA
C018 TLS_ECDH_anon_WITH_AES_128_CBC_SHA
C019 TLS_ECDH_anon_WITH_AES_256_CBC_SHA
C01A TLS_SRP_SHA_WITH_3DES_EDE_CBC_SHA
C01B TLS_SRP_SHA_RSA_WITH_3DES_EDE_CBC_SHA
C01C TLS_SRP_SHA_DSS_WITH_3DES_EDE_CBC_SHA
C01D TLS_SRP_SHA_WITH_AES_128_CBC_SHA
C01E TLS_SRP_SHA_RSA_WITH_AES_128_CBC_SHA
C01F TLS_SRP_SHA_DSS_WITH_AES_128_CBC_SHA
C020 TLS_SRP_SHA_WITH_AES_256_CBC_SHA
C021 TLS_SRP_SHA_RSA_WITH_AES_256_CBC_SHA
C022 TLS_SRP_SHA_DSS_WITH_AES_256_CBC_SHA
C023 TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256
C024 TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384
C025 TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256
C026 TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384
C027 TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256
C028 TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384
C029 TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256
C02A TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384
C02B TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
C02C TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
C02D TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256
C02E TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384
C02F TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
C030 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
C031 TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256
C032 TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384
C033 TLS_ECDHE_PSK_WITH_RC4_128_SHA
C034 TLS_ECDHE_PSK_WITH_3DES_EDE_CBC_SHA
C035 TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA
C036 TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA
C037 TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256
C038 TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384
C039 TLS_ECDHE_PSK_WITH_NULL_SHA
C03A TLS_ECDHE_PSK_WITH_NULL_SHA256
C03B TLS_ECDHE_PSK_WITH_NULL_SHA384
C03C TLS_RSA_WITH_ARIA_128_CBC_SHA256
C03D TLS_RSA_WITH_ARIA_256_CBC_SHA384
C03E TLS_DH_DSS_WITH_ARIA_128_CBC_SHA256
C03F TLS_DH_DSS_WITH_ARIA_256_CBC_SHA384
C040 TLS_DH_RSA_WITH_ARIA_128_CBC_SHA256
C041 TLS_DH_RSA_WITH_ARIA_256_CBC_SHA384
C042 TLS_DHE_DSS_WITH_ARIA_128_CBC_SHA256
C043 TLS_DHE_DSS_WITH_ARIA_256_CBC_SHA384
C044 TLS_DHE_RSA_WITH_ARIA_128_CBC_SHA256
C045 TLS_DHE_RSA_WITH_ARIA_256_CBC_SHA384
C046 TLS_DH_anon_WITH_ARIA_128_CBC_SHA256
C047 TLS_DH_anon_WITH_ARIA_256_CBC_SHA384
C048 TLS_ECDHE_ECDSA_WITH_ARIA_128_CBC_SHA256
C049 TLS_ECDHE_ECDSA_WITH_ARIA_256_CBC_SHA384
C04A TLS_ECDH_ECDSA_WITH_ARIA_128_CBC_SHA256
C04B TLS_ECDH_ECDSA_WITH_ARIA_256_CBC_SHA384
C04C TLS_ECDHE_RSA_WITH_ARIA_128_CBC_SHA256
C04D TLS_ECDHE_RSA_WITH_ARIA_256_CBC_SHA384
C04E TLS_ECDH_RSA_WITH_ARIA_128_CBC_SHA256
C04F TLS_ECDH_RSA_WITH_ARIA_256_CBC_SHA384
C050 TLS_RSA_WITH_ARIA_128_GCM_SHA256
C051 TLS_RSA_WITH_ARIA_256_GCM_SHA384
C052 TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256
C053 TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384
C054 TLS_DH_RSA_WITH_ARIA_128_GCM_SHA256
C055 TLS_DH_RSA_WITH_ARIA_256_GCM_SHA384
C056 TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256
C057 TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384
C058 TLS_DH_DSS_WITH_ARIA_128_GCM_SHA256
C059 TLS_DH_DSS_WITH_ARIA_256_GCM_SHA384
C05A TLS_DH_anon_WITH_ARIA_128_GCM_SHA256
C05B TLS_DH_anon_WITH_ARIA_256_GCM_SHA384
C05C TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256
C05D TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384
C05E TLS_ECDH_ECDSA_WITH_ARIA_128_GCM_SHA256
C05F TLS_ECDH_ECDSA_WITH_ARIA_256_GCM_SHA384
C060 TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256
C061 TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384
C062 TLS_ECDH_RSA_WITH_ARIA_128_GCM_SHA256
C063 TLS_ECDH_RSA_WITH_ARIA_256_GCM_SHA384
C064 TLS_PSK_WITH_ARIA_128_CBC_SHA256
C065 TLS_PSK_WITH_ARIA_256_CBC_SHA384
C066 TLS_DHE_PSK_WITH_ARIA_128_CBC_SHA256
C067 TLS_DHE_PSK_WITH_ARIA_256_CBC_SHA384
C068 TLS_RSA_PSK_WITH_ARIA_128_CBC_SHA256
C069 TLS_RSA_PSK_WITH_ARIA_256_CBC_SHA384
C06A TLS_PSK_WITH_ARIA_128_GCM_SHA256
C06B TLS_PSK_WITH_ARIA_256_GCM_SHA384
C06C TLS_DHE_PSK_WITH_ARIA_128_GCM_SHA256
C06D TLS_DHE_PSK_WITH_ARIA_256_GCM_SHA384
C06E TLS_RSA_PSK_WITH_ARIA_128_GCM_SHA256
C06F TLS_RSA_PSK_WITH_ARIA_256_GCM_SHA384
C070 TLS_ECDHE_PSK_WITH_ARIA_128_CBC_SHA256
C071 TLS_ECDHE_PSK_WITH_ARIA_256_CBC_SHA384
C072 TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256
C073 TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384
C074 TLS_ECDH_ECDSA_WITH_CAMELLIA_128_CBC_SHA256
C075 TLS_ECDH_ECDSA_WITH_CAMELLIA_256_CBC_SHA384
C076 TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256
C077 TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384
C078 TLS_ECDH_RSA_WITH_CAMELLIA_128_CBC_SHA256
C079 TLS_ECDH_RSA_WITH_CAMELLIA_256_CBC_SHA384
C07A TLS_RSA_WITH_CAMELLIA_128_GCM_SHA256
C07B TLS_RSA_WITH_CAMELLIA_256_GCM_SHA384
C07C TLS_DHE_RSA_WITH_CAMELLIA_128_GCM_SHA256
C07D TLS_DHE_RSA_WITH_CAMELLIA_256_GCM_SHA384
C07E TLS_DH_RSA_WITH_CAMELLIA_128_GCM_SHA256
C07F TLS_DH_RSA_WITH_CAMELLIA_256_GCM_SHA384
C080 TLS_DHE_DSS_WITH_CAMELLIA_128_GCM_SHA256
C081 TLS_DHE_DSS_WITH_CAMELLIA_256_GCM_SHA384
C082 TLS_DH_DSS_WITH_CAMELLIA_128_GCM_SHA256
C083 TLS_DH_DSS_WITH_CAMELLIA_256_GCM_SHA384
C084 TLS_DH_anon_WITH_CAMELLIA_128_GCM_SHA256
C085 TLS_DH_anon_WITH_CAMELLIA_256_GCM_SHA384
C086 TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_GCM_SHA256
C087 TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_GCM_SHA384
C088 TLS_ECDH_ECDSA_WITH_CAMELLIA_128_GCM_SHA256
C089 TLS_ECDH_ECDSA_WITH_CAMELLIA_256_GCM_SHA384
C08A TLS_ECDHE_RSA_WITH_CAMELLIA_128_GCM_SHA256
C08B TLS_ECDHE_RSA_WITH_CAMELLIA_256_GCM_SHA384
C08C TLS_ECDH_RSA_WITH_CAMELLIA_128_GCM_SHA256
C08D TLS_ECDH_RSA_WITH_CAMELLIA_256_GCM_SHA384
C08E TLS_PSK_WITH_CAMELLIA_128_GCM_SHA256
C08F TLS_PSK_WITH_CAMELLIA_256_GCM_SHA384
C090 TLS_DHE_PSK_WITH_CAMELLIA_128_GCM_SHA256
C091 TLS_DHE_PSK_WITH_CAMELLIA_256_GCM_SHA384
C092 TLS_RSA_PSK_WITH_CAMELLIA_128_GCM_SHA256
C093 TLS_RSA_PSK_WITH_CAMELLIA_256_GCM_SHA384
C094 TLS_PSK_WITH_CAMELLIA_128_CBC_SHA256
C095 TLS_PSK_WITH_CAMELLIA_256_CBC_SHA384
C096 TLS_DHE_PSK_WITH_CAMELLIA_128_CBC_SHA256
C097 TLS_DHE_PSK_WITH_CAMELLIA_256_CBC_SHA384
C098 TLS_RSA_PSK_WITH_CAMELLIA_128_CBC_SHA256
C099 TLS_RSA_PSK_WITH_CAMELLIA_256_CBC_SHA384
C09A TLS_ECDHE_PSK_WITH_CAMELLIA_128_CBC_SHA256
C09B TLS_ECDHE_PSK_WITH_CAMELLIA_256_CBC_SHA384
C09C TLS_RSA_WITH_AES_128_CCM
C09D TLS_RSA_WITH_AES_256_CCM
C09E TLS_DHE_RSA_WITH_AES_128_CCM
C09F TLS_DHE_RSA_WITH_AES_256_CCM
C0A0 TLS_RSA_WITH_AES_128_CCM_8
C0A1 TLS_RSA_WITH_AES_256_CCM_8
C0A2 TLS_DHE_RSA_WITH_AES_128_CCM_8
C0A3 TLS_DHE_RSA_WITH_AES_256_CCM_8
C0A4 TLS_PSK_WITH_AES_128_CCM
C0A5 TLS_PSK_WITH_AES_256_CCM
C0A6 TLS_DHE_PSK_WITH_AES_128_CCM
C0A7 TLS_DHE_PSK_WITH_AES_256_CCM
C0A8 TLS_PSK_WITH_AES_128_CCM_8
C0A9 TLS_PSK_WITH_AES_256_CCM_8
C0AA TLS_PSK_DHE_WITH_AES_128_CCM_8
C0AB TLS_PSK_DHE_WITH_AES_256_CCM_8
C0AC TLS_ECDHE_ECDSA_WITH_AES_128_CCM
C0AD TLS_ECDHE_ECDSA_WITH_AES_256_CCM
C0AE TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
C0AF TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8
C0B0 TLS_ECCPWD_WITH_AES_128_GCM_SHA256
C0B1 TLS_ECCPWD_WITH_AES_256_GCM_SHA384
C0B2 TLS_ECCPWD_WITH_AES_128_CCM_SHA256
C0B3 TLS_ECCPWD_WITH_AES_256_CCM_SHA384
C0B4 TLS_SHA256_SHA256
C0B5 TLS_SHA384_SHA384
C100 TLS_GOSTR341112_256_WITH_KUZNYECHIK_CTR_OMAC
C101 TLS_GOSTR341112_256_WITH_MAGMA_CTR_OMAC
C102 TLS_GOSTR341112_256_WITH_28147_CNT_IMIT
C103 TLS_GOSTR341112_256_WITH_KUZNYECHIK_MGM_L
C104 TLS_GOSTR341112_256_WITH_MAGMA_MGM_L
C105 TLS_GOSTR341112_256_WITH_KUZNYECHIK_MGM_S
C106 TLS_GOSTR341112_256_WITH_MAGMA_MGM_S
CCA8 TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
CCA9 TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
CCAA TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256
CCAB TLS_PSK_WITH_CHACHA20_POLY1305_SHA256
CCAC TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256
CCAD TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256
CCAE TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256
D001 TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256
D002 TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384
D003 TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256
D005 TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256
"""


def _load_cipher_table(text: str) -> Mapping[int, str]:
    table = {}
    for line in text.splitlines():
        if line:
            code, name = line.split()
            table[int(code, 16)] = name
    return MappingProxyType(table)


CIPHER_SUITE_NAMES: Mapping[int, str] = _load_cipher_table(_CIPHER_SUITE_TABLE)
"""Cipher suite value → IANA name (read-only)."""


# --------------------------------------------------------------------------- reassembly


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeLimits:
    """Bounds of one :class:`HandshakeReassembler`."""

    max_message: int = 128 * 1024
    """Largest handshake message kept, in bytes; larger ones are skipped and counted.

    The handshake length field allows 16 MiB, so it must be capped.  The
    biggest legitimate message is a Certificate chain: OpenSSL refuses
    certificate lists above 100 KiB by default (``SSL_CTX_set_max_cert_list``),
    and real chains are 3-20 KiB.  ClientHellos, even with post-quantum key
    shares, stay under 8 KiB.  128 KiB keeps every chain OpenSSL accepts.
    """
    max_record: int = 16384 + 2048
    """Largest record body accepted; a longer length field is garbage.

    ``TLSCiphertext.length`` must not exceed 2^14 + 2048 (RFC 5246 section
    6.2.3); TLS 1.3 is stricter (2^14 + 256).
    """


_DEFAULT_LIMITS = HandshakeLimits()

HandshakeItem = Tuple[int, bytes]
"""``(msg_type, body)`` for a handshake message; ``(-content_type, b"")`` marks another record."""


class HandshakeReassembler:
    """Complete handshake messages out of one direction's bytes.

    Use one instance per direction and either :meth:`feed_records` (TLS
    record-layer bytes) or :meth:`feed_crypto` (an in-order QUIC CRYPTO
    stream), never both.  See the module documentation for how it works.
    """

    __slots__ = (
        "_buffer",
        "_encrypted",
        "_error",
        "_header",
        "_limits",
        "_record_left",
        "_record_type",
        "_skip_left",
        "_skipped",
        "_tls13",
    )

    def __init__(self, limits: Optional[HandshakeLimits] = None) -> None:
        self._limits = limits if limits is not None else _DEFAULT_LIMITS
        self._header = b""
        self._record_type = 0
        self._record_left = 0
        self._buffer = bytearray()
        self._skip_left = 0
        self._tls13 = False
        self._encrypted = False
        self._error: Optional[str] = None
        self._skipped = 0

    @property
    def error(self) -> Optional[str]:
        """Why record framing failed (sticky), or ``None``."""
        return self._error

    @property
    def skipped(self) -> int:
        """Handshake messages skipped because they exceeded ``max_message``."""
        return self._skipped

    @property
    def encrypted(self) -> bool:
        """True once a ChangeCipherSpec ended this direction's plaintext (TLS 1.2 and earlier)."""
        return self._encrypted

    @property
    def buffered(self) -> int:
        """Bytes held right now (a partial record header and a partial message)."""
        return len(self._header) + len(self._buffer)

    def set_tls13(self) -> None:
        """The connection is TLS 1.3: ChangeCipherSpec records are dummies from now on."""
        self._tls13 = True
        self._encrypted = False

    def feed_records(self, data: bytes) -> List[HandshakeItem]:
        """Feed TLS record-layer bytes; return what they completed, in stream order.

        Items are ``(msg_type, body)`` for handshake messages and
        ``(-content_type, b"")`` once per non-handshake record header.
        Nothing is returned after an error.
        """
        out: List[HandshakeItem] = []
        if self._error is not None or not data:
            return out
        if self._header:
            data = self._header + data
            self._header = b""
        n = len(data)
        pos = 0
        limits = self._limits
        while pos < n:
            if self._record_left == 0:
                if n - pos < 5:
                    self._header = bytes(data[pos:])
                    break
                content_type = data[pos]
                length = (data[pos + 3] << 8) | data[pos + 4]
                if content_type < ContentType.CHANGE_CIPHER_SPEC or content_type > ContentType.HEARTBEAT:
                    self._error = f"record content type {content_type} is not TLS"
                    break
                if data[pos + 1] != 3 or data[pos + 2] > 4:
                    self._error = f"record version 0x{data[pos + 1]:02x}{data[pos + 2]:02x} is not SSL 3.0-TLS 1.3"
                    break
                if length > limits.max_record:
                    self._error = f"record length {length} exceeds {limits.max_record}"
                    break
                pos += 5
                self._record_type = content_type
                self._record_left = length
                if content_type != ContentType.HANDSHAKE:
                    out.append((-content_type, b""))
                    if content_type == ContentType.CHANGE_CIPHER_SPEC and not self._tls13:
                        self._encrypted = True
                        self._buffer.clear()
                        self._skip_left = 0
                if length == 0:
                    continue
            take = min(self._record_left, n - pos)
            if self._record_type == ContentType.HANDSHAKE and not self._encrypted:
                self._assemble(data[pos : pos + take] if (pos or take != n) else data, out)
            pos += take
            self._record_left -= take
        return out

    def feed_crypto(self, data: bytes) -> List[HandshakeItem]:
        """Feed the next in-order bytes of a QUIC CRYPTO stream; return complete messages."""
        out: List[HandshakeItem] = []
        if data:
            self._assemble(data, out)
        return out

    def _assemble(self, chunk: bytes, out: List[HandshakeItem]) -> None:
        """Append handshake bytes and cut out every complete message."""
        if self._skip_left:
            if len(chunk) <= self._skip_left:
                self._skip_left -= len(chunk)
                return
            chunk = chunk[self._skip_left :]
            self._skip_left = 0
        max_message = self._limits.max_message
        buf = self._buffer
        if buf:
            # A message is already partly here: append, and copy the buffer
            # out only once the message is complete (or known to be
            # oversized), so byte-sized chunks cost O(1) each.
            buf += chunk
            if len(buf) < 4:
                return
            length = (buf[1] << 16) | (buf[2] << 8) | buf[3]
            if length <= max_message and len(buf) < 4 + length:
                return
            data: bytes = bytes(buf)
            buf.clear()
        else:
            data = chunk
        n = len(data)
        p = 0
        while n - p >= 4:
            length = (data[p + 1] << 16) | (data[p + 2] << 8) | data[p + 3]
            if length > max_message:
                self._skipped += 1
                available = n - p - 4
                if available < length:
                    self._skip_left = length - available
                    return
                p += 4 + length
                continue
            end = p + 4 + length
            if end > n:
                break
            out.append((data[p], data[p + 4 : end]))
            p = end
        if p < n:
            buf += data[p:]
