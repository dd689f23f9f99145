"""The readable report of ``flow-summary --format table``.

Memory is bounded whatever the capture's size: totals are counters, the
largest flows are kept in a fixed-size heap, and the per-host, per-service
and per-name tables keep at most ``MAX_KEYS`` distinct keys each (the rest
are counted under "(other)").
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

from flowscope import event_to_dict
from flowscope_core import FlowEnded, FlowEvent, Notice, SessionRecord

MAX_KEYS = 10_000
TOP = 10


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class _Bounded(Counter[str]):
    def bump(self, key: str, n: int = 1) -> None:
        if key in self or len(self) < MAX_KEYS:
            self[key] += n
        else:
            self["(other)"] += n


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO, title: str) -> None:
    """An aligned text table with a title line; numbers right-aligned."""
    cells = [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    numeric = [all(isinstance(r[i], (int, float)) for r in rows) if rows else False for i in range(len(headers))]
    out.write(f"\n{title}\n")
    out.write("  ".join(h.rjust(w) if numeric[i] else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths))).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write("  ".join(c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() + "\n")
    if not rows:
        out.write("(none)\n")


class Report:
    """Accumulates events; :meth:`render` prints the report."""

    def __init__(self) -> None:
        self.flows = 0
        self.packets = 0
        self.bytes = 0
        self.first_ts: Optional[int] = None
        self.last_ts: Optional[int] = None
        self.protos = _Bounded()
        self.proto_flows = _Bounded()
        self.proto_pkts = _Bounded()
        self.services = _Bounded()
        self.talkers = _Bounded()
        self.end_reasons = _Bounded()
        self.http_hosts = _Bounded()
        self.tls_names = _Bounded()
        self.ja4 = _Bounded()
        self.dns_names = _Bounded()
        self.notices = _Bounded()
        self._top: List[Tuple[int, int, Dict[str, object]]] = []
        self._n = 0

    def add(self, ev: FlowEvent) -> None:
        """Count one event."""
        if isinstance(ev, FlowEnded):
            s = ev.stats
            pk = s.orig.packets + s.resp.packets
            by = s.orig.bytes + s.resp.bytes
            self.flows += 1
            self.packets += pk
            self.bytes += by
            self.first_ts = s.first_ts if self.first_ts is None else min(self.first_ts, s.first_ts)
            self.last_ts = s.last_ts if self.last_ts is None else max(self.last_ts, s.last_ts)
            d = event_to_dict(ev)
            self.protos.bump(str(d["proto"]), by)
            self.proto_flows.bump(str(d["proto"]))
            self.proto_pkts.bump(str(d["proto"]), pk)
            self.services.bump(ev.service or "-", 1)
            self.talkers.bump(ev.flow.orig.addr, s.orig.bytes)
            self.talkers.bump(ev.flow.resp.addr, s.resp.bytes)
            self.end_reasons.bump(ev.end_reason.value)
            self._n += 1
            item = (by, -self._n, d)
            if len(self._top) < TOP:
                heapq.heappush(self._top, item)
            elif item > self._top[0]:
                heapq.heapreplace(self._top, item)
        elif isinstance(ev, SessionRecord):
            e = ev.event
            kind = e.event_type
            if kind == "http":
                self.http_hosts.bump(str(getattr(e, "host", None) or "-"))
            elif kind in ("tls", "quic"):
                self.tls_names.bump(str(getattr(e, "server_name", None) or "(no SNI)"))
                ja4 = getattr(e, "ja4", None)
                if ja4:
                    self.ja4.bump(str(ja4))
            elif kind == "dns":
                if not getattr(e, "is_response", False):
                    self.dns_names.bump(str(getattr(e, "qname", None) or "-"))
        elif isinstance(ev, Notice):
            self.notices.bump(ev.kind)

    def render(self, out: TextIO, counters: Optional[Dict[str, int]] = None) -> None:
        """Print every table."""
        span = (self.last_ts - self.first_ts) / 1e9 if self.first_ts is not None and self.last_ts is not None else 0.0
        out.write("flowscope summary\n")
        out.write(f"  flows {self.flows:,}   packets in flows {self.packets:,}   bytes {_human(self.bytes)}   span {span:.1f} s\n")
        if counters:
            out.write("  " + "   ".join(f"{k} {v:,}" for k, v in counters.items() if v) + "\n")
        table(
            ["proto", "flows", "packets", "bytes"],
            [(k, self.proto_flows[k], self.proto_pkts[k], _human(v)) for k, v in self.protos.most_common(TOP)],
            out,
            "Protocols",
        )
        table(["service", "flows"], self.services.most_common(TOP), out, "Services")
        table(["host", "bytes sent"], [(k, _human(v)) for k, v in self.talkers.most_common(TOP)], out, "Top talkers")
        rows = []
        for by, _, d in sorted(self._top, reverse=True):
            rows.append(
                (
                    d["proto"],
                    f"{d['orig_h']}:{d['orig_p']}",
                    f"{d['resp_h']}:{d['resp_p']}",
                    d["service"] or "-",
                    int(str(d["orig_pkts"])) + int(str(d["resp_pkts"])),
                    _human(by),
                    d["conn_state"],
                    f"{float(str(d['duration'])):.3f}",
                )
            )
        table(["proto", "originator", "responder", "service", "pkts", "bytes", "state", "dur s"], rows, out, "Largest flows")
        table(["end reason", "flows"], self.end_reasons.most_common(), out, "Why flows ended")
        for title, column, counter in (
            ("HTTP hosts", "host", self.http_hosts),
            ("TLS server names", "server name", self.tls_names),
            ("JA4 fingerprints", "ja4", self.ja4),
            ("DNS names queried", "name", self.dns_names),
            ("Notices", "kind", self.notices),
        ):
            if counter:
                table([column, "count"], counter.most_common(TOP), out, title)
