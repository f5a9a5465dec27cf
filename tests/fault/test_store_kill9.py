"""kill -9 a process writing to a store (real OS process, 16 writer threads, or 16 trio tasks
committing from the event loop as the node does), reopen the store: every acknowledged write
reads back byte for byte, nothing torn or half-written is visible, and the store says what it
found. Repeated a few times on the same store."""

import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from node.store import ObjectStore

pytestmark = pytest.mark.fault
WRITER = Path(__file__).with_name("store_writer.py")
ROOT = Path(__file__).resolve().parents[2]
BUCKET = b"B" * 16


def run_and_kill(data_dir: Path, acks_wanted: int, round_: int, mode: str) -> dict[str, tuple[int, int]]:
    proc = subprocess.Popen([sys.executable, str(WRITER), str(data_dir), str(round_), mode], stdout=subprocess.PIPE,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    acked: dict[str, tuple[int, int]] = {}
    try:
        assert proc.stdout.readline().strip() == b"READY"
        deadline = time.monotonic() + 30
        n = 0
        while n < acks_wanted and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if line.startswith("ACK "):
                _, key, seed, size = line.split()
                acked[key] = (int(seed), int(size))  # the last ack of a key is its newest version
                n += 1
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the load
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    # lines already written before the kill are acknowledged writes too
    for line in proc.stdout.read().decode().splitlines():
        if line.startswith("ACK "):
            _, key, seed, size = line.split()
            acked[key] = (int(seed), int(size))
    return acked


def payload(seed: int, size: int) -> bytes:
    import random
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("mode", ["threads", "loop"])
def test_kill9_during_write_load_loses_nothing_acknowledged(tmp_path, caplog, mode):
    data_dir = tmp_path / "store"
    all_acked: dict[str, tuple[int, int]] = {}
    for round_ in range(3):
        acked = run_and_kill(data_dir, 300, round_, mode)
        assert len(acked) > 50
        all_acked.update(acked)
        caplog.clear()
        caplog.set_level("INFO")
        store = ObjectStore.open(data_dir)
        try:
            assert "event=store_open" in caplog.text
            assert store.recovery.missing == 0
            for key, (seed, size) in all_acked.items():
                row = store.get(BUCKET, key)
                assert row is not None, key
                got_seed, got_size = map(int, row.manifest.decode().split(":"))
                # a later (unacknowledged or acknowledged) version may have replaced it: never an older one
                assert got_seed >= seed and (got_seed // 1_000_000) % 1000 == (seed // 1_000_000) % 1000
            rows, _ = store.list(BUCKET, limit=100_000)
            for row in rows:  # whatever is visible is whole and correct
                seed, size = map(int, row.manifest.decode().split(":"))
                data = store.open_data(BUCKET, row.object_id)
                assert data.size == size and data.pread(0, size) == payload(seed, size), row.key
                data.close()
                ext = store.locate(BUCKET, row.object_id)
                assert zlib.crc32(store.read_extent(ext)) == ext.crc
        finally:
            store.close()
