"""Community ID v1 flow hashing (https://github.com/corelight/community-id-spec).

The hash lets flowscope records join with Zeek's and Suricata's: SHA-1 over
the seed, the ordered addresses, the protocol, a zero pad byte and the
ordered ports, base64-encoded and prefixed with ``1:``.  For ICMP and
ICMPv6 the type and code stand in for the ports, with request/reply types
mapped to each other so both directions of an exchange hash alike.
"""

from __future__ import annotations

import struct
from binascii import b2a_base64
from hashlib import sha1

# ICMP type -> the counterpart type used as the "destination port" (spec, section "ICMP").
_ICMP4 = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6 = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130, 144: 145, 145: 144}
_PORTS = struct.Struct("!HH").pack
_PORT_PROTOS = frozenset((1, 6, 17, 58, 132))


def community_id(proto: int, saddr: bytes, daddr: bytes, sport: int, dport: int, seed: int = 0) -> str:
    """The Community ID v1 string of one packet's (or flow's) 5-tuple.

    ``saddr``/``daddr`` are raw 4- or 16-byte addresses.  For ICMP(v6), pass
    the type as ``sport`` and the code as ``dport``.
    """
    if proto == 1 or proto == 58:
        table = _ICMP4 if proto == 1 else _ICMP6
        counterpart = table.get(sport)
        if counterpart is None:  # one-way message: no ordering
            ports = _PORTS(sport, dport)
            data = seed.to_bytes(2, "big") + saddr + daddr + bytes((proto, 0)) + ports
            return "1:" + b2a_base64(sha1(data).digest(), newline=False).decode("ascii")
        dport = counterpart
    if saddr > daddr or (saddr == daddr and sport > dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    ports = _PORTS(sport, dport) if proto in _PORT_PROTOS else b""
    data = seed.to_bytes(2, "big") + saddr + daddr + bytes((proto, 0)) + ports
    return "1:" + b2a_base64(sha1(data).digest(), newline=False).decode("ascii")
