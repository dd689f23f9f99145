"""The hand-formatted JSON lines equal the generic ``json.dumps(event_to_dict(...))``."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import ClassVar, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import corpus_pcaps
from flowscope import SessionRecord, event_to_dict, events
from flowscope._sinks import session_json
from flowscope_core import Endpoint, FlowInfo, Orientation


def _generic(ev: SessionRecord) -> str:
    return json.dumps(event_to_dict(ev), separators=(",", ":")) + "\n"


def test_every_corpus_record(corpus_dir: Path) -> None:
    n = 0
    for path in corpus_pcaps():
        for ev in events(path):
            if isinstance(ev, SessionRecord):
                assert session_json(ev) == _generic(ev)
                n += 1
    assert n > 250


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Inner:
    a: int
    b: Tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Odd:
    event_type: ClassVar[str] = "odd\"type"
    ts: int
    text: str
    number: Optional[int]
    ratio: float
    flag: bool
    names: Tuple[str, ...]
    mixed: Tuple[object, ...]
    raw: bytes
    colour: Colour
    inner: Inner


FLOW = FlowInfo(
    flow_id='C"1', proto=17, orig=Endpoint(addr="::1", port=1), resp=Endpoint(addr="::2", port=2),
    orientation=Orientation.FIRST_PACKET, community_id="1:x", vlan=(), tunnel=(),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(),
    number=st.none() | st.integers(),
    ratio=st.floats(allow_nan=False, allow_infinity=False),
    flag=st.booleans(),
    names=st.lists(st.text(), max_size=4).map(tuple),
    raw=st.binary(max_size=8),
)
def test_any_field_values(text: str, number: Optional[int], ratio: float, flag: bool, names: Tuple[str, ...], raw: bytes) -> None:
    ev = SessionRecord(flow=FLOW, event=Odd(
        ts=1_700_000_000_123_456_789, text=text, number=number, ratio=ratio, flag=flag, names=names,
        mixed=("a", 1, b"\x01", Colour.RED), raw=raw, colour=Colour.RED, inner=Inner(a=1, b=names),
    ))  # fmt: skip
    line = session_json(ev)
    assert line == _generic(ev)
    assert json.loads(line)["text"] == text


@pytest.mark.parametrize("ratio", [float("nan"), float("inf")])
def test_non_finite_floats_take_the_generic_path(ratio: float) -> None:
    ev = SessionRecord(flow=FLOW, event=Odd(
        ts=0, text="", number=None, ratio=ratio, flag=False, names=(), mixed=(), raw=b"", colour=Colour.RED,
        inner=Inner(a=0, b=()),
    ))  # fmt: skip
    assert session_json(ev) == _generic(ev)
