"""Capture filters: the everyday subset of the pcap-filter language, compiled to one predicate.

Theory of operation
-------------------
flowscope reads captures itself, so there is no libpcap to hand a
``tcpdump``-style expression to.  :func:`compile_filter` takes the same text
(``tcp port 443 and not host 10.0.0.1``) and turns it into a
:class:`PacketFilter`, a callable over the fields the decoder already
produced: ``(proto, src, dst, sport, dport, vlans)``.

Compilation has three stages, none of which ever evaluates user text:

1. **Tokens.**  One regular expression splits the text into words
   (keywords, numbers, addresses, names), ``\\name`` escapes, parentheses,
   ``/``, the operators ``and``/``&&``, ``or``/``||``, ``not``/``!`` and the
   arithmetic characters of libpcap's byte-offset expressions (which are
   recognised only to be refused with a clear message).  Every token keeps
   its column, so every :class:`FilterSyntaxError` says where and what was
   expected.
2. **Tree.**  A recursive-descent parser follows libpcap's ``grammar.y``:
   ``not`` binds tightest, ``and`` and ``or`` have *equal* precedence and
   group left to right (``a or b and c`` is ``(a or b) and c``), and a bare
   value after ``and``/``or``/``not`` inherits the qualifiers of the
   primitive before it (``host a or b`` is ``host a or host b``,
   ``tcp dst port 80 or 443`` is ``tcp dst port 80 or tcp dst port 443``,
   parentheses are transparent to that inheritance exactly as in
   ``grammar.y``).  Values are validated and converted here — addresses to
   raw bytes plus a mask, ports and protocol numbers to checked integers — so
   the tree holds only ``int`` and ``bytes``.  Nesting (parentheses, ``not``
   and alternations of ``and``/``or``) is bounded by :data:`MAX_NESTING`, so
   neither this parser nor Python's compiler can be driven into recursion
   limits.
3. **Code.**  The tree is simplified (runs of ``host``/``port`` values joined
   by ``or`` become one set-membership test; nested chains of the same
   operator are flattened) and printed as the body of a single ``lambda``
   whose only names are its six parameters and ``len``; the constants are
   ``repr()`` of validated ``int``/``bytes``.  ``compile()`` runs once; the
   result has no per-node call overhead: ``tcp port 443 and not host
   10.0.0.1`` becomes ``lambda proto, src, dst, sport, dport, vlans:
   (((sport == 443 or dport == 443) and proto == 6) and (not (src ==
   b'\\n\\x00\\x00\\x01' or dst == b'\\n\\x00\\x00\\x01')))``.  Tests are ordered cheapest
   and most selective first (ports before the protocol check), and ``len``
   is called only for prefixes that are not whole addresses.

What is matched, and where it differs from libpcap
--------------------------------------------------
The predicate sees the packet *after* decoding: the innermost IPv4/IPv6
packet, with VLAN tags, MPLS labels, PPPoE and tunnels already removed and IP
fragments already reassembled.  Hence these deliberate differences:

* ``host``/``net``/``port``/``tcp``… test the **innermost** IP packet; libpcap
  tests the outermost headers (and needs ``vlan and …``/``mpls and …`` to
  look inside a tag).  A VLAN-tagged TCP segment matches ``tcp`` here.
* ``vlan N`` is true when **any** VLAN id of the frame equals ``N``, and
  ``vlan`` when the frame had at least one tag.  In libpcap each ``vlan``
  keyword consumes one tag and shifts the offsets of everything after it, so
  ``vlan 100 and vlan 200`` means "200 inside 100"; here it means "both ids
  present".  No primitive changes the meaning of the ones after it.
* ``proto``/``ip6 proto``/``tcp``/``port`` test the upper-layer protocol the
  decoder found after walking IPv6 extension headers; libpcap's ``ip6 proto``
  looks only at the fixed header (or one fragment header).  As the decoder
  walks IPv6 AH headers, ``ah``/``proto 51`` never match an IPv6 packet.
* Fragments are reassembled before filtering, so ``port`` matches every
  fragment's datagram once (libpcap matches only the first fragment).
* Non-IP frames are never offered, so ``host`` does not cover ARP/RARP, and
  primitives that select non-IP or link-layer traffic are refused.
* Service and protocol **names** come from built-in tables copied from
  Debian's netbase ``/etc/services`` and ``/etc/protocols`` (so a filter
  means the same on every machine); a name defined only for TCP (``http``)
  adds a TCP check, as libpcap does.  Host and network **names** are
  refused: there is no DNS lookup.
* Two small extensions: a bare number before ``/`` or ``mask`` is read as a
  one-octet address (``net 10/8``, ``net 10 mask 255.0.0.0``), which libpcap
  rejects as a syntax error; and parentheses at operand level may mix bare
  values and primitives (``host a and (b or tcp)``), which libpcap rejects.
* ``ip proto N`` with ``N`` > 255 is refused (libpcap 1.10 truncated it).
* Refused with a :class:`FilterSyntaxError` saying why: ``less``,
  ``greater``, ``len`` (the predicate is not given the packet length),
  byte-offset and arithmetic expressions (``tcp[13] & 2 != 0``), ``ether``,
  ``arp`` and other link-layer or non-IP primitives, ``protochain``,
  ``gateway``, ``broadcast``/``multicast``, ``mpls``/``pppoes``/``geneve``/
  ``vxlan`` and the 802.11, ATM, SS7 and pf-log keywords.

Everything else follows libpcap 1.10: keywords are lower-case, numbers may
be decimal, ``0x`` hexadecimal or ``0``-prefixed octal, a dotted address
with fewer than four parts is left-justified with a matching mask (``net
192.168`` is ``192.168.0.0/16``, and so is ``host 192.168``), a bare number
after ``net`` is a network number (``net 10`` is ``10.0.0.0/8``), a bare
number after ``host`` is a 32-bit address, ``portrange`` bounds may come in
either order, ``port``/``portrange`` without ``tcp``/``udp``/``sctp`` match
those three protocols only (never ICMP, whose type and code travel in the
port fields), ``icmp`` is IPv4 only and ``icmp6`` IPv6 only.  An empty
expression matches every packet.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, NamedTuple, NoReturn, Optional, Tuple, Union, cast

from flowscope_core import FlowscopeError
from typing_extensions import TypeAlias

__all__ = ["MAX_NESTING", "FilterSyntaxError", "PacketFilter", "Predicate", "compile_filter"]

MAX_NESTING = 64
"""Deepest nesting of parentheses, ``not`` and alternating ``and``/``or`` accepted.

Each level becomes one pair of parentheses in the generated code, and
CPython's tokenizer refuses more than 200 nested parentheses; 64 leaves room
for the few levels a primitive adds inside itself, and is far beyond any
filter written by hand (tcpdump's own examples nest three or four deep).
"""

Predicate: TypeAlias = Callable[[int, bytes, bytes, int, int, Tuple[int, ...]], bool]
"""``(proto, src, dst, sport, dport, vlans) -> bool``: the compiled test."""


class FilterSyntaxError(FlowscopeError, ValueError):
    """A filter expression is malformed or uses something flowscope cannot filter on.

    The message names the column (1-based; one past the end for "expected
    more") and what was expected there.
    """

    def __init__(self, expression: str, column: int, reason: str) -> None:
        self.expression = expression
        """The whole expression that failed."""
        self.column = column
        """1-based column of the offending token (``len(expression) + 1`` at the end)."""
        self.reason = reason
        """What was wrong, without the position."""
        super().__init__(f"{reason} at column {column}: {expression!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketFilter:
    """A compiled capture filter; call it with the decoded fields of one packet.

    ``proto`` is the IP protocol number of the innermost packet, ``src`` and
    ``dst`` its raw 4- or 16-byte addresses, ``sport``/``dport`` its ports
    (ICMP type and code for ICMP, 0 for protocols without ports) and
    ``vlans`` the VLAN ids of the frame, outer to inner (``()`` if none).
    Per-packet loops should bind :attr:`match` once and call it directly:
    that skips the extra frame of ``__call__``.
    """

    expression: str
    """The expression as written."""
    canonical: str
    """The same filter with every qualifier spelled out and every group parenthesised.

    It compiles to an equivalent filter, and shows how the expression was
    read: ``host a or b and port 80`` gives ``((host a or host b) and port 80)``.
    """
    source: str = field(repr=False, compare=False)
    """The Python ``lambda`` the filter was compiled from (for debugging)."""
    match: Predicate = field(repr=False, compare=False)
    """The compiled predicate itself."""

    def __call__(self, proto: int, src: bytes, dst: bytes, sport: int, dport: int, vlans: Tuple[int, ...]) -> bool:
        """True when the packet matches the filter."""
        return self.match(proto, src, dst, sport, dport, vlans)


def compile_filter(expr: str) -> PacketFilter:
    """Compile a pcap-filter expression (see the module docstring for the subset).

    Raises :class:`FilterSyntaxError` for any malformed or unsupported input,
    and for nothing else.
    """
    tree = _Parser(expr).parse()
    canonical = _canonical(tree)
    body = _gen(_simplify(tree))
    source = f"lambda proto, src, dst, sport, dport, vlans: {body}"
    # Only the generated text is compiled: parameter names, operators, `len`
    # and repr() of ints and bytes that the parser validated.
    code = compile(source, "<flowscope filter>", "eval")
    fn = cast(Predicate, eval(code, {"__builtins__": {}, "len": len}))
    return PacketFilter(expression=expr, canonical=canonical, source=source, match=fn)


# ----------------------------------------------------------------------------- name tables

_TCP, _UDP, _SCTP = 6, 17, 132
_PORT_PROTOS: FrozenSet[int] = frozenset((_TCP, _UDP, _SCTP))

# Debian netbase /etc/services: name -> (port, protocol it is defined for, 0 = TCP and UDP).
# As in libpcap, a name defined for one protocol only restricts the match to it.
_SERVICES: Dict[str, Tuple[int, int]] = {
    "ftp-data": (20, _TCP),
    "ftp": (21, _TCP),
    "ssh": (22, _TCP),
    "telnet": (23, _TCP),
    "smtp": (25, _TCP),
    "mail": (25, _TCP),
    "domain": (53, 0),
    "bootps": (67, _UDP),
    "bootpc": (68, _UDP),
    "tftp": (69, _UDP),
    "http": (80, _TCP),
    "www": (80, _TCP),
    "kerberos": (88, 0),
    "pop3": (110, _TCP),
    "sunrpc": (111, 0),
    "portmapper": (111, 0),
    "nntp": (119, _TCP),
    "ntp": (123, _UDP),
    "netbios-ns": (137, _UDP),
    "netbios-dgm": (138, _UDP),
    "netbios-ssn": (139, _TCP),
    "imap2": (143, _TCP),
    "imap": (143, _TCP),
    "snmp": (161, 0),
    "snmp-trap": (162, 0),
    "bgp": (179, _TCP),
    "ldap": (389, 0),
    "https": (443, 0),
    "microsoft-ds": (445, _TCP),
    "isakmp": (500, _UDP),
    "syslog": (514, 0),  # also an alias of shell, 514/tcp
    "dhcpv6-client": (546, _UDP),
    "dhcpv6-server": (547, _UDP),
    "submission": (587, _TCP),
    "ipp": (631, _TCP),
    "ldaps": (636, 0),
    "rsync": (873, _TCP),
    "imaps": (993, _TCP),
    "pop3s": (995, _TCP),
    "socks": (1080, _TCP),
    "openvpn": (1194, 0),
    "mysql": (3306, _TCP),
    "ms-wbt-server": (3389, _TCP),
    "sip": (5060, 0),
    "mdns": (5353, _UDP),
    "postgresql": (5432, _TCP),
    "http-alt": (8080, _TCP),
}

# Debian netbase /etc/protocols (numbers above 255 left out); matched without
# regard to case, which covers the upper-case aliases that file gives.
_PROTOCOLS: Dict[str, int] = {
    "ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6,
    "egp": 8, "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27,
    "iso-tp4": 29, "dccp": 33, "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41,
    "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50,
    "ah": 51, "skip": 57, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "rspf": 73,
    "vmtp": 81, "eigrp": 88, "ospf": 89, "ax.25": 93, "ipip": 94, "etherip": 97,
    "encap": 98, "pim": 103, "ipcomp": 108, "vrrp": 112, "l2tp": 115, "isis": 124,
    "sctp": 132, "fc": 133, "mobility-header": 135, "udplite": 136, "mpls-in-ip": 137,
    "manet": 138, "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142, "ethernet": 143,
}  # fmt: skip

# ----------------------------------------------------------------------------- keywords

# Protocol keywords flowscope can test: name -> (IP protocol or None, address width or 0 for both).
_PNAMES: Dict[str, Tuple[Optional[int], int]] = {
    "ip": (None, 4),
    "ip6": (None, 16),
    "tcp": (_TCP, 0),
    "udp": (_UDP, 0),
    "sctp": (_SCTP, 0),
    "ah": (51, 0),
    "esp": (50, 0),
    "pim": (103, 0),
    "icmp": (1, 4),
    "igmp": (2, 4),
    "igrp": (9, 4),
    "vrrp": (112, 4),
    "carp": (112, 4),
    "icmp6": (58, 16),
}

_NON_IP = (
    "'{}' selects non-IP or link-layer traffic, which flowscope does not track: "
    "only IPv4/IPv6 fields can be filtered on"
)
_NO_LENGTH = "'{}' is not supported: the filter is given decoded header fields, not the packet length"
_NO_ARITH = (
    "packet-byte and arithmetic expressions (such as 'tcp[13] & 2 != 0') are not supported: "
    "the filter is given decoded header fields, not packet bytes"
)
_DECAPPED = (
    "'{}' is not supported: encapsulations are removed before filtering, "
    "the filter sees the innermost IP packet"
)
_OTHER = "'{}' is not supported by flowscope's filter (it concerns link-layer, wireless, ATM, SS7 or pf-log captures)"

_REFUSED: Dict[str, str] = {}
for _w in (
    "link ether ppp slip fddi tr wlan arp rarp atalk aarp decnet lat sca moprc mopdl iso esis es-is "
    "isis is-is l1 l2 iih lsp snp csnp psnp clnp stp ipx netbeui radio"
).split():
    _REFUSED[_w] = _NON_IP
for _w in ("less", "greater", "len", "length"):
    _REFUSED[_w] = _NO_LENGTH
for _w in ("byte", "icmptype", "icmpcode", "icmp6type", "icmp6code", "tcpflags"):
    _REFUSED[_w] = _NO_ARITH
for _w in ("mpls", "pppoed", "pppoes", "geneve", "vxlan"):
    _REFUSED[_w] = _DECAPPED
for _w in (
    "type subtype direction dir address1 addr1 address2 addr2 address3 addr3 address4 addr4 ra ta "
    "inbound outbound ifindex lane llc metac bcc oam oamf4 oamf4ec oamf4sc sc ilmic vpi vci connectmsg "
    "metaconnect on ifname rset ruleset rnr rulenum srnr subrulenum reason action fisu lssu lsu msu "
    "hfisu hlssu hmsu sio opc dpc sls hsio hopc hdpc hsls"
).split():
    _REFUSED[_w] = _OTHER
_REFUSED["protochain"] = (
    "'protochain' is not supported: the decoder already walks IPv6 extension headers, "
    "so 'proto' matches the upper-layer protocol"
)
_REFUSED["gateway"] = "'gateway' is not supported: it needs link-layer addresses and host-name resolution"
_REFUSED["broadcast"] = "'broadcast' is not supported: it needs link-layer addresses or interface netmasks"
_REFUSED["multicast"] = "'multicast' is not supported: use 'net 224.0.0.0/4' or 'net ff00::/8'"

_KEYWORDS: FrozenSet[str] = frozenset(
    [*_PNAMES, *_REFUSED, "src", "dst", "host", "net", "port", "portrange", "proto", "mask", "vlan"]
)

# ----------------------------------------------------------------------------- tokens


class _Tok(NamedTuple):
    kind: str
    """word, esc, (, ), /, and, or, not, arith, end."""
    text: str
    col: int
    """1-based column."""


_TOKEN_RE = re.compile(
    r"(?P<ws>[ \t\r\n]+)"
    r"|(?P<word>::[-_.:A-Za-z0-9]*|[A-Za-z0-9][-_.:A-Za-z0-9]*)"
    r"|(?P<esc>\\[^ \t\r\n!()]*)"
    r"|(?P<and>&&)"
    r"|(?P<or>\|\|)"
    r"|(?P<arith>!=|>=|<=|==|<<|>>|[-+*%:\[\]<>&|^=])"
    r"|(?P<not>!)"
    r"|(?P<lp>\()"
    r"|(?P<rp>\))"
    r"|(?P<slash>/)"
)
_PUNCT = {"lp": "(", "rp": ")", "slash": "/"}
_WORD_OPS = {"and": "and", "or": "or", "not": "not"}

_NUM_RE = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]+")
_HID_RE = re.compile(r"[0-9]+(?:\.[0-9]+){1,3}")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{1,2}(?:[:.-][0-9A-Fa-f]{1,2}){5}")


def _tokenize(expr: str) -> List[_Tok]:
    toks: List[_Tok] = []
    pos, n = 0, len(expr)
    while pos < n:
        m = _TOKEN_RE.match(expr, pos)
        if m is None:
            raise FilterSyntaxError(expr, pos + 1, f"unexpected character {expr[pos]!r}")
        kind = cast(str, m.lastgroup)
        text = m.group()
        if kind == "word":
            kind = _WORD_OPS.get(text, "word")
        elif kind == "esc":
            if len(text) == 1:
                raise FilterSyntaxError(expr, pos + 1, "expected a name after '\\'")
            text = text[1:]
        elif kind in _PUNCT:
            kind = _PUNCT[kind]
        if kind != "ws":
            toks.append(_Tok(kind, text, pos + 1))
        pos = m.end()
    toks.append(_Tok("end", "", n + 1))
    return toks


# ----------------------------------------------------------------------------- tree


@dataclass(frozen=True, slots=True)
class _All:
    """The empty filter: every packet."""


@dataclass(frozen=True, slots=True)
class _Family:
    width: int
    """4 (``ip``) or 16 (``ip6``)."""


@dataclass(frozen=True, slots=True)
class _Proto:
    number: int
    width: int
    """4 or 16 to restrict to one IP version, 0 for both."""


@dataclass(frozen=True, slots=True)
class _Net:
    dir: str
    """src, dst, or (either), and (both)."""
    value: bytes
    mask: bytes


@dataclass(frozen=True, slots=True)
class _Port:
    dir: str
    ranges: Tuple[Tuple[int, int], ...]
    """Inclusive ranges, ``lo <= hi``; one entry as parsed, several after merging."""
    protos: FrozenSet[int]


@dataclass(frozen=True, slots=True)
class _Vlan:
    vid: Optional[int]


@dataclass(frozen=True, slots=True)
class _Hosts:
    """Several full-length addresses joined by ``or`` (made by :func:`_simplify` only)."""

    dir: str
    values: Tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    item: _Node
    depth: int


@dataclass(frozen=True, slots=True)
class _Bool:
    op: str
    """and, or."""
    items: Tuple[_Node, ...]
    depth: int


_Node: TypeAlias = Union[_All, _Family, _Proto, _Net, _Port, _Vlan, _Hosts, _Not, _Bool]


def _depth(node: _Node) -> int:
    return node.depth if isinstance(node, (_Not, _Bool)) else 1


class _Qual(NamedTuple):
    """The qualifiers of a primitive, inherited by bare values after it."""

    pq: Optional[str]
    """Protocol qualifier: ip, ip6, tcp, udp, sctp or None."""
    dir: str
    """src, dst, or, and."""
    aq: Optional[str]
    """host, net, port, portrange, proto, or None (an address: host)."""
    kw: str
    """The qualifier words as written, for messages."""


_DIR_TEXT = {"src": "src ", "dst": "dst ", "or": "", "and": "src and dst "}


class _Parser:
    """Recursive descent over the tokens; see the module docstring for the grammar."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.toks = _tokenize(expr)
        self.i = 0
        self.nest = 0

    # -------------------------------------------------------------- helpers

    def fail(self, tok: _Tok, reason: str) -> NoReturn:
        raise FilterSyntaxError(self.expr, tok.col, reason)

    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def take(self) -> _Tok:
        t = self.toks[self.i]
        if t.kind != "end":
            self.i += 1
        return t

    def describe(self, tok: _Tok) -> str:
        return "end of expression" if tok.kind == "end" else repr(tok.text)

    def enter(self, tok: _Tok) -> None:
        self.nest += 1
        if self.nest > MAX_NESTING:
            self.fail(tok, f"expression nests deeper than {MAX_NESTING} levels")

    def combine(self, node: _Node, op: str, rhs: _Node, tok: _Tok) -> _Node:
        """``node op rhs``, extending ``node`` when it is already a chain of ``op``."""
        if isinstance(node, _Bool) and node.op == op:
            items = node.items + (rhs,)
            depth = max(node.depth, _depth(rhs) + 1)
        else:
            items = (node, rhs)
            depth = max(_depth(node), _depth(rhs)) + 1
        if depth > MAX_NESTING:
            self.fail(tok, f"expression nests deeper than {MAX_NESTING} levels")
        return _Bool(op, items, depth)

    def negate(self, node: _Node, tok: _Tok) -> _Node:
        depth = _depth(node) + 1
        if depth > MAX_NESTING:
            self.fail(tok, f"expression nests deeper than {MAX_NESTING} levels")
        return _Not(node, depth)

    # -------------------------------------------------------------- expressions

    def parse(self) -> _Node:
        if self.peek().kind == "end":
            return _All()
        node, _ = self.expr_(None)
        t = self.peek()
        if t.kind == ")":
            self.fail(t, "unmatched ')'")
        if t.kind != "end":
            self.unexpected(t, "expected 'and', 'or' or the end of the expression")
        return node

    def expr_(self, q: Optional[_Qual]) -> Tuple[_Node, Optional[_Qual]]:
        """``operand ((and|or) operand)*``, one precedence level, left to right."""
        node, q = self.operand(q)
        while self.peek().kind in ("and", "or"):
            op = self.take()
            rhs, q = self.operand(q)
            node = self.combine(node, op.kind, rhs, op)
        return node, q

    def operand(self, q: Optional[_Qual]) -> Tuple[_Node, Optional[_Qual]]:
        """A primitive, ``not`` operand, ``( expr )``, or a bare value inheriting ``q``."""
        t = self.peek()
        if t.kind == "not":
            self.take()
            self.enter(t)
            node, q2 = self.operand(q)
            self.nest -= 1
            return self.negate(node, t), q2
        if t.kind == "(":
            self.take()
            self.enter(t)
            node, _ = self.expr_(q)
            self.close(t)
            self.nest -= 1
            return node, q  # as in grammar.y, a group passes on the qualifiers from before it
        if t.kind == "word" and t.text in _KEYWORDS:
            return self.primitive()
        if t.kind in ("word", "esc"):
            if q is None:
                hint = f" (keywords are lower-case: {t.text.lower()!r})" if t.text.lower() in _KEYWORDS else ""
                self.fail(
                    t,
                    f"expected a primitive such as 'host', 'port' or 'tcp', got {t.text!r}{hint}; "
                    "a bare value only repeats the qualifiers of a preceding 'host', 'net', 'port' or 'proto'",
                )
            return self.value(q), q
        self.unexpected(t, "expected a primitive such as 'host', 'port' or 'tcp'")

    def unexpected(self, t: _Tok, expected: str) -> NoReturn:
        if t.kind == "arith":
            self.fail(t, _NO_ARITH)
        if t.kind == "word" and t.text in _REFUSED:
            self.fail(t, _REFUSED[t.text].format(t.text))
        self.fail(t, f"{expected}, got {self.describe(t)}")

    def close(self, opener: _Tok) -> None:
        t = self.peek()
        if t.kind != ")":
            if t.kind == "end":
                self.fail(t, f"expected ')' to close the '(' of column {opener.col}")
            self.unexpected(t, f"expected 'and', 'or' or ')' to close the '(' of column {opener.col}")
        self.take()

    # -------------------------------------------------------------- primitives

    def primitive(self) -> Tuple[_Node, Optional[_Qual]]:
        first = self.peek()
        w = first.text
        if w in _REFUSED:
            self.fail(first, _REFUSED[w].format(w))
        if w == "vlan":
            return self.vlan(), None
        if w == "mask":
            self.fail(first, "'mask' must follow a network address, as in 'net 10.0.0.0 mask 255.0.0.0'")
        pq: Optional[str] = None
        words = []
        if w in _PNAMES:
            self.take()
            nxt = self.peek()
            if nxt.kind == "arith" and nxt.text == "[":
                self.fail(nxt, _NO_ARITH)
            if not (nxt.kind == "word" and nxt.text in ("src", "dst", "host", "net", "port", "portrange", "proto")):
                if nxt.kind == "word" and nxt.text in _REFUSED:
                    self.fail(nxt, _REFUSED[nxt.text].format(nxt.text))
                number, width = _PNAMES[w]
                return (_Family(width) if number is None else _Proto(number, width)), None
            pq = w
            words.append(w)
        d = "or"
        t = self.peek()
        if t.kind == "word" and t.text in ("src", "dst"):
            self.take()
            words.append(t.text)
            d = t.text
            other = "dst" if d == "src" else "src"
            op, nxt = self.peek(), self.peek(1)
            if op.kind in ("and", "or") and nxt.kind == "word" and nxt.text == other:
                self.take()
                self.take()
                d = op.kind
                words += [op.text, other]
        aq: Optional[str] = None
        t = self.peek()
        if t.kind == "word" and t.text in ("host", "net", "port", "portrange", "proto"):
            if t.text == "proto" and len(words) > (1 if pq else 0):
                self.fail(t, "'proto' takes no direction: write 'ip proto N', 'ip6 proto N' or 'proto N'")
            self.take()
            aq = t.text
            words.append(aq)
        elif t.kind == "word" and t.text in _REFUSED:
            self.fail(t, _REFUSED[t.text].format(t.text))
        kw = " ".join(words)
        if aq in ("port", "portrange"):
            if pq not in (None, "tcp", "udp", "sctp"):
                self.fail(first, f"'{pq}' cannot qualify '{aq}': only 'tcp', 'udp' or 'sctp' can")
        elif aq == "proto":
            if pq not in (None, "ip", "ip6"):
                self.fail(first, f"'{pq}' cannot qualify 'proto': only 'ip' or 'ip6' can")
        elif pq not in (None, "ip", "ip6"):
            self.fail(first, f"'{pq}' cannot qualify an address: only 'ip' or 'ip6' can")
        q = _Qual(pq, d, aq, kw)
        return self.value_term(q), q

    def vlan(self) -> _Node:
        self.take()
        t = self.peek()
        if t.kind == "(" and self.peek(2).kind == ")" and self.peek(1).kind == "word":
            self.take()
            vid = self.vlan_id(self.take())
            self.take()
            return _Vlan(vid)
        if t.kind == "word" and _NUM_RE.fullmatch(t.text):
            return _Vlan(self.vlan_id(self.take()))
        return _Vlan(None)

    def vlan_id(self, t: _Tok) -> int:
        if not _NUM_RE.fullmatch(t.text):
            self.fail(t, f"expected a VLAN id after 'vlan', got {t.text!r}")
        v = self.number(t)
        if v > 4095:
            self.fail(t, f"VLAN id {v} greater than maximum 4095")
        return v

    # -------------------------------------------------------------- values

    def value_group(self, q: _Qual) -> _Node:
        """``( value ((and|or) value)* )`` after a qualifier (libpcap's ``pid``)."""
        opener = self.take()
        self.enter(opener)
        node = self.value_term(q)
        while self.peek().kind in ("and", "or"):
            op = self.take()
            node = self.combine(node, op.kind, self.value_term(q), op)
        self.close(opener)
        self.nest -= 1
        return node

    def value_term(self, q: _Qual) -> _Node:
        """A value, ``not`` value, or ``( values )`` after a qualifier (libpcap's ``id``)."""
        t = self.peek()
        if t.kind == "not":
            self.take()
            self.enter(t)
            node = self.value_term(q)
            self.nest -= 1
            return self.negate(node, t)
        if t.kind == "(":
            return self.value_group(q)
        if t.kind == "esc" or (t.kind == "word" and t.text not in _KEYWORDS):
            return self.value(q)
        self.unexpected(t, f"{_expected(q)} after '{q.kw}'")

    def value(self, q: _Qual) -> _Node:
        """One value (number, address, prefix, name) under the qualifiers ``q``."""
        t = self.take()
        if q.aq in ("port", "portrange"):
            return self.port(q, t)
        if q.aq == "proto":
            return self.proto(q, t)
        return self.address(q, t)

    def number(self, t: _Tok) -> int:
        """A libpcap number: decimal, 0x hexadecimal or 0-prefixed octal, at most 32 bits."""
        s = t.text
        if s[:2] in ("0x", "0X"):
            v = int(s[2:], 16)
        elif len(s) > 1 and s[0] == "0":
            if not all(c in "01234567" for c in s):
                self.fail(t, f"number {s} contains a non-octal digit")
            v = int(s, 8)
        else:
            v = int(s)
        if v > 0xFFFFFFFF:
            self.fail(t, f"number {s} overflows 32 bits")
        return v

    def port(self, q: _Qual, t: _Tok) -> _Node:
        after = self.peek()
        if after.kind == "/" or (after.kind == "word" and after.text == "mask"):
            self.fail(after, f"'{q.aq}' takes no prefix length or netmask")
        protos = _PORT_PROTOS if q.pq is None else frozenset((cast(int, _PNAMES[q.pq][0]),))
        text = t.text
        if t.kind == "word" and _NUM_RE.fullmatch(text):
            lo = hi = self.port_number(t, text)
        elif t.kind == "word" and (_HID_RE.fullmatch(text) or ":" in text):
            self.fail(t, f"{_expected(q)} after '{q.kw}', got the address {text!r}")
        elif q.aq == "portrange":
            if "-" not in text:
                self.fail(t, f"expected a port range such as '6000-6010' after '{q.kw}', got {text!r}")
            a, _, b = text.partition("-")
            if not a or not b or "-" in b:
                self.fail(t, f"expected a port range such as '6000-6010' after '{q.kw}', got {text!r}")
            lo, pa = self.port_or_name(q, t, a)
            hi, pb = self.port_or_name(q, t, b)
            if lo > hi:
                lo, hi = hi, lo
            if q.pq is None and pa == pb and pa:
                protos = frozenset((pa,))
        else:
            p, only = self.port_or_name(q, t, text)
            lo = hi = p
            if q.pq is None and only:
                protos = frozenset((only,))
        return _Port(q.dir, ((lo, hi),), protos)

    def port_number(self, t: _Tok, text: str) -> int:
        v = self.number(_Tok(t.kind, text, t.col))
        if v > 65535:
            self.fail(t, f"port number {v} greater than maximum 65535")
        return v

    def port_or_name(self, q: _Qual, t: _Tok, text: str) -> Tuple[int, int]:
        """(port, protocol the name is limited to or 0) for a number or service name."""
        if _NUM_RE.fullmatch(text):
            return self.port_number(t, text), 0
        entry = _SERVICES.get(text)
        if entry is None:
            self.fail(t, f"{_expected(q)} after '{q.kw}', got {text!r}")
        port, only = entry
        if only and q.pq is not None and _PNAMES[q.pq][0] != only:
            self.fail(t, f"port {text!r} is {'tcp' if only == _TCP else 'udp'}, not {q.pq}")
        return port, only

    def proto(self, q: _Qual, t: _Tok) -> _Node:
        after = self.peek()
        if after.kind == "/" or (after.kind == "word" and after.text == "mask"):
            self.fail(after, "'proto' takes no prefix length or netmask")
        width = {None: 0, "ip": 4, "ip6": 16}[q.pq]
        if t.kind == "word" and _NUM_RE.fullmatch(t.text):
            v = self.number(t)
            if v > 255:
                self.fail(t, f"protocol number {v} greater than maximum 255")
            return _Proto(v, width)
        number = _PROTOCOLS.get(t.text.lower())
        if number is None:
            self.fail(t, f"{_expected(q)} after '{q.kw}', got {t.text!r}")
        return _Proto(number, width)

    def address(self, q: _Qual, t: _Tok) -> _Node:
        text = t.text
        net = q.aq == "net"
        what = q.aq or "host"
        after = self.peek()
        if t.kind == "esc" or not (_NUM_RE.fullmatch(text) or _HID_RE.fullmatch(text) or ":" in text):
            if net:
                self.fail(t, f"network names are not supported (no name lookups): {text!r}; write an address")
            self.fail(t, f"host names are not resolved (no DNS lookups): {text!r}; write an IPv4 or IPv6 address")
        if ":" in text:
            if _MAC_RE.fullmatch(text):
                self.fail(t, f"Ethernet (MAC) addresses are not supported: {text!r}")
            try:
                v6 = ipaddress.IPv6Address(text).packed
            except ValueError:
                self.fail(t, f"invalid IPv6 address {text!r}")
            if q.pq == "ip":
                self.fail(t, f"'ip' cannot qualify the IPv6 address {text!r}")
            bits = 128
            if after.kind == "/":
                bits = self.prefix_len(128)
                if bits != 128 and not net:
                    self.fail(t, f"'{what}' takes a single address; write 'net {text}/{bits}' for a prefix")
            elif after.kind == "word" and after.text == "mask":
                self.fail(after, "'mask' is for IPv4 networks; write an IPv6 prefix as 'net ADDR/LEN'")
            mask6 = _prefix_mask(bits, 16)
            return self.net_node(q, t, v6, mask6, f"{text}/{bits}")
        if q.pq == "ip6":
            self.fail(t, f"'ip6' cannot qualify the IPv4 address {text!r}")
        dotted = _HID_RE.fullmatch(text) is not None
        if dotted:
            v, vlen = self.atoin(t, text)
        else:
            v = self.number(t)
            vlen = 32
        if after.kind == "/" or (after.kind == "word" and after.text == "mask"):
            if not net:
                self.fail(after, f"'{what}' takes a single address; use 'net' for a prefix or netmask")
            if not dotted:  # flowscope extension: "net 10/8" reads 10 as a one-octet address
                if v > 255:
                    self.fail(t, f"invalid IPv4 network {text!r}")
                vlen = 8
            n = (v << (32 - vlen)) & 0xFFFFFFFF
            if after.kind == "/":
                bits = self.prefix_len(32)
                m = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
                shown = f"{text}/{bits}"
            else:
                self.take()
                mt = self.take()
                if mt.kind != "word" or not _HID_RE.fullmatch(mt.text):
                    self.fail(mt, f"expected a dotted netmask (255.255.0.0) after 'mask', got {self.describe(mt)}")
                mv, mlen = self.atoin(mt, mt.text)
                m = (mv << (32 - mlen)) & 0xFFFFFFFF
                shown = f"{text} mask {mt.text}"
        elif net and not dotted:
            # A bare network number is left-justified: "net 10" is 10.0.0.0/8.
            n, m = v, 0xFFFFFFFF
            while n and not n & 0xFF000000:
                n <<= 8
                m = (m << 8) & 0xFFFFFFFF
            shown = text
        else:
            # A dotted address with fewer than four parts is left-justified with a
            # matching mask ("host 10.1" is 10.1.0.0/16, as in libpcap).
            n = (v << (32 - vlen)) & 0xFFFFFFFF
            m = (0xFFFFFFFF << (32 - vlen)) & 0xFFFFFFFF
            shown = text
        return self.net_node(q, t, n.to_bytes(4, "big"), m.to_bytes(4, "big"), shown)

    def net_node(self, q: _Qual, t: _Tok, value: bytes, mask: bytes, shown: str) -> _Node:
        if any(v & ~m for v, m in zip(value, mask)):
            self.fail(t, f"non-network bits set in {shown!r}")
        return _Net(q.dir, value, mask)

    def prefix_len(self, limit: int) -> int:
        self.take()  # "/"
        t = self.take()
        if t.kind != "word" or not _NUM_RE.fullmatch(t.text):
            self.fail(t, f"expected a prefix length after '/', got {self.describe(t)}")
        bits = self.number(t)
        if bits > limit:
            self.fail(t, f"prefix length {bits} greater than maximum {limit}")
        return bits

    def atoin(self, t: _Tok, text: str) -> Tuple[int, int]:
        """(value, bits) of a dotted address of 2 to 4 decimal parts, as libpcap's ``__pcap_atoin``."""
        v = 0
        parts = text.split(".")
        for p in parts:
            b = int(p)
            if b > 255:
                self.fail(t, f"invalid IPv4 address {text!r}")
            v = (v << 8) | b
        return v, 8 * len(parts)


def _expected(q: _Qual) -> str:
    if q.aq == "port":
        return "expected a port number or a known service name"
    if q.aq == "portrange":
        return "expected a port range such as '6000-6010'"
    if q.aq == "proto":
        return "expected a protocol number or a known protocol name (write keywords escaped: '\\tcp')"
    if q.aq == "net":
        return "expected a network such as '10.0.0.0/8'"
    return "expected an IPv4 or IPv6 address"


def _prefix_mask(bits: int, width: int) -> bytes:
    full = (1 << (8 * width)) - 1
    return ((full << (8 * width - bits)) & full).to_bytes(width, "big")


# ----------------------------------------------------------------------------- canonical text


# The keyword that means exactly (protocol, width), for readable canonical text.
_ABBREV: Dict[Tuple[int, int], str] = {}
for _w, (_n, _width) in _PNAMES.items():
    if _n is not None:
        _ABBREV.setdefault((_n, _width), _w)


def _addr_text(a: bytes) -> str:
    return str(ipaddress.IPv4Address(a) if len(a) == 4 else ipaddress.IPv6Address(a))


def _canonical(node: _Node) -> str:
    if isinstance(node, _All):
        return ""
    if isinstance(node, _Family):
        return "ip" if node.width == 4 else "ip6"
    if isinstance(node, _Proto):
        abbrev = _ABBREV.get((node.number, node.width))
        if abbrev:
            return abbrev
        return {0: "", 4: "ip ", 16: "ip6 "}[node.width] + f"proto {node.number}"
    if isinstance(node, _Net):
        d = _DIR_TEXT[node.dir]
        addr = _addr_text(node.value)
        full = all(b == 0xFF for b in node.mask)
        if full:
            return f"{d}host {addr}"
        m = int.from_bytes(node.mask, "big")
        bits = bin(m).count("1")
        if m == int.from_bytes(_prefix_mask(bits, len(node.mask)), "big"):
            return f"{d}net {addr}/{bits}"
        return f"{d}net {addr} mask {_addr_text(node.mask)}"
    if isinstance(node, _Port):
        pq = "" if node.protos == _PORT_PROTOS else {_TCP: "tcp ", _UDP: "udp ", _SCTP: "sctp "}[min(node.protos)]
        lo, hi = node.ranges[0]
        if lo == hi:
            return f"{pq}{_DIR_TEXT[node.dir]}port {lo}"
        return f"{pq}{_DIR_TEXT[node.dir]}portrange {lo}-{hi}"
    if isinstance(node, _Vlan):
        return "vlan" if node.vid is None else f"vlan {node.vid}"
    if isinstance(node, _Not):
        return f"not {_canonical(node.item)}"
    if isinstance(node, _Bool):
        return "(" + f" {node.op} ".join(_canonical(i) for i in node.items) + ")"
    raise AssertionError(node)  # _Hosts exists only after _simplify


# ----------------------------------------------------------------------------- code


def _simplify(node: _Node) -> _Node:
    """Flatten same-operator chains and merge ``or``-ed host and port tests into sets."""
    if isinstance(node, _Not):
        return _Not(_simplify(node.item), node.depth)
    if not isinstance(node, _Bool):
        return node
    items: List[_Node] = []
    for i in node.items:
        s = _simplify(i)
        if isinstance(s, _Bool) and s.op == node.op:
            items.extend(s.items)
        else:
            items.append(s)
    if node.op == "or":
        merged: List[_Node] = []
        slot: Dict[Tuple[object, ...], int] = {}
        for s in items:
            if isinstance(s, _Net) and s.dir != "and" and all(b == 0xFF for b in s.mask):
                s = _Hosts(s.dir, (s.value,))
            if isinstance(s, _Hosts):
                key: Tuple[object, ...] = ("h", s.dir)
                if key in slot:
                    prev = cast(_Hosts, merged[slot[key]])
                    merged[slot[key]] = _Hosts(s.dir, prev.values + s.values)
                    continue
            elif isinstance(s, _Port) and s.dir != "and":
                key = ("p", s.dir, s.protos)
                if key in slot:
                    prevp = cast(_Port, merged[slot[key]])
                    merged[slot[key]] = _Port(s.dir, prevp.ranges + s.ranges, s.protos)
                    continue
            else:
                merged.append(s)
                continue
            slot[key] = len(merged)
            merged.append(s)
        items = merged
    if len(items) == 1:
        return items[0]
    return _Bool(node.op, tuple(items), node.depth)


def _sides(d: str, test: Callable[[str], str], a: str, b: str) -> str:
    if d == "src":
        return test(a)
    if d == "dst":
        return test(b)
    return f"({test(a)} {d} {test(b)})"


def _set(values: List[int]) -> str:
    return "{" + ", ".join(str(v) for v in sorted(values)) + "}"


def _gen(node: _Node) -> str:
    if isinstance(node, _All):
        return "True"
    if isinstance(node, _Family):
        return f"len(src) == {node.width}"
    if isinstance(node, _Proto):
        if node.width:
            return f"(proto == {node.number} and len(src) == {node.width})"
        return f"proto == {node.number}"
    if isinstance(node, _Vlan):
        return "vlans != ()" if node.vid is None else f"{node.vid} in vlans"
    if isinstance(node, _Not):
        return f"(not {_gen(node.item)})"
    if isinstance(node, _Bool):
        return "(" + f" {node.op} ".join(_gen(i) for i in node.items) + ")"
    if isinstance(node, _Hosts):
        vals = sorted(set(node.values))
        if len(vals) == 1:
            return _sides(node.dir, lambda v: f"{v} == {vals[0]!r}", "src", "dst")
        literal = "{" + ", ".join(repr(v) for v in vals) + "}"
        return _sides(node.dir, lambda v: f"{v} in {literal}", "src", "dst")
    if isinstance(node, _Net):
        return _gen_net(node)
    if isinstance(node, _Port):
        return _gen_port(node)
    raise AssertionError(node)


def _gen_net(node: _Net) -> str:
    value, mask, width = node.value, node.mask, len(node.value)
    if all(b == 0xFF for b in mask):
        return _sides(node.dir, lambda v: f"{v} == {value!r}", "src", "dst")

    def test(var: str) -> str:
        conds: List[str] = []
        i = 0
        while i < width:
            if mask[i] == 0xFF:
                j = i
                while j < width and mask[j] == 0xFF:
                    j += 1
                if j - i <= 3:  # indexing beats slicing (which allocates) for short runs
                    conds += [f"{var}[{k}] == {value[k]}" for k in range(i, j)]
                else:
                    conds.append(f"{var}[{i}:{j}] == {value[i:j]!r}")
                i = j
            else:
                if mask[i]:
                    conds.append(f"({var}[{i}] & {mask[i]}) == {value[i]}")
                i += 1
        return conds[0] if len(conds) == 1 else "(" + " and ".join(conds) + ")"

    if not any(mask):
        return f"len(src) == {width}"
    return f"(len(src) == {width} and {_sides(node.dir, test, 'src', 'dst')})"


def _gen_port(node: _Port) -> str:
    singles = [lo for lo, hi in node.ranges if lo == hi]
    spans = sorted({(lo, hi) for lo, hi in node.ranges if lo != hi})
    uniq = sorted(set(singles))

    def test(var: str) -> str:
        conds: List[str] = []
        if len(uniq) == 1:
            conds.append(f"{var} == {uniq[0]}")
        elif uniq:
            conds.append(f"{var} in {_set(uniq)}")
        conds += [f"{lo} <= {var} <= {hi}" for lo, hi in spans]
        return conds[0] if len(conds) == 1 else "(" + " or ".join(conds) + ")"

    ports = _sides(node.dir, test, "sport", "dport")
    protos = sorted(node.protos)
    check = f"proto == {protos[0]}" if len(protos) == 1 else f"proto in {_set(protos)}"
    return f"({ports} and {check})"
