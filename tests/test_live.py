"""Live capture (``flowscope._live``) against real traffic in throw-away network namespaces.

The lab: two namespaces joined by a veth pair, made and destroyed by the
``lab`` fixture (unique names per run, deleted in a finalizer whatever
happens).  One process inside namespace A opens every capture under test at
once (ring and recvmsg modes, kernel filters, a snap length, a fan-out pair,
``lo``, ``any`` and a tun device it creates), runs the servers, and dumps
what each capture saw as JSON; a process in namespace B sends known traffic.
No packet leaves the namespaces.  Expected values are what was sent (known
payloads, addresses, ports, send times), the Linux cooked-header layout,
and, when tcpdump is installed, libpcap's own capture of the same interface.

Tests needing the lab skip (with the reason) when not root, not on Linux, or
when ``ip netns`` fails; the argument and parser checks run everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from flowscope import FlowEnded, FlowTracker, open_capture
from flowscope._live import BpfCompileError, LiveCapture, compile_bpf, live, parse_bpf

Frame = Tuple[int, bytes, int, int]

# "udp dst port 9999" for IPv4 over Ethernet, written by hand from the BPF
# instruction set (the independent alternative to tcpdump's compiler).
HAND_UDP_9999: List[Tuple[int, int, int, int]] = [
    (0x28, 0, 0, 12),  # ldh [12]              EtherType
    (0x15, 0, 8, 0x0800),  # jeq #IPv4, else drop
    (0x30, 0, 0, 23),  # ldb [23]              IP protocol
    (0x15, 0, 6, 17),  # jeq #UDP, else drop
    (0x28, 0, 0, 20),  # ldh [20]              flags + fragment offset
    (0x45, 4, 0, 0x1FFF),  # jset #0x1fff: a non-first fragment has no ports: drop
    (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf)     X = IP header length
    (0x48, 0, 0, 16),  # ldh [x+16]            UDP destination port
    (0x15, 0, 1, 9999),  # jeq #9999, else drop
    (0x06, 0, 0, 262144),  # ret #262144 accept
    (0x06, 0, 0, 0),  # ret #0 drop
]

QUIET_S = 0.3  # the captures' timeout: everything is queued before they are drained
UDP_PAYLOADS = [b"flowscope-live-%d-" % i + b"x" * (10 * i) for i in range(5)]
BIG_PAYLOAD = bytes(range(256)) * 3 + b"z" * 232  # 1000 bytes, above the 100-byte snaplen
TCP_REQUEST = b"q" * 300
TCP_REPLY = b"r" * 500
FLOWS = 16  # fan-out flows: all 16 on one socket by chance has probability 2**-15


# ---------------------------------------------------------------- in-namespace programs

CAPTURE_SCRIPT = r'''
import json, os, socket, struct, subprocess, sys, threading, time, fcntl
from flowscope._live import LiveCapture

cfg = json.loads(sys.argv[1])
IF, A, T = cfg["iface"], cfg["a_addr"], cfg["quiet"]
caps = {}
caps["ring"] = LiveCapture(IF, timeout=T)
caps["recvmsg"] = LiveCapture(IF, timeout=T, ring=False)
caps["hand"] = LiveCapture(IF, timeout=T, bpf=[tuple(i) for i in cfg["hand_bpf"]])
if cfg["tcpdump"]:
    caps["compiled"] = LiveCapture(IF, timeout=T, bpf="udp dst port 9999")
caps["snap"] = LiveCapture(IF, timeout=T, snaplen=100)
caps["snap_recvmsg"] = LiveCapture(IF, timeout=T, snaplen=100, ring=False)
caps["fan0"] = LiveCapture(IF, timeout=T, fanout_group=cfg["group"])
caps["fan1"] = LiveCapture(IF, timeout=T, fanout_group=cfg["group"], ring=False)
caps["lo"] = LiveCapture("lo", timeout=T)
caps["lo_recvmsg"] = LiveCapture("lo", timeout=T, ring=False)
caps["any"] = LiveCapture("any", timeout=T)
caps["resume"] = LiveCapture(IF, timeout=T)
results = {"errors": {}}
try:
    LiveCapture(IF, bpf=[(0x15, 5, 5, 1)])
except Exception as e:
    results["errors"]["bad_program"] = type(e).__name__
try:
    LiveCapture(IF, fanout_group=cfg["group"], fanout_mode="lb")
except Exception as e:
    results["errors"]["fanout_mismatch"] = [type(e).__name__, str(e)]
def promisc():  # the interface's promiscuity count (tcpdump, when running, holds one too)
    out = subprocess.run(["ip", "-d", "-j", "link", "show", IF], capture_output=True, check=True).stdout
    return json.loads(out)[0]["promiscuity"]
before = promisc()
p = LiveCapture(IF, promiscuous=True)
during = promisc()
p.close()
results["promisc"] = [during - before, promisc() - before]

# A tun device exists only while this descriptor is open: nothing to clean up.
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, 0x400454CA, struct.pack("16sH", b"fstun0", 0x0001 | 0x1000))  # TUNSETIFF, IFF_TUN|IFF_NO_PI
subprocess.run(["ip", "link", "set", "fstun0", "up"], check=True)
caps["tun"] = LiveCapture("fstun0", timeout=T)
caps["tun_recvmsg"] = LiveCapture("fstun0", timeout=T, ring=False)

stop = threading.Event()
def udp_sink(port, echo):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((A, port)); s.settimeout(0.1)
    while not stop.is_set():
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            continue
        if echo:
            s.sendto(data, peer)
def tcp_server():
    ls = socket.socket(); ls.bind((A, 7777)); ls.listen(1)
    c, _ = ls.accept()
    got = b""
    while True:
        d = c.recv(65535)
        if not d: break
        got += d
    c.sendall(b"r" * 500); c.close(); ls.close()
threads = [threading.Thread(target=udp_sink, args=(p, p == 5555), daemon=True) for p in (5555, 9999, 8888, 4242)]
threads.append(threading.Thread(target=tcp_server, daemon=True))
lo_sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); lo_sink.bind(("127.0.0.1", 6666))
for t in threads: t.start()
time.sleep(0.05)
print("ready", time.time_ns(), flush=True)

assert sys.stdin.readline().strip() == "local"
sent = {"lo": [], "tun": []}
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(3):
    payload = b"loopback-%d" % i
    t0 = time.time_ns(); u.sendto(payload, ("127.0.0.1", 6666)); sent["lo"].append([t0, time.time_ns(), payload.hex()])
for pkt in cfg["tun_packets"]:
    t0 = time.time_ns(); os.write(tun, bytes.fromhex(pkt)); sent["tun"].append([t0, time.time_ns(), pkt])
results["local"] = sent
print("local-done", flush=True)

assert sys.stdin.readline().strip() == "drain"
stop.set()
frames = {}
for name, cap in caps.items():
    got = []
    if name == "resume":  # stop after three frames, then iterate again: nothing may be lost
        for fr in cap:
            got.append(fr)
            if len(got) == 3:
                break
    got += list(cap)
    frames[name] = [[ts, f.hex(), wl, lt] for ts, f, wl, lt in got]
results["frames"] = frames
results["modes"] = {name: cap.mode for name, cap in caps.items()}
results["stats"] = {name: cap.stats for name, cap in caps.items()}

# An idle iteration returns after `timeout` quiet seconds and the capture stays usable.
t0 = time.monotonic(); extra = list(caps["hand"]); results["idle_s"] = time.monotonic() - t0
results["idle_extra"] = len(extra)
# close() from another thread ends an iteration that has no timeout.
blocking = LiveCapture(IF, bpf=[tuple(i) for i in cfg["hand_bpf"]])
done = []
def run():
    for _ in blocking:
        pass
    done.append(time.monotonic())
th = threading.Thread(target=run); th.start(); time.sleep(0.2)
t_close = time.monotonic(); blocking.close(); th.join(3)
results["close_latency_s"] = (done[0] - t_close) if done else None
for cap in caps.values():
    cap.close()
results["closed_iter"] = len(list(caps["ring"]))
# The tun device disappears with its descriptor: a running capture must say so.
doomed = [LiveCapture("fstun0", timeout=2.0), LiveCapture("fstun0", timeout=2.0, ring=False)]
os.close(tun)
results["gone"] = []
for cap in doomed:
    try:
        list(cap)
        results["gone"].append(None)
    except OSError as e:
        results["gone"].append([e.errno, str(e)])
    cap.close()
print(json.dumps(results), flush=True)
'''

SENDER_SCRIPT = r'''
import json, socket, sys, time
cfg = json.loads(sys.argv[1])
A, B = cfg["a_addr"], cfg["b_addr"]
out = {"udp": [], "tcp_port": None}
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((B, 40000))
for p in cfg["udp"]:
    t0 = time.time_ns(); u.sendto(bytes.fromhex(p), (A, 9999)); out["udp"].append([t0, time.time_ns()])
    time.sleep(0.005)
o = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); o.bind((B, 40001))
for i in range(3):
    o.sendto(b"other-%d" % i, (A, 8888))
big = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); big.bind((B, 40002))
big.sendto(bytes.fromhex(cfg["big"]), (A, 9999))
c = socket.create_connection((A, 7777), timeout=5)
out["tcp_port"] = c.getsockname()[1]
c.sendall(bytes.fromhex(cfg["tcp_request"])); c.shutdown(socket.SHUT_WR)
reply = b""
while True:
    d = c.recv(65535)
    if not d: break
    reply += d
c.close()
out["tcp_reply_len"] = len(reply)
echo = []
for i in range(cfg["flows"]):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((B, 41000 + i)); s.settimeout(5)
    for j in range(2):
        s.sendto(b"echo-%d-%d" % (i, j), (A, 5555)); s.recvfrom(100)
    echo.append(41000 + i)
out["echo_ports"] = echo
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); raw.bind((cfg["b_iface"], 0))
raw.send(bytes.fromhex(cfg["vlan_frame"]))
time.sleep(0.05)
print(json.dumps(out), flush=True)
'''


# ---------------------------------------------------------------- packet helpers (independent of flowscope)


def ip_checksum(header: bytes) -> int:
    """RFC 1071 one's-complement sum."""
    total = sum(int(w) for w in struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4/UDP packet (UDP checksum 0: "none", RFC 768)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, _a(src), _a(dst))
    head = head[:10] + struct.pack("!H", ip_checksum(head)) + head[12:]
    return head + udp


def _a(addr: str) -> bytes:
    return bytes(int(x) for x in addr.split("."))


@dataclass(frozen=True)
class L4:
    """What a test needs from one captured IPv4 packet."""

    proto: int
    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes
    vlan: Optional[int]


def parse(frame: bytes, link_type: int) -> Optional[L4]:
    """Ethernet (optionally one 802.1Q tag) or Linux cooked, then IPv4 UDP/TCP; else None."""
    if link_type == 1:
        etype, off, vlan = struct.unpack_from("!H", frame, 12)[0], 14, None
        if etype == 0x8100:
            vlan = struct.unpack_from("!H", frame, 14)[0] & 0x0FFF
            etype, off = struct.unpack_from("!H", frame, 16)[0], 18
    elif link_type == 113:
        etype, off, vlan = struct.unpack_from("!H", frame, 14)[0], 16, None
    else:
        return None
    if etype != 0x0800 or len(frame) < off + 20:
        return None
    ihl = (frame[off] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, off + 2)[0]
    proto = frame[off + 9]
    src = ".".join(map(str, frame[off + 12 : off + 16]))
    dst = ".".join(map(str, frame[off + 16 : off + 20]))
    l4 = off + ihl
    if proto == 17:
        sport, dport = struct.unpack_from("!HH", frame, l4)
        body = frame[l4 + 8 : off + total]
    elif proto == 6:
        sport, dport = struct.unpack_from("!HH", frame, l4)
        body = frame[l4 + (frame[l4 + 12] >> 4) * 4 : off + total]
    else:
        return None
    return L4(proto, src, dst, sport, dport, body, vlan)


def flow_key(p: L4) -> Tuple[Any, ...]:
    """Direction-agnostic 5-tuple."""
    a, b = (p.src, p.sport), (p.dst, p.dport)
    return (p.proto,) + (a + b if a <= b else b + a)


# ---------------------------------------------------------------- the lab


@dataclass
class Lab:
    """Everything one run of the capture process saw, plus what was sent."""

    a_addr: str
    b_addr: str
    a_mac: bytes
    b_mac: bytes
    t_ready: int
    sent: Dict[str, Any]
    result: Dict[str, Any]
    vlan_frame: bytes
    tun_packets: List[bytes]
    tcpdump_frames: Optional[List[Frame]]

    def frames(self, name: str, *, since_ready: bool = True) -> List[Frame]:
        out = [(int(ts), bytes.fromhex(f), int(wl), int(lt)) for ts, f, wl, lt in self.result["frames"][name]]
        return [fr for fr in out if fr[0] >= self.t_ready] if since_ready else out


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, check=False)


def _need_lab() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("live capture is Linux-only")
    if os.geteuid() != 0:
        pytest.skip("live capture tests need root (network namespaces, AF_PACKET)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    _need_lab()
    pid = os.getpid()
    ns_a, ns_b = f"fs-test-a-{pid}", f"fs-test-b-{pid}"
    if_a, if_b = f"fsa{pid}"[:15], f"fsb{pid}"[:15]
    net = 1 + pid % 250
    a_addr, b_addr = f"10.200.{net}.1", f"10.200.{net}.2"
    procs: List[subprocess.Popen[str]] = []
    made: List[str] = []
    try:
        for ns in (ns_a, ns_b):
            r = _run("ip", "netns", "add", ns)
            if r.returncode != 0:
                pytest.skip(f"`ip netns add` failed: {r.stderr.strip()}")
            made.append(ns)
            # No IPv6: no router solicitations or DAD probes wandering into the captures.
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        steps = [
            # The pair is born inside the namespaces: the host's interfaces are never touched.
            ("ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b),
            ("ip", "-n", ns_a, "addr", "add", f"{a_addr}/24", "dev", if_a),
            ("ip", "-n", ns_b, "addr", "add", f"{b_addr}/24", "dev", if_b),
            ("ip", "-n", ns_a, "link", "set", if_a, "up"),
            ("ip", "-n", ns_b, "link", "set", if_b, "up"),
            ("ip", "-n", ns_a, "link", "set", "lo", "up"),
            ("ip", "-n", ns_b, "link", "set", "lo", "up"),
        ]
        for step in steps:
            r = _run(*step)
            if r.returncode != 0:
                pytest.skip(f"network namespace set-up failed: {' '.join(step)}: {r.stderr.strip()}")
        a_mac = _mac(ns_a, if_a)
        b_mac = _mac(ns_b, if_b)
        tmp = tmp_path_factory.mktemp("live")
        cap_py, send_py = tmp / "capture.py", tmp / "send.py"
        cap_py.write_text(textwrap.dedent(CAPTURE_SCRIPT))
        send_py.write_text(textwrap.dedent(SENDER_SCRIPT))
        have_tcpdump = shutil.which("tcpdump") is not None
        tun_packets = [ipv4_udp("10.201.0.2", "10.201.0.1", 7000 + i, 7100, b"tun-%d" % i) for i in range(2)]
        vlan_ip = ipv4_udp(b_addr, a_addr, 40003, 4242, b"vlan-frame")
        vlan_frame = a_mac + b_mac + struct.pack("!HH", 0x8100, (5 << 13) | 42) + b"\x08\x00" + vlan_ip

        pcap = tmp / "reference.pcap"
        dump: Optional[subprocess.Popen[str]] = None
        if have_tcpdump:
            dump = subprocess.Popen(
                ["ip", "netns", "exec", ns_a, "tcpdump", "-i", if_a, "-n", "-U", "-s", "0",
                 "--time-stamp-precision=nano", "-w", str(pcap)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            procs.append(dump)
            assert dump.stderr is not None
            line = dump.stderr.readline()
            assert "listening on" in line, line

        cfg = {
            "iface": if_a, "a_addr": a_addr, "quiet": QUIET_S, "hand_bpf": HAND_UDP_9999, "tcpdump": have_tcpdump,
            "group": pid & 0xFFFF, "tun_packets": [p.hex() for p in tun_packets],
        }  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        cap = subprocess.Popen(
            ["ip", "netns", "exec", ns_a, sys.executable, str(cap_py), json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        procs.append(cap)
        assert cap.stdout is not None and cap.stdin is not None
        ready = cap.stdout.readline().split()
        assert ready and ready[0] == "ready", (ready, cap.stderr.read() if cap.stderr else "")
        t_ready = int(ready[1])

        send_cfg = {
            "a_addr": a_addr, "b_addr": b_addr, "b_iface": if_b, "udp": [p.hex() for p in UDP_PAYLOADS],
            "big": BIG_PAYLOAD.hex(), "tcp_request": TCP_REQUEST.hex(), "flows": FLOWS, "vlan_frame": vlan_frame.hex(),
        }  # fmt: skip
        sender = _run("ip", "netns", "exec", ns_b, sys.executable, str(send_py), json.dumps(send_cfg))
        assert sender.returncode == 0, sender.stderr
        sent: Dict[str, Any] = json.loads(sender.stdout)

        cap.stdin.write("local\n")
        cap.stdin.flush()
        assert cap.stdout.readline().strip() == "local-done"
        cap.stdin.write("drain\n")
        cap.stdin.flush()
        out, err = cap.communicate(timeout=60)
        assert cap.returncode == 0, err
        result: Dict[str, Any] = json.loads(out.strip().splitlines()[-1])

        reference: Optional[List[Frame]] = None
        if dump is not None:
            dump.send_signal(signal.SIGINT)
            dump.communicate(timeout=10)
            reference = [(ts, fr, wl, lt) for ts, fr, wl, lt in open_capture(str(pcap))]
        yield Lab(a_addr, b_addr, a_mac, b_mac, t_ready, sent, result, vlan_frame, tun_packets, reference)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        for ns in made:
            _run("ip", "netns", "del", ns)  # takes its veth end, and so the pair, with it


def _mac(ns: str, ifname: str) -> bytes:
    r = _run("ip", "-n", ns, "-j", "link", "show", ifname)
    assert r.returncode == 0, r.stderr
    return bytes.fromhex(json.loads(r.stdout)[0]["address"].replace(":", ""))


def _udp_to(frames: List[Frame], port: int) -> List[Tuple[Frame, L4]]:
    out = []
    for fr in frames:
        p = parse(fr[1], fr[3])
        if p is not None and p.proto == 17 and p.dport == port:
            out.append((fr, p))
    return out


# ---------------------------------------------------------------- tests against the lab


@pytest.mark.parametrize("name", ["ring", "recvmsg"])
def test_every_datagram_captured_once_with_kernel_time_and_wire_len(lab: Lab, name: str) -> None:
    assert lab.result["modes"]["ring"] == "ring" and lab.result["modes"]["recvmsg"] == "recvmsg"
    got = [(fr, p) for fr, p in _udp_to(lab.frames(name), 9999) if p.sport == 40000]
    assert [p.payload for _, p in got] == UDP_PAYLOADS
    for (fr, p), (t0, t1) in zip(got, lab.sent["udp"]):
        ts, frame, wire_len, lt = fr
        assert lt == 1 and (p.src, p.dst) == (lab.b_addr, lab.a_addr)
        assert frame[:6] == lab.a_mac and frame[6:12] == lab.b_mac
        assert wire_len == len(frame) == 14 + 20 + 8 + len(p.payload)
        # Kernel stamps are CLOCK_REALTIME at arrival: inside the sender's sendto() call.
        assert t0 <= ts <= t1 + 50_000_000, (t0, ts, t1)


@pytest.mark.parametrize("name", ["ring", "recvmsg", "fan0", "fan1", "any"])
def test_timestamps_never_go_back(lab: Lab, name: str) -> None:
    # Packets are stamped on arrival by the CPU that receives them and written to the
    # socket in the order they reach it, so two CPUs may interleave by a few microseconds;
    # anything beyond 1 ms backwards would be a reading-order bug.
    ts = [fr[0] for fr in lab.frames(name, since_ready=False)]
    assert ts and all(b - a > -1_000_000 for a, b in zip(ts, ts[1:]))


def _close_in_time(a: List[Frame], b: List[Frame]) -> bool:
    """Two sockets' stamps of one packet agree within 1 ms (the kernel stamps a packet once
    on arrival when it can; packets carrying a sender's departure time are stamped per socket)."""
    return len(a) == len(b) and all(abs(x[0] - y[0]) < 1_000_000 for x, y in zip(a, b))


def _untimed(frames: List[Frame]) -> List[Tuple[bytes, int, int]]:
    return [(f, wl, lt) for _, f, wl, lt in frames]


def test_ring_and_recvmsg_see_the_same_packets(lab: Lab) -> None:
    ring, recvmsg = lab.frames("ring"), lab.frames("recvmsg")
    assert _untimed(ring) == _untimed(recvmsg)
    assert _close_in_time(ring, recvmsg)


@pytest.mark.parametrize("name", ["hand", "compiled"])
def test_kernel_bpf_keeps_only_udp_dst_9999(lab: Lab, name: str) -> None:
    if name not in lab.result["frames"]:
        pytest.skip("tcpdump is not installed: no compiled program")
    kept = lab.frames(name)
    wanted = [fr for fr, _ in _udp_to(lab.frames("ring"), 9999)]
    assert kept == wanted
    assert {p.sport for _, p in _udp_to(kept, 9999)} == {40000, 40002}
    assert len(kept) == len(UDP_PAYLOADS) + 1
    assert len(lab.frames("ring")) > len(kept) + 40  # TCP, echo flows, ARP, VLAN, 8888: all dropped


@pytest.mark.parametrize("name", ["snap", "snap_recvmsg"])
def test_snaplen_truncates_but_wire_len_is_whole(lab: Lab, name: str) -> None:
    full = [fr for fr, p in _udp_to(lab.frames("ring"), 9999) if p.sport == 40002]
    cut = [fr for fr in lab.frames(name) if fr[1][:100] == full[0][1][:100]]
    assert len(full) == 1 and len(cut) == 1
    assert len(cut[0][1]) == 100 and cut[0][1] == full[0][1][:100]
    assert cut[0][2] == 14 + 20 + 8 + len(BIG_PAYLOAD)
    assert all(len(fr[1]) <= 100 for fr in lab.frames(name))


def test_fanout_hash_splits_flows_whole_and_loses_nothing(lab: Lab) -> None:
    everything = Counter(_untimed(lab.frames("ring")))
    fan0, fan1 = Counter(_untimed(lab.frames("fan0"))), Counter(_untimed(lab.frames("fan1")))
    assert not (fan0 & fan1), "a packet reached both sockets of the group"
    assert fan0 + fan1 == everything
    owner: Dict[Tuple[Any, ...], set[str]] = {}
    for name in ("fan0", "fan1"):
        for fr in lab.frames(name):
            p = parse(fr[1], fr[3])
            if p is not None:
                owner.setdefault(flow_key(p), set()).add(name)
    echo = [flow_key(L4(17, lab.b_addr, lab.a_addr, port, 5555, b"", None)) for port in lab.sent["echo_ports"]]
    assert len(echo) == FLOWS and all(k in owner for k in echo)
    assert all(len(v) == 1 for v in owner.values()), "both directions of a flow must reach one socket"
    assert {next(iter(owner[k])) for k in echo} == {"fan0", "fan1"}


@pytest.mark.parametrize("name", ["lo", "lo_recvmsg"])
def test_loopback_packets_once_not_twice(lab: Lab, name: str) -> None:
    got = _udp_to(lab.frames(name), 6666)
    assert [p.payload.hex() for _, p in got] == [hexed for _, _, hexed in lab.result["local"]["lo"]]
    for (fr, _), (t0, t1, _) in zip(got, lab.result["local"]["lo"]):
        assert fr[3] == 1 and fr[1][:12] == bytes(12)  # lo's Ethernet header has zero addresses
        assert t0 <= fr[0] <= t1 + 50_000_000


def _sll(pkttype: int, hatype: int, addr: bytes, proto: int) -> bytes:
    """LINKTYPE_LINUX_SLL header as tcpdump.org documents it."""
    return struct.pack("!HHH", pkttype, hatype, len(addr)) + addr.ljust(8, b"\0") + struct.pack("!H", proto)


def test_any_gives_cooked_frames_and_loopback_once(lab: Lab) -> None:
    frames = lab.frames("any")
    assert all(lt == 113 for _, _, _, lt in frames)
    udp = [(fr, p) for fr, p in _udp_to(frames, 9999) if p.sport == 40000]
    assert [p.payload for _, p in udp] == UDP_PAYLOADS
    ring = {fr[1][14:]: fr for fr, p in _udp_to(lab.frames("ring"), 9999)}
    for fr, _ in udp:
        assert fr[1][:16] == _sll(0, 1, lab.b_mac, 0x0800)  # PACKET_HOST, ARPHRD_ETHER, sender's MAC
        eth = ring[fr[1][16:]]
        assert fr[0] == eth[0] and fr[2] == eth[2] - 14 + 16
    lo = _udp_to(frames, 6666)
    assert len(lo) == 3 and all(fr[1][:16] == _sll(0, 772, bytes(6), 0x0800) for fr, _ in lo)


@pytest.mark.parametrize("name", ["tun", "tun_recvmsg"])
def test_tun_device_gives_cooked_frames(lab: Lab, name: str) -> None:
    frames = lab.frames(name)
    head = _sll(0, 0xFFFE, b"", 0x0800)  # PACKET_HOST, ARPHRD_NONE, no address
    assert [fr[1] for fr in frames] == [head + p for p in lab.tun_packets]
    assert [fr[2] for fr in frames] == [16 + len(p) for p in lab.tun_packets]
    for fr, (t0, t1, _) in zip(frames, lab.result["local"]["tun"]):
        assert fr[3] == 113 and t0 <= fr[0] <= t1 + 50_000_000


@pytest.mark.parametrize("name", ["ring", "recvmsg"])
def test_vlan_tag_put_back_as_on_the_wire(lab: Lab, name: str) -> None:
    tagged = [fr for fr in lab.frames(name) if fr[1][12:14] == b"\x81\x00"]
    assert [fr[1] for fr in tagged] == [lab.vlan_frame]
    assert tagged[0][2] == len(lab.vlan_frame)
    events = FlowTracker().process(iter(tagged))
    ended = [e for e in events if isinstance(e, FlowEnded)]
    assert [e.flow.vlan for e in ended] == [(42,)]


def test_matches_libpcap_capture_of_the_same_interface(lab: Lab) -> None:
    if lab.tcpdump_frames is None:
        pytest.skip("tcpdump is not installed")
    ours = lab.frames("ring")
    theirs = [fr for fr in lab.tcpdump_frames if fr[0] >= lab.t_ready]
    assert _untimed(ours) == _untimed(theirs)
    assert _close_in_time(ours, theirs)


@pytest.mark.parametrize("name", ["ring", "recvmsg"])
def test_flow_records_from_live_frames(lab: Lab, name: str) -> None:
    records = [e for e in FlowTracker().process(iter(lab.frames(name))) if isinstance(e, FlowEnded)]

    def one(proto: int, port_a: int, port_b: int) -> FlowEnded:
        hits = [
            r for r in records
            if r.flow.proto == proto and {r.flow.orig.port, r.flow.resp.port} == {port_a, port_b}
        ]  # fmt: skip
        assert len(hits) == 1, hits
        return hits[0]

    udp = one(17, 40000, 9999)
    assert (udp.flow.orig.addr, udp.flow.orig.port, udp.flow.resp.addr) == (lab.b_addr, 40000, lab.a_addr)
    assert (udp.stats.orig.packets, udp.stats.resp.packets) == (len(UDP_PAYLOADS), 0)
    assert udp.stats.orig.bytes == sum(42 + len(p) for p in UDP_PAYLOADS)
    assert udp.stats.orig.payload_bytes == sum(len(p) for p in UDP_PAYLOADS)

    tcp = one(6, lab.sent["tcp_port"], 7777)
    assert (tcp.flow.orig.addr, tcp.flow.orig.port) == (lab.b_addr, lab.sent["tcp_port"])
    assert (tcp.stats.orig.payload_bytes, tcp.stats.resp.payload_bytes) == (len(TCP_REQUEST), len(TCP_REPLY))
    assert lab.sent["tcp_reply_len"] == len(TCP_REPLY)
    assert tcp.conn_state.value == "SF" and tcp.history.startswith("ShAD")

    for port in lab.sent["echo_ports"]:
        echo = one(17, port, 5555)
        assert (echo.stats.orig.packets, echo.stats.resp.packets) == (2, 2)
        assert echo.flow.orig.addr == lab.b_addr


def test_stats_count_what_was_read(lab: Lab) -> None:
    for name, st in lab.result["stats"].items():
        assert st["drops"] == 0, name
        assert st["received"] == len(lab.result["frames"][name]), name
        assert st["packets"] >= st["received"], name


def test_timeout_ends_iteration_and_close_ends_it_from_another_thread(lab: Lab) -> None:
    assert lab.result["idle_extra"] == 0
    assert QUIET_S <= lab.result["idle_s"] < QUIET_S + 0.5
    latency = lab.result["close_latency_s"]
    assert latency is not None and latency < 1.0
    assert lab.result["closed_iter"] == 0


def test_interface_vanishing_mid_capture_raises(lab: Lab) -> None:
    for gone in lab.result["gone"]:
        assert gone is not None
        assert gone[0] == 100 and "'fstun0' went down" in gone[1]  # ENETDOWN


def test_breaking_out_and_iterating_again_loses_nothing(lab: Lab) -> None:
    assert _untimed(lab.frames("resume")) == _untimed(lab.frames("ring"))


def test_kernel_rejects_a_broken_program(lab: Lab) -> None:
    assert lab.result["errors"]["bad_program"] == "ValueError"


def test_joining_a_group_with_another_mode_is_refused(lab: Lab) -> None:
    kind, message = lab.result["errors"]["fanout_mismatch"]
    assert kind == "OSError" and "pick another id" in message


def test_promiscuous_mode_lasts_as_long_as_the_capture(lab: Lab) -> None:
    assert lab.result["promisc"] == [1, 0]


def test_without_cap_net_raw_permission_error_says_so(lab: Lab) -> None:
    # The unprivileged attempt runs inside a namespace of its own, like everything else.
    ns = f"fs-test-p-{os.getpid()}"
    if _run("ip", "netns", "add", ns).returncode != 0:
        pytest.skip("`ip netns add` failed")
    try:
        code = (
            "import os\nfrom flowscope._live import LiveCapture\nos.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "try:\n    LiveCapture('any')\nexcept PermissionError as e:\n    print('PermissionError', e)\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        r = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            capture_output=True, text=True, timeout=20, env=env, check=False,
        )  # fmt: skip
    finally:
        _run("ip", "netns", "del", ns)
    assert r.stdout.startswith("PermissionError"), r.stderr
    assert "CAP_NET_RAW" in r.stdout and "root" in r.stdout


# ---------------------------------------------------------------- no lab needed


def test_other_platforms_get_a_clear_oserror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(OSError, match="Linux AF_PACKET.*darwin"):
        LiveCapture("en0")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"snaplen": 0}, "snaplen"),
        ({"snaplen": 262145}, "snaplen"),
        ({"fanout_group": 65536}, "fanout_group"),
        ({"fanout_mode": "flow"}, "fanout_mode"),
        ({"timeout": -1.0}, "timeout"),
        ({"buffer_bytes": 0}, "buffer_bytes"),
        ({"bpf": [(6, 0, 0)]}, "four ints"),
        ({"bpf": [(0x10000, 0, 0, 0)]}, "out of range"),
        ({"bpf": []}, "at least one"),
        ({"bpf": [(6, 0, 0, 0)] * 4097}, "too long"),
    ],
)
def test_bad_arguments_fail_before_any_socket(kw: Dict[str, Any], match: str) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("argument checks follow the platform check")
    with pytest.raises(ValueError, match=match):
        live("lo", **kw)


def test_missing_interface_is_named() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux-only")
    with pytest.raises(OSError, match="no network interface named 'fs-no-such-if0'") as e:
        LiveCapture("fs-no-such-if0")
    assert e.value.errno == 19  # ENODEV
    with pytest.raises(ValueError, match="interface name"):
        LiveCapture("x" * 16)


def test_parse_bpf_reads_tcpdump_ddd_output() -> None:
    text = "3\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n"
    assert parse_bpf(text) == [(40, 0, 0, 12), (21, 0, 1, 2048), (6, 0, 0, 262144)]
    with pytest.raises(ValueError, match="tcpdump -ddd"):
        parse_bpf("4\n40 0 0 12\n")
    with pytest.raises(ValueError, match="tcpdump -ddd"):
        parse_bpf("(000) ldh [12]\n")


def test_compile_bpf_with_tcpdump() -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    prog = compile_bpf("udp dst port 9999")
    # Semantics, not bytes: it loads the EtherType first and accepts with a non-zero return.
    assert prog[0] == (0x28, 0, 0, 12)
    assert any(c == 0x06 and k > 0 for c, _, _, k in prog) and any(c == 0x06 and k == 0 for c, _, _, k in prog)
    raw = compile_bpf("udp", linktype=101)
    assert raw[0] == (0x30, 0, 0, 0)  # raw IP: the version nibble at offset 0
    with pytest.raises(BpfCompileError, match="syntax error") as e:
        compile_bpf("udp and (")
    assert e.value.expression == "udp and ("
    with pytest.raises(ValueError, match="link types"):
        compile_bpf("udp", linktype=9999)


def test_compile_bpf_without_tcpdump_suggests_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    import flowscope._live as live_mod

    monkeypatch.setattr(live_mod, "_find_tcpdump", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"tcpdump -ddd"):
        compile_bpf("tcp")
