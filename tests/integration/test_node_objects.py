"""Three real nodes in-process, the real KMS, a fake coordinator: the object paths end to end."""

from __future__ import annotations

import hashlib
import random
import urllib.request

import pytest
import trio

from proto import errors
from proto.checksums import new_checksum
from tests.integration import node_harness as H

CB = 64 * 1024
BUCKET = H.BUCKET


@pytest.fixture
async def cluster(tmp_path, tls_for):
    async with H.open_cluster(tmp_path, tls_for, chunk_bytes=CB) as c:
        yield c


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def scrape(c, i: int) -> str:
    url = f"http://{c.nodes[i].info['metrics']}/metrics"
    return await trio.to_thread.run_sync(lambda: urllib.request.urlopen(url, timeout=5).read().decode())


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


@pytest.mark.parametrize("size", [1, CB, CB * 7 // 2, 0])
async def test_put_then_get_from_every_replica(cluster, size):
    data = blob(size, seed=size)
    meta = await cluster.put("dir/obj", data, meta={"content_type": "application/x-test", "user_meta": {"a": "b"}})
    assert meta["size"] == size and meta["etag"] == hashlib.md5(data).hexdigest()
    assert meta["chunks"] == max(1, -(-size // CB)) and meta["chunk_bytes"] == CB
    assert meta["content_type"] == "application/x-test" and meta["user_meta"] == {"a": "b"}
    assert meta["sse_algorithm"] == "AES256" and meta["key_gen"] == 1
    assert "object_id" not in meta
    for i in range(3):
        got_meta, got = await cluster.get("dir/obj", node=i)
        assert got == data, f"node {i}"
        assert got_meta == meta
        assert await cluster.head("dir/obj", node=i) == meta
        assert len(cluster.nodes[i].data_files()) == 1
    assert all(not n.incoming_files() for n in cluster.nodes)


async def test_ranges_read_only_needed_chunks(cluster):
    size = CB * 7 // 2
    data = blob(size, seed=3)
    await cluster.put("r", data)
    cases = [(0, 0), (size - 1, size - 1), (CB - 1, CB), (100, 200_000), (0, size - 1), (CB, 2 * CB - 1)]
    for first, last in cases:
        for node in (0, 2):
            meta, got = await cluster.get("r", node=node, rng=[first, last])
            assert got == data[first:last + 1], (first, last, node)
            assert meta["size"] == size
    before = metric(await scrape(cluster, 1), "onezone_node_chunks_read_total")
    _, got = await cluster.get("r", node=1, rng=[2 * CB + 5, 2 * CB + 10])
    assert got == data[2 * CB + 5:2 * CB + 11]
    assert metric(await scrape(cluster, 1), "onezone_node_chunks_read_total") == before + 1
    for bad in ([5, 4], [0, size], [-1, 3]):
        with pytest.raises(errors.InvalidRequest) as ei:
            await cluster.get("r", rng=bad)
        assert ei.value.kind == "InvalidRange"


async def test_disks_hold_only_ciphertext(cluster):
    marker = b"ONEZONE-PLAINTEXT-MARKER-7f3a"
    # random data (incompressible: stored raw if it were not encrypted) and repetitive data
    data = marker + blob(150_000, 9) + marker + (marker * 5000) + marker
    await cluster.put("secret-object", data)
    for i in range(3):
        assert (await cluster.get("secret-object", node=i))[1] == data
    checked = 0
    for node in cluster.nodes:
        for path in node.data_dir.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert marker not in content, path
                assert cluster.bucket_key not in content, path
                checked += 1
    assert checked >= 6  # index, WAL and a data file per node at least


async def test_head_list_and_delete_everywhere(cluster):
    keys = ["a/1", "a/2", "a/3", "b", "c/x"]
    for k in keys:
        await cluster.put(k, k.encode())
    r = await cluster.client(2).call("ListObjects", {"bucket": BUCKET, "bucket_version": 1})
    assert [o["key"] for o in r["objects"]] == keys and r["truncated"] is False
    assert all("object_id" not in o for o in r["objects"])
    r = await cluster.client(1).call("ListObjects", {"bucket": BUCKET, "bucket_version": 1, "prefix": "a/",
                                                     "start_after": "a/1", "max_keys": 1})
    assert [o["key"] for o in r["objects"]] == ["a/2"] and r["truncated"] is True

    assert await cluster.client(0).call("DeleteObject", {"bucket": BUCKET, "key": "a/2", "bucket_version": 1}) == {}
    for i in range(3):
        with pytest.raises(errors.NotFound) as ei:
            await cluster.head("a/2", node=i)
        assert ei.value.kind == "NoSuchKey"
        with pytest.raises(errors.NotFound):
            await cluster.get("a/2", node=i)
        assert len(cluster.nodes[i].data_files()) == 4
    # deleting a missing key is not an error
    assert await cluster.client(0).call("DeleteObject", {"bucket": BUCKET, "key": "a/2", "bucket_version": 1}) == {}
    text = await scrape(cluster, 2)
    assert metric(text, "onezone_node_objects") == 4
    assert metric(text, "onezone_node_disk_used_bytes") > 0 and metric(text, "onezone_node_disk_free_bytes") > 0


async def test_conditional_writes_and_overwrite(cluster):
    first = await cluster.put("k", b"one", if_none_match=True)
    with pytest.raises(errors.PreconditionFailed) as ei:
        await cluster.put("k", b"two", if_none_match=True)
    assert ei.value.kind == "PreconditionFailed"
    with pytest.raises(errors.PreconditionFailed):
        await cluster.put("k", b"two", if_match='"' + "0" * 32 + '"')
    with pytest.raises(errors.NotFound) as ei:
        await cluster.put("missing", b"x", if_match=first["etag"])
    assert ei.value.kind == "NoSuchKey"
    second = await cluster.put("k", b"two", if_match=f'"{first["etag"]}"')
    assert second["etag"] == hashlib.md5(b"two").hexdigest()
    for i in range(3):
        assert (await cluster.get("k", node=i))[1] == b"two"
        assert len(cluster.nodes[i].data_files()) == 1  # the old version's file is gone
        with pytest.raises(errors.NotFound):
            await cluster.head("missing", node=i)
    await cluster.wait_clean()


async def test_concurrent_writes_to_one_key_converge(cluster):
    results = {}

    async def writer(i):
        results[i] = await cluster.put("hot", blob(CB + i * 1000, seed=100 + i))

    async with trio.open_nursery() as n:
        for i in range(6):
            n.start_soon(writer, i)
    metas = [await cluster.head("hot", node=i) for i in range(3)]
    assert metas[0] == metas[1] == metas[2]  # every replica applied the commits in the same order
    assert metas[0]["etag"] in {m["etag"] for m in results.values()}
    for i in range(3):
        assert len(cluster.nodes[i].data_files()) == 1


async def test_checksum_computed_and_checked(cluster):
    data = blob(100_000, 4)
    want = new_checksum("CRC32")
    want.update(data)
    meta = await cluster.put("c", data, meta={"checksum_algorithm": "CRC32"})
    assert meta["checksum_algorithm"] == "CRC32" and meta["checksum_value"] == want.b64digest()
    assert (await cluster.head("c", node=2))["checksum_value"] == want.b64digest()
    with pytest.raises(errors.InvalidRequest) as ei:
        await cluster.put("c2", data, meta={"checksum_algorithm": "CRC32", "checksum_value": "AAAAAA=="})
    assert ei.value.kind == "BadDigest"
    await cluster.wait_clean()
    for i in range(3):
        with pytest.raises(errors.NotFound):
            await cluster.head("c2", node=i)


async def test_writes_only_on_primary_and_acl(cluster):
    with pytest.raises(errors.InvalidRequest) as ei:
        await cluster.put("x", b"x", node=1)
    assert ei.value.kind == "NotPrimary"
    with pytest.raises(errors.InvalidRequest) as ei:
        await cluster.client(2).call("DeleteObject", {"bucket": BUCKET, "key": "x", "bucket_version": 1})
    assert ei.value.kind == "NotPrimary"
    replica_args = {"bucket_id": b"\0" * 16, "bucket": BUCKET, "epoch": 1, "meta": {}}
    with pytest.raises(errors.AccessDenied):
        await cluster.client(1).call("ReplicaPut", replica_args)  # as gateway
    with pytest.raises(errors.AccessDenied):
        await cluster.client(1).call("ReplicaDelete", dict(replica_args, key="x"))
    with pytest.raises(errors.AccessDenied):
        await cluster.client(0, "node-4").call("PutObject", {"bucket": BUCKET, "key": "x", "bucket_version": 1})
    with pytest.raises(errors.AccessDenied):
        await cluster.client(0, "intruder").call("HeadObject", {"bucket": BUCKET, "key": "x", "bucket_version": 1})
    # a node that is not the bucket's primary may not push replicas
    rec = cluster.coord.record(BUCKET)
    start = {"key": "x", "object_id": b"\1" * 16, "key_gen": 1, "chunk_bytes": CB, "last_modified": 1.0,
             "sse_algorithm": "AES256", "content_type": "a/b", "user_meta": {}}
    with pytest.raises(errors.InvalidRequest) as ei:
        await cluster.client(1, "node-4").call("ReplicaPut", {"bucket_id": rec["bucket_id"], "bucket": BUCKET,
                                                              "epoch": 1, "meta": start})
    assert ei.value.kind == "NotPrimary"
    for i in range(3):
        with pytest.raises(errors.NotFound):
            await cluster.head("x", node=i)
    # a bucket placed elsewhere
    other = "other--use1-az4--x-s3"
    cluster.coord.add_bucket(other, wrapped=b"w" * 64, key_arn=cluster.key_arn, replicas=["node-2", "node-3"])
    with pytest.raises(errors.InvalidRequest) as ei:
        await cluster.head("x", node=0, bucket=other)
    assert ei.value.kind == "NotReplica"
    with pytest.raises(errors.InvalidRequest) as ei:
        await cluster.put("x", b"x", node=0, bucket=other)
    assert ei.value.kind == "NotPrimary"


async def test_bad_input_is_refused_and_changes_nothing(cluster):
    base = {"bucket": BUCKET, "key": "k", "bucket_version": 1}
    bad = [
        ("PutObject", dict(base, bucket_version="1"), "InvalidArgument"),
        ("PutObject", dict(base, key=""), "InvalidArgument"),
        ("PutObject", dict(base, key="k" * 1025), "KeyTooLongError"),
        ("PutObject", dict(base, surprise=1), "InvalidArgument"),
        ("PutObject", dict(base, meta={"owner": "me"}), "InvalidArgument"),
        ("PutObject", dict(base, meta={"user_meta": {"k": "v" * 3000}}), "MetadataTooLarge"),
        ("PutObject", dict(base, if_none_match="yes"), "InvalidArgument"),
        ("GetObject", dict(base, range="0-5"), "InvalidRange"),
        ("HeadObject", dict(base, bucket=7), "InvalidArgument"),
        ("ListObjects", {"bucket": BUCKET, "bucket_version": 1, "max_keys": -1}, "InvalidArgument"),
    ]
    for method, args, kind in bad:
        with pytest.raises(errors.InvalidRequest) as ei:
            if method == "GetObject":
                async with cluster.client(0).stream(method, args):
                    pass
            else:
                await cluster.client(0).call(method, args)
        assert ei.value.kind == kind, (method, args)
    with pytest.raises(errors.NotFound) as ei:
        await cluster.put("k", b"x", bucket="nope--use1-az4--x-s3")
    assert ei.value.kind == "NoSuchBucket"
    r = await cluster.client(0).call("ListObjects", {"bucket": BUCKET, "bucket_version": 1})
    assert r == {"objects": [], "truncated": False}
    assert all(not n.data_files() and not n.incoming_files() for n in cluster.nodes)


async def test_newer_bucket_version_refetches(cluster):
    await cluster.put("v", b"v")
    fetched = cluster.coord.calls["GetBucket"]
    await cluster.head("v", node=0)
    assert cluster.coord.calls["GetBucket"] == fetched  # cached
    cluster.coord.buckets[BUCKET]["version"] = 2
    await cluster.client(0).call("HeadObject", {"bucket": BUCKET, "key": "v", "bucket_version": 2})
    assert cluster.coord.calls["GetBucket"] == fetched + 1
    await cluster.client(0).call("HeadObject", {"bucket": BUCKET, "key": "v", "bucket_version": 2})
    assert cluster.coord.calls["GetBucket"] == fetched + 1
