"""Write the small captures of this folder (see README.md): SSH on a port no parser knows.

Run from the repository root::

    python tests/data/plugins/make_captures.py

The frames are laid out by ``tests/packets.py`` (independent of flowscope)
from the constants below, so the expected values of the tests are these
constants, not something flowscope printed.  Output is deterministic: fixed
timestamps, addresses and sequence numbers, and "encrypted" bytes drawn
from SHA-256 in counter mode.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from pathlib import Path
from typing import List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/, for packets.py

import packets as P  # noqa: E402

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND
"""2023-11-14T22:13:20Z: the first frame's time."""

CLIENT = "192.0.2.10"
SERVER = "198.51.100.20"
CLIENT_PORT = 51515
SERVER_PORT = 2022
"""Not 22 nor 2222 (the plugin's port hints) nor a built-in parser's hint: detection must read the bytes."""

CLIENT_BANNER = b"SSH-2.0-PuTTY_Release_0.80"
SERVER_BANNER = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13"
"""The identification strings (RFC 4253, 4.2), without their CR LF."""

SERVER_SPLIT = 2
"""The server's line is sent as two segments, ``SS`` then the rest, so detection has to wait for more."""

CLIENT_SEQ = 0x1000_0000
SERVER_SEQ = 0x7FFF_FFF0
"""Initial sequence numbers; the server's wraps past 2**31, which must not matter."""

SSH_FILE = "ssh_port_2022.pcap"


def noise(label: bytes, n: int) -> bytes:
    """``n`` bytes that look encrypted: SHA-256 in counter mode over ``label``."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(label + struct.pack("!I", i)).digest()
        i += 1
    return out[:n]


def ssh_binary_packet(label: bytes, payload_len: int) -> bytes:
    """An SSH binary packet (RFC 4253, 6): length, padding length, then opaque bytes."""
    padding = 8 - (payload_len + 5) % 8 + 8
    body = noise(label, payload_len + padding)
    return struct.pack("!IB", 1 + payload_len + padding, padding) + body


def ssh_session() -> List[Tuple[int, bytes]]:
    """One whole SSH connection: handshake, both lines, key-exchange-sized noise, FIN both ways."""
    c, s = P.ip(CLIENT), P.ip(SERVER)
    frames: List[Tuple[int, bytes]] = []
    cseq, sseq = CLIENT_SEQ, SERVER_SEQ
    ts = T0

    def send(from_client: bool, flags: int, payload: bytes = b"") -> None:
        nonlocal cseq, sseq, ts
        if from_client:
            seg = P.tcp(CLIENT_PORT, SERVER_PORT, flags, seq=cseq, ack=sseq if flags & P.ACK else 0,
                        payload=payload, src=c, dst=s)  # fmt: skip
            frames.append((ts, P.ether(P.ETH_IPV4, P.ipv4(c, s, P.TCP, seg))))
            cseq += len(payload) + (1 if flags & (P.SYN | P.FIN) else 0)
        else:
            seg = P.tcp(SERVER_PORT, CLIENT_PORT, flags, seq=sseq, ack=cseq, payload=payload, src=s, dst=c)
            frames.append((ts, P.ether(P.ETH_IPV4, P.ipv4(s, c, P.TCP, seg), src=P.MAC_B, dst=P.MAC_A)))
            sseq += len(payload) + (1 if flags & (P.SYN | P.FIN) else 0)
        cseq &= 0xFFFFFFFF
        sseq &= 0xFFFFFFFF
        ts += 1_000_000  # 1 ms between frames

    send(True, P.SYN)
    send(False, P.SYN | P.ACK)
    send(True, P.ACK)
    line = SERVER_BANNER + b"\r\n"
    send(False, P.ACK | P.PSH, line[:SERVER_SPLIT])
    send(False, P.ACK | P.PSH, line[SERVER_SPLIT:])
    send(True, P.ACK | P.PSH, CLIENT_BANNER + b"\r\n")
    send(True, P.ACK | P.PSH, ssh_binary_packet(b"client kexinit", 1200))
    send(False, P.ACK | P.PSH, ssh_binary_packet(b"server kexinit", 1000))
    send(True, P.ACK | P.PSH, ssh_binary_packet(b"client ecdh", 44))
    send(False, P.ACK | P.PSH, ssh_binary_packet(b"server ecdh", 600))
    send(True, P.ACK | P.FIN)
    send(False, P.ACK | P.FIN)
    send(True, P.ACK)
    return frames


def build(directory: Path = HERE) -> Path:
    """Write every capture of this folder into ``directory``; returns the SSH capture's path."""
    path = directory / SSH_FILE
    path.write_bytes(P.pcap_bytes(ssh_session()))
    return path


if __name__ == "__main__":
    print(build())
