"""A write load on one ObjectStore, for the kill -9 test: 16 writers put objects (small ones
inline, every 7th one large enough for a blob segment, every 5th an overwrite) and print
``ACK <key> <seed> <size>`` only after the commit returned (flush per line).

``store_writer.py DATA_DIR ROUND [threads|loop]``: 16 threads calling ``ObjectStore.commit``
(the sync thread's group commit), or 16 trio tasks calling ``node.durable.commit`` as the node
does (small objects group-committed from the event loop, large ones through worker threads)."""

import random
import sys
import threading
from pathlib import Path

import trio

from node import durable
from node.store import ObjectStore


def payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def plan(base: int, t: int, i: int) -> tuple[int, str, int, bytes, bytes]:
    """Writer ``t``'s ``i``-th object: (seed, key, size, object id, data)."""
    seed = base + t * 1_000_000 + i
    size = 200_000 if i % 7 == 0 else 4096
    return seed, f"t{t}/k{i % 5 if i % 5 == 0 else i}", size, seed.to_bytes(16, "big"), payload(seed, size)


def main() -> None:
    store = ObjectStore.open(Path(sys.argv[1]), inline_max_bytes=64 * 1024, segment_max_bytes=2 * 1024 * 1024)
    bucket = b"B" * 16
    base = int(sys.argv[2]) * 1_000_000_000  # a new round writes new object ids
    lock = threading.Lock()
    print("READY", flush=True)

    def writer(t: int) -> None:
        i = 0
        while True:
            i += 1
            seed, key, size, oid, data = plan(base, t, i)
            f = store.create_incoming(bucket, oid)
            f.write(data[:1000])
            f.write(data[1000:])
            f.publish()
            old = store.commit(bucket, key, oid, size, f"{seed}:{size}".encode())
            if old is not None and old != oid:
                store.delete_data(bucket, old)
            with lock:
                sys.stdout.write(f"ACK {key} {seed} {size}\n")
                sys.stdout.flush()

    if len(sys.argv) > 3 and sys.argv[3] == "loop":
        trio.run(loop_writers, store, bucket, base)
    for t in range(16):
        threading.Thread(target=writer, args=(t,), daemon=True).start()
    threading.Event().wait()


async def loop_writers(store: ObjectStore, bucket: bytes, base: int) -> None:
    async def writer(t: int) -> None:
        i = 0
        while True:
            i += 1
            seed, key, size, oid, data = plan(base, t, i)
            f = store.create_incoming(bucket, oid)
            if f.fits(size):
                f.write(data)  # in memory
                f.publish()
            else:
                await trio.to_thread.run_sync(f.write, data)
                await trio.to_thread.run_sync(f.publish)
            old = await durable.commit(store, f, bucket, key, oid, size, f"{seed}:{size}".encode())
            if old is not None and old != oid:
                await trio.to_thread.run_sync(store.delete_data, bucket, old)
            sys.stdout.write(f"ACK {key} {seed} {size}\n")
            sys.stdout.flush()

    async with trio.open_nursery() as nursery:
        for t in range(16):
            nursery.start_soon(writer, t)


if __name__ == "__main__":
    main()
