"""Capture-file reader: pcap and pcapng, plain or gzip-compressed, in pure Python.

Theory of operation
-------------------

A capture is read front to back, once, in chunks of about
``CaptureLimits.chunk_bytes`` (64 KiB).  The reader keeps one ``bytes``
buffer ``buf``, a cursor ``pos`` into it and ``base``, the stream offset of
``buf[0]``; a record's stream offset is therefore always ``base + pos``.
Records are decoded in place with ``struct.Struct.unpack_from`` (one
precompiled ``Struct`` per byte order) and each packet leaves as one
``(ts_ns, frame, wire_len, link_type)`` tuple whose ``frame`` is a slice of
the chunk: per packet there is one header unpack, one slice and one tuple,
nothing else.

When the record at ``pos`` does not fit in the rest of the buffer, the
unconsumed tail ``buf[pos:]`` is joined with the next read, ``base`` moves
forward by ``pos`` and ``pos`` goes back to 0.  A record larger than a chunk is
handled the same way, by reading until the whole record is present; the length
fields are checked against the bounds in :class:`CaptureLimits` *before* that
read, so a corrupt length can never make the reader allocate more than the
bound.  Memory is thus one chunk plus one record.

The format comes from the magic number, never from the file name:

* pcap (``a1b2c3d4`` microseconds, ``a1b23c4d`` nanoseconds, ``a1b2cd34``
  Kuznetzov's modified format with 24-byte record headers; both byte orders).
  The link type is the low 28 bits of the header field (the upper bits may
  carry FCS information).
* pcapng: a sequence of blocks.  Every Section Header Block starts a new
  section, may switch the byte order and forgets the interfaces of the
  previous section.  Interface Description Blocks give each interface its link
  type, snap length, ``if_tsresol`` and ``if_tsoffset``; Enhanced, Simple and
  the obsolete Packet Blocks carry packets; a Decryption Secrets Block (TLS
  key log text and the like) is handed to :attr:`CaptureReader.on_secrets`
  when one is set, before the packets that follow it are read; every other
  block is checked for a sane framing and skipped.  A Simple Packet Block has no timestamp: it is
  given the timestamp of the packet before it, so that a consumer's clock
  (flow timeouts) never jumps back to 1970.
* gzip (``1f 8b``): the compressed stream is decompressed on the fly with the
  :mod:`gzip` module and the result detected again.  Offsets then count bytes
  of the decompressed stream, and error messages say so.

Damage is reported, never guessed around: the reader delivers every packet
before it and then raises :class:`~flowscope_core.CaptureFormatError` with
the path and the stream offset of the damaged record or block.  A file that
is not a capture (or is empty) fails the same way at offset 0, in
:func:`open_capture`.  Environment errors (missing file, permissions, I/O
errors) stay ``OSError``.

The ``offset`` and ``packets`` attributes of a reader are updated just before
each packet is handed out, so a progress bar or an error message outside the
loop sees the position of the packet being processed.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Callable, Generator, Iterator, List, Optional, Tuple, Type, Union

from flowscope_core import CaptureFormatError

__all__ = ["CaptureLimits", "CaptureReader", "DEFAULT_CAPTURE_LIMITS", "Record", "open_capture"]

Record = Tuple[int, bytes, int, int]
"""One packet: ``(ts_ns, frame, wire_len, link_type)``."""

_Records = Generator[Record, None, None]


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureLimits:
    """Every bound the capture reader enforces, in one place."""

    chunk_bytes: int = 64 << 10
    """Bytes asked of the file per read.  64 KiB holds ~100 average packets,
    enough to make the per-read and buffer-join cost negligible, and keeps
    each chunk allocation below glibc's 128 KiB ``mmap`` threshold, so chunk
    buffers are recycled from the heap instead of being mapped and
    page-faulted afresh.  Measured on a 647 MiB capture: 1 MiB chunks cost 30
    times the page faults and 1.7 times the CPU time of 64 KiB chunks, and
    chunks from 32 KiB to 128 KiB were within 5% of each other."""

    max_pcap_caplen: int = 262_144
    """Largest captured length accepted in a pcap record.  262,144 is
    libpcap's ``MAXIMUM_SNAPLEN`` (tcpdump and Wireshark write the same
    default snap length), and libpcap itself rejects larger records for the
    link types flowscope decodes; a bigger value is a corrupt length field."""

    max_pcapng_block: int = 16 << 20
    """Largest pcapng block accepted, in bytes.  16 MiB was Wireshark's bound
    (``MAX_BLOCK_SIZE``) for years; it only raised it for D-Bus captures,
    which flowscope does not decode.  It leaves room for big name-resolution
    or decryption-secrets blocks while bounding what a corrupt length can make
    the reader buffer."""

    max_pcapng_interfaces: int = 65_536
    """Interfaces accepted per pcapng section.  The obsolete Packet Block
    addresses interfaces with 16 bits, and real captures have a handful (the
    corpus maximum is 22); the bound keeps a file of nothing but interface
    blocks from growing the interface table without limit."""


DEFAULT_CAPTURE_LIMITS = CaptureLimits()
"""The limits :func:`open_capture` uses unless told otherwise."""

# pcap magic numbers as they appear in the first four bytes of the file:
# (byte order, nanosecond timestamps, record header length).
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False, 16),
    b"\xa1\xb2\xc3\xd4": (">", False, 16),
    b"\x4d\x3c\xb2\xa1": ("<", True, 16),
    b"\xa1\xb2\x3c\x4d": (">", True, 16),
    b"\x34\xcd\xb2\xa1": ("<", False, 24),
    b"\xa1\xb2\xcd\x34": (">", False, 24),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"
_PCAP_FILE_HEADER = 24
_LINKTYPE_MASK = 0x0FFF_FFFF

# pcapng block types and the minimum total length of each (header, fixed
# fields and trailing length copy).
_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_OPB = 0x00000002
_SPB = 0x00000003
_EPB = 0x00000006
_DSB = 0x0000000A
_MIN_BLOCK = 12
_MIN_SHB = 28
_MIN_IDB = 20
_MIN_EPB = 32
_MIN_SPB = 16
_MIN_OPB = 32
_MIN_DSB = 20
_BOM_BIG = b"\x1a\x2b\x3c\x4d"
_BOM_LITTLE = b"\x4d\x3c\x2b\x1a"
_OPT_END = 0
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14
_DEFAULT_TSRESOL = 6

# Exceptions the gzip module raises for a corrupt or truncated stream.
_GZIP_ERRORS: Tuple[Type[BaseException], ...] = (gzip.BadGzipFile, EOFError, zlib.error)

# An interface: (link_type, multiplier, divisor, offset_ns, snaplen); a raw
# timestamp t in interface units is t * multiplier // divisor + offset_ns.
_Interface = Tuple[int, int, int, int, int]


class _PcapngStructs:
    """The precompiled ``Struct`` unpackers of one pcapng byte order."""

    __slots__ = ("header", "u32", "epb", "opb", "shb_version", "idb", "option", "i64")

    def __init__(self, order: str) -> None:
        self.header = struct.Struct(order + "II").unpack_from
        self.u32 = struct.Struct(order + "I").unpack_from
        self.epb = struct.Struct(order + "IIIII").unpack_from
        self.opb = struct.Struct(order + "HHIIII").unpack_from
        self.shb_version = struct.Struct(order + "HH").unpack_from
        self.idb = struct.Struct(order + "HHI").unpack_from
        self.option = struct.Struct(order + "HH").unpack_from
        self.i64 = struct.Struct(order + "q").unpack_from


_PCAPNG_LITTLE = _PcapngStructs("<")
_PCAPNG_BIG = _PcapngStructs(">")


class _Prefixed:
    """A read-only stream giving ``prefix`` and then the rest of ``stream``.

    Format detection has already consumed the first bytes of an input that
    may not be seekable (a pipe); when they turn out to be gzip, the
    decompressor must see them again.
    """

    __slots__ = ("_prefix", "_stream")

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all remaining when negative)."""
        prefix = self._prefix
        if not prefix:
            return self._stream.read(size)
        if size < 0 or size >= len(prefix):
            self._prefix = b""
            return prefix
        self._prefix = prefix[size:]
        return prefix[:size]

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Refuse: the stream may be a pipe (gzip only seeks to rewind)."""
        raise io.UnsupportedOperation("capture input is read once, front to back")


class CaptureReader:
    """An open capture, iterated once for ``(ts_ns, frame, wire_len, link_type)``.

    Made by :func:`open_capture`.  Iterating it again continues where the
    previous loop stopped, as with a file object.  It is a context manager;
    :meth:`close` releases the file (a stream passed in by the caller is left
    open for the caller to close).
    """

    __slots__ = (
        "path",
        "format",
        "size",
        "offset",
        "packets",
        "on_secrets",
        "on_read",
        "_limits",
        "_stream",
        "_owns_stream",
        "_gzip",
        "_read",
        "_errors",
        "_exhausted",
        "_decode_error",
        "_records",
        "_closed",
        "_pcap_layout",
    )

    path: str
    format: str
    size: Optional[int]
    offset: int
    packets: int
    on_secrets: Optional[Callable[[int, bytes], None]]
    on_read: Optional[Callable[[], None]]

    def __init__(
        self,
        stream: BinaryIO,
        *,
        path: str,
        owns_stream: bool,
        limits: CaptureLimits,
    ) -> None:
        """Detect the format of ``stream``; use :func:`open_capture` instead."""
        self.path = path
        """The file's path, or the ``name`` given to :func:`open_capture`."""
        self.format = ""
        """``"pcap"`` or ``"pcapng"``."""
        self.size = _remaining_size(stream)
        """Total bytes of the capture when known (for progress bars), else None."""
        self.offset = 0
        """Stream offset just past the last packet delivered."""
        self.packets = 0
        """Packets delivered so far."""
        self.on_secrets = None
        """Called as ``on_secrets(secrets_type, secrets_data)`` for each pcapng
        Decryption Secrets Block, as it is read: before any packet that
        follows it is handed out.  ``secrets_type`` is the block's 32-bit type
        (``0x544c534b`` "TLSK": NSS key log text; ``0x57474b4c`` "WGKL":
        WireGuard keys; ...) and ``secrets_data`` its payload without padding.
        A block whose secrets length overruns it is skipped.  The callback
        runs inside the iteration, so whatever it raises reaches the loop."""
        self.on_read = None
        """Called before each read from the input (once per chunk, 64 KiB by
        default), while no packet is half processed: every packet handed out
        so far went through the tracker completely.  Whatever it raises ends
        the iteration there, so it is the place for a safe stop (the CLI
        raises ``KeyboardInterrupt`` from it after a Ctrl-C)."""
        self._limits = limits
        self._stream = stream
        self._owns_stream = owns_stream
        self._gzip: Optional[gzip.GzipFile] = None
        self._read: Callable[[int], bytes] = stream.read
        self._errors: Tuple[Type[BaseException], ...] = ()
        self._exhausted = False
        self._decode_error: Optional[BaseException] = None
        self._closed = False
        self._pcap_layout: Optional[Tuple[bytes, str, bool, int]] = None
        buf = self._more(b"", 0, _PCAP_FILE_HEADER)
        if buf[:2] == _GZIP_MAGIC:
            self._gzip = gzip.GzipFile(fileobj=_Prefixed(buf, stream), mode="rb")
            self._read = self._gzip.read1
            self._errors = _GZIP_ERRORS
            self._exhausted = False
            self.size = None
            buf = self._more(b"", 0, _PCAP_FILE_HEADER)
        self._records = self._start(buf)

    def _start(self, buf: bytes) -> _Records:
        """Check the magic number and file header; return the record generator."""
        magic = buf[:4]
        if len(buf) < 4:
            if self._decode_error is not None:
                raise self._gzip_failure(0)
            what = "empty file" if not buf else f"file too short for a magic number ({buf.hex()})"
            raise self._damage(0, what)
        if magic == _PCAPNG_MAGIC:
            self.format = "pcapng"
            return self._pcapng_records(buf)
        layout = _PCAP_MAGICS.get(magic)
        if layout is None:
            kind = "gzip stream containing " if self._gzip is not None else ""
            raise self._damage(
                0,
                f"not a capture: {kind}magic number {magic.hex()} is not pcap "
                "(a1b2c3d4, a1b23c4d, a1b2cd34), pcapng (0a0d0d0a) or gzip (1f8b)",
            )
        self.format = "pcap"
        order, nanos, record_header = layout
        if len(buf) < _PCAP_FILE_HEADER:
            if self._decode_error is not None:
                raise self._gzip_failure(0)
            raise self._damage(0, f"truncated pcap file header ({len(buf)} of {_PCAP_FILE_HEADER} bytes)")
        major, minor, _zone, _sigfigs, _snaplen, linktype = struct.unpack_from(order + "HHiIII", buf, 4)
        if major != 2:
            raise self._damage(0, f"unsupported pcap version {major}.{minor} (only 2.x exists)")
        if record_header == 16:
            self._pcap_layout = (buf, order, nanos, linktype & _LINKTYPE_MASK)
        return self._pcap_records(
            buf, order=order, nanos=nanos, record_header=record_header, link=linktype & _LINKTYPE_MASK
        )

    # -- the fused loop's hand-over (flowscope._fastpath) ----------------

    def _take_pcap(self) -> Optional[Tuple[bytes, str, bool, int]]:
        """Hand a not-yet-iterated classic pcap stream to the fused loop.

        Returns ``(buffer holding the file header and first records, byte
        order, nanosecond timestamps, link type)``, or ``None`` when the loop
        cannot take over (pcapng, modified pcap, or iteration already began).
        The fused loop then reads through :meth:`_fill` and reports through
        :meth:`_fail` and :meth:`_at`, so ``offset``, ``packets`` and errors
        behave as with the reader's own iterator.
        """
        layout = self._pcap_layout
        self._pcap_layout = None
        if layout is None or self._closed or self.packets:
            return None
        return layout

    def _fill(self, buf: bytes, pos: int, need: int) -> bytes:
        """``buf[pos:]`` extended to ``need`` bytes unless the input ends first."""
        return self._more(buf, pos, need)

    def _fail(self, offset: int, reason: str) -> CaptureFormatError:
        """The error to raise for damage at ``offset`` (a gzip failure when that is the cause)."""
        if self._decode_error is not None:
            return self._gzip_failure(offset)
        return self._damage(offset, reason)

    def _at(self, offset: int, packets: int) -> None:
        """Progress of the fused loop: the offset after the last packet handed out."""
        self.offset = offset
        self.packets = packets

    @property
    def max_caplen(self) -> int:
        """The largest pcap record the reader accepts (see :class:`CaptureLimits`)."""
        return self._limits.max_pcap_caplen

    # -- public surface -------------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        """The packets; the same iterator every time, so a second loop continues."""
        if self._closed:
            raise ValueError(f"{self.path}: capture reader is closed")
        return self._records

    def close(self) -> None:
        """Stop reading and release the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._records.close()
        self._release()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CaptureReader {self.path!r} {self.format} packets={self.packets} offset={self.offset}>"

    # -- reading --------------------------------------------------------

    def _release(self) -> None:
        """Close what this reader opened; never the caller's own stream."""
        if self._gzip is not None:
            self._gzip.close()
        if self._owns_stream:
            self._stream.close()

    def _more(self, buf: bytes, pos: int, need: int) -> bytes:
        """``buf[pos:]`` extended by reads until it holds ``need`` bytes or input ends.

        Callers ask only when ``need`` exceeds what is left, so at least one
        read happens.  Each read asks for at least a chunk.  A gzip stream's
        ``read1`` returns only what one decompression step makes (about 8 KiB),
        so there reads are repeated up to a chunk; ``read1`` rather than
        ``read`` because ``read`` discards what it decompressed when it then
        meets corrupt data.  A decompression error ends the input like EOF and
        is kept in ``_decode_error``: the packets decoded so far are still
        delivered before it is reported.
        """
        tail = buf[pos:]
        have = len(tail)
        if self._exhausted:
            return tail
        if self.on_read is not None:
            self.on_read()
        parts = [tail]
        target = max(need, self._limits.chunk_bytes)
        fill = target if self._gzip is not None else need
        read = self._read
        errors = self._errors
        while have < fill:
            try:
                data = read(target - have)
            except errors as exc:
                self._decode_error = exc
                self._exhausted = True
                break
            if not data:
                self._exhausted = True
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts) if len(parts) > 1 else tail

    def _damage(self, offset: int, reason: str) -> CaptureFormatError:
        """The error for damage at ``offset``; gzip offsets are flagged as such."""
        if self._gzip is not None:
            reason += " (offset counts bytes of the gzip-decompressed stream)"
        return CaptureFormatError(self.path, offset, reason)

    def _gzip_failure(self, offset: int) -> CaptureFormatError:
        """The error for a gzip stream that could not be decompressed past ``offset``."""
        exc = self._decode_error
        detail = str(exc) or type(exc).__name__
        return self._damage(offset, f"gzip stream is corrupt or truncated: {detail}")

    def _pcap_records(self, buf: bytes, *, order: str, nanos: bool, record_header: int, link: int) -> _Records:
        """Packets of a pcap file whose 24-byte header starts ``buf``."""
        # Once this loop has started, the fused loop must not take over.
        self._pcap_layout = None
        try:
            header = struct.Struct(order + "IIII").unpack_from
            hlen = record_header
            frac_ns = 1 if nanos else 1000
            maxcap = self._limits.max_pcap_caplen
            base = 0
            pos = _PCAP_FILE_HEADER
            end = len(buf)
            count = 0
            # Packets of one second share the big-integer product sec * 10**9.
            last_sec = -1
            sec_ns = 0
            while True:
                while True:
                    # A header cut by the end of the buffer makes unpack_from
                    # fail; catching that costs nothing on the hot path (a
                    # zero-cost try on CPython 3.11+), unlike a bounds test.
                    try:
                        sec, frac, caplen, wire_len = header(buf, pos)
                    except struct.error:
                        need = hlen
                        break
                    rec = pos + hlen
                    nxt = rec + caplen
                    if nxt > end or caplen > maxcap:
                        if caplen > maxcap:
                            raise self._damage(
                                base + pos, f"pcap record captured length {caplen} exceeds the bound of {maxcap} bytes"
                            )
                        need = hlen + caplen
                        break
                    if sec != last_sec:
                        last_sec = sec
                        sec_ns = sec * 1_000_000_000
                    count += 1
                    self.packets = count
                    self.offset = base + nxt
                    yield (sec_ns + frac * frac_ns, buf[rec:nxt], wire_len, link)
                    pos = nxt
                buf = self._more(buf, pos, need)
                base += pos
                pos = 0
                end = len(buf)
                if end < need:
                    if self._decode_error is not None:
                        raise self._gzip_failure(base)
                    if end == 0:
                        return
                    if end < hlen:
                        raise self._damage(base, f"truncated pcap record header ({end} of {hlen} bytes)")
                    raise self._damage(base, f"truncated pcap record ({end} of {need} bytes)")
        finally:
            self._release()

    def _pcapng_records(self, buf: bytes) -> _Records:
        """Packets of a pcapng file whose first Section Header Block starts ``buf``."""
        try:
            limits = self._limits
            maxblock = limits.max_pcapng_block
            maxifaces = limits.max_pcapng_interfaces
            s = _PCAPNG_LITTLE
            header = s.header
            u32 = s.u32
            epb = s.epb
            ifaces: List[_Interface] = []
            last_ts = 0
            base = 0
            pos = 0
            end = len(buf)
            count = 0
            while True:
                while True:
                    if pos + _MIN_BLOCK > end:
                        need = _MIN_BLOCK
                        break
                    btype, blen = header(buf, pos)
                    if btype == _SHB:
                        bom = buf[pos + 8 : pos + 12]
                        if bom == _BOM_LITTLE:
                            s = _PCAPNG_LITTLE
                        elif bom == _BOM_BIG:
                            s = _PCAPNG_BIG
                        else:
                            raise self._damage(base + pos, f"section header byte-order magic {bom.hex()} is invalid")
                        header = s.header
                        u32 = s.u32
                        epb = s.epb
                        blen = header(buf, pos)[1]
                    if blen & 3 or blen < _MIN_BLOCK or blen > maxblock:
                        raise self._damage(base + pos, _bad_length(btype, blen, maxblock))
                    nxt = pos + blen
                    if nxt > end:
                        need = blen
                        break
                    if u32(buf, nxt - 4)[0] != blen:
                        raise self._damage(
                            base + pos,
                            f"pcapng block (type {btype:#x}) trailing length {u32(buf, nxt - 4)[0]} "
                            f"differs from its leading length {blen}",
                        )
                    if btype == _EPB:
                        if blen < _MIN_EPB:
                            raise self._damage(base + pos, f"enhanced packet block length {blen} is below {_MIN_EPB}")
                        iface, hi, lo, caplen, wire_len = epb(buf, pos + 8)
                        if caplen > blen - _MIN_EPB:
                            raise self._damage(
                                base + pos, f"enhanced packet block captured length {caplen} overruns its block"
                            )
                        try:
                            link, mul, div, offset_ns, _snap = ifaces[iface]
                        except IndexError:
                            raise self._damage(base + pos, _unknown_iface(iface, len(ifaces))) from None
                        last_ts = ((hi << 32) | lo) * mul // div + offset_ns
                        count += 1
                        self.packets = count
                        self.offset = base + nxt
                        yield (last_ts, buf[pos + 28 : pos + 28 + caplen], wire_len, link)
                    elif btype == _SPB:
                        if blen < _MIN_SPB:
                            raise self._damage(base + pos, f"simple packet block length {blen} is below {_MIN_SPB}")
                        if not ifaces:
                            raise self._damage(base + pos, "simple packet block in a section without interfaces")
                        link, _mul, _div, _off, snap = ifaces[0]
                        wire_len = u32(buf, pos + 8)[0]
                        caplen = snap if 0 < snap < wire_len else wire_len
                        if caplen > blen - _MIN_SPB:
                            raise self._damage(
                                base + pos, f"simple packet block data ({caplen} bytes) overruns its block"
                            )
                        count += 1
                        self.packets = count
                        self.offset = base + nxt
                        yield (last_ts, buf[pos + 12 : pos + 12 + caplen], wire_len, link)
                    elif btype == _IDB:
                        if len(ifaces) >= maxifaces:
                            raise self._damage(base + pos, f"more than {maxifaces} interfaces in one pcapng section")
                        ifaces.append(self._interface(buf, pos, blen, s, base))
                    elif btype == _SHB:
                        if blen < _MIN_SHB:
                            raise self._damage(base + pos, f"section header block length {blen} is below {_MIN_SHB}")
                        major, minor = s.shb_version(buf, pos + 12)
                        if major != 1:
                            raise self._damage(base + pos, f"unsupported pcapng version {major}.{minor}")
                        ifaces = []
                    elif btype == _DSB:
                        deliver = self.on_secrets
                        if deliver is not None and blen >= _MIN_DSB:
                            secrets_type, secrets_len = header(buf, pos + 8)
                            if secrets_len <= blen - _MIN_DSB:
                                deliver(secrets_type, buf[pos + 16 : pos + 16 + secrets_len])
                    elif btype == _OPB:
                        if blen < _MIN_OPB:
                            raise self._damage(base + pos, f"packet block length {blen} is below {_MIN_OPB}")
                        iface, _drops, hi, lo, caplen, wire_len = s.opb(buf, pos + 8)
                        if caplen > blen - _MIN_OPB:
                            raise self._damage(base + pos, f"packet block captured length {caplen} overruns its block")
                        try:
                            link, mul, div, offset_ns, _snap = ifaces[iface]
                        except IndexError:
                            raise self._damage(base + pos, _unknown_iface(iface, len(ifaces))) from None
                        last_ts = ((hi << 32) | lo) * mul // div + offset_ns
                        count += 1
                        self.packets = count
                        self.offset = base + nxt
                        yield (last_ts, buf[pos + 28 : pos + 28 + caplen], wire_len, link)
                    pos = nxt
                buf = self._more(buf, pos, need)
                base += pos
                pos = 0
                end = len(buf)
                if end < need:
                    if self._decode_error is not None:
                        raise self._gzip_failure(base)
                    if end == 0:
                        return
                    if end < _MIN_BLOCK:
                        raise self._damage(base, f"truncated pcapng block header ({end} of {_MIN_BLOCK} bytes)")
                    raise self._damage(base, f"truncated pcapng block ({end} of {need} bytes)")
        finally:
            self._release()

    def _interface(self, buf: bytes, pos: int, blen: int, s: _PcapngStructs, base: int) -> _Interface:
        """Decode the Interface Description Block at ``pos`` (already framed)."""
        if blen < _MIN_IDB:
            raise self._damage(base + pos, f"interface description block length {blen} is below {_MIN_IDB}")
        link, _reserved, snaplen = s.idb(buf, pos + 8)
        tsresol = _DEFAULT_TSRESOL
        tsoffset = 0
        opt = pos + 16
        stop = pos + blen - 4
        while opt + 4 <= stop:
            code, length = s.option(buf, opt)
            if code == _OPT_END:
                break
            value = opt + 4
            if value + length > stop:
                raise self._damage(base + pos, f"interface option {code} (length {length}) overruns its block")
            if code == _OPT_IF_TSRESOL:
                if length != 1:
                    raise self._damage(base + pos, f"if_tsresol option has length {length}, not 1")
                tsresol = buf[value]
            elif code == _OPT_IF_TSOFFSET:
                if length != 8:
                    raise self._damage(base + pos, f"if_tsoffset option has length {length}, not 8")
                tsoffset = s.i64(buf, value)[0]
            opt = value + ((length + 3) & ~3)
        if tsresol & 0x80:
            mul, div = 1_000_000_000, 1 << (tsresol & 0x7F)
        elif tsresol <= 9:
            mul, div = 10 ** (9 - tsresol), 1
        else:
            mul, div = 1, 10 ** (tsresol - 9)
        return (link, mul, div, tsoffset * 1_000_000_000, snaplen)


def _bad_length(btype: int, blen: int, maxblock: int) -> str:
    """Why a pcapng block total length is unacceptable."""
    what = f"pcapng block (type {btype:#x}) length {blen}"
    if blen & 3:
        return f"{what} is not a multiple of 4"
    if blen < _MIN_BLOCK:
        return f"{what} is shorter than a block header and trailer ({_MIN_BLOCK})"
    return f"{what} exceeds the bound of {maxblock} bytes"


def _unknown_iface(iface: int, known: int) -> str:
    """Why a packet block's interface id is unacceptable."""
    return f"packet block refers to interface {iface}, but its section defines {known}"


def _remaining_size(stream: BinaryIO) -> Optional[int]:
    """Bytes from the stream's position to its end, when it can tell."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(here)
    except (OSError, ValueError):
        return None
    return max(0, end - here)


def open_capture(
    source: Union[str, "os.PathLike[str]", BinaryIO],
    *,
    name: Optional[str] = None,
    limits: Optional[CaptureLimits] = None,
) -> CaptureReader:
    """Open a pcap or pcapng capture (optionally gzip-compressed) for reading.

    ``source`` is a path or a binary stream positioned at the start of the
    capture (offsets count from there; a stream is not closed by the reader).
    ``name`` replaces the path in error messages.  The format is detected
    here: a file that is not a capture raises
    :class:`~flowscope_core.CaptureFormatError` at once; a missing or
    unreadable file raises ``OSError``.
    """
    lim = limits if limits is not None else DEFAULT_CAPTURE_LIMITS
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        stream: BinaryIO = open(path, "rb", buffering=0)
        owns = True
        label = name if name is not None else path
    else:
        stream = source
        owns = False
        stream_name = getattr(source, "name", None)
        label = name if name is not None else stream_name if isinstance(stream_name, str) else "<stream>"
    try:
        return CaptureReader(stream, path=label, owns_stream=owns, limits=lim)
    except BaseException:
        if owns:
            stream.close()
        raise
