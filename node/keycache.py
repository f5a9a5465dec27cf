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
from proto.errors import DeadlineExceeded, Internal, Unavailable

log = logging.getLogger(__name__)

KEY_BYTES = 32

Unwrap = Callable[[bytes, str], Awaitable[bytes]]
"""``await unwrap(wrapped, bucket_arn) -> plaintext`` (raises proto errors)."""


@dataclass(slots=True)
class _Entry:
    key: bytes = field(repr=False)
    expires_at: float


class BucketKeyCache:
    """See the module docstring."""

    def __init__(self, unwrap: Unwrap, *, ttl_s: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic,
                 registry: CollectorRegistry | None = None) -> None:
        if ttl_s <= 0 or max_entries < 1:
            raise ValueError("ttl_s must be > 0 and max_entries >= 1")
        self._unwrap = unwrap
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
        if entry is not None:
            if entry.expires_at > self._clock():
                self._entries.move_to_end(k)
                self.hits.inc()
                return entry.key
            self._drop(k)
        self.misses.inc()
        return await self._flights.run(k, lambda: self._fill(k, wrapped, bucket_arn))

    async def _fill(self, k: tuple[bytes, int], wrapped: bytes, bucket_arn: str) -> bytes:
        plaintext = await self._unwrap(wrapped, bucket_arn)
        if not isinstance(plaintext, bytes) or len(plaintext) != KEY_BYTES:
            raise Internal("the KMS returned a bucket key of the wrong size")
        self._entries[k] = _Entry(plaintext, self._clock() + self._ttl_s)
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
        doomed = [k for k in self._entries if bucket_id is None or k[0] == bucket_id]
        for k in doomed:
            self._drop(k)
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
