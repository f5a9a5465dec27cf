"""node/store.py rename: one RENAME record moves an index row atomically; replayed after a crash
(the index losing its last transactions); conditional on the source's object id; no data moves."""

from __future__ import annotations

from node.store import ObjectStore
from node.store_index import set_applied

B1 = bytes(range(16))


def oid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def put(store: ObjectStore, key: str, n: int, data: bytes = b"sealed") -> None:
    f = store.create_incoming(B1, oid(n))
    f.write(data)
    f.publish()
    store.commit(B1, key, oid(n), len(data), b"m%d" % n)


def test_rename_moves_the_row_and_keeps_the_extent(tmp_path):
    s = ObjectStore.open(tmp_path / "d")
    put(s, "a", 1, b"hello")
    ext = s.locate(B1, oid(1))
    used = s.used_bytes
    assert s.rename(B1, "a", "b", oid(1), b"m1-as-b") == (True, None)
    assert s.get(B1, "a") is None
    row = s.get(B1, "b")
    assert (row.object_id, row.manifest) == (oid(1), b"m1-as-b")
    assert s.locate(B1, oid(1)) == ext  # same bytes, same place
    assert s.object_count == 1
    assert s.used_bytes - used < 200  # one small record, no data
    s.close()


def test_rename_over_an_existing_key_returns_its_old_version(tmp_path):
    s = ObjectStore.open(tmp_path / "d")
    put(s, "a", 1)
    put(s, "b", 2)
    assert s.rename(B1, "a", "b", oid(1), b"x") == (True, oid(2))
    assert s.object_count == 1
    s.delete_data(B1, oid(2))
    assert s.locate(B1, oid(2)) is None and s.locate(B1, oid(1)) is not None
    s.close()


def test_rename_is_conditional_on_the_object_id(tmp_path):
    s = ObjectStore.open(tmp_path / "d")
    put(s, "a", 1)
    assert s.rename(B1, "a", "b", oid(9), b"x") == (False, None)
    assert s.rename(B1, "missing", "b", oid(1), b"x") == (False, None)
    assert s.get(B1, "a").object_id == oid(1) and s.get(B1, "b") is None
    s.close()


def test_rename_is_replayed_from_the_log(tmp_path):
    s = ObjectStore.open(tmp_path / "d")
    put(s, "a", 1, b"payload")
    pos = s.log.position
    s.rename(B1, "a", "z", oid(1), b"renamed")
    # the index loses the rename's transaction (synchronous=NORMAL on power loss)
    with s._dblock:  # noqa: SLF001
        s._db.execute("BEGIN IMMEDIATE")  # noqa: SLF001
        s._db.execute("UPDATE objects SET key = 'a', manifest = ? WHERE key = 'z'", (b"m1",))  # noqa: SLF001
        set_applied(s._db, pos)  # noqa: SLF001
        s._db.execute("COMMIT")  # noqa: SLF001
    s.close()
    s = ObjectStore.open(tmp_path / "d")
    assert s.recovery.replayed == 1
    assert s.get(B1, "a") is None and s.get(B1, "z").manifest == b"renamed"
    d = s.open_data(B1, oid(1))
    assert d.pread(0, 100) == b"payload"
    d.close()
    s.close()
