"""QUIC handshakes: the TLS hellos of QUIC v1, v2 and drafts, and the certificate given a key log.

Theory of operation
-------------------
QUIC (RFC 9000) encrypts every packet, but the keys of the *Initial* packets
are derived from public values only: a version-specific salt and the
Destination Connection ID (DCID) that the client put in its first Initial
packet (RFC 9001 §5.2; RFC 9369 §3.3 for version 2, which also renames the
HKDF labels and rotates the long-header packet-type bits).  An observer can
therefore decrypt the Initial packets of both sides and read the TLS
handshake messages they carry in CRYPTO frames: the ClientHello (SNI, ALPN,
cipher suites: the JA3/JA4 inputs) and the ServerHello (negotiated version
and cipher, JA3S).  Everything after that (Handshake and 1-RTT packets,
certificates included) is encrypted with secrets that never cross the wire,
unless the endpoint logged them: see *Handshake packets* below.

One :class:`QuicParser` serves one UDP flow.  Each datagram may hold several
coalesced long-header packets followed by at most one short-header packet
(RFC 9000 §12.2); the parser walks the long headers, skips 0-RTT and
Handshake packets by their Length field, stops at a short header, a Retry, a
Version Negotiation packet or an unknown version, and decrypts the Initial
packets:

1. *Keys.*  A client Initial first tries the current connection's keys
   (derived from the DCID of its first client Initial: later client Initials
   carry the server's chosen connection ID but keep those keys).  If that
   fails, the keys of the packet's own DCID are tried; success there means a
   new connection attempt on the same 5-tuple (after a Retry, or a reused
   port), which closes the previous one.  Server Initials always use the
   current connection's keys, derived for the version of the server's packet
   (compatible version negotiation, RFC 9368, lets it differ from the
   client's).
2. *Header protection* is removed with AES-ECB over a 16-byte sample of the
   ciphertext, then the payload is opened with AES-128-GCM; the packet
   number is expanded against the largest one seen in that direction
   (RFC 9000 §A.3) because it is part of the nonce.
3. *Frames.*  An Initial may only carry PADDING, PING, ACK, CRYPTO and
   CONNECTION_CLOSE; each is skipped or read by its exact length.  Any other
   frame type is a protocol violation and makes the flow malformed.
4. *CRYPTO reassembly.*  CRYPTO frames carry offsets into one byte stream
   per direction.  Chrome splits its ClientHello into many frames, out of
   order, across several packets, and every endpoint retransmits; the
   stream keeps the in-order prefix and a small map of early pieces, trims
   duplicates, and is bounded in bytes and in pieces (:class:`QuicConfig`).
5. *Handshake messages* are cut from the in-order prefix by their 4-byte
   header and handed to :mod:`flowscope.parsers._tlswire`: ClientHello from
   the client, ServerHello from the server.

A :class:`QuicHandshake` is emitted when a ServerHello completes a pair, or
at :meth:`QuicParser.close` for a ClientHello that never got one (or a
ServerHello whose ClientHello was never seen).  A HelloRetryRequest closes
its record (``hello_retry_request`` true); the second ClientHello, which
continues the same CRYPTO stream, starts a new one.

Handshake packets (with a key log)
----------------------------------
When the factory has a :class:`flowscope._keylog.KeyLog` (an
``SSLKEYLOGFILE``, or the Decryption Secrets Blocks of a pcapng capture)
holding ``SERVER_HANDSHAKE_TRAFFIC_SECRET`` for the ClientHello's random at
the moment the ServerHello completes the pair, the record is held back
instead of emitted, and the server's Handshake packets are decrypted:

* *Keys* come from that secret by HKDF-Expand-Label with the ``quic key`` /
  ``quic iv`` / ``quic hp`` labels (``quicv2 …`` for version 2) and the
  hash of the ServerHello's cipher suite (RFC 9001 §5.1): AES-128-GCM,
  AES-256-GCM (SHA-384), ChaCha20-Poly1305 (whose header protection is
  ChaCha20 keyed by the sample, §5.4.4) and AES-128-CCM.
* *Frames* are those of Initial packets; the Handshake-level CRYPTO stream
  is reassembled like the Initial one, with its own, larger bound
  (certificate chains are kilobytes).
* *Messages*: EncryptedExtensions gives the selected ALPN (in QUIC it never
  appears in the ServerHello); Certificate (TLS 1.3 layout) gives the
  subject, issuer and SAN DNS names of the first certificate, via
  :func:`flowscope.parsers.tls.certificate_summary`, and emits the record.

A held record is also emitted, without a certificate, on the server's
Finished (a PSK handshake sends no Certificate; a compressed certificate,
RFC 8879, is not decoded), on the client's first 1-RTT (short-header)
packet (the client has the whole server flight by then), when the first
Handshake packet does not authenticate (the logged secret is not this
connection's; later failures after a success are skipped as damage), when
``max_handshake_packets`` is reached, on a fault, a new connection, or
:meth:`QuicParser.close`.  Server Handshake packets that arrive before the
ServerHello cannot be opened (the cipher suite is unknown) and are skipped.
Without a key log entry nothing of this happens and records are emitted as
described above.

States: *active* → *failed*.  Undecryptable or malformed Initial packets and
exceeded bounds emit one :class:`QuicError` and make the state sticky: the
flow is ignored from then on, but a hello already parsed is still reported
at close (a record held for its certificate is emitted before the error).
Nothing here raises on traffic; the only exception is
:class:`flowscope_core.MissingExtraError` from the factory when the
``cryptography`` package is missing.
"""

from __future__ import annotations

import hmac
import re
import struct
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Callable,
    ClassVar,
    Dict,
    FrozenSet,
    List,
    Optional,
    Protocol,
    Sequence,
    Set,
    Tuple,
    Union,
)

from flowscope_core import (
    DatagramParser,
    Detection,
    Direction,
    FlowInfo,
    MissingExtraError,
    SessionEvent,
    Timestamp,
)

from flowscope.parsers import _tlswire
from flowscope.parsers._tlswire import ClientHello, ServerHello
from flowscope.parsers.tls import certificate_summary

if TYPE_CHECKING:
    from flowscope._keylog import KeyLog

try:
    from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
except ImportError:  # pragma: no cover - only without the 'tls' extra
    _HAVE_CRYPTOGRAPHY = False
else:
    _HAVE_CRYPTOGRAPHY = True

__all__ = [
    "PacketKeys",
    "QuicConfig",
    "QuicError",
    "QuicEvent",
    "QuicHandshake",
    "QuicParser",
    "QuicParserFactory",
    "factory",
    "initial_keys",
    "open_initial_packet",
    "traffic_keys",
]


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True, kw_only=True)
class QuicConfig:
    """Every bound the QUIC parser keeps, per flow."""

    max_crypto_bytes: int = 16 * 1024
    """Highest CRYPTO stream offset kept per direction and connection.

    A ClientHello is normally 250-600 bytes and about 1.9 KB with a
    post-quantum key share (X25519MLKEM768); the server's Initial flight is
    only the ServerHello.  Clients keep the first flight to a few datagrams
    (the server may send at most three times what it received before
    validating the address, RFC 9000 §8.1).  16 KiB is eight times the
    largest hello seen in practice.
    """
    max_crypto_fragments: int = 64
    """Out-of-order CRYPTO pieces held per direction.

    Chrome's "chaos protection" cuts its ClientHello into up to about ten
    CRYPTO frames per packet and sends them shuffled; two or three packets
    give a few dozen pieces at most.
    """
    max_initial_packets: int = 64
    """Initial packets decrypted per flow before the parser gives up.

    A handshake takes 2-6 Initial packets; clients retransmit on loss a
    handful of times (RFC 9002 probe timeouts back off exponentially), so 64
    means something is wrong, and it caps the AES work one flow can cost.
    """
    max_handshakes: int = 8
    """Connections (ClientHellos with new keys) reported per flow.

    Each new DCID costs a key derivation; a reused 5-tuple carries a second
    connection rarely, and a flood of fresh DCIDs is an attack, not traffic.
    """
    max_connection_ids: int = 8
    """Server-chosen connection IDs remembered to recognise retransmissions.

    A server picks one connection ID in its Initial; a few leave room for
    Retry and for a second connection on the 5-tuple.
    """
    max_handshake_crypto_bytes: int = 128 * 1024
    """Highest Handshake-level CRYPTO offset kept (server side, with a key log only).

    The server's Handshake flight is EncryptedExtensions, the certificate
    chain, CertificateVerify and Finished.  Web chains are typically 2-6
    KiB; OpenSSL accepts a peer chain of up to 100 KiB by default
    (``SSL_MAX_CERT_LIST_DEFAULT``), and 128 KiB holds such a chain with
    the rest of the flight.  The buffer lives only while a record waits for
    its certificate.
    """
    max_handshake_packets: int = 128
    """Server Handshake packets decrypted per connection before the record is emitted anyway.

    128 KiB of CRYPTO data fills about 110 full-sized packets; the margin is
    for retransmissions.  It also caps the AEAD work of one connection.
    """


DEFAULT_CONFIG = QuicConfig()


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class QuicHandshake:
    """One TLS handshake seen in QUIC Initial packets: a ClientHello with its ServerHello.

    The fields after ``quic_version`` are those of the ``tls`` record (see
    docs/EVENTS.md), so both kinds of handshake land in one table.
    """

    event_type: ClassVar[str] = "quic"
    ts: Timestamp
    """Time of the datagram that completed the record (ServerHello, Certificate, or the lone ClientHello)."""
    quic_version: str
    """QUIC version of the packets: ``1``, ``2``, or ``0x…`` hex (drafts)."""
    version: Optional[str]
    """Negotiated TLS version from the ServerHello (e.g. ``TLSv1.3``); ``None`` without one."""
    client_version: Optional[str]
    """The ClientHello's legacy version, hex (``0x0303``)."""
    client_supported_versions: Tuple[str, ...]
    """The ClientHello's supported_versions extension, hex, GREASE included."""
    server_name: Optional[str]
    """SNI host name."""
    alpn_offered: Tuple[str, ...]
    """ALPN protocols offered by the client (``h3``…)."""
    alpn_selected: Optional[str]
    """ALPN selected by the server: it travels in the encrypted EncryptedExtensions, so
    ``None`` unless a key log opened the Handshake packets."""
    cipher: Optional[str]
    """The ServerHello's cipher suite (IANA name or ``0x….``)."""
    ja3: Optional[str]
    """JA3 MD5 of the ClientHello."""
    ja3_string: Optional[str]
    """The JA3 input string."""
    ja3s: Optional[str]
    """JA3S MD5 of the ServerHello."""
    ja3s_string: Optional[str]
    """The JA3S input string."""
    ja4: Optional[str]
    """FoxIO JA4 of the ClientHello; starts with ``q`` for QUIC."""
    cert_subject_cn: Optional[str] = None
    """Subject CN of the server's first certificate.  QUIC certificates travel in
    encrypted Handshake packets: ``None`` unless a key log opened them."""
    cert_issuer_cn: Optional[str] = None
    """Issuer CN of that certificate (``None`` without a key log, see ``cert_subject_cn``)."""
    cert_san_dns: Tuple[str, ...] = ()
    """SAN DNS names of that certificate (empty without a key log, see ``cert_subject_cn``)."""
    hello_retry_request: bool = False
    """The ServerHello was a HelloRetryRequest; the retried ClientHello gets its own record."""
    transport: str = "quic"
    """Always ``quic``: lets ``quic`` and ``tls`` records share one table (the ``tls`` record says ``tcp``)."""
    server_version_legacy: Optional[str] = None
    """The ServerHello's legacy version in hex (``0x0303`` even for TLS 1.3)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QuicError:
    """The flow's Initial packets could not be decrypted or parsed; the flow is ignored after this."""

    event_type: ClassVar[str] = "quic_error"
    ts: Timestamp
    """Time of the offending datagram."""
    reason: str
    """Stable identifier: ``undecryptable``, ``malformed_packet``, ``malformed_frame``,
    ``malformed_hello``, ``crypto_limit`` or ``packet_limit`` (the last two: a bound was hit)."""
    message: str
    """Human-readable explanation."""


QuicEvent = Union[QuicHandshake, QuicError]
"""Everything this parser emits: a closed union."""


# --------------------------------------------------------------------------- versions and keys

_INITIAL, _ZERO_RTT, _HANDSHAKE, _RETRY = 0, 1, 2, 3

_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
_SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
_SALT_DRAFT_29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
_SALT_DRAFT_23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")
_SALT_DRAFT_21 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")


@dataclass(frozen=True, slots=True)
class _Version:
    """What differs between QUIC versions for an observer of Initial packets."""

    name: str
    salt: bytes
    label_prefix: bytes
    """``quic `` (v1 and drafts) or ``quicv2 `` (RFC 9369 §3.3.2)."""
    types: Tuple[int, int, int, int]
    """Long-header type bits 0..3 mapped to _INITIAL/_ZERO_RTT/_HANDSHAKE/_RETRY."""


_V1_TYPES = (_INITIAL, _ZERO_RTT, _HANDSHAKE, _RETRY)
_V2_TYPES = (_RETRY, _INITIAL, _ZERO_RTT, _HANDSHAKE)


def _version_table() -> Dict[int, _Version]:
    table = {
        0x00000001: _Version("1", _SALT_V1, b"quic ", _V1_TYPES),
        0x6B3343CF: _Version("2", _SALT_V2, b"quicv2 ", _V2_TYPES),
    }
    # IETF drafts 21-34 (0xff0000NN), each with the salt of its draft range.
    for draft in range(21, 35):
        if draft <= 22:
            salt = _SALT_DRAFT_21
        elif draft <= 28:
            salt = _SALT_DRAFT_23
        else:
            salt = _SALT_DRAFT_29 if draft <= 32 else _SALT_V1
        number = 0xFF000000 | draft
        table[number] = _Version(f"0x{number:08x}", salt, b"quic ", _V1_TYPES)
    return table


_VERSIONS = _version_table()


def _hkdf_expand_label(secret: bytes, label: bytes, length: int, hash_name: str = "sha256") -> bytes:
    """TLS 1.3 HKDF-Expand-Label with an empty context (RFC 8446 §7.1).

    Every output here is at most 32 bytes, no more than one block of SHA-256
    or SHA-384, so HKDF-Expand is the single HMAC ``T(1) = HMAC(secret, info
    || 0x01)`` (RFC 5869 §2.3): one C call, no objects.
    """
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + b"\x00\x01"
    return hmac.digest(secret, info, hash_name)[:length]


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketKeys:
    """The packet-protection material of one direction at one encryption level."""

    secret: bytes
    """The TLS secret the keys come from (``client_initial_secret``, a handshake traffic secret...)."""
    key: bytes
    """AEAD key (16 bytes at the Initial level, AEAD_AES_128_GCM; 32 for AES-256 and ChaCha20)."""
    iv: bytes
    """AEAD IV (12 bytes), XORed with the packet number to form the nonce."""
    hp: bytes
    """Header-protection key (AES-ECB, or ChaCha20 for ChaCha20-Poly1305; as long as ``key``)."""


def _direction_keys(spec: _Version, dcid: bytes, from_server: bool) -> PacketKeys:
    """One direction's Initial keys (RFC 9001 §5.2, RFC 9369 §3.3)."""
    initial_secret = hmac.digest(spec.salt, dcid, "sha256")
    secret = _hkdf_expand_label(initial_secret, b"server in" if from_server else b"client in", 32)
    return PacketKeys(
        secret=secret,
        key=_hkdf_expand_label(secret, spec.label_prefix + b"key", 16),
        iv=_hkdf_expand_label(secret, spec.label_prefix + b"iv", 12),
        hp=_hkdf_expand_label(secret, spec.label_prefix + b"hp", 16),
    )


def initial_keys(version: int, dcid: bytes) -> Tuple[PacketKeys, PacketKeys]:
    """The client and server Initial keys of ``version`` for a client-chosen ``dcid``.

    Raises ``ValueError`` for a version without known Initial keys.
    """
    spec = _VERSIONS.get(version)
    if spec is None:
        raise ValueError(f"no Initial keys are known for QUIC version 0x{version:08x}")
    return _direction_keys(spec, dcid, False), _direction_keys(spec, dcid, True)


_AES_GCM, _CHACHA20_POLY1305, _AES_CCM = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Suite:
    """What packet protection needs of a TLS 1.3 cipher suite (RFC 9001 §5.3, §5.4)."""

    hash_name: str
    key_len: int
    aead: int
    """``_AES_GCM``, ``_CHACHA20_POLY1305`` or ``_AES_CCM``; header protection is AES except for ChaCha20."""


_SUITES: Dict[int, _Suite] = {
    0x1301: _Suite("sha256", 16, _AES_GCM),  # TLS_AES_128_GCM_SHA256
    0x1302: _Suite("sha384", 32, _AES_GCM),  # TLS_AES_256_GCM_SHA384
    0x1303: _Suite("sha256", 32, _CHACHA20_POLY1305),  # TLS_CHACHA20_POLY1305_SHA256
    0x1304: _Suite("sha256", 16, _AES_CCM),  # TLS_AES_128_CCM_SHA256 (CCM_8 is barred from QUIC)
}


def _suite_keys(secret: bytes, suite: _Suite, spec: _Version) -> PacketKeys:
    """Packet-protection keys from a TLS traffic secret (RFC 9001 §5.1, RFC 9369 §3.3.2)."""
    prefix, hash_name, key_len = spec.label_prefix, suite.hash_name, suite.key_len
    return PacketKeys(
        secret=secret,
        key=_hkdf_expand_label(secret, prefix + b"key", key_len, hash_name),
        iv=_hkdf_expand_label(secret, prefix + b"iv", 12, hash_name),
        hp=_hkdf_expand_label(secret, prefix + b"hp", key_len, hash_name),
    )


def traffic_keys(secret: bytes, cipher_suite: int, version: int = 1) -> PacketKeys:
    """The packet-protection keys of a TLS handshake or application traffic secret.

    ``secret`` is a ``*_HANDSHAKE_TRAFFIC_SECRET`` or ``*_TRAFFIC_SECRET_0``
    from a key log, ``cipher_suite`` the ServerHello's.  Raises
    ``ValueError`` for a version without known keys or a cipher suite QUIC
    cannot use.
    """
    spec = _VERSIONS.get(version)
    if spec is None:
        raise ValueError(f"no keys are known for QUIC version 0x{version:08x}")
    suite = _SUITES.get(cipher_suite)
    if suite is None:
        raise ValueError(f"cipher suite 0x{cipher_suite:04x} cannot protect QUIC packets")
    return _suite_keys(secret, suite, spec)


class _Aead(Protocol):
    """The one method of cryptography's AEAD classes that the parser uses."""

    def decrypt(self, nonce: bytes, data: Union[bytes, memoryview], associated_data: bytes) -> bytes: ...


_Mask = Callable[[Union[bytes, memoryview]], bytes]
"""Header protection: the 16-byte sample to the mask (at least 5 bytes)."""

_FIVE_ZEROS = bytes(5)


def _aes_mask(hp: bytes) -> _Mask:
    # ECB is stateless per block, so one encryptor object serves every sample.
    return Cipher(algorithms.AES(hp), modes.ECB()).encryptor().update


def _chacha20_mask(hp: bytes) -> _Mask:
    """ChaCha20 header protection (RFC 9001 §5.4.4): five keystream bytes.

    The sample's first 4 bytes are the block counter (little-endian) and the
    other 12 the nonce; cryptography's 16-byte ChaCha20 "nonce" is exactly
    that layout, so the sample is passed as it is.
    """

    def mask(sample: Union[bytes, memoryview]) -> bytes:
        return Cipher(algorithms.ChaCha20(hp, bytes(sample)), None).encryptor().update(_FIVE_ZEROS)

    return mask


class _Opener:
    """Ready-made cipher objects for one direction's packets at one encryption level."""

    __slots__ = ("aead", "iv", "mask")

    def __init__(self, aead: _Aead, iv: bytes, mask: _Mask) -> None:
        self.aead = aead
        self.iv = int.from_bytes(iv, "big")
        self.mask = mask

    @classmethod
    def initial(cls, keys: PacketKeys) -> _Opener:
        """Initial packets: always AES-128-GCM with AES header protection."""
        return cls(AESGCM(keys.key), keys.iv, _aes_mask(keys.hp))

    @classmethod
    def for_suite(cls, keys: PacketKeys, suite: _Suite) -> _Opener:
        """Packets protected with ``suite``; raises ``UnsupportedAlgorithm`` if the OpenSSL build lacks it."""
        if suite.aead == _CHACHA20_POLY1305:
            return cls(ChaCha20Poly1305(keys.key), keys.iv, _chacha20_mask(keys.hp))
        aead: _Aead = AESCCM(keys.key) if suite.aead == _AES_CCM else AESGCM(keys.key)
        return cls(aead, keys.iv, _aes_mask(keys.hp))


def _decode_packet_number(largest: int, truncated: int, nbits: int) -> int:
    """The full packet number closest to ``largest + 1`` (RFC 9000 §A.3)."""
    expected = largest + 1
    window = 1 << nbits
    half = window >> 1
    candidate = (expected & ~(window - 1)) | truncated
    if candidate <= expected - half and candidate < (1 << 62) - window:
        return candidate + window
    if candidate > expected + half and candidate >= window:
        return candidate - window
    return candidate


def _open(
    opener: _Opener, data: memoryview, start: int, pn_offset: int, end: int, largest: int
) -> Optional[Tuple[int, bytes]]:
    """Remove header protection and decrypt one long-header packet ``data[start:end]``.

    Returns the packet number and the plaintext payload, or ``None`` when the
    packet is too short to sample or fails authentication (wrong keys).
    """
    sample = pn_offset + 4
    if sample + 16 > end:
        return None
    mask = opener.mask(data[sample : sample + 16])
    first = data[start] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    truncated = int.from_bytes(data[pn_offset : pn_offset + pn_len], "big")
    truncated ^= int.from_bytes(mask[1 : 1 + pn_len], "big")
    number = _decode_packet_number(largest, truncated, pn_len * 8)
    header = bytes((first,)) + data[start + 1 : pn_offset] + truncated.to_bytes(pn_len, "big")
    nonce = (opener.iv ^ number).to_bytes(12, "big")
    try:
        return number, opener.aead.decrypt(nonce, data[pn_offset + pn_len : end], header)
    except InvalidTag:
        return None


def open_initial_packet(packet: bytes, *, client_dcid: bytes, from_server: bool) -> Tuple[int, bytes]:
    """Decrypt one Initial packet (starting at ``packet[0]``) with the keys of ``client_dcid``.

    Returns the packet number and the plaintext frames.  A utility for tools
    and tests; the parser itself never raises.  Raises ``ValueError`` when the
    packet is not a well-formed Initial of a known version or does not
    decrypt; ``MissingExtraError`` without ``cryptography``.
    """
    if not _HAVE_CRYPTOGRAPHY:
        raise MissingExtraError("quic", "tls")
    try:
        parsed = _parse_long_header(packet, 0)
    except _Fault as exc:
        raise ValueError(exc.message) from None
    if parsed is None or parsed.ptype != _INITIAL:
        raise ValueError("not an Initial packet of a known QUIC version")
    keys = initial_keys(parsed.version, client_dcid)[1 if from_server else 0]
    result = _open(_Opener.initial(keys), memoryview(packet), 0, parsed.pn_offset, parsed.end, -1)
    if result is None:
        raise ValueError("the packet does not decrypt with these keys")
    return result


# --------------------------------------------------------------------------- wire reading


class _Fault(Exception):
    """Internal: the flow is malformed; becomes a :class:`QuicError`, never escapes."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_UNPACK_I = struct.Struct(">I").unpack_from
_UNPACK_Q = struct.Struct(">Q").unpack_from


def _varint(buf: Union[bytes, memoryview], i: int, reason: str = "malformed_packet") -> Tuple[int, int]:
    """A QUIC variable-length integer at ``buf[i]`` and the index after it (RFC 9000 §16)."""
    if i >= len(buf):
        raise _Fault(reason, "variable-length integer runs past the end")
    first = buf[i]
    prefix = first >> 6
    if prefix == 0:
        return first, i + 1
    size = 1 << prefix
    if i + size > len(buf):
        raise _Fault(reason, "variable-length integer runs past the end")
    if prefix == 1:
        return ((first & 0x3F) << 8) | buf[i + 1], i + 2
    if prefix == 2:
        return int(_UNPACK_I(buf, i)[0]) & 0x3FFFFFFF, i + 4
    return int(_UNPACK_Q(buf, i)[0]) & 0x3FFFFFFFFFFFFFFF, i + 8


class _LongHeader:
    """The fields of one long-header packet that the parser needs."""

    __slots__ = ("version", "spec", "ptype", "dcid", "scid", "pn_offset", "end")

    def __init__(
        self, version: int, spec: _Version, ptype: int, dcid: bytes, scid: bytes, pn_offset: int, end: int
    ) -> None:
        self.version = version
        self.spec = spec
        self.ptype = ptype
        self.dcid = dcid
        self.scid = scid
        self.pn_offset = pn_offset
        self.end = end


def _parse_long_header(data: Union[bytes, memoryview], pos: int) -> Optional[_LongHeader]:
    """The long header at ``data[pos]``; ``None`` when the rest of the datagram cannot be walked.

    ``None`` covers Version Negotiation, unknown versions and Retry (none has
    a Length field, so nothing after them is a packet of ours).  A header
    that is cut short raises :class:`_Fault`.
    """
    n = len(data)
    if pos + 7 > n:
        raise _Fault("malformed_packet", "long header runs past the end of the datagram")
    version = int(_UNPACK_I(data, pos + 1)[0])
    spec = _VERSIONS.get(version)
    if spec is None:
        return None
    ptype = spec.types[(data[pos] >> 4) & 0x03]
    if ptype == _RETRY:
        return None
    i = pos + 5
    dcid_len = data[i]
    i += 1
    if dcid_len > 20 or i + dcid_len >= n:
        raise _Fault("malformed_packet", "bad destination connection ID length")
    dcid = bytes(data[i : i + dcid_len])
    i += dcid_len
    scid_len = data[i]
    i += 1
    if scid_len > 20 or i + scid_len > n:
        raise _Fault("malformed_packet", "bad source connection ID length")
    scid = bytes(data[i : i + scid_len])
    i += scid_len
    if ptype == _INITIAL:
        token_len, i = _varint(data, i)
        i += token_len
    length, i = _varint(data, i)
    end = i + length
    if end > n:
        raise _Fault("malformed_packet", f"packet length {length} exceeds the datagram")
    return _LongHeader(version, spec, ptype, dcid, scid, i, end)


_NON_ZERO = re.compile(b"[^\x00]")


def _crypto_frames(payload: bytes) -> List[Tuple[int, bytes]]:
    """The (offset, data) of every CRYPTO frame in an Initial or Handshake packet's plaintext.

    Frames allowed in those packets (RFC 9000 §12.4: the same set for both)
    are read by their exact lengths; any other type raises :class:`_Fault`.
    """
    out: List[Tuple[int, bytes]] = []
    i = 0
    n = len(payload)
    reason = "malformed_frame"
    while i < n:
        ftype = payload[i]
        if ftype == 0x00:  # PADDING: skip the whole run in C
            m = _NON_ZERO.search(payload, i)
            i = m.start() if m is not None else n
            continue
        i += 1
        if ftype == 0x06:  # CRYPTO
            offset, i = _varint(payload, i, reason)
            length, i = _varint(payload, i, reason)
            if i + length > n:
                raise _Fault(reason, "CRYPTO frame runs past the end of the packet")
            out.append((offset, payload[i : i + length]))
            i += length
        elif ftype == 0x01:  # PING
            continue
        elif ftype in (0x02, 0x03):  # ACK, ACK with ECN counts
            _, i = _varint(payload, i, reason)  # largest acknowledged
            _, i = _varint(payload, i, reason)  # ack delay
            count, i = _varint(payload, i, reason)
            _, i = _varint(payload, i, reason)  # first range
            if count > (n - i) // 2:  # each range is at least two one-byte varints
                raise _Fault(reason, "ACK range count exceeds the packet")
            for _ in range(count * 2 + (3 if ftype == 0x03 else 0)):
                _, i = _varint(payload, i, reason)
        elif ftype in (0x1C, 0x1D):  # CONNECTION_CLOSE (transport, application)
            _, i = _varint(payload, i, reason)  # error code
            if ftype == 0x1C:
                _, i = _varint(payload, i, reason)  # offending frame type
            text_len, i = _varint(payload, i, reason)
            if i + text_len > n:
                raise _Fault(reason, "CONNECTION_CLOSE reason runs past the end")
            i += text_len
        else:
            raise _Fault(reason, f"frame type 0x{ftype:02x} is not allowed in an Initial or Handshake packet")
    return out


class _CryptoStream:
    """One direction's CRYPTO stream at one encryption level: in-order prefix plus early pieces."""

    __slots__ = ("data", "pending", "pending_bytes", "consumed")

    def __init__(self) -> None:
        self.data = bytearray()
        """Bytes from offset 0 with no hole."""
        self.pending: Dict[int, bytes] = {}
        """Pieces that start beyond ``data``, by offset (longest kept per offset)."""
        self.pending_bytes = 0
        self.consumed = 0
        """Offset of the first byte not yet cut into a handshake message."""

    def add(self, offset: int, piece: bytes, max_bytes: int, max_fragments: int) -> bool:
        """Store a CRYPTO frame's bytes; True when the in-order prefix grew.

        ``max_bytes`` bounds the stream offset and the bytes held out of
        order, ``max_fragments`` the pieces held out of order.
        """
        end = offset + len(piece)
        if end > max_bytes:
            raise _Fault("crypto_limit", f"CRYPTO data reaches offset {end}, beyond the bound of {max_bytes}")
        have = len(self.data)
        if end <= have or not piece:
            return False  # retransmission of bytes already held
        if offset <= have:
            self.data += piece[have - offset :]
            if self.pending:
                self._drain()
            return True
        old = self.pending.get(offset)
        if old is None:
            if len(self.pending) >= max_fragments:
                raise _Fault("crypto_limit", "too many out-of-order CRYPTO pieces")
        elif len(old) >= len(piece):
            return False
        else:
            self.pending_bytes -= len(old)
        if self.pending_bytes + len(piece) > max_bytes:
            raise _Fault("crypto_limit", f"out-of-order CRYPTO bytes exceed the bound of {max_bytes}")
        self.pending[offset] = piece
        self.pending_bytes += len(piece)
        return False

    def _drain(self) -> None:
        """Move every held piece that now touches the prefix into it."""
        while self.pending:
            first = min(self.pending)
            have = len(self.data)
            if first > have:
                return
            piece = self.pending.pop(first)
            self.pending_bytes -= len(piece)
            if first + len(piece) > have:
                self.data += piece[have - first :]

    def messages(self, max_bytes: int) -> List[Tuple[int, bytes]]:
        """Cut the complete handshake messages (type, body) from the prefix; ``max_bytes`` as in :meth:`add`."""
        out: List[Tuple[int, bytes]] = []
        data = self.data
        pos = self.consumed
        while len(data) - pos >= 4:
            htype = data[pos]
            length = int.from_bytes(data[pos + 1 : pos + 4], "big")
            if pos + 4 + length > max_bytes:
                raise _Fault("crypto_limit", f"handshake message of {length} bytes exceeds the bound of {max_bytes}")
            if pos + 4 + length > len(data):
                break
            out.append((htype, bytes(data[pos + 4 : pos + 4 + length])))
            pos += 4 + length
        self.consumed = pos
        return out


# --------------------------------------------------------------------------- the parser


class _HandshakeSpace:
    """The server's Handshake packets of one connection, opened with a logged secret."""

    __slots__ = ("secret", "suite", "openers", "largest", "stream", "packets")

    def __init__(self, secret: bytes, suite: _Suite) -> None:
        self.secret = secret
        """``SERVER_HANDSHAKE_TRAFFIC_SECRET`` from the key log."""
        self.suite = suite
        self.openers: Dict[bytes, Optional[_Opener]] = {}
        """Per HKDF label prefix (v1 and v2 differ); ``None`` when this OpenSSL lacks the cipher."""
        self.largest = -1
        """Largest packet number opened so far (the Handshake space numbers from 0)."""
        self.stream = _CryptoStream()
        self.packets = 0
        """Handshake packets tried, for ``max_handshake_packets``."""

    def opener(self, spec: _Version) -> Optional[_Opener]:
        """The cipher objects for packets of ``spec``, derived once."""
        prefix = spec.label_prefix
        if prefix in self.openers:
            return self.openers[prefix]
        try:
            opener: Optional[_Opener] = _Opener.for_suite(_suite_keys(self.secret, self.suite, spec), self.suite)
        except (UnsupportedAlgorithm, ValueError):
            opener = None  # e.g. ChaCha20 missing from a FIPS build: no certificate, no crash
        self.openers[prefix] = opener
        return opener


_Certificate = Tuple[Optional[str], Optional[str], Tuple[str, ...]]
"""``(subject CN, issuer CN, SAN DNS names)``, as :func:`certificate_summary` gives them."""


class _Connection:
    """One QUIC connection attempt: its keys, CRYPTO streams and pending hellos."""

    __slots__ = (
        "odcid",
        "openers",
        "server_cids",
        "largest",
        "streams",
        "client_hello",
        "client_version",
        "server_hello",
        "server_version",
        "ts",
        "done",
        "handshake",
        "alpn",
        "certificate",
    )

    def __init__(self, odcid: bytes) -> None:
        self.odcid = odcid
        """The DCID of the client's first Initial: the source of every Initial key."""
        self.openers: Dict[Tuple[int, bool], _Opener] = {}
        """Per (QUIC version, from server): derived on first use, since many flows never see a server Initial."""
        self.server_cids: Set[bytes] = set()
        self.largest = [-1, -1]
        """Largest packet number seen per direction (client, server)."""
        self.streams = (_CryptoStream(), _CryptoStream())
        self.client_hello: Optional[ClientHello] = None
        self.client_version = 0
        self.server_hello: Optional[ServerHello] = None
        self.server_version = 0
        self.ts = 0
        self.done = False
        """A final (non-HRR) ServerHello was seen: later Initials are retransmissions."""
        self.handshake: Optional[_HandshakeSpace] = None
        """Set while the record waits for the certificate (a key log had the secret)."""
        self.alpn: Optional[str] = None
        """ALPN from the EncryptedExtensions."""
        self.certificate: Optional[_Certificate] = None

    def opener(self, version: int, from_server: bool) -> _Opener:
        """The cipher objects of ``version`` for one direction, derived once."""
        opener = self.openers.get((version, from_server))
        if opener is None:
            keys = _direction_keys(_VERSIONS[version], self.odcid, from_server)
            opener = self.openers[version, from_server] = _Opener.initial(keys)
        return opener


_NO_EVENTS: Tuple[SessionEvent, ...] = ()

_SERVER_HANDSHAKE_TRAFFIC_SECRET = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
_ENCRYPTED_EXTENSIONS, _CERTIFICATE, _FINISHED = 8, 11, 20


def _version_label(version: int) -> str:
    spec = _VERSIONS.get(version)
    return spec.name if spec is not None else f"0x{version:08x}"


def _selected_alpn(body: bytes) -> Optional[str]:
    """The ALPN protocol of an EncryptedExtensions body (RFC 8446 §4.3.1), or ``None``."""
    extensions = _tlswire._parse_extensions(body, 0)
    for ext_type, ext_body in extensions or ():
        if ext_type == _tlswire.ExtensionType.ALPN:
            names = _tlswire._protocol_names(ext_body)
            return names[0].decode("utf-8", "replace") if names else None
    return None


class QuicParser:
    """Decrypts one UDP flow's QUIC Initial packets and reports its TLS hellos.

    With a ``keylog`` holding the connection's server handshake secret it
    also opens the server's Handshake packets for ALPN and certificate.
    """

    __slots__ = ("_config", "_keylog", "_conn", "_failed", "_initials", "_handshakes", "_waiting")

    def __init__(self, config: QuicConfig = DEFAULT_CONFIG, keylog: Optional[KeyLog] = None) -> None:
        self._config = config
        self._keylog = keylog
        self._conn: Optional[_Connection] = None
        self._failed = False
        self._initials = 0
        self._handshakes = 0
        self._waiting = False
        """The current connection's record is held for its certificate."""

    # -- DatagramParser -----------------------------------------------------------------

    def datagram(self, direction: Direction, payload: bytes, ts: Timestamp) -> Sequence[SessionEvent]:
        """One UDP payload of the flow; returns the records it completed."""
        if self._failed or not payload:
            return _NO_EVENTS
        if not payload[0] & 0x80:
            # Short-header (1-RTT) datagrams: the common case after the handshake.  The
            # client's first one means it has the server's whole flight, certificate included.
            if self._waiting and direction is Direction.ORIG:
                return self._release()
            return _NO_EVENTS
        out: List[SessionEvent] = []
        try:
            self._walk(direction is Direction.RESP, payload, ts, out)
        except _Fault as fault:
            self._failed = True
            if self._waiting:
                out.extend(self._release())  # the held record is complete: it goes before the error
            out.append(QuicError(ts=ts, reason=fault.reason, message=fault.message))
        return out

    def close(self, ts: Timestamp) -> Sequence[SessionEvent]:
        """The flow is over: report a ClientHello (or ServerHello) that is still unpaired."""
        out: List[SessionEvent] = []
        conn = self._conn
        if conn is not None:
            self._flush(conn, out)
        return out

    # -- datagram walk --------------------------------------------------------------------

    def _walk(self, from_server: bool, payload: bytes, ts: Timestamp, out: List[SessionEvent]) -> None:
        data = memoryview(payload)
        n = len(payload)
        pos = 0
        while pos < n and payload[pos] & 0x80:
            try:
                header = _parse_long_header(data, pos)
            except _Fault:
                if pos == 0:
                    raise
                return  # junk after a good packet: ignore the rest (RFC 9000 §12.2)
            if header is None:
                return
            if header.ptype == _INITIAL:
                self._initial(from_server, header, data, pos, ts, out)
                if self._failed:
                    return
            elif header.ptype == _HANDSHAKE and from_server and self._waiting:
                self._handshake(header, data, pos, ts, out)
            pos = header.end
        if pos < n and self._waiting and not from_server:
            out.extend(self._release())  # a coalesced 1-RTT packet of the client

    def _initial(
        self,
        from_server: bool,
        header: _LongHeader,
        data: memoryview,
        start: int,
        ts: Timestamp,
        out: List[SessionEvent],
    ) -> None:
        config = self._config
        conn = self._conn
        if from_server:
            if conn is None:
                raise _Fault("undecryptable", "server Initial packet before any client Initial")
            if conn.done:
                return
        elif conn is not None and conn.done and (header.dcid == conn.odcid or header.dcid in conn.server_cids):
            return  # the client's Initial ACKs after the handshake
        if self._initials >= config.max_initial_packets:
            raise _Fault("packet_limit", f"more than {config.max_initial_packets} Initial packets")
        self._initials += 1
        side = 1 if from_server else 0
        result = None
        if conn is not None:
            opener = conn.opener(header.version, from_server)
            result = _open(opener, data, start, header.pn_offset, header.end, conn.largest[side])
        if conn is None or result is None:
            conn, result = self._new_connection(from_server, header, data, start, out)
        number, plaintext = result
        if number > conn.largest[side]:
            conn.largest[side] = number
        if from_server and len(conn.server_cids) < config.max_connection_ids:
            conn.server_cids.add(header.scid)
        stream = conn.streams[side]
        grew = False
        for offset, piece in _crypto_frames(plaintext):
            grew = stream.add(offset, piece, config.max_crypto_bytes, config.max_crypto_fragments) or grew
        if grew:
            for htype, body in stream.messages(config.max_crypto_bytes):
                self._message(conn, from_server, htype, body, header.version, ts, out)

    def _new_connection(
        self, from_server: bool, header: _LongHeader, data: memoryview, start: int, out: List[SessionEvent]
    ) -> Tuple[_Connection, Tuple[int, bytes]]:
        """Try the keys of the packet's own DCID: a new connection attempt (after a Retry, or a reused port)."""
        old = self._conn
        if from_server or (old is not None and header.dcid == old.odcid):
            raise _Fault("undecryptable", "Initial packet fails authentication with the connection's keys")
        fresh = _Connection(header.dcid)
        result = _open(fresh.opener(header.version, False), data, start, header.pn_offset, header.end, -1)
        if result is None:
            raise _Fault("undecryptable", "client Initial packet fails authentication")
        if self._handshakes >= self._config.max_handshakes:
            raise _Fault("packet_limit", f"more than {self._config.max_handshakes} connections on one flow")
        self._handshakes += 1
        if old is not None:
            self._flush(old, out)
        self._conn = fresh
        return fresh, result

    # -- Handshake packets (key log) ------------------------------------------------------

    def _handshake(
        self, header: _LongHeader, data: memoryview, start: int, ts: Timestamp, out: List[SessionEvent]
    ) -> None:
        """One server Handshake packet while the record waits for its certificate."""
        conn = self._conn
        space = conn.handshake if conn is not None else None
        if conn is None or space is None:
            return
        config = self._config
        opener = space.opener(header.spec)
        if opener is None or space.packets >= config.max_handshake_packets:
            self._flush(conn, out)
            return
        space.packets += 1
        result = _open(opener, data, start, header.pn_offset, header.end, space.largest)
        if result is None:
            if space.largest < 0:
                self._flush(conn, out)  # nothing ever opened: the logged secret is not this connection's
            return
        number, plaintext = result
        if number > space.largest:
            space.largest = number
        limit = config.max_handshake_crypto_bytes
        stream = space.stream
        grew = False
        for offset, piece in _crypto_frames(plaintext):
            grew = stream.add(offset, piece, limit, config.max_crypto_fragments) or grew
        if grew:
            for htype, body in stream.messages(limit):
                if self._server_message(conn, htype, body, ts, out):
                    return

    def _server_message(
        self, conn: _Connection, htype: int, body: bytes, ts: Timestamp, out: List[SessionEvent]
    ) -> bool:
        """A message of the server's Handshake flight; True once the record is emitted."""
        if htype == _ENCRYPTED_EXTENSIONS:
            conn.alpn = _selected_alpn(body)
            return False
        if htype == _CERTIFICATE:
            certs = _tlswire.parse_certificate_list(body, tls13=True)
            if certs:
                conn.certificate = certificate_summary(certs[0])
                conn.ts = ts
        elif htype != _FINISHED:
            return False  # CertificateRequest, CertificateVerify, CompressedCertificate
        self._flush(conn, out)
        return True

    def _release(self) -> List[SessionEvent]:
        """Emit the record held for a certificate that will not come."""
        out: List[SessionEvent] = []
        conn = self._conn
        if conn is not None:
            self._flush(conn, out)
        self._waiting = False
        return out

    # -- handshake messages ---------------------------------------------------------------

    def _message(
        self,
        conn: _Connection,
        from_server: bool,
        htype: int,
        body: bytes,
        version: int,
        ts: Timestamp,
        out: List[SessionEvent],
    ) -> None:
        if not from_server and htype == 1:
            hello = _tlswire.parse_client_hello(body)
            if hello is None:
                raise _Fault("malformed_hello", "the ClientHello does not parse")
            if conn.client_hello is not None:
                self._flush(conn, out)
            conn.client_hello, conn.client_version, conn.ts = hello, version, ts
        elif from_server and htype == 2:
            server = _tlswire.parse_server_hello(body)
            if server is None:
                raise _Fault("malformed_hello", "the ServerHello does not parse")
            if conn.server_hello is not None:
                self._flush(conn, out)
            conn.server_hello, conn.server_version, conn.ts = server, version, ts
        else:
            return  # no other message belongs in Initial packets; nothing to report
        client, server_hello = conn.client_hello, conn.server_hello
        if client is not None and server_hello is not None:
            retry = server_hello.is_hello_retry_request
            conn.done = not retry
            if not retry and self._await_certificate(conn, client, server_hello):
                return
            self._flush(conn, out)

    def _await_certificate(self, conn: _Connection, client: ClientHello, server: ServerHello) -> bool:
        """Hold the record for the certificate when the key log can open the Handshake packets."""
        keylog = self._keylog
        if keylog is None:
            return False
        suite = _SUITES.get(server.cipher_suite)
        secret = keylog.get(_SERVER_HANDSHAKE_TRAFFIC_SECRET, client.random)
        if suite is None or secret is None:
            return False
        conn.handshake = _HandshakeSpace(secret, suite)
        self._waiting = True
        return True

    def _flush(self, conn: _Connection, out: List[SessionEvent]) -> None:
        """Report the connection's pending hello(s), if any, and forget them."""
        if conn.handshake is not None:
            conn.handshake = None
            self._waiting = False
        client, server = conn.client_hello, conn.server_hello
        if client is None and server is None:
            return
        version = conn.server_version if server is not None else conn.client_version
        out.append(_record(client, server, _version_label(version), conn.ts, conn.alpn, conn.certificate))
        conn.client_hello = None
        conn.server_hello = None
        conn.alpn = None
        conn.certificate = None


# --------------------------------------------------------------------------- records


def _record(
    client: Optional[ClientHello],
    server: Optional[ServerHello],
    quic_version: str,
    ts: Timestamp,
    alpn_selected: Optional[str] = None,
    certificate: Optional[_Certificate] = None,
) -> QuicHandshake:
    """Build the record from the parsed hellos with the TLS helpers shared with :mod:`flowscope.parsers.tls`.

    ``alpn_selected`` and ``certificate`` come from the decrypted Handshake
    packets, when a key log opened them.
    """
    ja3_string = ja3 = ja4 = server_name = client_version = None
    supported: Tuple[str, ...] = ()
    alpn: Tuple[str, ...] = ()
    if client is not None:
        ja3_string, ja3 = _tlswire.ja3(client)
        ja4 = _tlswire.ja4(client, transport="q")
        server_name = client.server_name
        client_version = f"0x{client.legacy_version:04x}"
        supported = tuple([f"0x{v:04x}" for v in client.supported_versions])
        alpn = client.alpn
    ja3s_string = ja3s = negotiated = cipher = legacy = None
    selected = alpn_selected
    retry = False
    if server is not None:
        ja3s_string, ja3s = _tlswire.ja3s(server)
        negotiated = _tlswire.version_name(server.negotiated_version)
        cipher = _tlswire.cipher_name(server.cipher_suite)
        legacy = f"0x{server.legacy_version:04x}"
        if selected is None:
            selected = server.alpn
        retry = server.is_hello_retry_request
    subject, issuer, san = certificate if certificate is not None else (None, None, ())
    return QuicHandshake(
        ts=ts,
        quic_version=quic_version,
        version=negotiated,
        client_version=client_version,
        client_supported_versions=supported,
        server_name=server_name,
        alpn_offered=alpn,
        alpn_selected=selected,
        cipher=cipher,
        ja3=ja3,
        ja3_string=ja3_string,
        ja3s=ja3s,
        ja3s_string=ja3s_string,
        ja4=ja4,
        cert_subject_cn=subject,
        cert_issuer_cn=issuer,
        cert_san_dns=san,
        hello_retry_request=retry,
        server_version_legacy=legacy,
    )


# --------------------------------------------------------------------------- factory


class QuicParserFactory:
    """Recognises QUIC by a client (or server) Initial packet and makes :class:`QuicParser` s.

    ``keylog`` (settable at any time; parsers made afterwards use it) lends
    TLS secrets for opening the server's Handshake packets: the certificate
    and selected ALPN then appear in the records.  The key log object is
    shared, not copied, so secrets added to it later (a pcapng Decryption
    Secrets Block, a growing ``SSLKEYLOGFILE``) reach existing parsers too.
    """

    __slots__ = ("_config", "keylog")

    name = "quic"
    ports: FrozenSet[int] = frozenset({443, 80, 8443, 4433})

    def __init__(self, config: QuicConfig = DEFAULT_CONFIG, keylog: Optional[KeyLog] = None) -> None:
        self._config = config
        self.keylog: Optional[KeyLog] = keylog
        """TLS secrets by client random, or ``None`` (then only Initial packets are read)."""

    def detect(self, direction: Direction, data: bytes, flow: FlowInfo) -> Detection:
        """MATCH a long-header Initial packet of a version whose Initial keys are known.

        Another long-header packet of such a version (a Handshake or Retry
        packet captured before the client's Initial) says NEED_MORE: the
        Initial may be the next datagram.
        """
        if len(data) < 7 or data[0] & 0xC0 != 0xC0:  # long header with the fixed bit
            return Detection.NO_MATCH
        spec = _VERSIONS.get(int(_UNPACK_I(data, 1)[0]))
        if spec is None:
            return Detection.NO_MATCH
        if spec.types[(data[0] >> 4) & 0x03] != _INITIAL:
            return Detection.NEED_MORE
        try:
            header = _parse_long_header(data, 0)
        except _Fault:
            return Detection.NO_MATCH
        return Detection.MATCH if header is not None else Detection.NO_MATCH

    def create_datagram(self, flow: FlowInfo) -> DatagramParser:
        """A parser for one flow; raises ``MissingExtraError`` without ``cryptography``."""
        if not _HAVE_CRYPTOGRAPHY:
            raise MissingExtraError("quic", "tls")
        return QuicParser(self._config, self.keylog)


def factory() -> QuicParserFactory:
    """The entry point ``flowscope.parsers.quic:factory``."""
    return QuicParserFactory()
