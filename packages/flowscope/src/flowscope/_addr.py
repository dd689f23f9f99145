"""Address text forms, shared by records and extractors."""

from __future__ import annotations

import socket


def addr_text(a: bytes) -> str:
    """Text form of a raw address: dotted quad, RFC 5952 IPv6, or a colon-separated MAC."""
    if len(a) == 4:
        return socket.inet_ntop(socket.AF_INET, a)
    if len(a) == 16:
        return socket.inet_ntop(socket.AF_INET6, a)
    return ":".join(f"{b:02x}" for b in a)


def addr_raw(text: str) -> bytes:
    """The inverse of :func:`addr_text`."""
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(fam, text)
        except OSError:
            continue
    return bytes(int(x, 16) for x in text.split(":")) if ":" in text else text.encode()
