"""Appends (PutObject with ``x-amz-write-offset-bytes``): a new run of chunks for an object.

Theory of operation (primary)
-----------------------------
1. ``offset`` must equal the object's current size (``InvalidWriteOffset``); offset 0 on a
   missing key is a plain PutObject that must create the key. An object holds at most 10000
   parts (appends plus the parts of its multipart upload: ``TooManyParts``) and 5 TiB
   (``EntityTooLarge``).
2. The body is sealed as new chunks of the **same object** (same object id, hence the same
   per-object key, no KMS call beyond the cached bucket key; chunk indexes continue after the
   object's) into a new extent with a random *extent id*, streamed to every other replica with
   ``ReplicaAppend`` exactly as a PutObject streams ``ReplicaPut`` (``node.replication``).
   Nothing already stored is rewritten: the previous final chunk keeps its *last* flag, and
   the manifest lists the runs (``node.runs``).
3. Under the key's write lock the offset is checked again (authoritative: two racing appends
   at the same offset, one wins, the other gets ``InvalidWriteOffset``), then the trailer goes
   to the replicas while the primary commits (one COMMIT record naming the new extent and the
   object's full list of runs: atomic).

The new ETag is ``md5(previous ETag || the appended bytes' MD5)``: it changes on every append
and is the same on every replica. Checksums: when the object's checksum is a CRC (CRC32,
CRC32C, CRC64NVME) and the append uses the same algorithm, the full-object CRC is carried on
without re-reading anything (``proto.crc_combine``), as AWS returns a full-object CRC for
appended objects; otherwise (SHA-1/SHA-256, or another algorithm) the object keeps no
full-object checksum and the append's own checksum is only returned by the call (AWS: "you
can retrieve the checksum of the appended part").
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterable
from typing import Any

import trio

from node.capacity import local_storage_error
from node.chunk_codec import derive_object_key
from node.manifest import decode_manifest, encode_manifest, public_meta
from node.objects import OBJECT_ID_BYTES, _Put
from node.replication import Fanout
from node.runs import MAX_RUNS, Run, part_count, runs_of
from node.sealed_stream import ChunkCutter, SealedStreamParser, StreamError, encode_trailer
from proto.checksums import new_checksum
from proto.crc_combine import COMBINABLE, combine_b64
from proto.errors import Conflict, InvalidRequest, PreconditionFailed, RpcError

log = logging.getLogger(__name__)

MAX_OBJECT_BYTES = 5 * 1024 ** 4  # 5 TiB


def _bad_offset(offset: int, size: int) -> InvalidRequest:
    return InvalidRequest(f"The write offset value that you specified ({offset}) does not match the current "
                          f"object size ({size}).", kind="InvalidWriteOffset")


def check_append(current: dict[str, Any], offset: int) -> None:
    """Pure: InvalidWriteOffset / TooManyParts."""
    if offset != current["size"]:
        raise _bad_offset(offset, current["size"])
    if part_count(current) >= MAX_RUNS or len(runs_of(current)) >= MAX_RUNS:
        raise InvalidRequest(f"an object holds at most {MAX_RUNS} parts (appends included)", kind="TooManyParts")


def next_index(current: dict[str, Any]) -> int:
    """The chunk index an append starts at: after every chunk sealed under the object's id."""
    oid = current["object_id"]
    return max((r.first_index + r.chunks for r in runs_of(current) if r.crypto_id == oid), default=0)


def appended_manifest(current: dict[str, Any], run: Run, *, etag: str, checksum_value: str | None,
                      last_modified: float) -> dict[str, Any]:
    """Pure: the manifest after appending ``run``; the same on the primary and every replica."""
    runs = runs_of(current) + [run]
    m = dict(current, runs=[r.encode() for r in runs], size=current["size"] + run.size,
             chunks=sum(r.chunks for r in runs), etag=etag, last_modified=float(last_modified),
             part_count=part_count(current) + 1)
    m.pop("multipart", None)  # no longer the upload's object as completed
    if checksum_value is None:
        m.pop("checksum_algorithm", None)
        m.pop("checksum_value", None)
    else:
        m["checksum_value"] = checksum_value
    return m


def new_etag(previous: str, part_md5: str) -> str:
    return hashlib.md5(f"{previous}:{part_md5}".encode(), usedforsecurity=False).hexdigest()


def owned_runs(manifest: dict[str, Any]) -> list[bytes]:
    oid = manifest["object_id"]
    return [r.extent_id for r in runs_of(manifest) if r.extent_id != oid]


class Appender:
    def __init__(self, objects: Any, replicas: Any) -> None:
        self._objects = objects
        self._replicas = replicas

    async def append_object(self, *, bucket: str, key: str, bucket_version: int, offset: int, user: dict[str, Any],
                            body: AsyncIterable[bytes] | None, request_id: str | None = None) -> dict[str, Any]:
        """Append ``body`` to ``key`` at ``offset``; the public meta plus ``append_checksum`` (the
        appended bytes' checksum in ``user["checksum_algorithm"]``)."""
        obj = self._objects
        rec = await obj._record(bucket, bucket_version, primary=True)
        if obj.space_check is not None:
            obj.space_check()  # a full node refuses before taking any byte (node/capacity.py)
        current = await obj._manifest(rec, key)
        if current is None:
            if offset != 0:
                raise _bad_offset(offset, 0)
            try:
                meta = await obj.put_object(bucket=bucket, key=key, bucket_version=bucket_version, user=user,
                                            if_none_match=True, body=body, request_id=request_id)
            except PreconditionFailed:
                raise _bad_offset(offset, -1) from None
            return dict(meta, append_checksum=meta.get("checksum_value"))
        check_append(current, offset)
        return await self._append(rec, key, current, user, body, request_id)

    async def _append(self, rec: Any, key: str, current: dict[str, Any], user: dict[str, Any],
                      body: AsyncIterable[bytes] | None, request_id: str | None) -> dict[str, Any]:
        obj = self._objects
        store = obj._store
        object_id = current["object_id"]
        object_key = derive_object_key(await obj._bucket_key(rec, current["key_gen"]), object_id)
        extent_id = obj._token_bytes(OBJECT_ID_BYTES)
        first = next_index(current)
        chunk_bytes = obj._chunk_bytes
        incoming = store.create_incoming(rec.bucket_id, extent_id)
        job = _Put(rec, key, object_id, object_key, incoming)
        algo = user.get("checksum_algorithm")
        if algo:
            job.checksum = new_checksum(algo)
        write_scope = trio.CancelScope()

        async def on_failure(node_id: str, exc: RpcError) -> bool:
            obj._metrics.replication_failures.inc()
            new = await obj._report_failure(job.record, node_id, exc)
            if new is not None:
                job.record = new
                return True
            if not job.committing:
                write_scope.cancel()
            return False

        peers = [(p.node_id, obj._peer_client(p)) for p in rec.peers(obj.node_id)]
        args = {"bucket_id": rec.bucket_id, "bucket": rec.name, "epoch": rec.epoch, "key": key,
                "object_id": object_id, "extent_id": extent_id, "first_index": first,
                "base_etag": current["etag"], "chunk_bytes": chunk_bytes}
        fan = Fanout(peers, args, window=obj._window, request_id=request_id, on_failure=on_failure,
                     method="ReplicaAppend")
        error: RpcError | None = None
        manifest: dict[str, Any] = {}
        inflight = obj.inflight.setdefault(rec.bucket_id, [])
        inflight.append(rec.epoch)
        try:
            async with trio.open_nursery() as nursery:
                fan.start(nursery)
                try:
                    with write_scope:
                        manifest = await self._write(job, current, fan, body, first, chunk_bytes,
                                                     user.get("checksum_value"))
                    if write_scope.cancelled_caught:
                        raise fan.failure()
                except RpcError as exc:
                    error = exc
                    nursery.cancel_scope.cancel()
                except OSError as exc:
                    error = local_storage_error(obj.node_id, exc)
                    nursery.cancel_scope.cancel()
        finally:
            inflight.remove(rec.epoch)
            if not job.committed:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(job.incoming.abort)
        if error is not None:
            if error.kind == "ReplicationFailed":
                obj._buckets.invalidate(rec.name)
            raise error
        return dict(public_meta(manifest), append_checksum=job.checksum.b64digest() if job.checksum else None)

    async def _write(self, job: _Put, current: dict[str, Any], fan: Fanout, body: AsyncIterable[bytes] | None,
                     first: int, chunk_bytes: int, expected_checksum: str | None) -> dict[str, Any]:
        obj = self._objects
        cutter = ChunkCutter(chunk_bytes)
        limit = MAX_OBJECT_BYTES - current["size"]
        if body is not None:
            async for piece in body:
                job.size += len(piece)
                if job.size > limit:
                    raise InvalidRequest("the object would exceed 5 TiB", kind="EntityTooLarge")
                for index, data, last in cutter.feed(piece):
                    await fan.send(await obj._seal(job, first + index, data, last))
        index, data, last = cutter.finish()
        await fan.send(await obj._seal(job, first + index, data, last))
        fan.close_inputs()
        if job.incoming.inline:
            job.incoming.publish()
        else:
            await trio.to_thread.run_sync(job.incoming.publish)
        part_checksum = job.checksum.b64digest() if job.checksum is not None else None
        if expected_checksum is not None and expected_checksum != part_checksum:
            raise InvalidRequest("the body does not match meta.checksum_value", kind="BadDigest")
        rec = job.record
        async with obj.key_locks.hold(rec.bucket_id, job.key):
            now = await obj._manifest(rec, job.key)  # authoritative: under the writers' lock
            if now is None or now["object_id"] != current["object_id"] or now["etag"] != current["etag"]:
                raise _bad_offset(current["size"], -1 if now is None else now["size"])
            run = Run(job.incoming.object_id, job.object_id, first, cutter.chunks, job.size, chunk_bytes,
                      current["key_gen"])
            algo = current.get("checksum_algorithm")
            checksum_value = None
            if algo in COMBINABLE and algo == (job.checksum.algorithm if job.checksum else None) \
                    and current.get("checksum_value"):
                checksum_value = combine_b64(algo, current["checksum_value"], part_checksum, job.size)
            manifest = appended_manifest(current, run, etag=new_etag(current["etag"], job.md5.hexdigest()),
                                         checksum_value=checksum_value, last_modified=obj._clock())
            trailer = {"size": job.size, "etag": manifest["etag"], "chunks": cutter.chunks,
                       "checksum_value": checksum_value, "last_modified": manifest["last_modified"],
                       "epoch": job.record.epoch}
            job.committing = True
            # the local record first: a full disk fails here, before any replica commits
            wait = await trio.to_thread.run_sync(lambda: obj._store.stage_commit(
                rec.bucket_id, job.key, job.object_id, manifest["size"], encode_manifest(manifest),
                extent_id=job.incoming.object_id, runs=owned_runs(manifest)))
            local_error: list[OSError] = []

            async def local_commit() -> None:
                try:
                    with trio.CancelScope(shield=True):  # the record is in the log: its outcome is ours
                        await trio.to_thread.run_sync(wait)
                except OSError as exc:  # raised as itself below, not as a group
                    local_error.append(exc)
                    return
                job.committed = True

            async with trio.open_nursery() as nursery:
                nursery.start_soon(local_commit)
                await fan.commit(encode_trailer(trailer))
            if local_error:
                raise local_error[0]
        obj._metrics.appends.inc()
        return manifest

    # -- replica side --------------------------------------------------------------------------
    async def replica_append(self, *, caller: str, bucket_id: bytes, bucket: str, epoch: int, key: str,
                             object_id: bytes, extent_id: bytes, first_index: int, base_etag: str, chunk_bytes: int,
                             body: AsyncIterable[bytes] | None) -> dict[str, Any]:
        """Store a primary's appended run: framing checked (never decrypted), committed only after
        the trailer and a clean end of the body, and only onto the same base version."""
        await self._replicas._record_for_replica(bucket, bucket_id, epoch, caller)
        store = self._objects._store
        row = await trio.to_thread.run_sync(store.get, bucket_id, key)
        current = None if row is None else decode_manifest(row.manifest)
        if current is None or row.object_id != object_id or current["etag"] != base_etag:
            raise Conflict(f"{key!r} on {self._objects.node_id} is not the version being appended to",
                           kind="ReplicaDiverged")
        try:
            incoming = store.create_incoming(bucket_id, extent_id)
        except FileExistsError:
            raise Conflict("this extent id is already being written", kind="ObjectIdInUse") from None
        parser = SealedStreamParser(chunk_bytes, first_index)
        committed = False
        try:
            async for piece in body if body is not None else _empty():
                try:
                    data = parser.feed(piece)
                except StreamError as exc:
                    raise InvalidRequest(str(exc), kind="InvalidChunkStream") from None
                if data and incoming.fits(len(data)):
                    incoming.write(data)
                elif data:
                    await trio.to_thread.run_sync(incoming.write, data)
            try:
                trailer = parser.finish()
            except StreamError as exc:
                raise InvalidRequest(str(exc), kind="InvalidChunkStream") from None
            if trailer.get("size") != parser.plaintext_bytes or trailer.get("chunks") != parser.chunks \
                    or not isinstance(trailer.get("etag"), str) or len(trailer["etag"]) > 128 \
                    or not isinstance(trailer.get("last_modified"), (int, float)) \
                    or not (trailer.get("checksum_value") is None or isinstance(trailer["checksum_value"], str)):
                raise InvalidRequest("the append trailer does not match its chunks", kind="InvalidChunkStream")
            t_epoch = trailer.get("epoch", epoch)
            if isinstance(t_epoch, bool) or not isinstance(t_epoch, int):
                raise InvalidRequest("the trailer's epoch must be an integer", kind="InvalidChunkStream")
            await self._replicas._record_for_replica(bucket, bucket_id, max(t_epoch, epoch), caller)
            row = await trio.to_thread.run_sync(store.get, bucket_id, key)  # the primary serialises commits
            current = None if row is None else decode_manifest(row.manifest)
            if current is None or row.object_id != object_id or current["etag"] != base_etag:
                raise Conflict(f"{key!r} on {self._objects.node_id} changed under the append", kind="ReplicaDiverged")
            self._objects._metrics.chunks_written.inc(parser.chunks)
            run = Run(extent_id, object_id, first_index, parser.chunks, parser.plaintext_bytes, chunk_bytes,
                      current["key_gen"])
            manifest = appended_manifest(current, run, etag=trailer["etag"], checksum_value=trailer["checksum_value"],
                                         last_modified=trailer["last_modified"])
            if incoming.inline:
                incoming.publish()
            else:
                await trio.to_thread.run_sync(incoming.publish)
            await trio.to_thread.run_sync(lambda: store.commit(
                bucket_id, key, object_id, manifest["size"], encode_manifest(manifest), extent_id=extent_id,
                runs=owned_runs(manifest)))
            committed = True
        finally:
            if not committed:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(incoming.abort)
        return {}


async def _empty():  # pragma: no cover - a ReplicaAppend always has a body
    return
    yield b""
