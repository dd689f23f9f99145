"""Live capture on Linux: ``AF_PACKET`` sockets, kernel fan-out and kernel BPF.

Theory of operation
-------------------
A :class:`LiveCapture` is a *source*, one of the two places (with capture
files) where flowscope does I/O.  It yields the same ``(ts_ns, frame,
wire_len, link_type)`` tuples as :func:`flowscope.open_capture`, so a
:class:`~flowscope.FlowTracker` cannot tell a live interface from a file.

**Reading.**  By default the socket shares a ``TPACKET_V3`` ring with the
kernel (``PACKET_RX_RING`` + ``mmap``), as libpcap, Zeek and Suricata do:
the kernel writes packets into blocks of the ring and hands a block over
when it is full or after :data:`_BLOCK_TIMEOUT_MS`; we copy its frames out,
hand the block back and yield the copies.  There is no system call per
packet, which measured ~0.7 µs per packet against ~3-4 µs for one
``recvmsg`` per packet (whose Python wrapper also makes an ``ioctl`` per
packet to name the interface in the returned address).  ``ring=False``, or
a kernel or sandbox that refuses the ring, uses ``recvmsg`` with
``SO_TIMESTAMPNS`` and ``PACKET_AUXDATA`` ancillary data instead; both
paths give the same tuples (:attr:`LiveCapture.mode` says which one runs).

**What each tuple holds.**  ``ts_ns`` is the kernel's own time stamp of the
packet (``CLOCK_REALTIME`` nanoseconds, the clock :func:`time.time_ns`
reads), never the time Python got around to it.  ``wire_len`` is the
packet's length before any truncation, taken from the kernel's packet
header (``tp_len``) rather than from ``recvmsg(MSG_TRUNC)``, which reports
the length *after* the filter's return value has trimmed the packet.  VLAN
tags that the NIC or the kernel moved out of the frame (always the case at
this tap point) are put back after the MAC addresses, as libpcap does, so
frames look as on the wire.  Ethernet and loopback interfaces give
Ethernet frames (``link_type`` 1); every other device type (tun, PPP,
tunnels) and the pseudo-interface ``"any"`` give Linux cooked frames
(``link_type`` 113, a 16-byte header built from the kernel's address).

**Outgoing packets** are captured too, as on any tap.  On a loopback device
every packet passes twice (leaving, then arriving), so the outgoing copy is
dropped *in the kernel* by a three-instruction prefix of the socket filter
that tests the packet type, as tcpdump does in user space; "any" does the
same for the loopback interface only.

**Kernel filter and snap length.**  Every socket carries a classic BPF
program: the caller's (``tcpdump -ddd`` form, or an expression compiled by
:func:`compile_bpf`), with its accepting ``ret`` values clamped to
``snaplen``; none means "accept ``snaplen`` bytes".  The kernel trims each
packet to the value the filter returns, which is how ``snaplen`` is applied
before the packet is copied.  Programs run on the frame as the kernel holds
it: from the Ethernet header for link type 1, from the network header for
cooked captures (compile those for raw IP, :attr:`LiveCapture.bpf_linktype`
says which), and without any VLAN tag (so ``udp port 53`` matches tagged
traffic too, and ``vlan 10`` matches nothing).

**Fan-out.**  ``fanout_group`` joins the socket to a ``PACKET_FANOUT``
group: the kernel spreads the interface's packets over the group's sockets,
in "hash" mode by a symmetric flow hash so that both directions of a flow
reach the same socket (and, with ``PACKET_FANOUT_FLAG_DEFRAG``, IP
fragments are reassembled first so that they hash like their flow).  N
worker processes, each with its own socket and its own tracker, then split
the flows with no user-space dispatcher.  The socket joins with a drop-all
filter in place and gets its real filter afterwards, so nothing it
received before joining (which the other members also got) leaks into it.

**Time on quiet links.**  A tracker only moves its clock with packet
times; when packets stop, idle flows would never be written.  ``timeout``
makes iteration *return* once no packet has arrived for that many seconds;
the capture stays open, so the caller runs ``tracker.expire(time.time_ns())``
and iterates again (see ``docs/live.md``).  Iteration also returns when
:meth:`LiveCapture.close` is called, from any thread (within
:data:`_POLL_SLICE_S`) or from inside the loop.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from types import TracebackType
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type, Union

from flowscope_core import FlowscopeError

Frame = Tuple[int, bytes, int, int]
"""``(ts_ns, frame, wire_len, link_type)``, as every flowscope source yields."""

Instruction = Tuple[int, int, int, int]
"""One classic BPF instruction ``(code, jt, jf, k)``, as ``tcpdump -ddd`` prints it."""

# ---------------------------------------------------------------- Linux ABI constants
# From <linux/if_packet.h>, <linux/if_ether.h>, <linux/filter.h>, <linux/if_arp.h>,
# <asm-generic/socket.h>.  Numbers, not ``socket.*`` names: most are missing from the
# socket module, and the module must import on every platform.
_AF_PACKET = 17
_ETH_P_ALL = 0x0003
_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_MR_PROMISC = 1
_PACKET_RX_RING = 5
_PACKET_STATISTICS = 6
_PACKET_AUXDATA = 8
_PACKET_VERSION = 10
_PACKET_FANOUT = 18
_TPACKET_V3 = 2
_SO_RCVBUFFORCE = 33
_SO_TIMESTAMPNS = 35
_SO_ATTACH_FILTER = 26
_SIOCGIFFLAGS = 0x8913
_SIOCGIFHWADDR = 0x8927
_IFF_UP = 0x1
_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772
_PACKET_OUTGOING = 4
_TP_STATUS_KERNEL = 0
_TP_STATUS_USER = 1
_TP_STATUS_VLAN_VALID = 0x10
_TP_STATUS_VLAN_TPID_VALID = 0x40
_ETH_P_8021Q = 0x8100
_SKF_AD_OFF = -0x1000
_SKF_AD_PKTTYPE = 4
_SKF_AD_IFINDEX = 8
_BPF_MAXINSNS = 4096
_BPF_RET_K = 0x06  # BPF_RET | BPF_K

FANOUT_MODES: Dict[str, int] = {"hash": 0, "lb": 1, "cpu": 2, "rollover": 3, "rnd": 4, "qm": 5}
"""``PACKET_FANOUT_*`` modes by name: flow hash, round robin, receiving CPU, fill one
socket then the next, random, receive queue (NIC RSS).  Only "hash" keeps flows whole."""
_FANOUT_FLAG_DEFRAG = 0x8000

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113

MAX_SNAPLEN = 262144
"""libpcap's ``MAXIMUM_SNAPLEN``: no link layer flowscope decodes needs more."""

# ---------------------------------------------------------------- bounds and timing
_BLOCK_MIN = 128 * 1024
"""Smallest ring block.  A block is handed over when full or timed out; 128 KiB holds
~1000 small packets per hand-over and is libpcap's block for its default snap length
(the smallest power-of-two pages that fit one 64 KiB packet)."""
_BLOCK_TIMEOUT_MS = 8
"""How long a partly filled block waits before the kernel hands it over: the kernel's
own default (``DEFAULT_PRB_RETIRE_TOV``), a latency no flow timeout can notice."""
_RECV_BATCH = 64
"""``recvmsg`` mode reads at most this many packets before yielding them, which
bounds the batch to 64 * ``snaplen`` bytes while amortising the loop's overhead."""
_POLL_SLICE_S = 0.25
"""Longest single wait in the kernel: bounds how late a :meth:`LiveCapture.close` from
another thread is noticed, at four wake-ups a second on an idle link."""
_TCPDUMP_TIMEOUT_S = 20.0
"""``tcpdump -ddd`` only compiles; this bounds a hung or wrong binary."""

# ---------------------------------------------------------------- header layouts
# struct tpacket_block_desc: the block's status, packet count and first offset at +8.
_BLOCK = struct.Struct("=III").unpack_from
_SET_STATUS = struct.Struct("=I").pack_into
# struct tpacket3_hdr: next offset, sec, nsec, snaplen, len, status, mac offset.
_PKT = struct.Struct("=IIIIIIH").unpack_from
_PKT_VLAN = struct.Struct("=IH").unpack_from  # tp_vlan_tci (u32), tp_vlan_tpid at +32
_SLL_OFFSET = 48  # TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): where the sockaddr_ll sits
# struct sockaddr_ll after its family: protocol (network order, kept raw), ifindex,
# hatype, pkttype, halen, addr.
_SLL = struct.Struct("=2x2siHBB8s").unpack_from
# The LINKTYPE_LINUX_SLL header: pkttype, ARPHRD type, address length, address, and
# (packed separately) the protocol, optionally preceded by a VLAN tag.
_SLL_HEAD = struct.Struct(">HHH8s").pack
_TAG = struct.Struct(">HH").pack
# struct tpacket_auxdata (recvmsg mode): status, len, snaplen, mac, net, vlan tci, tpid.
_AUX = struct.Struct("=IIIHHHH").unpack_from
_TIMESPEC = struct.Struct("@ll").unpack_from  # SCM_TIMESTAMPNS: the native timespec
_STATS = struct.Struct("=II").unpack_from  # tpacket_stats(_v3): packets, drops


class BpfCompileError(FlowscopeError, ValueError):
    """``tcpdump`` refused a filter expression; ``reason`` is what it said."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        """The pcap-filter expression."""
        self.reason = reason
        """tcpdump's message."""
        super().__init__(f"cannot compile {expression!r}: {reason}")


_DLT_NAMES = {LINKTYPE_ETHERNET: "EN10MB", LINKTYPE_RAW: "RAW", LINKTYPE_LINUX_SLL: "LINUX_SLL"}


def compile_bpf(expression: str, linktype: int = LINKTYPE_ETHERNET) -> List[Instruction]:
    """Compile a pcap-filter expression to classic BPF with the local ``tcpdump``.

    Runs ``tcpdump -ddd -y <DLT> <expression>``, which only compiles (it
    opens no interface and sends nothing), and parses its ``code jt jf k``
    lines.  ``linktype`` is the link type the program will see: 1 for
    Ethernet, 101 for raw IP (what a cooked :class:`LiveCapture` needs, see
    :attr:`LiveCapture.bpf_linktype`).  Without ``tcpdump`` this raises
    :class:`FileNotFoundError`; pass the program as ``(code, jt, jf, k)``
    tuples instead (``tcpdump -ddd`` on any machine prints them).
    """
    dlt = _DLT_NAMES.get(linktype)
    if dlt is None:
        raise ValueError(f"compile_bpf knows link types {sorted(_DLT_NAMES)}, not {linktype}")
    tcpdump = _find_tcpdump()
    if tcpdump is None:
        raise FileNotFoundError(
            errno.ENOENT,
            "compile_bpf needs tcpdump to compile a pcap-filter expression; install it, or pass the program "
            "itself as (code, jt, jf, k) tuples (the lines `tcpdump -ddd -y EN10MB 'EXPR'` prints anywhere)",
        )
    try:
        done = subprocess.run(
            [tcpdump, "-ddd", "-y", dlt, "--", expression],  # "--": an expression is never an option
            capture_output=True,
            text=True,
            timeout=_TCPDUMP_TIMEOUT_S,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired as e:
        raise BpfCompileError(expression, f"{tcpdump} did not answer within {_TCPDUMP_TIMEOUT_S:g} s") from e
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"{tcpdump} exited with status {done.returncode}"
        raise BpfCompileError(expression, re.sub(r"^tcpdump: ", "", reason))
    return parse_bpf(done.stdout)


def _find_tcpdump() -> Optional[str]:
    """``tcpdump`` on ``PATH``, or in the sbin directories a non-root ``PATH`` often lacks."""
    found = shutil.which("tcpdump")
    if found is None:
        found = next((p for p in ("/usr/sbin/tcpdump", "/sbin/tcpdump") if os.access(p, os.X_OK)), None)
    return found


def parse_bpf(text: str) -> List[Instruction]:
    """Parse ``tcpdump -ddd`` output: a count line, then one ``code jt jf k`` per line."""
    rows = [ln.split() for ln in text.splitlines() if ln.strip()]
    try:
        count = int(rows[0][0]) if rows and len(rows[0]) == 1 else -1
        prog = [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows[1:] if len(r) == 4]
    except ValueError:
        count, prog = -1, []
    if count != len(prog) or count != len(rows) - 1:
        raise ValueError("not `tcpdump -ddd` output: expected a count line then that many `code jt jf k` lines")
    return _checked(prog)


def _checked(program: Sequence[Sequence[int]]) -> List[Instruction]:
    """Validate field ranges (the kernel checks the rest: jumps, termination)."""
    out: List[Instruction] = []
    for i, ins in enumerate(program):
        if len(ins) != 4 or not all(isinstance(v, int) for v in ins):
            raise ValueError(f"BPF instruction {i} must be four ints (code, jt, jf, k), not {ins!r}")
        code, jt, jf, k = ins
        if not (0 <= code <= 0xFFFF and 0 <= jt <= 0xFF and 0 <= jf <= 0xFF and -(1 << 31) <= k < (1 << 32)):
            raise ValueError(f"BPF instruction {i} {ins!r} is out of range (code u16, jt/jf u8, k 32 bits)")
        out.append((code, jt, jf, k & 0xFFFFFFFF))
    if not out:
        raise ValueError("a BPF program needs at least one instruction")
    return out


def _final_program(user: Optional[List[Instruction]], snaplen: int, skip_lo_out: Optional[int]) -> List[Instruction]:
    """The program the socket runs: loopback prefix + the caller's, returns clamped to snaplen.

    ``skip_lo_out`` is 0 to drop every outgoing packet (a loopback interface),
    an interface index to drop outgoing packets of that interface only ("any"),
    or ``None``.  Relative jumps make prepending safe; ``ld #0`` restores the
    zero accumulator a program may assume at its start.
    """
    body = [(_BPF_RET_K, 0, 0, snaplen)] if user is None else [
        (c, jt, jf, min(k, snaplen)) if c == _BPF_RET_K and k else (c, jt, jf, k) for c, jt, jf, k in user
    ]
    ld_w_abs = 0x20  # BPF_LD | BPF_W | BPF_ABS
    jeq_k = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
    pkttype = [
        (ld_w_abs, 0, 0, (_SKF_AD_OFF + _SKF_AD_PKTTYPE) & 0xFFFFFFFF),
        (jeq_k, 0, 1, _PACKET_OUTGOING),
        (_BPF_RET_K, 0, 0, 0),
        (0x00, 0, 0, 0),  # BPF_LD | BPF_IMM: A = 0
    ]
    if skip_lo_out is None:
        prefix: List[Instruction] = []
    elif skip_lo_out == 0:
        prefix = pkttype
    else:
        prefix = [(ld_w_abs, 0, 0, (_SKF_AD_OFF + _SKF_AD_IFINDEX) & 0xFFFFFFFF), (jeq_k, 0, 3, skip_lo_out)]
        prefix += pkttype
    prog = prefix + body
    if len(prog) > _BPF_MAXINSNS:
        raise ValueError(f"BPF program too long: {len(prog)} instructions, the kernel takes {_BPF_MAXINSNS}")
    return prog


def _attach(sock: socket.socket, program: List[Instruction]) -> None:
    """``SO_ATTACH_FILTER``: the kernel copies the program, so the buffer may die after."""
    insns = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buf))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise ValueError("the kernel rejected the BPF program (bad jump, opcode or no final return)") from e
        raise


_DROP_ALL: List[Instruction] = [(_BPF_RET_K, 0, 0, 0)]


def _interface(name: str) -> Tuple[int, bool]:
    """``(ARPHRD type, is up)`` of a named interface, with a clear error if it is missing."""
    raw = name.encode()
    if not raw or len(raw) > 15 or b"\0" in raw or b"/" in raw:
        raise ValueError(f"{name!r} is not a network interface name (1-15 bytes)")
    import fcntl  # Unix-only: imported here so that flowscope itself imports everywhere

    # Device ioctls work on any socket; an AF_UNIX one needs no privilege, so a missing
    # interface is reported as such even without CAP_NET_RAW.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            hw = fcntl.ioctl(s.fileno(), _SIOCGIFHWADDR, struct.pack("16s16x", raw))
            fl = fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, struct.pack("16s16x", raw))
        except OSError as e:
            if e.errno in (errno.ENODEV, errno.ENXIO):
                raise OSError(errno.ENODEV, f"no network interface named {name!r} (see `ip link`)") from e
            raise
    hatype = struct.unpack_from("=H", hw, 16)[0]
    flags = struct.unpack_from("=H", fl, 16)[0]
    return hatype, bool(flags & _IFF_UP)


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class LiveCapture:
    """Packets from a live Linux interface, as ``(ts_ns, frame, wire_len, link_type)``.

    Iterate it (again and again: with ``timeout`` an iteration returns after
    that many quiet seconds, and the capture stays open) and close it, or use
    it as a context manager.  Needs root or ``CAP_NET_RAW``.

    ``interface``: a name from ``ip link``, or ``"any"`` for every interface
    (cooked frames).  ``snaplen``: bytes kept per packet (``wire_len`` still
    gives the full length).  ``promiscuous``: also see unicast traffic for
    other hosts (per socket; undone on close).  ``fanout_group``: join this
    ``PACKET_FANOUT`` group id (0-65535, per network namespace) with
    ``fanout_mode`` (:data:`FANOUT_MODES`); "hash" adds
    ``PACKET_FANOUT_FLAG_DEFRAG``.  ``bpf``: a classic BPF program as
    ``(code, jt, jf, k)`` tuples, or a pcap-filter expression compiled with
    :func:`compile_bpf`.  ``timeout``: seconds without packets after which an
    iteration returns (``None``: only :meth:`close` or Ctrl-C end it; 0: take
    what is queued and return).  ``buffer_bytes``: kernel buffer (the ring's
    size), the burst the socket absorbs while Python is busy.  ``ring``: use
    the ``TPACKET_V3`` ring (falls back to ``recvmsg`` where the kernel
    refuses it).
    """

    def __init__(
        self,
        interface: str,
        *,
        snaplen: int = 65535,
        promiscuous: bool = False,
        fanout_group: Optional[int] = None,
        fanout_mode: str = "hash",
        bpf: Union[str, Sequence[Instruction], None] = None,
        timeout: Optional[float] = None,
        buffer_bytes: int = 4 << 20,
        ring: bool = True,
    ) -> None:
        self._closed = True  # until every resource exists, so close() is always safe
        self._sock: Optional[socket.socket] = None
        self._mm: Optional[mmap.mmap] = None
        if not sys.platform.startswith("linux") or not hasattr(socket, "AF_PACKET"):
            raise OSError(
                errno.EAFNOSUPPORT,
                f"live capture uses Linux AF_PACKET sockets and is not available on {sys.platform}; "
                "capture with tcpdump or dumpcap and read the file with flowscope.open_capture",
            )
        if not 1 <= snaplen <= MAX_SNAPLEN:
            raise ValueError(f"snaplen must be 1..{MAX_SNAPLEN}, not {snaplen}")
        if buffer_bytes < 1:
            raise ValueError(f"buffer_bytes must be positive, not {buffer_bytes}")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be None or >= 0 seconds, not {timeout}")
        if fanout_group is not None and not 0 <= fanout_group <= 0xFFFF:
            raise ValueError(f"fanout_group must be 0..65535, not {fanout_group}")
        if fanout_mode not in FANOUT_MODES:
            raise ValueError(f"fanout_mode must be one of {sorted(FANOUT_MODES)}, not {fanout_mode!r}")
        user = None if bpf is None or isinstance(bpf, str) else _checked(bpf)

        self.interface = interface
        """The interface name given."""
        self.snaplen = snaplen
        """Bytes kept per packet."""
        self._timeout = timeout
        any_if = interface == "any"
        if any_if:
            if promiscuous:
                raise ValueError('promiscuous mode needs a named interface, not "any"')
            hatype = 0
            cooked = True
        else:
            hatype, up = _interface(interface)
            if not up:
                raise OSError(errno.ENETDOWN, f"interface {interface!r} is down (`ip link set {interface} up`)")
            cooked = hatype not in (_ARPHRD_ETHER, _ARPHRD_LOOPBACK)
        self.link_type = LINKTYPE_LINUX_SLL if cooked else LINKTYPE_ETHERNET
        """The ``link_type`` of every frame: 1 (Ethernet) or 113 (Linux cooked)."""
        self.bpf_linktype = LINKTYPE_RAW if cooked else LINKTYPE_ETHERNET
        """What the kernel filter sees, for :func:`compile_bpf`: 1 (Ethernet) or 101
        (raw IP: cooked sockets filter from the network header)."""
        if isinstance(bpf, str):
            user = compile_bpf(bpf, self.bpf_linktype)
        skip_lo: Optional[int] = None
        if hatype == _ARPHRD_LOOPBACK:
            skip_lo = 0
        elif any_if:
            try:
                skip_lo = socket.if_nametoindex("lo")
            except OSError:
                skip_lo = None
        program = _final_program(user, snaplen, skip_lo)

        try:
            sock = socket.socket(
                _AF_PACKET,
                socket.SOCK_DGRAM if cooked else socket.SOCK_RAW,
                socket.htons(_ETH_P_ALL) if any_if else 0,
            )
        except PermissionError as e:
            raise PermissionError(
                errno.EPERM,
                f"live capture on {interface!r} needs root or the CAP_NET_RAW capability "
                "(run as root, or grant it: sudo setcap cap_net_raw+ep /path/to/python)",
            ) from e
        self._sock = sock
        try:
            self._open(sock, interface, any_if, promiscuous, fanout_group, fanout_mode, program, buffer_bytes, ring)
        except BaseException:
            self._release()
            raise
        self._cooked = cooked
        self._packets = 0
        self._drops = 0
        self._received = 0
        self._pending: Iterator[Frame] = iter(())
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN | select.POLLERR)
        self._closed = False

    # ------------------------------------------------------------------ set-up

    def _open(
        self,
        sock: socket.socket,
        interface: str,
        any_if: bool,
        promiscuous: bool,
        fanout_group: Optional[int],
        fanout_mode: str,
        program: List[Instruction],
        buffer_bytes: int,
        ring: bool,
    ) -> None:
        # Nothing may reach the socket before its real filter (and fan-out group) is in
        # place: it starts with a drop-all filter, which the last step replaces.
        _attach(sock, _DROP_ALL)
        # Turning time stamps on also makes the kernel stamp packets when they arrive
        # (net_enable_timestamp), which the ring's per-packet stamp then reuses.
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        sock.setsockopt(_SOL_PACKET, _PACKET_AUXDATA, 1)
        self.mode = "recvmsg"
        """``"ring"`` (TPACKET_V3 shared memory) or ``"recvmsg"`` (one call per packet)."""
        if ring:
            self._setup_ring(sock, buffer_bytes)
        if self._mm is None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, buffer_bytes)
            except PermissionError:  # RCVBUFFORCE needs CAP_NET_ADMIN; RCVBUF is capped by rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
            self._buf = bytearray(self.snaplen)
            self._bufs = [self._buf]
            self._view = memoryview(self._buf)
        if not any_if:
            try:
                sock.bind((interface, _ETH_P_ALL))
            except OSError as e:
                if e.errno == errno.ENODEV:
                    raise OSError(errno.ENODEV, f"no network interface named {interface!r}") from e
                raise
        if promiscuous:
            mreq = struct.pack("=iHH8s", socket.if_nametoindex(interface), _PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, mreq)
        if fanout_group is not None:
            mode = FANOUT_MODES[fanout_mode]
            flags = _FANOUT_FLAG_DEFRAG if fanout_mode == "hash" else 0
            try:
                # Packed: with the DEFRAG flag the value exceeds a C int, which setsockopt(int) refuses.
                arg = struct.pack("=I", fanout_group | ((mode | flags) << 16))
                sock.setsockopt(_SOL_PACKET, _PACKET_FANOUT, arg)
            except OSError as e:
                if e.errno == errno.EINVAL:
                    raise OSError(
                        errno.EINVAL,
                        f"cannot join fan-out group {fanout_group}: a group with this id already exists on this "
                        "host with another mode or on another interface; pick another id",
                    ) from e
                raise
        self._drain(sock)
        _attach(sock, program)

    def _setup_ring(self, sock: socket.socket, buffer_bytes: int) -> None:
        """Map a TPACKET_V3 ring of about ``buffer_bytes``; on refusal stay with recvmsg."""
        block = max(_BLOCK_MIN, _pow2_at_least(self.snaplen + 4096), mmap.PAGESIZE)
        nblocks = max(2, buffer_bytes // block)
        # In V3 "frames" only size the request; one frame per block keeps the kernel's
        # consistency checks (frames per block * blocks == frames) trivially true.
        req = struct.pack("=7I", block, nblocks, block, nblocks, _BLOCK_TIMEOUT_MS, 0, 0)
        try:
            sock.setsockopt(_SOL_PACKET, _PACKET_VERSION, _TPACKET_V3)
            sock.setsockopt(_SOL_PACKET, _PACKET_RX_RING, req)
            self._mm = mmap.mmap(sock.fileno(), block * nblocks, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            if e.errno not in (errno.ENOPROTOOPT, errno.EINVAL, errno.ENOMEM, errno.EOPNOTSUPP, errno.ENODEV):
                raise
            self._mm = None
            return
        self.mode = "ring"
        self._block_size = block
        self._nblocks = nblocks
        self._block = 0

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        """Discard what an unbound "any" socket queued before its drop-all filter."""
        sock.setblocking(False)
        try:
            while True:
                sock.recv(1)
        except BlockingIOError:
            pass

    # ------------------------------------------------------------------ public API

    def __iter__(self) -> Iterator[Frame]:
        """Frames as they arrive; returns after ``timeout`` quiet seconds or on close()."""
        return self._frames()

    def _frames(self) -> Iterator[Frame]:
        # Frames are read a batch at a time (a whole ring block, or up to _RECV_BATCH
        # recvmsg calls) and yielded from a list iterator kept on self: if the caller
        # stops halfway, the rest of the batch is the start of the next iteration.
        yield from self._pending
        read: Callable[[], List[Frame]] = self._read_ring if self._mm is not None else self._read_recvmsg
        timeout = self._timeout
        poll = self._poll.poll
        quiet_since = time.monotonic()
        while not self._closed:
            try:
                batch = read()
            except (ValueError, OSError) as e:
                if self._closed:  # close() from another thread released the socket or ring
                    return
                if isinstance(e, OSError) and e.errno in (errno.ENETDOWN, errno.ENODEV, errno.ENXIO):
                    self._raise_socket_error(e.errno)
                raise
            if batch:
                self._received += len(batch)
                quiet_since = time.monotonic()
                self._pending = it = iter(batch)
                yield from it
                continue
            if timeout is None:
                wait = _POLL_SLICE_S
            else:
                wait = quiet_since + timeout - time.monotonic()
                if wait <= 0:
                    return
                wait = min(wait, _POLL_SLICE_S)
            for _fd, ev in poll(wait * 1000.0):
                if ev & select.POLLERR and not self._closed:
                    self._raise_socket_error()

    def close(self) -> None:
        """Release the socket and ring (idempotent); a running iteration returns."""
        if self._closed:
            return
        try:
            self._collect_stats()
        except OSError:
            pass
        self._closed = True
        self._release()

    def fileno(self) -> int:
        """The socket's descriptor, readable when packets wait (for selectors)."""
        if self._sock is None:
            raise ValueError("capture is closed")
        return self._sock.fileno()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    @property
    def stats(self) -> Dict[str, int]:
        """Kernel counters (``PACKET_STATISTICS``) since the capture opened.

        ``packets``: packets that passed the filter, dropped ones included;
        ``drops``: lost because the buffer or ring was full (raise
        ``buffer_bytes`` or add fan-out workers); ``received``: frames read
        from the kernel by this object.
        """
        if not self._closed:
            self._collect_stats()
        return {"packets": self._packets, "drops": self._drops, "received": self._received}

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.mode
        return f"<LiveCapture {self.interface!r} link_type={self.link_type} {state}>"

    # ------------------------------------------------------------------ internals

    def _collect_stats(self) -> None:
        # Reading PACKET_STATISTICS resets the kernel's counters, hence the sums.
        if self._sock is None:
            return
        raw = self._sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 12)
        packets, drops = _STATS(raw)
        self._packets += packets
        self._drops += drops

    def _raise_socket_error(self, err: int = 0) -> None:
        """Turn the socket's pending error (the interface went down or away) into an OSError."""
        if not err and self._sock is not None:
            err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            what = {errno.ENETDOWN: "went down", errno.ENODEV: "was removed"}.get(err, "failed")
            raise OSError(err, f"interface {self.interface!r} {what}: {os.strerror(err)}")

    def _release(self) -> None:
        mm, sock = self._mm, self._sock
        self._mm = None
        self._sock = None
        if mm is not None:
            mm.close()
        if sock is not None:
            sock.close()

    def _read_ring(self) -> List[Frame]:
        """Copy every frame of the next ring block, if the kernel has handed it over."""
        mm = self._mm
        if mm is None:
            raise ValueError("capture is closed")
        base = self._block * self._block_size
        # The kernel publishes a block's status after its contents (smp_wmb); the
        # interpreter's work between this load and the frame copies orders them in practice.
        status, num, first = _BLOCK(mm, base + 8)
        if not status & _TP_STATUS_USER:
            return []
        out: List[Frame] = []
        append = out.append
        off = base + first
        if self._cooked:
            for _ in range(num):
                nxt, sec, nsec, snap, wlen, st, mac = _PKT(mm, off)
                proto, _ifindex, hatype, pkttype, halen, addr = _SLL(mm, off + _SLL_OFFSET)
                head = _SLL_HEAD(pkttype, hatype, halen, addr)
                if st & _TP_STATUS_VLAN_VALID:
                    tci, tpid = _PKT_VLAN(mm, off + 32)
                    head += _TAG(tpid if st & _TP_STATUS_VLAN_TPID_VALID else _ETH_P_8021Q, tci & 0xFFFF)
                    wlen += 4
                start = off + mac
                append((sec * 1_000_000_000 + nsec, head + proto + mm[start : start + snap], wlen + 16, 113))
                off += nxt
        else:
            for _ in range(num):
                nxt, sec, nsec, snap, wlen, st, mac = _PKT(mm, off)
                start = off + mac
                if st & _TP_STATUS_VLAN_VALID and snap >= 12:
                    tci, tpid = _PKT_VLAN(mm, off + 32)
                    tag = _TAG(tpid if st & _TP_STATUS_VLAN_TPID_VALID else _ETH_P_8021Q, tci & 0xFFFF)
                    frame = mm[start : start + 12] + tag + mm[start + 12 : start + snap]
                    append((sec * 1_000_000_000 + nsec, frame[: self.snaplen], wlen + 4, 1))
                else:
                    append((sec * 1_000_000_000 + nsec, mm[start : start + snap], wlen, 1))
                off += nxt
        _SET_STATUS(mm, base + 8, _TP_STATUS_KERNEL)
        self._block = (self._block + 1) % self._nblocks
        return out

    def _read_recvmsg(self) -> List[Frame]:
        """Up to _RECV_BATCH packets, one ``recvmsg`` each, without blocking."""
        sock = self._sock
        if sock is None:
            raise ValueError("capture is closed")
        recv = sock.recvmsg_into
        bufs = self._bufs
        view = self._view
        cooked = self._cooked
        snaplen = self.snaplen
        out: List[Frame] = []
        for _ in range(_RECV_BATCH):
            try:
                n, anc, _flags, addr = recv(bufs, 256)
            except BlockingIOError:
                break
            ts = -1
            wlen = n
            st = tci = tpid = 0
            for level, kind, data in anc:
                if level == _SOL_PACKET:
                    st, wlen, _snap, _mac, _net, tci, tpid = _AUX(data)
                elif kind == _SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC(data)
                    ts = sec * 1_000_000_000 + nsec
            if ts < 0:  # no stamp came with the packet: the nearest substitute
                ts = time.time_ns()
            tag = b""
            if st & _TP_STATUS_VLAN_VALID:
                tag = _TAG(tpid if st & _TP_STATUS_VLAN_TPID_VALID else _ETH_P_8021Q, tci)
            if cooked:
                _name, proto, pkttype, hatype, haddr = addr
                head = _SLL_HEAD(pkttype, hatype, len(haddr), haddr) + tag + struct.pack(">H", proto)
                out.append((ts, head + view[:n].tobytes(), wlen + len(tag) + 16, 113))
            elif tag and n >= 12:
                frame = view[:12].tobytes() + tag + view[12:n].tobytes()
                out.append((ts, frame[:snaplen], wlen + 4, 1))
            else:
                out.append((ts, view[:n].tobytes(), wlen, 1))
        return out


def live(
    interface: str,
    *,
    snaplen: int = 65535,
    promiscuous: bool = False,
    fanout_group: Optional[int] = None,
    fanout_mode: str = "hash",
    bpf: Union[str, Sequence[Instruction], None] = None,
    timeout: Optional[float] = None,
    buffer_bytes: int = 4 << 20,
    ring: bool = True,
) -> LiveCapture:
    """Open a :class:`LiveCapture`; the arguments are its own."""
    return LiveCapture(
        interface,
        snaplen=snaplen,
        promiscuous=promiscuous,
        fanout_group=fanout_group,
        fanout_mode=fanout_mode,
        bpf=bpf,
        timeout=timeout,
        buffer_bytes=buffer_bytes,
        ring=ring,
    )
