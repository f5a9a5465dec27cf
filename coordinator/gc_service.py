"""``GetBucketsById``: a node asks which of the bucket copies it holds it is still a replica of.

The storage nodes' stale-copy collection (``node.stale_gc``) deletes a bucket's local copy only
when the coordinator says, authoritatively, that the bucket id no longer exists or that the node
is not in its replica set. So this answer is read from the catalog's store (the durable source
of truth, one transaction), never from a cache, and only for the calling node itself.

Answer per asked id: ``{bucket_id, exists}`` and, when it exists, ``name``, ``epoch``,
``member`` (the node is in the replica set, ``syncing`` or not) and ``syncing``. The reply also
carries ``catalog_buckets`` (how many buckets the catalog holds in all): a node treats a catalog
with no bucket at all as doubt (a coordinator started on an empty or lost data directory must
not make every node wipe its disk).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from coordinator.service import CoordinatorService, _Args
from coordinator.store import SqliteStore
from proto.errors import InvalidRequest
from proto.rpc import Call, Handler

MAX_BUCKET_IDS = 256
MAX_BUCKET_ID_BYTES = 64

GC_ACL: dict[str, tuple[str, ...]] = {
    "GetBucketsById": ("node-*",),
}


class GcService:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def handlers(self) -> Mapping[str, Handler]:
        return {method: getattr(self, method) for method in GC_ACL}

    async def GetBucketsById(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", required=("node_id", "bucket_ids"))
        node_id = a.str("node_id", max_len=64)
        CoordinatorService._own_node(call, node_id)
        ids = call.args["bucket_ids"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_BUCKET_IDS:
            raise InvalidRequest(f"argument bucket_ids must be a list of 1 to {MAX_BUCKET_IDS} bucket ids",
                                 kind="InvalidArgument")
        for bucket_id in ids:
            if not isinstance(bucket_id, bytes) or not 1 <= len(bucket_id) <= MAX_BUCKET_ID_BYTES:
                raise InvalidRequest(f"every bucket id must be 1 to {MAX_BUCKET_ID_BYTES} bytes",
                                     kind="InvalidArgument")
        found, total = await trio.to_thread.run_sync(self._store.buckets_by_id, list(dict.fromkeys(ids)))
        out = []
        for bucket_id in dict.fromkeys(ids):
            row = found.get(bucket_id)
            if row is None:
                out.append({"bucket_id": bucket_id, "exists": False})
                continue
            name, replicas, syncing, epoch = row
            out.append({"bucket_id": bucket_id, "exists": True, "name": name, "epoch": epoch,
                        "member": node_id in replicas, "syncing": node_id in syncing})
        return {"buckets": out, "catalog_buckets": total}
