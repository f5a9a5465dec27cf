"""RPC server: accept (mutual-TLS) connections and run handlers for the calls they carry.

Each daemon builds one ``RpcServer`` from a mapping ``method -> async handler`` and an ACL
``method -> principal patterns``. The principal is the CN of the client's certificate (the
cluster CA signed it, so the name is trustworthy); a call whose principal the ACL does not list
is refused with AccessDenied before the handler runs.

A handler gets a ``Call`` and returns a msgpack-able result, or ``Streamed(result, body)`` to
stream a reply body. It raises ``RpcError`` subclasses for expected failures; anything else is
logged with its traceback and reported as ``Internal`` (never with the exception text, which may
hold data).

Shape follows trio's ``serve_tcp``: ``await nursery.start(server.serve, host, port)`` returns
the bound (host, port) once listening, so port 0 works. ``shutdown(grace_s)`` stops accepting,
lets running calls finish for up to ``grace_s``, then cancels the rest.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import ssl
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from proto.errors import (
    AccessDenied,
    DeadlineExceeded,
    Internal,
    InvalidRequest,
    RemoteProtocolError,
    RpcError,
    Unavailable,
)
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

MAX_TIMEOUT_S = 3600.0


@dataclass(frozen=True, slots=True)
class Streamed:
    """A handler result whose reply carries a body."""

    result: Any
    body: AsyncIterable[bytes]


@dataclass(slots=True, kw_only=True)
class Call:
    """One incoming call, as a handler sees it."""

    method: str
    args: dict[str, Any]
    principal: str
    peer: str
    request_id: str
    timeout_s: float | None
    body: BodyStream | None = None


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(slots=True)
class _Running:
    scope: trio.CancelScope  # cancelled by the client's CANCEL, or by the deadline during the handler
    body: BodyStream | None
    reply_credit: SendCredit | None = None
    cancelled_by_peer: bool = False
    responded: bool = False


@dataclass(slots=True)
class _ServerConn:
    conn: FramedConnection
    principal: str
    calls: dict[int, _Running] = field(default_factory=dict)


class RpcServer:
    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        acl: Mapping[str, Sequence[str]],
        ssl_context: ssl.SSLContext | None,
        limits: WireLimits = WireLimits(),
        name: str = "rpc",
        handshake_timeout_s: float = 10.0,
        default_timeout_s: float = 30.0,
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        unknown = set(acl) - set(handlers) - {"*"}
        if unknown:
            raise ValueError(f"ACL names unknown methods: {sorted(unknown)}")
        self._handlers = dict(handlers)
        self._acl = {m: tuple(p) for m, p in acl.items()}
        self._allowed: dict[tuple[str, str], bool] = {}  # the ACL is fixed: answers are cached
        self._ssl = ssl_context
        self.limits = limits
        self.name = name
        self._handshake_timeout_s = handshake_timeout_s
        self._default_timeout_s = default_timeout_s
        self._observe = observe
        self._accept_scope: trio.CancelScope | None = None
        self._conn_nursery: trio.Nursery | None = None
        self._active = 0
        self._idle = trio.Event()
        self._idle.set()

    # -- authorization ---------------------------------------------------------------------
    def allowed(self, principal: str, method: str) -> bool:
        key = (principal, method)
        answer = self._allowed.get(key)
        if answer is None:
            patterns = self._acl.get(method, ()) + self._acl.get("*", ())
            answer = any(fnmatch.fnmatchcase(principal, p) for p in patterns)
            if len(self._allowed) < 4096:  # principals are certificate names: few
                self._allowed[key] = answer
        return answer

    # -- serving ---------------------------------------------------------------------------
    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        sockname = listeners[0].socket.getsockname()
        async with trio.open_nursery() as conns:
            self._conn_nursery = conns
            with trio.CancelScope() as accept_scope:
                self._accept_scope = accept_scope
                task_status.started((host, sockname[1]))
                await trio.serve_listeners(self._accept, listeners, handler_nursery=conns)
            for lst in listeners:
                await lst.aclose()

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting; give running calls ``grace_s`` seconds; cancel the rest."""
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        with trio.move_on_after(grace_s):
            await self._idle.wait()
        if self._conn_nursery is not None:
            self._conn_nursery.cancel_scope.cancel()

    async def _accept(self, tcp: trio.SocketStream) -> None:
        try:
            peer = "%s:%s" % tcp.socket.getpeername()[:2]
        except OSError:
            peer = "?"
        stream: trio.abc.Stream = tcp
        principal = "anonymous"
        if self._ssl is not None:
            try:
                tls = wrap_tls(tcp, self._ssl, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.warning("event=tls_refused server=%s peer=%s reason=%s", self.name, peer, type(exc).__name__)
                await trio.aclose_forcefully(tcp)
                return
            try:
                with trio.fail_after(self._handshake_timeout_s):
                    await tls.do_handshake()
                from proto.certs import principal_from_peercert  # lazy: keeps cryptography out

                principal = principal_from_peercert(tls.getpeercert())
            except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError, ValueError, OSError) as exc:
                log.warning("event=tls_refused server=%s peer=%s reason=%s", self.name, peer, type(exc).__name__)
                await trio.aclose_forcefully(tls)
                return
            stream = tls
        await self.handle_stream(stream, principal=principal, peer=peer)

    async def handle_stream(self, stream: trio.abc.Stream, *, principal: str, peer: str) -> None:
        """Serve one already-authenticated stream until EOF (usable with memory streams)."""
        sc = _ServerConn(FramedConnection(stream, self.limits, peer=peer), principal)
        try:
            async with trio.open_nursery() as calls:
                try:
                    async for msg in sc.conn.messages():
                        self._dispatch(sc, msg, calls)
                except RemoteProtocolError as exc:
                    log.warning("event=protocol_error server=%s peer=%s principal=%s error=%s",
                                self.name, peer, principal, exc.message)
                calls.cancel_scope.cancel()
        finally:
            await sc.conn.aclose()

    def _dispatch(self, sc: _ServerConn, msg: list[Any], calls: trio.Nursery) -> None:
        kind, call_id = msg[0], msg[1]
        if kind == REQ:
            if len(msg) != 7 or call_id in sc.calls:
                raise RemoteProtocolError("malformed or duplicate REQ")
            _, _, method, args, timeout_s, has_body, request_id = msg
            if not isinstance(method, str) or not isinstance(args, dict):
                raise RemoteProtocolError("REQ method/args malformed")
            if timeout_s is not None and not (isinstance(timeout_s, (int, float)) and 0 < timeout_s <= MAX_TIMEOUT_S):
                raise RemoteProtocolError("REQ timeout malformed")
            body = BodyStream(sc.conn, call_id, idle_timeout_s=timeout_s or self._default_timeout_s) if has_body else None
            call = Call(method=method, args=args, principal=sc.principal, peer=sc.conn.peer,
                        request_id=request_id if isinstance(request_id, str) else uuid.uuid4().hex,
                        timeout_s=float(timeout_s) if timeout_s else None, body=body)
            # One scope per call carries both the client's CANCEL and the deadline (which covers
            # the handler only: ``_run_inner`` lifts it once the handler returned).
            deadline = trio.current_time() + (call.timeout_s or self._default_timeout_s)
            running = _Running(trio.CancelScope(deadline=deadline), body)
            sc.calls[call_id] = running
            self._active += 1
            self._idle = trio.Event() if self._idle.is_set() else self._idle
            calls.start_soon(self._run, sc, call_id, call, running)
            return
        running = sc.calls.get(call_id)
        if running is None:
            return  # late DATA/CREDIT/CANCEL for a finished call: harmless
        if kind == DATA and len(msg) == 3:
            if running.body is not None:
                running.body._push(msg[2])
        elif kind == END and len(msg) == 3:
            if running.body is not None:
                running.body._end(decode_error(msg[2], sc.conn.peer))
        elif kind == CREDIT and len(msg) == 3:
            if running.reply_credit is not None:
                running.reply_credit.grant(msg[2])
        elif kind == CANCEL:
            running.cancelled_by_peer = True
            running.scope.cancel()
        else:
            raise RemoteProtocolError(f"unexpected message type {kind}")

    async def _run(self, sc: _ServerConn, call_id: int, call: Call, running: _Running) -> None:
        start = trio.current_time()
        outcome = "ok"
        try:
            with running.scope:
                await self._run_inner(sc, call_id, call, running)
            if running.scope.cancelled_caught:
                outcome = "cancelled"
                if not running.cancelled_by_peer and not running.responded:
                    timeout = call.timeout_s or self._default_timeout_s
                    err = DeadlineExceeded(f"{call.method} exceeded its deadline of {timeout:.3f}s")
                    outcome = err.code.value
                    try:
                        await sc.conn.send([RESP, call_id, err.to_wire(), None, False])
                    except Unavailable:
                        pass
        except RpcError as exc:
            outcome = exc.code.value
        finally:
            sc.calls.pop(call_id, None)
            if running.body is not None:
                running.body._end(None)
            self._active -= 1
            if self._active == 0:
                self._idle.set()
            if self._observe is not None:
                self._observe(call.method, outcome, trio.current_time() - start)

    async def _respond(self, conn: FramedConnection, running: _Running, msg: list[Any]) -> None:
        running.responded = True
        await conn.send(msg)

    async def _run_inner(self, sc: _ServerConn, call_id: int, call: Call, running: _Running) -> None:
        conn = sc.conn
        handler = self._handlers.get(call.method)
        try:
            if handler is None:
                raise InvalidRequest(f"unknown method {call.method!r}", kind="UnknownMethod")
            if not self.allowed(call.principal, call.method):
                raise AccessDenied(f"principal {call.principal!r} may not call {call.method}",
                                   kind="AccessDeniedException")
            result = await handler(call)
        except RpcError as exc:
            await self._respond(conn, running, [RESP, call_id, exc.to_wire(), None, False])
            raise
        except Exception:
            log.exception("event=handler_crash server=%s method=%s request_id=%s",
                          self.name, call.method, call.request_id)
            err = Internal(f"internal error in {call.method} (request {call.request_id})")
            await self._respond(conn, running, [RESP, call_id, err.to_wire(), None, False])
            raise err from None
        if isinstance(result, Streamed):
            running.scope.deadline = math.inf  # the deadline bounds the handler, not the reply stream
            running.reply_credit = SendCredit(self.limits.window)
            await self._respond(conn, running, [RESP, call_id, None, result.result, True])
            try:
                await send_body(conn, call_id, running.reply_credit, result.body)
            except Exception:
                log.exception("event=reply_stream_crash server=%s method=%s request_id=%s",
                              self.name, call.method, call.request_id)
                raise Internal("reply stream failed") from None
        else:
            await self._respond(conn, running, [RESP, call_id, None, result, False])
