"""HTTP/1.x: one :class:`HttpTransaction` per request/response pair, parsed by httptools.

Theory of operation
-------------------
A TCP flow carrying HTTP/1.x has a *client* direction (requests) and a
*server* direction (responses).  :data:`~flowscope_core.Direction.ORIG` is not
trusted to be the client: a capture that starts mid-connection, or a flow
whose SYN was lost, can have the server as originator.  Instead, the first
direction to show a decisive first line decides both roles: a request line
(``METHOD SP target SP HTTP/1.x``) makes it the client, a status line
(``HTTP/1.x NNN``) the server.  The other direction must then begin with the
complementary kind of line; if it does not (a capture that starts in the
middle of a body) it gets an :class:`HttpError` and is ignored, while the
first direction goes on being parsed.

Each direction is fed to its own llhttp parser (``httptools``), which calls
back per message part.  Requests enter a bounded FIFO of *pending*
transactions when their headers are complete (not when their body is: a
server may answer ``100 Continue`` or reject an upload before it ends).  A
final response pops the oldest pending request when *its* headers are
complete; interim ``1xx`` responses only add their code to that request's
``info_codes``.  A transaction is emitted once both halves are over: the
final response is complete and the request is complete (or can never
complete).  Keep-alive and pipelining follow from the FIFO; a response with
no pending request (mid-stream capture) becomes a transaction of its own, and
a request whose answer never comes is emitted when the server direction ends
or the flow closes.

Whether a response has a body depends on the request it answers, which
llhttp cannot be told through httptools: the answer to ``HEAD`` (and the
``2xx`` answer to ``CONNECT``) has none, whatever its ``Content-Length``
says.  While such a request is pending the server direction is fed in
*careful* pieces cut so that every message boundary falls at the end of a
piece: exactly the rest of a ``Content-Length`` body or of a chunk (its size
read from the chunk-size line just fed), all of a body that runs until the
connection closes, otherwise up to the next ``CR`` or ``LF`` (a header
section ends with one, so does a chunked body, so every other message
boundary does too).  Bodies thus cost a few pieces, not one per line.
When a response's headers then complete at the end of a piece, the parser
knows precisely where the answer to ``HEAD`` ends: it finishes the response
itself and starts a fresh llhttp parser for the next one.  A ``2xx`` answer
to ``CONNECT`` and a ``101 Switching Protocols`` end HTTP parsing for the
flow once the transaction is emitted: what follows is another protocol.
Client bytes that follow a ``CONNECT`` or ``Upgrade`` request are held
(bounded) until the answer shows whether they are HTTP again.

Stream events:

* ``gap``: a direction with a hole cannot be re-synchronised reliably, so
  what it has pending is emitted (a request whose headers were complete, a
  response whose headers were complete, marked incomplete) and that
  direction is stopped; the other direction goes on.  Requests that will now
  never see a response are emitted as they complete.
* ``end``: the direction is closed.  A response framed by the connection
  close (no ``Content-Length``, not chunked) is complete at this point.
* ``close``: both directions end; everything pending is emitted.

Malformed traffic (anything llhttp rejects, an oversized header section)
emits an :class:`HttpError`, then everything pending (including a message
whose start line was sound but whose header section was not, with the
fields read so far), and stops parsing the flow.  No method raises on
traffic.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Deque, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

from flowscope_core import Detection, Direction, FlowInfo, MissingExtraError, Timestamp

if TYPE_CHECKING:
    from httptools import HttpRequestParser, HttpResponseParser

__all__ = [
    "HttpConfig",
    "HttpError",
    "HttpEvent",
    "HttpParserFactory",
    "HttpSessionParser",
    "HttpTransaction",
    "factory",
]


# --------------------------------------------------------------------------- config


def _reraise_interrupt(exc: BaseException) -> None:
    """httptools wraps whatever a callback raised; Ctrl-C (or SystemExit) must not pass for bad HTTP."""
    cause = exc.__context__
    if cause is not None and not isinstance(cause, Exception):
        raise cause


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """Every bound the HTTP parser keeps, with the reason for its default."""

    max_header_bytes: int = 64 * 1024
    """Largest header section (start line and fields) of one message; more is an error.

    64 KiB is above what common servers accept by default (nginx 4 x 8 KiB
    ``large_client_header_buffers``, Node.js 16 KiB, IIS 16 KiB
    ``MaxRequestBytes``), so nothing a real server would answer is refused;
    and httptools, which gathers each field in memory until it ends, never
    holds more than this plus one segment.  Counted per fed segment, so the
    check may fire up to one segment early, never late.
    """
    max_headers: int = 100
    """Fields looked at per message (Apache's ``LimitRequestFields`` default); later ones are skipped."""
    max_uri_bytes: int = 8 * 1024
    """Longest URI kept; longer ones are cut (Apache's ``LimitRequestLine`` is 8190)."""
    max_value_bytes: int = 8 * 1024
    """Longest header value kept (Apache's ``LimitRequestFieldSize`` is 8190); longer ones are cut."""
    max_pending_requests: int = 64
    """Requests waiting for their response.

    Browsers never pipelined deeper than 32 (Firefox's old
    ``network.http.pipelining.maxrequests`` cap), so 64 only bites on one-sided
    captures where no response ever comes: the oldest request is then emitted
    unanswered, and the response that may still come for it is reported on
    its own rather than paired with the wrong request.
    """
    max_held_bytes: int = 64 * 1024
    """Client bytes kept after a ``CONNECT``/``Upgrade`` request until its answer.

    Clients wait for the answer before sending more, so this is at most a
    pipelined request or two; beyond it the client direction is stopped.
    """
    max_info_codes: int = 8
    """Interim (1xx) codes kept per transaction: in practice one ``100`` or one ``103``."""
    detect_lookahead: int = 4 * 1024
    """Bytes of a first line read before deciding.

    The engine shows ``detect`` at most 4 KiB of a direction (``L7Config.detect_bytes``),
    so a longer look-ahead would wait for bytes that never come; a known method,
    a space and 4 KiB of URI characters are decisive anyway.
    """
    lenient: bool = True
    """Turn on llhttp's leniencies (bare LF or CR, obs-fold, odd field bytes, data after
    ``Connection: close``, both ``Content-Length`` and chunked).

    A server rejects these to protect itself; a passive monitor must describe
    what the peers did, and they did exchange these messages.
    """


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpTransaction:
    """One request and its final response (either may be missing)."""

    event_type: ClassVar[str] = "http"
    ts: Timestamp
    """Time of the request's first byte, or of the response's when there is no request."""
    method: Optional[str]
    """Request method, ``None`` for a response seen without its request."""
    host: Optional[str]
    """``Host`` header as sent (port included when present)."""
    uri: Optional[str]
    """Request target as sent (origin-form, absolute-form for proxies, authority-form for CONNECT)."""
    version: Optional[str]
    """Request's protocol version, ``HTTP/1.1`` style."""
    user_agent: Optional[str]
    """``User-Agent`` header."""
    request_content_type: Optional[str]
    """Request's ``Content-Type`` header."""
    status_code: Optional[int]
    """Final status; ``None`` until a final response is seen (1xx are interim, except 101 which ends HTTP)."""
    response_content_type: Optional[str]
    """Response's ``Content-Type`` header."""
    request_body_len: int
    """Request body bytes after transfer decoding (de-chunked, still content-encoded)."""
    response_body_len: int
    """Response body bytes after transfer decoding (de-chunked, still content-encoded)."""
    trans_depth: int
    """Position on the connection: 1 for the first transaction."""
    status_msg: Optional[str]
    """Reason phrase of the final response."""
    response_version: Optional[str]
    """Response's protocol version."""
    referrer: Optional[str]
    """``Referer`` header."""
    request_transfer_encoding: Optional[str]
    """Request's ``Transfer-Encoding`` header."""
    response_transfer_encoding: Optional[str]
    """Response's ``Transfer-Encoding`` header."""
    content_encoding: Optional[str]
    """Response's ``Content-Encoding`` header (``gzip``…)."""
    info_codes: Tuple[int, ...]
    """Interim 1xx status codes seen before the final response, in order."""
    request_headers_truncated: bool
    """Some request header values were cut or fields skipped (see :class:`HttpConfig`)."""
    response_headers_truncated: bool
    """The same for the response."""
    request_complete: bool
    """The request was seen to its end (false when cut by a gap, the end or an error)."""
    response_complete: bool
    """The final response was seen to its end."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpError:
    """Bytes that are not (or no longer) HTTP/1.x."""

    event_type: ClassVar[str] = "http_error"
    ts: Timestamp
    """Packet time of the offending bytes."""
    reason: str
    """Stable identifier: ``not_http`` (the flow's first line), ``unsynchronised`` (a
    direction that does not begin with a message of its kind), ``request_malformed``,
    ``response_malformed``, ``header_section_too_large``."""
    message: str
    """Human-readable detail (llhttp's own message for malformed messages)."""
    direction: str
    """``orig`` or ``resp``: who sent the bytes."""
    fatal: bool
    """True when parsing of the whole flow stopped; false when only this direction is ignored."""


HttpEvent = Union[HttpTransaction, HttpError]
"""Everything :class:`HttpSessionParser` emits: a closed union."""


# --------------------------------------------------------------------------- detection

_METHODS: FrozenSet[bytes] = frozenset(
    b"GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH "
    b"PROPFIND PROPPATCH MKCOL COPY MOVE LOCK UNLOCK SEARCH REPORT CHECKOUT MERGE "
    b"MKACTIVITY MKCALENDAR BIND REBIND UNBIND ACL NOTIFY SUBSCRIBE UNSUBSCRIBE "
    b"PURGE LINK UNLINK SOURCE QUERY".split()
)
"""Methods that llhttp accepts and that are sent over TCP (RFC 9110, WebDAV and its
extensions, cache PURGE, Icecast SOURCE, QUERY); others would be rejected by llhttp."""

_METHOD_PREFIXES: FrozenSet[bytes] = frozenset(m[:k] for m in _METHODS for k in range(1, len(m) + 1))

_REQUEST_LINE = re.compile(rb"([A-Z][A-Z-]*) [\x21-\x7e]+ HTTP/1\.[0-9]\r?\n")
# A request line cut short: the method so far, then optionally SP, target chars,
# and a prefix of " HTTP/1.x\r".
_REQUEST_PREFIX = re.compile(
    rb"([A-Z][A-Z-]*)(?:( )[\x21-\x7e]*(?: (?:H(?:T(?:T(?:P(?:/(?:1(?:\.(?:[0-9]\r?)?)?)?)?)?)?)?)?)?)?"
)
_STATUS_PATTERN = b"HTTP/1.# ###"  # '#' stands for a digit

_MORE, _REQUEST, _RESPONSE, _NEITHER = 0, 1, 2, 3


def _sniff(data: bytes, lookahead: int) -> int:
    """Classify the first bytes of a direction: request, response, neither, or too short.

    Leading empty lines are skipped, as RFC 9112 section 2.2 lets servers do.
    A request line longer than ``lookahead`` whose beginning is consistent
    counts as a request: a known method, a space and kilobytes of URI
    characters say enough.
    """
    n = len(data)
    i = 0
    while i < n and data[i] in b"\r\n":
        i += 1
        if i >= lookahead:
            return _NEITHER
    if i == n:
        return _MORE
    head = data[i : i + len(_STATUS_PATTERN)]
    for k, c in enumerate(head):
        want = _STATUS_PATTERN[k]
        if not (0x30 <= c <= 0x39 if want == 0x23 else c == want):
            break
    else:
        return _RESPONSE if len(head) == len(_STATUS_PATTERN) else _MORE
    end = min(n, i + lookahead)
    m = _REQUEST_LINE.match(data, i, end)
    if m is not None:
        return _REQUEST if m.group(1) in _METHODS else _NEITHER
    if data.find(b"\n", i, end) >= 0:
        return _NEITHER
    m = _REQUEST_PREFIX.fullmatch(data, i, end)
    if m is None:
        return _NEITHER
    if m.group(2) is None:
        return _MORE if m.group(1) in _METHOD_PREFIXES and end - i < lookahead else _NEITHER
    if m.group(1) not in _METHODS:
        return _NEITHER
    return _REQUEST if end - i >= lookahead else _MORE


# --------------------------------------------------------------------------- parser state

_SNIFF, _ACTIVE, _HOLD, _STOPPED = 0, 1, 2, 3
_LABEL = ("orig", "resp")
"""Direction names as records spell them."""
_NO_BODY_METHODS = frozenset({"HEAD", "CONNECT"})
_LENIENCIES: Dict[str, bool] = {
    "lenient_headers": True,
    "lenient_chunked_length": True,
    "lenient_keep_alive": True,
    "lenient_transfer_encoding": True,
    "lenient_data_after_close": True,
    "lenient_optional_cr_before_lf": True,
    "lenient_optional_lf_after_cr": True,
    "lenient_spaces_after_chunk_size": True,
}
"""llhttp leniencies that keep every message boundary at a ``CR`` or ``LF`` (careful
feeding relies on it), so not ``optional_crlf_after_chunk``.  llhttp 9 ties a
request line ended by a bare ``LF`` (sent by some clients and test tools) to
``optional_lf_after_cr``."""

_REQUEST_FIELDS: Dict[bytes, str] = {
    b"host": "host",
    b"user-agent": "user_agent",
    b"content-type": "content_type",
    b"referer": "referrer",
    b"transfer-encoding": "transfer_encoding",
}
_RESPONSE_FIELDS: Dict[bytes, str] = {
    b"content-length": "content_length",
    b"content-type": "content_type",
    b"content-encoding": "content_encoding",
    b"transfer-encoding": "transfer_encoding",
}


class _Txn:
    """A transaction being built: the request half, and the response once paired."""

    __slots__ = (
        "ts", "depth", "method", "uri", "version", "host", "user_agent", "content_type",
        "referrer", "transfer_encoding", "body_len", "truncated", "done", "complete",
        "orphan", "upgrade", "resp", "info_codes",
    )

    def __init__(self, ts: Timestamp) -> None:
        self.ts = ts
        self.depth = 0
        self.method: Optional[str] = None
        self.uri: Optional[bytes] = None
        self.version: Optional[str] = None
        self.host: Optional[str] = None
        self.user_agent: Optional[str] = None
        self.content_type: Optional[str] = None
        self.referrer: Optional[str] = None
        self.transfer_encoding: Optional[str] = None
        self.body_len = 0
        self.truncated = False
        self.done = False
        """No more request bytes will come (complete or cut)."""
        self.complete = False
        self.orphan = False
        """No response will ever come: emit as soon as the request is done."""
        self.upgrade = False
        """A CONNECT or Upgrade request: the client direction is held until its answer."""
        self.resp: Optional[_Resp] = None
        self.info_codes: List[int] = []


class _Resp:
    """A response being parsed."""

    __slots__ = (
        "ts", "status", "reason", "version", "content_type", "content_encoding",
        "transfer_encoding", "content_length", "remaining", "eof_framed", "body_len", "truncated",
        "headers_done", "done", "complete", "txn",
    )

    def __init__(self, ts: Timestamp) -> None:
        self.ts = ts
        self.status = 0
        self.reason = b""
        self.version: Optional[str] = None
        self.content_type: Optional[str] = None
        self.content_encoding: Optional[str] = None
        self.transfer_encoding: Optional[str] = None
        self.content_length = -1
        """-1 absent, -2 unusable (repeated, not decimal), else the value."""
        self.remaining = 0
        """Bytes still expected by Content-Length or by the current chunk (0: unknown)."""
        self.eof_framed = False
        """The body runs until the connection closes (no Content-Length, not chunked)."""
        self.body_len = 0
        self.truncated = False
        self.headers_done = False
        self.done = False
        self.complete = False
        self.txn: Optional[_Txn] = None


class _Side:
    """What both directions share: state, the llhttp parser, the header-size guard."""

    __slots__ = (
        "s", "direction", "state", "ts", "pending", "pending_ts", "hdr_open", "hdr_fed", "hcount",
        "max_headers", "max_value",
    )

    def __init__(self, session: HttpSessionParser) -> None:
        self.s = session
        self.direction = Direction.ORIG
        self.state = _SNIFF
        self.ts: Timestamp = 0
        self.pending = b""
        """First bytes kept while the start line is too short to judge."""
        self.pending_ts: Timestamp = 0
        self.hdr_open = False
        """True between a message's first byte and the end of its header section."""
        self.hdr_fed = 0
        self.hcount = 0
        self.max_headers = session._cfg.max_headers
        self.max_value = session._cfg.max_value_bytes

    def feed(self, data: bytes, ts: Timestamp) -> None:
        """Parse in-order bytes of this direction (after its first line was checked)."""
        raise NotImplementedError

    def stop(self, eof: bool = False) -> None:
        """Parse no more bytes of this direction, emitting what it had pending."""
        raise NotImplementedError

    def _value(self, value: bytes) -> Tuple[str, bool]:
        """A header value as text (latin-1, trailing blanks off), and whether it was cut."""
        limit = self.max_value
        if len(value) > limit:
            return value[:limit].rstrip(b" \t").decode("latin-1"), True
        return value.rstrip(b" \t").decode("latin-1"), False

    def _guard_headers(self, fed: int, ts: Timestamp) -> None:
        """Fail the flow when a header section outgrows ``max_header_bytes`` (call only while one is open)."""
        if self.state == _ACTIVE:
            self.hdr_fed += fed
            if self.hdr_fed > self.s._cfg.max_header_bytes:
                limit = self.s._cfg.max_header_bytes
                self.s._fail(self.direction, "header_section_too_large", f"more than {limit} bytes", ts)


class _RequestSide(_Side):
    """The client direction; also the httptools callback object for requests."""

    __slots__ = ("parser", "cur", "held")

    def __init__(self, session: HttpSessionParser) -> None:
        super().__init__(session)
        self.parser: HttpRequestParser = session._new_request_parser(self)
        self.cur: Optional[_Txn] = None
        self.held = b""

    # httptools callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        if self.state != _ACTIVE:
            return
        self.cur = _Txn(self.ts)
        self.hdr_open = True
        self.hdr_fed = 0
        self.hcount = 0

    def on_url(self, url: bytes) -> None:
        cur = self.cur
        if cur is None:
            return
        limit = self.s._cfg.max_uri_bytes
        have = cur.uri
        if have is None:
            have = b""
        if len(have) + len(url) > limit:
            cur.truncated = True
            url = url[: max(0, limit - len(have))]
        cur.uri = have + url if have else url

    def on_header(self, name: bytes, value: bytes) -> None:
        cur = self.cur
        if cur is None or not self.hdr_open:
            return
        count = self.hcount = self.hcount + 1
        if count > self.max_headers:
            cur.truncated = True
            return
        attr = _REQUEST_FIELDS.get(name.lower())
        if attr is not None and getattr(cur, attr) is None:
            text, cut = self._value(value)
            setattr(cur, attr, text)
            if cut:
                cur.truncated = True

    def on_headers_complete(self) -> None:
        cur = self.cur
        if cur is None:
            return
        self.hdr_open = False
        p = self.parser
        cur.method = p.get_method().decode("ascii", "replace")
        cur.version = "HTTP/" + p.get_http_version()
        cur.upgrade = cur.method == "CONNECT" or p.should_upgrade()
        self.s._request_headers(cur)

    def on_body(self, body: bytes) -> None:
        cur = self.cur
        if cur is not None:
            cur.body_len += len(body)

    def on_message_complete(self) -> None:
        cur = self.cur
        if cur is None:
            return
        self.cur = None
        cur.complete = True
        self.s._request_done(cur)

    # feeding --------------------------------------------------------------

    def feed(self, data: bytes, ts: Timestamp) -> None:
        """Parse in-order client bytes (or hold them after CONNECT/Upgrade)."""
        if self.state == _HOLD:
            self._hold(data)
            return
        if self.state != _ACTIVE:
            return
        self.ts = ts
        s = self.s
        try:
            self.parser.feed_data(data)
        except s._upgrade_exc as exc:
            self.state = _HOLD
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            self._hold(data[offset:])
            return
        except s._parse_exc as exc:
            _reraise_interrupt(exc)
            self._salvage()
            s._fail(self.direction, "request_malformed", str(exc), ts)
            return
        if self.hdr_open:
            self._guard_headers(len(data), ts)

    def _salvage(self) -> None:
        """llhttp failed inside a header section: keep the request if its request line was sound.

        tshark and Zeek still report such a request, with the fields read so far
        (less the field just before the fault: httptools hands a field over only
        when the next one starts).
        """
        cur = self.cur
        if cur is None or cur.method is not None or cur.uri is None:
            return
        version = self.parser.get_http_version()
        if version not in ("1.0", "1.1"):
            return
        cur.method = self.parser.get_method().decode("ascii", "replace")
        cur.version = "HTTP/" + version
        cur.truncated = True
        self.hdr_open = False
        self.s._request_headers(cur)

    def _hold(self, data: bytes) -> None:
        if self.s._resp.state == _STOPPED:
            self.stop()
            return
        if len(self.held) + len(data) > self.s._cfg.max_held_bytes:
            self.stop()
            return
        self.held += data

    def release(self) -> None:
        """The CONNECT/Upgrade was refused: what the client sent meanwhile is HTTP again."""
        if self.state != _HOLD:
            return
        self.state = _ACTIVE
        held, self.held = self.held, b""
        if held:
            self.feed(held, self.ts)

    def stop(self, eof: bool = False) -> None:
        """No more client bytes will be parsed: finish the request in progress, if it got far enough."""
        if self.state == _STOPPED:
            return
        self.state = _STOPPED
        self.pending = b""
        self.held = b""
        cur = self.cur
        self.cur = None
        if cur is not None and cur.method is not None:
            self.s._request_done(cur)


class _ResponseSide(_Side):
    """The server direction; also the httptools callback object for responses."""

    __slots__ = ("parser", "cur", "hc", "chunk", "line")

    def __init__(self, session: HttpSessionParser) -> None:
        super().__init__(session)
        self.parser: HttpResponseParser = session._new_response_parser(self)
        self.cur: Optional[_Resp] = None
        self.hc: Optional[_Resp] = None
        """The response whose headers completed during the last careful piece."""
        self.chunk = False
        """A chunk-size line ended during the last careful piece."""
        self.line = b""
        """The start of the line being fed in careful pieces (for chunk sizes).  Reset
        whenever bytes are fed whole, so at worst it holds the tail of a size line,
        which reads as a smaller size: pieces are then only shorter than they could be."""

    # httptools callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        if self.state != _ACTIVE:
            return
        self.cur = _Resp(self.ts)
        self.hdr_open = True
        self.hdr_fed = 0
        self.hcount = 0

    def on_status(self, status: bytes) -> None:
        cur = self.cur
        if cur is not None and len(cur.reason) < self.s._cfg.max_value_bytes:
            cur.reason += status[: self.s._cfg.max_value_bytes - len(cur.reason)]

    def on_header(self, name: bytes, value: bytes) -> None:
        cur = self.cur
        if cur is None or not self.hdr_open:
            return
        count = self.hcount = self.hcount + 1
        if count > self.max_headers:
            cur.truncated = True
            return
        attr = _RESPONSE_FIELDS.get(name.lower())
        if attr is None:
            return
        if attr == "content_length":
            digits = value.strip(b" \t")
            if cur.content_length == -1 and digits.isdigit() and len(digits) < 19:
                cur.content_length = int(digits)
            else:
                cur.content_length = -2
        elif getattr(cur, attr) is None:
            text, cut = self._value(value)
            setattr(cur, attr, text)
            if cut:
                cur.truncated = True

    def on_headers_complete(self) -> None:
        cur = self.cur
        if cur is None:
            return
        self.hdr_open = False
        p = self.parser
        status = p.get_status_code()
        cur.status = status
        cur.version = "HTTP/" + p.get_http_version()
        cur.headers_done = True
        s = self.s
        if status >= 200 or status == 101:
            txn = cur.txn = s._take_request()
            if status == 101:
                s._switched = True
            elif status != 204 and status != 304 and (txn is None or txn.method not in _NO_BODY_METHODS):
                coding = cur.transfer_encoding
                if coding is not None:
                    cur.eof_framed = coding.rpartition(",")[2].strip().lower() != "chunked"
                elif cur.content_length > 0:
                    cur.remaining = cur.content_length
                elif cur.content_length == -1:
                    cur.eof_framed = True
        self.hc = cur

    def on_chunk_header(self) -> None:
        self.chunk = True

    def on_body(self, body: bytes) -> None:
        cur = self.cur
        if cur is not None:
            cur.body_len += len(body)
            if cur.remaining:
                cur.remaining = max(0, cur.remaining - len(body))

    def on_message_complete(self) -> None:
        cur = self.cur
        if cur is None:
            return
        self.cur = None
        cur.done = cur.complete = True
        self.s._response_done(cur)

    # feeding --------------------------------------------------------------

    def feed(self, data: bytes, ts: Timestamp) -> None:
        """Parse in-order server bytes: in one go, or in careful pieces while HEAD/CONNECT wait."""
        if self.state != _ACTIVE:
            return
        self.ts = ts
        if not self.s._no_body_pending:
            self.line = b""
            self._feed_piece(data, ts)
            return
        pos, n = 0, len(data)
        while pos < n and self.state == _ACTIVE:
            if not self.s._no_body_pending:
                self.line = b""
                self._feed_piece(data[pos:], ts)
                return
            cur = self.cur
            if cur is not None and cur.remaining:
                end = min(n, pos + cur.remaining)
            elif cur is not None and cur.eof_framed:
                end = n
            else:
                nl = data.find(b"\n", pos)
                end = n if nl < 0 else nl + 1
                cr = data.find(b"\r", pos, end - 1)
                if cr >= 0:
                    end = cr + 1
            piece = data[pos:end] if pos or end < n else data
            pos = end
            self.hc = None
            self.chunk = False
            self._feed_piece(piece, ts)
            if self.state != _ACTIVE:
                return
            line = self.line
            if self.chunk and self.cur is not None:
                self.cur.remaining = _chunk_size(line + piece)
            if piece[-1:] == b"\n":
                self.line = b""
            elif len(line) < _CHUNK_LINE:
                self.line = line + piece[: _CHUNK_LINE - len(line)]
            hc = self.hc
            if hc is not None:
                self._after_headers(hc)

    def _feed_piece(self, piece: bytes, ts: Timestamp) -> None:
        s = self.s
        try:
            self.parser.feed_data(piece)
        except (s._upgrade_exc, s._parse_exc) as exc:
            _reraise_interrupt(exc)
            if s._switched:
                s._finish_flow()
            else:
                self._salvage()
                s._fail(self.direction, "response_malformed", str(exc), ts)
            return
        if s._switched:
            s._finish_flow()
            return
        if self.hdr_open:
            self._guard_headers(len(piece), ts)

    def _salvage(self) -> None:
        """llhttp failed inside a header section: keep the response if its status line was sound."""
        cur = self.cur
        if cur is None or cur.headers_done:
            return
        p = self.parser
        version, status = p.get_http_version(), p.get_status_code()
        if version not in ("1.0", "1.1") or not 100 <= status <= 599 or not (cur.reason or self.hcount):
            return
        cur.status = status
        cur.version = "HTTP/" + version
        cur.truncated = True
        cur.headers_done = True
        self.hdr_open = False
        if status >= 200 or status == 101:
            cur.txn = self.s._take_request()

    def _after_headers(self, resp: _Resp) -> None:
        """A response's headers ended exactly at a piece end: apply what llhttp cannot know."""
        txn = resp.txn
        if txn is None or resp.status < 200:
            return
        if txn.method == "HEAD":
            if not resp.done:
                self._finish(resp, complete=True)
                self.parser = self.s._new_response_parser(self)
        elif txn.method == "CONNECT" and resp.status < 300:
            if not resp.done:
                self._finish(resp, complete=True)
            self.s._finish_flow()

    def _finish(self, resp: _Resp, complete: bool) -> None:
        self.cur = None
        resp.done = True
        resp.complete = complete
        self.s._response_done(resp)

    def stop(self, eof: bool = False) -> None:
        """No more server bytes: finish the response in progress, release every pending request."""
        if self.state == _STOPPED:
            return
        self.state = _STOPPED
        self.pending = b""
        cur = self.cur
        if cur is not None and cur.headers_done and not cur.done:
            self._finish(cur, complete=eof and cur.eof_framed)
        self.cur = None
        self.s._no_response_will_come()


_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})(?![0-9A-Fa-f])")
_CHUNK_LINE = 32
"""Bytes of a chunk-size line kept to read the size (15 hex digits and some blanks)."""


def _chunk_size(line: bytes) -> int:
    """The size on a chunk-size line, or 0 when it is not plain hex (then pieces stay line-sized)."""
    m = _CHUNK_SIZE.match(line)
    return int(m.group(1), 16) if m is not None else 0


# --------------------------------------------------------------------------- the session


class HttpSessionParser:
    """Parses one TCP flow's HTTP/1.x in both directions (see the module docstring)."""

    __slots__ = (
        "_cfg", "_req_cls", "_resp_cls", "_parse_exc", "_upgrade_exc", "_req", "_resp",
        "_by_dir", "_pre", "_pre_ts", "_pre_dead", "_queue", "_no_body_pending", "_skip",
        "_depth", "_orphan_info", "_switched", "_done", "_out",
    )

    def __init__(self, config: Optional[HttpConfig] = None) -> None:
        from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser

        self._cfg = config if config is not None else HttpConfig()
        self._req_cls = HttpRequestParser
        self._resp_cls = HttpResponseParser
        self._parse_exc = HttpParserError
        self._upgrade_exc = HttpParserUpgrade
        self._queue: Deque[_Txn] = deque()
        self._no_body_pending = 0
        """How many pending requests are HEAD or CONNECT (careful feeding while non-zero)."""
        self._skip = 0
        """Final responses still owed to requests evicted from the full queue."""
        self._depth = 0
        self._orphan_info: List[int] = []
        self._switched = False
        self._done = False
        self._out: List[HttpEvent] = []
        self._req = _RequestSide(self)
        self._resp = _ResponseSide(self)
        self._by_dir: List[Optional[_Side]] = [None, None]
        self._pre: List[bytes] = [b"", b""]
        self._pre_ts: List[Timestamp] = [0, 0]
        self._pre_dead = [False, False]

    # SessionParser --------------------------------------------------------

    def data(self, direction: Direction, data: bytes, ts: Timestamp) -> Sequence[HttpEvent]:
        """In-order bytes of ``direction``."""
        out: List[HttpEvent] = []
        self._out = out
        if self._done or not data:
            return out
        side = self._by_dir[direction]
        if side is None:
            self._first_data(direction, data, ts)
        elif side.state == _SNIFF:
            self._sync(side, data, ts)
        else:
            side.feed(data, ts)
        if self._done:
            self._unlink()
        return out

    def gap(self, direction: Direction, length: int, ts: Timestamp) -> Sequence[HttpEvent]:
        """A hole in ``direction``: emit what it had pending and stop parsing it."""
        return self._stop_direction(direction, eof=False)

    def end(self, direction: Direction, ts: Timestamp) -> Sequence[HttpEvent]:
        """``direction`` is closed: a response framed by the close is complete now."""
        return self._stop_direction(direction, eof=True)

    def close(self, ts: Timestamp) -> Sequence[HttpEvent]:
        """The flow is over: emit every transaction still pending."""
        out: List[HttpEvent] = []
        self._out = out
        if not self._done:
            self._finish_flow(eof=True)
        self._unlink()
        return out

    # roles ----------------------------------------------------------------

    def _first_data(self, d: Direction, data: bytes, ts: Timestamp) -> None:
        """Bytes of a direction while no role is known: the first decisive line sets both roles."""
        if self._pre_dead[d]:
            return
        if self._pre[d]:
            buf, ts0 = self._pre[d] + data, self._pre_ts[d]
        else:
            buf, ts0 = data, ts
        kind = _sniff(buf, self._cfg.detect_lookahead)
        if kind == _MORE:
            self._pre[d], self._pre_ts[d] = buf, ts0
            return
        self._pre[d] = b""
        if kind == _NEITHER:
            self._fail(d, "not_http", "the first line is neither an HTTP/1.x request line nor a status line", ts)
            return
        client = d if kind == _REQUEST else d.other
        self._req.direction, self._resp.direction = client, client.other
        self._by_dir[client], self._by_dir[client.other] = self._req, self._resp
        other = d.other
        other_side = self._by_dir[other]
        if other_side is not None:
            if self._pre_dead[other]:
                other_side.stop()
            elif self._pre[other]:
                other_side.pending, other_side.pending_ts = self._pre[other], self._pre_ts[other]
                self._pre[other] = b""
        mine = self._by_dir[d]
        if mine is not None:
            mine.state = _ACTIVE
            mine.feed(buf, ts0)

    def _sync(self, side: _Side, data: bytes, ts: Timestamp) -> None:
        """First bytes of a direction whose role is known: they must start the right kind of message."""
        if side.pending:
            buf, ts0 = side.pending + data, side.pending_ts
        else:
            buf, ts0 = data, ts
        kind = _sniff(buf, self._cfg.detect_lookahead)
        if kind == _MORE:
            side.pending, side.pending_ts = buf, ts0
            return
        side.pending = b""
        want = _REQUEST if side is self._req else _RESPONSE
        if kind != want:
            what = "request" if want == _REQUEST else "status"
            message = f"does not begin with an HTTP/1.x {what} line (capture started mid-message?); ignored"
            self._out.append(
                HttpError(
                    ts=ts, reason="unsynchronised", message=message, direction=_LABEL[side.direction], fatal=False
                )
            )
            side.stop()
            return
        side.state = _ACTIVE
        side.feed(buf, ts0)

    def _stop_direction(self, d: Direction, eof: bool) -> List[HttpEvent]:
        out: List[HttpEvent] = []
        self._out = out
        if self._done:
            return out
        side = self._by_dir[d]
        if side is None:
            self._pre_dead[d] = True
            self._pre[d] = b""
        else:
            side.stop(eof)
        if self._done:
            self._unlink()
        return out

    # pairing --------------------------------------------------------------

    def _request_headers(self, txn: _Txn) -> None:
        """A request's headers are complete: it may now be answered."""
        self._depth += 1
        txn.depth = self._depth
        if self._resp.state == _STOPPED:
            txn.orphan = True
            return
        queue = self._queue
        if len(queue) >= self._cfg.max_pending_requests:
            old = queue.popleft()
            if old.method in _NO_BODY_METHODS:
                self._no_body_pending -= 1
            old.orphan = True
            self._skip += 1
            if old.done:
                self._emit(old)
        queue.append(txn)
        if txn.method in _NO_BODY_METHODS:
            self._no_body_pending += 1

    def _request_done(self, txn: _Txn) -> None:
        """No more bytes of this request will come: emit it if its answer is settled."""
        txn.done = True
        if txn.resp is not None or txn.orphan:
            self._emit(txn)

    def _take_request(self) -> Optional[_Txn]:
        """The request a final response answers (``None`` when there is none to pair)."""
        if self._skip:
            self._skip -= 1
            return None
        if not self._queue:
            return None
        txn = self._queue.popleft()
        if txn.method in _NO_BODY_METHODS:
            self._no_body_pending -= 1
        return txn

    def _response_done(self, resp: _Resp) -> None:
        """A response ended (or was cut): record an interim code, or settle its transaction."""
        status = resp.status
        if status < 200 and status != 101:
            codes = self._queue[0].info_codes if self._queue else self._orphan_info
            if len(codes) < self._cfg.max_info_codes:
                codes.append(status)
            return
        txn = resp.txn
        if txn is None:
            self._depth += 1
            txn = _Txn(resp.ts)
            txn.depth = self._depth
            txn.done = True
            txn.info_codes, self._orphan_info = self._orphan_info, []
        txn.resp = resp
        if txn.done or self._req.state == _STOPPED:
            self._emit(txn)
        if txn.upgrade and not self._switched and not (txn.method == "CONNECT" and status < 300):
            self._req.release()

    def _no_response_will_come(self) -> None:
        """The server direction stopped: every pending request is emitted unanswered."""
        queue = self._queue
        while queue:
            txn = queue.popleft()
            txn.orphan = True
            if txn.done:
                self._emit(txn)
        self._no_body_pending = 0
        if self._req.state == _HOLD:
            self._req.stop()

    def _emit(self, txn: _Txn) -> None:
        resp = txn.resp
        # The transaction is written once; unlinking it from its response leaves no
        # request <-> response cycle for the garbage collector (resp.txn stays: the
        # response side may still read it, e.g. for a CONNECT answered without a body).
        txn.resp = None
        uri = txn.uri
        self._out.append(
            HttpTransaction(
                ts=txn.ts if txn.method is not None or resp is None else resp.ts,
                trans_depth=txn.depth,
                method=txn.method,
                host=txn.host,
                uri=None if uri is None else uri.decode("latin-1"),
                version=txn.version,
                user_agent=txn.user_agent,
                request_content_type=txn.content_type,
                status_code=None if resp is None else resp.status,
                response_content_type=None if resp is None else resp.content_type,
                request_body_len=txn.body_len,
                response_body_len=0 if resp is None else resp.body_len,
                status_msg=None if resp is None else resp.reason.decode("latin-1"),
                response_version=None if resp is None else resp.version,
                referrer=txn.referrer,
                request_transfer_encoding=txn.transfer_encoding,
                response_transfer_encoding=None if resp is None else resp.transfer_encoding,
                content_encoding=None if resp is None else resp.content_encoding,
                info_codes=tuple(txn.info_codes),
                request_headers_truncated=txn.truncated,
                response_headers_truncated=False if resp is None else resp.truncated,
                request_complete=txn.complete,
                response_complete=False if resp is None else resp.complete,
            )
        )

    # ending ---------------------------------------------------------------

    def _fail(self, d: Direction, reason: str, message: str, ts: Timestamp) -> None:
        """Malformed traffic: say so, emit what is pending, stop the flow."""
        if self._done:
            return
        self._out.append(HttpError(ts=ts, reason=reason, message=message, direction=_LABEL[d], fatal=True))
        self._finish_flow()

    def _finish_flow(self, eof: bool = False) -> None:
        """Stop both directions (responses first, so unanswered requests come out in order)."""
        if self._done:
            return
        self._done = True
        self._resp.stop(eof)
        self._req.stop(eof)

    def _unlink(self) -> None:
        """Once done, break the reference cycles (session <-> side <-> llhttp parser,
        which holds the side's bound callbacks), so the flow's parser state is freed
        by reference counting as soon as the engine lets go, without waiting for the
        cyclic garbage collector.  Called only on the way out of the public methods,
        when no side method is still running; a done session touches no side again."""
        for side in (self._req, self._resp):
            if hasattr(side, "s"):
                del side.parser
                del side.s

    # parser construction -------------------------------------------------

    def _new_request_parser(self, side: _RequestSide) -> HttpRequestParser:
        parser = self._req_cls(side)
        if self._cfg.lenient:
            _relax(parser)
        return parser

    def _new_response_parser(self, side: _ResponseSide) -> HttpResponseParser:
        parser = self._resp_cls(side)
        if self._cfg.lenient:
            _relax(parser)
        return parser


def _relax(parser: Union[HttpRequestParser, HttpResponseParser]) -> None:
    """Apply :data:`_LENIENCIES` (httptools older than 0.6.2 has no such switch: parse strictly)."""
    try:
        parser.set_dangerous_leniencies(**_LENIENCIES)
    except (AttributeError, TypeError):
        pass


# --------------------------------------------------------------------------- factory

_PORTS: FrozenSet[int] = frozenset({80, 81, 591, 3128, 8000, 8008, 8080, 8081, 8088, 8118, 8888})
"""IANA's http and http-alt ports, common development ports, Squid (3128) and Privoxy (8118)."""


class HttpParserFactory:
    """Recognises HTTP/1.x by its first line, on any port, and makes :class:`HttpSessionParser`."""

    __slots__ = ("_config",)

    def __init__(self, config: Optional[HttpConfig] = None) -> None:
        self._config = config if config is not None else HttpConfig()

    @property
    def name(self) -> str:
        """``http``: the flow's service and the transactions' ``event_type``."""
        return "http"

    @property
    def ports(self) -> FrozenSet[int]:
        """Ports tried first; HTTP is recognised on every port."""
        return _PORTS

    @property
    def config(self) -> HttpConfig:
        """The bounds given to every parser this factory makes."""
        return self._config

    def detect(self, direction: Direction, data: bytes, flow: FlowInfo) -> Detection:
        """``MATCH`` on a request line or a status line at the start of ``data``.

        ``data`` is the direction's first bytes.  ``NEED_MORE`` while the first
        line is incomplete but still plausible and shorter than
        ``detect_lookahead``.  Works without httptools.
        """
        kind = _sniff(data, self._config.detect_lookahead)
        if kind == _MORE:
            return Detection.NEED_MORE
        if kind == _NEITHER:
            return Detection.NO_MATCH
        return Detection.MATCH

    def create(self, flow: FlowInfo) -> HttpSessionParser:
        """A parser for one flow; raises :class:`MissingExtraError` without httptools."""
        try:
            import httptools  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError("http", "http") from exc
        return HttpSessionParser(self._config)


def factory() -> HttpParserFactory:
    """The ``flowscope.parsers`` entry point: an HTTP factory with default bounds."""
    return HttpParserFactory()
