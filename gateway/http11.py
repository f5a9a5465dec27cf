"""Sans-I/O HTTP/1.1, server side: bytes in, request heads and body pieces out; responses in,
bytes out. No sockets and no trio here (``gateway/http.py`` moves the bytes), so every rule is
tested on plain bytes (tests/unit/gateway/test_http11.py). It replaced h11 in the gateway: the
same rules where h11 had them, stricter where noted, at about half the CPU per request.

Theory of operation. One ``ServerConnection`` per TCP connection, two halves:

- the client's (``their_state``): IDLE (waiting for a request head) -> BODY (its body is being
  read) -> DONE; CLOSED when the client closed cleanly between requests; ERROR once it sent
  something refused (``RemoteProtocolError``, with the status to answer: 400, or 431 for a head
  too large, which http.py answers as 400 RequestHeaderSectionTooLarge).
- ours (``our_state``): IDLE (no response yet) -> BODY (head sent, body going out) -> DONE.
- ``start_next_cycle()`` puts both back to IDLE when the connection may carry another request
  (``keep_alive``); bytes of a pipelined request wait in the buffer meanwhile (PAUSED).

Accepted requests (RFC 9112):
- request line ``method SP target SP HTTP/1.x``: the method a token (so ASCII), the target
  visible ASCII; lines end in CRLF or a bare LF (RFC 9112 §2.2 lets a recipient accept it, as
  h11 did); a bare CR, a leading empty line or leading whitespace is refused.
- fields ``token ":" OWS value OWS``: values of visible characters, obs-text and inner
  spaces/tabs, never NUL, CR, LF or other whitespace; names lower-cased, values latin-1, order
  and repeats kept. The head (request line, fields, blank line) is at most ``max_header_bytes``.
- refused with 400 (request-smuggling defences): obs-fold (a line starting with SP/HTAB;
  stricter than h11, which unfolded it); Content-Length together with Transfer-Encoding
  (stricter than h11, which let chunked win); Transfer-Encoding other than one ``chunked``;
  Content-Length not 1-20 digits, or repeated with different values (equal repeats, and
  ``5, 5``, collapse to one field, as in h11); HTTP/1.1 without Host, more than one Host;
  an HTTP major version other than 1 (h11 took any).
- chunked bodies: ``hex-size [;extensions] OWS CRLF`` (extensions ignored, size < 2**64), the
  data, CRLF; a last chunk ``0`` then a trailer section (fields checked, bounded by
  ``max_header_bytes``, discarded). A size line over that bound, or data not followed by CRLF,
  is refused. No body at all unless Content-Length or chunked says so.
- keep-alive: HTTP/1.1 unless a ``Connection: close`` (request or response); HTTP/1.0 never.
- ``Expect: 100-continue`` (HTTP/1.1, with a body to come): ``client_waiting_for_continue``
  until we send 100 Continue or a final response, or a body byte arrives.

Responses: the status line carries the standard reason phrase (botocore needs one). Framing is
this module's job (a caller's Content-Length, Transfer-Encoding or Connection field is a
``LocalProtocolError``): no body for HEAD, 204 and 304; a given length is enforced (too much or
too little body is a ``LocalProtocolError``); otherwise chunked to HTTP/1.1 and delimited by
closing to HTTP/1.0. ``connection: close`` is added whenever the connection will not be reused.
Field names must be tokens and values valid field values (checked in one pass over the joined
head, one line per field, so a value can never inject a line), all ASCII.

One module rather than a reader and a writer (h11 has both): the two halves share the
connection's state (keep-alive, the request's method and version, Expect).
"""

from __future__ import annotations

import http
import re
from typing import NamedTuple

__all__ = ["ServerConnection", "Request", "RemoteProtocolError", "LocalProtocolError",
           "NEED_DATA", "END_OF_MESSAGE", "CLOSED", "PAUSED", "IDLE", "BODY", "DONE", "ERROR"]


class RemoteProtocolError(Exception):
    """The client sent something this server refuses; answer ``status_hint`` and close."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class LocalProtocolError(Exception):
    """The caller misused the protocol (e.g. more body than the declared Content-Length)."""


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")            # feed more bytes (receive_data) and ask again
END_OF_MESSAGE = _Sentinel("END_OF_MESSAGE")  # the request body is complete
CLOSED = _Sentinel("CLOSED")                  # the client closed cleanly between requests
PAUSED = _Sentinel("PAUSED")                  # a request is complete: respond, start_next_cycle
IDLE, BODY, DONE, ERROR = (_Sentinel(n) for n in ("IDLE", "BODY", "DONE", "ERROR"))


class Request(NamedTuple):
    method: str
    target: str
    http_version: str                # "1.0" or "1.1"
    headers: list[tuple[str, str]]   # (lower-case name, latin-1 value), in order, repeats kept
    index: dict[str, str]            # the first value of each name


_TOKEN = r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_VCHAR = r"[^\x00\t\n\x0b\x0c\r ]"  # visible, obs-text, controls but NUL and whitespace (as h11)
_VALUE = rf"(?:{_VCHAR}+(?:[ \t]+{_VCHAR}+)*)?"
_FIELDS_RE = re.compile(rf"(?:{_TOKEN}:[ \t]*{_VALUE}[ \t]*\r\n)*")
_FIELD_RE = re.compile(rf"({_TOKEN}):[ \t]*({_VALUE})[ \t]*\r\n")
_REQUEST_LINE_RE = re.compile(rf"({_TOKEN}) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_RESPONSE_FIELDS_RE = re.compile(rf"(?:{_TOKEN}: {_VALUE}\r\n)*")
_HEAD_END_RE = re.compile(rb"\n\r?\n")
_CHUNK_SIZE_RE = re.compile(rb"0*([0-9A-Fa-f]{1,16})(?:;[^\r\n\x00]*)?[ \t]*")
_CONTENT_LENGTH_RE = re.compile(r"[0-9]{1,20}")
_FRAMING_NAMES = frozenset({"content-length", "transfer-encoding", "connection"})
_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _tokens(value: str | None) -> list[str]:
    """The comma-separated tokens of a field value, lower-cased (``Connection``, ``Expect``)."""
    if value is None:
        return []
    return [p.strip() for p in value.lower().split(",")]


def _parse_fields(text: str, what: str) -> list[tuple[str, str]]:
    """Fields from ``text`` (lines each ending in CRLF). Raises RemoteProtocolError."""
    if _FIELDS_RE.fullmatch(text) is None:
        for line in text.split("\r\n"):
            if line[:1] in (" ", "\t"):
                raise RemoteProtocolError(f"obsolete line folding in {what}")
            if line and _FIELD_RE.fullmatch(line + "\r\n") is None:
                raise RemoteProtocolError(f"malformed field in {what}: {line[:80]!r}")
        raise RemoteProtocolError(f"malformed {what}")  # e.g. a bare CR between lines
    return [(name.lower(), value) for name, value in _FIELD_RE.findall(text)]


def _crlf_lines(raw: bytes) -> str:
    """Decode a head as latin-1 with every line ending made CRLF (a bare LF is accepted)."""
    text = raw.decode("latin-1")
    if text.count("\n") != text.count("\r\n"):
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return text


class ServerConnection:
    """The HTTP/1.1 state of one server connection (see the module docstring).

    Args:
        max_header_bytes: the largest request head (and chunk-size line, and trailer section).
    """

    def __init__(self, max_header_bytes: int = 64 * 1024) -> None:
        self.max_header_bytes = max_header_bytes
        self.their_state = IDLE
        self.our_state = IDLE
        self.keep_alive = True
        self.client_waiting_for_continue = False
        self._buf = bytearray()
        self._eof = False
        self._searched = 0          # bytes of _buf already searched for a line end
        self._method = ""
        self._http11 = True
        self._remaining = 0         # Content-Length body: bytes still to come
        self._chunked = False
        self._chunk_left = 0        # chunked body: data bytes left in this chunk
        self._chunk_crlf = False    # chunked body: the CRLF after a chunk's data is due
        self._trailer = False       # chunked body: the last chunk came, the trailer section is due
        self._out_left: int | None = None  # response body bytes still due (None: not length-framed)
        self._out_chunked = False

    # -- receiving ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the client; ``b""`` means it closed its side (EOF)."""
        if data:
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Request | bytes | _Sentinel:
        """The next thing the client said: a ``Request``, then body pieces (non-empty ``bytes``)
        and ``END_OF_MESSAGE``; or ``NEED_DATA``, ``CLOSED``, ``PAUSED``.

        Raises:
            RemoteProtocolError: the client misbehaved; ``their_state`` is then ERROR.
        """
        state = self.their_state
        try:
            if state is BODY:
                return self._next_chunked() if self._chunked else self._next_body()
            if state is IDLE:
                return self._next_head()
        except RemoteProtocolError:
            self.their_state = ERROR
            self.keep_alive = False
            raise
        if state is DONE:
            return PAUSED
        if state is ERROR:
            raise RemoteProtocolError("the client's request was already refused")
        return CLOSED

    def _need(self, what: str) -> _Sentinel:
        if self._eof:
            raise RemoteProtocolError(f"peer closed the connection in the middle of {what}")
        return NEED_DATA

    def _next_head(self) -> Request | _Sentinel:
        buf = self._buf
        if not buf:
            if self._eof:
                self.their_state = CLOSED
                return CLOSED
            return NEED_DATA
        if buf[0] < 0x21:
            raise RemoteProtocolError("illegal request line")
        match = _HEAD_END_RE.search(buf, max(0, self._searched - 2))
        if match is None:
            if len(buf) > self.max_header_bytes:
                raise RemoteProtocolError("request head too large", 431)
            self._searched = len(buf)
            return self._need("a request head")
        end = match.end()
        if end > self.max_header_bytes:
            raise RemoteProtocolError("request head too large", 431)
        text = _crlf_lines(bytes(buf[:end]))
        del buf[:end]
        self._searched = 0
        line_end = text.index("\r\n")
        m = _REQUEST_LINE_RE.fullmatch(text, 0, line_end)
        if m is None:
            raise RemoteProtocolError(f"illegal request line: {text[:min(line_end, 80)]!r}")
        method, target, major, minor = m.groups()
        if major != "1":
            raise RemoteProtocolError(f"unsupported HTTP version {major}.{minor}")
        http11 = minor != "0"
        headers = _parse_fields(text[line_end + 2:-2], "request head")
        index = dict(reversed(headers))
        connection, expect = index.get("connection"), index.get("expect")
        if len(index) != len(headers):
            headers, index = self._check_repeats(headers, index)
            connection = ",".join(v for k, v in headers if k == "connection") or None
            expect = ",".join(v for k, v in headers if k == "expect") or None
        if http11 and "host" not in index:
            raise RemoteProtocolError("missing Host field")
        length = 0
        chunked = False
        te = index.get("transfer-encoding")
        cl = index.get("content-length")
        if te is not None:
            if cl is not None:
                raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
            if te.lower() != "chunked":
                raise RemoteProtocolError(f"unsupported Transfer-Encoding {te[:40]!r}")
            chunked = True
        elif cl is not None:
            length = self._content_length(cl)
            if "," in cl:
                headers = [(k, str(length) if k == "content-length" else v) for k, v in headers]
                index["content-length"] = str(length)
        self._method = method
        self._http11 = http11
        self.keep_alive = http11 and "close" not in _tokens(connection)
        self._chunked = chunked
        self._remaining = length
        self._chunk_left = 0
        self._chunk_crlf = self._trailer = False
        has_body = chunked or length > 0
        self.client_waiting_for_continue = has_body and http11 and "100-continue" in _tokens(expect)
        self.their_state = BODY if has_body else DONE
        return Request(method, target, "1.1" if http11 else "1.0", headers, index)

    @staticmethod
    def _content_length(value: str) -> int:
        values = {v.strip() for v in value.split(",")}
        if len(values) != 1:
            raise RemoteProtocolError("conflicting Content-Length values")
        text = values.pop()
        if _CONTENT_LENGTH_RE.fullmatch(text) is None:
            raise RemoteProtocolError(f"bad Content-Length {text[:40]!r}")
        return int(text)

    def _check_repeats(self, headers: list[tuple[str, str]],
                       index: dict[str, str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """Repeated fields: one Host, one Transfer-Encoding, Content-Lengths that agree (kept
        once, as the first)."""
        if sum(1 for k, _ in headers if k == "host") > 1:
            raise RemoteProtocolError("more than one Host field")
        if sum(1 for k, _ in headers if k == "transfer-encoding") > 1:
            raise RemoteProtocolError("more than one Transfer-Encoding field")
        lengths = [v for k, v in headers if k == "content-length"]
        if len(lengths) > 1:
            length = str(self._content_length(",".join(lengths)))
            kept: list[tuple[str, str]] = []
            for k, v in headers:
                if k != "content-length":
                    kept.append((k, v))
                elif length:
                    kept.append((k, length))
                    length = ""
            headers = kept
            index = dict(reversed(headers))
        return headers, index

    def _take(self, n: int) -> bytes:
        buf = self._buf
        if len(buf) <= n:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:n])
            del buf[:n]
        return data

    def _finish_body(self) -> _Sentinel:
        self.their_state = DONE
        self.client_waiting_for_continue = False
        return END_OF_MESSAGE

    def _next_body(self) -> bytes | _Sentinel:
        if not self._remaining:
            return self._finish_body()
        if not self._buf:
            return self._need("a request body")
        data = self._take(self._remaining)
        self._remaining -= len(data)
        self.client_waiting_for_continue = False
        return data

    def _next_chunked(self) -> bytes | _Sentinel:
        buf = self._buf
        while True:
            if self._chunk_left:
                if not buf:
                    return self._need("a chunk")
                data = self._take(self._chunk_left)
                self._chunk_left -= len(data)
                self._chunk_crlf = not self._chunk_left
                self.client_waiting_for_continue = False
                return data
            if self._chunk_crlf:
                if buf[:2] != b"\r\n"[:len(buf)]:
                    raise RemoteProtocolError("chunk data not followed by CRLF")
                if len(buf) < 2:
                    return self._need("a chunk")
                del buf[:2]
                self._chunk_crlf = False
            if self._trailer:
                return self._next_trailer()
            i = buf.find(b"\r\n", max(0, self._searched - 1))
            if i > self.max_header_bytes or i < 0 and len(buf) > self.max_header_bytes:
                raise RemoteProtocolError("chunk-size line too long")
            if i < 0:
                self._searched = len(buf)
                return self._need("a chunk-size line")
            m = _CHUNK_SIZE_RE.fullmatch(buf, 0, i)
            if m is None:
                raise RemoteProtocolError(f"illegal chunk-size line: {bytes(buf[:min(i, 40)])!r}")
            size = int(m.group(1), 16)
            del buf[:i + 2]
            self._searched = 0
            if size:
                self._chunk_left = size
            else:
                self._trailer = True

    def _next_trailer(self) -> _Sentinel:
        buf = self._buf
        for blank in (b"\n", b"\r\n"):
            if buf[:len(blank)] == blank:
                del buf[:len(blank)]
                return self._finish_body()
        match = _HEAD_END_RE.search(buf, max(0, self._searched - 2))
        if match is None:
            if len(buf) > self.max_header_bytes:
                raise RemoteProtocolError("trailer section too large", 431)
            self._searched = len(buf)
            return self._need("a trailer section")
        if match.end() > self.max_header_bytes:
            raise RemoteProtocolError("trailer section too large", 431)
        end = match.end()
        _parse_fields(_crlf_lines(bytes(buf[:end]))[:-2], "trailer section")
        del buf[:end]
        self._searched = 0
        return self._finish_body()

    # -- sending --------------------------------------------------------------------------------

    def send_continue(self) -> bytes:
        """The bytes of ``100 Continue``; the client then stops waiting."""
        self.client_waiting_for_continue = False
        return CONTINUE

    def send_response(self, status: int, headers: list[tuple[str, str]], *,
                      content_length: int | None = None, close: bool = False) -> bytes:
        """The bytes of a final response head; the body follows with ``send_data``/``send_end``.

        Args:
            status: 200-999.
            headers: (name, value) pairs, without the framing fields (Content-Length,
                Transfer-Encoding, Connection), which this adds.
            content_length: the body's length; None: chunked (HTTP/1.1) or ended by closing.
            close: the connection will not be reused (``connection: close`` is sent).

        Raises:
            LocalProtocolError: a response already started, a bad status or field.
            UnicodeEncodeError: a field is not ASCII.
        """
        if self.our_state is not IDLE:
            raise LocalProtocolError("a response was already started")
        if not 200 <= status <= 999:
            raise LocalProtocolError(f"bad final status {status!r}")
        block = "\r\n".join(map(": ".join, headers)) + "\r\n" if headers else ""
        lowered = block.lower()
        if (_RESPONSE_FIELDS_RE.fullmatch(block) is None or block.count("\n") != len(headers)
                or any(n in lowered for n in _FRAMING_NAMES)
                and any(k.lower() in _FRAMING_NAMES for k, _ in headers)):
            raise LocalProtocolError("bad or framing response field")
        no_body = status in (204, 304) or self._method == "HEAD"
        self._out_chunked = False
        if content_length is not None:
            if content_length < 0:
                raise LocalProtocolError("negative content length")
            block += f"content-length: {content_length}\r\n"
            self._out_left = 0 if no_body else content_length
        elif status in (204, 304):
            self._out_left = 0
        elif self._http11:
            block += "transfer-encoding: chunked\r\n"
            self._out_chunked = not no_body
            self._out_left = 0 if no_body else None
        else:
            close = close or not no_body
            self._out_left = 0 if no_body else None
        if close or not self.keep_alive:
            self.keep_alive = False
            block += "connection: close\r\n"
        self.client_waiting_for_continue = False
        self.our_state = BODY
        return f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n{block}\r\n".encode("ascii")

    def send_data(self, data: bytes) -> bytes:
        """The bytes that carry ``data`` as (part of) the response body."""
        if self.our_state is not BODY:
            raise LocalProtocolError("no response body is being sent")
        if self._out_chunked:
            return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        if self._out_left is not None:
            if len(data) > self._out_left:
                raise LocalProtocolError("more body than the declared Content-Length")
            self._out_left -= len(data)
        return data

    def send_end(self) -> bytes:
        """The bytes that end the response body (the last chunk, if chunked)."""
        if self.our_state is not BODY:
            raise LocalProtocolError("no response body is being sent")
        if self._out_left:
            raise LocalProtocolError("less body than the declared Content-Length")
        self.our_state = DONE
        return b"0\r\n\r\n" if self._out_chunked else b""

    def start_next_cycle(self) -> bool:
        """Ready the connection for the next request; False if it must close instead (not
        keep-alive, or the request or the response is not complete)."""
        if not (self.keep_alive and self.their_state is DONE and self.our_state is DONE):
            return False
        self.their_state = self.our_state = IDLE
        self._method = ""
        return True
