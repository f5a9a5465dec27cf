"""Zero-copy CompleteMultipartUpload: the completed object is made of its parts' stored runs.

Theory of operation
-------------------
The gateway stores each part as a hidden replicated object (``\\x01p/<upload>/<NNNNN>``, see
gateway/s3_multipart.py) sealed under the part's own object id. Complete (``CompleteMultipart``
on the primary) does not read or rewrite any of it: under the final key's write lock it reads
the parts' index rows (at most 10000 manifests: bounded memory), and builds the final
manifest whose ``runs`` (``node.runs``) are the parts' runs in order - each run keeps the
part's object id as its *crypto id* and the part's key generation, so every chunk is still
authenticated exactly as it was written. The final object gets a new object id of its own
(for the index and the version tag) but owns no extent of its own. The full-object CRC is
combined from the parts' CRCs (``proto.crc_combine``); the gateway uses this path only when
every part carries a CRC of the upload's algorithm (otherwise it streams the parts, the path
that also computes SHA digests).

``ObjectStore.link`` then writes one COMMIT record that points the final key at the new
version, records the part extents as owned by it, and removes the part rows - atomically, and
only if every part key still points at the object id that was read (a part re-uploaded
meanwhile makes the Complete fail with ``InvalidPart``, and retrying reads the new part). The
part extents are never freed while the object lives (compaction moves them, recovery keeps
them: docs/storage.md). Replicas do the same with ``ReplicaComplete`` (the manifest as built
by the primary, and the part rows to adopt) before the primary links locally; a replica that
does not hold those exact part versions answers ``ReplicaDiverged`` and is reported like a
failed write. A retried Complete whose parts are gone is answered by the gateway from the
object's ``multipart.upload_id``.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from node.manifest import MAX_PARTS, decode_manifest, encode_manifest, finish_manifest, public_meta, start_manifest
from node.replication import replicate_call
from node.runs import runs_of
from proto.crc_combine import COMBINABLE, combine_b64
from proto.errors import Conflict, InvalidRequest

log = logging.getLogger(__name__)

OBJECT_ID_BYTES = 16


def _invalid_part(message: str) -> InvalidRequest:
    return InvalidRequest(message, kind="InvalidPart")


def build_manifest(start: dict[str, Any], parts: list[dict[str, Any]], *, algorithm: str | None) -> dict[str, Any]:
    """Pure: the completed object's manifest from ``start`` (``start_manifest``) and the parts'
    manifests in order. InvalidPart when a part has no CRC of ``algorithm`` to combine."""
    runs = []
    value: str | None = None
    for i, m in enumerate(parts):
        runs += runs_of(m)
        if algorithm is not None:
            if algorithm not in COMBINABLE or m.get("checksum_algorithm") != algorithm or not m.get("checksum_value"):
                raise _invalid_part(f"part {i + 1} has no {algorithm} checksum to combine")
            value = m["checksum_value"] if value is None else combine_b64(algorithm, value, m["checksum_value"],
                                                                        m["size"])
    size = sum(r.size for r in runs)
    out = finish_manifest(start, size=size, etag="", chunks=sum(r.chunks for r in runs), checksum_value=value)
    out["runs"] = [r.encode() for r in runs]
    out["part_count"] = len(parts)
    return out


class Completer:
    def __init__(self, objects: Any, replicas: Any) -> None:
        self._objects = objects
        self._replicas = replicas

    async def complete(self, *, bucket: str, key: str, bucket_version: int, user: dict[str, Any], parts: list[str],
                       if_none_match: bool = False, if_match: str | None = None,
                       request_id: str | None = None) -> dict[str, Any]:
        obj = self._objects
        store = obj._store
        rec = await obj._record(bucket, bucket_version, primary=True)
        if not user.get("multipart", {}).get("etag"):
            raise InvalidRequest("meta.multipart.etag is required", kind="InvalidArgument")
        async with obj.key_locks.hold(rec.bucket_id, key):
            await obj._check_conditions(rec, key, if_none_match, if_match)
            rows = await trio.to_thread.run_sync(lambda: [store.get(rec.bucket_id, p) for p in parts])
            for p, row in zip(parts, rows):
                if row is None:
                    raise _invalid_part(f"part {p!r} is gone")
            manifests = [decode_manifest(r.manifest) for r in rows]  # type: ignore[union-attr]
            gen = rec.active_gen
            key_arn = rec.key(gen).kms_key_arn if rec.sse_algorithm == "aws:kms" else None  # type: ignore[union-attr]
            object_id = obj._token_bytes(OBJECT_ID_BYTES)
            start = start_manifest(key=key, user=user, object_id=object_id, key_gen=gen,
                                   chunk_bytes=obj._chunk_bytes, last_modified=obj._clock(),
                                   sse_algorithm=rec.sse_algorithm, kms_key_arn=key_arn)
            manifest = build_manifest(start, manifests, algorithm=user.get("checksum_algorithm"))
            take = [(p, r.object_id) for p, r in zip(parts, rows)]  # type: ignore[union-attr]
            encoded = encode_manifest(manifest)
            args = {"bucket_id": rec.bucket_id, "bucket": rec.name, "epoch": rec.epoch, "key": key,
                    "object_id": object_id, "take": [[p, o] for p, o in take], "manifest": encoded}
            await replicate_call(self._objects, rec, "ReplicaComplete", args, request_id, op="complete")
            done, old = await trio.to_thread.run_sync(lambda: store.link(
                rec.bucket_id, key, object_id, manifest["size"], encoded, runs=[r[0] for r in manifest["runs"]],
                take=take))
            if not done:  # pragma: no cover - the parts were read under the store's own ordering
                raise _invalid_part("a part changed during the Complete")
        if old is not None and old != object_id:
            await trio.to_thread.run_sync(store.delete_data, rec.bucket_id, old)
        return public_meta(manifest)

    async def replica_complete(self, *, caller: str, bucket_id: bytes, bucket: str, epoch: int, key: str,
                               object_id: bytes, take: list[tuple[str, bytes]], manifest: bytes) -> dict[str, Any]:
        await self._replicas._record_for_replica(bucket, bucket_id, epoch, caller)
        m = decode_manifest(manifest)
        extents = [r.extent_id for r in runs_of(m)] if "runs" in m else []
        if m.get("object_id") != object_id or m.get("key") != key or sorted(extents) != sorted(o for _, o in take) \
                or len(take) > MAX_PARTS:
            raise InvalidRequest("the completed manifest does not match its parts", kind="InvalidArgument")
        store = self._objects._store
        done, old = await trio.to_thread.run_sync(lambda: store.link(bucket_id, key, object_id, m["size"], manifest,
                                                                     runs=extents, take=take))
        if not done:
            raise Conflict(f"the parts of {key!r} on {self._objects.node_id} are not the ones being completed",
                           kind="ReplicaDiverged")
        if old is not None and old != object_id:
            await trio.to_thread.run_sync(store.delete_data, bucket_id, old)
        return {}
