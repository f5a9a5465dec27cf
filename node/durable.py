"""Awaiting a small write's group commit from the event loop, without a worker thread.

``ObjectStore.commit`` blocks until its record is fsynced and applied, so callers run it in a
worker thread: two thread hops per write (there and back), each 0.1-0.7 ms on a busy 2-core
machine. For a small object held in memory, ``commit`` here writes the record from the event
loop (``ObjectStore.try_commit``: a page-cache write of a few KiB) and then syncs it from the
event loop too, Redis-style group commit at the end of a scheduling round:

- the first writer of a round becomes the leader: it yields once (every task already runnable
  appends its record meanwhile), then calls ``SegmentLog.sync_pending()``: one fdatasync and
  one SQLite transaction for every pending record, in the loop thread (blocking it for the
  fsync, ~0.3 ms), which sets every waiter's event;
- the others of the round wait for their event; a writer arriving during the fsync is held
  in the socket buffer and forms the next round.

That costs no thread wake-up at all (the sync thread's path costs two per write, ~0.1 ms of
CPU each side of it plus run-queue waits). A slow disk must not freeze the loop: while the
latest fdatasync took longer than ``LOOP_SYNC_MAX_S`` writes wake the log's sync thread
instead (``try_submit``'s default) and their events are set through the trio token, until a
round is fast again. Anything else (a large object, the log busy with another writer or due to
start a new segment) takes the worker-thread path. The durability rule is the store's: the
result comes only once the record is on disk and in the index.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from node.store import IncomingFile, ObjectStore

LOOP_COMMIT_BYTES = 64 * 1024  # objects held in memory up to this size commit from the event loop
LOOP_SYNC_MAX_S = 0.002        # an fdatasync slower than this moves the syncing back to the thread

_round_due: weakref.WeakKeyDictionary[ObjectStore, bool] = weakref.WeakKeyDictionary()


async def commit(store: ObjectStore, incoming: IncomingFile, bucket_id: bytes, key: str, object_id: bytes,
                 size: int, manifest: bytes) -> Any:
    """``store.commit(...)``'s result (the previous object id or None), durable when it returns."""
    return await (await stage(store, incoming, bucket_id, key, object_id, size, manifest))()


async def stage(store: ObjectStore, incoming: IncomingFile, bucket_id: bytes, key: str, object_id: bytes,
                size: int, manifest: bytes) -> Callable[[], Awaitable[Any]]:
    """``commit`` in two steps: the record is written when this returns (a full disk fails here,
    with ``OSError``, changing nothing: the primary stages before its replicas commit), and the
    returned coroutine function waits until it is durable and applied (``commit``'s result)."""
    if incoming.inline and incoming.published and incoming.size <= LOOP_COMMIT_BYTES:
        token = trio.lowlevel.current_trio_token()
        loop_thread = threading.get_ident()
        done = trio.Event()

        def notify() -> None:  # from whichever thread synced the batch
            if threading.get_ident() == loop_thread:
                done.set()
            else:
                token.run_sync_soon(done.set)

        in_loop = store.log.last_sync_s <= LOOP_SYNC_MAX_S
        result = store.try_commit(bucket_id, key, object_id, size, manifest, notify=notify, wake=not in_loop)
        if result is not None:
            async def finish_in_loop() -> Any:
                with trio.CancelScope(shield=True):  # the record is in the log: its outcome is ours
                    if in_loop and not _round_due.get(store):
                        _round_due[store] = True  # this task leads the round
                        try:
                            await trio.lowlevel.cancel_shielded_checkpoint()  # the round's others append
                        finally:
                            _round_due[store] = False
                        store.log.sync_pending()
                    await done.wait()
                return result()
            return finish_in_loop
    wait = await trio.to_thread.run_sync(store.stage_commit, bucket_id, key, object_id, size, manifest)

    async def finish_in_thread() -> Any:
        with trio.CancelScope(shield=True):  # the record is in the log: its outcome is ours
            return await trio.to_thread.run_sync(wait)
    return finish_in_thread
