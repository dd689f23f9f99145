"""Community ID v1 flow hashing (https://github.com/corelight/community-id-spec).

The hash lets flowscope records join with Zeek's and Suricata's: SHA-1 over
the seed, the ordered addresses, the protocol, a zero pad byte and the
ordered ports, base64-encoded and prefixed with ``1:``.  For ICMP and
ICMPv6 the type and code stand in for the ports, with request/reply types
mapped to each other so both directions of an exchange hash alike.
"""

from __future__ import annotations

import base64
import hashlib

# ICMP type -> the counterpart type used as the "destination port" (spec, section "ICMP").
_ICMP4 = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6 = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130, 144: 145, 145: 144}


def community_id(
    proto: int, saddr: bytes, daddr: bytes, sport: int, dport: int, seed: int = 0
) -> str:
    """The Community ID v1 string of one packet's (or flow's) 5-tuple.

    ``saddr``/``daddr`` are raw 4- or 16-byte addresses.  For ICMP(v6), pass
    the type as ``sport`` and the code as ``dport``.
    """
    one_way = False
    if proto == 1 or proto == 58:
        table = _ICMP4 if proto == 1 else _ICMP6
        icmp_type, code = sport, dport
        if icmp_type in table:
            sport, dport = icmp_type, table[icmp_type]
        else:
            sport, dport = icmp_type, code
            one_way = True
    if not one_way and (saddr, sport) > (daddr, dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    ports = b""
    if proto in (1, 6, 17, 58, 132):
        ports = sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    data = seed.to_bytes(2, "big") + saddr + daddr + bytes((proto, 0)) + ports
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
