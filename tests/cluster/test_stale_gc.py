"""Stale-copy collection with real processes: a node drained out of a bucket's replica set
deletes its copy once the grace period is over (index rows gone, blob files unlinked, disk usage
and metrics say so), while the bucket still reads back byte for byte from the remaining
replicas; the nodes still in the set delete nothing."""

import os
import re
import sqlite3
import urllib.request

import pytest

from onezone.cluster import LocalCluster
from tests.cluster.conftest import client
from tests.cluster.test_node_lifecycle import DIR_CONFIG, ZONE, admin, rpc, wait_for

pytestmark = pytest.mark.cluster

BUCKET = f"gc--{ZONE}--x-s3"


@pytest.fixture
def c(tmp_path):
    cl = LocalCluster(tmp_path / "onezone-data", nodes=4, port=0, coordinator_options={
        "heartbeat_interval_s": 0.3, "suspect_after_s": 1.0, "down_after_s": 1.5,
        "replace_after_s": 1.0, "reconcile_interval_s": 0.3, "replicas": 3},
        node_options={"stale_gc_interval_s": 0.2, "stale_gc_grace_s": 1.0})
    cl.start()
    yield cl
    cl.stop()


def metric(c, node, name):
    text = urllib.request.urlopen(f"http://{c.daemons[node].info['metrics']}/metrics").read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def rows(c, node, bucket_id):
    db = sqlite3.connect(f"file:{c.data_dir / node / 'index.db'}?mode=ro", uri=True)
    try:
        return (db.execute("SELECT COUNT(*) FROM objects WHERE bucket_id = ?", (bucket_id,)).fetchone()[0],
                db.execute("SELECT COUNT(*) FROM extents WHERE bucket_id = ?", (bucket_id,)).fetchone()[0])
    finally:
        db.close()


def test_drained_node_deletes_its_copy_the_others_keep_theirs(c):
    s3 = client(c, "s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration=DIR_CONFIG)
    bodies = {f"small/{i}": os.urandom(100 + i) for i in range(20)}
    bodies["large"] = os.urandom(1300 * 1024)  # beyond the inline limit: a blob file of its own
    for key, body in bodies.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    record = rpc(c, "admin", "GetBucket", {"name": BUCKET})["bucket"]
    bucket_id = record["bucket_id"]
    ids = [r["node_id"] for r in record["replicas"]]
    spare = next(n for n in c.node_names if n not in ids)
    drained = ids[1]
    assert rows(c, drained, bucket_id) == (21, 21)
    used_before = metric(c, drained, "onezone_node_disk_used_bytes")

    admin(c, "node", "drain", drained)
    wait_for(lambda: (b := rpc(c, "admin", "GetBucket", {"name": BUCKET})["bucket"]) and b["syncing"] == []
             and drained not in [r["node_id"] for r in b["replicas"]], timeout=30)
    wait_for(lambda: metric(c, drained, "onezone_node_stale_gc_collected_buckets_total") == 1.0, timeout=30)
    assert rows(c, drained, bucket_id) == (0, 0)
    assert metric(c, drained, "onezone_node_stale_gc_collected_objects_total") == 21.0
    assert metric(c, drained, "onezone_node_stale_gc_collected_bytes_total") >= len(bodies["large"])
    assert metric(c, drained, "onezone_node_disk_used_bytes") < used_before - 1_000_000  # the blob file is gone
    assert metric(c, drained, "onezone_node_stale_gc_pending_buckets") == 0.0
    log = c.daemons[drained].log_path.read_text()
    assert log.count("event=stale_copy_collected") == 1 and f"bucket_id={bucket_id.hex()}" in log

    for key, body in bodies.items():  # the remaining replicas still serve every byte
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    for node in [n for n in ids if n != drained] + [spare]:  # still in the set: nothing deleted
        assert rows(c, node, bucket_id) == (21, 21), node
        assert metric(c, node, "onezone_node_stale_gc_collected_buckets_total") == 0.0
        assert metric(c, node, "onezone_node_stale_gc_pending_buckets") == 0.0
