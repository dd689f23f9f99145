"""Flow records against the corpus ground truth, and the fused pcap loop against the general path.

Truth: ``truth["flows"]`` of every corpus capture, compared the way the
corpus's ``score.py`` (``score_flows``) compares them: our records with the
same 5-tuple are summed (timeouts may split a flow), then packets, wire bytes
and payload bytes sent by each endpoint must be equal.  The VLAN ids and the
encapsulation path of each truth flow are checked too.

The fused loop (:func:`flowscope._fastpath.run_pcap`, called directly on
the file's bytes, and through ``FlowTracker.process`` when a pcap reader
hands over to it, with chunks small enough to cut records) must write
exactly the records and counters of the general path
(:meth:`FlowTracker.feed` per frame from :func:`flowscope.open_capture`),
on every classic-pcap corpus capture and on
seeded handmade traffic that exercises what the fused loop hands off
(tunnels, fragments, QinQ, IP options, truncated frames, timeouts,
evictions, port reuse).
"""

from __future__ import annotations

import random
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any, DefaultDict, Dict, FrozenSet, List, Optional, Tuple

import pytest

import flowscope
from flowscope import FlowEnded, FlowTracker, TrackerConfig, open_capture
from flowscope._capture import CaptureLimits
from flowscope._fastpath import run_pcap
from flowscope._sinks import flow_json, flow_to_dict
from flowscope_core import CaptureFormatError, FlowEvent

import packets as P
from conftest import corpus_pcaps, load_truth

SECOND = 1_000_000_000
T0 = 1_650_000_000 * SECOND

PCAPS = corpus_pcaps()
PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
CLASSIC = [p for p in PCAPS if p.read_bytes()[:4] in PCAP_MAGICS]

Conv = Tuple[str, FrozenSet[Tuple[str, int]]]


def _ids(paths: List[Path]) -> List[str]:
    return [p.stem for p in paths]


def our_flows(path: Path) -> List[Dict[str, Any]]:
    """The ``flow`` records of a capture as EVENTS.md dicts, from the public front door."""
    return [flow_to_dict(e) for e in flowscope.events(path, flows_only=True) if isinstance(e, FlowEnded)]


def conv_key(proto: str, a: Tuple[str, int], b: Tuple[str, int]) -> Conv:
    """A direction-agnostic conversation key, as score.py builds it."""
    return (proto.lower(), frozenset({a, b}))


def tally(recs: List[Dict[str, Any]]) -> Dict[Conv, Dict[Tuple[str, int], List[int]]]:
    """[packets, bytes, payload bytes] sent by each endpoint of each conversation, records summed."""
    out: DefaultDict[Conv, DefaultDict[Tuple[str, int], List[int]]]
    out = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for r in recs:
        k = conv_key(r["proto"], (r["orig_h"].lower(), r["orig_p"]), (r["resp_h"].lower(), r["resp_p"]))
        for side in ("orig", "resp"):
            c = out[k][(r[f"{side}_h"].lower(), r[f"{side}_p"])]
            c[0] += r[f"{side}_pkts"]
            c[1] += r[f"{side}_bytes"]
            c[2] += r[f"{side}_payload_bytes"]
    return {k: dict(v) for k, v in out.items()}


def _ep(d: Dict[str, Any]) -> Tuple[str, int]:
    return (str(d["ip"]).lower(), int(d["port"]))


@pytest.mark.corpus
@pytest.mark.parametrize("pcap", PCAPS, ids=_ids(PCAPS))
def test_flow_counts_match_truth(pcap: Path) -> None:
    truth = load_truth(pcap)
    got = tally(our_flows(pcap))
    misses = []
    for f in truth["flows"]:
        i, r = _ep(f["initiator"]), _ep(f["responder"])
        want = {i: [f["pkts_i2r"], f["bytes_i2r"], f["payload_bytes_i2r"]],
                r: [f["pkts_r2i"], f["bytes_r2i"], f["payload_bytes_r2i"]]}  # fmt: skip
        ours = got.get(conv_key(f["proto"], i, r))
        if ours is None:
            misses.append(f"{f['proto']} {i}<->{r}: missing")
        elif i == r:
            if [sum(x) for x in zip(*ours.values())] != [a + b for a, b in zip(want[i], want[r])]:
                misses.append(f"{f['proto']} {i}<->{r}: want {want} got {ours}")
        elif any(ours.get(e, [0, 0, 0]) != want[e] for e in (i, r)):
            misses.append(f"{f['proto']} {i}<->{r}: want {want} got {ours}")
    assert misses == [], f"{len(misses)} of {len(truth['flows'])} flows differ"


@pytest.mark.corpus
def test_corpus_total_is_complete(corpus_dir: Path) -> None:
    # 2231 TCP/UDP conversations in the public corpus, every one matched (see the per-capture test).
    total = sum(len(load_truth(p)["flows"]) for p in PCAPS)
    assert total == 2231


def expected_tunnels(encap: str) -> List[str]:
    """The tunnel names our records should carry for a truth ``encap`` path.

    The path is tshark's protocol chain down to the innermost IP
    (``eth:ethertype:vlan:ethertype:mpls:ip``); shims and tunnels map to the
    decoder's names, and an IP header directly followed by another is IP-in-IP.
    """
    names = {"mpls": "mpls", "pppoes": "pppoe", "gre": "gre", "erspan": "erspan", "vxlan": "vxlan",
             "teredo": "teredo", "gtp": "gtp", "geneve": "geneve"}  # fmt: skip
    parts = [p for p in encap.split(":") if p not in ("ethertype", "udp", "ppp", "eth", "null", "sll", "vlan")]
    out: List[str] = []
    for a, b in zip(parts, parts[1:] + [""]):
        if a in names:
            if a == "gre" and b == "erspan":
                continue
            out.append(names[a])
        elif a in ("ip", "ipv6") and b in ("ip", "ipv6"):
            # The decoder's names: ip4ip (4in4), ip6ip (6in4), ip4ip6 (4in6), ip6ip6 (6in6).
            out.append(("ip4" if b == "ip" else "ip6") + ("ip6" if a == "ipv6" else "ip"))
    return out


@pytest.mark.corpus
@pytest.mark.parametrize("pcap", PCAPS, ids=_ids(PCAPS))
def test_vlans_and_tunnels_match_truth(pcap: Path) -> None:
    truth = load_truth(pcap)
    by_conv: DefaultDict[Conv, List[Dict[str, Any]]] = defaultdict(list)
    for r in our_flows(pcap):
        by_conv[conv_key(r["proto"], (r["orig_h"], r["orig_p"]), (r["resp_h"], r["resp_p"]))].append(r)
    for f in truth["flows"]:
        recs = by_conv[conv_key(f["proto"], _ep(f["initiator"]), _ep(f["responder"]))]
        assert recs, f
        first = min(recs, key=lambda r: float(r["ts"]))
        assert first["vlan"] == f["vlan_ids"], f
        assert first["tunnel"] == expected_tunnels(f["encap"]), f["encap"]


def test_expected_tunnels_reads_encap_paths() -> None:
    assert expected_tunnels("eth:ethertype:ip") == []
    assert expected_tunnels("eth:ethertype:ip:gre:ip") == ["gre"]
    assert expected_tunnels("eth:ethertype:vlan:ethertype:vlan:ethertype:pppoes:ppp:ip") == ["pppoe"]
    assert expected_tunnels("eth:ethertype:ip:udp:vxlan:eth:ethertype:ip") == ["vxlan"]
    assert expected_tunnels("eth:ethertype:vlan:ethertype:mpls:ip") == ["mpls"]
    assert expected_tunnels("eth:ethertype:ip:ipv6") == ["ip6ip"]
    assert expected_tunnels("eth:ethertype:ipv6:ip") == ["ip4ip6"]
    assert expected_tunnels("eth:ethertype:ipv6:ipv6") == ["ip6ip6"]
    assert expected_tunnels("eth:ethertype:ip:ip") == ["ip4ip"]
    assert expected_tunnels("eth:ethertype:ip:gre:erspan:eth:ethertype:ip") == ["erspan"]
    assert expected_tunnels("null:ipv6") == []


# ----------------------------------------------------------------------------- fused loop = general path


def pcap_layout(data: bytes) -> Tuple[str, bool, int]:
    """Byte order, nanosecond flag and link type of a classic pcap file (from its 24-byte header)."""
    magic = struct.unpack_from("<I", data)[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        order = "<"
    else:
        order = ">"
        magic = struct.unpack_from(">I", data)[0]
    return order, magic == 0xA1B23C4D, struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF


def fused(data: bytes, config: Optional[TrackerConfig]) -> Tuple[List[FlowEvent], Dict[str, int]]:
    """Every event of a classic pcap file through the fused loop, then a flush."""
    tr = FlowTracker(config)
    order, nanos, link = pcap_layout(data)

    def more(buf: bytes, pos: int, need: int) -> bytes:
        return buf[pos:]  # the whole file is already in ``buf``

    def damage(offset: int, reason: str) -> CaptureFormatError:
        return CaptureFormatError("<test>", offset, reason)

    def progress(offset: int, packets: int) -> None:
        return None

    evs = list(run_pcap(tr, data, 24, order, nanos, link, 1 << 24, more, damage, progress))
    evs += tr.flush()
    return evs, tr.stats.as_dict()


def general(path: Path, config: Optional[TrackerConfig]) -> Tuple[List[FlowEvent], Dict[str, int]]:
    """Every event of a capture through ``FlowTracker.feed``, one frame at a time, then a flush."""
    tr = FlowTracker(config)
    evs: List[FlowEvent] = []
    with open_capture(path) as reader:
        for ts, frame, wire_len, lt in reader:
            evs += tr.feed(ts, frame, lt, wire_len)
    evs += tr.flush()
    return evs, tr.stats.as_dict()


def lines(evs: List[FlowEvent]) -> List[str]:
    """Sorted JSON lines of the flow records."""
    return sorted(flow_json(e) for e in evs if isinstance(e, FlowEnded))


def chunked(path: Path, config: Optional[TrackerConfig], chunk: int) -> Tuple[List[FlowEvent], Dict[str, int]]:
    """Through ``FlowTracker.process`` on a reader with tiny chunks: the reader's hand-over to the fused loop."""
    tr = FlowTracker(config)
    with open_capture(path, limits=CaptureLimits(chunk_bytes=chunk)) as reader:
        evs = list(tr.process(reader))
    return evs, tr.stats.as_dict()


def assert_same(path: Path, config: Optional[TrackerConfig]) -> int:
    """The fused loop, the per-frame general path and the public front door agree; the record count."""
    data = path.read_bytes()
    fe, fs = fused(data, config)
    ge, gs = general(path, config)
    want = lines(ge)
    assert lines(fe) == want
    assert fs == gs
    assert lines(list(flowscope.events(path, config=config, flows_only=True))) == want
    ce, cs = chunked(path, config, 997)
    assert lines(ce) == want and cs == gs
    return len(want)


CONFIGS: Dict[str, Optional[TrackerConfig]] = {
    "default": None,
    "tiny-table": TrackerConfig(max_flows=3),
    "vlan-in-key": TrackerConfig(vlan_in_key=True),
    "short-timeouts": TrackerConfig(udp_idle_timeout_ns=2 * SECOND, tcp_idle_timeout_ns=5 * SECOND,
                                    tcp_close_linger_ns=SECOND, active_timeout_ns=200 * SECOND),
}  # fmt: skip


@pytest.mark.corpus
@pytest.mark.parametrize("pcap", CLASSIC, ids=_ids(CLASSIC))
def test_fused_loop_equals_general_path_on_corpus(pcap: Path) -> None:
    assert_same(pcap, None)
    if pcap.stat().st_size < 200_000:
        assert_same(pcap, TrackerConfig(max_flows=3))


class Traffic:
    """Seeded random traffic: many small TCP and UDP conversations over many encapsulations."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.t = T0
        self.out: List[Tuple[int, bytes, int]] = []

    def wrap(self, pkt: bytes, how: str) -> bytes:
        """Put an IP packet in a frame of the chosen kind."""
        et = P.ethertype_of(pkt)
        if how == "vlan":
            return P.ether_vlans([self.rng.choice([5, 6])], et, pkt)
        if how == "qinq":
            return P.ether_vlans([100, 5], et, pkt, outer=P.ETH_QINQ)
        if how == "mpls":
            return P.ether(P.ETH_MPLS, P.mpls([16], pkt))
        if how == "pppoe":
            return P.ether(P.ETH_PPPOE_SESSION, P.pppoe_session(P.PPP_IPV4 if et == P.ETH_IPV4 else P.PPP_IPV6, pkt))
        if how == "gre":
            return P.ether(P.ETH_IPV4, P.ipv4(P.ip("192.0.2.1"), P.ip("192.0.2.2"), P.GRE, P.gre(et, pkt)))
        if how == "vxlan":
            outer = P.udp(40000, 4789, P.vxlan(9, P.ether(et, pkt)))
            return P.ether(P.ETH_IPV4, P.ipv4(P.ip("192.0.2.1"), P.ip("192.0.2.3"), P.UDP, outer))
        return P.ether(et, pkt)

    def emit(self, frame: bytes) -> None:
        r = self.rng.random()
        if r < 0.02:
            self.t += 70 * SECOND  # beyond the UDP idle timeout
        elif r < 0.03:
            self.t += 310 * SECOND  # beyond the TCP idle timeout
        elif r < 0.05:
            self.t -= 3 * SECOND  # a timestamp going backwards
        else:
            self.t += self.rng.choice([1, 50, 900]) * 1_000_000
        wire = len(frame)
        if self.rng.random() < 0.08 and len(frame) > 70:
            frame = frame[:70]  # cut by a snap length
        if self.rng.random() < 0.05 and len(frame) < 60:
            frame = frame + b"\0" * (60 - len(frame))  # Ethernet padding
            wire = len(frame)
        self.out.append((self.t, frame, wire))

    def build(self, n_tcp: int = 60, n_udp: int = 40) -> List[Tuple[int, bytes, int]]:
        rng = self.rng
        kinds = ["plain"] * 6 + ["vlan"] * 3 + ["qinq", "mpls", "pppoe", "gre", "vxlan"]
        hosts4 = [P.ip(f"10.0.{i}.{j}") for i in range(2) for j in range(1, 6)]
        hosts6 = [P.ip(f"2001:db8::{i}") for i in range(1, 5)]
        convs: List[Dict[str, Any]] = []
        for i in range(n_tcp):
            v6 = rng.random() < 0.25
            hosts = hosts6 if v6 else hosts4
            a, b = rng.sample(hosts, 2)
            convs.append({"tcp": True, "a": a, "b": b, "pa": 1024 + rng.randrange(8), "pb": rng.choice([80, 443]),
                          "how": rng.choice(kinds), "seq": [rng.randrange(1 << 32), rng.randrange(1 << 32)],
                          "opts": not v6 and rng.random() < 0.1, "steps": rng.randrange(1, 14)})  # fmt: skip
        for i in range(n_udp):
            v6 = rng.random() < 0.25
            hosts = hosts6 if v6 else hosts4
            a, b = rng.sample(hosts, 2)
            convs.append({"tcp": False, "a": a, "b": b, "pa": 2000 + rng.randrange(5), "pb": 53,
                          "how": rng.choice(kinds), "steps": rng.randrange(1, 6),
                          "frag": not v6 and rng.random() < 0.15})  # fmt: skip
        live = [c for c in convs]
        step = 0
        while live:
            c = rng.choice(live)
            c["steps"] -= 1
            if c["steps"] <= 0:
                live.remove(c)
            back = rng.random() < 0.4
            src, dst = (c["b"], c["a"]) if back else (c["a"], c["b"])
            sp, dp = (c["pb"], c["pa"]) if back else (c["pa"], c["pb"])
            if c["tcp"]:
                self.emit(self.wrap(self.tcp_packet(c, int(back), src, dst, sp, dp), c["how"]))
            else:
                payload = bytes(rng.randrange(256) for _ in range(rng.choice([1, 30, 300])))
                l4 = P.udp(sp, dp, payload, src=src, dst=dst)
                if c.get("frag") and len(l4) > 64:
                    ident = rng.randrange(1 << 16)
                    parts = [(0, 48), (48, len(l4))]
                    if rng.random() < 0.5:
                        parts.reverse()
                    for lo, hi in parts:
                        self.emit(self.wrap(P.ipv4(src, dst, P.UDP, l4[lo:hi], ident=ident, more_fragments=hi < len(l4),
                                                   frag_offset=lo), c["how"]))  # fmt: skip
                else:
                    self.emit(self.wrap(P.ip_packet(src, dst, P.UDP, l4), c["how"]))
            step += 1
            if step % 17 == 0:
                self.emit(P.ether(P.ETH_ARP, bytes(28)))
            if step % 23 == 0:
                self.emit(P.ether(P.ETH_IPV4, bytes([0x45]) + bytes(10)))  # malformed
        return self.out

    def tcp_packet(self, c: Dict[str, Any], d: int, src: bytes, dst: bytes, sp: int, dp: int) -> bytes:
        rng = self.rng
        flags = rng.choice([P.SYN, P.SYN | P.ACK, P.ACK, P.ACK | P.PSH, P.ACK | P.PSH, P.FIN | P.ACK, P.RST,
                            P.RST | P.ACK, P.ACK | P.PSH])  # fmt: skip
        payload = b"" if flags & (P.SYN | P.RST) or rng.random() < 0.3 else bytes(rng.choice([1, 10, 200]))
        seq = c["seq"][d]
        if rng.random() < 0.1:
            seq = (seq - len(payload) - 5) & 0xFFFFFFFF  # a retransmission
        else:
            c["seq"][d] = (seq + len(payload) + (1 if flags & (P.SYN | P.FIN) else 0)) & 0xFFFFFFFF
        window = 0 if rng.random() < 0.05 else 8192
        seg = P.tcp(sp, dp, flags, seq=seq, ack=c["seq"][1 - d], window=window, payload=payload)
        if len(src) == 16:
            return P.ipv6(src, dst, P.TCP, seg)
        return P.ipv4(src, dst, P.TCP, seg, options=b"\x01\x01\x01\x00" if c["opts"] else b"")


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fused_loop_equals_general_path_on_handmade_traffic(
    tmp_path: Path, seed: int, config: Optional[TrackerConfig]
) -> None:
    records = Traffic(seed).build()
    path = tmp_path / "traffic.pcap"
    path.write_bytes(P.pcap_bytes([(t, f, w) for t, f, w in records], nanos=seed == 2))
    n = assert_same(path, config)
    assert n > 50


def test_pcapng_gives_the_records_of_pcap(tmp_path: Path) -> None:
    recs = Traffic(4).build(30, 20)
    classic, ng = tmp_path / "t.pcap", tmp_path / "t.pcapng"
    classic.write_bytes(P.pcap_bytes(recs))
    ng.write_bytes(P.pcapng_bytes(recs))
    want = lines(general(classic, None)[0])
    assert len(want) > 20
    assert lines(list(flowscope.events(ng, flows_only=True))) == want


def test_fused_loop_reads_big_endian_and_other_link_types(tmp_path: Path) -> None:
    recs = Traffic(9).build(20, 10)
    path = tmp_path / "be.pcap"
    path.write_bytes(P.pcap_bytes([(t, f, w) for t, f, w in recs], order=">"))
    assert assert_same(path, None) > 10
    raw = tmp_path / "raw.pcap"  # link type 101: no Ethernet, every frame takes the general path
    ip_only = [(t, f[14:], w - 14) for t, f, w in recs if f[12:14] in (b"\x08\x00", b"\x86\xdd")]
    raw.write_bytes(P.pcap_bytes(ip_only, link=101))
    assert assert_same(raw, None) > 10


def test_a_record_over_the_length_bound_comes_after_every_earlier_event(tmp_path: Path) -> None:
    # The fused loop scans a chunk at a time; the events of the records before the
    # bad one must still be handed out before the error, as the general path does.
    recs = [(t, f, w) for t, f, w in Traffic(5).build(10, 5) if len(f) < 200][:40]
    huge = (recs[-1][0] + 1, b"\0" * 300, 300)
    path = tmp_path / "bad.pcap"
    path.write_bytes(P.pcap_bytes(recs + [huge]))
    limits = CaptureLimits(max_pcap_caplen=256)

    def until_error(use_process: bool) -> Tuple[List[Dict[str, Any]], int]:
        tr = FlowTracker(emit_starts=True)
        got: List[FlowEvent] = []
        with open_capture(path, limits=limits) as reader:
            with pytest.raises(CaptureFormatError) as err:
                if use_process:
                    for ev in tr.process(reader, flush=False):
                        got.append(ev)
                else:
                    for ts, frame, wire_len, lt in reader:
                        got += tr.feed(ts, frame, lt, wire_len)
        return [flowscope.event_to_dict(e) for e in got], err.value.offset

    fused_events, fused_offset = until_error(True)
    general_events, general_offset = until_error(False)
    assert fused_offset == general_offset
    assert len(general_events) > 3
    assert fused_events == general_events
