#!/usr/bin/env python3
"""Re-replication and primary failover with real processes: how long until a bucket is back to
three in-sync copies after a replica is SIGKILLed, and how long a PUT waits after its primary is
SIGKILLed.

    python benchmarks/repair_failover.py                   # 64 MiB in 256 objects, defaults below
    python benchmarks/repair_failover.py --mib 256 --objects 512

Starts a LocalCluster of 5 nodes (coordinator: heartbeats every 0.3 s, down after 1.5 s,
replaced after 1 s; node repair rate unthrottled), fills one bucket, kills a replica and times
the rebuild (the primary's copy to the newcomer, reported synced), then kills the primary and
times one PUT through the gateway (which retries on the new primary). Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from onezone.cluster import LocalCluster  # noqa: E402
from tests.cluster.conftest import client  # noqa: E402
from tests.cluster.test_repair_failover import DIR_CONFIG, FAST, ZONE, ids, record  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=int, default=64)
    p.add_argument("--objects", type=int, default=256)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        c = LocalCluster(Path(tmp) / "data", nodes=5, port=0, coordinator_options=FAST,
                         node_options={"repair_rate_bytes_per_s": 0})
        c.start()
        try:
            s3 = client(c, "s3")
            name = f"bench--{ZONE}--x-s3"
            s3.create_bucket(Bucket=name, CreateBucketConfiguration=DIR_CONFIG)
            size = args.mib * 1024 * 1024 // args.objects
            for i in range(args.objects):
                s3.put_object(Bucket=name, Key=f"o/{i:06d}", Body=os.urandom(size))
            before = ids(record(c, name))
            t0 = time.monotonic()
            c.kill(before[1])
            rec = settled_long(c, name, before[1])
            rebuild = time.monotonic() - t0
            print(f"rebuild after a replica SIGKILL: {rebuild:.2f} s for {args.mib} MiB in {args.objects} objects "
                  f"(detection ~1.5 s + replace_after 1 s included); {args.mib / rebuild:.1f} MiB/s overall")
            primary = ids(rec)[0]
            c.kill(primary)
            t0 = time.monotonic()
            s3.put_object(Bucket=name, Key="after", Body=b"x" * 4096)
            print(f"PUT after a primary SIGKILL answered in {time.monotonic() - t0:.2f} s "
                  f"(down_after_s 1.5, reconcile 0.3 s)")
        finally:
            c.stop()


def settled_long(c, name, without):
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        rec = record(c, name)
        if len(rec["replicas"]) == 3 and not rec["syncing"] and without not in ids(rec):
            return rec
        time.sleep(0.05)
    raise SystemExit("the bucket was not rebuilt within 10 minutes")


if __name__ == "__main__":
    main()
