"""Disk space: what the node may still store, and the refusal of writes when it is full.

Theory of operation
-------------------
The node may use ``free = min(capacity_bytes - used, disk free - reserve_bytes)`` more bytes:
its configured capacity bounds it, and so does the real disk, of which ``reserve_bytes`` are
never used (room for the index, the logs and a write already under way). That ``free`` is what
the node reports in its heartbeats, and the node is **full** when ``free`` is at most
``FULL_RATIO`` of its capacity: the very threshold at which the coordinator stops placing
replicas on it (``coordinator.placement.is_full``), so both sides agree.

A full node refuses new writes at their start, before any byte is taken (``PutObject`` as the
primary, ``ReplicaPut`` as a replica): ``Unavailable`` kind ``InsufficientStorage`` with a
message that says which node is full and by how much. Nothing is written, so the store stays
consistent; a write that starts just below the threshold may overshoot it by its own size,
which ``reserve_bytes`` absorbs. A disk that fills up anyway (``ENOSPC``, e.g. another
process) fails the write with the same kind (``is_no_space``): the store's commit protocol
never exposes a partly written object.

A real ``ENOSPC`` also teaches the guard: the OS said "full" while ``statvfs`` still showed some
bytes free (a write bigger than what is left, filesystem overhead, another process), so from the
first one on (``no_space()``, the store's count, went up) the disk free space measured then is
held back too (``learned_reserve``). ``free`` drops to about 0: the node reports itself full,
placement avoids it and new writes are refused at their start, with the same clear error. It
comes back once that much space is freed (deletes and compaction, or a bigger disk), and the
learned reserve is forgotten at restart (a new ENOSPC teaches it again).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from proto.errors import Unavailable

FULL_RATIO = 0.01  # the coordinator's placement.DEFAULT_MIN_FREE_RATIO: keep them equal


def disk_free(path: Path) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


class SpaceGuard:
    def __init__(self, data_dir: Path, *, capacity_bytes: int, reserve_bytes: int, used: Callable[[], int],
                 node_id: str, disk: Callable[[Path], int] = disk_free,
                 no_space: Callable[[], int] = lambda: 0) -> None:
        self._dir = data_dir
        self._no_space = no_space
        self._seen_no_space = no_space()
        self.learned_reserve = 0
        self.capacity_bytes = capacity_bytes
        self.reserve_bytes = reserve_bytes
        self._used = used
        self._disk = disk
        self._node_id = node_id
        self.refusals = 0

    def free(self) -> int:
        """Bytes the node may still store (what it reports to the coordinator)."""
        disk = self._disk(self._dir)
        seen = self._no_space()
        if seen != self._seen_no_space:  # a real ENOSPC since: what statvfs shows now is not usable
            self._seen_no_space = seen
            self.learned_reserve = max(0, disk - self.reserve_bytes)
        return max(0, min(self.capacity_bytes - self._used(), disk - self.reserve_bytes - self.learned_reserve))

    def full(self) -> bool:
        return self.free() <= self.capacity_bytes * FULL_RATIO

    def usage(self) -> tuple[int, int]:
        """(used, free), for heartbeats and metrics."""
        return self._used(), self.free()

    def check(self) -> None:
        """Refuse a new write if the node is full (``InsufficientStorage``)."""
        free = self.free()
        if free > self.capacity_bytes * FULL_RATIO:
            return
        self.refusals += 1
        raise insufficient_storage(self._node_id, f"{free} bytes free of {self.capacity_bytes} "
                                                  f"(reserve {self.reserve_bytes} bytes of disk)")


def insufficient_storage(node_id: str, detail: str) -> Unavailable:
    return Unavailable(f"storage node {node_id} is out of disk space ({detail}); nothing was written",
                       kind="InsufficientStorage")


def is_no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def local_storage_error(node_id: str, exc: OSError) -> Unavailable:
    """The typed error for a local disk failure: ``InsufficientStorage`` for a full disk."""
    if is_no_space(exc):
        return insufficient_storage(node_id, "the disk is full")
    return Unavailable(f"local storage error on {node_id}: {exc.strerror or exc}", kind="StorageError")


def no_space_as_error(handler: Callable[[Any], Awaitable[Any]], node_id: str) -> Callable[[Any], Awaitable[Any]]:
    """Wrap an RPC handler so that a full disk (``ENOSPC`` from any store write: a delete's log
    record, a replica's blob, an index update) answers ``InsufficientStorage``, never Internal."""
    async def handle(call: Any) -> Any:
        try:
            return await handler(call)
        except OSError as exc:
            if is_no_space(exc):
                raise insufficient_storage(node_id, "the disk is full") from None
            raise
    return handle
