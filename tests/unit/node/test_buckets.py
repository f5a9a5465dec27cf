"""node/buckets.py: record validation, TTL, version/epoch refetch, shared fetches."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.buckets import BucketCache, BucketRecord
from proto import errors


def record(version: int = 1, epoch: int = 1, **kw) -> dict:
    rec = {"name": "b--use1-az4--x-s3", "bucket_id": b"i" * 16, "arn": "arn:b", "zone": "use1-az4",
           "sse_algorithm": "AES256", "kms_key_arn": None, "bucket_key_enabled": True,
           "keys": [{"gen": 1, "kms_key_arn": "arn:k", "wrapped": b"w"}], "active_gen": 1,
           "replicas": [{"node_id": "node-1", "host": "h1", "port": 1}, {"node_id": "node-2", "host": "h2", "port": 2}],
           "epoch": epoch, "version": version}
    rec.update(kw)
    return rec


class Coordinator:
    def __init__(self):
        self.doc = record()
        self.calls = 0
        self.gate: trio.Event | None = None

    async def __call__(self, name):
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if name != self.doc["name"]:
            raise errors.NotFound("nope", kind="NoSuchBucket")
        return dict(self.doc)


def test_record_view_and_validation():
    rec = BucketRecord.from_wire(record())
    assert rec.primary.node_id == "node-1" and rec.has_replica("node-2") and not rec.has_replica("node-3")
    assert [r.node_id for r in rec.peers("node-1")] == ["node-2"]
    assert rec.key(1).wrapped == b"w" and rec.key(2) is None
    assert "w'" not in repr(rec.key(1))  # wrapped keys stay out of reprs
    for bad in (record(bucket_id="str"), record(replicas=[]), record(active_gen=9), record(epoch=True),
                {k: v for k, v in record().items() if k != "keys"}):
        with pytest.raises(errors.Internal):
            BucketRecord.from_wire(bad)


async def test_ttl_version_and_epoch_refetch():
    coord, now = Coordinator(), [0.0]
    cache = BucketCache(coord, ttl_s=30, clock=lambda: now[0])
    name = coord.doc["name"]
    assert (await cache.get(name)).version == 1
    await cache.get(name, min_version=1)
    assert coord.calls == 1
    coord.doc = record(version=2, epoch=3)
    assert (await cache.get(name, min_version=2)).version == 2 and coord.calls == 2
    await cache.get(name, min_epoch=3)
    assert coord.calls == 2
    now[0] += 31
    await cache.get(name)
    assert coord.calls == 3
    with pytest.raises(errors.NotFound) as ei:
        await cache.get("other")
    assert ei.value.kind == "NoSuchBucket"


async def test_concurrent_misses_share_one_fetch():
    coord = Coordinator()
    coord.gate = trio.Event()
    cache = BucketCache(coord, ttl_s=30)
    async with trio.open_nursery() as n:
        for _ in range(20):
            n.start_soon(cache.get, coord.doc["name"])
        await trio.testing.wait_all_tasks_blocked()
        coord.gate.set()
    assert coord.calls == 1
