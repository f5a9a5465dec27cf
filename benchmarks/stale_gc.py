"""How fast a node deletes a stale bucket copy (node/stale_collector.py), unthrottled, on this disk.

Fills a store with N small objects (and a few blob-sized ones) in one bucket, then times the
collector's deletion path (REMOVE records through the log in batches, extents dropped) and
prints objects/s and what is left. Run: ``.venv/bin/python benchmarks/stale_gc.py [N]``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

from node.stale_collector import StaleCollector
from node.store import ObjectStore

BUCKET = b"\x07" * 16


def fill(store: ObjectStore, n: int, size: int) -> None:
    for i in range(n):
        oid = (i + 1).to_bytes(16, "big")
        f = store.create_incoming(BUCKET, oid)
        f.write(bytes([i % 256]) * size)
        f.publish()
        store.commit(BUCKET, f"k{i:08d}", oid, size, b"m")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        store = ObjectStore.open(Path(tmp))
        try:
            fill(store, n, 4096)
            used = store.used_bytes
            gc = StaleCollector(store, None, node_id="node-1", grace_s=0, interval_s=1, rate_objects_per_s=0,
                                registry=CollectorRegistry())
            t0 = time.perf_counter()
            removed = trio.run(gc._delete_all, BUCKET)
            dt = time.perf_counter() - t0
            print(f"stale_gc objects={removed} size=4096 seconds={dt:.3f} objects_per_s={removed / dt:.0f} "
                  f"used_before={used} used_after={store.used_bytes} rows_left={store.bucket_usage(BUCKET)[0]} "
                  f"(log space is left to compaction)")
        finally:
            store.close()


if __name__ == "__main__":
    main()
