"""RPC edge of the KMS daemon: authorization, argument validation, audit, metrics.

Responsibility
--------------
Adapt ``KmsService`` to ``proto.rpc`` handlers. For every call, in this order: check the
caller's principal against ``ACL`` (fnmatch patterns, as in docs/rpc.md), check the
arguments' names, types and sizes (``ValidationException``), run the operation (crypto and
keystore writes in a worker thread; keystore writes serialized by a lock), then append one
audit record and count the request, whatever the outcome.

Why the ACL is enforced here and not by ``RpcServer``: the server refuses before any
handler runs, so a refused call would leave no audit record; CloudTrail records
``AccessDenied`` attempts and so do we. The ``RpcServer`` is given a pass-through ACL for
exactly the methods of ``ACL``; the check below is the first thing every handler does.

If the audit record of a successful call cannot be written, the caller gets ``Unavailable``
instead of the result: no key material leaves the daemon unaudited.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kms.audit import AuditEvent, AuditLog, format_record, request_parameters
from kms.crypto import MAX_BLOB_SIZE, MAX_PLAINTEXT, canonical_context
from kms.keystore import KEY_STATES
from kms.service import KmsService, validation_error
from proto.errors import AccessDenied, RpcError, Unavailable
from proto.metrics import LATENCY_BUCKETS
from proto.rpc import Call, Handler

log = logging.getLogger(__name__)

ACL: dict[str, tuple[str, ...]] = {
    "CreateKey": ("gateway", "admin"),
    "DescribeKey": ("gateway", "coordinator", "node-*", "admin"),
    "ListKeys": ("gateway", "admin"),
    "GetManagedKey": ("coordinator",),
    "GenerateDataKey": ("node-*", "gateway"),
    "GenerateDataKeyWithoutPlaintext": ("coordinator", "node-*", "gateway"),
    "Encrypt": ("gateway", "coordinator"),
    "Decrypt": ("node-*", "gateway", "coordinator"),
}

MAX_CONTEXT_PAIRS = 64
MAX_CONTEXT_BYTES = 8192
MAX_DESCRIPTION = 8192
MAX_TAGS = 50
MAX_REF = 2048


def allowed(principal: str, operation: str) -> bool:
    return any(fnmatch.fnmatchcase(principal, p) for p in ACL.get(operation, ()))


# -- argument checks (each returns the clean value or raises ValidationException) ------------


def _str_arg(name: str, v: Any, *, min_len: int = 1, max_len: int = MAX_REF) -> str:
    if not isinstance(v, str) or not min_len <= len(v) <= max_len:
        raise validation_error(f"{name} must be a string of {min_len}..{max_len} characters")
    return v


def _int_arg(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise validation_error(f"{name} must be an integer in {lo}..{hi}")
    return v


def _bytes_arg(name: str, v: Any, lo: int, hi: int) -> bytes:
    if not isinstance(v, bytes) or not lo <= len(v) <= hi:
        raise validation_error(f"{name} must be binary of {lo}..{hi} bytes")
    return v


def _context_arg(v: Any) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or len(v) > MAX_CONTEXT_PAIRS:
        raise validation_error(f"encryption_context must be a map of at most {MAX_CONTEXT_PAIRS} pairs")
    if not all(isinstance(k, str) and k and isinstance(x, str) for k, x in v.items()):
        raise validation_error("encryption_context keys must be non-empty strings and values strings")
    try:
        size = len(canonical_context(v))
    except (TypeError, ValueError):
        raise validation_error("encryption_context is not valid Unicode") from None
    if size > MAX_CONTEXT_BYTES:
        raise validation_error(f"encryption_context exceeds {MAX_CONTEXT_BYTES} bytes")
    return dict(v)


def _tags_arg(v: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(v, list) or len(v) > MAX_TAGS:
        raise validation_error(f"tags must be a list of at most {MAX_TAGS} {{TagKey, TagValue}} maps")
    out: dict[str, str] = {}
    for tag in v:
        if not isinstance(tag, dict) or set(tag) != {"TagKey", "TagValue"}:
            raise validation_error("each tag must be a map with exactly TagKey and TagValue")
        key = _str_arg("TagKey", tag["TagKey"], max_len=128)
        if key in out:
            raise validation_error(f"duplicate TagKey {key!r}")
        out[key] = _str_arg("TagValue", tag["TagValue"], min_len=0, max_len=256)
    return tuple(out.items())


_key_id = functools.partial(_str_arg, "key_id")
# operation -> {arg: (required, checker)}; ``caller`` (user ARN, audit only) is accepted everywhere.
_ArgSpec = dict[str, tuple[bool, Callable[[Any], Any]]]
_CONTEXT: _ArgSpec = {"encryption_context": (False, _context_arg)}
ARGS: dict[str, _ArgSpec] = {
    "CreateKey": {"description": (False, functools.partial(_str_arg, "description", min_len=0,
                                                           max_len=MAX_DESCRIPTION)),
                  "tags": (False, _tags_arg)},
    "DescribeKey": {"key_id": (True, _key_id)},
    "ListKeys": {"limit": (False, functools.partial(_int_arg, "limit", lo=1, hi=1000)),
                 "marker": (False, functools.partial(_str_arg, "marker", max_len=1024))},
    "GetManagedKey": {"alias": (True, functools.partial(_str_arg, "alias", max_len=256))},
    "GenerateDataKey": {"key_id": (True, _key_id), **_CONTEXT,
                        "number_of_bytes": (False, functools.partial(_int_arg, "number_of_bytes",
                                                                     lo=1, hi=1024))},
    "Encrypt": {"key_id": (True, _key_id), **_CONTEXT,
                "plaintext": (True, functools.partial(_bytes_arg, "plaintext", lo=1, hi=MAX_PLAINTEXT))},
    "Decrypt": {"key_id": (False, _key_id), **_CONTEXT,
                "ciphertext_blob": (True, functools.partial(_bytes_arg, "ciphertext_blob", lo=1,
                                                            hi=max(MAX_BLOB_SIZE, 6144)))},
}
ARGS["GenerateDataKeyWithoutPlaintext"] = ARGS["GenerateDataKey"]


def parse_args(operation: str, args: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Check a call's arguments.

    Returns:
        (the clean arguments without ``caller``, the caller ARN or None).

    Raises:
        InvalidRequest (ValidationException): unknown, missing or ill-typed argument.
    """
    spec = ARGS[operation]
    unknown = sorted(set(args) - set(spec) - {"caller"})
    if unknown:
        raise validation_error(f"unknown argument(s) for {operation}: {', '.join(map(str, unknown))}")
    caller = _str_arg("caller", args["caller"]) if args.get("caller") is not None else None
    clean: dict[str, Any] = {}
    for name, (required, check) in spec.items():
        if args.get(name) is None:
            if required:
                raise validation_error(f"{operation} requires {name}")
            continue
        clean[name] = check(args[name])
    return clean, caller


# -- metrics -----------------------------------------------------------------------------------


class KmsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("onezone_kms_requests_total", "KMS requests by operation and outcome "
                                "(ok or the AWS error name).", ["operation", "outcome"], registry=registry)
        self.duration = Histogram("onezone_kms_request_duration_seconds", "Time to serve a KMS request.",
                                  ["operation"], buckets=LATENCY_BUCKETS, registry=registry)
        self.keys = Gauge("onezone_kms_keys", "KMS keys by state.", ["state"], registry=registry)
        self.audit_write = Histogram("onezone_kms_audit_write_duration_seconds",
                                     "Time to append one audit record.", buckets=LATENCY_BUCKETS,
                                     registry=registry)

    def set_keys(self, counts: Mapping[str, int]) -> None:
        for state in KEY_STATES:
            self.keys.labels(state).set(counts.get(state, 0))


# -- the handlers ------------------------------------------------------------------------------


class KmsHandlers:
    """``handlers()`` gives the RpcServer mapping; each call is authorized, checked, audited."""

    def __init__(self, service: KmsService, audit: AuditLog, metrics: KmsMetrics, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.audit = audit
        self.metrics = metrics
        self._clock = clock
        self._write_lock = trio.Lock()
        metrics.set_keys(service.store.count_by_state())

    def handlers(self) -> dict[str, Handler]:
        return {op: functools.partial(self._handle, op) for op in ACL}

    @staticmethod
    def server_acl() -> dict[str, list[str]]:
        """Pass-through ACL for RpcServer: the real check is ``allowed`` (see module docstring)."""
        return {op: ["*"] for op in ACL}

    async def _handle(self, operation: str, call: Call) -> Any:
        start = time.perf_counter()
        raw = call.args
        caller = raw.get("caller") if isinstance(raw.get("caller"), str) else None
        result: Any = None
        error: RpcError | None = None
        try:
            if not allowed(call.principal, operation):
                raise AccessDenied(f"principal {call.principal!r} is not authorized to perform "
                                   f"kms:{operation}", kind="AccessDeniedException")
            args, caller = parse_args(operation, raw)
            result = await self._run(operation, args)
        except RpcError as exc:
            error = exc
        except trio.Cancelled:
            # deadline, client cancel or shutdown: still one record per request, then re-raise
            self._record_quietly(operation, call, caller, raw, "Cancelled",
                                 "request cancelled (deadline, caller or shutdown)", start)
            raise
        except Exception:
            # RpcServer logs the traceback and answers Internal; we only audit and count.
            self._record_quietly(operation, call, caller, raw, "KMSInternalException", "internal error", start)
            raise
        if error is not None:
            self._record_quietly(operation, call, caller, raw, error.kind or error.code.value,
                                 error.message, start)
            raise error
        try:
            self._record(operation, call, caller, raw, result, None, None, start)
        except OSError as exc:
            log.error("event=audit_write_failed path=%s error=%s", self.audit.path, exc.strerror or exc)
            raise Unavailable("the KMS audit log cannot be written", kind="KMSInternalException") from None
        return result

    async def _run(self, operation: str, args: dict[str, Any]) -> Any:
        svc = self.service
        if operation in ("CreateKey", "GetManagedKey"):
            fn = (functools.partial(svc.create_key, description=args.get("description", ""),
                                    tags=args.get("tags", ())) if operation == "CreateKey"
                  else functools.partial(svc.get_managed_key, args["alias"]))
            async with self._write_lock:
                try:
                    return await trio.to_thread.run_sync(fn)
                finally:
                    self.metrics.set_keys(svc.store.count_by_state())
        if operation == "DescribeKey":
            return svc.describe_key(args["key_id"])
        if operation == "ListKeys":
            return svc.list_keys(limit=args.get("limit", 100), marker=args.get("marker"))
        ctx = args.get("encryption_context", {})
        if operation in ("GenerateDataKey", "GenerateDataKeyWithoutPlaintext"):
            fn = functools.partial(svc.generate_data_key, args["key_id"], encryption_context=ctx,
                                   number_of_bytes=args.get("number_of_bytes", 32),
                                   include_plaintext=operation == "GenerateDataKey")
        elif operation == "Encrypt":
            fn = functools.partial(svc.encrypt, args["key_id"], plaintext=args["plaintext"],
                                   encryption_context=ctx)
        else:
            fn = functools.partial(svc.decrypt, args["ciphertext_blob"], encryption_context=ctx,
                                   key_id=args.get("key_id"))
        return await trio.to_thread.run_sync(fn)

    def _record_quietly(self, operation: str, call: Call, caller: str | None, raw: Mapping[str, Any],
                        error_code: str, error_message: str, start: float) -> None:
        try:
            self._record(operation, call, caller, raw, None, error_code, error_message, start)
        except OSError as exc:
            log.error("event=audit_write_failed path=%s error=%s", self.audit.path, exc.strerror or exc)

    def _record(self, operation: str, call: Call, caller: str | None, raw: Mapping[str, Any],
                result: Any, error_code: str | None, error_message: str | None, start: float) -> None:
        """Count the request and append its audit record (raises OSError if that fails)."""
        self.metrics.requests.labels(operation, error_code or "ok").inc()
        self.metrics.duration.labels(operation).observe(time.perf_counter() - start)
        key_arn = None
        if isinstance(result, dict):
            key_arn = result.get("KeyId") if "KeyId" in result else result.get("KeyMetadata", {}).get("Arn")
        if key_arn is None and operation != "ListKeys":
            key_arn = self.service.key_arn_of(raw.get("key_id"))
        event = AuditEvent(
            operation=operation, principal=call.principal, region=self.service.region,
            account_id=self.service.account_id, time=self._clock(), request_id=call.request_id,
            event_id=str(uuid.uuid4()), source=call.peer.rpartition(":")[0], caller=caller,
            request_parameters=request_parameters(operation, raw), key_arn=key_arn,
            error_code=error_code, error_message=error_message)
        begin = time.perf_counter()
        self.audit.write(format_record(event))
        self.metrics.audit_write.observe(time.perf_counter() - begin)
