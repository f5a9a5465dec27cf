"""Repair of an appended object's later runs, on three real nodes in-process (real KMS, real
mTLS, the fake coordinator of node_harness): a bit flipped in the second (last) run's extent on
one replica's segment file is repaired from another replica's copy of that same extent, by the
read that meets it (which is then served the right bytes, even mid-stream) and by the scrubber
on its own; ``ReplicaFetch`` serves one extent of a version and refuses any other."""

from __future__ import annotations

import random
import sqlite3
import urllib.request
import zlib

import pytest
import trio

from node.chunk_codec import HEADER_SIZE, parse_header
from node.segments import FILE_HEADER_SIZE, KIND_BLOB, KIND_LOG, segment_name
from proto import errors
from tests.integration import node_harness as H

CB = 64 * 1024
BUCKET = H.BUCKET
RUN1 = random.Random(1).randbytes(CB + 5)        # two chunks
RUN2 = random.Random(2).randbytes(2 * CB + 7)    # three chunks
DATA = RUN1 + RUN2


async def append(c, key: str, data: bytes, offset: int) -> dict:
    async def body():
        for i in range(0, len(data), 50_000):
            yield data[i:i + 50_000]

    args = {"bucket": BUCKET, "key": key, "bucket_version": 1, "offset": offset, "meta": {}}
    return (await c.client(0).call("AppendObject", args, body=body()))["meta"]


async def two_runs(c, key: str = "log") -> None:
    await append(c, key, RUN1, 0)
    await append(c, key, RUN2, len(RUN1))


def run_extent(node: H.NodeHandle) -> tuple[bytes, H.ExtentFile, int]:
    """(extent id, file, recorded crc32) of the one appended run a node holds."""
    db = sqlite3.connect(f"file:{node.data_dir / 'index.db'}?mode=ro", uri=True)
    try:
        (ext_id,), = db.execute("SELECT extent_id FROM runs").fetchall()
        seq, off, n, crc = db.execute("SELECT seq, offset, length, crc FROM extents WHERE object_id = ?",
                                      (ext_id,)).fetchone()
    finally:
        db.close()
    kind = KIND_BLOB if off == FILE_HEADER_SIZE else KIND_LOG
    return bytes(ext_id), H.ExtentFile(node.data_dir / "segments" / segment_name(kind, seq), off, n), crc


def chunk_offset(raw: bytes, index: int) -> int:
    offset = 0
    for _ in range(index):
        offset += parse_header(raw[offset:]).sealed_length
    return offset


def metric(node: H.NodeHandle, name: str) -> float:
    text = urllib.request.urlopen(f"http://{node.info['metrics']}/metrics").read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


@pytest.fixture
async def cluster(tmp_path, tls_for):
    async with H.open_cluster(tmp_path, tls_for, chunk_bytes=CB) as c:
        yield c


async def test_read_meeting_a_damaged_later_run_is_served_after_repair(cluster):
    await two_runs(cluster)
    node = cluster.nodes[1]
    ext_id, f, crc = run_extent(node)
    good = f.read_bytes()
    assert zlib.crc32(good) == crc
    f.flip(chunk_offset(good, 1) + HEADER_SIZE + 100)  # the middle chunk of the second run
    # a whole read meets it mid-stream (the first run was served already): right bytes throughout
    assert (await cluster.get("log", node=1))[1] == DATA
    ext_id2, f2, crc2 = run_extent(node)
    assert ext_id2 == ext_id and crc2 == crc and f2 != f and f2.read_bytes() == good  # a fresh copy
    assert await trio.to_thread.run_sync(metric, node, "onezone_node_read_repairs_total") == 1
    # a range that starts in the damaged run (its first chunk is read before the call returns)
    node3 = cluster.nodes[2]
    _, f3, _ = run_extent(node3)
    raw = f3.read_bytes()
    f3.flip(chunk_offset(raw, 2) + HEADER_SIZE + 3)  # the last chunk of the object
    lo = len(DATA) - 10
    assert (await cluster.get("log", node=2, rng=[lo, len(DATA) - 1]))[1] == DATA[lo:]
    assert run_extent(node3)[1].read_bytes() == raw
    assert (await cluster.get("log", node=2))[1] == DATA
    # the other runs and replicas were left alone
    assert run_extent(cluster.nodes[0])[1].read_bytes() == good == raw


async def test_every_copy_of_a_run_damaged_fails_the_read_never_bad_bytes(cluster):
    await two_runs(cluster)
    for node in cluster.nodes:
        _, f, _ = run_extent(node)
        f.flip(HEADER_SIZE + 9)  # the first chunk of the second run, everywhere
    for i in range(3):
        received = bytearray()
        with pytest.raises(errors.IntegrityError):
            async with cluster.client(i).stream("GetObject", {"bucket": BUCKET, "key": "log",
                                                              "bucket_version": 1}) as r:
                async for piece in r.body:
                    received += piece
        assert bytes(received) == DATA[:len(received)] and len(received) <= len(RUN1)
        # the first run is intact: a range inside it is served
        assert (await cluster.get("log", node=i, rng=[5, CB + 4]))[1] == DATA[5:CB + 5]


async def test_replica_fetch_serves_one_extent_of_the_version(cluster):
    await two_runs(cluster)
    ext_id, f, crc = run_extent(cluster.nodes[1])
    good = f.read_bytes()
    db = sqlite3.connect(f"file:{cluster.nodes[1].data_dir / 'index.db'}?mode=ro", uri=True)
    try:
        (object_id,), = db.execute("SELECT object_id FROM objects").fetchall()
    finally:
        db.close()
    object_id = bytes(object_id)
    peer = cluster.client(1, "node-1")  # node-1 asks node-2, as a repair does
    base = {"bucket_id": cluster.coord.buckets[BUCKET]["bucket_id"], "bucket": BUCKET, "key": "log",
            "object_id": object_id}

    async def fetch(**extra) -> tuple[dict, bytes]:
        async with peer.stream("ReplicaFetch", {**base, **extra}) as r:
            body = b"".join([p async for p in r.body])
        return r.result, body

    meta, body = await fetch(extent_id=ext_id)
    assert body == good and meta == {"size": len(good), "crc": crc}
    meta, first = await fetch()  # the version's own (first) extent, as before
    assert zlib.crc32(first) == meta["crc"] and first != good
    assert (await fetch(extent_id=object_id))[1] == first
    for bad in (b"short", "not-bytes", 7):
        with pytest.raises(errors.InvalidRequest) as ei:
            await fetch(extent_id=bad)
        assert ei.value.kind == "InvalidArgument"
    with pytest.raises(errors.NotFound) as ei:  # not an extent this version owns
        await fetch(extent_id=bytes(16))
    assert ei.value.kind == "NoSuchKey"
    with pytest.raises(errors.NotFound):  # another version (object id) of the key
        await fetch(extent_id=ext_id, object_id=bytes(16))
    # the damaged copy is not served
    f.flip(HEADER_SIZE + 1)
    with pytest.raises(errors.IntegrityError):
        await fetch(extent_id=ext_id)


async def test_scrubber_repairs_a_damaged_later_run_on_its_own(tmp_path, tls_for):
    async with H.open_cluster(tmp_path, tls_for, chunk_bytes=CB,
                              node_options={"scrub_rate_bytes_per_s": 1e9, "scrub_pause_s": 0.05}) as c:
        await two_runs(c)
        node = c.nodes[2]
        ext_id, f, crc = run_extent(node)
        good = f.read_bytes()
        f.flip(chunk_offset(good, 2) + HEADER_SIZE + 11)  # the object's last chunk
        with trio.fail_after(10):
            while run_extent(node)[1] == f:  # no read: the scrubber finds and repairs it
                await trio.sleep(0.02)
        ext_id2, f2, crc2 = run_extent(node)
        assert (ext_id2, crc2) == (ext_id, crc) and f2.read_bytes() == good
        assert await trio.to_thread.run_sync(metric, node, "onezone_node_scrub_bad_extents_total") >= 1
        assert await trio.to_thread.run_sync(metric, node, "onezone_node_read_repairs_total") == 1
        assert (await c.get("log", node=2))[1] == DATA


async def test_a_peer_holding_the_version_as_one_run_is_skipped(cluster):
    """A replica sync re-seals a multi-run object as one run: that copy has no such extent
    (NoSuchKey), and a repair goes to a replica that has it."""
    coord = cluster.coord
    coord.buckets[BUCKET]["replica_ids"] = ["node-1", "node-2"]
    await two_runs(cluster)
    coord.buckets[BUCKET].update(replica_ids=["node-1", "node-3", "node-2"], epoch=2, version=2)
    await cluster.client(0, "coordinator").call("SyncReplica", {"bucket": BUCKET, "epoch": 2, "target": "node-3"})
    with trio.fail_after(10):
        while True:
            try:
                assert (await cluster.get("log", node=2))[1] == DATA
                break
            except errors.NotFound:
                await trio.sleep(0.02)
    ext_id, f, _ = run_extent(cluster.nodes[1])
    db = sqlite3.connect(f"file:{cluster.nodes[1].data_dir / 'index.db'}?mode=ro", uri=True)
    try:
        (object_id,), = db.execute("SELECT object_id FROM objects").fetchall()
    finally:
        db.close()
    with pytest.raises(errors.NotFound) as ei:
        async with cluster.client(2, "node-1").stream("ReplicaFetch", {
                "bucket_id": coord.buckets[BUCKET]["bucket_id"], "bucket": BUCKET, "key": "log",
                "object_id": bytes(object_id), "extent_id": ext_id}) as r:
            async for _ in r.body:
                pass
    assert ei.value.kind == "NoSuchKey"
    # the primary's peers in set order: node-3 (one run: skipped), then node-2
    ext_id, f, _ = run_extent(cluster.nodes[0])
    good = f.read_bytes()
    f.flip(HEADER_SIZE + 50)
    assert (await cluster.get("log", node=0))[1] == DATA
    assert run_extent(cluster.nodes[0])[1].read_bytes() == good
