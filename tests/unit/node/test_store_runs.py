"""node/store.py with objects of several runs (appends, zero-copy multipart): a commit naming
another extent of the object, owned runs freed with the object, kept by recovery, moved by
compaction; ``link`` adopting other rows' extents atomically."""

from __future__ import annotations

import trio

from node.compaction import compact_once
from node.store import ObjectStore

B = bytes(range(16))


def oid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def write(store: ObjectStore, ext: bytes, data: bytes):
    f = store.create_incoming(B, ext)
    f.write(data)
    f.publish()
    return f


def read(store: ObjectStore, ext: bytes) -> bytes:
    d = store.open_data(B, ext)
    try:
        return d.pread(0, d.size)
    finally:
        d.close()


def test_append_run_is_owned_and_freed_with_the_object(tmp_path):
    s = ObjectStore.open(tmp_path / "d")
    write(s, oid(1), b"base")
    s.commit(B, "k", oid(1), 4, b"m1")
    write(s, oid(2), b"more")
    assert s.commit(B, "k", oid(1), 8, b"m2", extent_id=oid(2), runs=[oid(2)]) == oid(1)  # same version
    assert read(s, oid(1)) == b"base" and read(s, oid(2)) == b"more"
    assert s.holder_of(B, oid(2)) == ("k", oid(1)) and s.object_count == 1
    s.close()
    s = ObjectStore.open(tmp_path / "d")  # recovery keeps the owned run
    assert read(s, oid(2)) == b"more" and s.recovery.missing == 0
    write(s, oid(3), b"new")
    assert s.commit(B, "k", oid(3), 3, b"m3") == oid(1)
    s.delete_data(B, oid(1))
    assert s.locate(B, oid(1)) is None and s.locate(B, oid(2)) is None and s.holder_of(B, oid(2)) is None
    s.close()


def test_runs_are_replayed(tmp_path):
    s = ObjectStore.open(tmp_path / "d")
    write(s, oid(1), b"base")
    s.commit(B, "k", oid(1), 4, b"m1")
    write(s, oid(2), b"more")
    s.commit(B, "k", oid(1), 8, b"m2", extent_id=oid(2), runs=[oid(2)])
    with s._dblock:  # noqa: SLF001 - the index loses everything (power loss), the log has it all
        s._db.executescript("DELETE FROM objects; DELETE FROM extents; DELETE FROM runs; "  # noqa: SLF001
                            "UPDATE meta SET value = 0 WHERE name IN ('applied_seq', 'applied_offset');")
    s.close()
    s = ObjectStore.open(tmp_path / "d")
    assert s.get(B, "k").manifest == b"m2" and read(s, oid(2)) == b"more" and read(s, oid(1)) == b"base"
    assert s.holder_of(B, oid(2)) == ("k", oid(1))
    s.close()


def test_link_adopts_parts_without_copying(tmp_path):
    s = ObjectStore.open(tmp_path / "d")
    for n, data in ((1, b"p1"), (2, b"p2")):
        write(s, oid(n), data)
        s.commit(B, f"part{n}", oid(n), 2, b"pm")
    used = s.used_bytes
    assert s.link(B, "final", oid(9), 4, b"fm", runs=[oid(1), oid(2)],
                  take=[("part1", oid(1)), ("part2", oid(7))]) == (False, None)  # part2 changed: nothing
    assert s.get(B, "part1") is not None and s.get(B, "final") is None
    assert s.link(B, "final", oid(9), 4, b"fm", runs=[oid(1), oid(2)],
                  take=[("part1", oid(1)), ("part2", oid(2))]) == (True, None)
    assert s.used_bytes - used < 1000 and s.object_count == 1
    assert s.get(B, "part1") is None and s.holder_of(B, oid(2)) == ("final", oid(9))
    s.delete_data(B, oid(1))  # a late delete of a part's old id frees nothing adopted
    assert read(s, oid(1)) == b"p1"
    s.close()
    s = ObjectStore.open(tmp_path / "d")
    assert read(s, oid(1)) == b"p1" and read(s, oid(2)) == b"p2"
    s.close()


async def test_compaction_moves_run_extents(tmp_path):
    s = ObjectStore.open(tmp_path / "d", segment_max_bytes=4096)
    write(s, oid(1), b"base")
    s.commit(B, "k", oid(1), 4, b"m1")
    write(s, oid(2), b"run!")
    s.commit(B, "k", oid(1), 8, b"m2", extent_id=oid(2), runs=[oid(2)])
    for i in range(40):  # garbage: overwritten small objects fill and close segments
        write(s, oid(100 + i), b"x" * 200)
        old = s.commit(B, "junk", oid(100 + i), 200, b"j")
        if old:
            s.delete_data(B, old)
    before = s.locate(B, oid(2)).seq
    removed, _ = await compact_once(s, min_garbage_ratio=0.3)
    assert removed >= 1
    assert s.locate(B, oid(2)).seq != before and read(s, oid(2)) == b"run!" and read(s, oid(1)) == b"base"
    s.close()


def test_rewrite_of_a_run_extent_is_conditional_and_durable(tmp_path):
    """Repair of an appended run: ``rewrite(extent_id=...)`` replaces that extent only, and only
    while the key still points at the version that owns it."""
    s = ObjectStore.open(tmp_path / "d")
    write(s, oid(1), b"base")
    s.commit(B, "k", oid(1), 4, b"m1")
    write(s, oid(2), b"more")
    s.commit(B, "k", oid(1), 8, b"m2", extent_id=oid(2), runs=[oid(2)])
    first, run = s.locate(B, oid(1)), s.locate(B, oid(2))
    assert s.rewrite(B, "k", oid(1), b"MORE", extent_id=oid(2))
    moved = s.locate(B, oid(2))
    assert (moved.seq, moved.offset) != (run.seq, run.offset) and read(s, oid(2)) == b"MORE"
    assert s.locate(B, oid(1)) == first and s.get(B, "k").manifest == b"m2"  # nothing else changed
    assert not s.rewrite(B, "k", oid(1), b"x", extent_id=oid(3))  # not an extent the version owns
    assert not s.rewrite(B, "k", oid(9), b"x", extent_id=oid(2))  # not the key's version
    assert not s.rewrite(B, "other", oid(1), b"x", extent_id=oid(2))
    assert s.locate(B, oid(3)) is None and read(s, oid(2)) == b"MORE"
    with s._dblock:  # noqa: SLF001 - the index loses everything (power loss): replay gives the same
        s._db.executescript("DELETE FROM objects; DELETE FROM extents; DELETE FROM runs; "  # noqa: SLF001
                            "UPDATE meta SET value = 0 WHERE name IN ('applied_seq', 'applied_offset');")
    s.close()
    s = ObjectStore.open(tmp_path / "d")
    assert read(s, oid(2)) == b"MORE" and read(s, oid(1)) == b"base" and s.locate(B, oid(3)) is None
    write(s, oid(4), b"new")
    s.commit(B, "k", oid(4), 3, b"m4")
    assert not s.rewrite(B, "k", oid(1), b"late", extent_id=oid(2))  # overwritten meanwhile
    s.close()
