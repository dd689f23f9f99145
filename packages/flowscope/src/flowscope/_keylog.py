"""TLS key logs: the NSS ``SSLKEYLOGFILE`` text that lets an observer read encrypted handshakes.

Theory of operation
-------------------
Browsers, curl, OpenSSL-based servers and QUIC stacks write their TLS
secrets to the file named by ``SSLKEYLOGFILE``, one line per secret, in the
format NSS defined (draft-ietf-tls-keylogfile describes it)::

    # comment
    CLIENT_HANDSHAKE_TRAFFIC_SECRET <client random, 64 hex digits> <secret, hex>

The ``client_random`` (the 32 bytes of the ClientHello's ``random``) names
the connection: a parser that has seen the ClientHello looks a secret up by
label and random.  A pcapng capture can carry the same text in a Decryption
Secrets Block (secrets type ``TLSK``), which
:attr:`flowscope._capture.CaptureReader.on_secrets` hands over as it reads.

A :class:`KeyLog` is a plain mapping ``(label, client_random) -> secret``
filled by :meth:`KeyLog.add_text` and :meth:`KeyLog.add_file` (any number
of times, as more text arrives: a live ``SSLKEYLOGFILE`` grows while the
capture runs, and a capture may hold several Decryption Secrets Blocks).  Lines are parsed
strictly: a line that is not a comment and not three fields of the right
shape is counted in :attr:`KeyLog.malformed` and ignored; a well-formed line
with a label outside :data:`LABELS` (``RSA`` lines, early-data and ECH
labels) is counted in :attr:`KeyLog.unknown` and ignored.  Nothing here
raises on bad text.

The table is bounded (:class:`KeyLogLimits`): beyond ``max_entries`` the
oldest entry is dropped (insertion order; a repeated line refreshes its
entry).  Key logs are written in connection order and a capture is read in
time order, so the oldest secrets belong to connections already past.

Not thread-safe: one worker owns one key log, like the rest of its state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, Optional, Tuple, Union

__all__ = ["LABELS", "KeyLog", "KeyLogLimits"]

LABELS: FrozenSet[str] = frozenset(
    {
        "CLIENT_RANDOM",  # TLS 1.2 and earlier: the 48-byte master secret
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EXPORTER_SECRET",
    }
)
"""The labels a :class:`KeyLog` keeps (NSS key log format); other labels are counted and ignored."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyLogLimits:
    """The bounds of one :class:`KeyLog`."""

    max_entries: int = 100_000
    """Secrets kept; the oldest is dropped beyond this.

    A TLS 1.3 connection logs five lines (four of them kept here), a TLS 1.2
    one logs one, so 100,000 entries cover some 25,000 TLS 1.3 connections:
    far more than are in flight at once, which is all a capture read in time
    order needs.  Each entry costs about 300 bytes (two ``bytes`` objects, a
    key tuple and a dict slot), so the table stays near 30 MB at worst.
    """
    max_line_bytes: int = 512
    """Longest line considered; a longer one is malformed without being decoded.

    The longest valid line is a 31-character label, 64 hex digits of client
    random and 96 of a SHA-384 secret, with two separators: 193 bytes.
    """
    max_secret_bytes: int = 64
    """Largest secret accepted (hash output of the strongest TLS 1.3 suite is 48 bytes)."""

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.max_line_bytes < 1 or self.max_secret_bytes < 1:
            raise ValueError("KeyLogLimits bounds must be positive")


DEFAULT_KEYLOG_LIMITS = KeyLogLimits()

_RANDOM_BYTES = 32
_READ_CHUNK = 64 << 10
"""Bytes read from a key log file at a time by :meth:`KeyLog.from_file`."""


class KeyLog:
    """Secrets from NSS key log text, by ``(label, client_random)``; bounded, not thread-safe."""

    __slots__ = ("_limits", "_entries", "malformed", "comments", "unknown", "dropped")

    def __init__(self, limits: KeyLogLimits = DEFAULT_KEYLOG_LIMITS) -> None:
        self._limits = limits
        self._entries: Dict[Tuple[str, bytes], bytes] = {}
        self.malformed = 0
        """Lines ignored because they are not ``LABEL <64 hex> <hex>``."""
        self.comments = 0
        """Comment lines (starting with ``#``) seen."""
        self.unknown = 0
        """Well-formed lines whose label is not in :data:`LABELS` (``RSA``, early data, ECH)."""
        self.dropped = 0
        """Entries evicted, oldest first, to stay within ``max_entries``."""

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<KeyLog {len(self._entries)} secrets, {self.malformed} malformed lines>"

    def get(self, label: str, client_random: bytes) -> Optional[bytes]:
        """The secret logged under ``label`` for the connection whose ClientHello had ``client_random``."""
        return self._entries.get((label, bytes(client_random)))

    def add_text(self, data: Union[bytes, str]) -> int:
        """Parse key log text (whole lines); return how many secrets were stored.

        ``data`` may hold any number of lines, with ``\\n`` or ``\\r\\n``
        endings; a last line without an ending is parsed too, so call this
        with complete lines only (a Decryption Secrets Block always holds
        them).
        """
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
        return self._add_lines(raw.split(b"\n"))

    @classmethod
    def from_file(
        cls, path: Union[str, "os.PathLike[str]"], limits: KeyLogLimits = DEFAULT_KEYLOG_LIMITS
    ) -> KeyLog:
        """A key log read from an ``SSLKEYLOGFILE``; ``OSError`` if it cannot be read."""
        log = cls(limits)
        log.add_file(path)
        return log

    def add_file(self, path: Union[str, "os.PathLike[str]"]) -> int:
        """Add the secrets of a key log file; return how many were stored.  ``OSError`` if unreadable.

        The file is read in chunks, so memory stays bounded by the table and
        one over-long line (which is skipped, not held) whatever the file's size.
        """
        too_long = self._limits.max_line_bytes + 1
        stored = 0
        with open(path, "rb") as fh:
            tail = b""
            while True:
                chunk = fh.read(_READ_CHUNK)
                if not chunk:
                    break
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                if len(tail) > too_long:
                    # A line without end that is already too long: keep a marker, not its bytes.
                    tail = tail[:too_long]
                stored += self._add_lines(lines)
            if tail:
                stored += self._add_lines((tail,))
        return stored

    # -- parsing -----------------------------------------------------------------------

    def _add_lines(self, lines: Iterable[bytes]) -> int:
        """Parse lines (without their ``\\n``); store the good ones."""
        limits = self._limits
        max_line = limits.max_line_bytes
        max_secret = limits.max_secret_bytes
        entries = self._entries
        stored = 0
        for line in lines:
            line = line.strip()
            if not line:
                continue
            if line[:1] == b"#":
                self.comments += 1
                continue
            fields = line.split() if len(line) <= max_line else ()
            if len(fields) != 3:
                self.malformed += 1
                continue
            try:
                label = fields[0].decode("ascii")
                client_random = bytes.fromhex(fields[1].decode("ascii"))
                secret = bytes.fromhex(fields[2].decode("ascii"))
            except ValueError:  # UnicodeDecodeError is a ValueError
                self.malformed += 1
                continue
            if label not in LABELS:
                if label.isidentifier() and label.isupper():
                    self.unknown += 1
                else:
                    self.malformed += 1
                continue
            if len(client_random) != _RANDOM_BYTES or not 0 < len(secret) <= max_secret:
                self.malformed += 1
                continue
            key = (label, client_random)
            if entries.pop(key, None) is None and len(entries) >= limits.max_entries:
                del entries[next(iter(entries))]
                self.dropped += 1
            entries[key] = secret
            stored += 1
        return stored
