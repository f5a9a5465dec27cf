"""Stale-copy collection against the real coordinator (in-process, mutual TLS): the
``GetBucketsById`` contract (ACL, limits, answers), and the node's collector on a real store:
a copy the node no longer serves goes after the grace period and only then, a copy it still
serves never goes, a write in flight defers the collection, and an unreachable coordinator
deletes nothing."""

from __future__ import annotations

import socket

import pytest
import trio
from prometheus_client import CollectorRegistry

from node.stale_collector import StaleCollector
from node.store import BucketFenced, ObjectStore
from proto import errors
from tests.integration.test_coordinator_rpc import ALICE, ZONE, cluster, kms, split  # noqa: F401 (fixtures)

NODES = ("node-1", "node-2", "node-3", "node-4")


async def setup(cluster):
    cl = cluster.clients(*NODES, "admin", "gateway")
    for n in NODES:
        await cluster.register(cl[n], n)
    b = (await cl["admin"].call("CreateBucket", {"name": f"gc--{ZONE}--x-s3", "owner": ALICE}))["bucket"]
    members = [r["node_id"] for r in b["replicas"]]
    outsider = next(n for n in NODES if n not in members)
    return cl, b, members, outsider


def fill(store: ObjectStore, bucket_id: bytes, n: int, size: int = 100) -> None:
    for i in range(n):
        oid = (i + 1).to_bytes(16, "big")
        f = store.create_incoming(bucket_id, oid)
        f.write(bytes([i % 256]) * size)
        f.publish()
        store.commit(bucket_id, f"k{i}", oid, size, b"m")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def collector(store, client, node_id, clock, grace_s=10.0):
    return StaleCollector(store, client, node_id=node_id, grace_s=grace_s, interval_s=1.0, rate_objects_per_s=0,
                          registry=CollectorRegistry(), clock=clock)


async def test_get_buckets_by_id_contract(cluster):
    cl, b, members, outsider = await setup(cluster)
    gone = b"\x01" * 16
    r = await cl[members[0]].call("GetBucketsById", {"node_id": members[0], "bucket_ids": [b["bucket_id"], gone]})
    assert r["catalog_buckets"] == 1
    assert r["buckets"] == [{"bucket_id": b["bucket_id"], "exists": True, "name": b["name"], "epoch": b["epoch"],
                             "member": True, "syncing": False}, {"bucket_id": gone, "exists": False}]
    r = await cl[outsider].call("GetBucketsById", {"node_id": outsider, "bucket_ids": [b["bucket_id"]]})
    assert r["buckets"][0]["member"] is False
    with pytest.raises(errors.AccessDenied):  # a node asks only about itself
        await cl[outsider].call("GetBucketsById", {"node_id": members[0], "bucket_ids": [gone]})
    for principal in ("gateway", "admin"):  # nodes only
        with pytest.raises(errors.AccessDenied):
            await cl[principal].call("GetBucketsById", {"node_id": outsider, "bucket_ids": [gone]})
    for bad in ([], [gone] * 257, ["text"], [b""], [b"x" * 65], "x"):
        with pytest.raises(errors.InvalidRequest) as e:
            await cl[outsider].call("GetBucketsById", {"node_id": outsider, "bucket_ids": bad})
        assert e.value.kind == "InvalidArgument"
    with pytest.raises(errors.InvalidRequest):
        await cl[outsider].call("GetBucketsById", {"node_id": outsider, "bucket_ids": [gone], "extra": 1})


async def test_collects_only_what_the_node_no_longer_serves(cluster, tmp_path):
    cl, b, members, outsider = await setup(cluster)
    gone = b"\x02" * 16  # a bucket the catalog never had (deleted, or recreated with a new id)
    clock = Clock()
    kept_store = ObjectStore.open(tmp_path / "member")
    store = ObjectStore.open(tmp_path / "outsider")
    try:
        fill(kept_store, b["bucket_id"], 5)
        fill(store, b["bucket_id"], 250)  # several batches
        fill(store, gone, 3, size=2 * 1024 * 1024)  # blob files
        assert len(list((tmp_path / "outsider" / "segments").glob("blob-*"))) == 3
        member_gc = collector(kept_store, cl[members[0]], members[0], clock)
        gc = collector(store, cl[outsider], outsider, clock)
        for t in (0.0, 5.0, 9.9):  # inside the grace period: nothing goes
            clock.now = t
            assert await gc.pass_once() == 0
            assert await member_gc.pass_once() == 0
        assert store.bucket_ids() == sorted([b["bucket_id"], gone])
        assert gc.metrics.pending._value.get() == 2

        # a write in flight to the bucket defers its collection; the other one goes
        incoming = store.create_incoming(b["bucket_id"], b"\xff" * 16)
        clock.now = 10.0
        assert await gc.pass_once() == 1
        assert store.bucket_ids() == [b["bucket_id"]]
        assert store.bucket_usage(gone) == (0, 0)
        assert list((tmp_path / "outsider" / "segments").glob("blob-*")) == []
        incoming.abort()
        clock.now = 11.0
        assert await gc.pass_once() == 1
        assert store.bucket_ids() == [] and store.object_count == 0
        assert gc.metrics.objects._value.get() == 253 and gc.metrics.buckets._value.get() == 2
        assert gc.metrics.bytes._value.get() >= 3 * 2 * 1024 * 1024
        assert gc.metrics.pending._value.get() == 0
        assert not store.fenced(b["bucket_id"])

        for t in (100.0, 1000.0):  # the member keeps its copy, however long
            clock.now = t
            assert await member_gc.pass_once() == 0
        assert kept_store.bucket_usage(b["bucket_id"])[0] == 5
    finally:
        store.close()
        kept_store.close()
    reopened = ObjectStore.open(tmp_path / "outsider")  # the collection left a consistent store
    try:
        assert reopened.bucket_ids() == [] and reopened.recovery.orphans_removed == 0
    finally:
        reopened.close()


async def test_unreachable_coordinator_deletes_nothing(cluster, tmp_path):
    cl, b, members, outsider = await setup(cluster)
    clock = Clock()
    store = ObjectStore.open(tmp_path / "outsider")
    try:
        fill(store, b["bucket_id"], 4)
        gc = collector(store, cl[outsider], outsider, clock)
        assert await gc.pass_once() == 0  # first check: suspected
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        gc.coordinator = cluster.pools[outsider].client("127.0.0.1", dead_port, "coordinator")
        clock.now = 100.0
        with pytest.raises(errors.RpcError):
            await gc.pass_once()
        assert store.bucket_usage(b["bucket_id"])[0] == 4
        # the run loop logs and keeps going; still nothing deleted
        with trio.move_on_after(0.5):
            gc._interval_s = 0.05
            await gc.run()
        assert store.bucket_usage(b["bucket_id"])[0] == 4
    finally:
        store.close()


async def test_fence_refuses_writes_and_replica_calls(tmp_path):
    store = ObjectStore.open(tmp_path / "s")
    try:
        bid = b"\x03" * 16
        f = store.create_incoming(bid, b"\x01" * 16)
        assert not store.fence(bid)  # a write in flight
        f.abort()
        assert store.fence(bid)
        with pytest.raises(BucketFenced):
            store.create_incoming(bid, b"\x02" * 16)
        store.create_incoming(b"\x04" * 16, b"\x02" * 16).abort()  # other buckets are not affected
        store.unfence(bid)
        store.create_incoming(bid, b"\x02" * 16).abort()
    finally:
        store.close()
