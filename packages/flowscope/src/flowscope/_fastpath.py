"""The fused pcap loop: record parsing, decoding and flow tracking in one frame.

Theory of operation
-------------------
CPython spends most of a small packet's budget on calls, tuples and
attribute look-ups, not on the arithmetic.  For the most common input, a
classic pcap file, this module runs one loop that parses the record headers
in the reader's chunk buffer, decodes Ethernet (one optional 802.1Q tag),
option-less IPv4 or IPv6 without extension headers and TCP/UDP with integer
offsets into that same buffer, and updates the flow in place — no frame
slice, no generator hand-off and no call per packet.

Everything else (other link types, IP options, fragments, tunnels, QinQ,
MPLS, PPPoE, extension headers…) takes the general path: the frame is
sliced and handed to :meth:`FlowTracker._packet`, exactly as for any other
source.  The flow-update code below therefore mirrors
``FlowTracker._packet`` and ``FlowTracker._tcp`` line for line; the test
suite runs every corpus capture through both paths and requires identical
records, so the two cannot drift apart unnoticed.

:func:`scan` takes every whole record of one read chunk and keeps the
tracker's clock and counters in locals, writing them back before anything
that reads them (timer ticks, new flows, the general path, the L7 engine)
and before it returns; :func:`run_pcap` then hands out the chunk's events
and reads on.  Where a C compiler was at hand this module is compiled by
Cython with the types of ``_fastpath.pxd`` (see ``flowscope._accel``).
"""

from __future__ import annotations

import struct
from typing import Callable, Iterator, Tuple

from flowscope_core import CaptureFormatError, FlowEvent

from flowscope._config import SECOND
from flowscope._shard import shard_of
from flowscope._decode import GENEVE_PORT, GTPU_PORT, TEREDO_PORT, VXLAN_PORTS
from flowscope._tracker import (
    _ACK,
    _H_A,
    _H_D,
    _SYN,
    ESTABLISHED,
    INACTIVE,
    PARTIAL,
    SYN_ACK_SENT,
    SYN_SENT,
    FlowTracker,
)

_D_BITS = (_H_D, _H_D << 6)  # history bit of 'D' for direction 0 and 1
_A_BITS = (_H_A, _H_A << 6)
_TUNNEL_PORTS = frozenset(VXLAN_PORTS | {GENEVE_PORT, GTPU_PORT, TEREDO_PORT})
_TCP = struct.Struct("!HHIIBBH").unpack_from
_UDP = struct.Struct("!HHH").unpack_from


def run_pcap(
    tracker: FlowTracker,
    buf: bytes,
    pos: int,
    order: str,
    nanos: bool,
    link: int,
    maxcap: int,
    more: Callable[[bytes, int, int], bytes],
    damage: Callable[[int, str], CaptureFormatError],
    progress: Callable[[int, int], None],
) -> Iterator[FlowEvent]:
    """Feed every record of a pcap stream (16-byte record headers) to ``tracker``.

    ``buf[pos:]`` holds the first records; ``more(buf, pos, need)`` returns
    ``buf[pos:]`` extended by reads (shorter than ``need`` at the end of the
    input); ``damage(offset, reason)`` makes the error to raise;
    ``progress(offset, packets)`` is told where the loop is before each
    yield and at the end.  The records of each read are scanned in one call
    of :func:`scan`; the events they caused are handed out after it.
    """
    header = struct.Struct(order + "IIII").unpack_from
    frac_ns = 1 if nanos else 1000
    out = tracker._out
    drain = tracker._drain
    base = 0
    count = 0
    while True:
        pos, count, need = scan(tracker, buf, pos, count, header, frac_ns, link, maxcap)
        progress(base + pos, count)
        if out:
            yield from drain()
        if need < 0:
            caplen = header(buf, pos)[2]
            raise damage(base + pos, f"pcap record captured length {caplen} exceeds the bound of {maxcap} bytes")
        buf = more(buf, pos, need)
        base += pos
        pos = 0
        end = len(buf)
        if end < need:
            if end == 0:
                return
            if end < 16:
                raise damage(base, f"truncated pcap record header ({end} of 16 bytes)")
            raise damage(base, f"truncated pcap record ({end} of {need} bytes)")


def scan(
    tracker: FlowTracker,
    buf: bytes,
    pos: int,
    count: int,
    header: Callable[[bytes, int], Tuple[int, int, int, int]],
    frac_ns: int,
    link: int,
    maxcap: int,
) -> Tuple[int, int, int]:
    """Track every whole record in ``buf[pos:]``; the events wait in the tracker's queue.

    Returns ``(position of the first record not taken, packets counted so
    far, need)``: ``need`` is the byte count the next record needs in the
    buffer, or -1 when that record's captured length exceeds ``maxcap``.
    """
    eth = link == 1
    packet = tracker._packet
    table = tracker._table
    recency = tracker._recency
    new_flow = tracker._new_flow
    tcp_general = tracker._tcp
    stats = tracker.stats
    vlan_key = tracker._vlan_key
    shard = tracker._shard
    pfilter = tracker._filter
    l7 = tracker._l7
    out = tracker._out
    end = len(buf)
    last_sec = -1
    sec_ns = 0
    npk = 0
    nby = 0
    now = tracker._now
    next_tick = tracker._next_tick
    while True:
        try:
            sec, frac, caplen, wire_len = header(buf, pos)
        except struct.error:
            need = 16
            break
        rec = pos + 16
        nxt = rec + caplen
        if nxt > end or caplen > maxcap:
            need = -1 if caplen > maxcap else 16 + caplen
            break
        pos = nxt
        count += 1
        if sec != last_sec:
            last_sec = sec
            sec_ns = sec * SECOND
        ts = sec_ns + frac * frac_ns
        if ts > now:
            now = ts
            if ts >= next_tick:
                tracker._now = now
                tracker._tick(ts)
                next_tick = tracker._next_tick
        # ------------------------------------------------------------ decode
        general = True
        vl = None
        if eth:
            et = (buf[rec + 12] << 8) | buf[rec + 13]
            p = rec + 14
            if et == 0x8100:
                vl = (((buf[p] << 8) | buf[p + 1]) & 0x0FFF,)
                et = (buf[p + 2] << 8) | buf[p + 3]
                p += 4
            lim = rec + (wire_len if wire_len > caplen else caplen)
            if et == 0x0800:
                if buf[p] == 0x45 and not (buf[p + 6] & 0x3F or buf[p + 7]):
                    proto = buf[p + 9]
                    if proto == 6 or proto == 17:
                        ip_end = p + ((buf[p + 2] << 8) | buf[p + 3])
                        if ip_end > lim:
                            ip_end = lim
                        src = buf[p + 12 : p + 16]
                        dst = buf[p + 16 : p + 20]
                        l4 = p + 20
                        general = ip_end < l4 + 20
            elif et == 0x86DD:
                proto = buf[p + 6]
                if (proto == 6 or proto == 17) and buf[p] >> 4 == 6:
                    plen6 = (buf[p + 4] << 8) | buf[p + 5]
                    if plen6:
                        src = buf[p + 8 : p + 24]
                        dst = buf[p + 24 : p + 40]
                        l4 = p + 40
                        ip_end = l4 + plen6
                        if ip_end > lim:
                            ip_end = lim
                        general = ip_end < l4 + 20
        if not general:
            cap_end = ip_end if ip_end <= nxt else nxt
            if proto == 6:
                if l4 + 20 > nxt:
                    general = True
                else:
                    sport, dport, seq, ack, doff, flags, win = _TCP(buf, l4)
                    poff = l4 + ((doff >> 4) << 2)
                    if doff < 0x50 or poff > ip_end:
                        general = True
                    else:
                        plen = ip_end - poff
                        pend = cap_end
            else:
                if l4 + 8 > nxt:
                    general = True
                else:
                    sport, dport, ulen = _UDP(buf, l4)
                    if ulen < 8 or l4 + ulen > ip_end or sport in _TUNNEL_PORTS or dport in _TUNNEL_PORTS:
                        general = True
                    else:
                        flags = -1
                        seq = ack = win = 0
                        poff = l4 + 8
                        plen = ulen - 8
                        pend = l4 + ulen
                        if pend > cap_end:
                            pend = cap_end
        if general:
            stats.packets += npk
            stats.bytes += nby
            npk = nby = 0
            tracker._now = now
            packet(ts, buf[rec:nxt], link, wire_len)
            next_tick = tracker._next_tick
            continue
        npk += 1
        nby += wire_len
        # ------------------------------------------------------------ track
        # Mirrors FlowTracker._packet (fast-path packets are never fragments,
        # never tunnelled, and carry at most one VLAN tag).
        if pfilter is not None and not pfilter(proto, src, dst, sport, dport, () if vl is None else vl):
            continue
        if src < dst or (src == dst and sport <= dport):
            fwd = True
            key: object = (proto, src, sport, dst, dport)
        else:
            fwd = False
            key = (proto, dst, dport, src, sport)
        if vl is not None and vlan_key:
            key = (key, vl)
        found = table.get(key)
        if found is None:
            if shard is not None and shard_of(key, shard[1]) != shard[0]:
                continue
            stats.packets += npk
            stats.bytes += nby
            npk = nby = 0
            tracker._now = now
            f = new_flow(key, proto, src, sport, dst, dport, fwd, ts, flags, None if vl is None else (vl, (), 1, wire_len))
        elif flags >= 0 and found.closed_ts >= 0 and flags & 0x12 == _SYN:
            stats.packets += npk
            stats.bytes += nby
            npk = nby = 0
            tracker._now = now
            tracker._restart(found, ts)
            f = new_flow(key, proto, src, sport, dst, dport, fwd, ts, flags, None if vl is None else (vl, (), 1, wire_len))
        else:
            f = found
            if f.touched != sec:
                f.touched = sec
                recency.get(key)
        dirn = 0 if fwd == f.fwd else 1
        if dirn:
            f.pk1 += 1
            f.by1 += wire_len
            f.pl1 += plen
        else:
            f.pk0 += 1
            f.by0 += wire_len
            f.pl0 += plen
        if ts > f.last_ts:
            f.last_ts = ts
        if flags >= 0:
            # Mirrors FlowTracker._tcp for the common cases; the rest goes there.
            if flags & 0x07 or f.closed_ts >= 0:
                tcp_general(f, dirn, flags, seq, win, plen, ts)
            else:
                st = f.st
                if st[dirn] != ESTABLISHED:
                    s = st[dirn]
                    if s == INACTIVE:
                        st[dirn] = PARTIAL
                    elif (s == SYN_SENT or s == SYN_ACK_SENT) and flags & _ACK:
                        st[dirn] = ESTABLISHED
                        if st[1 - dirn] == SYN_ACK_SENT:
                            st[1 - dirn] = ESTABLISHED
                if plen:
                    bits = _D_BITS[dirn]
                    e = (seq + plen) & 0xFFFFFFFF
                    n = st[2 + dirn]
                    if n < 0 or 0 < ((e - n) & 0xFFFFFFFF) < 0x80000000:
                        st[2 + dirn] = e
                    else:
                        tracker._retransmission(f, dirn)
                elif flags & _ACK:
                    bits = _A_BITS[dirn]
                else:
                    bits = 0
                if win == 0 and flags & _ACK:
                    tracker._zero_window(f, dirn)
                hb = f.hbits
                if bits & ~hb:
                    f.hbits = hb | bits
                    tracker._history(f, bits & ~hb)
        if l7 is not None and f.l7 is not False:
            stats.packets += npk
            stats.bytes += nby
            npk = nby = 0
            tracker._now = now
            l7.packet(f, dirn, ts, flags, seq, ack, buf, poff, pend)
            evs = l7.pending
            if evs:
                out.extend(evs)
                evs.clear()
    stats.packets += npk
    stats.bytes += nby
    tracker._now = now
    return pos, count, need
