"""node/store.py: segments with group commit, index round trips, log replay, torn tails, crash leftovers."""

from __future__ import annotations

import os

import pytest

from node.store import ObjectStore

B1 = bytes(range(16))
B2 = bytes(range(1, 17))


def oid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def put(store: ObjectStore, bucket: bytes, key: str, n: int, data: bytes = b"sealed") -> bytes | None:
    f = store.create_incoming(bucket, oid(n))
    f.write(data)
    f.publish()
    return store.commit(bucket, key, oid(n), len(data), b"manifest-%d" % n)


@pytest.fixture
def store(tmp_path):
    s = ObjectStore.open(tmp_path / "data")
    yield s
    s.close()


def test_small_write_is_inline_and_invisible_until_commit(store, tmp_path):
    f = store.create_incoming(B1, oid(1))
    f.write(b"abc")
    f.write(b"defg")
    f.publish()
    assert f.inline and list((tmp_path / "data" / "incoming").iterdir()) == []
    assert store.get(B1, "k") is None  # published but not committed: invisible
    assert store.commit(B1, "k", oid(1), 7, b"m1") is None
    row = store.get(B1, "k")
    assert (row.key, row.object_id, row.manifest) == ("k", oid(1), b"m1")
    data = store.open_data(B1, oid(1))
    assert data.size == 7 and data.pread(3, 10) == b"defg"
    data.close()
    ext = store.locate(B1, oid(1))
    assert ext.path.name.startswith("log-") and ext.path.read_bytes()[ext.offset:ext.offset + 7] == b"abcdefg"
    assert store.check_extent(ext) and store.object_count == 1


def test_large_write_goes_to_a_blob_segment(tmp_path):
    s = ObjectStore.open(tmp_path / "d", inline_max_bytes=100)
    f = s.create_incoming(B1, oid(1))
    f.write(b"x" * 80)
    assert f.inline
    f.write(b"y" * 80)
    assert not f.inline and len(list((tmp_path / "d" / "incoming").iterdir())) == 1
    f.publish()
    assert list((tmp_path / "d" / "incoming").iterdir()) == []
    s.commit(B1, "big", oid(1), 160, b"m")
    ext = s.locate(B1, oid(1))
    assert ext.path.name.startswith("blob-") and s.read_extent(ext) == b"x" * 80 + b"y" * 80
    s.delete_data(B1, oid(1))
    assert not ext.path.exists()
    s.close()


def test_overwrite_returns_old_id_and_delete(store):
    put(store, B1, "k", 1, b"x" * 10)
    assert put(store, B1, "k", 2, b"y" * 5) == oid(1)
    assert store.get(B1, "k").object_id == oid(2)
    store.delete_data(B1, oid(1))
    assert store.locate(B1, oid(1)) is None and store.object_count == 1
    assert store.remove(B1, "k") == oid(2)
    assert store.remove(B1, "k") is None
    assert store.get(B1, "k") is None and store.object_count == 0


def test_abort_before_and_after_publish(tmp_path):
    store = ObjectStore.open(tmp_path / "data", inline_max_bytes=2)
    used = store.used_bytes
    f = store.create_incoming(B1, oid(1))
    f.write(b"junk")
    f.abort()
    f.abort()  # idempotent
    assert list((tmp_path / "data" / "incoming").iterdir()) == []
    g = store.create_incoming(B1, oid(2))
    g.write(b"junk")
    g.publish()
    g.abort()
    assert [p.name[:4] for p in (tmp_path / "data" / "segments").iterdir()] == ["log-"]
    assert store.used_bytes == used
    h = store.create_incoming(B1, oid(3))
    with pytest.raises(FileExistsError):
        store.create_incoming(B1, oid(3))
    h.abort()
    with pytest.raises(ValueError):
        store.commit(B1, "k", oid(3), 0, b"m")  # never published
    store.close()


def test_concurrent_writers_share_fsyncs(store):
    import threading

    def writer(i: int) -> None:
        for j in range(20):
            put(store, B1, f"{i}/{j}", 1000 + i * 100 + j, b"z" * 4096)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.object_count == 320
    assert store.log.batched_ops == 320 and store.log.fsyncs < 320  # group commit


def test_list_order_prefix_start_after_and_buckets(store):
    keys = ["b", "a/2", "a/1", "a", "é", "z", "a/10", "ab"]
    for i, k in enumerate(keys):
        put(store, B1, k, i)
    put(store, B2, "a/other", 100)
    rows, truncated = store.list(B1)
    # UTF-8 byte order, as S3 lists
    assert [r.key for r in rows] == sorted(keys, key=lambda k: k.encode()) and not truncated
    rows, truncated = store.list(B1, prefix="a/")
    assert [r.key for r in rows] == ["a/1", "a/10", "a/2"] and not truncated
    rows, truncated = store.list(B1, prefix="a/", start_after="a/1", limit=1)
    assert [r.key for r in rows] == ["a/10"] and truncated
    rows, truncated = store.list(B1, start_after="z")
    assert [r.key for r in rows] == ["é"]
    assert store.list(B1, prefix="nope")[0] == []
    assert [r.key for r in store.list(B2)[0]] == ["a/other"]


def test_reopen_round_trip(tmp_path):
    s = ObjectStore.open(tmp_path / "d")
    put(s, B1, "k1", 1, b"one")
    put(s, B1, "k2", 2, b"two!")
    s.close()
    s = ObjectStore.open(tmp_path / "d")
    assert s.object_count == 2 and s.recovery.live_bytes == 7
    assert s.get(B1, "k2").manifest == b"manifest-2"
    assert s.open_data(B1, oid(2)).pread(0, 4) == b"two!"
    assert s.recovery.incoming_removed == s.recovery.orphans_removed == s.recovery.missing == 0
    s.close()


def test_open_replays_the_log_when_the_index_lost_its_last_transactions(tmp_path):
    import shutil
    s = ObjectStore.open(tmp_path / "d")
    put(s, B1, "a", 1, b"first")
    s.close()
    # the index as it was after "a" (power loss can take SQLite back to such a state)
    saved = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir() if p.name.startswith("index.db")}
    s = ObjectStore.open(tmp_path / "d")
    put(s, B1, "b", 2, b"second")
    put(s, B1, "a", 3, b"third")
    s.remove(B1, "b")
    put(s, B2, "c", 4, b"fourth")
    s.close()
    for p in (tmp_path / "d").iterdir():
        if p.name.startswith("index.db"):
            p.unlink()
    for name, raw in saved.items():
        (tmp_path / "d" / name).write_bytes(raw)
    shutil.rmtree(tmp_path / "d" / "incoming")
    (tmp_path / "d" / "incoming").mkdir()
    s = ObjectStore.open(tmp_path / "d")
    assert s.recovery.replayed == 4
    assert s.get(B1, "a").object_id == oid(3) and s.get(B1, "b") is None
    assert s.open_data(B2, oid(4)).pread(0, 10) == b"fourth"
    assert s.locate(B1, oid(1)) is None  # the overwritten version's extent is gone
    s.close()


def test_torn_tail_is_cut_and_invisible(tmp_path, caplog):
    s = ObjectStore.open(tmp_path / "d")
    put(s, B1, "kept", 1, b"kept")
    seg = s.locate(B1, oid(1)).path
    s.close()
    size = seg.stat().st_size
    # a half-written commit (its fsync never returned): the record is cut
    with open(seg, "ab") as fh:
        from node.segments import REC_COMMIT, commit_payload, encode_record
        rec = encode_record(REC_COMMIT, commit_payload(bucket_id=B1, key="torn", object_id=oid(2), size=1,
                                                       manifest=b"m", seq=1, offset=44, length=4, crc=0))
        fh.write(rec[:-3])
    caplog.set_level("INFO")
    s = ObjectStore.open(tmp_path / "d")
    assert s.get(B1, "torn") is None and s.get(B1, "kept") is not None
    assert s.recovery.truncated_bytes == len(rec) - 3 and seg.stat().st_size == size
    assert "event=store_torn_tail_truncated" in caplog.text and "event=store_open" in caplog.text
    s.close()


def test_open_cleans_crash_leftovers(tmp_path, caplog):
    s = ObjectStore.open(tmp_path / "d", inline_max_bytes=4)
    put(s, B1, "kept", 1, b"kept")
    # crash while writing a large object: a file in incoming/
    half = s.create_incoming(B1, oid(2))
    half.write(b"half written")
    # crash after publish, before the index commit
    orphan = s.create_incoming(B1, oid(3))
    orphan.write(b"never committed")
    orphan.publish()
    # a committed object whose data file vanished
    put(s, B2, "lost", 6, b"lost data")
    os.unlink(s.locate(B2, oid(6)).path)
    s.log.close()
    s._db.close()

    caplog.set_level("INFO")
    s = ObjectStore.open(tmp_path / "d")
    assert s.recovery.incoming_removed == 1
    assert s.recovery.orphans_removed == 1
    assert s.recovery.missing == 1
    assert list((tmp_path / "d" / "incoming").iterdir()) == []
    assert s.read_extent(s.locate(B1, oid(1))) == b"kept"
    text = caplog.text
    assert "event=store_leftover_removed" in text and "event=store_data_missing" in text
    s.close()


def test_unknown_format_version_is_refused(tmp_path):
    s = ObjectStore.open(tmp_path / "d")
    seg = next((tmp_path / "d" / "segments").iterdir())
    s.close()
    raw = bytearray(seg.read_bytes())
    raw[5] = 9  # version field
    seg.write_bytes(bytes(raw))
    with pytest.raises(RuntimeError, match="header"):
        ObjectStore.open(tmp_path / "d")


def test_index_is_wal_and_normal_sync(store):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: the log is the durability point


def test_bad_ids_refused(store):
    with pytest.raises(ValueError):
        store.create_incoming(b"", oid(1))
    with pytest.raises(ValueError):
        store.create_incoming(B1, b"short")
