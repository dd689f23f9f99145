"""The documentation runs and matches what flowscope emits.

Examples: every fenced ```` ```python ```` block of every ``docs/*.md`` runs,
in order, in one namespace per page, with the repository root as working
directory (so ``packages/flowscope-cli/src/flowscope_cli/data/demo.pcap``,
the packaged demo capture, is a real relative path).  A ```` ```text ````
block right after a Python block is its expected standard output, compared
exactly.  Markers on the line before a block: ``<!-- no-test -->`` skips it;
``<!-- quote: PATH -->`` marks a verbatim excerpt of a source file (a
fragment, tested where it lives), skipped too; ``<!-- requires: a, b -->``
names modules the block needs (optional extras): without them it is skipped
and the page's test reports a skip after running everything else.

The event reference: every key of every record that flowscope emits over the
whole public corpus (flow, flow_start, notice, http, tls, dns, quic), over
hand-made malformed traffic (the four error records) and from the
``flow-summary`` command is documented in ``docs/events.md``'s table for its
record type; every declared record type's documented fields are exactly its
columns; and every field of the public contract (the shared ``EVENTS.md``,
written out below and checked against that file when it is present) is
documented in the right table and marked as contract.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import signal
import json
import re
import struct
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

import pytest

import flowscope
from flowscope._frames import NOTICE_DETAILS, SCHEMAS
from flowscope_core import FlowEvent

import packets as P
from conftest import REPO, corpus_pcaps

DOCS = REPO / "docs"
EVENTS_MD = DOCS / "events.md"
SHARED_EVENTS_MD = REPO.parent / "shared" / "docs" / "EVENTS.md"
BUILTIN_PARSERS = ("http", "tls", "dns", "quic")
NESTED = {"answers": "answers", "authority": "answers", "additional": "answers", "extra_questions": "extra_questions"}
"""Record fields holding lists of objects, and the docs table of those objects."""

CONTRACT: Dict[str, Set[str]] = {
    "common": {"event_type", "flow_id", "ts", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "community_id"},
    "flow": {"duration", "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "orig_payload_bytes",
             "resp_payload_bytes", "missed_bytes", "history", "conn_state", "end_reason", "service", "vlan",
             "tunnel"},
    "http": {"method", "host", "uri", "version", "user_agent", "request_content_type", "status_code",
             "response_content_type", "request_body_len", "response_body_len", "trans_depth"},
    "dns": {"trans_id", "is_response", "opcode", "rcode", "truncated", "qname", "qtype", "answers"},
    "answers": {"name", "type", "ttl", "data"},
    "tls": {"version", "client_version", "client_supported_versions", "server_name", "alpn_offered",
            "alpn_selected", "cipher", "ja3", "ja3_string", "ja3s", "ja3s_string", "ja4", "cert_subject_cn",
            "cert_issuer_cn", "cert_san_dns", "hello_retry_request"},
}  # fmt: skip
"""The public contract's fields (the shared EVENTS.md), by record type."""


# ------------------------------------------------------------------ reading Markdown


@dataclass(frozen=True)
class Block:
    """One fenced Python block of a page."""

    line: int
    """1-based line of its opening fence."""
    code: str
    marker: str
    """The HTML comment on the line before (``""`` when none)."""
    output: Optional[str]
    """The ```text block right after it, if any."""


BLOCK_SECONDS = 120

def python_blocks(text: str) -> List[Block]:
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```python":
            i += 1
            continue
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        marker = lines[start - 1].strip() if start and lines[start - 1].strip().startswith("<!--") else ""
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1
        output = None
        if j < len(lines) and lines[j].strip() == "```text":
            k = j + 1
            while k < len(lines) and lines[k].strip() != "```":
                k += 1
            output = "\n".join(lines[j + 1 : k]) + "\n"
            i = k + 1
        out.append(Block(line=start + 1, code="\n".join(body) + "\n", marker=marker, output=output))
    return out


def field_tables(text: str) -> Dict[str, Dict[str, bool]]:
    """``{scope: {field: is contract}}`` from every table whose first header cell is ``field``.

    A table's scope is the first back-quoted word of the heading above it
    (``## `flow` ``, ``### Resource record objects (`answers`, …)``), or
    ``common`` under ``## Every record``.
    """
    tables: Dict[str, Dict[str, bool]] = {}
    scope: Optional[str] = None
    header: Optional[List[str]] = None
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip()
            m = re.search(r"`([^`]+)`", title)
            scope = m.group(1) if m else ("common" if title == "Every record" else None)
            header = None
            continue
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if header is None:
            header = cells
            continue
        if scope is None or header[0] != "field" or set(cells[0]) <= {"-"}:
            continue
        contract = "contract" in header and cells[header.index("contract")] == "✓"
        for name in re.findall(r"`([^`]+)`", cells[0]):
            tables.setdefault(scope, {})[name] = contract
    return tables


def documented(tables: Dict[str, Dict[str, bool]], event_type: str) -> Set[str]:
    """Fields documented for a record type: the common ones and its own table."""
    return set(tables.get("common", {})) | set(tables.get(event_type, {}))


# ------------------------------------------------------------------ examples

PAGES = sorted(p for p in DOCS.glob("*.md") if python_blocks(p.read_text(encoding="utf-8")))


def test_the_quickstart_has_examples() -> None:
    blocks = python_blocks((DOCS / "quickstart.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    assert sum(b.output is not None for b in blocks) >= 8
    assert (DOCS / "quickstart.md") in PAGES


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_examples_run(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    # A registered module, so that dataclasses (and pickling) defined in examples find it.
    module = types.ModuleType(f"docs_{page.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace: Dict[str, Any] = module.__dict__
    skipped: List[str] = []
    ran = 0
    for block in python_blocks(page.read_text(encoding="utf-8")):
        if block.marker == "<!-- no-test -->" or block.marker.startswith("<!-- quote:"):
            continue
        m = re.fullmatch(r"<!-- requires: (.*) -->", block.marker)
        if m:
            missing = [name.strip() for name in m.group(1).split(",") if importlib.util.find_spec(name.strip()) is None]
            if missing:
                skipped.append(f"{page.name}:{block.line} needs {', '.join(missing)}")
                continue
        out = io.StringIO()

        def too_slow(signum: int, frame: object) -> None:
            raise TimeoutError(f"{page.name}:{block.line} ran for more than {BLOCK_SECONDS} s (mark it no-test?)")

        previous = signal.signal(signal.SIGALRM, too_slow)
        signal.alarm(BLOCK_SECONDS)  # a documentation example must never hang the suite
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(block.code, f"{page}:{block.line}", "exec"), namespace)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        ran += 1
        if block.output is not None:
            assert out.getvalue() == block.output, f"{page.name}:{block.line} printed something else"
    assert ran
    if skipped:
        pytest.skip("; ".join(skipped))


def test_block_parser_reads_markers_and_outputs() -> None:
    text = "x\n<!-- no-test -->\n```python\nprint(1)\n```\n\n```text\n1\n```\n```python\npass\n```\n"
    a, b = python_blocks(text)
    assert (a.line, a.code, a.marker, a.output) == (3, "print(1)\n", "<!-- no-test -->", "1\n")
    assert (b.line, b.code, b.marker, b.output) == (10, "pass\n", "", None)


# ------------------------------------------------------------------ the event reference


def _tables() -> Dict[str, Dict[str, bool]]:
    return field_tables(EVENTS_MD.read_text(encoding="utf-8"))


def _tcp_conversation(port: int, client: bytes, server: bytes) -> List[Tuple[int, bytes, int]]:
    a, b = P.ip("192.0.2.1"), P.ip("192.0.2.2")
    t = 1_700_000_000 * 1_000_000_000
    out = []
    for src, dst, sport, dport, flags, seq, ack, payload in (
        (a, b, 40000, port, P.SYN, 100, 0, b""),
        (b, a, port, 40000, P.SYN | P.ACK, 500, 101, b""),
        (a, b, 40000, port, P.ACK, 101, 501, b""),
        (a, b, 40000, port, P.ACK | P.PSH, 101, 501, client),
        (b, a, port, 40000, P.ACK | P.PSH, 501, 101 + len(client), server),
    ):
        seg = P.tcp(sport, dport, flags, seq=seq, ack=ack, payload=payload, src=src, dst=dst)
        out.append((t, P.ether(P.ETH_IPV4, P.ipv4(src, dst, P.TCP, seg)), 1))
        t += 1000
    return out


def _udp(src: str, dst: str, sport: int, dport: int, payload: bytes, t: int) -> Tuple[int, bytes, int]:
    s, d = P.ip(src), P.ip(dst)
    return (t, P.ether(P.ETH_IPV4, P.ipv4(s, d, P.UDP, P.udp(sport, dport, payload, src=s, dst=d))), 1)


def malformed_traffic() -> List[List[Tuple[int, bytes, int]]]:
    """Hand-made flows that each make one error record (HTTP, TLS, DNS, QUIC)."""
    t = 1_700_000_000 * 1_000_000_000
    # HTTP: a response whose Content-Length is not a number (RFC 9110 section 8.6).
    http = _tcp_conversation(80, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n")
    # TLS: a handshake record holding a ClientHello (type 1) of 5 bytes, too short to be one (RFC 8446 4.1.2).
    hello = b"\x01\x00\x00\x05\x03\x03\xff\xff\xff"
    tls = _tcp_conversation(443, b"\x16\x03\x01" + struct.pack("!H", len(hello)) + hello, b"")
    # DNS: a good query, then a response whose answer name points forward (RFC 1035 4.1.4 points back).
    question = b"\x03abc\x00\x00\x01\x00\x01"
    query = struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0) + question
    answer = b"\xc0\x30\x00\x01\x00\x01\x00\x00\x00\x10\x00\x04\x01\x02\x03\x04"
    response = struct.pack("!6H", 7, 0x8180, 1, 1, 0, 0) + question + answer
    dns = [_udp("192.0.2.1", "192.0.2.2", 40002, 53, query, t), _udp("192.0.2.2", "192.0.2.1", 53, 40002, response, t)]
    # QUIC: a v1 Initial long header (RFC 9000 17.2.2) whose payload is zeros, so it fails authentication.
    initial = b"\xc3" + struct.pack("!I", 1) + b"\x0812345678\x00\x00\x41\x00" + bytes(1200)
    quic = [_udp("192.0.2.1", "192.0.2.2", 40001, 443, initial, t)]
    return [http, tls, dns, quic]


def _collect(records: List[Dict[str, Any]], keys: Dict[str, Set[str]]) -> None:
    for d in records:
        keys.setdefault(d["event_type"], set()).update(d)
        for field, scope in NESTED.items():
            for obj in d.get(field) or ():
                keys.setdefault(scope, set()).update(obj)


def emitted_keys() -> Dict[str, Set[str]]:
    """Every key of every record of the built-in parsers over the corpus and the malformed flows."""
    keys: Dict[str, Set[str]] = {}
    sources: List[Any] = [*corpus_pcaps(), *malformed_traffic()]
    for src in sources:
        evs: List[FlowEvent] = list(
            flowscope.events(src, emit_starts=True, l7=flowscope.default_engine(BUILTIN_PARSERS))
        )
        _collect([flowscope.event_to_dict(e) for e in evs], keys)
    return keys


def test_every_emitted_key_is_documented() -> None:
    tables = _tables()
    keys = emitted_keys()
    must_see = {"flow", "flow_start", "http", "http_error", "tls_error", "dns", "dns_error", "quic_error"}
    if corpus_pcaps():
        must_see |= {"tls", "quic", "notice", "answers"}
    assert must_see <= set(keys)
    for event_type, seen in keys.items():
        if event_type in ("answers", "extra_questions"):
            assert seen <= set(tables[event_type]), (event_type, seen - set(tables[event_type]))
            continue
        assert event_type in tables, f"docs/events.md has no table for {event_type!r}"
        missing = seen - documented(tables, event_type)
        assert not missing, f"{event_type}: undocumented {sorted(missing)}"


def test_the_command_line_records_are_documented() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "flowscope_cli.summary", "--demo", "--format", "jsonl"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert {d["event_type"] for d in records} == {"flow", "http", "dns"}
    keys: Dict[str, Set[str]] = {}
    _collect(records, keys)
    tables = _tables()
    for event_type, seen in keys.items():
        assert seen <= (set(tables[event_type]) if event_type in NESTED.values() else documented(tables, event_type))


def test_documented_fields_are_exactly_the_columns() -> None:
    tables = _tables()
    for event_type, cols in SCHEMAS.items():
        names = {c.name for c in cols}
        if event_type == "notice":
            # Details depend on the kind: the built-in ones are documented beside kind and message.
            assert documented(tables, "notice") == names | set(NOTICE_DETAILS)
        else:
            assert documented(tables, event_type) == names, event_type
    assert set(tables["answers"]) == {"name", "type", "ttl", "data", "txt", "rclass", "cache_flush"}
    assert set(tables["extra_questions"]) == {"name", "type", "qclass", "unicast_response"}


def notices_in_source() -> Dict[str, Set[str]]:
    """``{kind: detail keys}`` of every notice flowscope's own modules write (read from their source)."""
    found: Dict[str, Set[str]] = {}
    package = Path(flowscope.__file__).parent
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name == "_notice" and len(node.args) >= 3 and isinstance(node.args[2], ast.Constant):
                found.setdefault(str(node.args[2].value), set()).update(k.arg for k in node.keywords if k.arg)
            elif name == "Notice":
                for k in node.keywords:
                    if k.arg == "kind" and isinstance(k.value, ast.Constant):
                        found.setdefault(str(k.value.value), set())
    return found


def test_every_notice_kind_and_detail_is_documented() -> None:
    text = EVENTS_MD.read_text(encoding="utf-8")
    kinds = set(re.findall(r"^\| `([a-z_]+)` \| [^|]*\|$", text.split("Kinds written by flowscope itself:")[1], re.M))
    in_source = notices_in_source()
    assert {"tcp_overlap_mismatch", "reassembly_limit", "missing_extra"} <= set(in_source)
    assert set(in_source) <= kinds, set(in_source) - kinds
    details = set().union(*in_source.values())
    assert details <= set(_tables()["notice"]), details - set(_tables()["notice"])
    assert details <= set(NOTICE_DETAILS)


def test_the_contract_is_documented_and_marked() -> None:
    tables = _tables()
    for scope, fields in CONTRACT.items():
        for f in fields:
            assert tables[scope].get(f) is True, f"{scope}.{f} is not documented as contract"
    marked = {(s, f) for s, t in tables.items() for f, c in t.items() if c}
    assert marked == {(s, f) for s, fields in CONTRACT.items() for f in fields}


def shared_contract(text: str) -> Dict[str, Set[str]]:
    """The field names of the shared EVENTS.md, by record type (its tables and its field lists)."""
    out: Dict[str, Set[str]] = {}
    scope = "common"
    for line in text.splitlines():
        if line.startswith("## "):
            m = re.search(r"`([^`]+)`", line)
            scope = m.group(1) if m else scope
            continue
        if line.startswith("|"):
            first = re.split(r"(?<!\\)\|", line.strip().strip("|"))[0]
            out.setdefault(scope, set()).update(re.findall(r"`([a-z][a-z0-9_]*)`", first))
        elif scope in ("http", "dns", "tls"):
            for token in re.findall(r"`([^`]+)`", line):
                if token.startswith("{"):
                    out.setdefault("answers", set()).update(n.strip() for n in token.strip("{}").split(","))
                elif re.fullmatch(r"[a-z][a-z0-9_]*", token) and token != "null":
                    out.setdefault(scope, set()).add(token)
    # The DNS list goes on to explain an answer object's `data`: that name is the object's.
    out["dns"] -= out.get("answers", set())
    return out


def test_the_written_contract_is_the_shared_one() -> None:
    if not SHARED_EVENTS_MD.is_file():
        pytest.skip(f"shared EVENTS.md not found at {SHARED_EVENTS_MD}")
    assert shared_contract(SHARED_EVENTS_MD.read_text(encoding="utf-8")) == CONTRACT


def test_json_examples_are_whole_records() -> None:
    tables = _tables()
    text = EVENTS_MD.read_text(encoding="utf-8")
    examples = re.findall(r"```json\n(.*?)\n```", text, flags=re.S)
    assert examples
    for ex in examples:
        d = json.loads(ex)
        assert set(d) == documented(tables, d["event_type"])
        assert list(d) == [c.name for c in SCHEMAS[d["event_type"]]]
