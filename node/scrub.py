"""The scrubber: re-read every stored object version at a bounded rate and check its crc32.

``Scrubber.run`` (a daemon task) walks the store's live extents in (bucket id, extent id) order
(an object version's own extent and every further run it owns: appends, ``node.runs``),
reads each one and compares the crc32 of its bytes with the one recorded when it was written
(``ObjectStore.check_extent``: no key, no KMS call). It sleeps so that it reads at most
``rate_bytes_per_s`` (so foreground requests keep the disk), and rests ``pause_s`` between
passes. A damaged extent is counted (``onezone_node_scrub_bad_extents``), logged, and repaired
from another replica's copy of the same extent (``Repairer.repair_object``, for the version that
owns it: ``ObjectStore.holder_of``) when this node knows the bucket's record;
otherwise the next read of it repairs it (reads never return bad bytes: every chunk is also
authenticated by AES-GCM). ``scrub_pass`` does one pass (tests call it directly).
"""

from __future__ import annotations

import logging

import trio

from node.buckets import BucketCache
from node.metrics import NodeMetrics
from node.repair import Repairer
from node.store import Extent, ObjectStore

log = logging.getLogger(__name__)

BATCH = 64


class Scrubber:
    def __init__(self, store: ObjectStore, buckets: BucketCache, repairer: Repairer, metrics: NodeMetrics, *,
                 rate_bytes_per_s: float, pause_s: float = 60.0) -> None:
        self._store = store
        self._buckets = buckets
        self._repairer = repairer
        self._metrics = metrics
        self._rate = rate_bytes_per_s
        self._pause_s = pause_s
        self.passes = 0

    async def run(self) -> None:
        while True:
            await self.scrub_pass()
            await trio.sleep(self._pause_s)

    async def scrub_pass(self) -> tuple[int, int]:
        """One pass over every live extent; (extents checked, damaged found)."""
        checked = bad = 0
        after = (b"", b"")
        while True:
            batch = await trio.to_thread.run_sync(lambda: self._store.extents(after, BATCH))
            if not batch:
                break
            for ext in batch:
                ok = await trio.to_thread.run_sync(self._store.check_extent, ext)
                checked += 1
                self._metrics.scrub_bytes.inc(ext.length)
                if not ok:
                    bad += 1
                    await self._damaged(ext)
                if self._rate > 0:
                    await trio.sleep(ext.length / self._rate)
            after = (batch[-1].bucket_id, batch[-1].object_id)
        self.passes += 1
        log.info("event=scrub_pass checked=%d damaged=%d", checked, bad)
        return checked, bad

    async def _damaged(self, ext: Extent) -> None:
        self._metrics.scrub_bad.inc()
        holder = await trio.to_thread.run_sync(self._store.holder_of, ext.bucket_id, ext.object_id)
        rec = self._buckets.by_id(ext.bucket_id)
        log.error("event=scrub_damaged bucket_id=%s extent_id=%s segment=%s key=%r", ext.bucket_id.hex(),
                  ext.object_id.hex(), ext.path.name, None if holder is None else holder[0])
        if holder is not None and rec is not None:
            key, object_id = holder  # an appended run's extent belongs to the version that owns it
            await self._repairer.repair_object(rec, key, object_id, extent_id=ext.object_id)
