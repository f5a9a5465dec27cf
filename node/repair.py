"""Repair on the primary: copy a bucket to a replica that joined its set (``SyncReplica``), and
fetch a good copy of one extent of an object version from a peer (read repair and scrubbing:
``repair_object``; an appended object's every run is an extent of its own, repaired alone).

Theory of operation (sync)
--------------------------
The coordinator (``coordinator.sync_driver``) asks the primary to copy the bucket to
``target``, a replica marked ``syncing`` in the record of ``epoch``: one that just joined the
set (replacement, drain, spare, ``AddReplica``) or came back after missing writes. The
primary refreshes its record to that epoch (so every new write already goes to the target too),
waits until the writes it started under older epochs have finished, then walks its own index
and the target's (``ReplicaList``), both in key order, merging them:

* a key the target lacks, or holds at another version (object id and ETag: an append keeps
  the object id), is copied: the primary's sealed chunks exactly as stored (ciphertext: no
  KMS call) with the original manifest, by ``ReplicaPut``; an object of several runs
  (appends, ``node.runs``) is re-sealed as one run under the same object id (its plaintext:
  this one needs the bucket key);
* a key only the target holds (deleted while it was away) is deleted there (``ReplicaDelete``);
* equal object ids are skipped (a node that comes back after being away catches up by copying
  only what it missed).

Each key is handled under the primary's per-key lock, the one writers hold while committing,
so a copy can never overwrite a newer write or resurrect a delete. Copies are throttled to
``rate_bytes_per_s``; progress is in the ``onezone_node_repair_*`` metrics. Syncs run in the
daemon's nursery, one per (bucket, target) at a time and at most ``MAX_PARALLEL_SYNCS`` copying
at once (the others wait their turn: a drain of a node holding many buckets does not multiply
the throttled rate).

When the merge is complete the primary reports it (``ReportReplicaSynced {node_id: target,
bucket, epoch}``): every object older than the epoch is on the target, and every write of the
epoch went to it too, so the coordinator clears ``syncing`` and the replica counts as a full
copy (it may become primary). A report the coordinator refuses (the set changed meanwhile:
``StaleEpoch``) is simply dropped: the coordinator asks again at the new epoch, and the second
pass copies only what differs. The primary is the only reporter: the target never declares
itself complete.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from node.buckets import BucketCache, BucketRecord, Replica
from node.manifest import decode_manifest
from node.metrics import NodeMetrics
from node.objects import ObjectService
from node import runs
from node.chunk_codec import derive_object_key, seal_chunk
from node.runs import version_tag
from node.sealed_stream import ChunkCutter, encode_trailer
from node.store import ObjectStore
from proto.errors import InvalidRequest, RpcError

log = logging.getLogger(__name__)

PAGE = 500
MAX_PARALLEL_SYNCS = 4
MAX_REPAIR_BYTES = 64 * 1024 * 1024  # a damaged copy larger than this is reported, not repaired in memory
PIECE_BYTES = 1024 * 1024
_TRAILER_FIELDS = ("size", "etag", "chunks", "checksum_value")


def replica_start(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ``ReplicaPut`` meta of a stored manifest (what is known before the body)."""
    return {k: v for k, v in manifest.items() if k not in ("v", *_TRAILER_FIELDS)}


class Repairer:
    def __init__(self, *, node_id: str, store: ObjectStore, buckets: BucketCache, objects: ObjectService,
                 peer_client: Callable[[Replica], Any], metrics: NodeMetrics, rate_bytes_per_s: float,
                 report_synced: Callable[[str, str, int], Awaitable[Any]] | None = None) -> None:
        self.node_id = node_id
        self._store = store
        self._buckets = buckets
        self._objects = objects
        self._peer_client = peer_client
        self._metrics = metrics
        self._rate = rate_bytes_per_s
        self._report_synced = report_synced
        self.syncs_done = 0
        self._running: set[tuple[str, str]] = set()
        self._slots = trio.CapacityLimiter(MAX_PARALLEL_SYNCS)
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The nursery the syncs run in (a daemon task)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def start_sync(self, bucket: str, epoch: int, target: str) -> dict[str, Any]:
        """``SyncReplica``: check, then copy in the background. {started: bool}."""
        rec = await self._buckets.get(bucket, min_epoch=epoch)
        if rec.primary.node_id != self.node_id:
            raise InvalidRequest(f"{self.node_id} is not the primary of {bucket}", kind="NotPrimary")
        peer = next((r for r in rec.replicas if r.node_id == target), None)
        if peer is None or target == self.node_id:
            raise InvalidRequest(f"{target} is not a replica of {bucket}", kind="NotReplica")
        if (bucket, target) in self._running or self._nursery is None:
            return {"started": False}
        self._running.add((bucket, target))
        self._nursery.start_soon(self._sync_task, rec, peer)
        return {"started": True}

    async def _sync_task(self, rec: BucketRecord, peer: Replica) -> None:
        try:
            async with self._slots:
                rec = await self._buckets.get(rec.name, min_epoch=rec.epoch)  # it may have waited its turn
                if rec.primary.node_id != self.node_id or not rec.has_replica(peer.node_id):
                    raise InvalidRequest(f"the replica set of {rec.name} changed (epoch {rec.epoch})",
                                         kind="NotPrimary")
                peer = next(r for r in rec.replicas if r.node_id == peer.node_id)  # its current address
                self._metrics.repair_running.inc()
                try:
                    copied, deleted = await self.sync(rec, peer)
                finally:
                    self._metrics.repair_running.dec()
            log.info("event=sync_done bucket=%s target=%s epoch=%d copied=%d deleted=%d", rec.name, peer.node_id,
                     rec.epoch, copied, deleted)
            self.syncs_done += 1
        except RpcError as exc:
            self._metrics.repair_failures.inc()
            log.warning("event=sync_failed bucket=%s target=%s kind=%s error=%s", rec.name, peer.node_id, exc.kind,
                        exc.message)
            return
        except OSError as exc:  # a local disk error: the coordinator asks again later
            self._metrics.repair_failures.inc()
            log.error("event=sync_failed bucket=%s target=%s error=%s", rec.name, peer.node_id, exc)
            return
        finally:
            self._running.discard((rec.name, peer.node_id))
        if self._report_synced is None:
            return
        try:
            await self._report_synced(rec.name, peer.node_id, rec.epoch)
            log.info("event=sync_reported bucket=%s target=%s epoch=%d", rec.name, peer.node_id, rec.epoch)
        except RpcError as exc:  # e.g. StaleEpoch: the set changed; the coordinator asks again
            log.info("event=sync_report_refused bucket=%s target=%s epoch=%d kind=%s error=%s", rec.name,
                     peer.node_id, rec.epoch, exc.kind, exc.message)

    async def sync(self, rec: BucketRecord, peer: Replica) -> tuple[int, int]:
        await self._objects.wait_writes_before(rec.bucket_id, rec.epoch)
        client = self._peer_client(peer)
        base = {"bucket_id": rec.bucket_id, "bucket": rec.name, "epoch": rec.epoch}
        copied = deleted = 0
        mine, theirs = self._local_keys(rec), self._remote_keys(client, base)
        a, b = await _next(mine), await _next(theirs)
        while a is not None or b is not None:
            if b is None or (a is not None and a[0] < b[0]):
                key, there = a[0], None
                a = await _next(mine)
            elif a is None or b[0] < a[0]:
                key, there = b[0], b[1]
                b = await _next(theirs)
            else:
                key, there = a[0], b[1]
                a, b = await _next(mine), await _next(theirs)
            async with self._objects.key_locks.hold(rec.bucket_id, key):
                row = await trio.to_thread.run_sync(self._store.get, rec.bucket_id, key)
                if row is None and there is not None:
                    await client.call("ReplicaDelete", {**base, "key": key})
                    deleted += 1
                elif row is not None and version_tag(row.object_id, decode_manifest(row.manifest)) != there:
                    await self.copy(client, base, decode_manifest(row.manifest), rec.bucket_id)
                    copied += 1
            self._metrics.repair_keys.inc()
        return copied, deleted

    async def copy(self, client: Any, base: dict[str, Any], manifest: dict[str, Any], bucket_id: bytes) -> None:
        """Send one stored object version (sealed, as stored) to a replica; throttled."""
        if "runs" in manifest:
            await self._copy_resealed(client, base, manifest)
            return
        data = await trio.to_thread.run_sync(self._store.open_data, bucket_id, manifest["object_id"])
        trailer = {k: manifest[k] for k in _TRAILER_FIELDS if k in manifest}
        trailer["epoch"] = base["epoch"]

        async def body() -> AsyncIterator[bytes]:
            try:
                for offset in range(0, data.size, PIECE_BYTES):
                    piece = await trio.to_thread.run_sync(data.pread, offset, PIECE_BYTES)
                    yield piece
                    self._metrics.repair_bytes.inc(len(piece))
                    if self._rate > 0:
                        await trio.sleep(len(piece) / self._rate)
                yield encode_trailer(trailer)
            finally:
                data.close()

        await client.call("ReplicaPut", {**base, "meta": replica_start(manifest)}, body=body())

    async def _copy_resealed(self, client: Any, base: dict[str, Any], manifest: dict[str, Any]) -> None:
        """Copy an object of several runs (``node.runs``) as one run: its plaintext, read and
        verified run by run, re-sealed under the same object id (chunks 0..n-1) and sent with
        ``ReplicaPut`` and the same ETag and checksum. This needs the bucket key (cached; a KMS
        Decrypt otherwise), unlike the copy of a single-run object."""
        rec = self._buckets.by_id(base["bucket_id"])
        if rec is None:
            rec = await self._buckets.get(base["bucket"])
        stream = await runs.open_stream(self._objects, rec, rec.name, manifest, None)
        object_key = derive_object_key(await self._objects._bucket_key(rec, manifest["key_gen"]), manifest["object_id"])
        start = {k: v for k, v in replica_start(manifest).items() if k not in ("runs", "part_count")}
        trailer = {k: manifest[k] for k in _TRAILER_FIELDS if k in manifest}
        cutter = ChunkCutter(manifest["chunk_bytes"])
        trailer.update(chunks=None, epoch=base["epoch"])

        def seal(index: int, data: bytes, last: bool) -> bytes:
            return seal_chunk(object_key, bucket_id=rec.bucket_id, object_id=manifest["object_id"], index=index,
                              last=last, plaintext=data)

        async def body() -> AsyncIterator[bytes]:
            async for piece in stream:
                for chunk in cutter.feed(piece):
                    sealed = await trio.to_thread.run_sync(seal, *chunk)
                    self._metrics.repair_bytes.inc(len(sealed))
                    yield sealed
                if self._rate > 0:
                    await trio.sleep(len(piece) / self._rate)
            yield await trio.to_thread.run_sync(seal, *cutter.finish())
            trailer["chunks"] = cutter.chunks
            yield encode_trailer(trailer)

        await client.call("ReplicaPut", {**base, "meta": start}, body=body())

    async def repair_object(self, rec: BucketRecord, key: str, object_id: bytes,
                            extent_id: bytes | None = None) -> bool:
        """Replace this node's damaged copy of one extent of an object version with a peer's
        (``ReplicaFetch``: the same sealed bytes, checked against the crc32 recorded for that
        extent at write time). ``extent_id``: one of the object's further runs (``node.runs``:
        an append's extent), None for its own (first) extent. True if done."""
        if extent_id == object_id:
            extent_id = None
        ext = await trio.to_thread.run_sync(self._store.locate, rec.bucket_id, extent_id or object_id)
        if ext is None:
            return False
        what = f"{key!r}" if extent_id is None else f"{key!r} extent={extent_id.hex()}"
        if ext.length > MAX_REPAIR_BYTES:
            log.error("event=repair_skipped bucket=%s key=%s bytes=%d (too large for an in-memory repair)",
                      rec.name, what, ext.length)
            return False
        args = {"bucket_id": rec.bucket_id, "bucket": rec.name, "key": key, "object_id": object_id}
        if extent_id is not None:
            args["extent_id"] = extent_id
        for peer in rec.peers(self.node_id):
            try:
                async with self._peer_client(peer).stream("ReplicaFetch", args) as r:
                    parts, n = [], 0
                    async for piece in r.body:
                        n += len(piece)
                        if n > ext.length:
                            raise InvalidRequest("the peer's copy is longer than ours", kind="IntegrityError")
                        parts.append(piece)
                data = b"".join(parts)
            except RpcError as exc:
                log.warning("event=repair_fetch_failed bucket=%s key=%s peer=%s kind=%s", rec.name, what,
                            peer.node_id, exc.kind)
                continue
            if len(data) != ext.length or zlib.crc32(data) != ext.crc:
                log.warning("event=repair_fetch_mismatch bucket=%s key=%s peer=%s", rec.name, what, peer.node_id)
                continue
            done = await trio.to_thread.run_sync(
                lambda: self._store.rewrite(rec.bucket_id, key, object_id, data, extent_id=extent_id))
            self._metrics.repair_bytes.inc(len(data))
            if done:
                self._metrics.read_repairs.inc()
                log.warning("event=object_repaired bucket=%s key=%s from=%s bytes=%d", rec.name, what,
                            peer.node_id, len(data))
            return done
        return False

    async def _local_keys(self, rec: BucketRecord) -> AsyncIterator[tuple[str, bytes]]:
        after = ""
        while True:
            rows, truncated = await trio.to_thread.run_sync(
                lambda: self._store.list(rec.bucket_id, start_after=after, limit=PAGE))
            for r in rows:
                yield r.key, version_tag(r.object_id, decode_manifest(r.manifest))
            if not truncated or not rows:
                return
            after = rows[-1].key

    @staticmethod
    async def _remote_keys(client: Any, base: dict[str, Any]) -> AsyncIterator[tuple[str, bytes]]:
        after = ""
        while True:
            r = await client.call("ReplicaList", {**base, "start_after": after, "limit": PAGE})
            entries = r.get("entries") or []
            for key, object_id in entries:
                yield key, object_id
            if not r.get("truncated") or not entries:
                return
            after = entries[-1][0]


async def _next(it: AsyncIterator[tuple[str, bytes]]) -> tuple[str, bytes] | None:
    try:
        return await it.__anext__()
    except StopAsyncIteration:
        return None
