"""One repair path and primary failover, end to end with real processes (SIGKILL, restarts, real
boto3): every replica the coordinator adds gets its copy from the primary (``SyncReplica``) and
leaves ``syncing`` only when the primary reports the copy complete; a dead primary hands over to
an in-sync replica and writes resume; a drain moves replicas off through the same path; a node
that missed writes catches up. Every object is read back byte for byte from every replica."""

import random
import subprocess
import sys
import time

import pytest
import trio

from onezone.cluster import LocalCluster
from proto import errors as rpc_errors
from proto.rpc import open_rpc_pool
from proto.settings import TlsConfig
from tests.cluster.conftest import client

pytestmark = [pytest.mark.cluster, pytest.mark.fault]

ZONE = "use1-az4"
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": ZONE},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}
FAST = {"heartbeat_interval_s": 0.3, "suspect_after_s": 1.0, "down_after_s": 1.5,
        "replace_after_s": 1.0, "reconcile_interval_s": 0.3}


def make_cluster(tmp_path, nodes, **coordinator):
    c = LocalCluster(tmp_path / "onezone-data", nodes=nodes, port=0,
                     coordinator_options={**FAST, **coordinator}, gateway_options={"bucket_cache_s": 1.0})
    c.start()
    return c


@pytest.fixture
def c5(tmp_path):
    c = make_cluster(tmp_path, 5)
    yield c
    c.stop()


@pytest.fixture
def c3(tmp_path):
    c = make_cluster(tmp_path, 3, replace_after_s=300.0)  # a node that comes back is not replaced first
    yield c
    c.stop()


def rpc(c, principal, target, method, args, *, stream=False, timeout=10):
    certs = c.data_dir / "certs"
    tls = TlsConfig(ca=certs / "ca.pem", cert=certs / f"{principal}.pem", key=certs / f"{principal}.key")
    host, _, port = c.daemons[target].info["rpc"].rpartition(":")

    async def go():
        async with open_rpc_pool(tls.client_context(), default_timeout_s=timeout) as pool:
            cl = pool.client(host, int(port), target)
            if not stream:
                return await cl.call(method, args)
            async with cl.stream(method, args) as reply:
                return reply.result, b"".join([p async for p in reply.body])
    try:
        return trio.run(go)
    except BaseExceptionGroup as group:  # the pool's nursery wraps the call's error
        leaf = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None


def record(c, name):
    return rpc(c, "admin", "coordinator", "GetBucket", {"name": name})["bucket"]


def ids(rec):
    return [r["node_id"] for r in rec["replicas"]]


def wait_for(pred, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def settled(c, name, want=3, without=()):
    """The record once it has ``want`` in-sync replicas, none of ``without``."""
    def ok():
        rec = record(c, name)
        return rec if (len(rec["replicas"]) == want and not rec["syncing"]
                       and not set(ids(rec)) & set(without)) else None
    return wait_for(ok, what=f"{name} back to {want} in-sync replicas")


def read_from(c, node, name, key, version):
    _, data = rpc(c, "gateway", node, "GetObject", {"bucket": name, "key": key, "bucket_version": version},
                  stream=True)
    return data


def fill(s3, name, n, seed, prefix="obj"):
    rng = random.Random(seed)
    objects = {}
    for i in range(n):
        size = rng.choice([0, 100, 5000, 70_000, 1_500_000])  # empty, inline, multi-chunk
        objects[f"{prefix}/{i:03d}"] = rng.randbytes(size)
    for key, data in objects.items():
        s3.put_object(Bucket=name, Key=key, Body=data)
    return objects


def admin(c, *args):
    r = subprocess.run([sys.executable, "-m", "onezone", "admin", *args, "--data-dir", str(c.data_dir)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_node_killed_for_good_is_rebuilt_and_every_replica_serves_every_object(c5):
    c = c5
    s3 = client(c, "s3")
    name = f"rebuild--{ZONE}--x-s3"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration=DIR_CONFIG)
    objects = fill(s3, name, 24, seed=1)
    before = record(c, name)
    victim = ids(before)[1]
    c.kill(victim)  # SIGKILL, never restarted
    after = settled(c, name, without=(victim,))
    newcomer = next(n for n in ids(after) if n not in ids(before))
    assert after["epoch"] > before["epoch"] and ids(after)[0] == ids(before)[0]
    log = c.daemons[ids(after)[0]].log_path.read_text()
    assert f"event=sync_reported bucket={name} target={newcomer}" in log  # the primary reported, no one else
    for node in ids(after):  # every replica, the newcomer included, byte for byte
        for key, data in objects.items():
            assert read_from(c, node, name, key, after["version"]) == data, (node, key)
    # the old replicas go away one by one: the newcomer alone still serves everything
    for old in [n for n in ids(after) if n != newcomer]:
        c.kill(old)
        for key, data in objects.items():
            assert s3.get_object(Bucket=name, Key=key)["Body"].read() == data, (old, key)


def test_primary_killed_writes_resume_within_seconds(c5):
    c = c5
    s3 = client(c, "s3")
    name = f"failover--{ZONE}--x-s3"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration=DIR_CONFIG)
    objects = fill(s3, name, 10, seed=2)
    before = record(c, name)
    primary = ids(before)[0]
    c.kill(primary)
    t0 = time.monotonic()
    s3.put_object(Bucket=name, Key="after-failover", Body=b"written by the new primary")  # the gateway retries
    resumed = time.monotonic() - t0
    print(f"writes resumed {resumed:.2f} s after the primary was killed")
    assert resumed < 8.0
    objects["after-failover"] = b"written by the new primary"
    rec = record(c, name)
    assert ids(rec)[0] in ids(before)[1:] and ids(rec)[0] not in before["syncing"]  # an in-sync replica
    s3.delete_object(Bucket=name, Key="obj/000")
    del objects["obj/000"]
    rec = settled(c, name, without=(primary,))
    for node in ids(rec):
        for key, data in objects.items():
            assert read_from(c, node, name, key, rec["version"]) == data, (node, key)
        with pytest.raises(rpc_errors.NotFound):
            read_from(c, node, name, "obj/000", rec["version"])
    for key, data in objects.items():
        assert s3.get_object(Bucket=name, Key=key)["Body"].read() == data


def test_drain_moves_replicas_through_the_repair_path(c5):
    c = c5
    s3 = client(c, "s3")
    names = [f"drain{i}--{ZONE}--x-s3" for i in range(3)]
    contents = {}
    for i, name in enumerate(names):
        s3.create_bucket(Bucket=name, CreateBucketConfiguration=DIR_CONFIG)
        contents[name] = fill(s3, name, 6, seed=10 + i)
    holding = {}
    for name in names:
        for n in ids(record(c, name)):
            holding[n] = holding.get(n, 0) + 1
    drained = max(holding, key=lambda n: holding[n])
    admin(c, "node", "drain", drained)
    status = admin(c, "status")
    assert drained in status.split("DRAINING / REMOVED:")[1]
    for name in names:
        settled(c, name, without=(drained,))
    status = admin(c, "status")
    assert f"{drained} (0 bucket(s) left)" in status and "UNDER-REPLICATED BUCKETS: 0" in status
    for name in names:
        rec = record(c, name)
        for node in ids(rec):
            for key, data in contents[name].items():
                assert read_from(c, node, name, key, rec["version"]) == data, (name, node, key)
    c.kill(drained)  # nothing depends on it any more
    for name in names:
        for key, data in contents[name].items():
            assert s3.get_object(Bucket=name, Key=key)["Body"].read() == data


def test_node_restarted_after_missing_writes_catches_up(c3):
    c = c3
    s3 = client(c, "s3")
    name = f"catchup--{ZONE}--x-s3"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration=DIR_CONFIG)
    objects = fill(s3, name, 8, seed=3)
    away = ids(record(c, name))[2]
    c.kill(away)
    missed = fill(s3, name, 8, seed=4, prefix="missed")  # the first write drops it from the set
    s3.delete_object(Bucket=name, Key="obj/001")
    del objects["obj/001"]
    s3.put_object(Bucket=name, Key="obj/002", Body=b"overwritten while away")
    objects["obj/002"] = b"overwritten while away"
    assert away not in ids(record(c, name))
    c.restart(away)
    rec = settled(c, name)
    assert away in ids(rec)  # back in the set, copied by the primary, in sync
    for key, data in {**objects, **missed}.items():
        assert read_from(c, away, name, key, rec["version"]) == data, key
    with pytest.raises(rpc_errors.NotFound):
        read_from(c, away, name, "obj/001", rec["version"])


def set_node_option(c, node, line):
    """Rewrite a node's TOML with one more top-level setting (before its [tls] table)."""
    cfg = c.daemons[node].config
    key = line.split("=")[0].strip()
    head, _, rest = cfg.read_text().partition("\n")
    rest = "\n".join(x for x in rest.split("\n") if x.split("=")[0].strip() != key)
    cfg.write_text(f"{head}\n{line}\n{rest}")


def test_full_node_refuses_writes_clearly_and_is_no_longer_placed_on(tmp_path):
    c = make_cluster(tmp_path, 4)
    try:
        s3 = client(c, "s3")
        name = f"full--{ZONE}--x-s3"
        s3.create_bucket(Bucket=name, CreateBucketConfiguration=DIR_CONFIG)
        objects = fill(s3, name, 6, seed=5)
        primary = ids(record(c, name))[0]
        # the primary's disk is "full": a reserve larger than the disk (nothing is really filled)
        set_node_option(c, primary, "reserve_bytes = 1000000000000000")
        c.restart(primary)
        with pytest.raises(Exception) as e:
            s3.put_object(Bucket=name, Key="refused", Body=b"x" * 1000)
        err = e.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 503 and err["Error"]["Code"] == "SlowDown"
        assert "out of disk space" in err["Error"]["Message"] and primary in err["Error"]["Message"]
        nodes = {n["node_id"]: n for n in rpc(c, "admin", "coordinator", "ListNodes", {})["nodes"]}
        wait_for(lambda: {n["node_id"]: n for n in rpc(c, "admin", "coordinator", "ListNodes", {})["nodes"]}
                 [primary]["free_bytes"] == 0, what="the full node's heartbeat")
        for i in range(4):  # placement skips the full node
            other = f"new{i}--{ZONE}--x-s3"
            s3.create_bucket(Bucket=other, CreateBucketConfiguration=DIR_CONFIG)
            assert primary not in ids(record(c, other)), other
        with pytest.raises(Exception):
            s3.head_object(Bucket=name, Key="refused")  # nothing was stored
        for key, data in objects.items():  # reads go on
            assert s3.get_object(Bucket=name, Key=key)["Body"].read() == data
        # space again (the reserve lowered): the store is intact and takes writes
        set_node_option(c, primary, "reserve_bytes = 0")
        c.restart(primary)
        assert "event=store_open" in c.daemons[primary].log_path.read_text()
        assert nodes[primary]["capacity_bytes"] > 0
        s3.put_object(Bucket=name, Key="accepted", Body=b"y" * 1000)
        rec = record(c, name)
        for key, data in {**objects, "accepted": b"y" * 1000}.items():
            assert read_from(c, primary, name, key, rec["version"]) == data
    finally:
        c.stop()
