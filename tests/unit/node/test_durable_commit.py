"""Commits awaited from the event loop (node/durable.py, ObjectStore.try_commit, the log's sync
thread): durable and applied before they return, batched, and the thread path when the log is busy."""

from __future__ import annotations

import threading
import time

import pytest
import trio

from node import durable
from node.store import ObjectStore

B1 = bytes(range(16))


def oid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def incoming(store: ObjectStore, n: int, data: bytes):
    f = store.create_incoming(B1, oid(n))
    f.write(data)
    f.publish()
    return f


@pytest.fixture
def store(tmp_path):
    s = ObjectStore.open(tmp_path / "data")
    yield s
    s.close()


def test_try_commit_notifies_once_durable_and_applied(store):
    f = incoming(store, 1, b"sealed")
    done = threading.Event()
    fsyncs = store.log.fsyncs
    result = store.try_commit(B1, "k", oid(1), 6, b"m1", notify=done.set)
    assert result is not None
    assert done.wait(5)
    assert store.log.fsyncs == fsyncs + 1  # fsynced by the sync thread before notify
    assert result() is None and store.get(B1, "k").manifest == b"m1" and store.object_count == 1
    assert store.read_extent(store.locate(B1, oid(1))) == b"sealed" and f.inline


def test_try_commit_declines_while_another_writer_holds_the_log(store):
    incoming(store, 1, b"a")
    with store.log._lock:  # another thread writing a record
        assert store.try_commit(B1, "k", oid(1), 1, b"m", notify=lambda: None) is None
    assert store.commit(B1, "k", oid(1), 1, b"m") is None  # the thread path still works


def test_try_commit_declines_when_a_new_segment_is_due(tmp_path):
    s = ObjectStore.open(tmp_path / "d", segment_max_bytes=4096)
    try:
        incoming(s, 1, b"x" * 3000)
        s.commit(B1, "a", oid(1), 3000, b"m")
        incoming(s, 2, b"y" * 3000)
        assert s.try_commit(B1, "b", oid(2), 3000, b"m", notify=lambda: None) is None
        seq = s.log.position[0]
        s.commit(B1, "b", oid(2), 3000, b"m")
        assert s.log.position[0] == seq + 1
    finally:
        s.close()


async def test_durable_commit_from_the_event_loop_batches_and_reads_back(store):
    results = {}

    async def writer(i: int) -> None:
        f = incoming(store, 100 + i, b"z" * 4096)
        results[i] = await durable.commit(store, f, B1, f"k{i}", oid(100 + i), 4096, b"m%d" % i)

    async with trio.open_nursery() as nursery:
        for i in range(32):
            nursery.start_soon(writer, i)
    assert results == {i: None for i in range(32)}
    assert store.object_count == 32 and store.log.batched_ops == 32 and store.log.fsyncs < 32
    for i in range(32):
        assert store.get(B1, f"k{i}").manifest == b"m%d" % i
    # an overwrite returns the previous object id; a large object takes the thread path
    f = incoming(store, 500, b"q" * (durable.LOOP_COMMIT_BYTES + 1))
    assert await durable.commit(store, f, B1, "k0", oid(500), durable.LOOP_COMMIT_BYTES + 1, b"big") == oid(100)


async def test_durable_commit_raises_the_logs_failure(store):
    f = incoming(store, 1, b"a")
    store.log._failed = "simulated fsync failure"
    with pytest.raises(OSError, match="simulated fsync failure"):
        await durable.commit(store, f, B1, "k", oid(1), 1, b"m")
    assert store.get(B1, "k") is None


def test_close_syncs_pending_and_refuses_new_appends(tmp_path):
    s = ObjectStore.open(tmp_path / "d")
    incoming(s, 1, b"a")
    s.commit(B1, "k", oid(1), 1, b"m")
    s.close()
    assert not s.log._thread.is_alive()
    s2 = ObjectStore.open(tmp_path / "d")
    try:
        assert s2.get(B1, "k").manifest == b"m"
    finally:
        s2.close()



@pytest.fixture
def fsync_threads(monkeypatch):
    """The ident of the thread of every fdatasync the segment log makes from now on."""
    import os

    import node.segment_log as segment_log

    threads = []
    real = os.fdatasync

    def spy(fd):
        threads.append(threading.get_ident())
        return real(fd)

    monkeypatch.setattr(segment_log.os, "fdatasync", spy)
    return threads


async def test_small_commits_sync_in_the_loop_thread(store, fsync_threads):
    """The loop's group commit: the fdatasync runs in the event loop's thread (no wake-up of
    the sync thread), one round for a whole batch of concurrent writers."""
    fsyncs = store.log.fsyncs

    async def writer(i: int) -> None:
        f = incoming(store, 200 + i, b"w" * 100)
        assert await durable.commit(store, f, B1, f"w{i}", oid(200 + i), 100, b"m") is None

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(writer, i)
    assert store.log.fsyncs == fsyncs + 1 and set(fsync_threads) == {threading.get_ident()}
    assert all(store.get(B1, f"w{i}") is not None for i in range(8))


async def test_a_slow_disk_moves_small_commits_back_to_the_sync_thread(store, fsync_threads):
    store.log.last_sync_s = durable.LOOP_SYNC_MAX_S * 10  # the latest round was slow
    f = incoming(store, 300, b"s" * 100)
    assert await durable.commit(store, f, B1, "slow", oid(300), 100, b"m") is None
    assert fsync_threads == [store.log._thread.ident]  # synced by the sync thread, woken for it
    assert store.get(B1, "slow").manifest == b"m"
    # that round was fast again: the next small commit syncs in the loop (once the sync thread
    # is back asleep: one still looking for work would take the record itself, which is fine too)
    deadline = time.monotonic() + 5
    while not store.log._work._waiters and time.monotonic() < deadline:
        time.sleep(0.001)
    store.log.last_sync_s = 0.0
    f = incoming(store, 301, b"t" * 100)
    assert await durable.commit(store, f, B1, "fast", oid(301), 100, b"m") is None
    assert fsync_threads[-1] == threading.get_ident()
