"""node/store.py: publish through incoming/, index round trips, crash leftovers cleaned at open."""

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


def test_publish_then_commit_and_read_back(store, tmp_path):
    f = store.create_incoming(B1, oid(1))
    f.write(b"abc")
    f.write(b"defg")
    incoming = list((tmp_path / "data" / "incoming").iterdir())
    assert len(incoming) == 1
    assert not store.data_path(B1, oid(1)).exists()
    f.publish()
    assert list((tmp_path / "data" / "incoming").iterdir()) == []
    assert store.data_path(B1, oid(1)).read_bytes() == b"abcdefg"
    assert store.get(B1, "k") is None  # published but not committed: invisible
    assert store.commit(B1, "k", oid(1), 7, b"m1") is None
    row = store.get(B1, "k")
    assert (row.key, row.object_id, row.manifest) == ("k", oid(1), b"m1")
    data = store.open_data(B1, oid(1))
    assert data.size == 7 and data.pread(3, 10) == b"defg"
    data.close()
    assert store.used_bytes == 7 and store.object_count == 1


def test_overwrite_returns_old_id_and_delete(store):
    put(store, B1, "k", 1, b"x" * 10)
    assert put(store, B1, "k", 2, b"y" * 5) == oid(1)
    assert store.get(B1, "k").object_id == oid(2)
    store.delete_data(B1, oid(1))
    assert store.used_bytes == 5 and store.object_count == 1
    assert store.remove(B1, "k") == oid(2)
    assert store.remove(B1, "k") is None
    assert store.get(B1, "k") is None and store.object_count == 0


def test_abort_before_and_after_publish(store, tmp_path):
    f = store.create_incoming(B1, oid(1))
    f.write(b"junk")
    f.abort()
    f.abort()  # idempotent
    assert list((tmp_path / "data" / "incoming").iterdir()) == []
    g = store.create_incoming(B1, oid(2))
    g.write(b"junk")
    g.publish()
    g.abort()
    assert not store.data_path(B1, oid(2)).exists()
    assert store.used_bytes == 0
    h = store.create_incoming(B1, oid(3))
    with pytest.raises(FileExistsError):
        store.create_incoming(B1, oid(3))
    h.abort()


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
    assert s.object_count == 2 and s.used_bytes == 7
    assert s.get(B1, "k2").manifest == b"manifest-2"
    assert s.recovery.incoming_removed == s.recovery.orphans_removed == s.recovery.missing == 0
    s.close()


def test_open_cleans_crash_leftovers(tmp_path, caplog):
    s = ObjectStore.open(tmp_path / "d")
    put(s, B1, "kept", 1, b"kept")
    # crash while writing: a file in incoming/
    half = s.create_incoming(B1, oid(2))
    half.write(b"half written")
    # crash after publish, before the index commit
    orphan = s.create_incoming(B1, oid(3))
    orphan.write(b"never committed")
    orphan.publish()
    # crash after an overwrite committed, before the old file was deleted
    put(s, B1, "over", 4, b"old")
    put(s, B1, "over", 5, b"new")
    # a committed object whose data file vanished
    put(s, B2, "lost", 6, b"lost")
    os.unlink(s.data_path(B2, oid(6)))
    s.close()

    caplog.set_level("INFO")
    s = ObjectStore.open(tmp_path / "d")
    assert s.recovery.incoming_removed == 1
    assert s.recovery.orphans_removed == 2  # oid 3 and the old version oid 4
    assert s.recovery.missing == 1
    assert s.recovery.bytes_removed == len(b"half written") + len(b"never committed") + len(b"old")
    assert list((tmp_path / "d" / "incoming").iterdir()) == []
    assert not s.data_path(B1, oid(3)).exists() and not s.data_path(B1, oid(4)).exists()
    assert s.data_path(B1, oid(1)).read_bytes() == b"kept"
    assert s.data_path(B1, oid(5)).read_bytes() == b"new"
    assert s.used_bytes == len(b"kept") + len(b"new")
    text = caplog.text
    assert "event=store_leftover_removed" in text and "event=store_data_missing" in text
    assert "orphans_removed=2" in text
    s.close()


def test_index_is_wal_and_full_sync(store):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_bad_ids_refused(store):
    with pytest.raises(ValueError):
        store.create_incoming(b"", oid(1))
    with pytest.raises(ValueError):
        store.create_incoming(B1, b"short")
    with pytest.raises(ValueError):
        store.data_path(b"x" * 65, oid(1))
