"""The gateway's HTTP layer over a real socket: Expect: 100-continue when a handler gives up on
the body early (the body reader is cancelled right after it asked for the body). The client
behaves like botocore: it sends the body only after a 100 Continue, then reuses the connection.
Regression: a cancelled write of the 100 left h11 believing it was sent, the client never sent
the body, and the next request lost its first byte to the drain (``UT /...`` -> 405)."""

import functools

import trio

from gateway.http import HttpLimits, HttpResponse, serve_http


async def handler(req):
    if req.method == "PUT":
        async def read_body():
            async for _ in req.body:
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_body)
            nursery.cancel_scope.cancel()  # the reader starts, asks for the body, is cancelled
        return HttpResponse(400, [("content-type", "text/plain")], b"refused")
    return HttpResponse(200, [("content-type", "text/plain")], f"{req.method} {req.target}".encode())


async def read_response(stream, buf: bytearray) -> tuple[int, bytes]:
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(4096)
        assert data, "connection closed"
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        data = await stream.receive_some(4096)
        assert data
        rest += data
    buf[:] = rest[length:]
    return status, rest[:length]


async def test_early_answer_with_expect_100_keeps_the_connection_in_step(nursery):
    host, port = await nursery.start(functools.partial(serve_http, handler, "127.0.0.1", 0, limits=HttpLimits()))
    for _ in range(20):
        stream = await trio.open_tcp_stream(host, port)
        buf = bytearray()
        await stream.send_all(b"PUT /b/k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
        status, _ = await read_response(stream, buf)
        if status == 100:
            await stream.send_all(b"x")  # as botocore does after a 100
            status, _ = await read_response(stream, buf)
        assert status == 400
        try:
            await stream.send_all(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
            status, body = await read_response(stream, buf)
        except (AssertionError, trio.BrokenResourceError):
            await stream.aclose()
            continue  # the server closed instead of reading on: also in step
        assert (status, body) == (200, b"GET /next")
        await stream.aclose()


async def echo(req):
    if req.target == "/echo":
        data = await req.body.read_all(1 << 20)
        return HttpResponse(200, [("x-received", str(req.body.received)), ("x-a", req.header("x-a") or "-")], data)
    if req.target == "/stream":
        async def parts():
            yield b"ab"
            yield b""
            yield b"cde"
        return HttpResponse(200, [("content-type", "text/plain")], parts())
    return HttpResponse(200, [], f"{req.method} {req.target}".encode())


async def serve_echo(nursery):
    return await nursery.start(functools.partial(serve_http, echo, "127.0.0.1", 0,
                                                 limits=HttpLimits(max_header_bytes=4096)))


async def read_to_eof(stream) -> bytes:
    out = b""
    with trio.fail_after(5):
        while data := await stream.receive_some(65536):
            out += data
    return out


async def test_malformed_and_oversize_requests_get_the_400_xml_and_a_close(nursery):
    host, port = await serve_echo(nursery)
    for raw, code in [(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                       b"InvalidRequest"),
                      (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n c\r\n\r\n", b"InvalidRequest"),
                      (b"G\xc9T / HTTP/1.1\r\nHost: h\r\n\r\n", b"InvalidRequest"),
                      (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: " + b"a" * 5000 + b"\r\n\r\n",
                       b"RequestHeaderSectionTooLarge")]:
        stream = await trio.open_tcp_stream(host, port)
        await stream.send_all(raw)
        out = await read_to_eof(stream)
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"connection: close" in head
        assert b"<Code>" + code + b"</Code>" in body
        await stream.aclose()


async def test_pipelined_requests_chunked_bodies_and_streamed_responses(nursery):
    host, port = await serve_echo(nursery)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
                          b"PUT /echo HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
                          b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n"
                          b"GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    out = await read_to_eof(stream)  # the server closes after the last, as asked
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 4
    first, second, third, last = out.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"\r\n\r\nGET /one")
    assert b"x-received: 5\r\nx-a: 1\r\n" in second and second.endswith(b"\r\n\r\nabcde")
    assert b"transfer-encoding: chunked" in third and third.endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")
    assert b"connection: close" in last and last.endswith(b"GET /last")


async def test_http10_and_head_and_unread_bodies(nursery):
    host, port = await serve_echo(nursery)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /old HTTP/1.0\r\n\r\n")
    out = await read_to_eof(stream)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" in out and out.endswith(b"GET /old")
    stream = await trio.open_tcp_stream(host, port)
    buf = bytearray()
    await stream.send_all(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n")
    with trio.fail_after(5):
        while b"\r\n\r\n" not in buf:
            buf += await stream.receive_some(4096)
    assert bytes(buf).endswith(b"content-length: 7\r\n\r\n")  # the length of "HEAD /x", no body
    buf.clear()
    await stream.send_all(b"POST /ignored HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")  # drained
    assert await read_response(stream, buf) == (200, b"POST /ignored")
    await stream.send_all(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
    assert await read_response(stream, buf) == (200, b"GET /after")
    await stream.send_all(b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 5000000\r\n\r\n")
    assert await read_response(stream, buf) == (200, b"POST /big")
    with trio.fail_after(5):  # too big to drain (over 1 MiB): the server closes
        try:
            await stream.send_all(b"x" * 1_100_000)
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass


async def test_expect_100_continue_is_answered_when_the_body_is_read(nursery):
    host, port = await serve_echo(nursery)
    stream = await trio.open_tcp_stream(host, port)
    buf = bytearray()
    await stream.send_all(b"PUT /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    assert await read_response(stream, buf) == (100, b"")
    await stream.send_all(b"data")
    assert await read_response(stream, buf) == (200, b"data")
    # the handler does not read the body: a final answer, then the server closes
    await stream.send_all(b"PUT /other HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    assert await read_response(stream, buf) == (200, b"PUT /other")
    assert await read_to_eof(stream) == b""


async def test_idle_timeouts_bound_reads_and_writes(autojump_clock):
    from trio.testing import lockstep_stream_pair

    from gateway.http import serve_connection
    limits = HttpLimits(idle_timeout_s=30)
    # a client that connects and says nothing: closed after the idle timeout
    client, server = lockstep_stream_pair()
    start = trio.current_time()
    await serve_connection(server, echo, limits, remote="r", scheme="http")
    assert trio.current_time() - start == 30
    # a client that asks and never reads the answer: the write gives up after the idle timeout
    client, server = lockstep_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"GET /never-read HTTP/1.1\r\nHost: h\r\n\r\n")
        start = trio.current_time()
        await serve_connection(server, echo, limits, remote="r", scheme="http")
        assert trio.current_time() - start == 30
