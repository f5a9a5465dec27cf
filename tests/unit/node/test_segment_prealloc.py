"""The log's preallocation (node/segment_log.py): zeros ahead of the records, cut when a
segment closes or, after a crash, by recovery; never in the way of a record."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import trio

from node import durable
from node.segment_log import PREALLOC_LOW
from node.segments import KIND_LOG
from node.store import ObjectStore

B = bytes(range(16))
ROOT = Path(__file__).resolve().parents[3]


def oid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def put(store: ObjectStore, n: int, data: bytes) -> None:
    f = store.create_incoming(B, oid(n))
    f.write(data)
    f.publish()
    store.commit(B, f"k{n}", oid(n), len(data), b"m%d" % n)


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_zeros_ahead_of_the_records_and_none_left_in_closed_segments(tmp_path):
    store = ObjectStore.open(tmp_path / "s", segment_max_bytes=4 * 1024 * 1024)
    try:
        for n in range(20):
            put(store, n, os.urandom(3000))
        seq, end = store.log.position
        path = store.segment_path(seq, KIND_LOG)
        wait_for(lambda: path.stat().st_size - end >= PREALLOC_LOW)
        tail = path.read_bytes()[end:]
        assert tail and tail.count(0) == len(tail)  # zeros only, beyond the last record
        assert store.log.preallocated_bytes > 0
        for n in range(20, 40):  # written in place, over the zeros
            put(store, n, os.urandom(3000))
        old, old_end = store.log.position
        assert path.stat().st_size > old_end
        store.log.rotate()  # the closed segment loses its zero tail
        assert path.stat().st_size == old_end and store.log.position[0] > old
        for n in range(40):
            assert store.get(B, f"k{n}").manifest == b"m%d" % n
    finally:
        store.close()
    # a cleanly closed store has no zero tail anywhere, and reopens without trimming anything
    for p in (tmp_path / "s" / "segments").glob("log-*"):
        assert not p.read_bytes().endswith(bytes(64)), p.name
    again = ObjectStore.open(tmp_path / "s")
    try:
        assert again.recovery.truncated_bytes == 0 and again.recovery.missing == 0
        assert again.get(B, "k39").manifest == b"m39"
    finally:
        again.close()


CRASHER = """
import os, sys, time, trio
from pathlib import Path
from node import durable
from node.store import ObjectStore
store = ObjectStore.open(Path(sys.argv[1]))
B = bytes(range(16))

async def main():
    for n in range(200):
        oid = n.to_bytes(16, "big")
        f = store.create_incoming(B, oid)
        f.write(os.urandom(4000))
        f.publish()
        await durable.commit(store, f, B, f"k{n}", oid, 4000, b"m%d" % n)
        print("ACK", n, flush=True)
    seq, end = store.log.position
    path = store.segment_path(seq, 1)
    while path.stat().st_size <= end:  # the preallocation is there
        time.sleep(0.005)
    print("TAIL", path.stat().st_size - end, flush=True)
    os._exit(0)  # no close: the zero tail stays, as after a crash

trio.run(main)
"""


def test_recovery_trims_the_zero_tail_of_a_crashed_log_and_counts_nothing_torn(tmp_path, caplog):
    data_dir = tmp_path / "s"
    out = subprocess.run([sys.executable, "-c", CRASHER, str(data_dir)], cwd=ROOT, capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines.count("ACK") == 200 and int(lines[lines.index("TAIL") + 1]) > 0
    caplog.set_level("INFO")
    store = ObjectStore.open(data_dir)
    try:
        assert store.recovery.truncated_bytes == 0 and store.recovery.missing == 0
        assert "event=store_prealloc_trimmed" in caplog.text and "store_torn_tail" not in caplog.text
        for n in range(200):
            row = store.get(B, f"k{n}")
            assert row is not None and row.manifest == b"m%d" % n
            ext = store.locate(B, oid(n))
            assert ext.length == 4000 and store.check_extent(ext)  # the bytes recorded at write time
        # the trimmed segment ends at its last record; the log goes on in a new one
        logs = sorted((tmp_path / "s" / "segments").glob("log-*"))
        assert not logs[0].read_bytes().endswith(bytes(16))
    finally:
        store.close()


async def test_loop_commits_wake_the_sync_thread_only_to_preallocate(tmp_path):
    store = ObjectStore.open(tmp_path / "s")
    try:
        for n in range(300):  # ~1.2 MB: past a preallocation step
            f = store.create_incoming(B, oid(n))
            f.write(os.urandom(4000))
            f.publish()
            await durable.commit(store, f, B, f"k{n}", oid(n), 4000, b"m")
        assert store.log.preallocated_bytes >= 1024 * 1024
        assert store.get(B, "k299") is not None
    finally:
        store.close()
