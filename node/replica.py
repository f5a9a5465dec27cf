"""The replica side of writes: ``ReplicaPut`` and ``ReplicaDelete`` from a bucket's primary.

A replica never decrypts: it checks the framing of the sealed stream as it arrives
(``node.sealed_stream.SealedStreamParser``), collects the chunks in an ``IncomingFile`` (in
memory while small, else a blob file in ``incoming/``), and only when the trailer and a clean
end of the body have arrived does it publish and commit (``ObjectStore.commit``: durable when
it returns). A body that ends with an error (the primary aborted),
breaks off, or is malformed leaves nothing behind.

Calls are accepted only from the bucket's current primary, for a bucket id that matches the
record (a recreated bucket has a new id), at an epoch no older than the record's
(``Conflict`` kind ``StaleEpoch``); the record is refetched once when the caller's view looks
newer than ours. A write is fenced twice: when it starts and when its trailer arrives (the
trailer carries the primary's epoch at commit time, which may be newer than the start's if a
replica failed meanwhile and left the set).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import trio

from node import durable
from node.buckets import BucketCache, BucketRecord
from node.capacity import insufficient_storage, is_no_space
from node.manifest import decode_manifest, encode_manifest, finish_manifest
from node.runs import runs_of, version_tag
from node.metrics import NodeMetrics
from node.sealed_stream import SealedStreamParser, StreamError
from node.store import ObjectStore
from proto.errors import Conflict, IntegrityError, InvalidRequest, NotFound, Unavailable

log = logging.getLogger(__name__)


class ReplicaService:
    def __init__(self, *, node_id: str, store: ObjectStore, buckets: BucketCache, metrics: NodeMetrics,
                 space_check: Callable[[], None] | None = None) -> None:
        self.node_id = node_id
        self._space_check = space_check  # node.capacity: a full node refuses the copy before any byte
        self._store = store
        self._buckets = buckets
        self._metrics = metrics

    async def _record_for_replica(self, bucket: str, bucket_id: bytes, epoch: int, caller: str) -> BucketRecord:
        if self._store.fenced(bucket_id):  # node.stale_collector is deleting this node's old copy
            raise Unavailable(f"{self.node_id} is deleting its stale copy of {bucket}; retry later",
                              kind="StaleCopyCollecting")
        rec = await self._buckets.get(bucket, min_epoch=epoch)
        if rec.bucket_id != bucket_id or rec.primary.node_id != caller or not rec.has_replica(self.node_id):
            rec = await self._buckets.refresh(bucket)  # ours may be the stale view
        if rec.bucket_id != bucket_id:
            raise NotFound(f"bucket {bucket} has another id", kind="NoSuchBucket")
        if epoch < rec.epoch:
            raise Conflict(f"epoch {epoch} of {bucket} is stale (current {rec.epoch})", kind="StaleEpoch")
        if not rec.has_replica(self.node_id):
            raise InvalidRequest(f"{self.node_id} is not a replica of {bucket}", kind="NotReplica")
        if rec.primary.node_id != caller:
            raise InvalidRequest(f"{caller} is not the primary of {bucket}", kind="NotPrimary")
        return rec


    async def replica_put(self, *, caller: str, bucket_id: bytes, bucket: str, epoch: int, start: dict[str, Any],
                          body: AsyncIterable[bytes] | bytes | None) -> dict[str, Any]:
        """Store a primary's sealed stream (``start`` is ``manifest.parse_replica_meta(meta)``),
        streamed or whole (``bytes``: a small object's chunks and trailer in one message).

        Commits only after the trailer and a clean end of the body; anything else discards.
        """
        await self._record_for_replica(bucket, bucket_id, epoch, caller)
        if self._space_check is not None:
            self._space_check()
        object_id = start["object_id"]
        try:
            incoming = self._store.create_incoming(bucket_id, object_id)  # in memory: no I/O
        except FileExistsError:
            raise Conflict("this object id is already being written", kind="ObjectIdInUse") from None
        parser = SealedStreamParser(start["chunk_bytes"])
        committed = False
        try:
            chunks_seen = 0
            async for piece in _whole(body) if isinstance(body, bytes) else body if body is not None else _empty():
                try:
                    data = parser.feed(piece)
                except StreamError as exc:
                    raise InvalidRequest(str(exc), kind="InvalidChunkStream") from None
                if data and incoming.fits(len(data)):
                    incoming.write(data)  # stays in memory
                elif data:
                    await trio.to_thread.run_sync(incoming.write, data)
                if parser.chunks > chunks_seen:
                    self._metrics.chunks_written.inc(parser.chunks - chunks_seen)
                    chunks_seen = parser.chunks
            try:
                trailer = parser.finish()
            except StreamError as exc:
                raise InvalidRequest(str(exc), kind="InvalidChunkStream") from None
            manifest = self._replica_manifest(start, trailer, parser)
            t_epoch = trailer.get("epoch", epoch)
            if isinstance(t_epoch, bool) or not isinstance(t_epoch, int):
                raise InvalidRequest("the trailer's epoch must be an integer", kind="InvalidChunkStream")
            await self._record_for_replica(bucket, bucket_id, max(t_epoch, epoch), caller)  # fenced again
            if incoming.inline:
                incoming.publish()
            else:
                await trio.to_thread.run_sync(incoming.publish)
            try:
                old = await durable.commit(self._store, incoming, bucket_id, manifest["key"], object_id,
                                           manifest["size"], encode_manifest(manifest))
            except OSError as exc:
                if is_no_space(exc):
                    raise insufficient_storage(self.node_id, "the disk is full") from None
                raise
            committed = True
        finally:
            if not committed:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(incoming.abort)
        if old is not None and old != object_id:
            await trio.to_thread.run_sync(self._store.delete_data, bucket_id, old)
        return {}

    @staticmethod
    def _replica_manifest(start: dict[str, Any], trailer: dict[str, Any], parser: SealedStreamParser) -> dict[str, Any]:
        size, etag, chunks = trailer.get("size"), trailer.get("etag"), trailer.get("chunks")
        checksum_value = trailer.get("checksum_value")
        if size != parser.plaintext_bytes or chunks != parser.chunks or not isinstance(etag, str) \
                or len(etag) > 128 or not (checksum_value is None or isinstance(checksum_value, str)):
            raise InvalidRequest("the replica stream trailer does not match its chunks", kind="InvalidChunkStream")
        return finish_manifest(start, size=size, etag=etag, chunks=chunks, checksum_value=checksum_value)

    async def replica_list(self, *, caller: str, bucket_id: bytes, bucket: str, epoch: int, start_after: str,
                           limit: int) -> dict[str, Any]:
        """(key, version tag) pairs of this replica's copy, in key order: what ``node.repair``
        compares (``node.runs.version_tag``: object id + a hash of the ETag)."""
        await self._record_for_replica(bucket, bucket_id, epoch, caller)
        rows, truncated = await trio.to_thread.run_sync(
            lambda: self._store.list(bucket_id, start_after=start_after, limit=limit))
        return {"entries": [[r.key, version_tag(r.object_id, decode_manifest(r.manifest))] for r in rows],
                "truncated": truncated}

    async def replica_fetch(self, *, caller: str, bucket_id: bytes, bucket: str, key: str, object_id: bytes,
                            extent_id: bytes | None = None) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """The sealed bytes of one extent of an object version as stored here, for a peer's repair
        (any replica of the bucket may ask): the version's own extent, or ``extent_id``, one of
        the runs its manifest lists (``node.runs``). Streamed: {size, crc} then the bytes;
        NoSuchKey if this node no longer has that version or lays it out without that extent
        (a re-sealed copy is one run), IntegrityError if its own copy is bad too."""
        rec = await self._buckets.get(bucket)
        if rec.bucket_id != bucket_id or not rec.has_replica(caller) or not rec.has_replica(self.node_id):
            rec = await self._buckets.refresh(bucket)
        if rec.bucket_id != bucket_id or not rec.has_replica(caller) or not rec.has_replica(self.node_id):
            raise InvalidRequest(f"{caller} and {self.node_id} are not both replicas of {bucket}", kind="NotReplica")
        row = await trio.to_thread.run_sync(self._store.get, bucket_id, key)
        if row is not None and row.object_id == object_id and extent_id is not None and extent_id != object_id \
                and extent_id not in {r.extent_id for r in runs_of(decode_manifest(row.manifest))}:
            row = None  # not an extent of this version here
        ext = None if row is None or row.object_id != object_id else \
            await trio.to_thread.run_sync(self._store.locate, bucket_id, extent_id or object_id)
        if ext is None:
            raise NotFound(f"{self.node_id} does not hold that version of {key!r}", kind="NoSuchKey")
        data = await trio.to_thread.run_sync(self._store.read_extent, ext)
        if zlib.crc32(data) != ext.crc:
            raise IntegrityError(f"the copy of {key!r} on {self.node_id} is damaged too", kind="IntegrityError")

        async def body() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 1024 * 1024):
                yield data[i:i + 1024 * 1024]

        return {"size": len(data), "crc": ext.crc}, body()

    async def replica_delete(self, *, caller: str, bucket_id: bytes, bucket: str, epoch: int,
                             key: str) -> dict[str, Any]:
        await self._record_for_replica(bucket, bucket_id, epoch, caller)
        old = await trio.to_thread.run_sync(self._store.remove, bucket_id, key)
        if old is not None:
            await trio.to_thread.run_sync(self._store.delete_data, bucket_id, old)
        return {}


async def _whole(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover
