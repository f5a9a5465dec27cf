"""node/store.py for the stale-copy collector: bucket ids held, batched removes through the log,
leftover extents after an interrupted collection, and what a restart finds in between."""

from __future__ import annotations

from node.store import ObjectStore

B1, B2 = b"\x01" * 16, b"\x02" * 16


def put(store: ObjectStore, bucket: bytes, key: str, n: int, size: int) -> None:
    oid = n.to_bytes(16, "big")
    f = store.create_incoming(bucket, oid)
    f.write(bytes([n % 256]) * size)
    f.publish()
    store.commit(bucket, key, oid, size, b"m")


def test_bucket_ids_and_usage(tmp_path):
    store = ObjectStore.open(tmp_path)
    try:
        assert store.bucket_ids() == []
        put(store, B2, "a", 1, 10)
        put(store, B1, "a", 2, 20)
        put(store, B1, "b", 3, 30)
        assert store.bucket_ids() == [B1, B2]
        assert store.bucket_usage(B1) == (2, 50)
    finally:
        store.close()


def test_interrupted_collection_leaves_a_consistent_store_and_resumes(tmp_path):
    store = ObjectStore.open(tmp_path)
    put(store, B1, "keep", 1, 100)
    for i in range(2, 12):
        put(store, B2, f"k{i}", i, 2 * 1024 * 1024 if i % 2 else 100)  # blobs and log records
    old = store.remove_many(B2, [f"k{i}" for i in range(2, 7)])  # removed, data not yet dropped
    assert len(old) == 5 and store.object_count == 6
    assert sorted(store.orphan_extents(B2)) == sorted(old)
    store.close()  # as if the node stopped here

    store = ObjectStore.open(tmp_path)  # replayed and cleaned: the removed rows' extents are gone
    try:
        assert store.bucket_usage(B2)[0] == 5 and store.orphan_extents(B2) == []
        assert store.get(B1, "keep") is not None and store.object_count == 6
        old = store.remove_many(B2, [f"k{i}" for i in range(7, 12)])
        for extent_id in store.orphan_extents(B2):  # what the collector's sweep does
            store.delete_data(B2, extent_id)
        assert store.bucket_ids() == [B1] and store.bucket_usage(B2) == (0, 0)
        assert list(tmp_path.joinpath("segments").glob("blob-*")) == []
    finally:
        store.close()
    store = ObjectStore.open(tmp_path)
    try:
        assert store.bucket_ids() == [B1] and store.recovery.orphans_removed == 0
        assert store.get(B1, "keep") is not None
    finally:
        store.close()
