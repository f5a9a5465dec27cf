"""HTTP/1.1 transport for the gateway: h11 over trio, streaming bodies both ways.

The protocol logic is h11's (sans-I/O); this module only moves bytes. For each request it builds
an ``HttpRequest`` whose ``body`` is an async iterator that pulls ``h11.Data`` events on demand
(so a 5 GiB PUT never sits in memory), answers ``Expect: 100-continue`` on the first read (the
handler authenticates on the headers first, then reads: wire reference §4.5), and sends the
handler's ``HttpResponse``, whose body may be bytes or an async iterator of bytes.

Limits: request head size (``max_header_bytes``), idle timeouts on every read and write. A
request body the handler did not read is drained when small, otherwise the connection closes.
"""

from __future__ import annotations

import http
import logging
import ssl
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field

import h11
import trio

log = logging.getLogger(__name__)

LINGER_S = 2.0
DRAIN_LIMIT = 1024 * 1024


class BodyTooLarge(Exception):
    pass


class RequestBody:
    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self.done = False
        self.received = 0

    def __aiter__(self) -> RequestBody:
        return self

    async def __anext__(self) -> bytes:
        while not self.done:
            event = await self._conn.next_event(body=True)
            if isinstance(event, h11.Data):
                if event.data:
                    self.received += len(event.data)
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.done = True
            else:
                raise ConnectionError(f"unexpected {type(event).__name__} in request body")
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
    headers: list[tuple[str, str]]
    body: RequestBody
    remote: str
    scheme: str

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


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
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)

    async def next_event(self, *, body: bool = False):
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                if body and self.h11.they_are_waiting_for_100_continue:
                    await self.send(h11.InformationalResponse(status_code=100, headers=[]))
                with trio.fail_after(self.limits.idle_timeout_s):
                    data = await self.stream.receive_some(self.limits.read_bytes)
                self.h11.receive_data(data)
                continue
            return event

    async def send(self, event) -> None:
        await self.send_all([event])

    async def send_all(self, events) -> None:
        data = b"".join(self.h11.send(event) or b"" for event in events)
        if data:
            # h11 has recorded the event as sent: the bytes must go out even if the caller is
            # cancelled (e.g. the task reading an upload body, which sends 100 Continue, is
            # cancelled when the node answers early), or h11 and the client disagree about what
            # was said and the next request is misread. The idle timeout still bounds the write.
            with trio.CancelScope(shield=True), trio.fail_after(self.limits.idle_timeout_s):
                await self.stream.send_all(data)


async def serve_connection(stream: trio.abc.Stream, handler: Handler, limits: HttpLimits, *,
                           remote: str, scheme: str) -> None:
    conn = _Conn(stream, limits)
    try:
        while True:
            event = await conn.next_event()
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers]
            req = HttpRequest(event.method.decode("ascii"), event.target.decode("latin-1"), headers,
                              RequestBody(conn), remote, scheme)
            resp = await handler(req)
            # read before responding: h11 forgets the client was waiting once a response is sent
            waiting = conn.h11.they_are_waiting_for_100_continue
            await _send_response(conn, req, resp)
            if not req.body.done and conn.h11.their_state is h11.SEND_BODY:
                if waiting or conn.h11.our_state is h11.MUST_CLOSE:
                    # A final answer instead of 100 Continue: botocore then never sends the body,
                    # and it may reuse the connection despite "Connection: close" unless it sees
                    # the close, so close now (gently) rather than wait for body bytes that would
                    # really be the next request.
                    await _linger(stream)
                    return
                try:
                    await req.body.read_all(DRAIN_LIMIT)
                except BodyTooLarge:
                    return
            if conn.h11.our_state is h11.MUST_CLOSE or conn.h11.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.h11.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except h11.RemoteProtocolError as exc:
        await _send_bad_request(conn, exc)
    except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError, OSError):
        pass
    except Exception:
        # a failure after the response head went out (e.g. a node died mid-GET): the only
        # honest signal left is to cut the connection, so the client sees a short body
        log.exception("event=connection_aborted remote=%s", remote)
    finally:
        await trio.aclose_forcefully(stream)


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


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


async def _send_response(conn: _Conn, req: HttpRequest, resp: HttpResponse) -> None:
    headers = list(resp.headers)
    if conn.h11.they_are_waiting_for_100_continue:
        headers.append(("connection", "close"))  # the client will not send the body: do not reuse
    body = resp.body
    if isinstance(body, (bytes, bytearray)):
        headers.append(("content-length", str(resp.content_length if resp.content_length is not None else len(body))))
    elif resp.content_length is not None:
        headers.append(("content-length", str(resp.content_length)))
    # a reason phrase is required in practice: botocore's 100-continue path splits the status
    # line in three and misreads a final response without one
    head = h11.Response(status_code=resp.status, headers=headers, reason=_reason(resp.status))
    with_body = req.method != "HEAD" and resp.status not in (204, 304)
    if isinstance(body, (bytes, bytearray)):
        # the whole response in one write: one syscall, one wake-up of the client
        events = [head] + ([h11.Data(data=bytes(body))] if with_body and body else []) + [h11.EndOfMessage()]
        await conn.send_all(events)
        if resp.on_first_byte is not None:
            resp.on_first_byte()
    else:
        await conn.send(head)
        if resp.on_first_byte is not None:
            resp.on_first_byte()
        if with_body:
            async for chunk in body:
                if chunk:
                    await conn.send(h11.Data(data=chunk))
        await conn.send(h11.EndOfMessage())
    if resp.on_sent is not None:
        resp.on_sent()


async def _send_bad_request(conn: _Conn, exc: h11.RemoteProtocolError) -> None:
    if conn.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    status = getattr(exc, "error_status_hint", 400)
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
            + (b"RequestHeaderSectionTooLarge" if status == 431 else b"InvalidRequest")
            + b"</Code><Message>Malformed HTTP request.</Message></Error>")
    try:
        await conn.send(h11.Response(status_code=400 if status != 431 else 400, headers=[
            ("content-type", "application/xml"), ("content-length", str(len(body))), ("connection", "close")]))
        await conn.send(h11.Data(data=body))
        await conn.send(h11.EndOfMessage())
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
