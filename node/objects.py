"""The node's object logic for the gateway's calls: put (chunk, seal, replicate, commit), get,
head, delete, list. Transport-free: ``node.service`` adapts RPC calls to it; the replica side
of writes is ``node.replica``.

Put (primary only)
------------------
1. resolve the bucket record (refetched if the caller's ``bucket_version`` is newer), check
   this node is the primary, check the conditions early (cheap refusal before the body);
2. get the bucket key (cache, else KMS), draw a random 16-byte object id, derive the object
   key; open a data file in ``incoming/``;
3. cut the plaintext body into ``chunk_bytes`` chunks; per chunk, in a worker thread: hash
   (MD5 for the ETag, the S3 checksum if one was asked for), seal, append locally; then queue
   the sealed bytes for every replica (one streamed ``ReplicaPut`` per other replica, opened
   at the start; backpressure: a few chunks in flight per replica). A small body that came
   whole in the call (``data``) is not streamed: step 4 sends each replica one ``ReplicaPut``
   carrying the sealed chunk(s) and the trailer (``Fanout.commit_whole``);
4. publish the local copy (a large one is fsynced now; a small one stays in memory); under the
   per-key lock, re-check the conditions (authoritative), release the trailer to the
   replicas and, at the same time, commit locally (``ObjectStore.commit``: the data and its
   index record in the segment log, one group-committed fsync); answer once every replica and
   the local store have committed; drop the previous version's extent.

Small chunks (<= 64 KiB) are sealed in the event loop (microseconds of CPU, no file I/O):
every thread hop costs more than the work on this path.

Any failure before the local commit (body ended with an error, bad checksum, a replica down,
condition failed, deadline) aborts everything: the replica bodies end with an error so the
replicas discard what they received, the local data file is removed, nothing is visible.

The per-key lock (primary side) serialises the commit phase of writes and deletes of one key,
so every replica applies them in the same order; the bodies themselves stream concurrently.

Delete (primary only) sends ``ReplicaDelete`` to every other replica, then deletes locally. A
replica that fails makes the delete fail (``ReplicationFailed``) with the primary still
holding the object while the replicas that answered do not; the client's retry converges.
Likewise a replica that fails *after* the trailer (while committing) leaves the others
committed. Both windows are for epochs and re-replication (a later issue) to close.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from node.buckets import BucketCache, BucketRecord, Replica
from node.capacity import local_storage_error
from node.chunk_codec import derive_object_key, seal_chunk
from node.keycache import BucketKeyCache
from node.manifest import (
    decode_manifest,
    encode_manifest,
    finish_manifest,
    public_meta,
    start_manifest,
)
from node.metrics import NodeMetrics
from node import durable, runs
from node.reader import ChunkReader
from node.replication import Fanout
from node.sealed_stream import ChunkCutter, encode_trailer
from node.store import IncomingFile, ObjectStore
from proto.checksums import new_checksum
from proto.errors import (
    Internal,
    IntegrityError,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
    RpcError,
    Unavailable,
)

log = logging.getLogger(__name__)

OBJECT_ID_BYTES = 16
INLINE_SEAL_BYTES = 64 * 1024  # chunks up to this size are sealed without a thread hop
SEAL_OVERHEAD = 64             # chunk header + GCM tag, rounded up
WHOLE_REPLICA_BYTES = 1024 * 1024 + 1024  # a one-chunk object up to this size: one ReplicaPut message


class KeyLocks:
    """One trio.Lock per (bucket_id, key) while anyone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[bytes, str], tuple[trio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, bucket_id: bytes, key: str) -> AsyncIterator[None]:
        k = (bucket_id, key)
        lock, users = self._locks.get(k, (None, 0))
        if lock is None:
            lock = trio.Lock()
        self._locks[k] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[k]
            if users == 1:
                del self._locks[k]
            else:
                self._locks[k] = (lock, users - 1)


@dataclass(slots=True)
class _Put:
    """State of one write in progress (primary side)."""

    record: BucketRecord
    key: str
    object_id: bytes
    object_key: bytes = field(repr=False)
    incoming: IncomingFile
    md5: Any = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))
    checksum: Any = None
    size: int = 0
    committing: bool = False
    committed: bool = False
    nursery: Any = None


async def _pieces(body: AsyncIterable[bytes] | bytes) -> AsyncIterator[bytes]:
    if isinstance(body, bytes):
        yield body
    else:
        async for piece in body:
            yield piece


_RUNS = object()  # _open_current: the version is made of several runs (node.runs)


def has_runs(manifest: bytes) -> bool:
    return b"\xa4runs" in manifest and "runs" in decode_manifest(manifest)


def _no_such_key(key: str) -> NotFound:
    return NotFound(f"no such key {key!r}", kind="NoSuchKey")


class ObjectService:
    def __init__(self, *, node_id: str, store: ObjectStore, buckets: BucketCache, keys: BucketKeyCache,
                 peer_client: Callable[[Replica], Any], chunk_bytes: int, metrics: NodeMetrics,
                 clock: Callable[[], float] = time.time,
                 token_bytes: Callable[[int], bytes] = secrets.token_bytes, window: int = 2,
                 report: Callable[[str, int, str], Any] | None = None) -> None:
        self.node_id = node_id
        self._store = store
        self._buckets = buckets
        self._keys = keys
        self._peer_client = peer_client
        self._chunk_bytes = chunk_bytes
        self._metrics = metrics
        self._clock = clock
        self._token_bytes = token_bytes
        self._window = window
        self._locks = KeyLocks()
        self._report = report
        self.inflight: dict[bytes, list[int]] = {}  # bucket id -> epochs of the writes in flight
        self.key_locks = self._locks  # node.repair copies a key under the writers' lock
        # set by node.main: (record, key, object id, extent id or None) -> repaired?
        self.read_repair: Callable[..., Any] | None = None
        self.space_check: Callable[[], None] | None = None  # node.capacity: refuse writes when full

    # -- bucket records ------------------------------------------------------------------------
    async def _record(self, bucket: str, bucket_version: int, *, primary: bool) -> BucketRecord:
        rec = await self._buckets.get(bucket, min_version=bucket_version)
        if not rec.has_replica(self.node_id):
            raise InvalidRequest(f"{self.node_id} is not a replica of {bucket}",
                                 kind="NotPrimary" if primary else "NotReplica")
        if primary and rec.primary.node_id != self.node_id:
            raise InvalidRequest(f"{self.node_id} is not the primary of {bucket} ({rec.primary.node_id} is)",
                                 kind="NotPrimary")
        if not primary and self.node_id in rec.syncing:  # its copy is incomplete: ask another replica
            raise Unavailable(f"{self.node_id} is still receiving its copy of {bucket}", kind="ReplicaSyncing")
        return rec

    async def _report_failure(self, rec: BucketRecord, node_id: str, exc: RpcError) -> BucketRecord | None:
        """Report a failed replica to the coordinator; the new record if it left the set (the
        write goes on without it), else None. A replica that refused our epoch is not reported:
        our view is the stale one."""
        if exc.kind == "StaleEpoch" or self._report is None:
            self._buckets.invalidate(rec.name)
            return None
        try:
            new = self._buckets.put(await self._report(rec.name, rec.epoch, node_id))
        except RpcError as err:
            log.warning("event=replica_report_refused bucket=%s node=%s kind=%s error=%s", rec.name, node_id,
                        err.kind, err.message)
            return None
        if new.has_replica(node_id) or new.primary.node_id != self.node_id:
            return None
        log.warning("event=replica_excluded bucket=%s node=%s epoch=%d", rec.name, node_id, new.epoch)
        return new

    async def wait_writes_before(self, bucket_id: bytes, epoch: int) -> None:
        """Wait until no write started under an epoch older than ``epoch`` is in flight."""
        while any(e < epoch for e in self.inflight.get(bucket_id, ())):
            await trio.sleep(0.01)

    async def _bucket_key(self, rec: BucketRecord, gen: int) -> bytes:
        entry = rec.key(gen)
        if entry is None:
            raise Internal(f"bucket {rec.name} has no key generation {gen}")
        return await self._keys.get(rec.bucket_id, gen, entry.wrapped, rec.arn)

    async def _manifest(self, rec: BucketRecord, key: str) -> dict[str, Any] | None:
        row = await trio.to_thread.run_sync(self._store.get, rec.bucket_id, key)
        return None if row is None else decode_manifest(row.manifest)

    # -- put -----------------------------------------------------------------------------------
    async def _check_conditions(self, rec: BucketRecord, key: str, if_none_match: bool,
                                if_match: str | None) -> None:
        if not if_none_match and if_match is None:
            return
        current = await self._manifest(rec, key)
        if if_none_match and current is not None:
            raise PreconditionFailed(f"{key!r} already exists (If-None-Match: *)", kind="PreconditionFailed")
        if if_match is not None:
            if current is None:
                raise _no_such_key(key)
            wanted = if_match.strip().strip('"')
            if wanted != "*" and wanted != current["etag"]:
                raise PreconditionFailed(f"the ETag of {key!r} does not match If-Match", kind="PreconditionFailed")

    async def put_object(self, *, bucket: str, key: str, bucket_version: int, user: dict[str, Any],
                         if_none_match: bool = False, if_match: str | None = None,
                         body: AsyncIterable[bytes] | bytes | None, request_id: str | None = None) -> dict[str, Any]:
        """Store ``body`` as ``key`` on every replica; returns the public ObjectMeta.

        ``user`` is ``manifest.parse_user_fields(meta)``. Raises the errors of docs/rpc.md
        (NoSuchBucket, NotPrimary, PreconditionFailed, NoSuchKey, BadDigest, KMS kinds,
        ReplicationFailed) or the error the body ended with.
        """
        rec = await self._record(bucket, bucket_version, primary=True)
        if self.space_check is not None:
            self.space_check()
        await self._check_conditions(rec, key, if_none_match, if_match)
        gen = rec.active_gen
        bucket_key = await self._bucket_key(rec, gen)
        object_id = self._token_bytes(OBJECT_ID_BYTES)
        object_key = derive_object_key(bucket_key, object_id)
        key_arn = rec.key(gen).kms_key_arn if rec.sse_algorithm == "aws:kms" else None  # type: ignore[union-attr]
        start = start_manifest(key=key, user=user, object_id=object_id, key_gen=gen,
                               chunk_bytes=self._chunk_bytes, last_modified=self._clock(),
                               sse_algorithm=rec.sse_algorithm, kms_key_arn=key_arn)
        incoming = self._store.create_incoming(rec.bucket_id, object_id)  # in memory: no I/O
        job = _Put(rec, key, object_id, object_key, incoming)
        if user.get("checksum_algorithm"):
            job.checksum = new_checksum(user["checksum_algorithm"])
        write_scope = trio.CancelScope()

        async def on_replica_failure(node_id: str, exc: RpcError) -> bool:
            self._metrics.replication_failures.inc()
            new = await self._report_failure(job.record, node_id, exc)
            if new is not None:
                job.record = new  # the write completes on the rest, under the new epoch
                return True
            if not job.committing:
                write_scope.cancel()  # stop reading a body that can no longer be stored
            return False

        peers = [(p.node_id, self._peer_client(p)) for p in rec.peers(self.node_id)]
        fan = Fanout(peers, {"bucket_id": rec.bucket_id, "bucket": rec.name, "epoch": rec.epoch, "meta": start},
                     window=self._window, request_id=request_id, on_failure=on_replica_failure)
        error: RpcError | None = None
        inflight = self.inflight.setdefault(rec.bucket_id, [])
        inflight.append(rec.epoch)
        try:
            async with trio.open_nursery() as nursery:
                job.nursery = nursery
                if not isinstance(body, bytes):
                    fan.start(nursery)  # streamed: a replica that fails stops the write early
                try:
                    with write_scope:
                        manifest = await self._write(job, start, fan, body, if_none_match, if_match,
                                                     expected_checksum=user.get("checksum_value"))
                    if write_scope.cancelled_caught:
                        raise fan.failure()
                except RpcError as exc:
                    error = exc
                    nursery.cancel_scope.cancel()
                except OSError as exc:
                    log.error("event=local_write_failed bucket=%s error=%s", bucket, exc)
                    error = local_storage_error(self.node_id, exc)
                    nursery.cancel_scope.cancel()
        finally:
            inflight.remove(rec.epoch)
            if not job.committed:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(job.incoming.abort)
        if error is not None:
            if error.kind == "ReplicationFailed":
                self._buckets.invalidate(bucket)  # the replica set may have changed
            log.info("event=put_aborted bucket=%s object_id=%s code=%s kind=%s", bucket, object_id.hex(),
                     error.code.value, error.kind)
            raise error
        log.debug("event=put bucket=%s object_id=%s size=%d chunks=%d replicas=%d", bucket, object_id.hex(),
                 manifest["size"], manifest["chunks"], len(rec.replicas))
        return public_meta(manifest)

    async def _write(self, job: _Put, start: dict[str, Any], fan: Fanout, body: AsyncIterable[bytes] | bytes | None,
                     if_none_match: bool, if_match: str | None, *, expected_checksum: str | None) -> dict[str, Any]:
        cutter = ChunkCutter(self._chunk_bytes)
        held: list[bytes] = []  # a whole (small) body's sealed chunks, sent with the trailer in one call

        async def send(sealed: bytes) -> None:
            if not fan.started:
                held.append(sealed)
                if sum(map(len, held)) <= WHOLE_REPLICA_BYTES:
                    return
                fan.start(job.nursery)
            for piece in held or [sealed]:
                await fan.send(piece)
            held.clear()

        if body is not None:
            async for piece in _pieces(body):
                job.size += len(piece)
                for chunk in cutter.feed(piece):
                    await send(await self._seal(job, *chunk))
        await send(await self._seal(job, *cutter.finish()))
        fan.close_inputs()
        whole = None if fan.started else b"".join(held)
        body_done = trio.current_time()
        if job.incoming.inline:
            job.incoming.publish()  # a small body stays in memory until the commit record
        else:
            await trio.to_thread.run_sync(job.incoming.publish)
        checksum_value = job.checksum.b64digest() if job.checksum is not None else None
        if expected_checksum is not None and expected_checksum != checksum_value:
            raise InvalidRequest("the body does not match meta.checksum_value", kind="BadDigest")
        manifest = finish_manifest(start, size=job.size, etag=job.md5.hexdigest(), chunks=cutter.chunks,
                                   checksum_value=checksum_value)
        rec = job.record
        async with self._locks.hold(rec.bucket_id, job.key):
            await self._check_conditions(rec, job.key, if_none_match, if_match)
            trailer = {"size": job.size, "etag": manifest["etag"], "chunks": cutter.chunks}
            if checksum_value is not None:
                trailer["checksum_value"] = checksum_value
            trailer["epoch"] = job.record.epoch
            job.committing = True
            result: list[bytes | None] = []
            local_error: list[OSError] = []
            # the local record is written first: a full disk fails the write here, before any
            # replica is told to commit (the replicas then discard the body)
            finish_local = await durable.stage(self._store, job.incoming, rec.bucket_id, job.key, job.object_id,
                                               job.size, encode_manifest(manifest))

            async def local_commit() -> None:
                try:
                    result.append(await finish_local())
                except OSError as exc:  # raised as itself below, not as a group
                    local_error.append(exc)
                    return
                job.committed = True

            # the local commit (its own group-committed fsync) runs while the replicas commit
            failed: RpcError | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(local_commit)
                try:
                    if whole is not None:
                        await fan.commit_whole(whole + encode_trailer(trailer))
                    else:
                        await fan.commit(encode_trailer(trailer))
                except RpcError as exc:
                    failed = exc  # raised as itself once the local commit is done, not as a group
                self._metrics.replication_duration.observe(trio.current_time() - body_done)
            if local_error:
                raise local_error[0]
            if failed is not None:
                raise failed
            old = result[0]
        if old is not None and old != job.object_id:
            await trio.to_thread.run_sync(self._store.delete_data, rec.bucket_id, old)
        return manifest

    async def _seal(self, job: _Put, index: int, plaintext: bytes, last: bool) -> bytes:
        """Seal and append one chunk: small ones at once (microseconds of CPU, memory only),
        others in a worker thread."""
        if len(plaintext) <= INLINE_SEAL_BYTES and job.incoming.fits(len(plaintext) + SEAL_OVERHEAD):
            return self._seal_and_append(job, index, plaintext, last)
        return await trio.to_thread.run_sync(self._seal_and_append, job, index, plaintext, last)

    def _seal_and_append(self, job: _Put, index: int, plaintext: bytes, last: bool) -> bytes:
        """Worker thread: hash, seal and append one chunk; returns the sealed bytes."""
        job.md5.update(plaintext)
        if job.checksum is not None:
            job.checksum.update(plaintext)
        sealed = seal_chunk(job.object_key, bucket_id=job.record.bucket_id, object_id=job.object_id,
                            index=index, last=last, plaintext=plaintext)
        job.incoming.write(sealed)
        self._metrics.chunks_written.inc()
        return sealed

    # -- reads ---------------------------------------------------------------------------------
    async def head_object(self, *, bucket: str, key: str, bucket_version: int) -> dict[str, Any]:
        rec = await self._record(bucket, bucket_version, primary=False)
        manifest = await self._manifest(rec, key)
        if manifest is None:
            raise _no_such_key(key)
        # A revoked KMS key refuses HEAD too (as S3 Express, whose sessions need the key), and the
        # gateway's GET, which HEADs first, fails before it sends a 200 head.
        await self._bucket_key(rec, manifest["key_gen"])
        return public_meta(manifest)

    async def get_object(self, *, bucket: str, key: str, bucket_version: int,
                         byte_range: tuple[int, int] | None = None) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """Returns (public meta, plaintext stream of the object or of the inclusive range).

        The first chunk needed is read and verified before returning, so a corrupt object
        fails the call itself (IntegrityError) rather than its stream. Read repair: when the
        local copy is damaged, ``read_repair`` fetches a good one from another replica, and the
        read is served from the repaired copy (never from bad bytes).
        """
        rec = await self._record(bucket, bucket_version, primary=False)
        try:
            return await self._get(rec, bucket, key, byte_range)
        except IntegrityError:
            row = await trio.to_thread.run_sync(self._store.get, rec.bucket_id, key)
            if (self.read_repair is None or row is None or has_runs(row.manifest)  # runs: repaired in node.runs
                    or not await self.read_repair(rec, key, row.object_id)):
                raise
            return await self._get(rec, bucket, key, byte_range)

    async def _get(self, rec: BucketRecord, bucket: str, key: str,
                   byte_range: tuple[int, int] | None) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        row, data = await trio.to_thread.run_sync(self._open_current, rec.bucket_id, key)
        if row is None:
            raise _no_such_key(key)
        if data is _RUNS:  # appended (or zero-copy multipart): several runs of chunks
            manifest = decode_manifest(row.manifest)
            return public_meta(manifest), await runs.open_stream(self, rec, bucket, manifest, byte_range)
        if data is None:
            log.error("event=data_file_missing bucket=%s object_id=%s", bucket, row.object_id.hex())
            raise IntegrityError(f"the data of {key!r} is missing on {self.node_id}", kind="IntegrityError")
        try:
            manifest = decode_manifest(row.manifest)
            size = manifest["size"]
            first, last = byte_range if byte_range is not None else (0, size - 1)
            if byte_range is not None and not 0 <= first <= last < size:
                raise InvalidRequest(f"range {first}-{last} is outside the object (size {size})", kind="InvalidRange")
            bucket_key = await self._bucket_key(rec, manifest["key_gen"])
            object_key = derive_object_key(bucket_key, manifest["object_id"])
            reader = ChunkReader(data, object_key=object_key, bucket_id=rec.bucket_id, manifest=manifest)
            cb = reader.chunk_bytes
            lo_chunk, hi_chunk = (first // cb, last // cb) if size else (0, 0)
            first_chunk = await self._read_chunk(reader, bucket, seek=lo_chunk)
        except BaseException:
            data.close()
            raise

        def trim(index: int, plaintext: bytes) -> bytes:
            base = index * cb
            return plaintext[max(first - base, 0):max(0, min(last - base + 1, len(plaintext)))]

        async def stream() -> AsyncIterator[bytes]:
            nonlocal reader
            try:
                piece = trim(*first_chunk)
                if piece:
                    yield piece
                for index in range(lo_chunk + 1, hi_chunk + 1):
                    try:
                        chunk = await self._read_chunk(reader, bucket)
                    except IntegrityError:
                        # damaged past the first chunk: repair the copy and go on from the fresh
                        # one (what was served so far came from authenticated chunks)
                        reader = await self._reopen_repaired(rec, key, manifest, object_key, reader)
                        chunk = await self._read_chunk(reader, bucket, seek=index)
                    piece = trim(*chunk)
                    if piece:
                        yield piece
            finally:
                reader.close()

        return public_meta(manifest), stream()

    async def _reopen_repaired(self, rec: BucketRecord, key: str, manifest: dict[str, Any], object_key: bytes,
                               old: ChunkReader) -> ChunkReader:
        """Read repair in the middle of a stream: replace this node's copy of the version with a
        replica's (``read_repair``) and return a reader on it (``old`` is closed). Raises
        IntegrityError when no good copy could be had (the stream then ends with it)."""
        object_id = manifest["object_id"]
        if self.read_repair is None or not await self.read_repair(rec, key, object_id):
            raise IntegrityError(f"a chunk of {key!r} is damaged on {self.node_id} and no replica had a good copy",
                                 kind="IntegrityError")
        try:
            data = await trio.to_thread.run_sync(self._store.open_data, rec.bucket_id, object_id)
        except FileNotFoundError:
            raise IntegrityError(f"{key!r} changed while it was being repaired on {self.node_id}",
                                 kind="IntegrityError") from None
        old.close()
        return ChunkReader(data, object_key=object_key, bucket_id=rec.bucket_id, manifest=manifest)

    def _open_current(self, bucket_id: bytes, key: str) -> tuple[Any, Any]:
        """Worker thread: (index row, opened extent) of ``key`` now; (None, None) if there is no
        such key, (row, None) if its data is missing."""
        for _attempt in range(3):
            row = self._store.get(bucket_id, key)
            if row is None:
                return None, None
            if has_runs(row.manifest):
                return row, _RUNS
            try:
                return row, self._store.open_data(bucket_id, row.object_id)
            except FileNotFoundError:
                continue  # overwritten or deleted in between: look again
        return row, None

    async def _read_chunk(self, reader: ChunkReader, bucket: str, *, seek: int | None = None) -> tuple[int, bytes]:
        def work() -> tuple[int, bytes]:
            if seek is not None:
                reader.seek(seek)
            return reader.read()

        try:
            result = await trio.to_thread.run_sync(work)
        except IntegrityError as exc:
            self._metrics.integrity_failures.inc()
            log.error("event=chunk_integrity_failure node=%s bucket=%s error=%s", self.node_id, bucket, exc.message)
            raise
        self._metrics.chunks_read.inc()
        return result

    async def list_objects(self, *, bucket: str, bucket_version: int, prefix: str = "", start_after: str = "",
                           max_keys: int = 1000) -> dict[str, Any]:
        rec = await self._record(bucket, bucket_version, primary=False)
        rows, truncated = await trio.to_thread.run_sync(
            lambda: self._store.list(rec.bucket_id, prefix=prefix, start_after=start_after, limit=max_keys))
        return {"objects": [public_meta(decode_manifest(r.manifest)) for r in rows], "truncated": truncated}

    # -- delete --------------------------------------------------------------------------------
    async def delete_object(self, *, bucket: str, key: str, bucket_version: int,
                            request_id: str | None = None) -> dict[str, Any]:
        rec = await self._record(bucket, bucket_version, primary=True)
        args = {"bucket_id": rec.bucket_id, "bucket": rec.name, "epoch": rec.epoch, "key": key}
        failures: list[str] = []

        async def one(peer: Replica) -> None:
            try:
                await self._peer_client(peer).call("ReplicaDelete", args, request_id=request_id)
            except RpcError as exc:
                self._metrics.replication_failures.inc()
                log.warning("event=replication_failed op=delete peer=%s kind=%s error=%s", peer.node_id,
                            exc.kind, exc.message)
                if await self._report_failure(rec, peer.node_id, exc) is None:
                    failures.append(f"{peer.node_id}: {exc.message}")

        async with self._locks.hold(rec.bucket_id, key):
            async with trio.open_nursery() as nursery:
                for peer in rec.peers(self.node_id):
                    nursery.start_soon(one, peer)
            if failures:
                self._buckets.invalidate(bucket)
                raise Unavailable(f"replication failed ({'; '.join(failures)})", kind="ReplicationFailed")
            old = await trio.to_thread.run_sync(self._store.remove, rec.bucket_id, key)
        if old is not None:
            await trio.to_thread.run_sync(self._store.delete_data, rec.bucket_id, old)
            log.debug("event=delete bucket=%s object_id=%s", bucket, old.hex())
        return {}
