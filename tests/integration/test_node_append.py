"""Appends on three real nodes in-process (real KMS, the fake coordinator of node_harness):
every replica holds every run and answers the concatenation; a replica that joins later gets
an appended object by replica sync (re-sealed as one run: same object id, ETag, checksum)."""

from __future__ import annotations

import random

import pytest
import trio

from proto import errors
from tests.integration import node_harness as H

CB = 64 * 1024
BUCKET = H.BUCKET


@pytest.fixture
async def cluster(tmp_path, tls_for):
    async with H.open_cluster(tmp_path, tls_for, chunk_bytes=CB) as c:
        yield c


async def append(c, key: str, data: bytes, offset: int, *, node: int = 0, algo: str = "CRC32") -> dict:
    async def body():
        for i in range(0, len(data), 50_000):
            yield data[i:i + 50_000]

    args = {"bucket": BUCKET, "key": key, "bucket_version": 1, "offset": offset,
            "meta": {"checksum_algorithm": algo}}
    return (await c.client(node).call("AppendObject", args, body=body()))["meta"]


async def test_appends_reach_every_replica(cluster):
    rnd = random.Random(7)
    pieces = [rnd.randbytes(n) for n in (CB + 5, 3, 2 * CB, 0, CB * 3 // 2)]
    data = b""
    for piece in pieces:
        meta = await append(cluster, "a/log", piece, len(data))
        data += piece
        assert meta["size"] == len(data)
    metas = []
    for i in range(3):
        got_meta, got = await cluster.get("a/log", node=i)
        assert got == data, f"node {i}"
        metas.append(got_meta)
        for lo, hi in ((0, 0), (CB, CB + 10), (CB + 3, 4 * CB), (len(data) - 1, len(data) - 1)):
            _, part = await cluster.get("a/log", node=i, rng=[lo, hi])
            assert part == data[lo:hi + 1], (i, lo, hi)
    assert metas[0] == metas[1] == metas[2] and "runs" not in metas[0]
    with pytest.raises(errors.InvalidRequest) as e:
        await append(cluster, "a/log", b"x", len(data) - 1)
    assert e.value.kind == "InvalidWriteOffset"
    with pytest.raises(errors.InvalidRequest) as e:
        await append(cluster, "a/log", b"x", len(data), node=1)  # a replica is not the primary
    assert e.value.kind == "NotPrimary"


async def test_replica_sync_copies_an_appended_object(cluster):
    coord = cluster.coord
    coord.buckets[BUCKET]["replica_ids"] = ["node-1", "node-2"]
    data = b""
    for piece in (b"a" * (CB + 1), b"b" * 10, b"c" * (2 * CB)):
        await append(cluster, "s/obj", piece, len(data))
        data += piece
    want, _ = await cluster.get("s/obj", node=0)
    coord.buckets[BUCKET].update(replica_ids=["node-1", "node-2", "node-3"], epoch=2, version=2)
    started = await cluster.client(0, "coordinator").call("SyncReplica", {"bucket": BUCKET, "epoch": 2,
                                                                          "target": "node-3"})
    assert started["started"]
    with trio.fail_after(10):
        while True:
            try:
                meta, got = await cluster.get("s/obj", node=2)
                break
            except errors.NotFound:
                await trio.sleep(0.02)
    assert got == data
    # the same version, laid out as one run: only the chunk count differs
    assert {k: v for k, v in meta.items() if k != "chunks"} == {k: v for k, v in want.items() if k != "chunks"}
    # appending goes on with the re-sealed copy on node-3
    await append(cluster, "s/obj", b"tail", len(data))
    for i in range(3):
        assert (await cluster.get("s/obj", node=i))[1] == data + b"tail"
