"""TLS over TCP: one ``tls`` record per handshake (the ``flowscope[tls]`` extra).

The wire format, fingerprints and message reassembly live in
:mod:`flowscope.parsers._tlswire`, which needs nothing outside the standard
library.  This module adds the per-flow state machine and the server
certificate: subject and issuer common names and SAN DNS names come from
``cryptography.x509``.  Without ``cryptography`` installed (``pip install
'flowscope[tls]'``) hellos and fingerprints are still parsed and the
``cert_*`` fields stay ``None`` / empty; only ``cert_chain_len`` is filled.

Theory of operation
-------------------
Each direction has a :class:`~flowscope.parsers._tlswire.HandshakeReassembler`
that turns its bytes into handshake messages plus markers for other record
types, in stream order.  The parser then decides roles and pairs messages:

* **Roles.**  The side that sends a ClientHello is the client, whatever the
  flow's orientation says; the side that sends a ServerHello is the server.
  The first hello fixes both roles.  A ClientHello from the server side (or
  a ServerHello from the client side) is a protocol violation.
* **Records.**  Every ClientHello opens a *pending record*.  A ServerHello
  closes the newest pending record that has no ServerHello yet (or opens its
  own when there is none: a capture that starts mid-handshake).
* **When a record is written** -- as soon as its visible part is complete:

  ========================================  ===================================
  what arrived                              effect
  ========================================  ===================================
  HelloRetryRequest                         write that record now
                                            (``hello_retry_request=True``); the
                                            next ClientHello opens a new one;
                                            both sides switch to TLS 1.3 rules
  ServerHello selecting TLS 1.3             write it now: everything after is
                                            encrypted; the flow is *done*
  ServerHello of TLS 1.2 or earlier         wait for the certificate
  server Certificate (1.2 and earlier)      attach the chain, write, *done*
  ServerHelloDone, or any non-handshake     write (no certificate), *done*
  record (ChangeCipherSpec, alert, data)
  gap or end of the server direction        write what is there, stop
                                            reading that direction
  ``close()``                               write every pending record
  ========================================  ===================================

  *Done* means the visible handshake is over: remaining pending records (a
  ClientHello that was never answered) are written too, both reassemblers
  are dropped and later bytes are ignored at the cost of one comparison,
  since renegotiation and everything else happen encrypted.
* **Gaps.**  A gap in a direction stops handshake parsing in *that*
  direction for good (its record framing is lost); the other direction goes
  on, so a ClientHello can still be paired with a ServerHello seen later.
* **Malformed input** (impossible record header, unparsable hello, a hello
  from the wrong side) writes the pending records, then a fatal
  :class:`TlsError`, and the flow is ignored from then on.  A handshake
  message larger than :attr:`HandshakeLimits.max_message` is skipped with a
  non-fatal :class:`TlsError`.

Bounds: the reassemblers' (see :class:`TlsConfig`) and at most
:attr:`TlsConfig.max_pending_hellos` unanswered ClientHellos per flow.
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass, field
from typing import ClassVar, FrozenSet, List, Optional, Sequence, Tuple, Union

from flowscope_core import Detection, Direction, FlowInfo, SessionEvent, Timestamp

from flowscope.parsers._tlswire import (
    ClientHello,
    ContentType,
    HandshakeLimits,
    HandshakeReassembler,
    HandshakeType,
    ServerHello,
    cipher_name,
    ja3,
    ja3s,
    ja4,
    parse_certificate_list,
    parse_client_hello,
    parse_server_hello,
    version_name,
)

try:
    from cryptography import x509 as _x509
    from cryptography.x509.oid import NameOID as _NameOID

    HAVE_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - exercised only without the extra
    HAVE_CRYPTOGRAPHY = False

__all__ = [
    "HAVE_CRYPTOGRAPHY",
    "TlsConfig",
    "TlsError",
    "TlsEvent",
    "TlsHandshake",
    "TlsParser",
    "TlsParserFactory",
    "factory",
]


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsHandshake:
    """One TLS handshake: a ClientHello with its ServerHello (either may be missing)."""

    event_type: ClassVar[str] = "tls"
    ts: Timestamp
    """Packet time of the bytes that completed the record (for ``close()``: of its last message)."""
    version: Optional[str]
    """Negotiated version (``TLSv1.3``, ``SSLv3``, ``0x7f1c`` when unknown); ``None`` without a ServerHello."""
    client_version: Optional[str]
    """The ClientHello's legacy version in hex (``0x0303``); ``None`` without a ClientHello."""
    client_supported_versions: Tuple[str, ...]
    """The supported_versions extension's list as sent, in hex, GREASE included; empty when absent."""
    server_name: Optional[str]
    """SNI host name."""
    alpn_offered: Tuple[str, ...]
    """ALPN protocols offered by the client, in order."""
    alpn_selected: Optional[str]
    """ALPN protocol selected by the server (visible up to TLS 1.2; TLS 1.3 encrypts it)."""
    cipher: Optional[str]
    """Selected cipher suite: IANA name, or ``0x….`` when unassigned."""
    ja3: Optional[str]
    """MD5 of ``ja3_string``."""
    ja3_string: Optional[str]
    """Salesforce JA3 string of the ClientHello."""
    ja3s: Optional[str]
    """MD5 of ``ja3s_string``."""
    ja3s_string: Optional[str]
    """JA3S string of the ServerHello."""
    ja4: Optional[str]
    """FoxIO JA4 fingerprint of the ClientHello (``t…``)."""
    cert_subject_cn: Optional[str]
    """Subject common name of the server's first certificate, when visible (TLS 1.2 and earlier)."""
    cert_issuer_cn: Optional[str]
    """Issuer common name of that certificate."""
    cert_san_dns: Tuple[str, ...]
    """DNS names of that certificate's subjectAltName extension."""
    hello_retry_request: bool
    """The ServerHello was a HelloRetryRequest; a second record follows for the retried hello."""
    cert_chain_len: Optional[int]
    """Certificates in the server's Certificate message; ``None`` when none was visible."""
    transport: str = "tcp"
    """``tcp`` here; QUIC handshakes carry ``quic``."""
    server_version_legacy: Optional[str] = None
    """The ServerHello's legacy version in hex (``0x0303`` even for TLS 1.3)."""
    client_is_orig: Optional[bool] = None
    """Whether the client is the flow's originator (``False`` for captures that start mid-flow)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsError:
    """The TLS bytes of a flow could not be understood (or part of them was skipped)."""

    event_type: ClassVar[str] = "tls_error"
    ts: Timestamp
    """Packet time of the offending bytes."""
    reason: str
    """Stable identifier: ``record_malformed``, ``client_hello_malformed``,
    ``server_hello_malformed``, ``hello_from_wrong_side``, ``handshake_message_too_large``."""
    message: str
    """Human-readable detail."""
    direction: str
    """``orig`` or ``resp``: who sent the bytes."""
    fatal: bool
    """True when the parser stopped reading this flow."""


TlsEvent = Union[TlsHandshake, TlsError]
"""Everything the TLS parser emits: a closed union."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    """Bounds of one TLS parser."""

    limits: HandshakeLimits = field(default_factory=HandshakeLimits)
    """Per-direction reassembly bounds (largest handshake message, largest record)."""
    max_pending_hellos: int = 8
    """Unanswered ClientHellos kept per flow; the oldest is written unpaired beyond this.

    A connection carries one ClientHello, two after a HelloRetryRequest;
    more is a client that is not speaking TLS as clients do, and each kept
    hello costs a few KiB.
    """


# --------------------------------------------------------------------------- certificates


def _common_name(name: _x509.Name) -> Optional[str]:
    attrs = name.get_attributes_for_oid(_NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def certificate_summary(der: bytes) -> Tuple[Optional[str], Optional[str], Tuple[str, ...]]:
    """``(subject CN, issuer CN, SAN DNS names)`` of a DER certificate.

    Fields that cannot be decoded are ``None`` / empty; certificates are
    attacker-controlled bytes, so every decoding failure is absorbed here.
    """
    if not HAVE_CRYPTOGRAPHY:
        return None, None, ()
    try:
        with warnings.catch_warnings():
            # Real certificates break rules cryptography warns about (a non-positive serial
            # number…); we only read names from them, so the warning is noise on stderr.
            warnings.simplefilter("ignore")
            cert = _x509.load_der_x509_certificate(der)
    except ValueError:
        return None, None, ()
    subject: Optional[str] = None
    issuer: Optional[str] = None
    san: Tuple[str, ...] = ()
    # cryptography decodes lazily and raises several exception types (ValueError,
    # DuplicateExtension, UnsupportedGeneralNameType...) on hostile DER; none may escape.
    try:
        subject = _common_name(cert.subject)
    except Exception:  # noqa: BLE001
        subject = None
    try:
        issuer = _common_name(cert.issuer)
    except Exception:  # noqa: BLE001
        issuer = None
    try:
        ext = cert.extensions.get_extension_for_class(_x509.SubjectAlternativeName)
        san = tuple(ext.value.get_values_for_type(_x509.DNSName))
    except Exception:  # noqa: BLE001 - includes ExtensionNotFound
        san = ()
    return subject, issuer, san


# --------------------------------------------------------------------------- parser


class _Record:
    """A handshake being collected: hellos and the server's chain, until it is written."""

    __slots__ = ("certs", "client_hello", "server_hello", "ts")

    def __init__(self, ts: Timestamp) -> None:
        self.client_hello: Optional[ClientHello] = None
        self.server_hello: Optional[ServerHello] = None
        self.certs: Optional[Tuple[bytes, ...]] = None
        self.ts = ts


_NOTHING: Tuple[SessionEvent, ...] = ()
_DIRECTION_LABEL = ("orig", "resp")
_TLS12_OR_OLDER = frozenset({0x0002, 0x0300, 0x0301, 0x0302, 0x0303})


class TlsParser:
    """The :class:`flowscope_core.SessionParser` for one TLS-over-TCP flow."""

    __slots__ = ("_awaiting", "_client", "_config", "_done", "_failed", "_pending", "_rx", "_skipped")

    def __init__(self, config: Optional[TlsConfig] = None) -> None:
        self._config = config if config is not None else TlsConfig()
        limits = self._config.limits
        self._rx: List[Optional[HandshakeReassembler]] = [HandshakeReassembler(limits), HandshakeReassembler(limits)]
        self._client: Optional[Direction] = None
        self._pending: List[_Record] = []
        self._awaiting: Optional[_Record] = None
        self._done = False
        self._failed = False
        self._skipped = [0, 0]

    @property
    def done(self) -> bool:
        """True once the visible handshake is over: nothing more can come of this flow.

        The engine then stops reassembling the flow (see docs/plugins.md, "done").
        """
        return self._done

    # -- SessionParser -------------------------------------------------------

    def data(self, direction: Direction, data: bytes, ts: Timestamp) -> Sequence[SessionEvent]:
        """Bytes of ``direction``, in order."""
        if self._done:
            return _NOTHING
        rx = self._rx[direction]
        if rx is None:
            return _NOTHING
        items = rx.feed_records(data)
        out: List[SessionEvent] = []
        for msg_type, body in items:
            if msg_type < 0:
                self._on_other_record(-msg_type, ts, out)
            elif msg_type == HandshakeType.CLIENT_HELLO:
                self._on_client_hello(direction, body, ts, out)
            elif msg_type == HandshakeType.SERVER_HELLO:
                self._on_server_hello(direction, body, ts, out)
            elif msg_type == HandshakeType.CERTIFICATE:
                self._on_certificate(direction, body, ts, out)
            elif (
                msg_type == HandshakeType.SERVER_HELLO_DONE and self._awaiting is not None and direction != self._client
            ):
                self._awaiting.ts = ts
                self._finish(out)
            if self._done:
                break
        if rx.skipped != self._skipped[direction] and not self._failed:
            # Reported after the chunk's messages: the reassembler counts skips, it does not place them.
            self._skipped[direction] = rx.skipped
            message = f"a handshake message above {self._config.limits.max_message} bytes was skipped"
            out.append(self._error(direction, ts, "handshake_message_too_large", message, fatal=False))
        if rx.error is not None and not self._done:
            self._fail(direction, ts, "record_malformed", rx.error, out)
        return out

    def gap(self, direction: Direction, length: int, ts: Timestamp) -> Sequence[SessionEvent]:
        """``length`` bytes of ``direction`` are lost: stop reading that direction."""
        return self._stop_direction(direction, ts)

    def end(self, direction: Direction, ts: Timestamp) -> Sequence[SessionEvent]:
        """``direction`` is closed."""
        return self._stop_direction(direction, ts)

    def close(self, ts: Timestamp) -> Sequence[SessionEvent]:
        """The flow is over: write every pending record."""
        if self._done:
            return _NOTHING
        out: List[SessionEvent] = []
        self._finish(out)
        return out

    # -- transitions ---------------------------------------------------------

    def _on_client_hello(self, direction: Direction, body: bytes, ts: Timestamp, out: List[SessionEvent]) -> None:
        if self._client is None:
            self._client = direction
        elif direction != self._client:
            self._fail(direction, ts, "hello_from_wrong_side", "ClientHello from the server side", out)
            return
        hello = parse_client_hello(body)
        if hello is None:
            self._fail(direction, ts, "client_hello_malformed", f"ClientHello of {len(body)} bytes does not parse", out)
            return
        if len(self._pending) >= self._config.max_pending_hellos:
            oldest = self._pending.pop(0)
            if oldest is self._awaiting:
                self._awaiting = None
            out.append(self._build(oldest))
        record = _Record(ts)
        record.client_hello = hello
        self._pending.append(record)

    def _on_server_hello(self, direction: Direction, body: bytes, ts: Timestamp, out: List[SessionEvent]) -> None:
        if self._client is None:
            self._client = direction.other
        elif direction == self._client:
            self._fail(direction, ts, "hello_from_wrong_side", "ServerHello from the client side", out)
            return
        hello = parse_server_hello(body)
        if hello is None:
            self._fail(direction, ts, "server_hello_malformed", f"ServerHello of {len(body)} bytes does not parse", out)
            return
        record: Optional[_Record] = None
        for candidate in reversed(self._pending):
            if candidate.server_hello is None:
                record = candidate
                break
        if record is None:
            record = _Record(ts)
            self._pending.append(record)
        record.server_hello = hello
        record.ts = ts
        if hello.is_hello_retry_request:
            self._pending.remove(record)
            out.append(self._build(record))
            for rx in self._rx:
                if rx is not None:
                    rx.set_tls13()
        elif hello.selected_version is not None and hello.selected_version not in _TLS12_OR_OLDER:
            self._finish(out)
        else:
            self._awaiting = record

    def _on_certificate(self, direction: Direction, body: bytes, ts: Timestamp, out: List[SessionEvent]) -> None:
        record = self._awaiting
        if record is None or direction == self._client:
            return
        certs = parse_certificate_list(body)
        record.certs = certs if certs is not None else ()
        record.ts = ts
        self._finish(out)

    def _on_other_record(self, content_type: int, ts: Timestamp, out: List[SessionEvent]) -> None:
        # ChangeCipherSpec, an alert or application data: no more plaintext
        # handshake is coming for a TLS 1.2 record still waiting for its chain.
        if self._awaiting is not None and content_type != ContentType.HEARTBEAT:
            self._awaiting.ts = ts
            self._finish(out)

    def _stop_direction(self, direction: Direction, ts: Timestamp) -> Sequence[SessionEvent]:
        if self._done or self._rx[direction] is None:
            return _NOTHING
        self._rx[direction] = None
        out: List[SessionEvent] = []
        if self._awaiting is not None and direction != self._client:
            self._awaiting.ts = ts
            self._finish(out)
        elif self._rx[direction.other] is None:
            self._finish(out)
        return out

    def _finish(self, out: List[SessionEvent]) -> None:
        """The visible handshake is over: write every pending record, oldest first, and stop."""
        for record in self._pending:
            out.append(self._build(record))
        self._pending.clear()
        self._awaiting = None
        self._rx = [None, None]
        self._done = True

    def _fail(self, direction: Direction, ts: Timestamp, reason: str, message: str, out: List[SessionEvent]) -> None:
        self._finish(out)
        self._failed = True
        out.append(self._error(direction, ts, reason, message, fatal=True))

    @staticmethod
    def _error(direction: Direction, ts: Timestamp, reason: str, message: str, *, fatal: bool) -> TlsError:
        return TlsError(ts=ts, reason=reason, message=message, direction=_DIRECTION_LABEL[direction], fatal=fatal)

    def _build(self, record: _Record) -> TlsHandshake:
        ch = record.client_hello
        sh = record.server_hello
        ja3_string = ja3_hash = ja4_value = client_version = server_name = None
        supported: Tuple[str, ...] = ()
        alpn_offered: Tuple[str, ...] = ()
        if ch is not None:
            ja3_string, ja3_hash = ja3(ch)
            ja4_value = ja4(ch, "t")
            client_version = f"0x{ch.legacy_version:04x}"
            supported = tuple([f"0x{v:04x}" for v in ch.supported_versions])
            server_name = ch.server_name
            alpn_offered = ch.alpn
        version = cipher = alpn_selected = ja3s_string = ja3s_hash = server_legacy = None
        if sh is not None:
            version = version_name(sh.negotiated_version)
            cipher = cipher_name(sh.cipher_suite)
            alpn_selected = sh.alpn
            ja3s_string, ja3s_hash = ja3s(sh)
            server_legacy = f"0x{sh.legacy_version:04x}"
        subject = issuer = None
        san: Tuple[str, ...] = ()
        chain_len: Optional[int] = None
        if record.certs is not None:
            chain_len = len(record.certs)
            if record.certs:
                subject, issuer, san = certificate_summary(record.certs[0])
        return TlsHandshake(
            ts=record.ts,
            version=version,
            client_version=client_version,
            client_supported_versions=supported,
            server_name=server_name,
            alpn_offered=alpn_offered,
            alpn_selected=alpn_selected,
            cipher=cipher,
            ja3=ja3_hash,
            ja3_string=ja3_string,
            ja3s=ja3s_hash,
            ja3s_string=ja3s_string,
            ja4=ja4_value,
            cert_subject_cn=subject,
            cert_issuer_cn=issuer,
            cert_san_dns=san,
            hello_retry_request=sh is not None and sh.is_hello_retry_request,
            cert_chain_len=chain_len,
            transport="tcp",
            server_version_legacy=server_legacy,
            client_is_orig=None if self._client is None else self._client == Direction.ORIG,
        )


# --------------------------------------------------------------------------- factory

_TLS_PORTS = frozenset(
    {
        443,  # https
        465,  # submissions (SMTP over TLS)
        563,  # nntps
        636,  # ldaps
        853,  # DNS over TLS
        989,  # ftps-data
        990,  # ftps
        992,  # telnets
        993,  # imaps
        994,  # ircs
        995,  # pop3s
        3269,  # ldaps global catalog
        5061,  # sips
        5223,  # xmpp over TLS (legacy)
        5671,  # amqps
        6697,  # ircs-u
        8443,  # https-alt
        8883,  # secure-mqtt
    }
)

_MAX_RECORD = HandshakeLimits().max_record


class TlsParserFactory:
    """Recognises TLS by its first record and makes :class:`TlsParser` instances."""

    __slots__ = ("_config",)

    def __init__(self, config: Optional[TlsConfig] = None) -> None:
        self._config = config if config is not None else TlsConfig()

    @property
    def name(self) -> str:
        """``tls``."""
        return "tls"

    @property
    def ports(self) -> FrozenSet[int]:
        """IANA ports of TLS-wrapped services: an ordering hint only."""
        return _TLS_PORTS

    def detect(self, direction: Direction, data: bytes, flow: FlowInfo) -> Detection:
        """MATCH on a handshake record (SSL 3.0-TLS 1.3) that starts with a ClientHello or ServerHello.

        Port-independent.  Either direction may be the first one seen.  Up to
        11 bytes are checked; fewer than 6 give ``NEED_MORE`` unless a byte
        already rules TLS out.
        """
        n = len(data)
        if n == 0:
            return Detection.NEED_MORE
        if data[0] != ContentType.HANDSHAKE:
            return Detection.NO_MATCH
        if n >= 2 and data[1] != 3:
            return Detection.NO_MATCH
        if n >= 3 and data[2] > 4:
            return Detection.NO_MATCH
        if n >= 5:
            length = (data[3] << 8) | data[4]
            if length == 0 or length > _MAX_RECORD:
                return Detection.NO_MATCH
            if n >= 6 and data[5] not in (HandshakeType.CLIENT_HELLO, HandshakeType.SERVER_HELLO):
                return Detection.NO_MATCH
            # The hello's own version (after the 4-byte handshake header) is 3.x too.
            if n >= 10 and length >= 5 and data[9] != 3:
                return Detection.NO_MATCH
        if n < 6:
            return Detection.NEED_MORE
        return Detection.MATCH

    def create(self, flow: FlowInfo) -> TlsParser:
        """A parser for one flow; never raises (certificates need the ``tls`` extra)."""
        return TlsParser(self._config)


def factory() -> TlsParserFactory:
    """Entry point ``flowscope.parsers.tls:factory``."""
    return TlsParserFactory()
