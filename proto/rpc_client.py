"""RPC client: a pool of reusable, multiplexed (mutual-TLS) connections.

``open_rpc_pool`` owns a nursery in which each connection's reader task runs; ``pool.client(
endpoint, server_name)`` gives a cheap handle. A handle opens its connection on first use,
reuses it for every call (many concurrent calls share one connection), and reconnects after a
failure. ``server_name`` is the principal the server's certificate must carry (TLS hostname
check against the certificate's DNS SAN), so a node cannot pose as the KMS whatever its address.

Calls:
- ``await client.call(method, args, body=None, timeout_s=None)`` returns the result, or raises
  the typed error the server sent (``proto.errors``). ``body`` is an async iterable of bytes,
  streamed under credit. A call on a connection that breaks raises ``Unavailable``; calls
  without a body are retried once on a fresh connection when the old one was found dead.
- ``async with client.stream(method, args) as reply`` for a streamed reply: ``reply.result`` and
  ``reply.body`` (async iterator of bytes). Leaving the block early cancels the call.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from proto.errors import DeadlineExceeded, RemoteProtocolError, RpcError, Unavailable
from proto.rpc_deadlines import DeadlineTimer
from proto.rpc_wire import (
    CANCEL,
    CREDIT,
    DATA,
    END,
    REQ,
    RESP,
    BodyStream,
    FramedConnection,
    SendCredit,
    WireLimits,
    decode_error,
    send_body,
)
from proto.tls_stream import wrap_tls

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    error: RpcError | None = None
    result: Any = None
    body: BodyStream | None = None
    credit: SendCredit | None = None
    send_error: BaseException | None = None
    timed_out: bool = False

    def expire(self) -> None:
        """The pool's deadline timer: the call's time is up (unless it was answered first)."""
        if not self.done.is_set():
            self.timed_out = True
            self.done.set()


class _ClientConn:
    def __init__(self, conn: FramedConnection) -> None:
        self.conn = conn
        self.pending: dict[int, _Pending] = {}
        self.ids = itertools.count(1)
        self.alive = True

    async def read_loop(self) -> None:
        reason = "connection closed"
        try:
            async for msg in self.conn.messages():
                self._dispatch(msg)
        except RemoteProtocolError as exc:
            reason = exc.message
            log.warning("event=protocol_error peer=%s error=%s", self.conn.peer, exc.message)
        finally:
            self.alive = False
            err = Unavailable(f"lost connection to {self.conn.peer}: {reason}")
            err.local = True  # type: ignore[attr-defined]  # ours, not the server's: safe to retry
            for p in self.pending.values():
                if not p.done.is_set():
                    p.error = err
                    p.done.set()
                if p.body is not None:
                    p.body._end(err)
                if p.credit is not None:
                    p.credit.close()
            await self.conn.aclose()

    def _dispatch(self, msg: list[Any]) -> None:
        kind, call_id = msg[0], msg[1]
        p = self.pending.get(call_id)
        if p is None:
            return
        if kind == RESP and len(msg) == 5:
            if p.done.is_set():
                return  # the call's deadline passed first: the caller is leaving
            p.error = decode_error(msg[2], self.conn.peer)
            p.result = msg[3]
            if msg[4] and p.error is None:
                p.body = BodyStream(self.conn, call_id)
            if p.credit is not None:
                p.credit.close()  # the server answered: stop sending the request body
            p.done.set()
        elif kind == DATA and len(msg) == 3:
            if p.body is not None:
                p.body._push(msg[2])
        elif kind == END and len(msg) == 3:
            if p.body is not None:
                p.body._end(decode_error(msg[2], self.conn.peer))
        elif kind == CREDIT and len(msg) == 3:
            if p.credit is not None:
                p.credit.grant(msg[2])
        else:
            raise RemoteProtocolError(f"unexpected message type {kind}")


@dataclass(slots=True)
class StreamReply:
    result: Any
    body: BodyStream


class RpcClient:
    """Handle on one remote daemon; see the module docstring."""

    def __init__(self, pool: RpcPool, host: str, port: int, server_name: str) -> None:
        self._pool = pool
        self.host = host
        self.port = port
        self.server_name = server_name
        self._conn: _ClientConn | None = None
        self._lock = trio.Lock()

    def __repr__(self) -> str:
        return f"RpcClient({self.server_name}@{self.host}:{self.port})"

    async def _connection(self) -> tuple[_ClientConn, bool]:
        conn = self._conn
        if conn is not None and conn.alive and not conn.conn.closed:
            return conn, True  # the common case needs no lock (and no scheduling round)
        async with self._lock:
            if self._conn is not None and self._conn.alive and not self._conn.conn.closed:
                return self._conn, True
            self._conn = await self._pool._connect(self.host, self.port, self.server_name)
            return self._conn, False

    async def call(
        self,
        method: str,
        args: dict[str, Any] | None = None,
        *,
        body: AsyncIterable[bytes] | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> Any:
        timeout = timeout_s or self._pool.default_timeout_s
        for attempt in (1, 2):
            try:
                if body is None:
                    return await self._call_plain(method, args, timeout, request_id)
                async with self._start(method, args, body, timeout, request_id) as (cc, call_id, p):
                    if p.body is not None:  # the server streamed a reply nobody asked for
                        raise RemoteProtocolError(f"{method} replied with a body")
                    return p.result
            except Unavailable as exc:
                # retry only a connection found dead (never an Unavailable the server sent: the
                # call may have run), and only when there is no body to replay
                if attempt == 1 and body is None and getattr(exc, "reused", False) and getattr(exc, "local", False):
                    continue
                raise
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        args: dict[str, Any] | None = None,
        *,
        body: AsyncIterable[bytes] | None = None,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[StreamReply]:
        timeout = timeout_s or self._pool.default_timeout_s
        async with self._start(method, args, body, timeout, request_id) as (cc, call_id, p):
            if p.body is None:
                raise RemoteProtocolError(f"{method} replied without a body")
            p.body._idle_timeout_s = timeout
            yield StreamReply(p.result, p.body)

    async def _call_plain(self, method: str, args: dict[str, Any] | None, timeout: float,
                          request_id: str | None) -> Any:
        """A call without a request body: ``_start``'s semantics without its nursery, context
        manager and cancel scopes (the common, small call). The pool's deadline timer ends the
        wait when ``timeout`` passes (``proto/rpc_deadlines.py``)."""
        cc, reused = await self._connection()
        call_id = next(cc.ids)
        p = _Pending()
        cc.pending[call_id] = p
        deadlines = self._pool._deadlines
        entry = deadlines.arm(trio.current_time() + timeout, p)
        finished = False
        try:
            try:
                await cc.conn.send([REQ, call_id, method, args or {}, timeout, False,
                                    request_id or self._pool.request_id()])
            except Unavailable as exc:
                exc.reused = reused  # type: ignore[attr-defined]
                raise
            await p.done.wait()
            if p.timed_out:
                raise DeadlineExceeded(f"{method} to {self.server_name} timed out after {timeout:.3f}s")
            if p.error is not None:
                finished = True  # the server answered: its call is over
                if isinstance(p.error, Unavailable):
                    p.error.reused = reused  # type: ignore[attr-defined]
                raise p.error
            if p.body is not None:  # the server streamed a reply nobody asked for
                raise RemoteProtocolError(f"{method} replied with a body")
            finished = True
            return p.result
        finally:
            deadlines.disarm(entry)
            cc.pending.pop(call_id, None)
            if not finished and cc.alive:
                with trio.CancelScope(shield=True):
                    try:
                        await cc.conn.send([CANCEL, call_id])
                    except RpcError:
                        pass

    @staticmethod
    async def _send_body(cc: _ClientConn, call_id: int, p: _Pending, body: AsyncIterable[bytes]) -> None:
        # The body's own failure (e.g. the client of a gateway hung up) must not escape as an
        # exception group: send_body has already told the server (END with an error), whose
        # reply then completes the call; the original exception is re-raised by _start.
        try:
            await send_body(cc.conn, call_id, p.credit, body)
        except Exception as exc:
            p.send_error = exc

    @asynccontextmanager
    async def _start(self, method, args, body, timeout, request_id):
        cc, reused = await self._connection()
        call_id = next(cc.ids)
        p = _Pending(credit=SendCredit(cc.conn.limits.window) if body is not None else None)
        cc.pending[call_id] = p
        finished = False
        try:
            try:
                with trio.fail_after(timeout):
                    await cc.conn.send([REQ, call_id, method, args or {}, timeout, body is not None,
                                        request_id or self._pool.request_id()])
                    async with trio.open_nursery() as nursery:
                        if body is not None:
                            nursery.start_soon(self._send_body, cc, call_id, p, body)
                        await p.done.wait()
                        nursery.cancel_scope.cancel()
            except trio.TooSlowError:
                raise DeadlineExceeded(f"{method} to {self.server_name} timed out after {timeout:.3f}s") from None
            except Unavailable as exc:
                exc.reused = reused  # type: ignore[attr-defined]
                raise
            if p.send_error is not None and not isinstance(p.send_error, RpcError):
                raise p.send_error
            if p.error is not None:
                if isinstance(p.error, Unavailable):
                    p.error.reused = reused  # type: ignore[attr-defined]
                raise p.error
            yield cc, call_id, p
            finished = p.body is None or p.body._ended
        finally:
            cc.pending.pop(call_id, None)
            if not finished and cc.alive:
                with trio.CancelScope(shield=True):
                    try:
                        await cc.conn.send([CANCEL, call_id])
                    except RpcError:
                        pass


class RpcPool:
    """Connections to any number of daemons; create with ``open_rpc_pool``."""

    def __init__(self, nursery: trio.Nursery, ssl_context: ssl.SSLContext | None, *,
                 limits: WireLimits, connect_timeout_s: float, default_timeout_s: float) -> None:
        self._nursery = nursery
        self._ssl = ssl_context
        self.limits = limits
        self.connect_timeout_s = connect_timeout_s
        self.default_timeout_s = default_timeout_s
        self._clients: dict[tuple[str, int, str], RpcClient] = {}
        self._rid_prefix = secrets.token_hex(8)
        self._rid = itertools.count(1)
        self._deadlines = DeadlineTimer(_Pending.expire)
        nursery.start_soon(self._deadlines.run)

    def request_id(self) -> str:
        """A fresh request id (32 hex digits, unique per pool: a random prefix and a counter;
        cheaper than a uuid4 per call)."""
        return f"{self._rid_prefix}{next(self._rid):016x}"

    def client(self, host: str, port: int, server_name: str) -> RpcClient:
        key = (host, int(port), server_name)
        if key not in self._clients:
            self._clients[key] = RpcClient(self, host, int(port), server_name)
        return self._clients[key]

    async def _connect(self, host: str, port: int, server_name: str) -> _ClientConn:
        peer = f"{server_name}@{host}:{port}"
        try:
            with trio.fail_after(self.connect_timeout_s):
                tcp = await trio.open_tcp_stream(host, port)
                stream: trio.abc.Stream = tcp
                if self._ssl is not None:
                    try:
                        tls = wrap_tls(tcp, self._ssl, server_hostname=server_name)
                    except BaseException:
                        await trio.aclose_forcefully(tcp)
                        raise
                    try:
                        await tls.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(tls)
                        raise
                    stream = tls
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise Unavailable(f"cannot connect to {peer}: {type(exc).__name__}: {exc}") from None
        cc = _ClientConn(FramedConnection(stream, self.limits, peer=peer))
        self._nursery.start_soon(cc.read_loop)
        return cc


@asynccontextmanager
async def open_rpc_pool(
    ssl_context: ssl.SSLContext | None,
    *,
    limits: WireLimits = WireLimits(),
    connect_timeout_s: float = 5.0,
    default_timeout_s: float = 30.0,
) -> AsyncIterator[RpcPool]:
    async with trio.open_nursery() as nursery:
        pool = RpcPool(nursery, ssl_context, limits=limits, connect_timeout_s=connect_timeout_s,
                       default_timeout_s=default_timeout_s)
        try:
            yield pool
        finally:
            nursery.cancel_scope.cancel()
