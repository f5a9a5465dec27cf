"""Bucket-key cache: plaintext bucket keys in memory, unwrapped by the KMS on a miss.

Responsibility
--------------
Give the object paths the 32-byte plaintext key of a bucket-key generation while calling the
KMS as rarely as possible: entries are keyed by ``(bucket_id, gen)``, live for ``ttl_s``, and
at most ``max_entries`` are kept (least recently used goes first). Concurrent misses for one
entry share a single KMS call (``SingleFlight``). Failures are not cached and pass through with
their kind (``DisabledException``, ``KMSInvalidStateException``, ``NotFoundException``,
``InvalidCiphertextException``...) so the gateway can answer ``KMS.<kind>``; a KMS that cannot
be reached becomes ``Unavailable`` kind ``KMSUnavailable``.

Revocation: every entry is filed under the KMS key that wrapped it (read from the wrapped
blob's header, ``proto.kmsblob``); ``invalidate_key`` drops all entries of a key (called by
``node.keywatch`` within a second of a Disable/ScheduleKeyDeletion). An unwrap that was in
flight while an invalidation happened is returned to its caller but not cached, so a
revocation can never be undone by a racing fill.

KMS outage: an entry past its TTL whose refresh fails because the KMS cannot be reached
(``KMSUnavailable``) keeps serving for ``grace_s`` more seconds (counted in
``onezone_node_bucket_key_cache_stale_hits``); a key never cached needs the KMS and fails.

Invariants: plaintext keys live only in this object's memory; they are never logged, never
written to disk, and ``repr`` does not show them. Time is injected (``clock``, monotonic
seconds) so TTL behaviour is testable without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from node.singleflight import SingleFlight
from proto.kmsblob import blob_key
from proto.errors import DeadlineExceeded, Internal, Unavailable

log = logging.getLogger(__name__)

KEY_BYTES = 32

Unwrap = Callable[[bytes, str], Awaitable[bytes]]
"""``await unwrap(wrapped, bucket_arn) -> plaintext`` (raises proto errors)."""


@dataclass(slots=True)
class _Entry:
    key: bytes = field(repr=False)
    expires_at: float
    kms_key_id: str | None


class BucketKeyCache:
    """See the module docstring."""

    def __init__(self, unwrap: Unwrap, *, ttl_s: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic,
                 registry: CollectorRegistry | None = None, grace_s: float = 0.0) -> None:
        if ttl_s <= 0 or max_entries < 1 or grace_s < 0:
            raise ValueError("ttl_s must be > 0, max_entries >= 1 and grace_s >= 0")
        self._unwrap = unwrap
        self._grace_s = grace_s
        self._revision = 0
        self._ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[bytes, int], _Entry] = OrderedDict()
        self._flights: SingleFlight[bytes] = SingleFlight()
        reg = registry if registry is not None else CollectorRegistry()
        self.hits = Counter("onezone_node_bucket_key_cache_hits", "Bucket-key lookups served from memory.",
                            registry=reg)
        self.misses = Counter("onezone_node_bucket_key_cache_misses",
                              "Bucket-key lookups that needed the KMS (or waited for a shared KMS call).",
                              registry=reg)
        self.evictions = Counter("onezone_node_bucket_key_cache_evictions",
                                 "Bucket keys dropped from memory (expired, over the size bound or invalidated).",
                                 registry=reg)
        self.entries = Gauge("onezone_node_bucket_key_cache_entries", "Bucket keys held in memory.",
                             registry=reg)
        self.stale_hits = Counter("onezone_node_bucket_key_cache_stale_hits",
                                  "Bucket keys served past their TTL because the KMS was unreachable (grace).",
                                  registry=reg)
        self.revocations = Counter("onezone_node_bucket_key_revocations",
                                   "Bucket keys dropped because their KMS key was disabled, scheduled for "
                                   "deletion or deleted.", registry=reg)

    def __repr__(self) -> str:
        return f"BucketKeyCache(entries={len(self._entries)}, ttl_s={self._ttl_s}, max_entries={self._max})"

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, bucket_id: bytes, gen: int, wrapped: bytes, bucket_arn: str) -> bytes:
        """Return the plaintext key of ``(bucket_id, gen)``, unwrapping ``wrapped`` on a miss.

        Raises:
            proto.errors.RpcError: the KMS refused (kind passed through) or is unreachable
                (Unavailable kind ``KMSUnavailable``).
        """
        k = (bucket_id, gen)
        entry = self._entries.get(k)
        now = self._clock()
        if entry is not None:
            if entry.expires_at > now:
                self._entries.move_to_end(k)
                self.hits.inc()
                return entry.key
            if entry.expires_at + self._grace_s <= now:
                self._drop(k)
                entry = None
        self.misses.inc()
        try:
            return await self._flights.run(k, lambda: self._fill(k, wrapped, bucket_arn))
        except Unavailable as exc:
            stale = self._entries.get(k)
            if exc.kind == "KMSUnavailable" and stale is not None and stale.expires_at + self._grace_s > self._clock():
                self.stale_hits.inc()
                log.warning("event=bucket_key_stale bucket_id=%s gen=%d reason=kms_unavailable", k[0].hex(), k[1])
                return stale.key
            raise

    async def _fill(self, k: tuple[bytes, int], wrapped: bytes, bucket_arn: str) -> bytes:
        revision = self._revision
        plaintext = await self._unwrap(wrapped, bucket_arn)
        if not isinstance(plaintext, bytes) or len(plaintext) != KEY_BYTES:
            raise Internal("the KMS returned a bucket key of the wrong size")
        if revision != self._revision:
            return plaintext  # a revocation happened meanwhile: serve this request, cache nothing
        found = blob_key(wrapped)
        self._entries[k] = _Entry(plaintext, self._clock() + self._ttl_s, None if found is None else found[0])
        self._entries.move_to_end(k)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
            self.evictions.inc()
        self.entries.set(len(self._entries))
        log.info("event=bucket_key_cached bucket_id=%s gen=%d entries=%d", k[0].hex(), k[1], len(self._entries))
        return plaintext

    def _drop(self, k: tuple[bytes, int]) -> None:
        if self._entries.pop(k, None) is not None:
            self.evictions.inc()
            self.entries.set(len(self._entries))

    def invalidate(self, bucket_id: bytes | None = None) -> int:
        """Forget every key of ``bucket_id`` (or all keys); returns how many were dropped."""
        self._revision += 1
        doomed = [k for k in self._entries if bucket_id is None or k[0] == bucket_id]
        for k in doomed:
            self._drop(k)
        return len(doomed)

    def invalidate_key(self, kms_key_id: str) -> int:
        """Forget every bucket key wrapped by KMS key ``kms_key_id``; returns how many were dropped."""
        self._revision += 1
        doomed = [k for k, e in self._entries.items() if e.kms_key_id == kms_key_id or e.kms_key_id is None]
        for k in doomed:
            self._drop(k)
        self.revocations.inc(len(doomed))
        if doomed:
            log.info("event=bucket_keys_revoked kms_key_id=%s dropped=%d", kms_key_id, len(doomed))
        return len(doomed)


def kms_unwrapper(kms: Any) -> Unwrap:
    """Adapt an RPC client of the KMS into an ``Unwrap``: ``Decrypt`` with the bucket ARN as
    encryption context (``{"aws:s3:arn": arn}``), as the coordinator wrapped it."""

    async def unwrap(wrapped: bytes, bucket_arn: str) -> bytes:
        try:
            result = await kms.call("Decrypt", {"ciphertext_blob": wrapped,
                                                "encryption_context": {"aws:s3:arn": bucket_arn}})
        except DeadlineExceeded as exc:
            raise Unavailable(f"the KMS did not answer: {exc.message}", kind="KMSUnavailable") from None
        except Unavailable as exc:
            if exc.kind is not None:
                raise
            raise Unavailable(f"the KMS is unreachable: {exc.message}", kind="KMSUnavailable") from None
        plaintext = result.get("Plaintext") if isinstance(result, dict) else None
        if not isinstance(plaintext, bytes):
            raise Internal("malformed Decrypt result from the KMS")
        return plaintext

    return unwrap
