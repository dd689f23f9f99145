"""pandas DataFrames and Arrow tables of flowscope records.

>>> import flowscope
>>> df = flowscope.to_pandas("capture.pcap")                       # doctest: +SKIP
>>> tls = flowscope.to_arrow("capture.pcap", event_type="tls")     # doctest: +SKIP

Theory of operation
-------------------
A table holds one record type (``event_type``, default ``flow``) because
each type has its own columns; ``event_type=None`` takes every record and
the union of their columns.  Rows are :func:`flowscope.event_to_dict` of
each event, so the columns are exactly the JSON-lines keys of
``docs/events.md``, in the same order, with the same values, with one
deliberate change: ``ts`` is a timezone-aware UTC timestamp with nanosecond
precision, taken from the event's integer nanoseconds (a float of epoch
seconds cannot hold nanoseconds; ``ts.value / 1_000_000_000`` gives the JSON
number back exactly).  ``duration`` stays float seconds as in JSON.  Lists stay
lists: Python lists in pandas (``object`` columns), list and struct types in
Arrow (DNS ``answers`` are lists of structs).

The input is an iterable of events, or anything :func:`flowscope.events`
accepts (a path, an open file, a capture reader, an iterable of frame
tuples); the first item of an iterable tells which it is.

Rows are gathered into per-column Python lists of at most ``batch_size``
rows (65,536 by default: about 25 MB of Python objects for flow rows), and
each full chunk becomes typed columns (an Arrow record batch, or pandas
Series) before the next starts, so memory holds typed data plus one chunk
of Python objects, never the whole capture as dicts.

Types come from :data:`SCHEMAS`, declared per record type so that an empty
result still has the right columns and dtypes (an undeclared type, or
``None``, has the columns every flow's record starts with).  Columns nobody declared (a
plugin's record type, a notice's details) take their type from their first
non-null value; with ``event_type=None`` a column first seen in a later
chunk gives later Arrow batches a wider schema, and :func:`to_arrow`
unifies them (absent columns become nulls; a column seen with two
incompatible types becomes strings).

pandas dtypes: strings are the nullable ``string`` dtype, floats
``float64``, timestamps ``datetime64[ns, UTC]``, lists ``object``.
Integers and booleans are ``int64``/``bool`` when the record type declares
them never null, and the nullable ``Int64``/``boolean`` otherwise (always
with ``event_type=None``, where each record type lacks the others' columns).

pandas and pyarrow are optional (extras ``pandas`` and ``arrow``) and are
imported only when a function here is called; when missing,
:class:`~flowscope_core.MissingExtraError` names the ``pip install``.
"""

from __future__ import annotations

import importlib
import itertools
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from flowscope_core import FlowEnded, FlowEvent, FlowStarted, MissingExtraError, Notice, SessionRecord

from flowscope._api import Source, events
from flowscope._capture import CaptureReader
from flowscope._sinks import event_to_dict

DataFrame = Any
"""A ``pandas.DataFrame`` (pandas ships no type information, so it is ``Any`` to mypy)."""
Table = Any
"""A ``pyarrow.Table``."""
RecordBatch = Any
"""A ``pyarrow.RecordBatch``."""

EventsOrSource = Union[Source, Iterable[FlowEvent]]
"""Events already made, or anything :func:`flowscope.events` reads."""

BATCH_ROWS = 65_536
"""Rows per chunk: large enough that per-batch overhead (schema, Series, Arrow
buffers) is negligible, small enough that one chunk of Python objects stays
in the tens of megabytes, and the usual Arrow/Parquet row-group scale."""

# Column kinds: how a JSON value maps to a pandas dtype and an Arrow type.
STR, INT, FLOAT, BOOL, TS, STRS, INTS, RRS, QUESTIONS = (
    "str", "int", "float", "bool", "ts", "list<str>", "list<int>", "list<rr>", "list<question>",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """One declared column of a record type."""

    name: str
    """The JSON key (and column name)."""
    kind: str
    """One of the kinds above (``str``, ``int``, ``list<str>``…)."""
    nullable: bool = False
    """Whether the value can be ``null`` in this record type."""


def _cols(spec: str) -> Tuple[Column, ...]:
    # "name:kind" or "name:kind?" (nullable), space separated: the tables below stay readable.
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        out.append(Column(name=name, kind=kind.rstrip("?"), nullable=kind.endswith("?")))
    return tuple(out)


_HEAD = "event_type:str flow_id:str ts:ts proto:str orig_h:str orig_p:int resp_h:str resp_p:int community_id:str"
_HEAD_NULLABLE = " ".join(f"{c}?" if not c.startswith(("event_type", "ts")) else c for c in _HEAD.split())
_TLS_COMMON = (
    "version:str? client_version:str? client_supported_versions:list<str> server_name:str?"
    " alpn_offered:list<str> alpn_selected:str? cipher:str? ja3:str? ja3_string:str? ja3s:str? ja3s_string:str?"
    " ja4:str? cert_subject_cn:str? cert_issuer_cn:str? cert_san_dns:list<str> hello_retry_request:bool"
)
_PARSER_ERROR = "reason:str message:str direction:str fatal:bool"

SCHEMAS: Mapping[str, Tuple[Column, ...]] = {
    "flow": _cols(
        _HEAD + " duration:float orig_pkts:int resp_pkts:int orig_bytes:int resp_bytes:int orig_payload_bytes:int"
        " resp_payload_bytes:int missed_bytes:int history:str conn_state:str end_reason:str service:str?"
        " vlan:list<int> tunnel:list<str>"
    ),
    "flow_start": _cols(_HEAD + " vlan:list<int> tunnel:list<str>"),
    "notice": _cols(_HEAD_NULLABLE + " kind:str message:str"),
    "http": _cols(
        _HEAD + " method:str? host:str? uri:str? version:str? user_agent:str? request_content_type:str?"
        " status_code:int? response_content_type:str? request_body_len:int response_body_len:int trans_depth:int"
        " status_msg:str? response_version:str? referrer:str? request_transfer_encoding:str?"
        " response_transfer_encoding:str? content_encoding:str? info_codes:list<int>"
        " request_headers_truncated:bool response_headers_truncated:bool request_complete:bool"
        " response_complete:bool"
    ),
    "http_error": _cols(_HEAD + " " + _PARSER_ERROR),
    "tls": _cols(
        _HEAD + " " + _TLS_COMMON + " cert_chain_len:int? transport:str server_version_legacy:str?"
        " client_is_orig:bool?"
    ),
    "tls_error": _cols(_HEAD + " " + _PARSER_ERROR),
    "dns": _cols(
        _HEAD + " trans_id:int is_response:bool opcode:str rcode:str? truncated:bool aa:bool rd:bool ra:bool"
        " ad:bool cd:bool qname:str? qtype:str? qclass:str? unicast_response:bool answers:list<rr>"
        " authority:list<rr> additional:list<rr> extra_questions:list<question> qdcount:int ancount:int"
        " nscount:int arcount:int edns_udp_size:int? dnssec_ok:bool variant:str transport:str"
    ),
    "dns_error": _cols(_HEAD + " reason:str offset:int? trans_id:int? variant:str transport:str"),
    "quic": _cols(
        _HEAD + " quic_version:str " + _TLS_COMMON + " transport:str server_version_legacy:str?"
    ),
    "quic_error": _cols(_HEAD + " reason:str message:str"),
}
"""Declared columns of every built-in record type, in ``event_to_dict``'s order."""

NOTICE_DETAILS: Mapping[str, str] = {
    "direction": STR, "offset": INT, "length": INT, "limit": STR, "dropped": INT, "protocol": STR, "install": STR,
    "parser": STR, "error": STR,
}  # fmt: skip
"""Kinds of the detail keys built-in notices add (see docs/events.md); each is a nullable column."""

RR_FIELDS: Tuple[Tuple[str, str], ...] = (
    ("name", STR), ("type", STR), ("ttl", INT), ("data", STR), ("txt", STRS), ("rclass", STR), ("cache_flush", BOOL),
)  # fmt: skip
"""Fields of one DNS resource record (``answers``, ``authority``, ``additional``)."""
QUESTION_FIELDS: Tuple[Tuple[str, str], ...] = (
    ("name", STR), ("type", STR), ("qclass", STR), ("unicast_response", BOOL),
)  # fmt: skip
"""Fields of one extra DNS question (``extra_questions``)."""


def _kind_table() -> Dict[str, str]:
    kinds = dict(NOTICE_DETAILS)
    for cols in SCHEMAS.values():
        for c in cols:
            kinds.setdefault(c.name, c.kind)
    return kinds


KINDS: Mapping[str, str] = _kind_table()
"""Every declared column name's kind (a name has one kind in every record type)."""

# ------------------------------------------------------------------ optional imports


def _pandas() -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError as e:
        raise MissingExtraError("pandas", "pandas") from e


def _pyarrow() -> Any:
    try:
        return importlib.import_module("pyarrow")
    except ImportError as e:
        raise MissingExtraError("arrow", "arrow") from e


# ------------------------------------------------------------------ input


def _event_type(ev: FlowEvent) -> str:
    if isinstance(ev, SessionRecord):
        return ev.event.event_type
    return ev.event_type


def _is_event(x: object) -> bool:
    return isinstance(x, (FlowEnded, SessionRecord, FlowStarted, Notice))


def _events(data: EventsOrSource, event_type: Optional[str], flows_only: bool) -> Iterator[FlowEvent]:
    """The events to tabulate: given ones as they are, or read from a source."""
    emit_starts = event_type == "flow_start"
    if isinstance(data, (str, os.PathLike, CaptureReader)) or hasattr(data, "read"):
        return events(data, flows_only=flows_only, emit_starts=emit_starts)  # type: ignore[arg-type]
    it = iter(data)
    first = next(it, None)
    if first is None:
        return iter(())
    items: Iterator[Any] = itertools.chain((first,), it)
    if _is_event(first):
        return items
    return events(items, flows_only=flows_only, emit_starts=emit_starts)


def _rows(data: EventsOrSource, event_type: Optional[str], flows_only: bool) -> Iterator[Dict[str, Any]]:
    """``event_to_dict`` of each selected event, with ``ts`` as integer nanoseconds."""
    for ev in _events(data, event_type, flows_only):
        if event_type is not None and _event_type(ev) != event_type:
            continue
        d = event_to_dict(ev)
        d["ts"] = ev.ts
        yield d


# ------------------------------------------------------------------ chunks of columns


class _Chunks:
    """Gathers rows into per-column lists and hands out full chunks.

    Rows of one record type have the same keys in the same order, so the
    list appends for a key order are looked up once per chunk (a "plan")
    and a row costs one bound ``append`` per value.  Column lists beat
    keeping row tuples and transposing with ``zip(*rows)``, which measured
    twice as slow on 64 Ki flow rows.

    Column order: the declared order for a declared type (the common head of
    every flow's record otherwise), then any other key in order of first
    appearance.  A column's kind is fixed when first known.
    """

    def __init__(self, event_type: Optional[str]) -> None:
        declared = SCHEMAS.get(event_type) if event_type is not None else None
        self.union = declared is None
        # Undeclared types and the union start with the columns every flow's record has.
        cols = declared if declared is not None else SCHEMAS["flow"][:9]
        self.names: List[str] = [c.name for c in cols]
        self.kinds: Dict[str, Optional[str]] = {c.name: c.kind for c in cols}
        self.nullable: Dict[str, bool] = {c.name: c.nullable for c in cols}
        self.values: Dict[str, List[Any]] = {}
        self.rows = 0
        self._plans: Dict[Tuple[str, ...], List[Callable[[Any], None]]] = {}

    def add(self, d: Dict[str, Any]) -> None:
        """Append one row; a key never seen before becomes a new column."""
        keys = tuple(d)
        plan = self._plans.get(keys)
        if plan is not None:
            for append, v in zip(plan, d.values()):
                append(v)
            self.rows += 1
            return
        n = self.rows
        vals = self.values
        for k, v in d.items():
            lst = vals.get(k)
            if lst is None:
                lst = vals[k] = [None] * n
                self._plans.clear()  # plans made before do not fill the new column
                if k not in self.kinds:
                    self.names.append(k)
                    self.kinds[k] = KINDS.get(k)
            lst.append(v)
        self.rows = n + 1
        if len(vals) > len(d):
            for lst in vals.values():
                if len(lst) == n:
                    lst.append(None)
        else:
            self._plans[keys] = [vals[k].append for k in keys]

    def take(self) -> Tuple[int, List[Tuple[str, str, bool, List[Any]]]]:
        """The chunk's rows and its ``(name, kind, nullable, values)`` columns; starts a new chunk.

        ``nullable`` is the declaration (always true for the union and for
        undeclared columns); the pandas conversion still copes with a null
        where none was declared.
        """
        n, vals = self.rows, self.values
        out = []
        for name in self.names:
            values = vals.get(name)
            if values is None:
                values = [None] * n
            kind = self.kinds[name]
            if kind is None:
                kind = self.kinds[name] = _infer(values)
            out.append((name, kind or "", self.union or self.nullable.get(name, True), values))
        self.values = {}
        self.rows = 0
        self._plans.clear()
        return n, out


def _infer(values: List[Any]) -> Optional[str]:
    """The kind of an undeclared column, from its first non-null value (``None``: all null so far)."""
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool):
            return BOOL
        if isinstance(v, int):
            return INT
        if isinstance(v, float):
            return FLOAT
        if isinstance(v, str):
            return STR
        return ""  # lists, objects: kept as Python values
    return None


def _chunked(
    data: EventsOrSource, event_type: Optional[str], flows_only: bool, batch_size: int
) -> Iterator[Tuple[int, List[Tuple[str, str, bool, List[Any]]]]]:
    ch = _Chunks(event_type)
    taken = False
    for d in _rows(data, event_type, flows_only):
        ch.add(d)
        if ch.rows >= batch_size:
            yield ch.take()
            taken = True
    if ch.rows or not taken:
        # Without any row, one empty chunk still carries the declared columns.
        yield ch.take()


# ------------------------------------------------------------------ Arrow


def _arrow_type(pa: Any, kind: str) -> Any:
    if kind == STR:
        return pa.string()
    if kind == INT:
        return pa.int64()
    if kind == FLOAT:
        return pa.float64()
    if kind == BOOL:
        return pa.bool_()
    if kind == TS:
        return pa.timestamp("ns", tz="UTC")
    if kind == STRS:
        return pa.list_(pa.string())
    if kind == INTS:
        return pa.list_(pa.int64())
    if kind == RRS:
        return pa.list_(pa.struct([(n, _arrow_type(pa, k)) for n, k in RR_FIELDS]))
    if kind == QUESTIONS:
        return pa.list_(pa.struct([(n, _arrow_type(pa, k)) for n, k in QUESTION_FIELDS]))
    return None  # undeclared lists/objects: Arrow infers


def arrow_schema(event_type: str) -> Any:
    """The Arrow schema of a declared record type (``flow``, ``http``, ``tls``, ``dns``…)."""
    pa = _pyarrow()
    return pa.schema([pa.field(c.name, _arrow_type(pa, c.kind)) for c in SCHEMAS[event_type]])


def _arrow_column(pa: Any, kind: str, values: List[Any]) -> Any:
    typ = _arrow_type(pa, kind) if kind else None
    if typ is None:
        return pa.array(values) if any(v is not None for v in values) else pa.nulls(len(values))
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        # An undeclared column whose values changed type (a plugin's choice): keep them as text.
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def to_arrow_batches(
    events_or_source: EventsOrSource,
    *,
    event_type: Optional[str] = "flow",
    batch_size: int = BATCH_ROWS,
    flows_only: bool = False,
) -> Iterator[RecordBatch]:
    """Arrow record batches of up to ``batch_size`` rows of one record type, as they fill.

    For streaming into Kafka, Spark or Parquet without holding the capture in
    memory.  Declared types (``flow``, ``http``, ``tls``, ``dns``, ``quic``,
    errors, ``flow_start``) have one fixed schema; with ``event_type=None``
    (every record) a later batch may add columns.  An input with no matching
    record yields one empty batch with the declared columns.
    ``flows_only`` is passed to :func:`flowscope.events` when reading a
    source (it skips application-layer parsing, so ``service`` is null).
    """
    pa = _pyarrow()  # here, not in the generator: a missing extra fails at the call
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    return _batches(pa, _chunked(events_or_source, event_type, flows_only, batch_size))


def _batches(pa: Any, chunks: Iterator[Tuple[int, List[Tuple[str, str, bool, List[Any]]]]]) -> Iterator[RecordBatch]:
    for _n, cols in chunks:
        arrays = [_arrow_column(pa, kind, values) for _name, kind, _nullable, values in cols]
        yield pa.RecordBatch.from_arrays(arrays, names=[c[0] for c in cols])


def _unify(pa: Any, batches: List[Any]) -> Any:
    """One schema for batches whose columns grew: absent columns null, type clashes as strings."""
    names: List[str] = []
    types: Dict[str, Any] = {}
    for b in batches:
        for f in b.schema:
            t = types.get(f.name)
            if t is None:
                names.append(f.name)
                types[f.name] = f.type
            elif t != f.type and not pa.types.is_null(f.type):
                types[f.name] = f.type if pa.types.is_null(t) else pa.string()
    schema = pa.schema([pa.field(n, types[n]) for n in names])
    out = []
    for b in batches:
        present = set(b.schema.names)
        arrays = [
            b.column(n).cast(types[n]) if n in present else pa.nulls(b.num_rows, type=types[n]) for n in names
        ]
        out.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return pa.Table.from_batches(out, schema=schema)


def to_arrow(
    events_or_source: EventsOrSource,
    *,
    event_type: Optional[str] = "flow",
    flows_only: bool = False,
    batch_size: int = BATCH_ROWS,
) -> Table:
    """An Arrow table of one record type (``event_type``), or of every record (``None``).

    Columns are ``event_to_dict``'s keys; ``ts`` is ``timestamp[ns, tz=UTC]``;
    lists are Arrow lists (DNS records: lists of structs).  The table is
    made of record batches of ``batch_size`` rows.  See the module docstring
    for the rules.
    """
    pa = _pyarrow()
    batches = list(
        to_arrow_batches(events_or_source, event_type=event_type, flows_only=flows_only, batch_size=batch_size)
    )
    if len({b.schema for b in batches}) == 1:
        return pa.Table.from_batches(batches)
    return _unify(pa, batches)


# ------------------------------------------------------------------ pandas


def _series(pd: Any, kind: str, nullable: bool, values: List[Any]) -> Any:
    if kind == TS:
        return pd.to_datetime(pd.Series(values, dtype="int64"), unit="ns", utc=True)
    if kind == STR:
        return pd.Series(values, dtype="string")
    if kind == INT:
        if not nullable:
            try:
                return pd.Series(values, dtype="int64")
            except (TypeError, ValueError):
                pass  # a null where the record type declares none: the nullable dtype below
        return pd.Series(values, dtype="Int64")
    if kind == BOOL:
        # Via the nullable dtype: a plain ``bool`` Series would turn a stray None into False.
        s = pd.Series(values, dtype="boolean")
        return s if nullable or s.hasnans else s.astype("bool")
    if kind == FLOAT:
        return pd.Series(values, dtype="float64")
    return pd.Series(values, dtype=object)


def to_pandas(
    events_or_source: EventsOrSource,
    *,
    event_type: Optional[str] = "flow",
    flows_only: bool = False,
    batch_size: int = BATCH_ROWS,
) -> DataFrame:
    """A pandas DataFrame of one record type (``event_type``), or of every record (``None``).

    Columns are ``event_to_dict``'s keys with the same values, except ``ts``,
    a ``datetime64[ns, UTC]`` column.  Needs pandas only (not pyarrow).
    ``batch_size`` rows are converted at a time (it bounds the Python
    objects held, not the result).
    """
    pd = _pandas()
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    parts: Dict[str, List[Any]] = {}
    order: List[str] = []
    total = 0
    for n, cols in _chunked(events_or_source, event_type, flows_only, batch_size):
        for name, kind, nullable, values in cols:
            got = parts.get(name)
            if got is None:
                got = parts[name] = []
                order.append(name)
                if total:
                    # A column first seen in this chunk: earlier rows have no value.
                    got.append(_series(pd, kind, True, [None] * total))
            try:
                got.append(_series(pd, kind, nullable, values))
            except (TypeError, ValueError):
                # An undeclared column whose values changed type (a plugin's choice).
                got.append(pd.Series(values, dtype=object))
        total += n
    columns = {}
    for name in order:
        s = parts[name]
        columns[name] = s[0] if len(s) == 1 else pd.concat(s, ignore_index=True)
    return pd.DataFrame(columns, columns=order)
