"""gateway/http11: the sans-I/O HTTP/1.1 server protocol, on plain bytes.

Table-driven malformed inputs (each refused with the right status), a hypothesis check that any
split of a byte stream of pipelined requests parses the same, the same requests checked against
h11 (still installed: the metrics server uses it) as an independent parser, and responses read
back by h11's client."""

import h11
import pytest
from hypothesis import given, settings, strategies as st

from gateway.http11 import (BODY, CLOSED, DONE, END_OF_MESSAGE, ERROR, NEED_DATA, PAUSED,
                            LocalProtocolError, RemoteProtocolError, Request, ServerConnection)


def run(pieces, *, max_header_bytes=64 * 1024, eof=True):
    """Feed ``pieces`` one by one (then EOF), answering each complete request with an empty 200.
    Returns [(method, target, version, headers, body)] and the error hint, if refused."""
    conn = ServerConnection(max_header_bytes)
    seen: list[list] = []
    for piece in list(pieces) + ([b""] if eof else []):
        conn.receive_data(piece)
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                assert conn.their_state is ERROR and not conn.keep_alive
                return seen, exc.status_hint
            if event is NEED_DATA:
                break
            if event is CLOSED:
                return seen, None
            if isinstance(event, Request):
                seen.append([event.method, event.target, event.http_version, event.headers, b""])
            elif isinstance(event, bytes):
                assert event
                seen[-1][4] += event
            else:
                assert event in (END_OF_MESSAGE, PAUSED)
            if conn.their_state is DONE and conn.our_state is not DONE:
                conn.send_response(200, [], content_length=0)
                conn.send_end()
                if not conn.start_next_cycle():
                    return seen, None
    return seen, None


def refused(raw: bytes, **kw) -> int:
    seen, hint = run([raw], **kw)
    assert hint is not None, f"accepted: {seen}"
    return hint


GOOD = b"GET / HTTP/1.1\r\nHost: h\r\n"

MALFORMED = {
    "content-length and transfer-encoding": GOOD + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "transfer-encoding then content-length": GOOD + b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
    "differing content-lengths": GOOD + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
    "differing content-length list": GOOD + b"Content-Length: 1, 2\r\n\r\nxx",
    "content-length not digits": GOOD + b"Content-Length: abc\r\n\r\n",
    "negative content-length": GOOD + b"Content-Length: -1\r\n\r\n",
    "signed content-length": GOOD + b"Content-Length: +1\r\n\r\nx",
    "content-length 21 digits": GOOD + b"Content-Length: 100000000000000000000\r\n\r\n",
    "unicode digit content-length": GOOD + b"Content-Length: \xb2\r\n\r\n",
    "empty content-length": GOOD + b"Content-Length:\r\n\r\n",
    "gzip transfer-encoding": GOOD + b"Transfer-Encoding: gzip\r\n\r\n",
    "gzip, chunked": GOOD + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
    "two transfer-encodings": GOOD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "space in name": GOOD + b"Bad Name: x\r\n\r\n",
    "space before colon": GOOD + b"X-A : x\r\n\r\n",
    "empty name": GOOD + b": x\r\n\r\n",
    "no colon": GOOD + b"X-A x\r\n\r\n",
    "NUL in name": GOOD + b"X\x00A: x\r\n\r\n",
    "NUL in value": GOOD + b"X-A: a\x00b\r\n\r\n",
    "bare CR in value": GOOD + b"X-A: a\rb\r\n\r\n",
    "vertical tab in value": GOOD + b"X-A: a\x0bb\r\n\r\n",
    "obs-fold": GOOD + b"X-A: a\r\n b\r\n\r\n",
    "obs-fold with tab": GOOD + b"X-A: a\r\n\tb\r\n\r\n",
    "bare CR line end": b"GET / HTTP/1.1\rHost: h\r\n\r\n",
    "non-ASCII method": b"G\xc9T / HTTP/1.1\r\nHost: h\r\n\r\n",
    "method with slash": b"GE/T / HTTP/1.1\r\nHost: h\r\n\r\n",
    "space in target": b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
    "non-ASCII target": b"GET /\xe9 HTTP/1.1\r\nHost: h\r\n\r\n",
    "two spaces": b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
    "trailing space after version": b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
    "lower-case version": b"GET / http/1.1\r\nHost: h\r\n\r\n",
    "HTTP/2.0": b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    "HTTP/0.9": b"GET / HTTP/0.9\r\n\r\n",
    "no version": b"GET /\r\nHost: h\r\n\r\n",
    "missing host": b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
    "two hosts": GOOD + b"Host: h\r\n\r\n",
    "two hosts in 1.0": b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    "leading CRLF": b"\r\n" + GOOD + b"\r\n",
    "leading space": b" " + GOOD + b"\r\n",
    "TLS handshake": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "EOF mid-head": GOOD,
    "EOF mid-body": GOOD + b"Content-Length: 5\r\n\r\nabc",
    "chunk size not hex": GOOD + b"Transfer-Encoding: chunked\r\n\r\nxyz\r\n",
    "chunk size 17 hex digits": GOOD + b"Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
    "chunk size with sign": GOOD + b"Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
    "chunk size bare LF": GOOD + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    "chunk data without CRLF": GOOD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n",
    "chunk data with bare LF": GOOD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
    "chunk extension with NUL": GOOD + b"Transfer-Encoding: chunked\r\n\r\n5;a\x00\r\nhello\r\n0\r\n\r\n",
    "bad trailer field": GOOD + b"Transfer-Encoding: chunked\r\n\r\n0\r\nBad Name: x\r\n\r\n",
    "EOF mid-chunk": GOOD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel",
    "EOF before last chunk": GOOD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    "EOF mid-trailer": GOOD + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-A: b\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_requests_are_refused_with_400(raw):
    assert refused(raw) == 400
    for step in (1, 7):  # the same however the bytes arrive
        seen, hint = run([raw[i:i + step] for i in range(0, len(raw), step)])
        assert hint == 400


def test_oversize_heads_and_sections_are_refused_431_or_400():
    big = GOOD + b"X-A: " + b"a" * 2000 + b"\r\n\r\n"
    assert refused(big, max_header_bytes=1024) == 431            # complete but too large
    assert refused(big[:1500], max_header_bytes=1024) == 431     # still growing, no end in sight
    assert run([big], max_header_bytes=4096)[1] is None
    chunked = GOOD + b"Transfer-Encoding: chunked\r\n\r\n"
    assert refused(chunked + b"5;" + b"e" * 2000 + b"\r\nhello\r\n0\r\n\r\n", max_header_bytes=1024) == 400
    assert refused(chunked + b"0\r\nX-A: " + b"a" * 2000 + b"\r\n\r\n", max_header_bytes=1024) == 431
    assert refused(chunked + b"0\r\nX-A: " + b"a" * 2000, max_header_bytes=1024) == 431


def test_a_refused_request_stays_refused():
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert not conn.start_next_cycle()


def test_headers_are_lower_cased_latin1_in_order_with_repeats_and_first_value_index():
    conn = ServerConnection()
    conn.receive_data(b"PUT /a?b=c HTTP/1.1\r\nHost: h\r\nX-Amz-Meta-A:  v1 \t\r\nx-amz-meta-a: v2\r\n"
                      b"X-Odd: caf\xe9 \x01ok\r\nEmpty:\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
    req = conn.next_event()
    assert req == Request("PUT", "/a?b=c", "1.1", [
        ("host", "h"), ("x-amz-meta-a", "v1"), ("x-amz-meta-a", "v2"), ("x-odd", "caf\xe9 \x01ok"),
        ("empty", ""), ("content-length", "3")], req.index)
    assert req.index["x-amz-meta-a"] == "v1" and req.index["content-length"] == "3"
    assert conn.next_event() == b"abc"
    assert conn.next_event() is END_OF_MESSAGE
    assert conn.next_event() is PAUSED


def test_content_length_list_of_equal_values_collapses():
    seen, hint = run([GOOD + b"Content-Length: 3 , 3\r\n\r\nabc"])
    assert hint is None and seen[0][3] == [("host", "h"), ("content-length", "3")] and seen[0][4] == b"abc"


def test_bare_lf_line_ends_are_accepted_in_the_head():
    seen, hint = run([b"GET /x HTTP/1.1\nHost: h\r\nX-A: b\n\nGET /y HTTP/1.1\nHost: h\n\n"])
    assert hint is None
    assert [(s[1], s[3]) for s in seen] == [("/x", [("host", "h"), ("x-a", "b")]), ("/y", [("host", "h")])]


def test_http10_needs_no_host_and_never_keeps_alive():
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n")
    assert conn.next_event().http_version == "1.0"
    assert not conn.keep_alive and conn.their_state is DONE
    head = conn.send_response(200, [("x-a", "b")])  # streamed without a length: ended by closing
    assert head == b"HTTP/1.1 200 OK\r\nx-a: b\r\nconnection: close\r\n\r\n"
    assert conn.send_data(b"abc") == b"abc" and conn.send_end() == b""
    assert not conn.start_next_cycle()


@pytest.mark.parametrize("value", ["close", "Close", "keep-alive, close", "upgrade,CLOSE"])
def test_connection_close_ends_keep_alive(value):
    conn = ServerConnection()
    conn.receive_data(GOOD + f"Connection: {value}\r\n\r\n".encode())
    conn.next_event()
    assert not conn.keep_alive
    assert conn.send_response(204, []).endswith(b"connection: close\r\n\r\n")


def test_a_response_asking_to_close_ends_keep_alive():
    conn = ServerConnection()
    conn.receive_data(GOOD + b"\r\n")
    conn.next_event()
    assert conn.keep_alive
    assert b"connection: close" in conn.send_response(200, [], content_length=0, close=True)
    conn.send_end()
    assert not conn.start_next_cycle()


def test_expect_100_continue():
    conn = ServerConnection()
    conn.receive_data(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n")
    conn.next_event()
    assert conn.client_waiting_for_continue and conn.next_event() is NEED_DATA
    assert conn.send_continue() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert not conn.client_waiting_for_continue
    for raw, waiting in [(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", False),
                         (b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", False),
                         (GOOD + b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n", True)]:
        conn = ServerConnection()
        conn.receive_data(raw)
        conn.next_event()
        assert conn.client_waiting_for_continue is waiting
    conn.receive_data(b"1\r\n")  # a body byte arrives: the client did not wait
    assert conn.client_waiting_for_continue and conn.next_event() is NEED_DATA
    conn.receive_data(b"x")
    assert conn.next_event() == b"x" and not conn.client_waiting_for_continue
    conn = ServerConnection()
    conn.receive_data(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    conn.next_event()
    conn.send_response(403, [], content_length=0)  # a final answer instead
    assert not conn.client_waiting_for_continue and conn.their_state is BODY


def test_chunked_bodies_with_extensions_and_trailers():
    raw = (GOOD + b"Transfer-Encoding: Chunked\r\n\r\n"
           b"5;name=value;flag\r\nhello\r\n00006 \r\n world\r\nA;q=\"a b\"\r\n0123456789\r\n"
           b"0;last\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n" + GOOD + b"\r\n")
    seen, hint = run([raw])
    assert hint is None and len(seen) == 2
    assert seen[0][4] == b"hello world0123456789" and seen[1][4] == b""


def test_pipelined_requests_wait_their_turn():
    conn = ServerConnection()
    conn.receive_data(GOOD + b"Content-Length: 1\r\n\r\nx" + b"DELETE /2 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert conn.next_event().method == "GET"
    assert conn.next_event() == b"x"
    assert conn.next_event() is END_OF_MESSAGE
    assert conn.next_event() is PAUSED and conn.next_event() is PAUSED
    assert not conn.start_next_cycle()  # not answered yet
    conn.send_response(200, [], content_length=0)
    conn.send_end()
    assert conn.start_next_cycle()
    assert conn.next_event().method == "DELETE"


def test_an_unread_body_blocks_the_next_cycle():
    conn = ServerConnection()
    conn.receive_data(GOOD + b"Content-Length: 3\r\n\r\n")
    conn.next_event()
    conn.send_response(200, [], content_length=0)
    conn.send_end()
    assert conn.their_state is BODY and not conn.start_next_cycle()


# -- hypothesis: any split parses the same, and as h11 parses it -------------------------------

_names = st.sampled_from(["X-Amz-Date", "x-amz-meta-k", "Content-Type", "User-Agent", "X-A", "Accept"])
_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=12).map(
    lambda v: v.replace(",", ""))
_bodies = st.binary(max_size=40)


@st.composite
def requests(draw):
    method = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "X-CUSTOM"]))
    target = "/" + draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=10))
    headers = [("Host", "h")] + draw(st.lists(st.tuples(_names, _values), max_size=4))
    body = draw(_bodies)
    lf = draw(st.booleans())
    eol = b"\n" if lf else b"\r\n"
    head = f"{method} {target} HTTP/1.1".encode() + eol
    for k, v in headers:
        head += f"{k}:{draw(st.sampled_from(['', ' ', '  ', chr(9)]))}{v}".encode() + eol
    if draw(st.booleans()):
        pieces = draw(st.lists(st.integers(1, 9), max_size=5))
        chunks, rest = [], body
        for n in pieces:
            chunks.append(rest[:n])
            rest = rest[n:]
        chunks = [c for c in chunks + [rest] if c]
        ext = draw(st.sampled_from(["", ";a=b", ";a", ";a=\"x y\";b"]))
        wire = b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext.encode(), c) for c in chunks)
        wire += b"0" + ext.encode() + b"\r\n" + draw(st.sampled_from([b"", b"X-T: v\r\n"])) + b"\r\n"
        head += b"Transfer-Encoding: chunked" + eol
    else:
        wire = body
        if body or draw(st.booleans()):
            head += b"Content-Length: %d" % len(body) + eol
    expected = [method, target, "1.1", [(k.lower(), v) for k, v in headers], body]
    if b"Transfer-Encoding" in head:
        expected[3].append(("transfer-encoding", "chunked"))
    elif b"Content-Length" in head:
        expected[3].append(("content-length", str(len(body))))
    return head + eol + wire, expected


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)]) if b > a]


@settings(max_examples=300, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=4), st.lists(st.integers(0, 10_000), max_size=30))
def test_any_split_of_pipelined_requests_parses_the_same(reqs, cuts):
    stream = b"".join(raw for raw, _ in reqs)
    whole, hint = run([stream])
    assert hint is None
    assert whole == [expected for _, expected in reqs]
    assert run(_splits(stream, cuts)) == (whole, None)
    assert run([bytes([b]) for b in stream]) == (whole, None)


@settings(max_examples=200, deadline=None)
@given(requests())
def test_requests_parse_as_h11_parses_them(req):
    raw, _ = req
    ours, _ = run([raw])
    theirs = h11.Connection(h11.SERVER)
    theirs.receive_data(raw)
    event = theirs.next_event()
    body = b""
    while not isinstance(part := theirs.next_event(), h11.EndOfMessage):
        body += part.data
    assert ours == [[event.method.decode(), event.target.decode(), event.http_version.decode(),
                     [(k.decode(), v.decode()) for k, v in event.headers], body]]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120), st.lists(st.integers(0, 200), max_size=10))
def test_arbitrary_bytes_never_crash_and_any_split_agrees(data, cuts):
    result = run([data])
    assert run(_splits(data, cuts)) == result


# -- responses ---------------------------------------------------------------------------------

def answered(request: bytes, status, headers, body_parts, **kw):
    """Our response bytes, and what h11's client reads from them."""
    conn = ServerConnection()
    conn.receive_data(request)
    conn.next_event()
    wire = conn.send_response(status, headers, **kw)
    for part in body_parts:
        wire += conn.send_data(part)
    wire += conn.send_end()
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=request.split(b" ")[0], target="/", headers=[("Host", "h")]))
    client.send(h11.EndOfMessage())
    client.receive_data(wire)
    if b"connection: close" in wire:
        client.receive_data(b"")
    resp = client.next_event()
    body = b""
    while not isinstance(part := client.next_event(), h11.EndOfMessage):
        body += part.data
    return wire, resp, body


def test_response_heads_carry_reason_phrases_and_framing():
    wire, resp, body = answered(GOOD + b"\r\n", 200, [("x-a", "b")], [b"hello"], content_length=5)
    assert wire == b"HTTP/1.1 200 OK\r\nx-a: b\r\ncontent-length: 5\r\n\r\nhello"
    assert (resp.status_code, resp.reason, body) == (200, b"OK", b"hello")
    wire, resp, body = answered(GOOD + b"\r\n", 404, [], [b"ab", b"", b"cde"])
    assert wire == b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
    assert body == b"abcde"
    wire, resp, _ = answered(GOOD + b"\r\n", 599, [], [], content_length=0)
    assert wire.startswith(b"HTTP/1.1 599 Unknown\r\n")
    wire, resp, body = answered(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", 200, [], [], content_length=1234)
    assert wire == b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n" and body == b""
    wire, _, _ = answered(GOOD + b"\r\n", 304, [("etag", '"x"')], [])
    assert wire == b'HTTP/1.1 304 Not Modified\r\netag: "x"\r\n\r\n'


def test_response_body_must_match_its_framing():
    for parts, length, status in [([b"toolong"], 3, 200), ([b"ab"], 3, 200), ([b"x"], None, 204)]:
        conn = ServerConnection()
        conn.receive_data(GOOD + b"\r\n")
        conn.next_event()
        conn.send_response(status, [], content_length=length)
        with pytest.raises(LocalProtocolError):
            for part in parts:
                conn.send_data(part)
            conn.send_end()
    conn = ServerConnection()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.next_event()
    conn.send_response(200, [], content_length=10)
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"x")


@pytest.mark.parametrize("headers", [
    [("x-a", "b\r\nx-injected: 1")], [("x-a", "b\nc")], [("x-a", "b\rc")], [("x-a", " leading")],
    [("x-a", "trailing ")], [("x-a", "nul\x00")], [("bad name", "v")], [("", "v")], [("x-a:", "v")],
    [("content-length", "5")], [("Transfer-Encoding", "chunked")], [("connection", "close")],
])
def test_bad_or_framing_response_fields_are_refused(headers):
    conn = ServerConnection()
    conn.receive_data(GOOD + b"\r\n")
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send_response(200, headers, content_length=0)


def test_non_ascii_response_fields_are_refused_and_a_value_may_mention_framing_names():
    conn = ServerConnection()
    conn.receive_data(GOOD + b"\r\n")
    conn.next_event()
    with pytest.raises(UnicodeEncodeError):
        conn.send_response(200, [("x-a", "caf\xe9")], content_length=0)
    conn = ServerConnection()
    conn.receive_data(GOOD + b"\r\n")
    conn.next_event()
    assert b"x-a: connection: close" in conn.send_response(200, [("x-a", "connection: close")], content_length=0)
    assert conn.keep_alive


def test_one_response_per_request():
    conn = ServerConnection()
    conn.receive_data(GOOD + b"\r\n")
    conn.next_event()
    conn.send_response(200, [], content_length=0)
    with pytest.raises(LocalProtocolError):
        conn.send_response(200, [], content_length=0)
    conn = ServerConnection()
    conn.receive_data(GOOD + b"\r\n")
    conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send_response(100, [])
