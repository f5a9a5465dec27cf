"""Node lifecycle on the coordinator side with real processes: a node killed for good is
replaced in its buckets' replica sets (new epoch, next-ranked node, marked syncing, visible in
``onezone admin status`` and metrics), a drain adds the replacement before dropping the
drained node, and a removed node cannot come back unnoticed.

The data re-copy is the one repair path: the coordinator asks the primary (``SyncReplica``), the
primary copies and reports the copy complete (``ReportReplicaSynced``): nothing here reports on
a node's behalf; tests/cluster/test_repair_failover.py checks the copies byte for byte."""

import subprocess
import sys
import time
import urllib.request

import pytest
import trio

from onezone.cluster import LocalCluster
from proto.rpc import open_rpc_pool
from proto.settings import TlsConfig
from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ZONE = "use1-az4"
BUCKET = f"life--{ZONE}--x-s3"
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": ZONE},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}


@pytest.fixture
def c(tmp_path):
    cl = LocalCluster(tmp_path / "onezone-data", nodes=5, port=0, coordinator_options={
        "heartbeat_interval_s": 0.3, "suspect_after_s": 1.0, "down_after_s": 1.5,
        "replace_after_s": 1.0, "reconcile_interval_s": 0.3, "replicas": 3})
    cl.start()
    yield cl
    cl.stop()


def rpc(c, principal, method, args):
    certs = c.data_dir / "certs"
    tls = TlsConfig(ca=certs / "ca.pem", cert=certs / f"{principal}.pem", key=certs / f"{principal}.key")
    host, _, port = c.daemons["coordinator"].info["rpc"].rpartition(":")

    async def go():
        async with open_rpc_pool(tls.client_context(), default_timeout_s=10) as pool:
            return await pool.client(host, int(port), "coordinator").call(method, args)
    try:
        return trio.run(go)
    except BaseExceptionGroup as group:  # the pool's nursery wraps the call's error
        leaf = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None


def admin(c, *args):
    r = subprocess.run([sys.executable, "-m", "onezone", "admin", *args, "--data-dir", str(c.data_dir)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def wait_for(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def bucket(c):
    return rpc(c, "admin", "GetBucket", {"name": BUCKET})["bucket"]


def test_dead_node_replaced_then_drain_then_remove(c):
    s3 = client(c, "s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration=DIR_CONFIG)
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"kept")
    before = bucket(c)
    ids = [r["node_id"] for r in before["replicas"]]
    dead = ids[1]
    c.kill(dead)
    after = wait_for(lambda: (b := bucket(c)) and dead not in [r["node_id"] for r in b["replicas"]] and b)
    new_ids = [r["node_id"] for r in after["replicas"]]
    assert new_ids[:2] == [ids[0], ids[2]] and len(new_ids) == 3 and after["epoch"] > before["epoch"]
    newcomer = new_ids[2]
    assert newcomer not in before["syncing"]
    metrics = urllib.request.urlopen(f"http://{c.daemons['coordinator'].info['metrics']}/metrics").read().decode()
    assert 'onezone_coordinator_replica_set_changes_total{reason="replace_lost"} 1.0' in metrics
    assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"kept"  # served by the survivors

    # the primary copies the bucket to the newcomer and reports it: syncing clears by itself
    wait_for(lambda: bucket(c)["syncing"] == [])
    assert rpc(c, "admin", "ListNodeAssignments", {"node_id": newcomer})["buckets"][0]["syncing"] is False
    assert "UNDER-REPLICATED BUCKETS: 0" in admin(c, "status")
    # a node cannot declare a copy complete: only the bucket's primary reports
    from proto.errors import Conflict
    with pytest.raises(Conflict) as e:
        rpc(c, newcomer, "ReportReplicaSynced", {"node_id": newcomer, "bucket": BUCKET, "epoch": bucket(c)["epoch"]})
    assert e.value.kind == "NotPrimary"

    # drain the primary: a replacement joins (syncing) before the primary leaves
    primary = new_ids[0]
    admin(c, "node", "drain", primary)
    done = wait_for(lambda: (b := bucket(c)) and len(b["replicas"]) == 3 and primary not in
                    [r["node_id"] for r in b["replicas"]] and b)
    assert primary not in [r["node_id"] for r in done["replicas"]] and done["syncing"] == []
    assert "1 bucket(s) left" not in admin(c, "status")
    # a new bucket is never placed on the draining node
    s3.create_bucket(Bucket=f"new--{ZONE}--x-s3", CreateBucketConfiguration=DIR_CONFIG)
    assert primary not in [r["node_id"] for r in rpc(c, "admin", "GetBucket", {"name": f"new--{ZONE}--x-s3"})["bucket"]["replicas"]]

    # remove the drained node: forgotten, and refused if it registers again
    admin(c, "node", "remove", primary)
    assert primary not in admin(c, "node", "list")
    from proto.errors import AccessDenied
    with pytest.raises(AccessDenied) as e:
        rpc(c, primary, "RegisterNode", {"node_id": primary, "zone": ZONE, "host": "127.0.0.1", "port": 1,
                                         "capacity_bytes": 10, "free_bytes": 5})
    assert e.value.kind == "NodeRemoved"


def test_admin_iam_commands(c, tmp_path):
    policy = tmp_path / "p.json"
    policy.write_text('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3express:*","Resource":"*"}]}')
    admin(c, "user", "create", "ops-user")
    admin(c, "group", "create", "ops")
    admin(c, "group", "add", "ops", "ops-user")
    arn = __import__("json").loads(admin(c, "policy", "create", "OpsPolicy", str(policy)))["Policy"]["Arn"]
    admin(c, "policy", "attach", arn, "--group", "ops")
    shown = admin(c, "group", "show", "ops")
    assert "ops-user" in shown
    assert '"AttachmentCount": 1' in admin(c, "policy", "show", arn)
    assert "AccessKeyId" in admin(c, "key", "create", "ops-user")
