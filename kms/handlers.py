"""RPC edge of the KMS daemon: authorization, argument validation, audit, metrics.

Responsibility
--------------
Adapt ``KmsService`` to ``proto.rpc`` handlers. For every call, in this order: check the
caller's principal against ``ACL`` (fnmatch patterns, as in docs/rpc.md), check the
arguments' names, types and sizes (``kms.args``, ``ValidationException``), check the key
policy of every key the request acts on (``kms.keypolicy``: for the end user named by
``caller``, else for the service's role ARN), run the operation (keystore writes serialized by
a lock in a worker thread; reads and crypto on at most 4 KiB inline, cheaper than a thread
hop), then append one audit record and count the request, whatever the outcome. Every call,
refused or not, is answered only once its audit record is on disk (group-committed write and
fsync, ``AuditLog``).

``maintain`` / ``run_maintenance`` is the background task that deletes keys whose deletion
window ended and rotates keys due for automatic rotation (``KeyAdmin.run_due``).

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
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kms.args import ARGS, parse_args
from kms.audit import AuditEvent, EventIds, encode_event, format_record, request_parameters
from kms.auditlog import AuditLog
from kms.keypolicy import decide, service_arn
from kms.keystore import KEY_STATES, KeyRecord
from kms.lifecycle import KeyAdmin, check_policy
from kms.service import KmsService, validation_error
from proto.errors import AccessDenied, RpcError, Unavailable
from proto.kmsblob import blob_key
from proto.metrics import LATENCY_BUCKETS
from proto.rpc import Call, Handler

__all__ = ["ACL", "ARGS", "KmsHandlers", "KmsMetrics", "allowed", "parse_args"]

log = logging.getLogger(__name__)

_MGMT = ("gateway", "admin")
ACL: dict[str, tuple[str, ...]] = {
    "CreateKey": _MGMT,
    "DescribeKey": ("gateway", "coordinator", "node-*", "admin"),
    "ListKeys": _MGMT,
    "GetManagedKey": ("coordinator",),
    "GenerateDataKey": ("node-*", "gateway"),
    "GenerateDataKeyWithoutPlaintext": ("coordinator", "node-*", "gateway"),
    "Encrypt": ("gateway", "coordinator"),
    "Decrypt": ("node-*", "gateway", "coordinator"),
    "ReEncrypt": ("gateway", "coordinator", "admin"),
    "GenerateRandom": _MGMT,
    **{op: _MGMT for op in (
        "EnableKey", "DisableKey", "ScheduleKeyDeletion", "CancelKeyDeletion", "EnableKeyRotation",
        "DisableKeyRotation", "GetKeyRotationStatus", "RotateKeyOnDemand", "ListKeyRotations", "GetKeyPolicy",
        "PutKeyPolicy", "TagResource", "UntagResource", "ListResourceTags", "CreateAlias", "UpdateAlias",
        "DeleteAlias", "ListAliases")},
    "KeyStateChanges": ("node-*", "gateway", "coordinator", "admin"),
}
# Operations that change the keystore: serialized by one lock, run in a worker thread.
WRITES = frozenset({"CreateKey", "GetManagedKey", "EnableKey", "DisableKey", "ScheduleKeyDeletion",
                    "CancelKeyDeletion", "EnableKeyRotation", "DisableKeyRotation", "RotateKeyOnDemand",
                    "PutKeyPolicy", "TagResource", "UntagResource", "CreateAlias", "UpdateAlias", "DeleteAlias"})
# Operations that are not about one key: only the ACL (and the caller's IAM policies at the gateway).
NO_KEY_POLICY = frozenset({"CreateKey", "ListKeys", "GetManagedKey", "GenerateRandom", "ListAliases",
                           "KeyStateChanges"})


@functools.lru_cache(maxsize=4096)  # ACL is a constant; principals are certificate names
def allowed(principal: str, operation: str) -> bool:
    return any(fnmatch.fnmatchcase(principal, p) for p in ACL.get(operation, ()))


# -- metrics -----------------------------------------------------------------------------------


class KmsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("onezone_kms_requests_total", "KMS requests by operation and outcome "
                                "(ok or the AWS error name).", ["operation", "outcome"], registry=registry)
        self.duration = Histogram("onezone_kms_request_duration_seconds", "Time to serve a KMS request.",
                                  ["operation"], buckets=LATENCY_BUCKETS, registry=registry)
        self.keys = Gauge("onezone_kms_keys", "KMS keys by state.", ["state"], registry=registry)
        self.audit_write = Histogram("onezone_kms_audit_write_duration_seconds",
                                     "Time to write and fsync one group of audit records (group commit).",
                                     buckets=LATENCY_BUCKETS, registry=registry)

        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def count(self, operation: str, outcome: str, seconds: float) -> None:
        """Count one request and observe its duration (label children cached: labels() is not free)."""
        children = self._children.get((operation, outcome))
        if children is None:
            children = (self.requests.labels(operation, outcome), self.duration.labels(operation))
            if len(self._children) < 4096:
                self._children[(operation, outcome)] = children
        children[0].inc()
        children[1].observe(seconds)

    def set_keys(self, counts: Mapping[str, int]) -> None:
        for state in KEY_STATES:
            self.keys.labels(state).set(counts.get(state, 0))


# -- the handlers ------------------------------------------------------------------------------


class KmsHandlers:
    """``handlers()`` gives the RpcServer mapping; each call is authorized, checked, audited."""

    def __init__(self, service: KmsService, audit: AuditLog, metrics: KmsMetrics, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.admin = KeyAdmin(service)
        self.audit = audit
        self.metrics = metrics
        self._clock = clock
        self._write_lock = trio.Lock()
        self._event_id = EventIds()
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
            if caller is not None and not _CALLER_RE.fullmatch(caller):
                raise validation_error("caller must be an IAM ARN of this partition (arn:aws:iam::...)")
            principal = caller or service_arn(self.service.account_id, call.principal)
            self._authorize(operation, args, principal)
            result = await self._run(operation, args, principal)
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
            seq = self._record_quietly(operation, call, caller, raw, error.kind or error.code.value,
                                       error.message, start)
            if seq is not None:
                try:  # refusals too are answered once their record is on disk
                    await self.audit.durable(seq)
                except OSError:
                    pass  # logged by the audit log; the caller gets its error either way
            raise error
        try:
            seq = self._record(operation, call, caller, raw, result, None, None, start)
            await self.audit.durable(seq)
        except OSError as exc:
            log.error("event=audit_write_failed path=%s error=%s", self.audit.path, exc.strerror or exc)
            raise Unavailable("the KMS audit log cannot be written", kind="KMSInternalException") from None
        return result

    # -- key policies ------------------------------------------------------------------------------
    def _targets(self, op: str, args: dict[str, Any]) -> list[tuple[KeyRecord, str]]:
        """The keys a request acts on, with the key-policy action each needs."""
        svc = self.service
        if op in NO_KEY_POLICY:
            return []
        if op == "Decrypt":
            rec = svc.resolve(args["key_id"]) if "key_id" in args else svc.blob_key(args["ciphertext_blob"])
            return [] if rec is None else [(rec, "kms:Decrypt")]
        if op == "ReEncrypt":
            out = [(svc.resolve(args["destination_key_id"]), "kms:ReEncryptTo")]
            src = (svc.resolve(args["source_key_id"]) if "source_key_id" in args
                   else svc.blob_key(args["ciphertext_blob"]))
            return out if src is None else [(src, "kms:ReEncryptFrom"), *out]
        if op in ("CreateAlias", "UpdateAlias"):
            return [(svc.resolve(args["target_key_id"]), f"kms:{op}")]
        if op == "DeleteAlias":
            key_id = svc.alias_target(args["alias_name"])
            rec = None if key_id is None else svc.store.get(key_id)
            return [] if rec is None else [(rec, "kms:DeleteAlias")]
        return [(svc.resolve(args["key_id"]), f"kms:{op}")]

    def _authorize(self, op: str, args: dict[str, Any], principal: str) -> None:
        for rec, action in self._targets(op, args):
            arn = self.service.arn(rec.key_id)
            if not decide(rec.policy, account_id=self.service.account_id, principal=principal,
                          action=action, key_arn=arn):
                raise AccessDenied(f"User: {principal} is not authorized to perform: {action} on resource: "
                                   f"{arn} because no resource-based policy allows the {action} action",
                                   kind="AccessDeniedException")

    # -- running ---------------------------------------------------------------------------------------
    def _call(self, op: str, args: dict[str, Any], principal: str) -> Callable[[], Any]:
        svc, adm = self.service, self.admin
        a = dict(args)
        if op == "CreateKey":
            policy = a.get("policy")
            if policy is not None:
                check_policy(policy, account_id=svc.account_id, principal=principal, key_arn="*",
                             bypass=a.get("bypass_policy_lockout_safety_check", False))
            return functools.partial(svc.create_key, description=a.get("description", ""),
                                     tags=a.get("tags", ()), policy=policy)
        if op == "GetManagedKey":
            return functools.partial(svc.get_managed_key, a["alias"])
        if op == "DescribeKey":
            return functools.partial(svc.describe_key, a["key_id"])
        if op == "ListKeys":
            return functools.partial(svc.list_keys, limit=a.get("limit", 100), marker=a.get("marker"))
        if op in ("GenerateDataKey", "GenerateDataKeyWithoutPlaintext"):
            return functools.partial(svc.generate_data_key, a["key_id"],
                                     encryption_context=a.get("encryption_context", {}),
                                     number_of_bytes=a.get("number_of_bytes", 32),
                                     include_plaintext=op == "GenerateDataKey")
        if op == "Encrypt":
            return functools.partial(svc.encrypt, a["key_id"], plaintext=a["plaintext"],
                                     encryption_context=a.get("encryption_context", {}))
        if op == "Decrypt":
            return functools.partial(svc.decrypt, a["ciphertext_blob"],
                                     encryption_context=a.get("encryption_context", {}), key_id=a.get("key_id"))
        if op == "ReEncrypt":
            return functools.partial(
                svc.re_encrypt, a["ciphertext_blob"], destination_key_id=a["destination_key_id"],
                source_encryption_context=a.get("source_encryption_context", {}),
                destination_encryption_context=a.get("destination_encryption_context", {}),
                source_key_id=a.get("source_key_id"))
        if op == "GenerateRandom":
            return functools.partial(svc.generate_random, number_of_bytes=a.get("number_of_bytes", 32))
        if op == "KeyStateChanges":
            return functools.partial(svc.feed.changes_since, a.get("epoch"), a.get("version"))
        if op == "PutKeyPolicy":
            a["principal"] = principal
        method = getattr(adm, _snake(op))
        if op in ("CreateAlias", "UpdateAlias", "DeleteAlias") or op == "ListAliases":
            return functools.partial(method, **a)
        return functools.partial(method, a.pop("key_id"), **a)

    async def _run(self, operation: str, args: dict[str, Any], principal: str) -> Any:
        fn = self._call(operation, args, principal)
        if operation not in WRITES:
            # reads and crypto on <= 4 KiB run inline: cheaper than a thread hop
            return fn()
        async with self._write_lock:
            try:
                return await trio.to_thread.run_sync(fn)
            except OSError as exc:
                log.error("event=keystore_write_failed error=%s", exc.strerror or exc)
                raise Unavailable("the KMS keystore cannot be written", kind="KMSInternalException") from None
            finally:
                self.metrics.set_keys(self.service.store.count_by_state())

    # -- background maintenance ----------------------------------------------------------------------
    async def maintain(self) -> list[tuple[str, str]]:
        """One pass of the background task: delete keys whose window ended, rotate due keys;
        each action is audited (``DeleteKey`` / ``RotateKey`` by ``kms.amazonaws.com``)."""
        async with self._write_lock:
            try:
                done = await trio.to_thread.run_sync(self.admin.run_due)
            finally:
                self.metrics.set_keys(self.service.store.count_by_state())
        for key_id, what in done:
            log.info("event=key_%s key_id=%s", what.lower(), key_id)
            event = AuditEvent(
                operation="DeleteKey" if what == "Deleted" else "RotateKey", principal="kms.amazonaws.com",
                region=self.service.region, account_id=self.service.account_id, time=self._clock(),
                request_id=str(uuid.uuid4()), event_id=self._event_id(), source="kms.amazonaws.com",
                request_parameters={"keyId": key_id}, key_arn=self.service.arn(key_id))
            try:
                self.audit.write(format_record(event))
            except OSError as exc:
                log.error("event=audit_write_failed path=%s error=%s", self.audit.path, exc.strerror or exc)
        return done

    async def run_maintenance(self, interval_s: float, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run ``maintain`` every ``interval_s`` until cancelled (errors are logged, not fatal)."""
        task_status.started()
        while True:
            await trio.sleep(interval_s)
            try:
                await self.maintain()
            except OSError as exc:
                log.error("event=maintenance_failed error=%s", exc.strerror or exc)

    # -- audit -------------------------------------------------------------------------------------------
    def _record_quietly(self, operation: str, call: Call, caller: str | None, raw: Mapping[str, Any],
                        error_code: str, error_message: str, start: float) -> int | None:
        try:
            return self._record(operation, call, caller, raw, None, error_code, error_message, start)
        except OSError as exc:
            log.error("event=audit_write_failed path=%s error=%s", self.audit.path, exc.strerror or exc)
            return None

    def _record(self, operation: str, call: Call, caller: str | None, raw: Mapping[str, Any],
                result: Any, error_code: str | None, error_message: str | None, start: float) -> int:
        """Count the request and append its audit record (raises OSError if that fails).

        Returns:
            The record's sequence number (for ``AuditLog.durable``).
        """
        self.metrics.count(operation, error_code or "ok", time.perf_counter() - start)
        key_arn = None
        if isinstance(result, dict):
            key_arn = result.get("KeyId") if "KeyId" in result else result.get("KeyMetadata", {}).get("Arn")
        if key_arn is None and operation not in ("ListKeys", "ListAliases", "KeyStateChanges"):
            ref = raw.get("key_id", raw.get("target_key_id", raw.get("destination_key_id")))
            key_arn = self.service.key_arn_of(ref)
            found = blob_key(raw.get("ciphertext_blob")) if key_arn is None else None
            if found is not None:
                key_arn = self.service.arn(found[0])
        if isinstance(key_arn, str) and not key_arn.startswith("arn:"):
            key_arn = self.service.arn(key_arn)
        event = AuditEvent(
            operation=operation, principal=call.principal, region=self.service.region,
            account_id=self.service.account_id, time=self._clock(), request_id=call.request_id,
            event_id=self._event_id(), source=call.peer.rpartition(":")[0], caller=caller,
            request_parameters=request_parameters(operation, raw), key_arn=key_arn,
            error_code=error_code, error_message=error_message)
        return self.audit.write(encode_event(event))


_CALLER_RE = re.compile(r"arn:aws:iam::\d{12}:[A-Za-z0-9+=,.@_/-]{1,1024}")


def _snake(op: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower()
