"""The gateway's view of the cluster: RPC calls to the coordinator, the KMS and the nodes,
with short-lived caches, and the one mapping from RPC errors to S3 errors.

Caches (TTL from config): access-key auth contexts (secret + policies, so SigV4 verification
costs no RPC on the hot path) and bucket records (placement, encryption, version). A change made
through this gateway invalidates its own entry; other gateways see it within the TTL, and nodes
refetch whenever a request carries a newer ``bucket_version``.

Coordinator outage (serve-stale): when a refresh fails because the coordinator cannot be
reached (``Unavailable`` without a kind, or ``DeadlineExceeded``), an expired entry younger than
``max_stale_s`` is served instead, so existing buckets keep working with the credentials and
placements last seen; every such use is counted (``observe_stale``). Control operations have
no cache: they fail with kind ``CoordinatorUnavailable``, which ``s3_error`` turns into a 503
``ServiceUnavailable`` that says so (IAM: ``ServiceFailure``, ``gateway.iam_api``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from gateway.errors import S3Error
from gateway.failover import FAILOVER_WAIT_S, ReplayableBody, read_next, read_order, unreachable, write_retryable
from proto import errors as rpc_errors
from proto.bucket_policy import validate_bucket_policy
from proto.policy import Policy, parse_policy
from proto.rpc import RpcClient, RpcPool

log = logging.getLogger(__name__)

# RPC error kinds that are S3 error codes as they are
_S3_KINDS = {
    "NoSuchBucket", "NoSuchKey", "NoSuchUpload", "InvalidBucketName", "BucketAlreadyExists",
    "BucketAlreadyOwnedByYou", "BucketNotEmpty", "InvalidArgument", "InvalidRequest",
    "PreconditionFailed", "BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "IncompleteBody",
    "EntityTooLarge", "EntityTooSmall", "InvalidRange", "InvalidWriteOffset", "TooManyParts",
    "EncryptionTypeMismatch", "InvalidLocationConstraint", "KeyTooLongError", "MetadataTooLarge",
    "AccessDenied", "InvalidPart", "InvalidPartOrder", "NotImplemented", "SlowDown",
    "MalformedPolicy", "NoSuchBucketPolicy", "OperationAborted",
    "IdempotencyParameterMismatch",
}
_KMS_KINDS = {"DisabledException", "KMSInvalidStateException", "NotFoundException",
              "InvalidCiphertextException", "AccessDeniedException", "KMSInternalException",
              "IncorrectKeyException", "ValidationException"}


def s3_error(exc: rpc_errors.RpcError, *, resource: str | None = None) -> S3Error:
    """Turn a typed RPC error into the S3 error a client should see (never a bare 500 for a
    client's mistake, never a 500 for a KMS problem).

    KMS kinds become S3's ``KMS.<kind>`` codes: ``DisabledException`` (key disabled),
    ``KMSInvalidStateException`` (pending deletion), ``NotFoundException``,
    ``InvalidCiphertextException``, ``AccessDeniedException`` (403, the key policy refused).
    A KMS that cannot be reached (``KMSUnavailable``) or that cannot serve
    (``KMSInternalException``) is ``503 SlowDown`` with a message saying so.
    """
    kind = exc.kind or ""
    if kind in _S3_KINDS:
        return S3Error(kind, exc.message or None, resource=resource)
    if kind == "InsufficientStorage":
        return S3Error("SlowDown", f"The storage node holding this bucket is out of disk space; nothing was "
                                  f"stored. Retry later or write to another bucket. ({exc.message})", resource=resource)
    if kind in ("KMSUnavailable", "KMSInternalException"):
        return S3Error("SlowDown", f"The KMS is unavailable, so the bucket key cannot be obtained; retry "
                                  f"later. ({exc.message})", resource=resource)
    if kind in _KMS_KINDS:
        code = f"KMS.{kind}"
        if kind in ("IncorrectKeyException", "ValidationException"):
            code = "KMS.InvalidCiphertextException" if kind == "IncorrectKeyException" else "InvalidArgument"
        try:
            return S3Error(code, exc.message or None, resource=resource)
        except ValueError:
            return S3Error("InvalidArgument", exc.message or None, resource=resource)
    if kind == "CoordinatorUnavailable":
        return S3Error("ServiceUnavailable", exc.message, resource=resource)
    if isinstance(exc, rpc_errors.NotFound):
        return S3Error("NoSuchKey", exc.message or None, resource=resource)
    if isinstance(exc, rpc_errors.AccessDenied):
        return S3Error("AccessDenied", resource=resource)
    if isinstance(exc, rpc_errors.PreconditionFailed):
        return S3Error("PreconditionFailed", exc.message or None, resource=resource)
    if isinstance(exc, rpc_errors.InvalidRequest):
        return S3Error("InvalidRequest", exc.message or None, resource=resource)
    if isinstance(exc, rpc_errors.Conflict):
        return S3Error("InvalidRequest", exc.message or None, resource=resource)
    if isinstance(exc, (rpc_errors.Unavailable, rpc_errors.DeadlineExceeded)):
        return S3Error("ServiceUnavailable", f"Please reduce your request rate. ({exc.message})", resource=resource)
    return S3Error("InternalError", "We encountered an internal error. Please try again.", resource=resource)


@dataclass(frozen=True, slots=True)
class AuthContext:
    access_key_id: str
    user_name: str
    user_arn: str
    account_id: str
    secret: str
    active: bool
    policies: tuple[Policy, ...]


def coordinator_unreachable(exc: rpc_errors.RpcError) -> bool:
    """True when ``exc`` says the coordinator could not be reached or did not answer in time
    (as opposed to an answer, even an ``Unavailable`` one with a kind)."""
    return isinstance(exc, rpc_errors.DeadlineExceeded) or (
        isinstance(exc, rpc_errors.Unavailable) and not exc.kind)


class _TtlCache:
    """Entries fresh for ``ttl_s``, then kept as stale for up to ``max_stale_s`` more."""

    def __init__(self, ttl_s: float, max_stale_s: float = 0.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_stale_s = max_stale_s
        self.max_entries = max_entries
        self._data: dict[str, tuple[float, Any]] = {}  # key -> (stored at, value)

    def get(self, key: str) -> Any | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        age = trio.current_time() - hit[0]
        if age > self.ttl_s + self.max_stale_s:
            del self._data[key]
        return hit[1] if age <= self.ttl_s else None

    def get_stale(self, key: str) -> Any | None:
        """The entry if it is at most ``ttl_s + max_stale_s`` old (the outage fallback)."""
        hit = self._data.get(key)
        if hit is None or trio.current_time() - hit[0] > self.ttl_s + self.max_stale_s:
            return None
        return hit[1]

    def put(self, key: str, value: Any) -> None:
        self._data.pop(key, None)
        if len(self._data) >= self.max_entries:
            self._data.pop(next(iter(self._data)))
        self._data[key] = (trio.current_time(), value)

    def drop(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


class Backend:
    def __init__(self, pool: RpcPool, *, coordinator: tuple[str, int], kms: tuple[str, int],
                 auth_cache_s: float, bucket_cache_s: float, timeout_s: float,
                 max_stale_s: float = 0.0, observe_stale: Callable[[str], None] | None = None) -> None:
        self.pool = pool
        self.coordinator: RpcClient = pool.client(coordinator[0], coordinator[1], "coordinator")
        self.kms: RpcClient = pool.client(kms[0], kms[1], "kms")
        self._auth = _TtlCache(auth_cache_s, max_stale_s)
        self._buckets = _TtlCache(bucket_cache_s, max_stale_s)
        self._policies: dict[str, Policy] = {}  # policy text -> parsed
        self.timeout_s = timeout_s
        self.observe_stale = observe_stale or (lambda what: None)
        self._reported: dict[str, float] = {}  # node id -> when last reported unreachable

    async def coord(self, method: str, args: dict[str, Any]) -> Any:
        """Call the coordinator; unreachable is ``Unavailable`` kind ``CoordinatorUnavailable``."""
        try:
            return await self.coordinator.call(method, args, timeout_s=self.timeout_s)
        except rpc_errors.RpcError as exc:
            if coordinator_unreachable(exc):
                raise rpc_errors.Unavailable(
                    f"The control plane (coordinator) is unreachable, so {method} cannot be served "
                    "now; reads and writes of existing buckets continue. Retry later.",
                    kind="CoordinatorUnavailable") from None
            raise

    def forget_auth_contexts(self) -> None:
        """Drop every cached auth context (after an IAM change made through this gateway)."""
        self._auth.clear()

    def _stale(self, cache: _TtlCache, key: str, what: str, exc: rpc_errors.RpcError) -> Any:
        if exc.kind != "CoordinatorUnavailable":
            raise exc
        value = cache.get_stale(key)
        if value is None:
            raise exc
        self.observe_stale(what)
        log.warning("event=serve_stale what=%s reason=coordinator_unreachable", what)
        return value

    async def auth_context(self, access_key_id: str) -> AuthContext | None:
        """The key's secret and policies, or None when the key does not exist."""
        cached = self._auth.get(access_key_id)
        if cached is not None:
            return cached
        try:
            r = await self.coord("GetAuthContext", {"access_key_id": access_key_id})
        except rpc_errors.NotFound:
            self._auth.drop(access_key_id)
            return None
        except rpc_errors.Unavailable as exc:
            return self._stale(self._auth, access_key_id, "auth_context", exc)
        policies = []
        for doc in r.get("policies", []):
            try:
                policies.append(parse_policy(doc))
            except ValueError:
                log.warning("event=bad_stored_policy user=%s", r.get("user_name"))
        ctx = AuthContext(access_key_id, r["user_name"], r["user_arn"], r.get("account_id", ""),
                          r["secret_access_key"], r.get("status", "Active") == "Active", tuple(policies))
        self._auth.put(access_key_id, ctx)
        return ctx

    async def bucket(self, name: str, *, fresh: bool = False) -> dict[str, Any] | None:
        if not fresh:
            cached = self._buckets.get(name)
            if cached is not None:
                return cached
        try:
            r = await self.coord("GetBucket", {"name": name})
        except rpc_errors.NotFound:
            self._buckets.drop(name)
            return None
        except rpc_errors.Unavailable as exc:
            return self._stale(self._buckets, name, "bucket", exc)
        self._buckets.put(name, r["bucket"])
        return r["bucket"]

    def bucket_policy(self, record: dict[str, Any] | None) -> Policy | None:
        """The parsed policy of a bucket record (parsed once per distinct text, bounded)."""
        text = (record or {}).get("policy")
        if not text:
            return None
        policy = self._policies.get(text)
        if policy is None:
            try:
                policy = validate_bucket_policy(text, record["arn"])
            except ValueError:
                # the coordinator validated it: a policy it stored but we cannot read must not
                # silently allow or deny; refuse requests on the bucket instead
                log.error("event=bad_stored_bucket_policy bucket=%s", record.get("name"))
                raise rpc_errors.Internal("the bucket's stored policy cannot be parsed") from None
            if len(self._policies) >= 1000:
                self._policies.pop(next(iter(self._policies)))
            self._policies[text] = policy
        return policy

    def remember_bucket(self, record: dict[str, Any]) -> None:
        self._buckets.put(record["name"], record)

    def forget_bucket(self, name: str) -> None:
        self._buckets.drop(name)

    def node(self, replica: dict[str, Any]) -> RpcClient:
        return self.pool.client(replica["host"], replica["port"], replica["node_id"])

    async def node_call(self, bucket: dict[str, Any], method: str, args: dict[str, Any], *,
                        body: AsyncIterable[bytes] | None = None, any_replica: bool = False) -> Any:
        """Call the bucket's primary (writes, with failover: ``gateway.failover``) or the first
        replica that answers (reads: complete copies first)."""
        if any_replica:
            return await self._read_call(bucket, method, args)
        replay = ReplayableBody(body) if body is not None else None
        try:
            return await self._write_call(bucket, method, args, replay)
        finally:
            if replay is not None:
                with trio.CancelScope(shield=True):
                    await replay.aclose()

    async def _write_call(self, bucket: dict[str, Any], method: str, args: dict[str, Any],
                          replay: ReplayableBody | None) -> Any:
        timeout = self.timeout_s if replay is None else max(self.timeout_s, 3600.0)  # long uploads: idle timeout
        deadline = trio.current_time() + FAILOVER_WAIT_S
        delay = 0.05
        while True:
            primary = bucket["replicas"][0]
            try:
                return await self.node(primary).call(method, args, body=replay.attempt() if replay else None,
                                                      timeout_s=timeout)
            except rpc_errors.RpcError as exc:
                if not write_retryable(exc) or (replay is not None and not replay.replayable) \
                        or trio.current_time() + delay > deadline:
                    raise
                log.warning("event=write_retry bucket=%s node=%s kind=%s error=%s", bucket["name"],
                            primary["node_id"], exc.kind or exc.code.value, exc.message)
                if unreachable(exc):
                    await self._report_unreachable(primary["node_id"])
            await trio.sleep(delay)
            delay = min(delay * 2, 1.0)
            fresh = await self.bucket(bucket["name"], fresh=True)
            if fresh is None:
                raise rpc_errors.NotFound(f"the bucket {bucket['name']} does not exist", kind="NoSuchBucket")
            bucket = fresh
            if "bucket_version" in args:
                args = {**args, "bucket_version": bucket["version"]}

    async def _read_call(self, bucket: dict[str, Any], method: str, args: dict[str, Any]) -> Any:
        last: rpc_errors.RpcError | None = None
        for replica in read_order(bucket):
            try:
                return await self.node(replica).call(method, args, timeout_s=self.timeout_s)
            except rpc_errors.RpcError as exc:
                if not read_next(exc):
                    raise
                last = exc
                if unreachable(exc):
                    await self._report_unreachable(replica["node_id"])
        raise last if last is not None else rpc_errors.Unavailable("bucket has no replicas")

    async def _report_unreachable(self, node_id: str) -> None:
        """Tell the coordinator (a hint for a faster failover; at most once a second per node);
        its own failure is ignored."""
        now = trio.current_time()
        if now - self._reported.get(node_id, -10.0) < 1.0:
            return
        self._reported[node_id] = now
        try:
            await self.coordinator.call("ReportNodeUnreachable", {"node_id": node_id}, timeout_s=self.timeout_s)
        except rpc_errors.RpcError:
            pass
