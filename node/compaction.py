"""Space reclamation: compact log segments whose bytes are mostly garbage.

Overwritten and deleted versions leave dead bytes in the log segments (a blob file is unlinked
at once). ``compact_once`` picks closed log segments (never the active one) whose live share is
below ``1 - min_garbage_ratio``, moves each live extent to the active segment with
``ObjectStore.rewrite`` (a conditional COMMIT record: a key overwritten meanwhile is left
alone, its new version is elsewhere), makes the index durable (``checkpoint``: the moves must
not depend on replaying the segment about to go), and deletes the segment. Foreground impact
is bounded by moving at most ``rate_bytes_per_s`` (sleeping between extents) and one segment
at a time; ``Compactor.run`` repeats every ``interval_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from node.segments import KIND_LOG, parse_segment_name
from node.store import ObjectStore

log = logging.getLogger(__name__)


def pick(sizes: dict[int, int], live: dict[int, int], active: int, min_garbage_ratio: float) -> list[int]:
    """Closed log segments worth compacting, most garbage first (pure)."""
    out = []
    for seq, size in sizes.items():
        if seq >= active or size <= 0:
            continue
        garbage = 1 - live.get(seq, 0) / size
        if garbage >= min_garbage_ratio:
            out.append((garbage, seq))
    return [seq for _, seq in sorted(out, reverse=True)]


def log_segment_sizes(store: ObjectStore) -> dict[int, int]:
    """Size of every log segment file by sequence number (blocking: call in a thread)."""
    sizes = {}
    for p in store.segments_dir.iterdir():
        parsed = parse_segment_name(p.name)
        if parsed is not None and parsed[0] == KIND_LOG:
            sizes[parsed[1]] = p.stat().st_size
    return sizes


async def compact_once(store: ObjectStore, *, min_garbage_ratio: float = 0.5, rate_bytes_per_s: float = 0.0,
                       sleep: Callable[[float], Awaitable[None]] = trio.sleep) -> tuple[int, int]:
    """Compact every eligible segment once; (segments removed, bytes reclaimed)."""
    sizes = await trio.to_thread.run_sync(log_segment_sizes, store)
    live = await trio.to_thread.run_sync(store.live_bytes)
    removed = reclaimed = 0
    for seq in pick(sizes, live, store.log.position[0], min_garbage_ratio):
        moved = 0
        for ext in await trio.to_thread.run_sync(store.extents_in, seq):
            holder = await trio.to_thread.run_sync(store.holder_of, ext.bucket_id, ext.object_id)
            if holder is None:
                continue  # an old version whose extent is being dropped
            key, owner = holder  # an appended run's extent belongs to its object's version
            data = await trio.to_thread.run_sync(store.read_extent, ext)
            await trio.to_thread.run_sync(lambda: store.rewrite(ext.bucket_id, key, owner, data,
                                                                extent_id=ext.object_id))
            moved += len(data)
            if rate_bytes_per_s > 0:
                await sleep(len(data) / rate_bytes_per_s)
        freed = await trio.to_thread.run_sync(store.drop_segment, seq)
        if freed:
            removed += 1
            reclaimed += freed - moved
            log.info("event=segment_compacted segment=%d bytes=%d live_moved=%d", seq, freed, moved)
    return removed, reclaimed


class Compactor:
    def __init__(self, store: ObjectStore, *, interval_s: float, min_garbage_ratio: float,
                 rate_bytes_per_s: float, metrics: Any = None) -> None:
        self._store = store
        self._metrics = metrics
        self._interval_s = interval_s
        self._ratio = min_garbage_ratio
        self._rate = rate_bytes_per_s

    async def run(self) -> None:
        while True:
            await trio.sleep(self._interval_s)
            try:
                _, reclaimed = await compact_once(self._store, min_garbage_ratio=self._ratio,
                                                  rate_bytes_per_s=self._rate)
                if self._metrics is not None:
                    self._metrics.compaction_reclaimed.inc(reclaimed)
                    sizes = await trio.to_thread.run_sync(log_segment_sizes, self._store)
                    live = await trio.to_thread.run_sync(self._store.live_bytes)
                    active = self._store.log.position[0]
                    self._metrics.compaction_pending.set(sum(
                        max(0, size - live.get(seq, 0)) for seq, size in sizes.items() if seq != active))
            except OSError as exc:
                log.error("event=compaction_failed error=%s", exc)
