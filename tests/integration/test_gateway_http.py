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
