"""The KMS audit file: append-only JSON lines, written by group commit.

Responsibility
--------------
``AuditLog`` queues encoded records (``kms.audit`` builds them) and makes them durable: a
committer thread appends every record queued so far with one ``write`` and one ``fsync``, then
goes on with what was queued meanwhile; ``durable(seq)`` waits for the group that carried
record ``seq``. The KMS answers a call only once its record is durable.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import trio

from kms.audit import encode_record

__all__ = ["AuditLog"]

log = logging.getLogger(__name__)


class AuditLog:
    """Append-only audit file written by group commit.

    ``write`` encodes a record and queues it (no I/O on the event loop). A committer thread
    (started by ``run``) loops: it takes every record queued so far, appends them with one
    ``write``, makes them durable with one ``fsync``, reports that to trio, and goes straight on
    with whatever was queued meanwhile; it sleeps only when the queue is empty (then ``write``
    wakes it). ``durable(seq)`` waits until the group that carried record ``seq`` is on disk.
    Records reach the file in ``write`` order. A failed write or fsync fails ``durable`` for the
    records it carried (their callers must not report success); the unwritten rest is retried
    after a pause.
    """

    RETRY_PAUSE_S = 0.1

    def __init__(self, path: Path, file: BinaryIO, *, fsync_interval_s: float = 0.0,
                 observe: Callable[[float], None] | None = None) -> None:
        """Private: use ``AuditLog.open``. ``fsync_interval_s``: minimum pause between fsyncs;
        ``observe``: called with the duration of each group's write + fsync."""
        self.path = path
        self._file = file
        self._fd = file.fileno()
        self._interval = fsync_interval_s
        self._observe = observe
        self._synced = trio.Event()
        # shared with the committer thread, under _mutex:
        self._mutex = threading.Lock()
        self._queue: list[bytes] = []  # encoded records not yet handed to the OS
        self._written = 0  # sequence number of the last record queued
        self._idle = False  # the committer waits for a kick
        self._stop = False
        self._kick = threading.Lock()
        self._kick.acquire()
        # committer thread only:
        self._unwritten = b""  # the part of a group a failed write left behind
        # trio side only:
        self._durable = 0  # sequence number of the last record known to be on disk
        self._failed_upto = 0  # records up to here were in a group whose write or fsync failed
        self._failure: OSError | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.groups = 0  # group commits done (records / groups = batching)

    @classmethod
    def open(cls, path: Path, *, fsync_interval_s: float = 0.0,
             observe: Callable[[float], None] | None = None) -> AuditLog:
        """Open (create, mode 0600) the audit file for appending. Blocking.

        Raises:
            OSError: the file cannot be opened.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return cls(path, os.fdopen(fd, "ab", buffering=0), fsync_interval_s=fsync_interval_s,
                   observe=observe)

    def write(self, record: Mapping[str, Any] | bytes) -> int:
        """Queue one record (a dict, or its line from ``encode_event``) for the next group commit.

        Returns:
            The record's sequence number, for ``durable``.
        """
        line = record if isinstance(record, bytes) else encode_record(record)
        with self._mutex:
            self._queue.append(line)
            self._written += 1
            seq = self._written
            kick, self._idle = self._idle, False
        if kick:
            self._kick.release()
        return seq

    async def durable(self, seq: int) -> None:
        """Wait until record ``seq`` is on disk (needs ``run`` running).

        Raises:
            OSError: the write or fsync of the group that carried it failed.
        """
        while self._durable < seq:
            if self._failure is not None and seq <= self._failed_upto:
                raise self._failure
            await self._synced.wait()

    def _commit(self, data: bytes) -> None:
        """Append ``data`` (all of it) and fsync. Blocking; raises OSError."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        finally:
            self._unwritten = bytes(view)
        os.fsync(self._fd)

    def _committer(self, token: trio.lowlevel.TrioToken) -> None:
        """The committer thread's loop (see the class docstring)."""
        while True:
            with self._mutex:
                if self._stop:
                    return
                if not self._queue and not self._unwritten:
                    self._idle = True
                    data = None
                else:
                    data = self._unwritten + b"".join(self._queue)
                    self._queue = []
                    target = self._written
            if data is None:
                self._kick.acquire()  # write() or stop() releases it
                continue
            begin = time.perf_counter()
            error: OSError | None = None
            try:
                self._commit(data)
            except OSError as exc:
                error = exc
            try:
                token.run_sync_soon(self._group_done, target, error, time.perf_counter() - begin)
            except trio.RunFinishedError:
                return
            if error is not None:
                time.sleep(self.RETRY_PAUSE_S)  # a full or failing disk: do not spin
            elif self._interval:
                time.sleep(self._interval)

    def _group_done(self, target: int, error: OSError | None, seconds: float) -> None:
        """In trio: records up to ``target`` are durable, or their group failed."""
        if error is not None:
            log.error("event=audit_write_failed path=%s error=%s", self.path, error.strerror or error)
            self._failure = error
            self._failed_upto = target
        else:
            self._failure = None
            self._durable = target
            self.groups += 1
            if self._observe is not None:
                self._observe(seconds)
        synced, self._synced = self._synced, trio.Event()
        synced.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the committer thread until cancelled; then wait for the group it is writing."""
        self._thread = threading.Thread(target=self._committer, args=(trio.lowlevel.current_trio_token(),),
                                        name="audit-commit", daemon=True)
        self._thread.start()
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with self._mutex:
                self._stop = True
                kick, self._idle = self._idle, False
            if kick:
                self._kick.release()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._thread.join)

    def close(self) -> None:
        """Write what is queued, fsync and close (after ``run`` ended). Blocking; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            with self._mutex:
                data = self._unwritten + b"".join(self._queue)
                self._queue = []
            self._commit(data)
        except OSError as exc:
            log.error("event=audit_write_failed path=%s error=%s", self.path, exc.strerror or exc)
        finally:
            self._file.close()
