"""What the gateway records about each request once its response is sent: metrics, the S3 audit
record and the one-line request log.

``Gateway.handle`` fills a ``RequestFacts`` as the request goes (route, identity, error) and
calls ``observe_request``, which hooks the response's ``on_first_byte`` / ``on_sent`` callbacks
and counts the body bytes that go out. The identity is set deep in the pipeline (after SigV4
verification), so the facts travel in a contextvar (``facts_var``): each client connection is
its own trio task, so the facts of concurrent requests never mix.

Nothing secret is recorded: the log line and the audit record carry the operation, bucket,
status, timings, byte counts and (audit only) the access key id and object key; never a
header value, signature, token or secret.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import trio

from gateway.audit import S3Event, format_event, should_record
from gateway.errors import S3Error
from gateway.http import HttpRequest, HttpResponse
from gateway.metrics import CountingBody

log = logging.getLogger(__name__)

# S3 error codes that mean "who are you / you may not": counted as auth failures
AUTH_CODES = frozenset({"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "ExpiredToken",
                        "InvalidToken", "RequestTimeTooSkewed", "AuthorizationHeaderMalformed",
                        "AuthorizationQueryParametersError"})
# codes that reject a session token (on a session-signed request)
SESSION_CODES = frozenset({"ExpiredToken", "InvalidToken", "AccessDenied", "SignatureDoesNotMatch"})
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:/@+-]{1,256}$")


@dataclass(slots=True)
class RequestFacts:
    request_id: str
    start: float  # trio clock
    wall: float  # epoch seconds
    auth: Any = None  # sigv4.AuthRequest | None
    route: Any = None  # routing.Route | None
    identity: Any = None  # auth.Identity | None
    error: S3Error | None = None
    ttfb_s: float | None = None

    @property
    def operation(self) -> str:
        return self.route.operation if self.route is not None else "Unknown"

    @property
    def bucket(self) -> str | None:
        return self.route.bucket if self.route is not None else None


facts_var: contextvars.ContextVar[RequestFacts] = contextvars.ContextVar("gateway_request_facts")


def log_value(value: str | None) -> str:
    """A request-supplied value made safe for a key=value line (quoted when unusual)."""
    if value is None or value == "":
        return "-"
    return value if _SAFE_VALUE.match(value) else json.dumps(value[:256])


def observe_request(gw: Any, req: HttpRequest, resp: HttpResponse, facts: RequestFacts) -> None:
    """Hook the response so metrics, audit and log are recorded when it has been sent."""
    counter: CountingBody | None = None
    if not isinstance(resp.body, (bytes, bytearray)):
        counter = CountingBody(resp.body)
        resp.body = counter
    op = facts.operation
    if facts.error is not None:
        code = facts.error.code
        if code in AUTH_CODES:
            gw.m.auth_failures.labels(code).inc()
        if req.header("x-amz-s3session-token") is not None and code in SESSION_CODES:
            gw.m.session_rejections.labels(code).inc()

    def first_byte() -> None:
        facts.ttfb_s = trio.current_time() - facts.start
        gw.m.first_byte(op, facts.ttfb_s)

    def sent() -> None:
        elapsed = trio.current_time() - facts.start
        if counter is not None:
            bytes_out = counter.sent
        elif req.method == "HEAD" or resp.status in (204, 304):
            bytes_out = 0
        else:
            bytes_out = len(resp.body)  # type: ignore[arg-type]
        bytes_in = req.body.received
        bucket_label = gw.m.bucket_label(facts.bucket)
        gw.m.request_done(operation=op, bucket_label=bucket_label, status=resp.status, seconds=elapsed,
                          bytes_in=bytes_in, bytes_out=bytes_out)
        code = facts.error.code if facts.error is not None else None
        if op == "CreateSession":
            gw.m.create_session(req.header("x-amz-create-session-mode") or "ReadWrite",
                                "ok" if resp.status < 300 else (code or str(resp.status)))
        log.info("event=request op=%s bucket=%s status=%d error=%s method=%s duration_ms=%.3f ttfb_ms=%.3f "
                 "bytes_in=%d bytes_out=%d", op, log_value(facts.bucket), resp.status, code or "-", req.method,
                 elapsed * 1000, (facts.ttfb_s or elapsed) * 1000, bytes_in, bytes_out)
        if gw.audit is not None and should_record(op, resp.status):
            write_audit(gw, req, resp, facts, bytes_in=bytes_in, bytes_out=bytes_out)

    resp.on_first_byte, resp.on_sent = first_byte, sent


def write_audit(gw: Any, req: HttpRequest, resp: HttpResponse, facts: RequestFacts, *,
                bytes_in: int, bytes_out: int) -> None:
    ident = facts.identity
    auth = facts.auth
    route = facts.route
    session = getattr(ident, "session", None)
    context = getattr(ident, "context", None)
    event = S3Event(
        operation=facts.operation, time=facts.wall, request_id=facts.request_id,
        event_id=str(uuid.UUID(bytes=secrets.token_bytes(16), version=4)),
        region=gw.cfg.region, account_id=gw.cfg.account_id, status=resp.status,
        source_ip=req.remote.rpartition(":")[0] or req.remote, user_agent=req.header("user-agent") or "",
        host=req.header("host") or "", bucket=facts.bucket,
        key=route.key if route is not None else None,
        access_key_id=auth.access_key_id if auth is not None else None,
        user_arn=context.user_arn if context is not None else None,
        user_name=context.user_name if context is not None else None,
        session_mode=session.mode if session is not None else None,
        create_session_mode=((req.header("x-amz-create-session-mode") or "ReadWrite")
                             if facts.operation == "CreateSession" else None),
        presigned=bool(auth is not None and auth.presigned), bytes_in=bytes_in, bytes_out=bytes_out,
        error_code=facts.error.code if facts.error is not None else None,
        error_message=facts.error.message if facts.error is not None else None)
    begin = trio.current_time()
    try:
        gw.audit.write(format_event(event))
    except OSError as exc:
        gw.m.audit_failures.inc()
        log.error("event=audit_write_failed path=%s error=%s", gw.audit.path, exc.strerror or exc)
        return
    gw.m.audit_write.observe(trio.current_time() - begin)
