"""HTTP/1.1 transport for the gateway: ``gateway/http11`` (sans-I/O) over trio, streaming bodies
both ways.

The protocol logic is http11's; this module only moves bytes. For each request it builds an
``HttpRequest`` whose ``body`` is an async iterator that pulls body pieces on demand (so a 5 GiB
PUT never sits in memory), answers ``Expect: 100-continue`` on the first read (the handler
authenticates on the headers first, then reads: wire reference §4.5), and sends the handler's
``HttpResponse``, whose body may be bytes (head and body then go out in one write) or an async
iterator of bytes.

Limits: request head size (``max_header_bytes``), idle timeouts on every read and write. A
request body the handler did not read is drained when small, otherwise the connection closes.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field

import trio

from gateway import http11
from gateway.http11 import RemoteProtocolError

__all__ = ["BodyTooLarge", "HttpLimits", "HttpRequest", "HttpResponse", "RemoteProtocolError",
           "RequestBody", "serve_connection", "serve_http"]

log = logging.getLogger(__name__)

LINGER_S = 2.0
DRAIN_LIMIT = 1024 * 1024


class BodyTooLarge(Exception):
    pass


class RequestBody:
    """The request body as an async iterator of non-empty bytes. Raises RemoteProtocolError
    (malformed or cut-short body), trio.TooSlowError (idle timeout) or a connection error."""

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self.done = False
        self.received = 0

    def __aiter__(self) -> RequestBody:
        return self

    async def __anext__(self) -> bytes:
        if not self.done:
            event = await self._conn.next_body_event()
            if event.__class__ is bytes:
                self.received += len(event)
                return event  # type: ignore[return-value]
            self.done = True  # END_OF_MESSAGE: next_body_event returns nothing else
        raise StopAsyncIteration

    async def read_all(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        async for chunk in self:
            total += len(chunk)
            if total > limit:
                raise BodyTooLarge(f"body larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)


@dataclass(slots=True)
class HttpRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]  # (lower-case name, value), in order, repeats kept
    body: RequestBody
    remote: str
    scheme: str
    index: dict[str, str] | None = field(default=None, repr=False, compare=False)  # first values

    def header(self, name: str) -> str | None:
        """The first value of the field ``name`` (lower-case), or None."""
        index = self.index
        if index is None:
            index = self.index = dict(reversed(self.headers))
        return index.get(name)


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterable[bytes] = b""
    content_length: int | None = None  # required with a streamed body
    on_sent: Callable[[], None] | None = None
    on_first_byte: Callable[[], None] | None = None


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLimits:
    max_header_bytes: int = 64 * 1024
    idle_timeout_s: float = 60.0
    read_bytes: int = 256 * 1024


class _Conn:
    def __init__(self, stream: trio.abc.Stream, limits: HttpLimits) -> None:
        self.stream = stream
        self.limits = limits
        self.p = http11.ServerConnection(limits.max_header_bytes)

    async def receive(self) -> None:
        # trio.fail_after, without its generator-based context manager (measurable per request)
        with trio.CancelScope(deadline=trio.current_time() + self.limits.idle_timeout_s):
            self.p.receive_data(await self.stream.receive_some(self.limits.read_bytes))
            return
        raise trio.TooSlowError

    async def next_request(self) -> http11.Request | None:
        """The next request head, or None when the client is gone (closed between requests)."""
        p = self.p
        while True:
            event = p.next_event()
            if event is http11.NEED_DATA:
                await self.receive()
                continue
            return event if event.__class__ is http11.Request else None  # type: ignore[return-value]

    async def next_body_event(self) -> bytes | object:
        p = self.p
        while True:
            event = p.next_event()
            if event is http11.NEED_DATA:
                if p.client_waiting_for_continue:
                    await self.send_all(p.send_continue())
                await self.receive()
                continue
            if event.__class__ is bytes or event is http11.END_OF_MESSAGE:
                return event
            raise ConnectionError(f"unexpected {event!r} in request body")

    async def send_all(self, data: bytes) -> None:
        if data:
            # the protocol has recorded the bytes as sent: they must go out even if the caller is
            # cancelled (e.g. the task reading an upload body, which sends 100 Continue, is
            # cancelled when the node answers early), or the protocol and the client disagree
            # about what was said and the next request is misread. The idle timeout still bounds
            # the write.
            # (A shielded scope still honours its own deadline.)
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self.limits.idle_timeout_s):
                await self.stream.send_all(data)
                return
            raise trio.TooSlowError


async def serve_connection(stream: trio.abc.Stream, handler: Handler, limits: HttpLimits, *,
                           remote: str, scheme: str) -> None:
    conn = _Conn(stream, limits)
    p = conn.p
    try:
        while True:
            head = await conn.next_request()
            if head is None:
                return
            body = RequestBody(conn)
            body.done = p.their_state is not http11.BODY
            req = HttpRequest(head.method, head.target, head.headers, body, remote, scheme, head.index)
            resp = await handler(req)
            # read before responding: the protocol forgets the client was waiting once a response
            # is sent
            waiting = p.client_waiting_for_continue
            await _send_response(conn, req, resp, close=waiting)
            if not body.done and p.their_state is http11.BODY:
                if waiting or not p.keep_alive:
                    # A final answer instead of 100 Continue: botocore then never sends the body,
                    # and it may reuse the connection despite "Connection: close" unless it sees
                    # the close, so close now (gently) rather than wait for body bytes that would
                    # really be the next request.
                    await _linger(stream)
                    return
                try:
                    await body.read_all(DRAIN_LIMIT)
                except BodyTooLarge:
                    return
            if not p.start_next_cycle():
                return
    except RemoteProtocolError as exc:
        await _send_bad_request(conn, exc)
    except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError, OSError):
        pass
    except Exception:
        # a failure after the response head went out (e.g. a node died mid-GET): the only
        # honest signal left is to cut the connection, so the client sees a short body
        log.exception("event=connection_aborted remote=%s", remote)
    finally:
        await trio.aclose_forcefully(stream)


async def _linger(stream: trio.abc.Stream) -> None:
    """Half-close and read what the client still sends (bounded), so that closing does not
    reset the connection (a reset can discard the response the client has not read yet)."""
    send_eof = getattr(stream, "send_eof", None)
    try:
        if send_eof is not None:
            await send_eof()
        with trio.move_on_after(LINGER_S):
            drained = 0
            while drained < DRAIN_LIMIT:
                data = await stream.receive_some(65536)
                if not data:
                    return
                drained += len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def _send_response(conn: _Conn, req: HttpRequest, resp: HttpResponse, *, close: bool) -> None:
    """Send ``resp``; ``close``: the client waits for 100 Continue and will not send the body,
    so the connection must not be reused."""
    p = conn.p
    body = resp.body
    if body.__class__ is bytes or isinstance(body, (bytes, bytearray)):
        length = resp.content_length if resp.content_length is not None else len(body)  # type: ignore[arg-type]
        head = p.send_response(resp.status, resp.headers, content_length=length, close=close)
        with_body = body and req.method != "HEAD" and resp.status not in (204, 304)
        data = p.send_data(bytes(body)) if with_body else b""  # type: ignore[arg-type]
        # the whole response in one write: one syscall, one wake-up of the client
        await conn.send_all(b"".join((head, data, p.send_end())))
        if resp.on_first_byte is not None:
            resp.on_first_byte()
    else:
        await conn.send_all(p.send_response(resp.status, resp.headers, content_length=resp.content_length,
                                            close=close))
        if resp.on_first_byte is not None:
            resp.on_first_byte()
        if req.method != "HEAD" and resp.status not in (204, 304):
            async for chunk in body:  # type: ignore[union-attr]
                if chunk:
                    await conn.send_all(p.send_data(chunk))
        await conn.send_all(p.send_end())
    if resp.on_sent is not None:
        resp.on_sent()


async def _send_bad_request(conn: _Conn, exc: RemoteProtocolError) -> None:
    p = conn.p
    if p.our_state is not http11.IDLE:
        return
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
            + (b"RequestHeaderSectionTooLarge" if exc.status_hint == 431 else b"InvalidRequest")
            + b"</Code><Message>Malformed HTTP request.</Message></Error>")
    try:
        data = p.send_response(400, [("content-type", "application/xml")], content_length=len(body),
                               close=True)
        await conn.send_all(data + p.send_data(body) + p.send_end())
    except Exception:
        pass


async def serve_http(handler: Handler, host: str, port: int, *, limits: HttpLimits = HttpLimits(),
                     ssl_context: ssl.SSLContext | None = None,
                     on_connection: Callable[[int], None] | None = None,
                     task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = (host, listeners[0].socket.getsockname()[1])
    scheme = "https" if ssl_context is not None else "http"

    async def connection(tcp: trio.SocketStream) -> None:
        if on_connection is None:
            return await serve_tcp(tcp)
        on_connection(1)
        try:
            await serve_tcp(tcp)
        finally:
            on_connection(-1)

    async def serve_tcp(tcp: trio.SocketStream) -> None:
        try:
            remote = "%s:%s" % tcp.socket.getpeername()[:2]
        except OSError:
            remote = "?"
        stream: trio.abc.Stream = tcp
        if ssl_context is not None:
            stream = trio.SSLStream(tcp, ssl_context, server_side=True)
            try:
                with trio.fail_after(10):
                    await stream.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError, OSError):
                await trio.aclose_forcefully(tcp)
                return
        await serve_connection(stream, handler, limits, remote=remote, scheme=scheme)

    task_status.started(bound)
    await trio.serve_listeners(connection, listeners)
