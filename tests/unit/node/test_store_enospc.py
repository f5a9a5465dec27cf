"""node/store.py and node/segment_log.py on a real full disk (a few-MiB tmpfs, real ENOSPC from
the kernel): every failed write raises ENOSPC and changes nothing (log position, index, files,
space accounting); every acknowledged object reads back byte for byte, in the same process and
after a restart; the start check finds nothing corrupt; writes succeed again once space is
freed (deletes + compaction). Needs root to mount (skips with the reason otherwise)."""

from __future__ import annotations

import errno
import random
import sqlite3

import pytest
import trio

from node.compaction import compact_once
from node.store import ObjectStore
from tests.tmpfs import fill, mounted_tmpfs, remount

B = bytes(range(16))


def oid(n: int) -> bytes:
    return n.to_bytes(16, "big")


@pytest.fixture
def disk(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "2m") as path:
        yield path


def open_store(disk):
    return ObjectStore.open(disk / "data", inline_max_bytes=16 * 1024, segment_max_bytes=128 * 1024)


def put(store: ObjectStore, key: str, n: int, data: bytes) -> None:
    f = store.create_incoming(B, oid(n))
    try:
        for i in range(0, len(data), 8192):
            f.write(data[i:i + 8192])
        f.publish()
        store.commit(B, key, oid(n), len(data), b"m-%d" % n)
    except BaseException:
        f.abort()
        raise


def snapshot(store: ObjectStore, disk) -> tuple:
    # the files and what they hold, but the active log segment's preallocated zeros (the log
    # adds and cuts those by itself: node/segment_log.py)
    files = sorted((p.name, len(p.read_bytes().rstrip(b"\0")) if p.name.startswith("log-") else p.stat().st_size)
                   for p in (disk / "data" / "segments").iterdir())
    rows, _ = store.list(B, limit=1000)
    return (store.log.position, files, sorted((r.key, r.object_id) for r in rows),
            list((disk / "data" / "incoming").iterdir()), store.used_bytes, store.object_count)


def read(store: ObjectStore, key: str) -> bytes | None:
    row = store.get(B, key)
    if row is None:
        return None
    f = store.open_data(B, row.object_id)
    try:
        return f.pread(0, f.size)
    finally:
        f.close()


def check_all(store: ObjectStore, acked: dict[str, bytes]) -> None:
    for key, data in acked.items():
        assert read(store, key) == data, key
    rows, _ = store.list(B, limit=1000)
    assert {r.key for r in rows} == set(acked)
    assert all(store.check_extent(e) for e in store.extents(limit=1000))


def test_writes_until_the_disk_is_full_change_nothing_when_they_fail(disk):
    rng = random.Random(7)
    store = open_store(disk)
    acked: dict[str, bytes] = {}
    failures = 0
    try:
        n = 0
        while failures < 40:
            n += 1
            size = rng.choice([rng.randint(3000, 9000)] * 4 + [rng.randint(20_000, 60_000)])
            key = rng.choice([f"k{n}"] * 3 + list(acked)[:5] or [f"k{n}"])  # some overwrites
            data = rng.randbytes(size)
            before = snapshot(store, disk)
            try:
                put(store, key, n, data)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                failures += 1
                assert snapshot(store, disk) == before  # nothing changed, nothing torn left behind
                assert read(store, key) == acked.get(key)
                continue
            except sqlite3.Error as exc:  # pragma: no cover - the bug this test guards against
                pytest.fail(f"an sqlite error escaped the store: {exc}")
            old = acked.get(key)
            acked[key] = data
            if old is not None:
                pass  # the old version's data became garbage (delete_data is the caller's: not here)
        assert len(acked) > 20 and store.no_space_errors >= failures
        check_all(store, acked)
    finally:
        store.close()
    store = open_store(disk)  # a restart on the full disk
    try:
        rec = store.recovery
        assert (rec.missing, rec.truncated_bytes) == (0, 0), rec
        check_all(store, acked)
        key = next(iter(acked))
        before = snapshot(store, disk)
        with pytest.raises(OSError) as e:  # even a delete needs a log record: refused cleanly
            store.remove(B, key)
        assert e.value.errno == errno.ENOSPC and snapshot(store, disk) == before and read(store, key) == acked[key]
        # the operator grows the volume a little: deletes and compaction free the rest, writes go through
        remount(disk, "3m")
        for key in list(acked)[: len(acked) * 3 // 4]:
            old = store.remove(B, key)
            store.delete_data(B, old)
            del acked[key]
        store.log.rotate()
        trio.run(lambda: compact_once(store, min_garbage_ratio=0.0))
        for i in range(10):
            data = rng.randbytes(8000)
            put(store, f"again{i}", 10_000 + i, data)
            acked[f"again{i}"] = data
        check_all(store, acked)
    finally:
        store.close()
    store = open_store(disk)
    try:
        assert (store.recovery.missing, store.recovery.truncated_bytes) == (0, 0)
        check_all(store, acked)
    finally:
        store.close()


def test_an_index_that_cannot_grow_fails_the_batch_and_cuts_its_records_off_the_log(disk):
    store = open_store(disk)
    try:
        put(store, "first", 1, b"a" * 5000)
        _, offset = store.log.position
        if offset % 4096 > 3500:  # leave room in the segment's last page: the log write must succeed
            put(store, "pad", 2, b"p" * 1000)
        store.log.sync_pending()
        fill(disk)  # another process takes every free byte: SQLite's WAL cannot grow, the log can
        before = snapshot(store, disk)
        with pytest.raises(OSError) as e:
            put(store, "second", 3, b"b" * 100)
        assert e.value.errno == errno.ENOSPC and "index" in str(e.value)
        assert snapshot(store, disk) == before and store.get(B, "second") is None
        assert read(store, "first") == b"a" * 5000 and store.no_space_errors >= 1
        position = store.log.position
    finally:
        store.close()
    (disk / "filler").unlink()
    store = open_store(disk)  # the cut records are not replayed: the failed write never shows up
    try:
        assert store.get(B, "second") is None and read(store, "first") == b"a" * 5000
        assert store.recovery.replayed == 0 and store.recovery.truncated_bytes == 0
        assert store.log.position[0] > position[0]
        put(store, "second", 4, b"c" * 100)
        assert read(store, "second") == b"c" * 100
    finally:
        store.close()


def test_a_failed_log_write_is_cut_off_and_later_records_land_where_the_log_says(disk):
    store = open_store(disk)
    try:
        put(store, "k0", 1, b"x" * 3000)
        fill(disk, leave=2000)  # room for part of the next record only: a short write, then ENOSPC
        before = snapshot(store, disk)
        with pytest.raises(OSError) as e:
            put(store, "torn", 2, bytes(range(256)) * 40)
        assert e.value.errno == errno.ENOSPC and snapshot(store, disk) == before
        (disk / "filler").unlink()  # space again: the next record lands at the log's true end
        put(store, "k1", 3, b"y" * 500)
        assert read(store, "k1") == b"y" * 500
    finally:
        store.close()
    store = open_store(disk)
    try:
        assert store.recovery.truncated_bytes == 0 and store.recovery.missing == 0
        assert read(store, "k0") == b"x" * 3000 and read(store, "k1") == b"y" * 500 and store.get(B, "torn") is None
    finally:
        store.close()
