"""Tests of the capture-filter compiler (``flowscope._filter``).

Expected values come from the pcap-filter(7) manual (primitive meanings,
"negation has the highest precedence; alternation and concatenation have
equal precedence and associate left to right", the implied-qualifier
examples) and from libpcap's behaviour where the manual is silent (address
shorthands, octal numbers, port names), checked by hand with ``tcpdump -d``;
never from this module's own output.  Hypothesis then checks that arbitrary
text fails only with :class:`FilterSyntaxError`, and that random expressions
built from the grammar agree with a small reference evaluator written here
from the manual's rules.  Finally, when ``tcpdump`` is installed, the packets
it selects from corpus captures are compared with the packets the compiled
predicate selects from the same captures' decoded fields.
"""

from __future__ import annotations

import ast
import ipaddress
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Set, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typing_extensions import assert_type

from flowscope import open_capture
from flowscope._decode import Decoder
from flowscope._filter import (
    _PROTOCOLS,
    _SERVICES,
    MAX_NESTING,
    FilterSyntaxError,
    PacketFilter,
    Predicate,
    compile_filter,
)
from flowscope_core import FlowscopeError

import packets as P

Pkt = Tuple[int, bytes, bytes, int, int, Tuple[int, ...]]


def ip(text: str) -> bytes:
    """Raw address bytes, by the C library (independent of the module under test)."""
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def pkt(
    proto: int = 6,
    src: str = "192.0.2.1",
    dst: str = "198.51.100.2",
    sport: int = 49152,
    dport: int = 80,
    vlans: Tuple[int, ...] = (),
) -> Pkt:
    """The fields the tracker passes to a filter."""
    return (proto, ip(src), ip(dst), sport, dport, vlans)


TCP_HTTP = pkt()
UDP_DNS = pkt(17, dst="198.51.100.53", sport=5353, dport=53)
TCP_DNS = pkt(6, dport=53)
UDP_80 = pkt(17, dport=80)
ICMP_ECHO = pkt(1, sport=8, dport=0)  # type 8, code 0 travel in the port fields
ICMP_V6ADDR = pkt(1, "2001:db8::1", "2001:db8:1::2", 8, 0)
TCP6 = pkt(6, "2001:db8::1", "2001:db8:1::2", 50000, 443)
UDP6_443 = pkt(17, "2001:db8::1", "2001:db8:1::2", 50000, 443)
ICMP6 = pkt(58, "2001:db8::1", "2001:db8:1::2", 128, 0)
ICMP6_V4ADDR = pkt(58, sport=128, dport=0)
SCTP = pkt(132, sport=2905, dport=2905)
GRE = pkt(47, sport=0, dport=0)
VLANS = pkt(vlans=(100, 200))
SAME = pkt(src="192.0.2.1", dst="192.0.2.1")

# (expression, packet, expected) — one or more rows per primitive and shorthand.
CASES: List[Tuple[str, Pkt, bool]] = [
    # host
    ("host 192.0.2.1", TCP_HTTP, True),
    ("host 198.51.100.2", TCP_HTTP, True),
    ("host 192.0.2.9", TCP_HTTP, False),
    ("src host 192.0.2.1", TCP_HTTP, True),
    ("src host 198.51.100.2", TCP_HTTP, False),
    ("dst host 198.51.100.2", TCP_HTTP, True),
    ("dst host 192.0.2.1", TCP_HTTP, False),
    ("src or dst host 198.51.100.2", TCP_HTTP, True),
    ("dst or src host 192.0.2.1", TCP_HTTP, True),
    ("src and dst host 192.0.2.1", TCP_HTTP, False),
    ("src and dst host 192.0.2.1", SAME, True),
    ("src 192.0.2.1", TCP_HTTP, True),  # no type qualifier: host is assumed
    ("dst 192.0.2.1", TCP_HTTP, False),
    ("ip host 192.0.2.1", TCP_HTTP, True),
    ("host 2001:db8::1", TCP6, True),
    ("host 2001:db8:0:0:0:0:0:1", TCP6, True),
    ("host 2001:db8::1", TCP_HTTP, False),
    ("ip6 dst host 2001:db8:1::2", TCP6, True),
    ("host ::ffff:192.0.2.1", TCP_HTTP, False),  # an IPv6 address never equals an IPv4 one
    ("host 3221225985", TCP_HTTP, True),  # 192.0.2.1 as one 32-bit number
    ("host 0xc0000201", TCP_HTTP, True),
    ("host 198.51", TCP_HTTP, True),  # libpcap left-justifies: 198.51.0.0/16
    ("host 198.52", TCP_HTTP, False),
    # net
    ("net 192.0.2.0/24", TCP_HTTP, True),
    ("net 192.0.3.0/24", TCP_HTTP, False),
    ("net 198.51.100.0/22", TCP_HTTP, True),
    ("src net 192.0.2.0/24", TCP_HTTP, True),
    ("dst net 192.0.2.0/24", TCP_HTTP, False),
    ("src and dst net 192.0.0.0/8", TCP_HTTP, False),
    ("src and dst net 192.0.0.0/8", SAME, True),
    ("net 172.16.0.0/12", pkt(src="172.31.255.255"), True),
    ("net 172.16.0.0/12", pkt(src="172.32.0.1"), False),
    ("net 192.0.2.0 mask 255.255.255.0", TCP_HTTP, True),
    ("net 192.0.0.0 mask 255.255.0.0", TCP_HTTP, True),
    ("net 192.0.0.1 mask 255.0.0.255", TCP_HTTP, True),  # non-contiguous mask: 192.x.x.1
    ("net 192.0.0.2 mask 255.0.0.255", TCP_HTTP, False),
    ("net 192", TCP_HTTP, True),  # 192.0.0.0/8
    ("net 198.51", TCP_HTTP, True),  # 198.51.0.0/16
    ("net 198.51.100", TCP_HTTP, True),  # 198.51.100.0/24
    ("net 198.51.101", TCP_HTTP, False),
    ("net 192.0.2.1", TCP_HTTP, True),  # a dotted quad is a host match
    ("net 192.0.2.2", TCP_HTTP, False),
    ("net 10", pkt(src="10.200.1.1"), True),
    ("net 10", pkt(src="11.0.0.10", dst="12.0.0.10"), False),
    ("net 10/8", pkt(dst="10.9.9.9"), True),  # flowscope extension, same meaning as net 10
    ("net 0.0.0.0/0", TCP_HTTP, True),
    ("net 0.0.0.0/0", TCP6, False),
    ("net ::/0", TCP6, True),
    ("net 2001:db8::/32", TCP6, True),
    ("net 2001:db9::/32", TCP6, False),
    ("net 2001:db8::/32", TCP_HTTP, False),
    ("net 2001:db8:1::/48", TCP6, True),
    ("src net 2001:db8:1::/48", TCP6, False),
    ("net 2001:db8::/127", TCP6, True),
    ("net 2000::/3", TCP6, True),
    ("net fe80::/10", TCP6, False),
    ("ip6 net 2001:db8::1", TCP6, True),  # no prefix length: /128
    # port
    ("port 80", TCP_HTTP, True),
    ("port 49152", TCP_HTTP, True),
    ("port 81", TCP_HTTP, False),
    ("src port 49152", TCP_HTTP, True),
    ("src port 80", TCP_HTTP, False),
    ("dst port 80", TCP_HTTP, True),
    ("src and dst port 2905", SCTP, True),
    ("src and dst port 80", TCP_HTTP, False),
    ("port 80", UDP_80, True),
    ("port 2905", SCTP, True),
    ("port 8", ICMP_ECHO, False),  # ICMP type is not a port
    ("port 0", GRE, False),
    ("tcp port 80", TCP_HTTP, True),
    ("udp port 80", TCP_HTTP, False),
    ("udp port 80", UDP_80, True),
    ("sctp port 2905", SCTP, True),
    ("tcp dst port 80", TCP_HTTP, True),
    ("tcp src port 80", TCP_HTTP, False),
    ("port 0x50", TCP_HTTP, True),
    ("port 0120", TCP_HTTP, True),  # octal, as in C and libpcap
    ("port domain", UDP_DNS, True),
    ("port domain", TCP_DNS, True),
    ("port http", TCP_HTTP, True),
    ("port http", UDP_80, False),  # a name defined for TCP only checks the protocol too
    ("port www", TCP_HTTP, True),
    ("port ntp", pkt(17, dport=123), True),
    ("port ntp", pkt(6, dport=123), False),
    ("tcp port https", TCP6, True),
    ("udp port https", UDP6_443, True),
    ("port \\ssh", pkt(dport=22), True),
    # portrange
    ("portrange 1-1024", TCP_HTTP, True),
    ("portrange 81-1024", TCP_HTTP, False),
    ("portrange 1024-1", TCP_HTTP, True),  # bounds in either order
    ("src portrange 49000-50000", TCP_HTTP, True),
    ("dst portrange 49000-50000", TCP_HTTP, False),
    ("tcp portrange 80-80", TCP_HTTP, True),
    ("udp portrange 1-65535", TCP_HTTP, False),
    ("portrange 80", TCP_HTTP, True),  # a single number means "port 80"
    ("portrange 0x4f-0x51", TCP_HTTP, True),
    ("portrange ftp-ssh", pkt(dport=22), True),
    ("portrange ftp-ssh", pkt(17, dport=22), False),  # both names are TCP-only
    ("portrange 79-81", ICMP_ECHO, False),
    # protocols
    ("tcp", TCP_HTTP, True),
    ("tcp", UDP_DNS, False),
    ("tcp", TCP6, True),
    ("udp", UDP_DNS, True),
    ("icmp", ICMP_ECHO, True),
    ("icmp", ICMP_V6ADDR, False),  # ip proto 1: IPv4 only
    ("icmp6", ICMP6, True),
    ("icmp6", ICMP6_V4ADDR, False),  # ip6 proto 58: IPv6 only
    ("sctp", SCTP, True),
    ("ip", TCP_HTTP, True),
    ("ip", TCP6, False),
    ("ip6", TCP6, True),
    ("ip6", TCP_HTTP, False),
    ("proto 47", GRE, True),
    ("ip proto 47", GRE, True),
    ("ip6 proto 47", GRE, False),
    ("proto 0x2f", GRE, True),
    ("ip proto \\tcp", TCP_HTTP, True),
    ("ip proto \\tcp", TCP6, False),
    ("proto \\udp", UDP6_443, True),
    ("ip6 proto \\ipv6-icmp", ICMP6, True),
    ("proto \\gre", GRE, True),
    ("proto \\GRE", GRE, True),  # /etc/protocols' upper-case alias
    ("ip proto \\icmp", ICMP_ECHO, True),
    ("ah", pkt(51, sport=0, dport=0), True),
    ("esp", pkt(50, "2001:db8::1", "2001:db8::2", 0, 0), True),
    ("pim", pkt(103, sport=0, dport=0), True),
    ("igmp", pkt(2, sport=0, dport=0), True),
    ("vrrp", pkt(112, sport=0, dport=0), True),
    # vlan
    ("vlan", TCP_HTTP, False),
    ("vlan", VLANS, True),
    ("vlan 100", VLANS, True),
    ("vlan 200", VLANS, True),  # any tag, not only the outermost (documented difference)
    ("vlan 300", VLANS, False),
    ("vlan 0x64", VLANS, True),
    ("vlan (100)", VLANS, True),
    ("vlan and tcp", VLANS, True),
    ("vlan 100 and vlan 200", VLANS, True),
    # operators
    ("tcp and port 80", TCP_HTTP, True),
    ("tcp && port 80", TCP_HTTP, True),
    ("tcp&&port 80", TCP_HTTP, True),
    ("udp or port 80", TCP_HTTP, True),
    ("udp || port 81", TCP_HTTP, False),
    ("not udp", TCP_HTTP, True),
    ("! tcp", TCP_HTTP, False),
    ("!tcp", TCP_HTTP, False),
    ("not not tcp", TCP_HTTP, True),
    ("(tcp or udp) and not port 53", TCP_HTTP, True),
    ("(tcp or udp) and not port 53", UDP_DNS, False),
    ("((tcp))", TCP_HTTP, True),
    ("", TCP_HTTP, True),  # the empty filter accepts everything
    ("  \t", UDP_DNS, True),
    # implied qualifiers ("identical qualifier lists can be omitted")
    ("host 192.0.2.9 or 198.51.100.2", TCP_HTTP, True),
    ("host 192.0.2.9 or 198.51.100.9", TCP_HTTP, False),
    ("port 81 or 80", TCP_HTTP, True),
    ("tcp port 81 or 80", TCP_HTTP, True),
    ("tcp port 81 or 80", UDP_80, False),
    ("tcp dst port 81 or 443", pkt(6, dport=443), True),
    ("tcp dst port 81 or 443", pkt(17, dport=443), False),  # inherits "tcp"
    ("tcp dst port 81 or 443", pkt(6, sport=443, dport=1), False),  # inherits "dst"
    ("host 192.0.2.1 and not 198.51.100.2", TCP_HTTP, False),
    ("host 192.0.2.1 and (198.51.100.9 or 198.51.100.2)", TCP_HTTP, True),
    ("host 192.0.2.1 and (198.51.100.9 or 198.51.100.8)", TCP_HTTP, False),
    ("host (192.0.2.1 or 192.0.2.2)", TCP_HTTP, True),
    ("host not 192.0.2.1", TCP_HTTP, False),
    ("port (81 or 80)", TCP_HTTP, True),
    ("ip proto \\udp or \\tcp", TCP_HTTP, True),
    ("proto 17 or 6", TCP6, True),
    ("src net 10.0.0.0/8 or 192.0.2.0/24", TCP_HTTP, True),
    ("src net 10.0.0.0/8 or 198.51.100.0/24", TCP_HTTP, False),  # inherits "src"
    ("(tcp) and port 81 or 80", TCP_HTTP, True),  # parentheses pass the qualifiers on
    ("not host 192.0.2.9 or 198.51.100.2", UDP_DNS, True),
]


@pytest.mark.parametrize(("expr", "packet", "expected"), CASES, ids=[f"{c[0]!r}-{i}" for i, c in enumerate(CASES)])
def test_cases(expr: str, packet: Pkt, expected: bool) -> None:
    f = compile_filter(expr)
    assert f.match(*packet) is expected
    assert f(*packet) is expected
    # The canonical form means the same thing and is a fixed point.
    again = compile_filter(f.canonical)
    assert again.match(*packet) is expected
    assert again.canonical == f.canonical


# ----------------------------------------------------------------------------- precedence


def test_and_or_have_equal_precedence_left_to_right() -> None:
    """pcap-filter(7): alternation and concatenation have equal precedence, left to right."""
    # C-style precedence would read "tcp or (udp and port 53)": true for TCP port 80.
    f = compile_filter("tcp or udp and port 53")
    assert f.match(*TCP_HTTP) is False
    assert f.match(*TCP_DNS) is True
    assert f.match(*UDP_DNS) is True
    assert f.canonical == "((tcp or udp) and port 53)"
    g = compile_filter("port 80 or port 53 and udp")
    assert g.match(*TCP_HTTP) is False  # (port 80 or port 53) and udp
    assert g.match(*UDP_80) is True
    h = compile_filter("udp and port 53 or tcp")
    assert h.match(*TCP_HTTP) is True
    assert h.canonical == "((udp and port 53) or tcp)"


def test_not_binds_tightest() -> None:
    f = compile_filter("not tcp and port 80")
    assert f.canonical == "(not tcp and port 80)"
    assert f.match(*UDP_80) is True
    assert f.match(*TCP_HTTP) is False
    g = compile_filter("not (tcp and port 80)")
    assert g.match(*UDP_DNS) is True
    assert compile_filter("not tcp and port 80").match(*UDP_DNS) is False
    assert compile_filter("! udp || tcp").canonical == "(not udp or tcp)"


def test_man_page_not_host_example() -> None:
    """`not host vs and ace` is short for `not host vs and host ace`, not `not (host vs or ace)`."""
    vs, ace = "192.0.2.9", "198.51.100.2"
    short = compile_filter(f"not host {vs} and {ace}")
    long = compile_filter(f"not host {vs} and host {ace}")
    other = compile_filter(f"not (host {vs} or {ace})")
    assert short.canonical == long.canonical == f"(not host {vs} and host {ace})"
    assert short.match(*TCP_HTTP) is True
    assert other.match(*TCP_HTTP) is False


def test_man_page_qualifier_list_example() -> None:
    """`tcp dst port ftp or ftp-data or domain` is `tcp dst port ftp or tcp dst port ftp-data or …`."""
    short = compile_filter("tcp dst port ftp or ftp-data or domain")
    long = compile_filter("tcp dst port ftp or tcp dst port ftp-data or tcp dst port domain")
    assert short.canonical == long.canonical == "(tcp dst port 21 or tcp dst port 20 or tcp dst port 53)"
    for p, want in [
        (pkt(dport=21), True),
        (pkt(dport=20), True),
        (TCP_DNS, True),
        (UDP_DNS, False),
        (pkt(sport=53, dport=1), False),
    ]:
        assert short.match(*p) is want
        assert long.match(*p) is want


def test_man_page_helios_example() -> None:
    """`host helios and (hot or ace)`: the group inherits `host`."""
    f = compile_filter("host 192.0.2.1 and (198.51.100.7 or 198.51.100.2)")
    assert f.canonical == "(host 192.0.2.1 and (host 198.51.100.7 or host 198.51.100.2))"
    assert f.match(*TCP_HTTP) is True
    assert f.match(*pkt(dst="198.51.100.3")) is False


@pytest.mark.parametrize(
    ("expr", "canonical"),
    [
        ("host 10.1", "net 10.1.0.0/16"),
        ("net 10", "net 10.0.0.0/8"),
        ("net 192.168", "net 192.168.0.0/16"),
        ("net 256", "net 1.0.0.0/16"),  # libpcap shifts a network number until its top byte is set
        ("net 0", "host 0.0.0.0"),
        ("port http", "tcp port 80"),
        ("portrange 80-70", "portrange 70-80"),
        ("icmp", "icmp"),
        ("ip proto \\tcp", "ip proto 6"),
        ("proto \\tcp", "tcp"),
        ("src or dst port 80", "port 80"),
        ("dst and src net 2001:db8::/32", "src and dst net 2001:db8::/32"),
        ("net 10.0.0.0 mask 255.0.255.0", "net 10.0.0.0 mask 255.0.255.0"),
        ("tcp and (udp and icmp)", "(tcp and (udp and icmp))"),
    ],
)
def test_canonical(expr: str, canonical: str) -> None:
    assert compile_filter(expr).canonical == canonical


# ----------------------------------------------------------------------------- errors


ERRORS: List[Tuple[str, int, str]] = [
    ("tcp port x", 10, "expected a port number"),
    ("port", 5, "expected a port number"),
    ("host", 5, "expected an IPv4 or IPv6 address"),
    ("tcp and", 8, "end of expression"),
    ("not", 4, "end of expression"),
    ("less 100", 1, "packet length"),
    ("greater 64", 1, "packet length"),
    ("len <= 100", 1, "packet length"),
    ("tcp[13] & 2 != 0", 4, "arithmetic"),
    ("ip[0] & 0xf != 5", 3, "arithmetic"),
    ("host www.example.com", 6, "no DNS"),
    ("src net localnet", 9, "network names"),
    ("arp", 1, "non-IP"),
    ("not arp", 5, "non-IP"),
    ("ether host 00:11:22:33:44:55", 1, "link-layer"),
    ("host 00:11:22:33:44:55", 6, "MAC"),
    ("ip proto tcp", 10, "\\tcp"),
    ("tcp or 80", 8, "bare value"),
    ("80", 1, "bare value"),
    ("vlan 100 or 200", 13, "bare value"),
    ("(host 192.0.2.1 or 192.0.2.2) and 10.0.0.1", 35, "bare value"),
    ("TCP", 1, "lower-case"),
    ("(tcp", 5, "expected ')'"),
    ("((tcp) or udp", 14, "expected ')'"),
    ("tcp)", 4, "unmatched ')'"),
    ("tcp udp", 5, "expected 'and', 'or'"),
    ("port 70000", 6, "65535"),
    ("portrange 1-70000", 11, "65535"),
    ("vlan 4096", 6, "4095"),
    ("proto 256", 7, "255"),
    ("port 08", 6, "octal"),
    ("host 4294967296", 6, "32 bits"),
    ("udp port http", 10, "is tcp"),
    ("sctp port ntp", 11, "is udp"),
    ("port nosuchservice", 6, "service name"),
    ("proto \\nosuchproto", 7, "protocol"),
    ("net 10.1.2.3/8", 5, "non-network bits"),
    ("net 2001:db8::1/32", 5, "non-network bits"),
    ("net 10.0.0.0/33", 14, "greater than maximum 32"),
    ("net ::/129", 8, "greater than maximum 128"),
    ("net 10.0.0.0/x", 14, "prefix length"),
    ("net 10.0.0.0 mask 0xff", 19, "dotted netmask"),
    ("host 10.0.0.0/8", 14, "use 'net'"),
    ("host 2001:db8::/32", 6, "'net"),
    ("net 2001:db8:: mask ffff::", 16, "IPv4"),
    ("port 80/8", 8, "prefix"),
    ("port 192.0.2.1", 6, "address"),
    ("ip6 host 10.0.0.1", 10, "'ip6' cannot qualify"),
    ("ip host ::1", 9, "'ip' cannot qualify"),
    ("tcp host 10.0.0.1", 1, "'tcp' cannot qualify"),
    ("ip port 80", 1, "'ip' cannot qualify 'port'"),
    ("tcp proto 6", 1, "'tcp' cannot qualify 'proto'"),
    ("src proto 6", 5, "no direction"),
    ("host 1.2.3.4 $", 14, "unexpected character"),
    ("host 256.1.1.1", 6, "invalid IPv4"),
    ("host 2001:db8::g", 6, "invalid IPv6"),
    ("portrange 1-2-3", 11, "port range"),
    ("portrange -5", 11, "arithmetic"),
    ("mpls 100", 1, "encapsulations"),
    ("pppoes", 1, "encapsulations"),
    ("protochain 6", 1, "protochain"),
    ("ip protochain 6", 4, "protochain"),
    ("gateway snup", 1, "gateway"),
    ("ip broadcast", 4, "broadcast"),
    ("ip multicast", 4, "multicast"),
    ("wlan addr2 0:2:3:4:5:6", 1, "link-layer"),
    ("inbound", 1, "not supported"),
    ("mask 255.0.0.0", 1, "'mask' must follow"),
    ("\\", 1, "name after"),
]


@pytest.mark.parametrize(("expr", "column", "fragment"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(expr: str, column: int, fragment: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        compile_filter(expr)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, FlowscopeError)
    assert err.expression == expr
    assert err.column == column, str(err)
    assert fragment in err.reason, str(err)
    assert str(err) == f"{err.reason} at column {column}: {expr!r}"


def test_error_message_names_position_and_expectation() -> None:
    with pytest.raises(FilterSyntaxError) as info:
        compile_filter("tcp port x")
    assert str(info.value) == (
        "expected a port number or a known service name after 'tcp port', got 'x' at column 10: 'tcp port x'"
    )


def test_nesting_is_bounded() -> None:
    deep = "(" * MAX_NESTING + "tcp" + ")" * MAX_NESTING
    assert compile_filter(deep).match(*TCP_HTTP) is True
    with pytest.raises(FilterSyntaxError, match="nests deeper"):
        compile_filter("(" + deep + ")")
    with pytest.raises(FilterSyntaxError, match="nests deeper"):
        compile_filter("(" * 10_000 + "tcp" + ")" * 10_000)
    odd = MAX_NESTING - 1 if MAX_NESTING % 2 == 0 else MAX_NESTING - 2  # an odd number of negations
    assert compile_filter("not " * odd + "tcp").match(*TCP_HTTP) is False
    with pytest.raises(FilterSyntaxError, match="nests deeper"):
        compile_filter("not " * 10_000 + "tcp")
    # Alternating and/or nests one level per change of operator.
    with pytest.raises(FilterSyntaxError, match="nests deeper"):
        compile_filter(" ".join(f"port {i} {'and' if i % 2 else 'or'}" for i in range(200)) + " tcp")


def test_long_flat_chains_compile() -> None:
    """A chain of one operator is flat, however long; or-ed values become one set test."""
    f = compile_filter("port " + " or ".join(str(i) for i in range(1, 5001)))
    assert f.match(*TCP_HTTP) is True
    assert f.match(*pkt(sport=6000, dport=6001)) is False
    assert f.source.count("sport in {") == f.source.count("dport in {") == 1
    g = compile_filter(" and ".join(["not udp"] * 3000))
    assert g.match(*TCP_HTTP) is True


def netbase_file(path: str, marker: str) -> List[List[str]]:
    """The entries of a Debian netbase database file, or skip when this system has another one."""
    try:
        text = Path(path).read_text()
    except OSError:
        pytest.skip(f"{path} is absent")
    if marker not in text:
        pytest.skip(f"{path} is not Debian netbase's")
    return [line.split("#")[0].split() for line in text.splitlines() if line.split("#")[0].strip()]


def test_service_names_are_netbase_services() -> None:
    """Each built-in service name has netbase's port, and its protocol limit says which protocols define it."""
    defined: Dict[str, Dict[str, int]] = {}
    for fields in netbase_file("/etc/services", "needed by a debian package"):
        number, proto = fields[1].split("/")
        for name in fields[:1] + fields[2:]:
            defined.setdefault(name, {})[proto] = int(number)
    for name, (port, only) in _SERVICES.items():
        protos = defined[name]
        assert set(protos.values()) == {port}, (name, protos)
        want = {6: {"tcp"}, 17: {"udp"}, 0: {"tcp", "udp"}}[only]
        assert set(protos) - {"sctp", "ddp"} == want, (name, protos)


def test_protocol_names_are_netbase_protocols() -> None:
    rows = netbase_file("/etc/protocols", "assignments/protocol-numbers")
    numbers = {fields[0]: int(fields[1]) for fields in rows if int(fields[1]) <= 255}
    assert _PROTOCOLS == numbers


# ----------------------------------------------------------------------------- generated code


ALLOWED_NAMES = {"proto", "src", "dst", "sport", "dport", "vlans", "len"}


def assert_safe_source(f: PacketFilter) -> None:
    """The generated code names only the parameters and ``len``, and holds only int/bytes/bool constants."""
    tree = ast.parse(f.source, mode="eval")
    assert isinstance(tree.body, ast.Lambda)
    for node in ast.walk(tree.body.body):
        if isinstance(node, ast.Name):
            assert node.id in ALLOWED_NAMES, node.id
        elif isinstance(node, ast.Constant):
            assert type(node.value) in (int, bytes, bool), node.value
        elif isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name) and node.func.id == "len"
        assert not isinstance(node, (ast.Attribute, ast.Lambda, ast.NamedExpr, ast.Starred))


def test_generated_source_is_constants_and_parameters_only() -> None:
    f = compile_filter("tcp port 443 and not host 10.0.0.1 or net 2001:db8::/33 and vlan 7")
    assert_safe_source(f)
    assert f.source.startswith("lambda proto, src, dst, sport, dport, vlans: ")


def test_public_types() -> None:
    f = compile_filter("tcp")
    assert_type(f, PacketFilter)
    assert_type(f.match, Predicate)
    assert_type(f(6, b"", b"", 0, 0, ()), bool)
    assert f.expression == "tcp"
    assert f == compile_filter("tcp")
    assert "tcp" in repr(f)


# ----------------------------------------------------------------------------- hypothesis

WORDS = [
    "host", "net", "port", "portrange", "proto", "src", "dst", "and", "or", "not", "tcp", "udp", "icmp",
    "icmp6", "ip", "ip6", "sctp", "vlan", "mask", "less", "ether", "(", ")", "!", "&&", "||", "/", "\\tcp",
    "10.0.0.1", "10", "192.168", "2001:db8::1", "::", "80", "0x50", "08", "1-1024", "http", "domain",
    "255.255.0.0", "24", "[", "]", "&", "=", "-", ":", "::1/64", "fe80::", "99999999999", "4095",
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)))
def test_arbitrary_text_fails_only_with_filter_syntax_error(text: str) -> None:
    try:
        f = compile_filter(text)
    except FilterSyntaxError:
        return
    assert_safe_source(f)
    assert f.match(*TCP_HTTP) in (True, False)
    assert f.match(*TCP6) in (True, False)


V4 = ["192.0.2.1", "192.0.2.77", "198.51.100.2", "10.1.2.3", "0.0.0.0"]
V6 = ["2001:db8::1", "2001:db8:1::2", "fe80::1"]
NETS = ["192.0.2.0/24", "10.0.0.0/8", "198.51.100.0/22", "192.0.2.64/26", "0.0.0.0/0"]
NETS += ["2001:db8::/32", "2001:db8:1::/48", "fe80::/10"]
PORTS = [0, 20, 53, 80, 443, 1024, 8080, 65535]
PROTOS = [1, 6, 17, 47, 58, 132]
DIRS = {"": "or", "src ": "src", "dst ": "dst", "src or dst ": "or", "src and dst ": "and"}


Case = Tuple[str, Callable[[Pkt], bool]]
"""An expression and its reference meaning."""


@dataclass(frozen=True)
class Prim:
    """A primitive for the generated expressions, with its meaning written from the manual."""

    qual: str
    value: str
    ref: Callable[[Pkt], bool]
    values: Tuple[str, ...] = ()
    """Other values the same qualifiers take (empty: the primitive passes no qualifiers on)."""
    sibling: Optional[Callable[[str], Prim]] = None
    """The primitive with the same qualifiers and another value."""


def on_sides(d: str, test: Callable[[bytes], bool]) -> Callable[[Pkt], bool]:
    if d == "src":
        return lambda p: test(p[1])
    if d == "dst":
        return lambda p: test(p[2])
    if d == "and":
        return lambda p: test(p[1]) and test(p[2])
    return lambda p: test(p[1]) or test(p[2])


def on_ports(d: str, test: Callable[[int], bool], protos: Set[int]) -> Callable[[Pkt], bool]:
    side: Callable[[Pkt], bool]
    if d == "src":
        side = lambda p: test(p[3])  # noqa: E731
    elif d == "dst":
        side = lambda p: test(p[4])  # noqa: E731
    elif d == "and":
        side = lambda p: test(p[3]) and test(p[4])  # noqa: E731
    else:
        side = lambda p: test(p[3]) or test(p[4])  # noqa: E731
    return lambda p: p[0] in protos and side(p)


def host_prim(dirtext: str, addr: str) -> Prim:
    raw = ipaddress.ip_address(addr).packed
    test = on_sides(DIRS[dirtext], lambda a: a == raw)
    return Prim(f"{dirtext}host", addr, test, tuple(V4 + V6), lambda v: host_prim(dirtext, v))


def net_prim(dirtext: str, net: str) -> Prim:
    network = ipaddress.ip_network(net)
    width = 4 if network.version == 4 else 16

    def inside(a: bytes) -> bool:
        return len(a) == width and ipaddress.ip_address(a) in network

    return Prim(f"{dirtext}net", net, on_sides(DIRS[dirtext], inside), tuple(NETS), lambda v: net_prim(dirtext, v))


def port_prim(pq: str, dirtext: str, port: int) -> Prim:
    protos = {"": {6, 17, 132}, "tcp ": {6}, "udp ": {17}}[pq]
    test = on_ports(DIRS[dirtext], lambda v: v == port, protos)
    return Prim(f"{pq}{dirtext}port", str(port), test, tuple(map(str, PORTS)), lambda v: port_prim(pq, dirtext, int(v)))


def range_prim(pq: str, dirtext: str, a: int, b: int) -> Prim:
    protos = {"": {6, 17, 132}, "tcp ": {6}, "udp ": {17}}[pq]
    lo, hi = min(a, b), max(a, b)
    test = on_ports(DIRS[dirtext], lambda v: lo <= v <= hi, protos)
    ranges = tuple(f"{x}-{y}" for x in PORTS for y in PORTS)
    again: Callable[[str], Prim] = lambda v: range_prim(pq, dirtext, *map(int, v.split("-")))  # noqa: E731
    return Prim(f"{pq}{dirtext}portrange", f"{a}-{b}", test, ranges, again)


ABBREVS: Dict[str, Callable[[Pkt], bool]] = {
    "tcp": lambda p: p[0] == 6,
    "udp": lambda p: p[0] == 17,
    "sctp": lambda p: p[0] == 132,
    "icmp": lambda p: p[0] == 1 and len(p[1]) == 4,
    "icmp6": lambda p: p[0] == 58 and len(p[1]) == 16,
    "ip": lambda p: len(p[1]) == 4,
    "ip6": lambda p: len(p[1]) == 16,
}


def proto_prim(pq: str, number: int) -> Prim:
    width = {"": 0, "ip ": 4, "ip6 ": 16}[pq]
    test: Callable[[Pkt], bool] = lambda p: p[0] == number and width in (0, len(p[1]))  # noqa: E731
    return Prim(f"{pq}proto", str(number), test, tuple(map(str, PROTOS)), lambda v: proto_prim(pq, int(v)))


def vlan_prim(vid: Optional[int]) -> Prim:
    if vid is None:
        return Prim("vlan", "", lambda p: p[5] != ())
    return Prim("vlan", str(vid), lambda p: vid in p[5])


dirtexts = st.sampled_from(list(DIRS))
pqs = st.sampled_from(["", "tcp ", "udp "])
prims = st.one_of(
    st.builds(host_prim, dirtexts, st.sampled_from(V4 + V6)),
    st.builds(net_prim, dirtexts, st.sampled_from(NETS)),
    st.builds(port_prim, pqs, dirtexts, st.sampled_from(PORTS)),
    st.builds(range_prim, pqs, dirtexts, st.sampled_from(PORTS), st.sampled_from(PORTS)),
    st.sampled_from(sorted(ABBREVS)).map(lambda n: Prim(n, "", ABBREVS[n])),
    st.builds(proto_prim, st.sampled_from(["", "ip ", "ip6 "]), st.sampled_from(PROTOS)),
    st.builds(vlan_prim, st.sampled_from([None, 6, 100, 200])),
)


@st.composite
def packets(draw: st.DrawFn) -> Pkt:
    v6 = draw(st.booleans())
    pool = V6 if v6 else V4
    return (
        draw(st.sampled_from(PROTOS)),
        ip(draw(st.sampled_from(pool))),
        ip(draw(st.sampled_from(pool))),
        draw(st.sampled_from(PORTS)),
        draw(st.sampled_from(PORTS)),
        draw(st.sampled_from([(), (100,), (6, 200)])),
    )


@st.composite
def flat_expressions(draw: st.DrawFn) -> Case:
    """Primitives joined by and/or without parentheses, some negated, some written as bare values.

    A bare value takes the qualifiers of the primitive before it ("identical
    qualifier lists can be omitted").  The reference applies the manual's
    rules directly: a negation applies to the one primitive after it, and
    the operators fold from the left.
    """
    items = draw(st.lists(st.tuples(prims, st.booleans(), st.booleans()), min_size=1, max_size=6))
    ops = draw(st.lists(st.sampled_from(["and", "or", "&&", "||"]), min_size=len(items) - 1, max_size=len(items) - 1))
    parts: List[str] = []
    refs: List[Callable[[Pkt], bool]] = []
    prev: Optional[Prim] = None
    for prim, negate, bare in items:
        if bare and prev is not None and prev.sibling is not None:
            prim = prev.sibling(draw(st.sampled_from(prev.values)))
            text = prim.value
        else:
            text = f"{prim.qual} {prim.value}".strip()
        parts.append(("not " if negate else "") + text)
        refs.append((lambda r: lambda p: not r(p))(prim.ref) if negate else prim.ref)
        prev = prim
    expr = parts[0]
    for op, part in zip(ops, parts[1:]):
        expr += f" {op} {part}"

    def ref(p: Pkt) -> bool:
        acc = refs[0](p)
        for op, r in zip(ops, refs[1:]):
            acc = (acc and r(p)) if op in ("and", "&&") else (acc or r(p))
        return acc

    return expr, ref


def trees(depth: int) -> st.SearchStrategy[Case]:
    leaf = prims.map(lambda p: (f"{p.qual} {p.value}".strip(), p.ref))
    if depth == 0:
        return leaf

    def node(op: str, a: Case, b: Case) -> Case:
        ra, rb = a[1], b[1]
        if op == "and":
            return f"({a[0]} and {b[0]})", lambda p: ra(p) and rb(p)
        return f"({a[0]} or {b[0]})", lambda p: ra(p) or rb(p)

    sub = trees(depth - 1)
    return st.one_of(
        leaf,
        st.builds(node, st.sampled_from(["and", "or"]), sub, sub),
        sub.map(lambda t: (f"not {t[0]}", (lambda r: lambda p: not r(p))(t[1]))),
    )


def check_against_reference(expr: str, ref: Callable[[Pkt], bool], pkts: List[Pkt]) -> None:
    f = compile_filter(expr)
    assert_safe_source(f)
    g = compile_filter(f.canonical)
    assert g.canonical == f.canonical
    for p in pkts:
        want = ref(p)
        assert f.match(*p) is want, (expr, f.canonical, p)
        assert g.match(*p) is want, (f.canonical, p)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flat_expressions(), st.lists(packets(), min_size=1, max_size=8))
def test_flat_expressions_follow_precedence_and_inheritance(case: Case, pkts: List[Pkt]) -> None:
    check_against_reference(case[0], case[1], pkts)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees(3), st.lists(packets(), min_size=1, max_size=8))
def test_parenthesised_expressions(case: Case, pkts: List[Pkt]) -> None:
    check_against_reference(case[0], case[1], pkts)


# ----------------------------------------------------------------------------- tcpdump differential

# Ethernet captures without tunnels or fragments, so that libpcap's outermost
# headers are the decoder's innermost ones.
PLAIN_CAPTURES = [
    "zeek_wikipedia.pcap",
    "ndpi_chrome.pcap",
    "ndpi_http_ipv6.pcap",
    "ndpi_synscan.pcap",
    "ndpi_sites.pcapng",
]
PLAIN_EXPRESSIONS = [
    "tcp",
    "udp",
    "ip",
    "ip6",
    "tcp port 80",
    "port 443 or 53",
    "not port 80",
    "host 141.142.220.118",
    "net 141.142",
    "net 208.80.152.0/24 and tcp",
    "src net 192.168.0.0/16",
    "dst portrange 1-1024",
    "tcp dst port http or https or domain",
    "udp and not port domain",
    "ip6 and net 2a00::/16",
    "portrange 36000-36100 and src host 64.13.134.52",
    "host 2a03:b0c0:3:d0::70:1001 or 2a00:1450:4001:803::1017",
    "udp port 443",
    "ip proto 6 or ip6 proto 17",
    "tcp or udp and port 53",
    "port 80 and tcp or udp",
    "not tcp and port 53 or port 137",
    "src and dst net 192.168.0.0/16",
    "net 192.168.1.128 mask 255.255.255.128",
    "host 192.168.1.128 and not 192.168.1.250",
    "not (host 172.16.0.8 and (port 22 or 80 or 443)) and ip",
]
# A single-tagged capture: "vlan ... and X" means the same in both worlds.
VLAN_CAPTURE = "suri_tcp-overlap.pcap"
VLAN_EXPRESSIONS = ["vlan", "vlan 6", "vlan 7", "vlan 6 and tcp port 8080", "vlan and host 1.1.1.1 and dst port 12345"]


def decoded_fields(path: Path) -> Tuple[List[Tuple[int, bytes, int]], int, Dict[int, Pkt]]:
    """(records, link type, {packet index: filter fields}) for the packets the decoder tracks."""
    records: List[Tuple[int, bytes, int]] = []
    fields: Dict[int, Pkt] = {}
    decoder = Decoder()
    link = -1
    with open_capture(path) as reader:
        for i, (ts, frame, wire_len, lt) in enumerate(reader):
            link = lt
            records.append((ts, frame, wire_len))
            d = decoder.decode(frame, lt, ts, wire_len)
            if d is not None:
                meta = d[13]
                fields[i] = (d[0], d[1], d[2], d[3], d[4], meta[0] if meta is not None else ())
    return records, link, fields


def tcpdump_selects(capture: Path, expr: str, out: Path) -> Set[int]:
    """Indices of the packets tcpdump writes out for ``expr`` (timestamps were set to the index)."""
    subprocess.run(["tcpdump", "-r", str(capture), "-w", str(out), expr], check=True, capture_output=True)
    if os.path.getsize(out) <= 24:  # the file header alone: nothing matched
        return set()
    with open_capture(out) as reader:
        return {ts // 1_000_000_000 for ts, _, _, _ in reader}


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("name", PLAIN_CAPTURES + [VLAN_CAPTURE])
def test_same_packets_as_tcpdump(name: str, corpus_dir: Path, tmp_path: Path) -> None:
    records, link, fields = decoded_fields(corpus_dir / name)
    assert link == 1 and fields
    if name != VLAN_CAPTURE:
        assert all(p[5] == () for p in fields.values())
    # Rewrite the capture with packet i at time i seconds, so tcpdump's output names the packets.
    renumbered = tmp_path / "renumbered.pcap"
    renumbered.write_bytes(P.pcap_bytes([(i * 1_000_000_000, f, w) for i, (_, f, w) in enumerate(records)], link=link))
    exprs = VLAN_EXPRESSIONS if name == VLAN_CAPTURE else PLAIN_EXPRESSIONS
    for expr in exprs:
        theirs = tcpdump_selects(renumbered, expr, tmp_path / "out.pcap") & fields.keys()
        match = compile_filter(expr).match
        ours = {i for i, p in fields.items() if match(*p)}
        assert ours == theirs, (expr, sorted(ours - theirs)[:10], sorted(theirs - ours)[:10])
