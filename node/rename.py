"""RenameObject on the node: a metadata-only, atomic move of one index entry to another key.

Why no data moves and no KMS call is made: an object's chunks are sealed under a key derived
from the bucket key and the object's random, immutable *object id* (``node.chunk_codec``), and
the AAD names the object id, never the key. So the same extent, read under the same object id,
is the same object whatever key points at it: a rename rewrites only the index row (and the
``key`` field of the manifest). Every other manifest field is kept as it is, as AWS does
("RenameObject preserves all object metadata properties, including ... last modified date, and
checksum properties").

Theory of operation (primary)
-----------------------------
1. A ``client_token`` seen before on this bucket answers again without doing anything when its
   parameters are the same, ``IdempotencyParameterMismatch`` when they differ (an in-memory,
   bounded table on the primary: a retry after a primary restart is a new rename, which then
   fails with NoSuchKey if the first one went through).
2. Under the per-key write locks of both keys, taken in a fixed (sorted) order so two renames
   in opposite directions cannot deadlock, the conditions are checked
   (``check_rename_conditions``, pure), then ``ReplicaRename`` goes to every other replica of
   the epoch in parallel, then the local store renames (one RENAME record in the segment log:
   atomic across a crash, durable when it returns). The destination's previous version (if
   any) loses its data afterwards, as an overwrite does.
3. A replica that fails is reported to the coordinator like a failed write (a new epoch
   without it, then re-synced); if it cannot be excluded the rename fails with
   ``ReplicationFailed`` before the primary changed anything.

A replica applies ``ReplicaRename`` only if its source key holds the same object id; a replica
whose destination already holds it answers OK (a retried call); anything else is
``Conflict`` kind ``ReplicaDiverged`` (the primary reports it, and repair re-copies it).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from node.manifest import decode_manifest, encode_manifest
from node.replication import replicate_call
from proto.errors import Conflict, InvalidRequest, NotFound, PreconditionFailed

log = logging.getLogger(__name__)

MAX_TOKENS = 10000
TOKEN_TTL_S = 3600.0
MAX_TOKEN_CHARS = 128


@dataclass(frozen=True, slots=True)
class Conditions:
    """One side's conditions: ``if_match`` / ``if_none_match`` are ETags (quotes stripped) or ``*``,
    the times epoch seconds (already parsed by the gateway)."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: float | None = None
    if_unmodified_since: float | None = None

    @property
    def empty(self) -> bool:
        return self == Conditions()


def _failed(what: str) -> PreconditionFailed:
    return PreconditionFailed(f"At least one of the pre-conditions you specified did not hold ({what})",
                              kind="PreconditionFailed")


def _check_side(side: str, cond: Conditions, meta: dict[str, Any] | None, key: str) -> None:
    if meta is None:
        if cond.if_match is not None:
            raise NotFound(f"no such key {key!r} ({side} If-Match)", kind="NoSuchKey")
        return
    etag, lm = meta["etag"], int(meta["last_modified"])
    if cond.if_match is not None and cond.if_match not in ("*", etag):
        raise _failed(f"{side} If-Match")
    if cond.if_none_match is not None and cond.if_none_match in ("*", etag):
        raise _failed(f"{side} If-None-Match")
    if cond.if_modified_since is not None and lm <= cond.if_modified_since:
        raise _failed(f"{side} If-Modified-Since")
    if cond.if_unmodified_since is not None and lm > cond.if_unmodified_since:
        raise _failed(f"{side} If-Unmodified-Since")


def check_rename_conditions(src_key: str, src: dict[str, Any] | None, dst_key: str, dst: dict[str, Any] | None,
                            src_cond: Conditions, dst_cond: Conditions) -> None:
    """Pure: raise NoSuchKey (no source) or PreconditionFailed; times compare at whole seconds
    (HTTP dates have no fractions)."""
    if src is None:
        raise NotFound(f"no such key {src_key!r}", kind="NoSuchKey")
    _check_side("source", src_cond, src, src_key)
    _check_side("destination", dst_cond, dst, dst_key)


class TokenTable:
    """Idempotency tokens of recent renames: (bucket id, token) -> (source, destination)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, size: int = MAX_TOKENS,
                 ttl_s: float = TOKEN_TTL_S) -> None:
        self._clock = clock
        self._size = size
        self._ttl = ttl_s
        self._seen: OrderedDict[tuple[bytes, str], tuple[str, str, float]] = OrderedDict()

    def check(self, bucket_id: bytes, token: str | None, src: str, dst: str) -> bool:
        """True if this exact rename was done already; IdempotencyParameterMismatch if the token
        was used with other parameters."""
        if token is None:
            return False
        hit = self._seen.get((bucket_id, token))
        if hit is None or self._clock() - hit[2] > self._ttl:
            return False
        if (hit[0], hit[1]) != (src, dst):
            raise InvalidRequest("The client token was already used with other parameters.",
                                 kind="IdempotencyParameterMismatch")
        return True

    def remember(self, bucket_id: bytes, token: str | None, src: str, dst: str) -> None:
        if token is None:
            return
        self._seen[(bucket_id, token)] = (src, dst, self._clock())
        self._seen.move_to_end((bucket_id, token))
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)


class Renamer:
    """The primary's and the replicas' side of a rename; uses the ObjectService's bucket records,
    locks and failure reporting so that renames are ordered with writes and deletes."""

    def __init__(self, objects: Any, replicas: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._objects = objects
        self._replicas = replicas
        self.tokens = TokenTable(clock=clock)

    async def rename_object(self, *, bucket: str, src: str, dst: str, bucket_version: int,
                            src_cond: Conditions, dst_cond: Conditions, client_token: str | None,
                            request_id: str | None = None) -> dict[str, Any]:
        obj = self._objects
        rec = await obj._record(bucket, bucket_version, primary=True)
        if self.tokens.check(rec.bucket_id, client_token, src, dst):
            return {}
        store = obj._store
        first, second = sorted({src, dst})
        async with obj.key_locks.hold(rec.bucket_id, first):
            async with (obj.key_locks.hold(rec.bucket_id, second) if second != first else _null()):
                src_row = await trio.to_thread.run_sync(store.get, rec.bucket_id, src)
                dst_row = await trio.to_thread.run_sync(store.get, rec.bucket_id, dst)
                src_meta = None if src_row is None else decode_manifest(src_row.manifest)
                dst_meta = None if dst_row is None else decode_manifest(dst_row.manifest)
                check_rename_conditions(src, src_meta, dst, dst_meta, src_cond, dst_cond)
                assert src_row is not None and src_meta is not None
                if src == dst:
                    self.tokens.remember(rec.bucket_id, client_token, src, dst)
                    return {}
                object_id = src_row.object_id
                args = {"bucket_id": rec.bucket_id, "bucket": rec.name, "epoch": rec.epoch, "src": src,
                        "dst": dst, "object_id": object_id}
                await replicate_call(self._objects, rec, "ReplicaRename", args, request_id, op="rename")
                manifest = encode_manifest(dict(src_meta, key=dst))
                done, old = await trio.to_thread.run_sync(store.rename, rec.bucket_id, src, dst, object_id,
                                                          manifest)
                if not done:  # pragma: no cover - the locks make this impossible
                    raise Conflict(f"{src!r} changed during the rename", kind="OperationAborted")
        if old is not None and old != object_id:
            await trio.to_thread.run_sync(store.delete_data, rec.bucket_id, old)
        self.tokens.remember(rec.bucket_id, client_token, src, dst)
        obj._metrics.renames.inc()
        log.debug("event=rename bucket=%s object_id=%s", bucket, object_id.hex())
        return {}

    async def replica_rename(self, *, caller: str, bucket_id: bytes, bucket: str, epoch: int, src: str, dst: str,
                             object_id: bytes) -> dict[str, Any]:
        await self._replicas._record_for_replica(bucket, bucket_id, epoch, caller)
        store = self._objects._store
        row = await trio.to_thread.run_sync(store.get, bucket_id, src)
        if row is None or row.object_id != object_id:
            there = await trio.to_thread.run_sync(store.get, bucket_id, dst)
            if there is not None and there.object_id == object_id:
                return {}  # a retried call: already renamed here
            raise Conflict(f"{src!r} does not hold the object being renamed on {self._objects.node_id}",
                           kind="ReplicaDiverged")
        manifest = encode_manifest(dict(decode_manifest(row.manifest), key=dst))
        done, old = await trio.to_thread.run_sync(store.rename, bucket_id, src, dst, object_id, manifest)
        if not done:
            raise Conflict(f"{src!r} changed during the rename", kind="ReplicaDiverged")
        if old is not None and old != object_id:
            await trio.to_thread.run_sync(store.delete_data, bucket_id, old)
        return {}


class _null:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: Any) -> None:
        return None
