"""Tests of the capture-file reader (``flowscope._capture``).

Expected values come from the corpus's tshark ground truth, or from the
hand-built files below, whose bytes a tiny writer lays out from the pcap and
pcapng specifications (magic numbers as integers, lengths computed here), so
nothing is copied from the reader's own output.
"""

from __future__ import annotations

import gzip
import io
import random
import struct
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope._capture import CaptureLimits, CaptureReader, open_capture
from flowscope_core import CaptureFormatError

from conftest import corpus_pcaps, load_truth

Rec = Tuple[int, bytes, int, int]
NS = 1_000_000_000

# -- a tiny writer ------------------------------------------------------------------

PCAP_US = 0xA1B2C3D4
PCAP_NS = 0xA1B23C4D
PCAP_MODIFIED = 0xA1B2CD34


def pcap_file(
    packets: Sequence[Tuple[int, int, bytes, int]],
    *,
    order: str = "<",
    magic: int = PCAP_US,
    link: int = 1,
    version: Tuple[int, int] = (2, 4),
) -> Tuple[bytes, List[Tuple[int, int]]]:
    """A pcap file of ``(sec, frac, frame, wire_len)`` records and each record's (start, end)."""
    out = bytearray(struct.pack(order + "IHHiIII", magic, version[0], version[1], 0, 0, 65535, link))
    spans = []
    for sec, frac, frame, wire_len in packets:
        start = len(out)
        out += struct.pack(order + "IIII", sec, frac, len(frame), wire_len)
        if magic == PCAP_MODIFIED:
            out += struct.pack(order + "IHBB", 3, 0x0800, 0, 0)
        out += frame
        spans.append((start, len(out)))
    return bytes(out), spans


def pad4(data: bytes) -> bytes:
    """``data`` padded with zeros to a multiple of 4 bytes."""
    return data + b"\0" * (-len(data) % 4)


def block(order: str, btype: int, body: bytes) -> bytes:
    """A pcapng block: type, total length, padded body, total length again."""
    body = pad4(body)
    total = 12 + len(body)
    return struct.pack(order + "II", btype, total) + body + struct.pack(order + "I", total)


def option(order: str, code: int, value: bytes) -> bytes:
    """One pcapng option, padded."""
    return struct.pack(order + "HH", code, len(value)) + pad4(value)


def shb(order: str, major: int = 1, minor: int = 0) -> bytes:
    """A Section Header Block with an unknown section length and a comment."""
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, major, minor, -1)
    body += option(order, 1, b"made by test_capture") + option(order, 0, b"")
    return block(order, 0x0A0D0D0A, body)


def idb(
    order: str, link: int, *, snaplen: int = 0, tsresol: Optional[int] = None, tsoffset: Optional[int] = None
) -> bytes:
    """An Interface Description Block with optional if_tsresol / if_tsoffset."""
    body = struct.pack(order + "HHI", link, 0, snaplen) + option(order, 2, b"eth0")
    if tsresol is not None:
        body += option(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        body += option(order, 14, struct.pack(order + "q", tsoffset))
    return block(order, 1, body + option(order, 0, b""))


def epb(order: str, iface: int, ts: int, frame: bytes, wire_len: Optional[int] = None) -> bytes:
    """An Enhanced Packet Block; ``ts`` in the interface's units."""
    wire = len(frame) if wire_len is None else wire_len
    body = struct.pack(order + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(frame), wire)
    return block(order, 6, body + pad4(frame) + option(order, 1, b"c") + option(order, 0, b""))


def spb(order: str, frame: bytes, wire_len: int) -> bytes:
    """A Simple Packet Block carrying ``frame`` (already cut to the snap length)."""
    return block(order, 3, struct.pack(order + "I", wire_len) + frame)


def opb(order: str, iface: int, ts: int, frame: bytes) -> bytes:
    """An obsolete Packet Block."""
    body = struct.pack(order + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame) + 2)
    return block(order, 2, body + frame)


def read_all(data: bytes, limits: Optional[CaptureLimits] = None) -> Tuple[List[Rec], Optional[CaptureFormatError]]:
    """Every record of ``data`` and the CaptureFormatError that ended it, if any."""
    records: List[Rec] = []
    try:
        with open_capture(io.BytesIO(data), name="mem", limits=limits) as reader:
            for rec in reader:
                records.append(rec)
                assert reader.packets == len(records)
    except CaptureFormatError as exc:
        assert exc.path == "mem"
        return records, exc
    return records, None


LINKTYPES = {"ether": 1, "linux-sll": 113, "null": 0}

# -- the corpus ----------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.parametrize("pcap", corpus_pcaps(), ids=lambda p: p.name)
def test_corpus_capture_matches_tshark(pcap: Path, corpus_dir: Path) -> None:
    truth = load_truth(pcap)["capture"]
    with open_capture(pcap) as reader:
        records = list(reader)
        assert reader.format == truth["file_type"]
        assert reader.size == pcap.stat().st_size
        assert reader.packets == truth["packets"]
        assert reader.offset <= pcap.stat().st_size
        if reader.format == "pcap":
            assert reader.offset == pcap.stat().st_size
    assert len(records) == truth["packets"]
    assert abs(records[0][0] / NS - truth["first_ts"]) <= 1e-6
    assert abs(records[-1][0] / NS - truth["last_ts"]) <= 1e-6
    assert {rec[3] for rec in records} == {LINKTYPES[truth["encapsulation"]]}
    assert all(len(frame) <= wire for _, frame, wire, _ in records)


@pytest.mark.corpus
def test_corpus_small_chunks_and_gzip_give_the_same_records(corpus_dir: Path) -> None:
    for name in ("ndpi_sites.pcapng", "zeek_tunnels_teredo.pcap"):
        data = (corpus_dir / name).read_bytes()
        expected, err = read_all(data)
        assert err is None
        assert read_all(data, limits=CaptureLimits(chunk_bytes=61)) == (expected, None)
        assert read_all(gzip.compress(data)) == (expected, None)


# -- pcap -----------------------------------------------------------------------------

PACKETS = [
    (1_700_000_000, 1, b"\x01" * 60, 60),
    (1_700_000_001, 999_999, b"\x02" * 14, 1514),
    (1_700_000_001, 0, b"", 0),
]


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(("magic", "unit"), [(PCAP_US, 1000), (PCAP_NS, 1), (PCAP_MODIFIED, 1000)])
def test_pcap_variants(order: str, magic: int, unit: int) -> None:
    # The upper 4 bits of the link type field carry FCS information.
    data, _ = pcap_file(PACKETS, order=order, magic=magic, link=(0xA << 28) | 228)
    records, err = read_all(data)
    assert err is None
    assert records == [(sec * NS + frac * unit, frame, wire, 228) for sec, frac, frame, wire in PACKETS]


def test_pcap_record_bound() -> None:
    big = b"\x05" * 262_144
    data, _ = pcap_file([(1, 0, big, 262_144)])
    assert read_all(data) == ([(NS, big, 262_144, 1)], None)
    data, spans = pcap_file([(1, 0, b"ok", 2), (2, 0, big + b"!", 262_145)])
    records, err = read_all(data)
    assert [r[1] for r in records] == [b"ok"]
    assert err is not None and err.offset == spans[1][0] and "262144" in err.reason


def test_pcap_record_larger_than_chunk() -> None:
    frames = [bytes([i]) * n for i, n in enumerate((5000, 3, 70_000, 1))]
    data, _ = pcap_file([(i, 0, f, len(f)) for i, f in enumerate(frames)])
    for chunk in (16, 1000, 1 << 20):
        records, err = read_all(data, limits=CaptureLimits(chunk_bytes=chunk))
        assert err is None
        assert [r[1] for r in records] == frames


def test_pcap_bad_version() -> None:
    data, _ = pcap_file(PACKETS, version=(1, 0))
    records, err = read_all(data)
    assert records == [] and err is not None and err.offset == 0 and "1.0" in err.reason


# -- pcapng ---------------------------------------------------------------------------

T0 = 1_700_000_000


def two_section_pcapng() -> Tuple[bytes, List[Rec]]:
    """A little-endian section with two interfaces, then a big-endian one."""
    le, be = "<", ">"
    unknown = block(le, 0x0BAD_0001, b"ignore me")
    isb = block(le, 5, struct.pack(le + "III", 0, 0, 0))
    data = (
        shb(le)
        + idb(le, 1, tsresol=9)
        + unknown
        + idb(le, 101, snaplen=4, tsresol=0x80 | 20, tsoffset=100)
        + epb(le, 0, T0 * NS + 123, b"A" * 21, 60)
        + epb(le, 1, (T0 << 20) + (1 << 19), b"B" * 4, 4)
        + isb
        + opb(le, 1, (T0 << 20) + 1, b"C" * 3)
        + shb(be)
        + idb(be, 228)
        + epb(be, 0, T0 * 1_000_000 + 7, b"D" * 9)
        + spb(be, b"E" * 5, 5)
    )
    expected = [
        (T0 * NS + 123, b"A" * 21, 60, 1),
        # 2^-20 units: half a second; if_tsoffset adds 100 s.
        ((T0 + 100) * NS + 500_000_000, b"B" * 4, 4, 101),
        # One unit of 2^-20 s is 953.67... ns, floored.
        ((T0 + 100) * NS + 953, b"C" * 3, 5, 101),
        (T0 * NS + 7_000, b"D" * 9, 9, 228),
        # A Simple Packet Block has no timestamp: it keeps the previous one.
        (T0 * NS + 7_000, b"E" * 5, 5, 228),
    ]
    return data, expected


def test_pcapng_sections_interfaces_and_block_kinds() -> None:
    data, expected = two_section_pcapng()
    records, err = read_all(data)
    assert err is None
    assert records == expected


def test_pcapng_simple_packet_block_uses_snaplen() -> None:
    le = "<"
    data = shb(le) + idb(le, 1, snaplen=4) + spb(le, b"FRAM", 1500) + spb(le, b"ab", 2)
    assert read_all(data) == ([(0, b"FRAM", 1500, 1), (0, b"ab", 2, 1)], None)
    # A block too short for min(wire length, snaplen) is corrupt.
    bad = shb(le) + idb(le, 1, snaplen=0) + spb(le, b"abcd", 5)
    records, err = read_all(bad)
    assert records == [] and err is not None and err.offset == len(shb(le) + idb(le, 1, snaplen=0))


def test_pcapng_interfaces_do_not_survive_a_section() -> None:
    le = "<"
    first = shb(le) + idb(le, 1) + idb(le, 1) + epb(le, 1, 5, b"x")
    data = first + shb(le) + idb(le, 1) + epb(le, 1, 6, b"y")
    records, err = read_all(data)
    assert [r[1] for r in records] == [b"x"]
    assert err is not None and err.offset == len(first) + len(shb(le)) + len(idb(le, 1))
    assert "interface 1" in err.reason


def test_pcapng_packet_before_any_interface() -> None:
    le = "<"
    for packet in (epb(le, 0, 1, b"z"), spb(le, b"z", 1), opb(le, 0, 1, b"z")):
        records, err = read_all(shb(le) + packet)
        assert records == [] and err is not None and err.offset == len(shb(le))


def test_pcapng_block_larger_than_chunk() -> None:
    le = "<"
    frame = bytes(range(256)) * 8192  # 2 MiB: many chunks, and above the pcap record bound
    data = shb(le) + idb(le, 1) + epb(le, 0, 1, frame) + epb(le, 0, 2, b"after")
    records, err = read_all(data)
    assert err is None and [r[1] for r in records] == [frame, b"after"]


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda b: b[:4] + struct.pack("<I", 30) + b[8:], "multiple of 4"),
        (lambda b: b[:4] + struct.pack("<I", 8) + b[8:], "shorter"),
        (lambda b: b[:-4] + struct.pack("<I", len(b) + 4), "trailing length"),
        (lambda b: b[:4] + struct.pack("<I", 1 << 30) + b[8:], "exceeds"),
        # 25 bytes would run into the options and trailer of this 56-byte block.
        (lambda b: b[:20] + struct.pack("<I", 25) + b[24:], "captured length"),
        (lambda b: block("<", 6, bytes(16)), "below 32"),
    ],
    ids=["not-multiple-of-4", "too-short", "trailer-differs", "too-long", "caplen-overruns", "epb-too-short"],
)
def test_pcapng_corrupt_block_lengths(mutate: Callable[[bytes], bytes], words: str) -> None:
    le = "<"
    head = shb(le) + idb(le, 1) + epb(le, 0, 1, b"good")
    damaged = mutate(epb(le, 0, 2, b"bad packet"))
    records, err = read_all(head + damaged + epb(le, 0, 3, b"never"))
    assert [r[1] for r in records] == [b"good"]
    assert err is not None and err.offset == len(head) and words in err.reason


def test_pcapng_block_bound_is_configurable() -> None:
    le = "<"
    head = shb(le) + idb(le, 1)
    data = head + epb(le, 0, 1, b"x" * 100)
    records, err = read_all(data, limits=CaptureLimits(max_pcapng_block=64))
    assert records == [] and err is not None and err.offset == len(head) and "exceeds" in err.reason


def test_pcapng_bad_section_headers() -> None:
    le = "<"
    good = shb(le) + idb(le, 1) + epb(le, 0, 1, b"x")
    bad_bom = shb(le)[:8] + b"\x01\x02\x03\x04" + shb(le)[12:]
    for second, words in ((bad_bom, "byte-order"), (shb(le, major=2), "version 2.0")):
        records, err = read_all(good + second)
        assert len(records) == 1 and err is not None and err.offset == len(good) and words in err.reason


def test_pcapng_bad_interface_options() -> None:
    le = "<"
    bad_resol = block(le, 1, struct.pack(le + "HHI", 1, 0, 0) + option(le, 9, b"\x06\x06"))
    overrun = block(le, 1, struct.pack(le + "HHI", 1, 0, 0) + struct.pack(le + "HH", 2, 200))
    for bad in (bad_resol, overrun):
        records, err = read_all(shb(le) + bad)
        assert records == [] and err is not None and err.offset == len(shb(le))


def test_pcapng_interface_count_is_bounded() -> None:
    le = "<"
    data = shb(le) + idb(le, 1) * 3
    records, err = read_all(data, limits=CaptureLimits(max_pcapng_interfaces=2))
    assert err is not None and err.offset == len(shb(le)) + 2 * len(idb(le, 1))


# -- truncation at every byte ---------------------------------------------------------------


def pcapng_with_spans() -> Tuple[bytes, List[Tuple[int, int]], List[bool]]:
    """A small pcapng file, each block's (start, end), and which blocks are packets."""
    le = "<"
    blocks = [
        (shb(le), False),
        (idb(le, 1, tsresol=9), False),
        (epb(le, 0, 10, b"first"), True),
        (block(le, 0x0BAD_0001, b"skip"), False),
        (spb(le, b"second", 6), True),
        (epb(le, 0, 11, b"third frame"), True),
    ]
    data = b""
    spans = []
    for raw, _ in blocks:
        spans.append((len(data), len(data) + len(raw)))
        data += raw
    return data, spans, [is_packet for _, is_packet in blocks]


def check_every_cut(data: bytes, spans: List[Tuple[int, int]], is_packet: List[bool], chunk: int) -> None:
    limits = CaptureLimits(chunk_bytes=chunk)
    full, err = read_all(data, limits=limits)
    assert err is None
    ends = {0} | {end for _, end in spans}
    for cut in range(len(data)):
        records, err = read_all(data[:cut], limits=limits)
        delivered = sum(1 for (_, end), pkt in zip(spans, is_packet) if pkt and end <= cut)
        assert records == full[:delivered], cut
        if cut in ends and cut >= spans[0][1]:
            assert err is None, cut
            continue
        assert err is not None, cut
        damaged = [start for start, end in spans if start <= cut < end]
        assert err.offset == (damaged[0] if damaged else 0), cut


@pytest.mark.parametrize("chunk", [5, 1 << 20])
def test_truncated_pcap_at_every_byte(chunk: int) -> None:
    data, spans = pcap_file(PACKETS + [(1_700_000_002, 5, b"\x07" * 33, 40)], magic=PCAP_MODIFIED)
    # The file header is a span of its own, with no packet in it.
    check_every_cut(data, [(0, 24)] + spans, [False] + [True] * len(spans), chunk)


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_truncated_pcapng_at_every_byte(chunk: int) -> None:
    data, spans, is_packet = pcapng_with_spans()
    check_every_cut(data, spans, is_packet, chunk)


# -- gzip ---------------------------------------------------------------------------------


def test_gzip_pcap_and_pcapng(tmp_path: Path) -> None:
    plain, _ = pcap_file(PACKETS, order=">", magic=PCAP_NS)
    expected, _ = read_all(plain)
    path = tmp_path / "capture.pcap.gz"
    path.write_bytes(gzip.compress(plain))
    with open_capture(path) as reader:
        assert list(reader) == expected
        assert reader.format == "pcap" and reader.size is None and reader.offset == len(plain)
    ng, ng_expected = two_section_pcapng()
    # Two gzip members in a row form one stream.
    assert read_all(gzip.compress(ng[:100]) + gzip.compress(ng[100:])) == (ng_expected, None)


def test_gzip_truncated_or_corrupt() -> None:
    rng = random.Random(7)  # incompressible frames, so the cut lands mid-stream
    frames = [rng.randbytes(4000) for _ in range(40)]
    plain, spans = pcap_file([(i, 0, f, len(f)) for i, f in enumerate(frames)])
    packed = gzip.compress(plain)
    records, err = read_all(packed[: len(packed) // 2], limits=CaptureLimits(chunk_bytes=4096))
    assert err is not None and "decompressed" in err.reason
    assert 0 < len(records) < len(frames) and [r[1] for r in records] == frames[: len(records)]
    assert err.offset == spans[len(records)][0]
    corrupt = packed[:-8] + bytes(8)  # CRC and size of the member zeroed
    records, err = read_all(corrupt)
    assert err is not None and "gzip" in err.reason and [r[1] for r in records] == frames[: len(records)]


def test_gzip_of_something_else() -> None:
    for inner, words in ((b"hello world", "68656c6c"), (b"", "empty")):
        records, err = read_all(gzip.compress(inner))
        assert records == [] and err is not None and err.offset == 0 and words in err.reason
    records, err = read_all(b"\x1f\x8b\x08\x00garbage")
    assert records == [] and err is not None and err.offset == 0


# -- not a capture, sources and the reader's surface ----------------------------------------------


def test_not_a_capture_and_empty(tmp_path: Path) -> None:
    for data, words in ((b"GIF89a" + bytes(100), "47494638"), (b"", "empty"), (b"\xd4\xc3", "d4c3")):
        path = tmp_path / "x.pcap"
        path.write_bytes(data)
        with pytest.raises(CaptureFormatError) as info:
            open_capture(path)
        assert info.value.offset == 0 and info.value.path == str(path) and words in info.value.reason
    data, _ = pcap_file([])
    assert read_all(data[:20])[1] is not None
    assert read_all(data) == ([], None)


def test_missing_file_stays_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_capture(tmp_path / "absent.pcap")
    with pytest.raises(IsADirectoryError):
        open_capture(tmp_path)


class Trickle(io.RawIOBase):
    """An unseekable stream that returns at most ``step`` bytes per read, like a pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self._step if size < 0 else min(size, self._step)
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk


def test_unseekable_stream_with_short_reads() -> None:
    data, expected = two_section_pcapng()
    stream = Trickle(data, 3)
    with open_capture(stream, name="pipe") as reader:  # type: ignore[arg-type]
        assert reader.path == "pipe" and reader.size is None
        assert list(reader) == expected
    assert not stream.closed  # the caller's stream is the caller's to close
    gz = Trickle(gzip.compress(data), 5)
    with open_capture(gz) as reader:  # type: ignore[arg-type]
        assert reader.path == "<stream>" and list(reader) == expected


def test_reader_surface(tmp_path: Path) -> None:
    data, spans = pcap_file(PACKETS)
    path = tmp_path / "a.cap"
    path.write_bytes(data)
    reader = open_capture(str(path))
    assert isinstance(reader, CaptureReader)
    assert (reader.path, reader.format, reader.size) == (str(path), "pcap", len(data))
    assert (reader.offset, reader.packets) == (0, 0)
    it = iter(reader)
    next(it)
    assert (reader.packets, reader.offset) == (1, spans[0][1])
    assert [r[1] for r in reader] == [p[2] for p in PACKETS[1:]]  # a second loop continues
    assert (reader.packets, reader.offset) == (3, len(data))
    reader.close()
    reader.close()
    with pytest.raises(ValueError):
        iter(reader)
    with open_capture(path, name="label") as named:
        assert named.path == "label"
    with pytest.raises(CaptureFormatError, match="label"):
        open_capture(io.BytesIO(b"nope"), name="label")



def test_fused_loop_hand_over() -> None:
    data, spans = pcap_file(PACKETS, order=">", magic=PCAP_NS, link=113)
    reader = open_capture(io.BytesIO(data))
    layout = reader._take_pcap()
    assert layout is not None
    buf, order, nanos, link = layout
    assert (buf[:24], order, nanos, link, reader.max_caplen) == (data[:24], ">", True, 113, 262_144)
    assert reader._take_pcap() is None  # handed over once only
    reader._at(spans[0][1], 1)
    assert (reader.offset, reader.packets) == (spans[0][1], 1)
    assert reader._fail(30, "bad").offset == 30
    begun = open_capture(io.BytesIO(data))
    next(iter(begun))
    assert begun._take_pcap() is None
    for other in (two_section_pcapng()[0], pcap_file(PACKETS, magic=PCAP_MODIFIED)[0]):
        assert open_capture(io.BytesIO(other))._take_pcap() is None

# -- Hypothesis: nothing but CaptureFormatError ------------------------------------------------

MAGICS = [
    b"",
    struct.pack("<I", PCAP_US) + struct.pack("<HH", 2, 4),
    struct.pack(">I", PCAP_NS) + struct.pack(">HH", 2, 4),
    struct.pack("<I", PCAP_MODIFIED) + struct.pack("<HH", 2, 4),
    b"\x0a\x0d\x0d\x0a",
    b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a\x01\x00",
    b"\x1f\x8b\x08\x00",
]


def only_format_errors(data: bytes, chunk: int = 1 << 20) -> None:
    records, err = read_all(data, limits=CaptureLimits(chunk_bytes=chunk))
    if err is not None:
        assert 0 <= err.offset
        if data[:2] != b"\x1f\x8b":
            assert err.offset <= len(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MAGICS), st.binary(max_size=300), st.sampled_from([3, 64, 1 << 20]))
def test_arbitrary_bytes_raise_only_format_errors(magic: bytes, tail: bytes, chunk: int) -> None:
    only_format_errors(magic + tail, chunk)


def _valid_small_files() -> List[bytes]:
    ng, _, _ = pcapng_with_spans()
    pcap, _ = pcap_file(PACKETS, order=">", magic=PCAP_NS)
    two, _ = two_section_pcapng()
    return [ng, pcap, two, gzip.compress(pcap)]


VALID: List[bytes] = _valid_small_files()


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(range(len(VALID))),
    st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), st.integers(0, 255)), min_size=1, max_size=6),
    st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
)
def test_mutated_files_raise_only_format_errors(which: int, edits: List[Tuple[int, int]], cut: Optional[int]) -> None:
    data = bytearray(VALID[which])
    for where, value in edits:
        data[where % len(data)] = value
    only_format_errors(bytes(data[: cut % (len(data) + 1)] if cut is not None else data), 16)


# -- decryption secrets blocks ------------------------------------------------------

TLSK = 0x544C534B  # "TLSK": NSS key log text (pcapng specification, Decryption Secrets Block)
WGKL = 0x57474B4C  # "WGKL": WireGuard keys


def dsb(order: str, secrets_type: int, data: bytes, *, declared: Optional[int] = None) -> bytes:
    """A Decryption Secrets Block: type, length (``declared`` overrides it), padded data, an option."""
    length = len(data) if declared is None else declared
    body = struct.pack(order + "II", secrets_type, length) + pad4(data)
    body += option(order, 1, b"keys") + option(order, 0, b"")
    return block(order, 0x0000000A, body)


KEYLOG_TEXT = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n"  # 179 bytes: padding needed


def read_with_secrets(
    data: bytes, chunk: int = 1 << 20
) -> Tuple[List[Rec], List[Tuple[int, bytes, int]], Optional[CaptureFormatError]]:
    """Records, the ``(type, data, packets delivered so far)`` of each DSB, and the error if any."""
    records: List[Rec] = []
    secrets: List[Tuple[int, bytes, int]] = []
    try:
        with open_capture(io.BytesIO(data), name="mem", limits=CaptureLimits(chunk_bytes=chunk)) as reader:
            assert reader.on_secrets is None
            reader.on_secrets = lambda kind, blob: secrets.append((kind, bytes(blob), len(records)))
            for rec in reader:
                records.append(rec)
    except CaptureFormatError as exc:
        return records, secrets, exc
    return records, secrets, None


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_secrets_blocks_are_handed_over_in_stream_order(order: str, chunk: int) -> None:
    data = (
        shb(order)
        + dsb(order, TLSK, KEYLOG_TEXT)
        + idb(order, 1)
        + epb(order, 0, 1, b"first")
        + dsb(order, WGKL, b"\x01\x02\x03")
        + epb(order, 0, 2, b"second")
        + dsb(order, TLSK, b"")
    )
    records, secrets, err = read_with_secrets(data, chunk)
    assert err is None
    assert [r[1] for r in records] == [b"first", b"second"]
    assert secrets == [(TLSK, KEYLOG_TEXT, 0), (WGKL, b"\x01\x02\x03", 1), (TLSK, b"", 2)]


def test_secrets_blocks_without_a_callback_are_skipped() -> None:
    le = "<"
    data = shb(le) + dsb(le, TLSK, KEYLOG_TEXT) + idb(le, 1) + epb(le, 0, 1, b"x")
    assert [r[1] for r in read_all(data)[0]] == [b"x"]


def test_malformed_secrets_block_body_is_skipped() -> None:
    """A secrets length that overruns the block, or a block too short for its header: skipped, no error."""
    le = "<"
    overrun = dsb(le, TLSK, b"abcd", declared=1000)
    too_short = block(le, 0x0000000A, struct.pack(le + "I", TLSK))  # 16 bytes: no secrets length
    data = shb(le) + overrun + too_short + idb(le, 1) + epb(le, 0, 1, b"x") + dsb(le, TLSK, b"ok")
    records, secrets, err = read_with_secrets(data)
    assert err is None and [r[1] for r in records] == [b"x"]
    assert secrets == [(TLSK, b"ok", 1)]


def test_secrets_block_framing_is_still_checked() -> None:
    le = "<"
    good = dsb(le, TLSK, KEYLOG_TEXT)
    bad = good[:-4] + struct.pack(le + "I", len(good) + 4)  # trailing length differs
    head = shb(le) + idb(le, 1) + epb(le, 0, 1, b"x")
    records, secrets, err = read_with_secrets(head + bad)
    assert [r[1] for r in records] == [b"x"] and secrets == []
    assert err is not None and err.offset == len(head) and "trailing length" in err.reason
    records, secrets, err = read_with_secrets(shb(le) + dsb(le, TLSK, bytes(64)), 16)  # block > chunk
    assert err is None and secrets == [(TLSK, bytes(64), 0)]
    with pytest.raises(CaptureFormatError, match="exceeds"):
        data = shb(le) + dsb(le, TLSK, bytes(2048))
        with open_capture(io.BytesIO(data), limits=CaptureLimits(max_pcapng_block=1024)) as reader:
            reader.on_secrets = lambda kind, blob: None
            list(reader)


def test_callback_exceptions_reach_the_loop() -> None:
    le = "<"
    data = shb(le) + dsb(le, TLSK, KEYLOG_TEXT) + idb(le, 1) + epb(le, 0, 1, b"x")

    def refuse(kind: int, blob: bytes) -> None:
        raise RuntimeError("caller's own error")

    with open_capture(io.BytesIO(data)) as reader:
        reader.on_secrets = refuse
        with pytest.raises(RuntimeError, match="caller's own error"):
            list(reader)


@pytest.mark.corpus
def test_corpus_secrets_block(corpus_dir: Path) -> None:
    """ndpi_quic-v2.pcapng carries one TLSK block, before its first packet; all 19 packets still come."""
    pcap = corpus_dir / "ndpi_quic-v2.pcapng"
    records, secrets, err = read_with_secrets(pcap.read_bytes())
    assert err is None
    assert len(records) == load_truth(pcap)["capture"]["packets"] == 19
    [(kind, text, before)] = secrets
    assert (kind, before) == (TLSK, 0)
    lines = text.decode("ascii").splitlines()
    assert lines[0].split()[:2] == [
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "29ba0cf4ea2b893234e0b5f739069d6a06210d7b688da8977bcfb0c8fd7036a5",
    ]
    assert len(lines) == 69 and all(len(line.split()) == 3 for line in lines)


def _valid_files_with_secrets() -> List[bytes]:
    le, be = "<", ">"
    return [
        shb(le) + dsb(le, TLSK, KEYLOG_TEXT) + idb(le, 1) + epb(le, 0, 1, b"x") + dsb(le, WGKL, b"k" * 33),
        shb(be) + idb(be, 1) + dsb(be, TLSK, b"") + epb(be, 0, 1, b"y"),
    ]


WITH_SECRETS: List[bytes] = _valid_files_with_secrets()


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(range(len(WITH_SECRETS))),
    st.lists(st.tuples(st.integers(min_value=0, max_value=1000), st.integers(0, 255)), min_size=1, max_size=6),
    st.sampled_from([5, 64, 1 << 20]),
)
def test_mutated_secrets_blocks_raise_only_format_errors(which: int, edits: List[Tuple[int, int]], chunk: int) -> None:
    data = bytearray(WITH_SECRETS[which])
    for where, value in edits:
        data[where % len(data)] = value
    records, secrets, err = read_with_secrets(bytes(data), chunk)
    for _kind, blob, _before in secrets:
        assert len(blob) <= len(data)
