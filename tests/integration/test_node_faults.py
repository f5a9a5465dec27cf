"""Node failure paths: aborted bodies, a replica down, corrupted data, KMS and coordinator trouble."""

from __future__ import annotations

import random
import socket
import ssl

import pytest
import trio

from node.chunk_codec import HEADER_SIZE, parse_header, seal_chunk
from node.sealed_stream import encode_trailer
from proto import errors
from proto.certs import principal_from_peercert
from proto.config import Endpoint
from tests.integration import node_harness as H

CB = 64 * 1024
BUCKET = H.BUCKET


@pytest.fixture
async def cluster(tmp_path, tls_for):
    async with H.open_cluster(tmp_path, tls_for, chunk_bytes=CB) as c:
        yield c


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def assert_invisible(c, key: str, nodes=range(3)) -> None:
    await c.wait_clean()
    for i in nodes:
        with pytest.raises(errors.NotFound) as ei:
            await c.head(key, node=i)
        assert ei.value.kind == "NoSuchKey"
        assert c.nodes[i].data_files() == [] and c.nodes[i].incoming_files() == []


async def test_body_ending_with_error_stores_nothing(cluster):
    async def body():
        yield blob(3 * CB, 1)  # several chunks reach every replica first
        await trio.sleep(0.05)
        raise errors.InvalidRequest("checksum mismatch", kind="BadDigest")

    with pytest.raises(errors.InvalidRequest) as ei:
        await cluster.client(0).call("PutObject", {"bucket": BUCKET, "key": "bad", "bucket_version": 1, "meta": {}},
                                     body=body())
    assert ei.value.kind == "BadDigest"
    await assert_invisible(cluster, "bad")
    # the nodes are fine afterwards
    await cluster.put("good", b"ok")
    assert (await cluster.get("good", node=2))[1] == b"ok"


async def test_replica_down_fails_the_put_and_nothing_is_visible(cluster):
    await cluster.put("before", b"x")
    cluster.nodes[2].stop()
    await trio.sleep(0.05)
    with pytest.raises(errors.Unavailable) as ei:
        await cluster.put("k", blob(3 * CB, 2))
    assert ei.value.kind == "ReplicationFailed" and "node-3" in ei.value.message

    async def endless():
        yield blob(CB, 3)
        await trio.sleep_forever()

    with trio.fail_after(5), pytest.raises(errors.Unavailable) as ei:  # fails without waiting for the body
        await cluster.client(0).call("PutObject", {"bucket": BUCKET, "key": "k", "bucket_version": 1, "meta": {}},
                                     body=endless())
    assert ei.value.kind == "ReplicationFailed"
    await cluster.wait_clean()
    for i in (0, 1):
        with pytest.raises(errors.NotFound):
            await cluster.head("k", node=i)
        assert len(cluster.nodes[i].data_files()) == 1  # only "before"
    with pytest.raises(errors.Unavailable) as ei:
        await cluster.client(0).call("DeleteObject", {"bucket": BUCKET, "key": "before", "bucket_version": 1})
    assert ei.value.kind == "ReplicationFailed"
    # the primary deletes last: it still has the object (node-2 may not: see node/objects.py)
    assert (await cluster.get("before", node=0))[1] == b"x"


async def test_flipped_byte_is_repaired_from_a_replica_never_bad_data(cluster):
    data = blob(3 * CB, 5)
    await cluster.put("obj", data)
    # node-2: corrupt the first chunk's ciphertext -> read repair from another replica
    (f2,) = cluster.nodes[1].data_files()
    good = f2.read_bytes()
    f2.flip(HEADER_SIZE + 100)
    assert (await cluster.get("obj", node=1))[1] == data
    (f2_new,) = cluster.nodes[1].data_files()
    assert f2_new != f2 and f2_new.read_bytes() == good  # a fresh copy of the same sealed bytes
    # node-3: corrupt the last chunk -> met in the middle of the stream, repaired from a replica,
    # and the stream goes on from the fresh copy: the whole object, right
    (f3,) = cluster.nodes[2].data_files()
    raw = f3.read_bytes()
    offset = 0
    for _ in range(2):
        offset += parse_header(raw[offset:]).sealed_length
    f3.flip(offset + HEADER_SIZE + 7)
    # a range that avoids the bad chunk works there without any repair
    assert (await cluster.get("obj", node=2, rng=[10, 20]))[1] == data[10:21]
    assert (await cluster.get("obj", node=2))[1] == data
    (f3_new,) = cluster.nodes[2].data_files()
    assert f3_new != f3 and f3_new.read_bytes() == raw
    assert (await cluster.get("obj", node=0))[1] == data
    # a read that starts on a bad chunk is repaired from a replica and served right
    (f3,) = cluster.nodes[2].data_files()
    f3.flip(offset + HEADER_SIZE + 9)
    assert (await cluster.get("obj", node=2, rng=[3 * CB - 5, 3 * CB - 1]))[1] == data[-5:]
    assert (await cluster.get("obj", node=2))[1] == data
    # the last chunk damaged on every copy: the stream fails after correct bytes only
    for n in cluster.nodes:
        (f,) = n.data_files()
        f.flip(offset + HEADER_SIZE + 11)
    received = bytearray()
    with pytest.raises(errors.IntegrityError):
        async with cluster.client(2).stream("GetObject", {"bucket": BUCKET, "key": "obj", "bucket_version": 1}) as r:
            async for piece in r.body:
                received += piece
    assert bytes(received) == data[:len(received)] and len(received) <= 2 * CB
    # when every copy is damaged: IntegrityError, never bad bytes
    await cluster.put("only", b"z" * 5000)
    for n in cluster.nodes:
        (f,) = [x for x in n.data_files() if len(x.read_bytes()) < 5000]
        f.flip(HEADER_SIZE + 3)
    for i in range(3):
        with pytest.raises(errors.IntegrityError):
            await cluster.get("only", node=i)


async def test_kms_errors_pass_through_with_their_kind(cluster):
    cluster.coord.add_bucket("broken--use1-az4--x-s3", wrapped=b"not a kms blob" * 4, key_arn=cluster.key_arn)
    with pytest.raises(errors.InvalidRequest) as ei:
        await cluster.put("k", b"data", bucket="broken--use1-az4--x-s3")
    assert ei.value.kind == "InvalidCiphertextException"
    await assert_invisible(cluster, "k")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_kms_unreachable_is_kms_unavailable(tmp_path, tls_for, nursery):
    coord = H.FakeCoordinator(tls_for("coordinator"), ["node-4"])
    chost, cport = await nursery.start(coord.server.serve, "127.0.0.1", 0)
    cfg = H.node_config(tmp_path, tls_for, "node-4", coordinator=Endpoint(chost, cport),
                        kms=Endpoint("127.0.0.1", closed_port()))
    info, _scope = await nursery.start(*H.run_node_task(cfg))
    with trio.fail_after(5):
        await coord.registered.wait()
    coord.add_bucket(BUCKET, wrapped=b"w" * 64, key_arn="arn:aws:kms:us-east-1:000000000000:key/x")
    host, port = info["rpc"].rsplit(":", 1)
    from proto.rpc import open_rpc_pool

    async with open_rpc_pool(tls_for("gateway").client_context()) as pool:
        with pytest.raises(errors.Unavailable) as ei:
            await pool.client(host, int(port), "node-4").call(
                "PutObject", {"bucket": BUCKET, "key": "k", "bucket_version": 1, "meta": {}})
    assert ei.value.kind == "KMSUnavailable"


async def test_node_starts_before_the_coordinator_and_re_registers(tmp_path, tls_for, nursery):
    """The coordinator refuses connections at first; the node serves anyway and registers once
    it is up, then re-registers when the coordinator forgets it (UnknownNode)."""
    coord = H.FakeCoordinator(tls_for("coordinator"), ["node-1"])
    ctx = tls_for("coordinator").server_context()
    up = trio.Event()

    async def accept(tcp):
        if not up.is_set():
            await tcp.aclose()
            return
        stream = trio.SSLStream(tcp, ctx, server_side=True)
        try:
            await stream.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError):
            return
        await coord.server.handle_stream(stream, principal=principal_from_peercert(stream.getpeercert()), peer="t")

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(trio.serve_listeners, accept, listeners)
    cfg = H.node_config(tmp_path, tls_for, "node-1", coordinator=Endpoint("127.0.0.1", port),
                        kms=Endpoint("127.0.0.1", closed_port()))
    info, _scope = await nursery.start(*H.run_node_task(cfg))
    host, nport = info["rpc"].rsplit(":", 1)
    from proto.rpc import open_rpc_pool

    async with open_rpc_pool(tls_for("gateway").client_context()) as pool:
        # serving already: a bucket cannot resolve while the coordinator is down
        with pytest.raises(errors.Unavailable):
            await pool.client(host, int(nport), "node-1").call(
                "HeadObject", {"bucket": BUCKET, "key": "k", "bucket_version": 1})
    await trio.sleep(0.3)
    assert not coord.registered.is_set()
    up.set()
    with trio.fail_after(10):
        await coord.registered.wait()
    assert coord.nodes["node-1"]["host"] == "127.0.0.1" and coord.nodes["node-1"]["port"] == int(nport)
    assert coord.nodes["node-1"]["zone"] == H.ZONE and coord.nodes["node-1"]["capacity_bytes"] == cfg.capacity_bytes
    with trio.fail_after(5):
        while coord.calls["Heartbeat:node-1"] < 2:
            await trio.sleep(0.01)
    del coord.nodes["node-1"]
    with trio.fail_after(5):
        while coord.calls["RegisterNode:node-1"] < 2:
            await trio.sleep(0.01)
    assert "node-1" in coord.nodes


async def test_replica_put_refuses_stale_malformed_or_unfinished_streams(cluster):
    rec = cluster.coord.record(BUCKET)
    start = {"key": "r", "object_id": b"\7" * 16, "key_gen": 1, "chunk_bytes": CB, "last_modified": 1.0,
             "sse_algorithm": "AES256", "content_type": "a/b", "user_meta": {}}
    args = {"bucket_id": rec["bucket_id"], "bucket": BUCKET, "epoch": 1, "meta": start}
    chunk = seal_chunk(b"k" * 32, bucket_id=rec["bucket_id"], object_id=start["object_id"], index=0, last=True,
                       plaintext=b"hello")
    as_primary = cluster.client(1, "node-1")

    async def body(*parts):
        for p in parts:
            yield p

    cluster.coord.buckets[BUCKET]["epoch"] = 2
    with pytest.raises(errors.Conflict) as ei:
        await as_primary.call("ReplicaPut", args, body=body(chunk))
    assert ei.value.kind == "StaleEpoch"
    args["epoch"] = 2
    with pytest.raises(errors.InvalidRequest) as ei:
        await as_primary.call("ReplicaPut", args, body=body(b"garbage" * 10))
    assert ei.value.kind == "InvalidChunkStream"
    with pytest.raises(errors.InvalidRequest) as ei:  # no trailer: never committed
        await as_primary.call("ReplicaPut", args, body=body(chunk))
    assert ei.value.kind == "InvalidChunkStream"
    with pytest.raises(errors.InvalidRequest):  # a trailer that lies about the size
        await as_primary.call("ReplicaPut", args, body=body(chunk, encode_trailer({"size": 6, "etag": "e",
                                                                                   "chunks": 1})))
    with pytest.raises(errors.InvalidRequest) as ei:
        await as_primary.call("ReplicaPut", args)
    assert ei.value.kind == "InvalidChunkStream"
    await assert_invisible(cluster, "r", nodes=[1])
    # the same stream, complete, is committed (the replica never decrypts it)
    assert await as_primary.call("ReplicaPut", args, body=body(chunk, encode_trailer(
        {"size": 5, "etag": "e", "chunks": 1}))) == {}
    assert (await cluster.head("r", node=1))["size"] == 5
    assert await as_primary.call("ReplicaDelete", {"bucket_id": rec["bucket_id"], "bucket": BUCKET, "epoch": 2,
                                                   "key": "r"}) == {}
    await assert_invisible(cluster, "r", nodes=[1])
