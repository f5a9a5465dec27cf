"""Awaiting a small write's group commit from the event loop, without a worker thread.

``ObjectStore.commit`` blocks until its record is fsynced and applied, so callers run it in a
worker thread: two thread hops per write (there and back), each 0.1-0.7 ms on a busy 2-core
machine. For a small object held in memory, ``commit`` here writes the record from the event
loop (``ObjectStore.try_commit``: a page-cache write of a few KiB) and sleeps until the log's
sync thread, after the batch's fdatasync and SQLite transaction, wakes it through the trio
token: one wake-up instead of two hops, and no thread per waiting writer. Anything else (a
large object, the log busy with another writer or due to start a new segment) takes the
thread path. The durability rule is the store's: the result comes only once the record is on
disk and in the index.
"""

from __future__ import annotations

from typing import Any

import trio

from node.store import IncomingFile, ObjectStore

LOOP_COMMIT_BYTES = 64 * 1024  # objects held in memory up to this size commit from the event loop


async def commit(store: ObjectStore, incoming: IncomingFile, bucket_id: bytes, key: str, object_id: bytes,
                 size: int, manifest: bytes) -> Any:
    """``store.commit(...)``'s result (the previous object id or None), durable when it returns."""
    if incoming.inline and incoming.published and incoming.size <= LOOP_COMMIT_BYTES:
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        result = store.try_commit(bucket_id, key, object_id, size, manifest,
                                  notify=lambda: token.run_sync_soon(done.set))
        if result is not None:
            with trio.CancelScope(shield=True):  # the record is in the log: its outcome is ours
                await done.wait()
            return result()
    return await trio.to_thread.run_sync(store.commit, bucket_id, key, object_id, size, manifest)
