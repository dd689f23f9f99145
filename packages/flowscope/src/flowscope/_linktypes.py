"""LINKTYPE_* numbers flowscope decodes (tcpdump.org's link-layer header types)."""

from __future__ import annotations

LINKTYPE_NULL = 0
"""BSD loopback: a 4-byte address family in the capturing host's byte order."""
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
"""PPP, RFC 1661: optional 0xFF 0x03 address/control, then the protocol field."""
LINKTYPE_RAW_12 = 12
"""DLT_RAW as some BSDs number it: a raw IPv4 or IPv6 packet."""
LINKTYPE_RAW_14 = 14
"""DLT_RAW as OpenBSD numbers it."""
LINKTYPE_PPP_HDLC = 50
"""PPP in HDLC-like framing, RFC 1662."""
LINKTYPE_RAW = 101
"""Raw IP: the version nibble says IPv4 or IPv6."""
LINKTYPE_C_HDLC = 104
"""Cisco HDLC: address, control, then a 2-byte EtherType."""
LINKTYPE_LOOP = 108
"""OpenBSD loopback: like NULL but the family is in network byte order."""
LINKTYPE_LINUX_SLL = 113
"""Linux cooked capture v1: 16-byte header, protocol at offset 14."""
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
"""Linux cooked capture v2: 20-byte header, protocol at offset 0."""

NAMES = {
    LINKTYPE_NULL: "null",
    LINKTYPE_ETHERNET: "ethernet",
    LINKTYPE_PPP: "ppp",
    LINKTYPE_RAW_12: "raw",
    LINKTYPE_RAW_14: "raw",
    LINKTYPE_PPP_HDLC: "ppp-hdlc",
    LINKTYPE_RAW: "raw",
    LINKTYPE_C_HDLC: "cisco-hdlc",
    LINKTYPE_LOOP: "loop",
    LINKTYPE_LINUX_SLL: "linux-sll",
    LINKTYPE_IPV4: "ipv4",
    LINKTYPE_IPV6: "ipv6",
    LINKTYPE_LINUX_SLL2: "linux-sll2",
}
"""The link types the decoder understands, by number."""
