"""Bucket records fetched from the coordinator (``GetBucket``) and cached per name.

Responsibility
--------------
Resolve a bucket name to its record (id, ARN, bucket-key generations, replica set, epoch,
version) for the object paths. A record is cached for ``ttl_s``; a request that carries a
``bucket_version`` (gateway) newer than the cached ``version``, or an ``epoch`` (primary)
newer than the cached ``epoch``, refetches at once, so a node never acts on a placement older
than its caller's. Concurrent fetches of one name share a single ``GetBucket`` call. Errors
pass through (``NotFound`` kind ``NoSuchBucket``...) and are not cached.

Coordinator outage: when a refetch fails because the coordinator cannot be reached
(``Unavailable`` without a kind, or ``DeadlineExceeded``), a cached record at most
``ttl_s + max_stale_s`` old is used instead, provided it satisfies the caller's
``min_version``/``min_epoch`` (a newer placement than the cached one is never guessed at).

``BucketRecord`` is the validated, typed view of the coordinator's map (docs/rpc.md, Bucket);
a malformed record is an ``Internal`` error, never half-used.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from node.singleflight import SingleFlight
from proto.errors import DeadlineExceeded, Internal, RpcError, Unavailable

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[dict[str, Any]]]
"""``await fetch(name) -> bucket record map`` (raises proto errors)."""


@dataclass(frozen=True, slots=True)
class Replica:
    node_id: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class KeyGeneration:
    gen: int
    kms_key_arn: str
    wrapped: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class BucketRecord:
    name: str
    bucket_id: bytes
    arn: str
    sse_algorithm: str
    kms_key_arn: str | None
    keys: tuple[KeyGeneration, ...]
    active_gen: int
    replicas: tuple[Replica, ...]
    epoch: int
    version: int
    syncing: tuple[str, ...] = ()  # replicas still receiving their copy: not complete, not readable

    @classmethod
    def from_wire(cls, doc: Any) -> BucketRecord:
        """Validate the coordinator's map; Internal on anything malformed."""
        try:
            rec = cls(
                name=_typed(doc["name"], str),
                bucket_id=_typed(doc["bucket_id"], bytes),
                arn=_typed(doc["arn"], str),
                sse_algorithm=_typed(doc["sse_algorithm"], str),
                kms_key_arn=None if doc.get("kms_key_arn") is None else _typed(doc["kms_key_arn"], str),
                keys=tuple(KeyGeneration(_typed(k["gen"], int), _typed(k["kms_key_arn"], str),
                                         _typed(k["wrapped"], bytes)) for k in doc["keys"]),
                active_gen=_typed(doc["active_gen"], int),
                replicas=tuple(Replica(_typed(r["node_id"], str), _typed(r["host"], str), _typed(r["port"], int))
                               for r in doc["replicas"]),
                epoch=_typed(doc["epoch"], int),
                version=_typed(doc["version"], int),
                syncing=tuple(_typed(n, str) for n in doc.get("syncing") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Internal(f"malformed bucket record from the coordinator: {type(exc).__name__} {exc}") from None
        if not 1 <= len(rec.bucket_id) <= 64 or not rec.replicas:
            raise Internal("malformed bucket record from the coordinator: bucket_id or replicas")
        if rec.key(rec.active_gen) is None:
            raise Internal("malformed bucket record from the coordinator: no key for active_gen")
        return rec

    @property
    def primary(self) -> Replica:
        return self.replicas[0]

    def has_replica(self, node_id: str) -> bool:
        return any(r.node_id == node_id for r in self.replicas)

    def peers(self, node_id: str) -> list[Replica]:
        """Every replica but ``node_id``, in record order."""
        return [r for r in self.replicas if r.node_id != node_id]

    def key(self, gen: int) -> KeyGeneration | None:
        return next((k for k in self.keys if k.gen == gen), None)


def _typed(value: Any, tp: type) -> Any:
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
    return value


@dataclass(slots=True)
class _Cached:
    record: BucketRecord
    fetched_at: float


class BucketCache:
    """See the module docstring."""

    def __init__(self, fetch: Fetch, *, ttl_s: float, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic, max_stale_s: float = 0.0) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._max_stale_s = max_stale_s
        self.stale_served = 0
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._flights: SingleFlight[BucketRecord] = SingleFlight()
        self.fetches = 0

    async def get(self, name: str, *, min_version: int = 0, min_epoch: int = 0) -> BucketRecord:
        """The record of ``name``, refetched if older than ``min_version``/``min_epoch`` or stale."""
        cached = self._cache.get(name)
        if cached is not None:
            rec = cached.record
            fresh = self._clock() - cached.fetched_at < self._ttl_s
            if fresh and rec.version >= min_version and rec.epoch >= min_epoch:
                self._cache.move_to_end(name)
                return rec
        try:
            return await self.refresh(name)
        except (Unavailable, DeadlineExceeded) as exc:
            if cached is None or exc.kind or cached.record.version < min_version \
                    or cached.record.epoch < min_epoch \
                    or self._clock() - cached.fetched_at > self._ttl_s + self._max_stale_s:
                raise
            self.stale_served += 1
            log.warning("event=serve_stale bucket=%s version=%d reason=coordinator_unreachable",
                        name, cached.record.version)
            return cached.record

    async def refresh(self, name: str) -> BucketRecord:
        """Fetch ``name`` now (shared with concurrent callers) and cache it."""
        return await self._flights.run(name, lambda: self._load(name))

    async def _load(self, name: str) -> BucketRecord:
        self.fetches += 1
        try:
            doc = await self._fetch(name)
        except (Unavailable, DeadlineExceeded) as exc:
            if exc.kind:  # an answer, not an unreachable coordinator
                self._cache.pop(name, None)
            raise
        except RpcError:
            self._cache.pop(name, None)
            raise
        rec = BucketRecord.from_wire(doc)
        if rec.name != name:
            raise Internal(f"the coordinator answered GetBucket {name!r} with bucket {rec.name!r}")
        old = self._cache.get(name)
        if old is None or old.record.version != rec.version:
            log.info("event=bucket_record bucket=%s version=%d epoch=%d replicas=%s", name, rec.version,
                     rec.epoch, ",".join(r.node_id for r in rec.replicas))
        self._cache[name] = _Cached(rec, self._clock())
        self._cache.move_to_end(name)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return rec

    def put(self, doc: Any) -> BucketRecord:
        """Cache a record the caller got from the coordinator (e.g. a ReportReplicaFailure answer)."""
        rec = BucketRecord.from_wire(doc)
        old = self._cache.get(rec.name)
        if old is None or old.record.version <= rec.version:
            if old is None or old.record.version != rec.version:
                log.info("event=bucket_record bucket=%s version=%d epoch=%d replicas=%s", rec.name, rec.version,
                         rec.epoch, ",".join(r.node_id for r in rec.replicas))
            self._cache[rec.name] = _Cached(rec, self._clock())
            return rec
        return old.record

    def by_id(self, bucket_id: bytes) -> BucketRecord | None:
        """A cached record with this bucket id (the scrubber knows only ids), or None."""
        return next((c.record for c in self._cache.values() if c.record.bucket_id == bucket_id), None)

    def invalidate(self, name: str) -> None:
        self._cache.pop(name, None)


def coordinator_fetch(coordinator: Any) -> Fetch:
    """Adapt an RPC client of the coordinator into a ``Fetch`` (``GetBucket {name}``)."""

    async def fetch(name: str) -> dict[str, Any]:
        result = await coordinator.call("GetBucket", {"name": name})
        if not isinstance(result, dict) or not isinstance(result.get("bucket"), dict):
            raise Internal("malformed GetBucket result from the coordinator")
        return result["bucket"]

    return fetch
