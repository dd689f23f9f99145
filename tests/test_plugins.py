"""Tests of the parser plugin contract: discovery, load failures, missing extras, and the guide.

The third-party plugin is ``tests/plugin_pkg`` (distribution
``flowscope-ssh-banner``, entry point ``ssh``, depending on flowscope-core
alone), installed editable by ``requirements-dev.txt``.  It must be found
and run exactly like a built-in: through ``flowscope.discover()``, the
library and the installed ``flow-summary``.  Expected SSH lines are the
constants of ``tests/data/plugins/make_captures.py`` for the handmade
capture and tshark's ``ssh.protocol`` (TShark 4.0.17) for the corpus one.

Broken plugins are real distributions made under ``tmp_path`` (a
``.dist-info`` folder with ``METADATA`` and ``entry_points.txt``, put on
``sys.path`` or ``PYTHONPATH``), so the whole ``importlib.metadata`` path
is exercised, distribution names included.  A missing extra is simulated
by making ``import httptools`` fail, in process (``sys.modules``) and in a
subprocess (a shadowing package first on ``PYTHONPATH``).

Finally every Python block of ``docs/plugins.md`` is checked: quotes of the
plugin must match its source verbatim, the rest is executed (and any
``test_*`` function it defines is run).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import pytest

import flowscope
from flowscope import FlowEnded, L7Config, Notice, PluginLoadError, SessionRecord
from flowscope_core import (
    ENTRY_POINT_GROUP,
    Detection,
    Direction,
    Endpoint,
    FlowEvent,
    FlowInfo,
    FlowscopeError,
    MissingExtraError,
    Orientation,
    SessionParser,
    SessionParserFactory,
)
from flowscope_ssh_banner import SshBanner, SshBannerFactory

from conftest import REPO, load_truth

PLUGIN_DATA = Path(__file__).resolve().parent / "data" / "plugins"
SSH_PCAP = PLUGIN_DATA / "ssh_port_2022.pcap"
DOC = REPO / "docs" / "plugins.md"
BUILTINS = ("http", "tls", "dns", "quic")

# The constants of tests/data/plugins/make_captures.py (the capture's own source).
CLIENT = ("192.0.2.10", 51515)
SERVER = ("198.51.100.20", 2022)
CLIENT_BANNER = "SSH-2.0-PuTTY_Release_0.80"
SERVER_BANNER = "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13"

GRE_PCAP = "zeek_tunnels_gre-sample.pcap"
GRE_CLIENT_BANNER = "SSH-2.0-OpenSSH_3.6.1p1"
GRE_SERVER_BANNER = "SSH-1.99-OpenSSH_3.1p1"
"""tshark 4.0.17 ``-T fields -e ssh.protocol``: frame 16 (client, port 40264) and frame 14 (server, port 22)."""

HTTP_PCAP = "zeek_wikipedia.pcap"
"""HTTP (15 requests) and DNS (40 messages) in 34 flows."""


def flow_summary() -> Path:
    """The installed ``flow-summary`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("flow-summary")
    assert script.exists(), f"flow-summary is not installed beside {sys.executable} (pip install -r requirements-dev.txt)"
    return script


def run_flow_summary(*args: str, pythonpath: Sequence[Path] = ()) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([str(flow_summary()), *args], capture_output=True, text=True, env=env, timeout=120)


def jsonl(text: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def make_distribution(site: Path, dist: str, entry_points: Dict[str, str], modules: Dict[str, str]) -> None:
    """A minimal installed distribution in ``site``: metadata, entry points and modules."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n" + "\n".join(lines) + "\n")
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)


@pytest.fixture
def forget_modules() -> Iterator[Callable[[str], None]]:
    """Register module names that a test imports from ``tmp_path``; they are dropped afterwards."""
    names: List[str] = []
    yield names.append
    for name in names:
        sys.modules.pop(name, None)


# --------------------------------------------------------------------------- discovery


def test_installed_plugin_is_discovered_with_the_builtins() -> None:
    found = flowscope.discover()
    names = [f.name for f in found.factories]
    assert not found.errors, found.errors
    assert set(BUILTINS) | {"ssh"} <= set(names)
    assert max(names.index(b) for b in BUILTINS) < names.index("ssh")  # built-ins first
    (ssh,) = [f for f in found.factories if f.name == "ssh"]
    assert isinstance(ssh, SshBannerFactory)
    (ep,) = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "ssh"]
    assert ep.value == "flowscope_ssh_banner:factory"
    assert ep.dist is not None and ep.dist.metadata["Name"] == "flowscope-ssh-banner"
    # Written against the core alone.
    assert metadata.requires("flowscope-ssh-banner") == ["flowscope-core"]


def test_the_plugin_satisfies_the_core_protocols() -> None:
    # Checked by mypy --strict: the assignments only type-check if the plugin's classes match.
    factory: SessionParserFactory = SshBannerFactory()
    info = FlowInfo(flow_id="C1", proto=6, orig=Endpoint(addr=CLIENT[0], port=CLIENT[1]),
                    resp=Endpoint(addr=SERVER[0], port=SERVER[1]), orientation=Orientation.SYN,
                    community_id="", vlan=(), tunnel=())  # fmt: skip
    parser: SessionParser = factory.create(info)
    assert factory.detect(Direction.RESP, b"SS", info) is Detection.NEED_MORE
    assert factory.detect(Direction.RESP, b"SSH-2.0-x\r\n", info) is Detection.MATCH
    assert factory.detect(Direction.ORIG, b"GET / HTTP/1.1\r\n", info) is Detection.NO_MATCH
    assert parser.close(0) == []


def test_shipped_capture_is_what_the_script_makes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_captures", PLUGIN_DATA / "make_captures.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    build: Callable[[Path], Path] = getattr(script, "build")
    assert build(tmp_path).read_bytes() == SSH_PCAP.read_bytes()


# --------------------------------------------------------------------------- end to end


def test_flow_summary_reports_ssh_on_a_port_nobody_hints() -> None:
    done = run_flow_summary("--format", "jsonl", str(SSH_PCAP))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    recs = jsonl(done.stdout)
    assert [r["event_type"] for r in recs] == ["ssh", "flow"]
    ssh, flow = recs
    # The plugin's fields follow the common head, in the dataclass's order, ``ts`` in seconds.
    assert list(ssh) == ["event_type", "flow_id", "ts", "proto", "orig_h", "orig_p", "resp_h", "resp_p",
                         "community_id", "client", "server"]  # fmt: skip
    assert (ssh["orig_h"], ssh["orig_p"], ssh["resp_h"], ssh["resp_p"]) == (*CLIENT, *SERVER)
    assert (ssh["client"], ssh["server"]) == (CLIENT_BANNER, SERVER_BANNER)
    assert ssh["ts"] == pytest.approx(1_700_000_000.005)  # frame 6, the client's line, completes the record
    assert flow["flow_id"] == ssh["flow_id"] and flow["community_id"] == ssh["community_id"]
    assert flow["service"] == "ssh" and flow["resp_p"] == 2022 and flow["missed_bytes"] == 0


def test_library_gives_the_plugin_event_itself() -> None:
    recs = [e for e in flowscope.events(SSH_PCAP) if isinstance(e, SessionRecord)]
    assert len(recs) == 1
    ev = recs[0].event
    assert isinstance(ev, SshBanner)
    assert (ev.client, ev.server, ev.ts) == (CLIENT_BANNER, SERVER_BANNER, 1_700_000_000_005_000_000)


@pytest.mark.corpus
def test_ssh_inside_gre_in_the_corpus(corpus_dir: Path) -> None:
    pcap = corpus_dir / GRE_PCAP
    (truth,) = [f for f in load_truth(pcap)["flows"] if f["proto"] == "tcp" and f["responder"]["port"] == 22]
    done = run_flow_summary("--format", "jsonl", str(pcap))
    assert done.returncode == 0, done.stderr
    recs = jsonl(done.stdout)
    (ssh,) = [r for r in recs if r["event_type"] == "ssh"]
    (flow,) = [r for r in recs if r["event_type"] == "flow" and r["flow_id"] == ssh["flow_id"]]
    ends = (ssh["orig_h"], ssh["orig_p"], ssh["resp_h"], ssh["resp_p"])
    assert ends == (truth["initiator"]["ip"], truth["initiator"]["port"], truth["responder"]["ip"], 22)
    assert (ssh["client"], ssh["server"]) == (GRE_CLIENT_BANNER, GRE_SERVER_BANNER)
    assert flow["service"] == "ssh" and flow["tunnel"] == ["gre"]


# --------------------------------------------------------------------------- load failures

BROKEN_MODULE = 'raise RuntimeError("this plugin is broken")\n'
NOT_A_FACTORY_MODULE = "def factory() -> object:\n    return object()\n"


def test_load_failures_become_errors_naming_the_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: Callable[[str], None]
) -> None:
    for name, source in (("fsx_raises", BROKEN_MODULE), ("fsx_not_factory", NOT_A_FACTORY_MODULE)):
        (tmp_path / f"{name}.py").write_text(source)
        forget_modules(name)
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        metadata.EntryPoint("raises", "fsx_raises:factory", ENTRY_POINT_GROUP),
        metadata.EntryPoint("http", "flowscope.parsers.http:factory", ENTRY_POINT_GROUP),
        metadata.EntryPoint("notfactory", "fsx_not_factory:factory", ENTRY_POINT_GROUP),
        metadata.EntryPoint("absent", "fsx_no_such_module:factory", ENTRY_POINT_GROUP),
        metadata.EntryPoint("dns", "flowscope.parsers.dns:factory", ENTRY_POINT_GROUP),
    ]
    found = flowscope.discover(entry_points=eps)
    assert [f.name for f in found.factories] == ["http", "dns"]
    errors = {e.plugin: e for e in found.errors}
    assert list(errors) == ["raises", "notfactory", "absent"]
    for name, e in errors.items():
        assert isinstance(e, PluginLoadError) and isinstance(e, ImportError) and isinstance(e, FlowscopeError)
        assert e.distribution is None  # an EntryPoint made by hand belongs to no distribution
        assert str(e).startswith(f"parser plugin {name!r} failed to load: ")
        assert "from distribution" not in str(e)
    assert "RuntimeError: this plugin is broken" in str(errors["raises"])
    assert "did not give a parser factory" in str(errors["notfactory"])
    assert "fsx_no_such_module" in str(errors["absent"])


def test_a_broken_installed_plugin_names_its_distribution_and_the_rest_keep_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: Callable[[str], None], corpus_dir: Path
) -> None:
    make_distribution(tmp_path, "flowscope-broken-plugin", {"broken": "fsx_broken:factory"}, {"fsx_broken": BROKEN_MODULE})
    forget_modules("fsx_broken")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = flowscope.discover()
    (err,) = found.errors
    assert (err.plugin, err.distribution) == ("broken", "flowscope-broken-plugin")
    assert str(err) == (
        "parser plugin 'broken' (from distribution 'flowscope-broken-plugin') failed to load: "
        "RuntimeError: this plugin is broken"
    )
    assert set(BUILTINS) | {"ssh"} <= {f.name for f in found.factories}
    # The engine the library and the CLI use keeps the errors.
    engine = flowscope.default_engine()
    assert [str(e) for e in getattr(engine, "load_errors")] == [str(err)]
    # The others still parse: HTTP and DNS of a corpus capture, against tshark's truth.
    pcap = corpus_dir / HTTP_PCAP
    truth = load_truth(pcap)
    tracker = flowscope.FlowTracker(l7=flowscope.L7(found.factories))
    evs = list(tracker.process(flowscope.open_capture(pcap)))
    by_type = _session_events(evs)
    http = Counter((e.method, e.host, e.uri) for e in by_type["http"])
    assert http == Counter((h["method"], h["host"], h["uri"]) for h in truth["http"])
    dns = Counter((e.trans_id, e.qname) for e in by_type["dns"])
    assert dns == Counter((d["id"], d["qname"]) for d in truth["dns"])


def _session_events(evs: Sequence[FlowEvent]) -> Dict[str, List[Any]]:
    out: Dict[str, List[Any]] = {}
    for e in evs:
        if isinstance(e, SessionRecord):
            out.setdefault(e.event.event_type, []).append(e.event)
    return out


def test_a_third_party_entry_point_replaces_the_builtin_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: Callable[[str], None]
) -> None:
    source = (
        "from flowscope.parsers.http import HttpParserFactory\n"
        "class MyHttp(HttpParserFactory):\n"
        "    pass\n"
        "def factory() -> MyHttp:\n"
        "    return MyHttp()\n"
    )
    make_distribution(tmp_path, "my-http", {"http": "fsx_my_http:factory"}, {"fsx_my_http": source})
    forget_modules("fsx_my_http")
    monkeypatch.syspath_prepend(str(tmp_path))
    installed = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "http"]
    assert len(installed) == 2
    # Whatever order metadata lists them in, the third-party one wins.
    for eps in (installed, installed[::-1]):
        found = flowscope.discover(entry_points=eps)
        (f,) = found.factories
        assert type(f).__module__ == "fsx_my_http" and f.name == "http"
    found = flowscope.discover()
    (http,) = [f for f in found.factories if f.name == "http"]
    assert type(http).__module__ == "fsx_my_http"


def test_flow_summary_keeps_working_with_a_broken_plugin_installed(tmp_path: Path) -> None:
    make_distribution(tmp_path, "flowscope-broken-plugin", {"broken": "fsx_broken:factory"}, {"fsx_broken": BROKEN_MODULE})
    done = run_flow_summary("--format", "jsonl", str(SSH_PCAP), pythonpath=[tmp_path])
    assert done.returncode == 0, done.stderr
    assert [r["event_type"] for r in jsonl(done.stdout)] == ["ssh", "flow"]


def test_flow_summary_names_a_broken_plugin_on_stderr(tmp_path: Path) -> None:
    make_distribution(tmp_path, "flowscope-broken-plugin", {"broken": "fsx_broken:factory"}, {"fsx_broken": BROKEN_MODULE})
    done = run_flow_summary("--format", "jsonl", str(SSH_PCAP), pythonpath=[tmp_path])
    assert "'broken'" in done.stderr and "flowscope-broken-plugin" in done.stderr


def test_an_entry_point_may_name_the_factory_class() -> None:
    ep = metadata.EntryPoint("ssh", "flowscope_ssh_banner:SshBannerFactory", ENTRY_POINT_GROUP)
    (f,) = flowscope.discover(entry_points=[ep]).factories
    recs = [e for e in flowscope.events(SSH_PCAP, l7=flowscope.L7([f])) if isinstance(e, SessionRecord)]
    assert len(recs) == 1


@dataclass(frozen=True, slots=True, kw_only=True)
class MixedEvent:
    """A plugin event whose tuple mixes a text item with bytes."""

    event_type: ClassVar[str] = "mixed"
    ts: int
    pair: Tuple[Union[str, bytes], ...]


def test_every_item_of_a_tuple_is_converted() -> None:
    info = FlowInfo(flow_id="C1", proto=6, orig=Endpoint(addr=CLIENT[0], port=CLIENT[1]),
                    resp=Endpoint(addr=SERVER[0], port=SERVER[1]), orientation=Orientation.SYN,
                    community_id="", vlan=(), tunnel=())  # fmt: skip
    d = flowscope.event_to_dict(SessionRecord(flow=info, event=MixedEvent(ts=0, pair=("text", b"\x01\xff"))))
    assert d["pair"] == ["text", "01ff"]
    json.dumps(d)


# --------------------------------------------------------------------------- missing extras

HTTP_INSTALL = "pip install 'flowscope[http]'"


def test_missing_http_extra_raises_with_the_install_command(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httptools", None)  # ``import httptools`` now raises ImportError
    with pytest.raises(MissingExtraError) as info:
        list(flowscope.events(corpus_dir / HTTP_PCAP))
    e = info.value
    assert (e.protocol, e.extra, e.install) == ("http", "http", HTTP_INSTALL)
    assert HTTP_INSTALL in str(e)
    assert isinstance(e, ImportError) and isinstance(e, FlowscopeError)


def test_missing_http_extra_as_a_notice(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httptools", None)
    pcap = corpus_dir / HTTP_PCAP
    truth = load_truth(pcap)
    engine = flowscope.default_engine(config=L7Config(missing_extra="notice"))
    evs = list(flowscope.events(pcap, l7=engine))
    (n,) = [e for e in evs if isinstance(e, Notice) and e.kind == "missing_extra"]
    assert dict(n.details) == {"protocol": "http", "install": HTTP_INSTALL}
    assert HTTP_INSTALL in n.message
    flows = [e for e in evs if isinstance(e, FlowEnded)]
    assert len(flows) == truth["summary"]["flows"]
    by_type = _session_events(evs)
    assert "http" not in by_type
    assert len(by_type["dns"]) == truth["summary"]["dns_messages"]
    http_ports = {(h["client"]["port"], h["server"]["port"]) for h in truth["http"]}
    for fl in flows:
        if (fl.flow.orig.port, fl.flow.resp.port) in http_ports:
            assert fl.service is None  # recognised, but left unparsed


def test_flow_summary_without_the_http_extra_exits_4_with_one_line(corpus_dir: Path, tmp_path: Path) -> None:
    hide = tmp_path / "hide"
    (hide / "httptools").mkdir(parents=True)
    (hide / "httptools" / "__init__.py").write_text('raise ImportError("httptools is hidden by the test")\n')
    done = run_flow_summary("--format", "jsonl", str(corpus_dir / HTTP_PCAP), pythonpath=[hide])
    assert done.returncode == 4
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines == [f"flow-summary: error: parsing http needs the 'http' extra: run {HTTP_INSTALL}"]


# --------------------------------------------------------------------------- the guide

FENCE = re.compile(r"^(?:<!-- quote: (?P<src>\S+) -->\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)^```$", re.M | re.S)


def doc_blocks() -> List[Tuple[int, Optional[str], str, str]]:
    """``(line, quoted file or None, language, body)`` of every fenced block of docs/plugins.md."""
    text = DOC.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m["src"], m["lang"], m["body"]) for m in FENCE.finditer(text)]


def test_guide_quotes_the_plugin_verbatim() -> None:
    blocks = doc_blocks()
    quotes = [(line, src, body) for line, src, _, body in blocks if src is not None]
    assert len(quotes) >= 4
    for line, src, body in quotes:
        assert src.startswith("tests/plugin_pkg/"), (line, src)
        assert body in (REPO / src).read_text(), f"docs/plugins.md line {line} no longer matches {src}"
    # TOML that is not a quote must at least be valid TOML.
    if sys.version_info >= (3, 11):
        import tomllib

        for line, src, lang, body in blocks:
            if lang == "toml" and src is None:
                assert isinstance(tomllib.loads(body), dict), line


def test_guide_python_blocks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    # The blocks run in order in one real module, as a reader pasting them into a file would.
    module = types.ModuleType("plugins_md")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace: Dict[str, Any] = module.__dict__
    ran = 0
    for line, src, lang, body in doc_blocks():
        if lang == "python" and src is None:
            # dont_inherit: this file's ``from __future__ import annotations`` must not leak in.
            exec(compile(body, f"docs/plugins.md:{line}", "exec", dont_inherit=True), namespace)
            ran += 1
    assert ran >= 4
    tests = [fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    assert len(tests) >= 3
    for fn in tests:
        fn()
