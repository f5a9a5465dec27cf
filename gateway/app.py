"""The gateway's request pipeline: route -> authenticate -> authorize -> operation -> response.

One ``Gateway`` object per process holds the config, the backend (RPC clients and caches), the
session key and the metrics; ``handle`` is the HTTP handler. Every failure becomes the
protocol's own error shape (S3 XML, KMS JSON or IAM XML) with the AWS code and a request id;
a client's mistake is never a 500, and a 200 never carries an error body.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import trio

from gateway import (iam_api, kms_api, routing, s3_bucket_config, s3_buckets, s3_extra, s3_lists, s3_objects,
                     s3_post)
from gateway.audit import AuditFile
from gateway.auth import authenticate, authorize_s3, parse_auth
from gateway.backend import Backend, s3_error
from gateway.config import GatewayConfig
from gateway.errors import S3Error, error_xml, iam_error_xml, kms_error_json
from gateway.http import BodyTooLarge, HttpRequest, HttpResponse
from gateway.metrics import GatewayMetrics
from gateway.observe import RequestFacts, facts_var, observe_request
from proto import errors as rpc_errors
from proto.logs import request_id_var
from proto.metrics import Metrics

log = logging.getLogger(__name__)

BODY_OPS = {"CreateBucket", "PutBucketEncryption", "DeleteObjects", "CompleteMultipartUpload",
            "PutBucketPolicy", "KmsJson", "IamQuery"}
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Gateway:
    def __init__(self, cfg: GatewayConfig, backend: Backend, session_key: bytes, metrics: Metrics,
                 *, clock: Callable[[], float] = time.time, audit: AuditFile | None = None) -> None:
        self.cfg = cfg
        self.backend = backend
        self.session_key = session_key
        self.m = GatewayMetrics(metrics, top_buckets=cfg.metrics_top_buckets)
        self.audit = audit
        backend.observe_stale = lambda what: self.m.stale_served.labels(what).inc()
        self.clock = clock
        self.active = 0
        self.own_hosts = frozenset(h.lower() for h in cfg.hostnames) | {"127.0.0.1", "[::1]", "localhost"}

    async def handle(self, req: HttpRequest) -> HttpResponse:
        request_id = secrets.token_hex(8).upper()
        request_id_var.set(request_id)
        facts = RequestFacts(request_id=request_id, start=trio.current_time(), wall=self.clock())
        facts_var.set(facts)
        self.m.in_flight.inc()
        self.active += 1
        try:
            try:
                auth = parse_auth(req)
                facts.auth = auth
                route = routing.route(req.method, req.header("host") or "", req.target,
                                      service=auth.service if auth else None,
                                      x_amz_target=req.header("x-amz-target"), own_hosts=self.own_hosts)
                facts.route = route
                resp = await self._dispatch(req, auth, route, request_id)
            except S3Error as exc:
                facts.error = exc
                resp = self._error(req, exc, request_id, facts.operation)
            except rpc_errors.RpcError as exc:
                facts.error = s3_error(exc, resource=req.target.partition("?")[0])
                resp = self._error(req, facts.error, request_id, facts.operation)
                if isinstance(exc, rpc_errors.Internal):
                    log.warning("event=backend_internal op=%s error=%s", facts.operation, exc.message)
        except Exception:
            log.exception("event=handler_crash op=%s", facts.operation)
            facts.error = S3Error("InternalError")
            resp = self._error(req, facts.error, request_id, facts.operation)
        finally:
            self.m.in_flight.dec()
            self.active -= 1
        resp.headers += [("x-amz-request-id", request_id), ("x-amz-id-2", request_id), ("server", "onezone")]
        observe_request(self, req, resp, facts)
        return resp

    def _error(self, req: HttpRequest, exc: S3Error, request_id: str, op: str) -> HttpResponse:
        if exc.status >= 500:
            log.warning("event=server_error op=%s code=%s", op, exc.code)
        headers = list(exc.headers.items())
        if op == "KmsJson":
            return HttpResponse(exc.status, headers + [kms_api.KMS_JSON], kms_error_json(
                "AccessDeniedException" if exc.status == 403 else exc.code, exc.message))
        if op == "IamQuery":
            return HttpResponse(exc.status, headers + [("content-type", "text/xml")],
                                iam_error_xml(exc.code, exc.message, request_id))
        if req.method == "HEAD" or exc.status == 304:
            return HttpResponse(exc.status, headers, b"")
        if exc.resource is None:
            exc.resource = req.target.partition("?")[0]
        return HttpResponse(exc.status, headers + [("content-type", "application/xml")],
                            error_xml(exc, request_id=request_id))

    async def _read_body(self, req: HttpRequest, auth: Any) -> tuple[bytes, str]:
        try:
            body = await req.body.read_all(self.cfg.max_xml_bytes)
        except BodyTooLarge:
            raise S3Error("MaxMessageLengthExceeded", "Your request was too big.") from None
        digest = hashlib.sha256(body).hexdigest()
        declared = auth.payload_hash if auth else ""
        if len(declared) == 64 and not hmac.compare_digest(declared.lower(), digest):
            raise S3Error("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
        return body, digest

    async def _dispatch(self, req: HttpRequest, auth: Any, route: routing.Route, request_id: str) -> HttpResponse:
        now = self.clock()
        body, digest = b"", EMPTY_SHA256
        if route.operation == "PostObject":  # a browser form: the authentication is in the body
            assert route.bucket is not None
            return await s3_post.post_object(req, self.backend, route.bucket, session_key=self.session_key, now=now,
                                             region=self.cfg.region, account=self.cfg.account_id,
                                             max_object_bytes=self.cfg.max_object_bytes)
        if route.operation in BODY_OPS:
            body, digest = await self._read_body(req, auth)
        ident = await authenticate(req, auth, self.backend, session_key=self.session_key, now=now,
                                   max_skew_s=self.cfg.max_clock_skew_s, body_sha256=digest,
                                   observe_eval=self.m.iam_eval.observe, own_hosts=self.own_hosts)
        facts_var.get().identity = ident
        region, account = self.cfg.region, self.cfg.account_id
        op = route.operation
        if op == "KmsJson":
            return await kms_api.kms_json(req, ident, body, self.backend, region=region, account=account, now=now)
        if op == "IamQuery":
            return await iam_api.iam_query(req, ident, body, self.backend, account=account, now=now,
                                            request_id=request_id)
        if route.bucket is not None and op not in ("CreateBucket", "CreateSession"):
            ident = replace(ident, bucket_policy=self.backend.bucket_policy(await self.backend.bucket(route.bucket)))
        elif op == "CreateSession":  # fresh: a policy change must take effect on the next session
            ident = replace(ident, bucket_policy=self.backend.bucket_policy(
                await self.backend.bucket(route.bucket, fresh=True)))
        authorize_s3(op, route.bucket, ident, req, region=region, account=account, now=now, key=route.key)
        if op in ("ListDirectoryBuckets", "ListBuckets"):
            return await s3_buckets.list_buckets(req, ident, self.backend, directory=op == "ListDirectoryBuckets",
                                                 region=region, account=account)
        assert route.bucket is not None
        if route.key is None:
            ctx = s3_buckets.BucketCtx(req, ident, route.bucket, now, region, account, self.session_key,
                                       self.cfg.session_ttl_s, body)
            handler = {
                "CreateSession": s3_buckets.create_session, "CreateBucket": s3_buckets.create_bucket,
                "HeadBucket": s3_buckets.head_bucket, "DeleteBucket": s3_buckets.delete_bucket,
                "PutBucketEncryption": s3_buckets.put_bucket_encryption,
                "GetBucketEncryption": s3_buckets.get_bucket_encryption,
                "DeleteBucketEncryption": s3_bucket_config.delete_bucket_encryption,
                "PutBucketPolicy": s3_bucket_config.put_bucket_policy,
                "GetBucketPolicy": s3_bucket_config.get_bucket_policy,
                "DeleteBucketPolicy": s3_bucket_config.delete_bucket_policy,
                "GetBucketLocation": s3_bucket_config.get_bucket_location,
            }.get(op)
            if handler is None:
                return await s3_extra.bucket_op(op, ctx, self.backend, route.query, self.cfg)
            return await handler(ctx, self.backend)
        bucket, key = route.bucket, route.key
        s3_lists.check_user_key(key)
        if op in s3_extra.OBJECT_OPS or (op == "PutObject" and req.header("x-amz-copy-source") is not None):
            return await s3_extra.object_op(op, req, ident, self.backend, bucket, key, route.query, now=now,
                                            cfg=self.cfg, body=body)
        if op == "PutObject":
            return await s3_objects.put_object(req, ident, self.backend, bucket, key, now=now,
                                               max_bytes=self.cfg.max_object_bytes)
        if op in ("GetObject", "HeadObject"):
            return await s3_objects.get_object(req, ident, self.backend, bucket, key, route.query, now=now,
                                               head=op == "HeadObject")
        if op == "DeleteObject":
            return await s3_objects.delete_object(req, ident, self.backend, bucket, key, now=now)
        raise S3Error("NotImplemented", f"{op} is not supported by onezone yet.")
