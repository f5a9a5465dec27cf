"""The stale-copy collector: delete the local copies of buckets this node no longer serves.

``StaleCollector.run`` is a nursery task of the node daemon. Every ``interval_s`` it lists the
bucket ids its index holds (``ObjectStore.bucket_ids``), asks the coordinator about them
(``GetBucketsById``, at most ``MAX_IDS_PER_CALL`` per call) and lets ``node.stale_gc`` decide.
A copy found garbage at two checks ``grace_s`` apart is collected:

1. the bucket is fenced (``ObjectStore.fence``): refused if a write to it is in flight (an
   incoming repair copy, a client or replica write: the next pass tries again), and from then
   on every new write to it fails (``BucketFenced``), as does a primary's ``ReplicaList`` of it
   (``node.replica``), so a sync that starts meanwhile cannot take the copy being deleted for
   a good one: it fails and the coordinator asks again later;
2. the coordinator is asked once more, fresh; anything but the same verdict keeps the copy;
3. index rows are removed through the log (``ObjectStore.remove_many``: REMOVE records, one
   fsync per batch of ``BATCH`` keys) and their extents dropped (``delete_data``: blob files
   unlinked now, log space left to compaction), at most ``rate_objects_per_s``; then extents no
   row names any more (an earlier pass interrupted between the two steps) are dropped too;
4. the fence is lifted, one ``event=stale_copy_collected`` line is logged.

A crash anywhere leaves a consistent store (each REMOVE record is atomic; an extent whose
deletion did not run is dropped by the store's recovery at the next start) and the collection
resumes: the copy, or what is left of it, is still held and still garbage. Any error (the
coordinator unreachable, a refused call, a disk error) is logged and keeps the data.

Metrics: ``onezone_node_stale_gc_collected_{bytes,objects,buckets}_total`` and the gauge
``onezone_node_stale_gc_pending_buckets`` (copies found garbage, waiting out the grace period).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from node.stale_gc import StalePlanner, parse_reply
from node.store import ObjectStore
from proto.errors import RpcError

log = logging.getLogger(__name__)

MAX_IDS_PER_CALL = 256
BATCH = 100


class StaleGcMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.bytes = Counter("onezone_node_stale_gc_collected_bytes", "Extent bytes of stale bucket copies "
                             "deleted (this node left the replica set, or the bucket is gone).", registry=registry)
        self.objects = Counter("onezone_node_stale_gc_collected_objects", "Index rows of stale bucket copies "
                               "deleted.", registry=registry)
        self.buckets = Counter("onezone_node_stale_gc_collected_buckets", "Stale bucket copies deleted.",
                               registry=registry)
        self.pending = Gauge("onezone_node_stale_gc_pending_buckets", "Bucket copies the coordinator says are "
                             "no longer needed here, waiting out the grace period.", registry=registry)


class StaleCollector:
    def __init__(self, store: ObjectStore, coordinator: Any, *, node_id: str, grace_s: float, interval_s: float,
                 rate_objects_per_s: float, registry: CollectorRegistry,
                 clock: Callable[[], float] = trio.current_time,
                 sleep: Callable[[float], Awaitable[None]] = trio.sleep) -> None:
        self._store = store
        self.coordinator = coordinator  # an RpcClient to the coordinator
        self._node_id = node_id
        self._interval_s = interval_s
        self._rate = rate_objects_per_s
        self._clock = clock
        self._sleep = sleep
        self.planner = StalePlanner(grace_s=grace_s)
        self.metrics = StaleGcMetrics(registry)

    async def run(self) -> None:
        failing = False
        while True:
            await self._sleep(self._interval_s)
            try:
                await self.pass_once()
            except (RpcError, OSError) as exc:
                if not failing:
                    log.warning("event=stale_gc_failed node_id=%s error=%s (keeping every copy; retrying)",
                                self._node_id, exc)
                failing = True
            else:
                failing = False

    async def _ask(self, bucket_ids: list[bytes]) -> dict:
        answers: dict = {}
        for i in range(0, len(bucket_ids), MAX_IDS_PER_CALL):
            part = bucket_ids[i:i + MAX_IDS_PER_CALL]
            reply = await self.coordinator.call("GetBucketsById", {"node_id": self._node_id, "bucket_ids": part})
            answers.update(parse_reply(reply, part))
        return answers

    async def pass_once(self) -> int:
        """One check of every bucket copy held here; collects those due. Returns how many.

        Raises:
            RpcError: the coordinator could not be asked (nothing was deleted).
            OSError: the store failed.
        """
        held = await trio.to_thread.run_sync(self._store.bucket_ids)
        answers = await self._ask(held) if held else {}
        due = self.planner.observe(self._clock(), held, answers)
        self.metrics.pending.set(len(self.planner.suspects))
        collected = 0
        for bucket_id in due:
            collected += await self.collect(bucket_id)
        self.metrics.pending.set(len(self.planner.suspects))
        return collected

    async def collect(self, bucket_id: bytes) -> int:
        """Fence, confirm with a fresh answer, delete; 1 if the copy was collected, else 0."""
        if not self._store.fence(bucket_id):
            log.info("event=stale_copy_busy bucket_id=%s (a write is in flight; next pass)", bucket_id.hex())
            return 0
        try:
            answer = (await self._ask([bucket_id])).get(bucket_id)
            if not self.planner.confirm(self._clock(), bucket_id, answer):
                log.info("event=stale_copy_kept bucket_id=%s (the last check did not confirm)", bucket_id.hex())
                return 0
            rows, size = await trio.to_thread.run_sync(self._store.bucket_usage, bucket_id)
            objects = await self._delete_all(bucket_id)
            left_rows, left_size = await trio.to_thread.run_sync(self._store.bucket_usage, bucket_id)
        finally:
            self._store.unfence(bucket_id)
        self.planner.forget(bucket_id)
        freed = max(0, size - left_size)
        self.metrics.bytes.inc(freed)
        self.metrics.objects.inc(objects)
        self.metrics.buckets.inc()
        reason = "bucket_gone" if answer is not None and not answer.exists else "not_a_replica"
        log.info("event=stale_copy_collected bucket_id=%s reason=%s epoch=%s objects=%d bytes=%d left=%d",
                 bucket_id.hex(), reason, answer.epoch if answer is not None and answer.exists else "-",
                 objects, freed, left_rows)
        return 1

    async def _delete_all(self, bucket_id: bytes) -> int:
        store = self._store
        removed = 0
        while True:
            rows, _ = await trio.to_thread.run_sync(lambda: store.list(bucket_id, limit=BATCH))
            if not rows:
                break
            old = await trio.to_thread.run_sync(store.remove_many, bucket_id, [r.key for r in rows])
            for object_id in old:
                await trio.to_thread.run_sync(store.delete_data, bucket_id, object_id)
            removed += len(old)
            if self._rate > 0:
                await self._sleep(len(rows) / self._rate)
        tried: set[bytes] = set()
        while True:  # extents no row names (an interrupted pass); one still referenced stays
            orphans = [e for e in await trio.to_thread.run_sync(store.orphan_extents, bucket_id, BATCH)
                       if e not in tried]
            if not orphans:
                break
            for extent_id in orphans:
                tried.add(extent_id)
                await trio.to_thread.run_sync(store.delete_data, bucket_id, extent_id)
        return removed
