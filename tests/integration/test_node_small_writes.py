"""Small writes in one message: PutObject's and ReplicaPut's ``data`` argument, and the commit
awaited from the event loop (node/durable.py). Real nodes, real mTLS (node_harness)."""

from __future__ import annotations

import random

import pytest
import trio

from node.chunk_codec import seal_chunk
from node.sealed_stream import encode_trailer
from proto import errors
from tests.integration import node_harness as H

CB = 64 * 1024
BUCKET = H.BUCKET


@pytest.fixture
async def cluster(tmp_path, tls_for):
    async with H.open_cluster(tmp_path, tls_for, chunk_bytes=CB) as c:
        yield c


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def put_whole(c, key: str, data: bytes, **extra):
    args = {"bucket": BUCKET, "key": key, "bucket_version": 1, "meta": {}, "data": data, **extra}
    return (await c.client(0).call("PutObject", args))["meta"]


@pytest.mark.parametrize("size", [0, 5, 4096, 3 * CB + 17, 1024 * 1024 + 10_000])
async def test_whole_body_put_is_on_every_replica(cluster, size):
    # up to WHOLE_REPLICA_BYTES the replicas get one ReplicaPut each; beyond, the fanout streams
    data = blob(size, size)
    meta = await put_whole(cluster, "k", data)
    assert meta["size"] == size
    for node in range(3):
        got_meta, got = await cluster.get("k", node=node)
        assert got == data and got_meta["etag"] == meta["etag"]
    # an overwrite in one message replaces it everywhere, the old version's data goes
    await put_whole(cluster, "k", b"new")
    for node in range(3):
        assert (await cluster.get("k", node=node))[1] == b"new"
        assert len(cluster.nodes[node].data_files()) == 1


async def test_whole_body_put_with_conditions_and_concurrent_writers(cluster):
    await put_whole(cluster, "c", b"one", if_none_match=True)
    with pytest.raises(errors.PreconditionFailed):
        await put_whole(cluster, "c", b"two", if_none_match=True)
    results = []

    async def writer(i: int) -> None:
        results.append(await put_whole(cluster, f"many/{i}", blob(3000, i)))

    async with trio.open_nursery() as nursery:
        for i in range(24):
            nursery.start_soon(writer, i)
    assert len(results) == 24
    for i in range(24):
        for node in range(3):
            assert (await cluster.get(f"many/{i}", node=node))[1] == blob(3000, i)
    assert (await cluster.get("c", node=2))[1] == b"one"


async def test_bad_data_argument_is_refused_and_stores_nothing(cluster):
    async def body():
        yield b"x"

    with pytest.raises(errors.InvalidRequest) as ei:
        await cluster.client(0).call("PutObject", {"bucket": BUCKET, "key": "b", "bucket_version": 1, "meta": {},
                                                   "data": b"abc"}, body=body())
    assert ei.value.kind == "InvalidArgument" and "mutually exclusive" in ei.value.message
    for bad in ("text", b"x" * (1024 * 1024 + 64 * 1024 + 1)):
        with pytest.raises(errors.InvalidRequest) as ei:
            await put_whole(cluster, "b", bad)
        assert ei.value.kind == "InvalidArgument"
    await cluster.wait_clean()
    for node in range(3):
        with pytest.raises(errors.NotFound):
            await cluster.head("b", node=node)


async def test_whole_body_put_with_a_replica_down_fails_and_the_live_copies_agree(cluster):
    # One message per replica: the replicas that took it commit while the primary commits, so a
    # write whose replication fails (here the coordinator cannot exclude the dead replica) has an
    # indeterminate outcome, as any 5xx: the live copies hold the same version, never a torn one.
    await put_whole(cluster, "before", b"x")
    cluster.nodes[2].stop()
    await trio.sleep(0.05)
    data = blob(5000)
    with pytest.raises(errors.Unavailable) as ei:
        await put_whole(cluster, "k", data)
    assert ei.value.kind == "ReplicationFailed" and "node-3" in ei.value.message
    await cluster.wait_clean()
    copies = [(await cluster.get("k", node=i)) for i in (0, 1)]
    assert copies[0][1] == copies[1][1] == data and copies[0][0]["etag"] == copies[1][0]["etag"]
    assert (await cluster.get("before", node=1))[1] == b"x"


async def test_replica_put_whole_is_checked_like_a_stream(cluster):
    rec = cluster.coord.record(BUCKET)
    start = {"key": "r", "object_id": b"\7" * 16, "key_gen": 1, "chunk_bytes": CB, "last_modified": 1.0,
             "sse_algorithm": "AES256", "content_type": "a/b", "user_meta": {}}
    args = {"bucket_id": rec["bucket_id"], "bucket": BUCKET, "epoch": 1, "meta": start}
    chunk = seal_chunk(b"k" * 32, bucket_id=rec["bucket_id"], object_id=start["object_id"], index=0, last=True,
                       plaintext=b"hello")
    as_primary = cluster.client(1, "node-1")
    cluster.coord.buckets[BUCKET]["epoch"] = 2  # the replica fetches the record (epoch 2) on its first call
    with pytest.raises(errors.Conflict) as ei:
        await as_primary.call("ReplicaPut", {**args, "data": chunk + encode_trailer({"size": 5, "etag": "e", "chunks": 1})})
    assert ei.value.kind == "StaleEpoch"
    args["epoch"] = 2
    for bad in (chunk, chunk + encode_trailer({"size": 6, "etag": "e", "chunks": 1}), b"garbage" * 10):
        with pytest.raises(errors.InvalidRequest) as ei:
            await as_primary.call("ReplicaPut", {**args, "data": bad})
        assert ei.value.kind == "InvalidChunkStream"
    await cluster.wait_clean()
    with pytest.raises(errors.NotFound):
        await cluster.head("r", node=1)
    assert await as_primary.call("ReplicaPut", {**args, "data": chunk + encode_trailer(
        {"size": 5, "etag": "e", "chunks": 1})}) == {}
    assert (await cluster.head("r", node=1))["size"] == 5
    with pytest.raises(errors.AccessDenied):  # the gateway may not call replica methods
        await cluster.client(1).call("ReplicaPut", {**args, "data": b""})
