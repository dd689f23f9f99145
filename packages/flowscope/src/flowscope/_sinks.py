"""Sinks: events to JSON lines (the public contract of EVENTS.md), CSV, or dicts.

:func:`event_to_dict` is the one place where an event becomes a record:
every sink and the pandas/Arrow export build on it, so field names cannot
drift between outputs.  Timestamps become epoch seconds (float, µs precision
or better), tuples become lists, nested dataclasses become objects and
enums their values.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import json
from json.encoder import encode_basestring_ascii as _q
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from flowscope_core import FlowEnded, FlowEvent, FlowInfo, FlowStarted, Notice, SessionRecord, proto_label

NS = 1_000_000_000

FLOW_FIELDS = (
    "event_type", "flow_id", "ts", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "community_id",
    "duration", "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "orig_payload_bytes",
    "resp_payload_bytes", "missed_bytes", "history", "conn_state", "end_reason", "service", "vlan", "tunnel",
)  # fmt: skip
"""The ``flow`` record's fields, in output order."""


def _flow_head(event_type: str, flow: FlowInfo, ts: int) -> Dict[str, Any]:
    return {
        "event_type": event_type,
        "flow_id": flow.flow_id,
        "ts": ts / NS,
        "proto": proto_label(flow.proto),
        "orig_h": flow.orig.addr,
        "orig_p": flow.orig.port,
        "resp_h": flow.resp.addr,
        "resp_p": flow.resp.port,
        "community_id": flow.community_id,
    }


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (tuple, list, frozenset, set)):
        return [_plain(x) for x in v]
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)


_SCALARS = frozenset((str, int, float, bool))
_FIELD_CACHE: Dict[type, Tuple[str, ...]] = {}


def _field_names(cls: type) -> Tuple[str, ...]:
    names = _FIELD_CACHE.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name != "ts")
        _FIELD_CACHE[cls] = names
    return names


def flow_to_dict(ev: FlowEnded) -> Dict[str, Any]:
    """The ``flow`` record of EVENTS.md."""
    d = _flow_head("flow", ev.flow, ev.ts)
    s = ev.stats
    d["duration"] = (s.last_ts - s.first_ts) / NS
    d["orig_pkts"] = s.orig.packets
    d["resp_pkts"] = s.resp.packets
    d["orig_bytes"] = s.orig.bytes
    d["resp_bytes"] = s.resp.bytes
    d["orig_payload_bytes"] = s.orig.payload_bytes
    d["resp_payload_bytes"] = s.resp.payload_bytes
    d["missed_bytes"] = s.missed_bytes
    d["history"] = ev.history
    d["conn_state"] = ev.conn_state.value
    d["end_reason"] = ev.end_reason.value
    d["service"] = ev.service
    d["vlan"] = list(ev.flow.vlan)
    d["tunnel"] = list(ev.flow.tunnel)
    return d


def _qn(v: Optional[str]) -> str:
    return "null" if v is None else str(_q(v))


def flow_json(ev: FlowEnded) -> str:
    """The ``flow`` record as one JSON line, formatted directly (the hot sink path).

    Equal to ``json.dumps(flow_to_dict(ev))`` with compact separators; a test
    checks that on every corpus capture.
    """
    fl = ev.flow
    s = ev.stats
    o = s.orig
    r = s.resp
    return (
        f'{{"event_type":"flow","flow_id":{_q(fl.flow_id)},"ts":{ev.ts / NS!r},'
        f'"proto":"{proto_label(fl.proto)}","orig_h":"{fl.orig.addr}","orig_p":{fl.orig.port},'
        f'"resp_h":"{fl.resp.addr}","resp_p":{fl.resp.port},"community_id":"{fl.community_id}",'
        f'"duration":{(s.last_ts - s.first_ts) / NS!r},"orig_pkts":{o.packets},"resp_pkts":{r.packets},'
        f'"orig_bytes":{o.bytes},"resp_bytes":{r.bytes},"orig_payload_bytes":{o.payload_bytes},'
        f'"resp_payload_bytes":{r.payload_bytes},"missed_bytes":{s.missed_bytes},'
        f'"history":{_q(ev.history)},"conn_state":"{ev.conn_state.value}","end_reason":"{ev.end_reason.value}",'
        f'"service":{_qn(ev.service)},"vlan":[{",".join(map(str, fl.vlan))}],'
        f'"tunnel":[{",".join(_q(t) for t in fl.tunnel)}]}}\n'
    )


_COMPACT = json.JSONEncoder(separators=(",", ":")).encode


def _json_value(v: Any) -> str:
    t = type(v)
    if v is None:
        return "null"
    if t is str:
        return str(_q(v))
    if t is int:
        return str(v)
    if t is bool:
        return "true" if v else "false"
    if t is float and v - v == 0.0:  # finite: json writes repr(); NaN/inf take the slow path
        return repr(v)
    if t is tuple and all(type(x) is str for x in v):
        return "[" + ",".join([_q(x) for x in v]) + "]"
    return _COMPACT(_plain(v))


def session_json(ev: SessionRecord) -> str:
    """An application-layer record as one JSON line, formatted directly.

    Equal to ``json.dumps(event_to_dict(ev))`` with compact separators (a test
    checks it on every corpus record); about twice as fast, which matters at
    tens of thousands of records a second.
    """
    inner = ev.event
    fl = ev.flow
    parts = [
        f'{{"event_type":{_q(inner.event_type)},"flow_id":{_q(fl.flow_id)},"ts":{inner.ts / NS!r},'
        f'"proto":"{proto_label(fl.proto)}","orig_h":"{fl.orig.addr}","orig_p":{fl.orig.port},'
        f'"resp_h":"{fl.resp.addr}","resp_p":{fl.resp.port},"community_id":"{fl.community_id}"'
    ]
    for name in _field_names(type(inner)):
        parts.append(f',"{name}":{_json_value(getattr(inner, name))}')
    parts.append("}\n")
    return "".join(parts)


def event_to_dict(ev: FlowEvent) -> Dict[str, Any]:
    """Any tracker event as a JSON-ready dict (EVENTS.md field names)."""
    if isinstance(ev, FlowEnded):
        return flow_to_dict(ev)
    if isinstance(ev, SessionRecord):
        inner = ev.event
        d = _flow_head(inner.event_type, ev.flow, inner.ts)
        for name in _field_names(type(inner)):
            v = getattr(inner, name)
            t = type(v)
            # JSON-native values (tuples of scalars included) pass as they are;
            # only the rest goes through the recursive conversion.
            if v is None or t is str or t is int or t is bool or t is float:
                d[name] = v
            elif t is tuple and all(type(x) in _SCALARS for x in v):
                d[name] = list(v)
            else:
                d[name] = _plain(v)
        d["ts"] = inner.ts / NS
        return d
    if isinstance(ev, FlowStarted):
        d = _flow_head("flow_start", ev.flow, ev.ts)
        d["vlan"] = list(ev.flow.vlan)
        d["tunnel"] = list(ev.flow.tunnel)
        return d
    if isinstance(ev, Notice):
        if ev.flow is not None:
            d = _flow_head("notice", ev.flow, ev.ts)
        else:
            d = {"event_type": "notice", "ts": ev.ts / NS}
        d["kind"] = ev.kind
        d["message"] = ev.message
        for k, v in ev.details:
            d[k] = v
        return d
    raise TypeError(f"not a flowscope event: {ev!r}")


class JsonLinesSink:
    """Writes one JSON object per line (the contract of EVENTS.md)."""

    def __init__(self, stream: IO[str], *, types: Optional[frozenset[str]] = None) -> None:
        self._write = stream.write
        self._dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode
        self._types = types
        self.written = 0
        """Records written."""

    def write(self, ev: FlowEvent) -> None:
        """Write one event (skipped when ``types`` was given and excludes it)."""
        types = self._types
        if type(ev) is FlowEnded and (types is None or "flow" in types):
            self._write(flow_json(ev))
            self.written += 1
            return
        if type(ev) is SessionRecord and (types is None or ev.event.event_type in types):
            self._write(session_json(ev))
            self.written += 1
            return
        d = event_to_dict(ev)
        if self._types is not None and d["event_type"] not in self._types:
            return
        self._write(self._dumps(d) + "\n")
        self.written += 1


class CsvSink:
    """Writes ``flow`` records as CSV with a header row (other events are skipped)."""

    def __init__(self, stream: IO[str]) -> None:
        self._w = csv.writer(stream, lineterminator="\n")
        self._w.writerow(FLOW_FIELDS)
        self.written = 0

    def write(self, ev: FlowEvent) -> None:
        """Write one ``flow`` record; lists are joined with ``;``."""
        if not isinstance(ev, FlowEnded):
            return
        d = flow_to_dict(ev)
        row: List[Any] = []
        for k in FLOW_FIELDS:
            v = d[k]
            row.append(";".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v))
        self._w.writerow(row)
        self.written += 1
