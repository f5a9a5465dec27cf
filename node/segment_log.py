"""The append side of the store's log segments, with group commit.

Theory of operation
-------------------
Writers append with ``append(build)`` (blocking, from worker threads) or ``try_submit(build,
notify)`` (non-blocking, from the event loop: a small record costs microseconds to write, so
no thread hop is needed to write it). Under ``_lock`` (which fixes the log order)
``build(seq, offset)`` returns the bytes to append at that position and an ``apply`` callable;
the bytes are written to the active segment (page cache only) and an ``_Op`` joins the pending
list, in log order.

Group commit: one dedicated **sync thread** takes *every* pending op, fdatasyncs the segment(s)
they were written to (one fsync for the whole batch: 16 concurrent writers pay about one
fsync, not 16), then hands the batch, in log order, to ``apply_batch`` (the store's single
SQLite transaction), marks the ops done and wakes their writers: ``append`` callers through a
condition variable, ``try_submit`` callers through their ``notify`` (for trio:
``TrioToken.run_sync_soon``). Ops appended while a batch is being synced form the next batch.
Only once its op is done is a write acknowledged, so an acknowledged write is on disk *and*
in the index.

Or the caller syncs: ``try_submit(..., wake=False)`` leaves the op pending without waking the
sync thread, and ``sync_pending()`` (blocking) syncs and applies every pending op in the
calling thread, exactly as one round of the sync thread would. The event loop uses it for
small writes (``node.durable``): an fdatasync there costs the loop ~0.3 ms but saves two
cross-thread wake-ups per write (~0.1 ms of CPU and the run-queue waits of a busy 2-core
machine). Rounds never overlap (``_synclock``), so batches are applied in log order whoever
syncs them.

``try_submit`` never blocks the caller: it returns None (the caller then uses ``append`` in a
worker thread) when the log lock is held by another writer or when the record would start a
new segment (creating a segment fsyncs a file and a directory).

A segment grows to ``max_bytes`` and is then closed (fsynced by the next batch) and a new one
started (its directory entry fsynced before any record goes in). An fsync failure poisons the
log: the page cache state is unknown after a failed fsync, so every later append raises
``OSError`` until the node restarts and replays what is really on disk.

Preallocation: an fdatasync that also has to make a longer file size durable commits the
filesystem's journal (ext4: about twice the time of one that only flushes data pages: 0.26 vs
0.13 ms here for a 4.6 KB record). So the active segment is kept zero-filled ahead of the
write position, as databases do with their WAL: when fewer than ``PREALLOC_LOW`` bytes of
zeros are left, the sync thread writes ``PREALLOC_STEP`` more (under ``_lock``, beyond every
record, so it can never overwrite one) and fdatasyncs them (outside the lock, on a dup of the
fd); records are then written in place (``pwrite`` at the log's size, not ``O_APPEND``), and
their fsyncs flush data only. A writer that outruns it just extends the file as before. The
zero tail is cut off when the segment is closed (rotation: before the next segment exists;
``close``); after a crash, recovery trims it from the newest segment (``store_recovery``:
reported as preallocation, not as a torn write).

A full disk (``ENOSPC``) changes nothing: a write that fails (maybe after a short write: the fd
is ``O_APPEND``, the torn bytes sit at the file's end) is cut off again (``ftruncate`` back to
the recorded size) before the error goes back, so the next record lands exactly where the log
says; a new segment that cannot be created whole is unlinked; a batch whose ``apply_batch``
fails (the index could not be updated: e.g. SQLite's ``database or disk is full``) is cut off
the log together with the ops appended after it (they fail with the same error: none was
acknowledged), so a restart does not replay what its writers were told failed. When the cut is
impossible (the ``ftruncate`` fails, or the batch started in an earlier segment) the log is
poisoned as after an fsync failure. A log opened on a full disk has no active segment yet
(``seq`` is reserved, no file): reads go on, and the first append creates it (or fails with
``ENOSPC``, changing nothing). ``no_space_errors`` counts the ``ENOSPC`` failures (the
node then reports itself full: ``node.capacity``).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.segments import FILE_HEADER_SIZE, KIND_LOG, encode_file_header, segment_name

log = logging.getLogger(__name__)

Build = Callable[[int, int], tuple[bytes, Callable[[Any], Any]]]


class _Op:
    __slots__ = ("apply", "result", "error", "done", "notify", "pos")

    def __init__(self, apply: Callable[[Any], Any], notify: Callable[[], Any] | None = None,
                 pos: tuple[int, int] = (0, 0)) -> None:
        self.apply = apply
        self.pos = pos  # (segment seq, offset) where its bytes start
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.notify = notify

    def outcome(self) -> Any:
        """The apply's result, or the op's error raised (once ``done``)."""
        if self.error is not None:
            raise self.error
        return self.result


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


PREALLOC_STEP = 1024 * 1024  # zeros written per preallocation step
PREALLOC_LOW = 512 * 1024    # a step is due when fewer zeros than this are left ahead
_ZEROS = bytes(PREALLOC_STEP)


class SegmentLog:
    def __init__(self, seg_dir: Path, *, next_seq: Callable[[], int], max_bytes: int,
                 apply_batch: Callable[[list[_Op], tuple[int, int]], None],
                 on_grow: Callable[[int], None]) -> None:
        self._dir = seg_dir
        self._next_seq = next_seq
        self._max = max_bytes
        self._apply_batch = apply_batch
        self._on_grow = on_grow
        self._lock = threading.Lock()        # log order: the active segment, _pending, _rotated
        self._work = threading.Condition()   # wakes the sync thread
        self._cond = threading.Condition()   # wakes append() waiters once their op is done
        self._synclock = threading.Lock()    # one sync round at a time: batches applied in log order
        self._pending: list[_Op] = []
        self._rotated: list[int] = []
        self._failed: str | None = None
        self._stopping = False
        self.fsyncs = 0
        self.batched_ops = 0
        self.last_sync_s = 0.0               # how long the latest round's fdatasync took
        self.no_space_errors = 0             # writes refused because the disk is full
        self.seq = 0
        self._fd = -1
        self._size = 0
        self._file_end = 0                   # the active segment's length (records, then zeros)
        self._prealloc_due = False
        self._prealloc_off = False           # preallocation failed (e.g. full disk): none in this segment
        self._sync_wanted = False            # a writer woke the sync thread for a round
        self.preallocated_bytes = 0
        try:
            self._open_new()
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # a full disk at start: open anyway (reads go on); the first append makes the segment
            self.seq, self._size = self._next_seq(), FILE_HEADER_SIZE
        self._thread = threading.Thread(target=self._sync_loop, name="segment-sync", daemon=True)
        self._thread.start()

    @property
    def position(self) -> tuple[int, int]:
        with self._lock:
            return self.seq, self._size

    def _count(self, exc: BaseException) -> None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self.no_space_errors += 1

    def _open_new(self) -> None:
        if self._fd >= 0 and self._file_end > self._size:
            # the old segment loses its zero tail before the next one exists (recovery trims
            # a tail only in the newest segment)
            os.ftruncate(self._fd, self._size)
            os.fdatasync(self._fd)
            self._file_end = self._size
        seq = self._next_seq()
        path = self._dir / segment_name(KIND_LOG, seq)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._count(exc)
            raise
        try:
            write_all(fd, encode_file_header(KIND_LOG, seq))
            os.fdatasync(fd)
            fsync_dir(self._dir)
        except OSError as exc:  # e.g. ENOSPC: no half-made segment stays behind
            self._count(exc)
            os.close(fd)
            try:
                path.unlink()
            except OSError:
                pass
            raise
        if self._fd >= 0:
            self._rotated.append(self._fd)
        self.seq, self._fd, self._size = seq, fd, FILE_HEADER_SIZE
        self._file_end, self._prealloc_off = FILE_HEADER_SIZE, False
        self._on_grow(FILE_HEADER_SIZE)
        self._prealloc_due = True

    def _write_locked(self, data: bytes, apply: Callable[[Any], Any], notify: Callable[[], Any] | None) -> _Op:
        try:
            pwrite_all(self._fd, data, self._size)
        except OSError as exc:
            self._count(exc)
            self._cut(self._size, exc)  # a short write's torn bytes must not stay at the end
            raise
        op = _Op(apply, notify, (self.seq, self._size))
        self._size += len(data)
        self._file_end = max(self._file_end, self._size)
        self._on_grow(len(data))
        self._pending.append(op)
        if self._file_end - self._size < PREALLOC_LOW and not self._prealloc_off \
                and self._file_end < self._max:
            self._prealloc_due = True  # the sync thread is woken by the caller (or by the next wake)
        return op

    def _cut(self, size: int, cause: BaseException) -> bool:
        """Truncate the active segment back to ``size`` (under ``_lock``); on failure poison the
        log (its end is unknown). True if cut."""
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            self._failed = f"a failed write ({cause}) could not be cut off the log: {exc}"
            return False
        self._file_end = size  # the zeros ahead went too
        if size < self._size:
            self._on_grow(size - self._size)
            self._size = size
        return True

    def _unwind(self, batch: list[_Op], exc: BaseException) -> list[_Op]:
        """After ``apply_batch`` failed: cut the batch, and every op appended after it, off the
        log (they fail with ``exc``); the later ops failed. Poisons the log if it cannot."""
        with self._lock:
            later, self._pending = self._pending, []
            seq, start = batch[0].pos
            if seq != self.seq or self._rotated or not self._cut(start, exc):
                self._failed = self._failed or f"an index update failed ({exc}) and could not be undone"
                self._pending = later  # still synced and applied by the next round
                self._sync_wanted = True
                return []
            try:
                os.fdatasync(self._fd)
            except OSError as err:
                self._failed = str(err)
        for o in later:
            o.error = exc
        return later

    def _wake_sync(self, *, sync: bool = True) -> None:
        """Wake the sync thread: for a sync round (``sync``), or only for preallocation (the
        pending ops are then the event loop's to sync: ``sync_pending``)."""
        with self._work:
            if sync:
                self._sync_wanted = True
            self._work.notify()

    def append(self, build: Build) -> Any:
        """Append ``build(seq, offset)``'s bytes, wait until durable and applied; the apply's result."""
        return self.wait(self.submit(build))

    def wait(self, op: _Op) -> Any:
        """Wait until a submitted op is durable and applied; its apply's result (or error)."""
        with self._cond:
            while not op.done:
                self._cond.wait()
        return op.outcome()

    def submit(self, build: Build) -> _Op:
        """Append ``build(seq, offset)``'s bytes (page cache: a full disk fails here, changing
        nothing) and wake the sync thread; ``wait(op)`` for the outcome."""
        with self._lock:
            if self._failed:
                raise OSError(f"the segment log failed earlier ({self._failed}); restart the node")
            if self._fd < 0:
                self._open_new()
            data, apply = build(self.seq, self._size)
            if self._size > FILE_HEADER_SIZE and self._size + len(data) > self._max:
                self._open_new()
                data, apply = build(self.seq, self._size)
            op = self._write_locked(data, apply, None)
        self._wake_sync()
        return op

    def try_submit(self, build: Build, notify: Callable[[], Any], *, wake: bool = True) -> _Op | None:
        """Append without blocking; ``notify()`` is called (from whichever thread syncs the
        batch) once the op is durable and applied (then ``op.outcome()``). None: the log is
        busy or a new segment is due - use ``append`` in a worker thread instead. ``wake=False``:
        the caller will call ``sync_pending()`` itself rather than wake the sync thread."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._failed:
                raise OSError(f"the segment log failed earlier ({self._failed}); restart the node")
            if self._fd < 0:
                return None
            data, apply = build(self.seq, self._size)
            if self._size > FILE_HEADER_SIZE and self._size + len(data) > self._max:
                return None
            op = self._write_locked(data, apply, notify)
        finally:
            self._lock.release()
        if wake or self._prealloc_due:
            self._wake_sync(sync=wake)
        return op

    def sync_pending(self) -> None:
        """Sync and apply every pending op now, in the calling thread (blocking): one round of
        the sync thread's loop. Each op's outcome is set and its ``notify`` called."""
        with self._synclock:
            with self._lock:
                if not self._pending:
                    return  # another round synced them meanwhile
                batch, self._pending = self._pending, []
                fds, self._rotated = self._rotated + [self._fd], []
                end = (self.seq, self._size)
            self._sync(batch, fds, end)

    def rotate(self) -> int:
        """Close the active segment (if it holds records) and start a new one; the new seq."""
        with self._lock:
            if self._fd >= 0 and self._size > FILE_HEADER_SIZE:
                self._open_new()
            return self.seq

    def _preallocate(self) -> None:
        """One preallocation step (sync thread): zeros beyond the file's end, written under
        ``_lock`` (no record can be written there meanwhile) and fdatasynced outside it."""
        with self._lock:
            self._prealloc_due = False
            if self._fd < 0 or self._failed or self._stopping or self._prealloc_off:
                return
            start = self._file_end
            n = min(PREALLOC_STEP, self._max - start)
            if n <= 0 or start - self._size >= PREALLOC_LOW:
                return
            try:
                pwrite_all(self._fd, _ZEROS[:n], start)
                fd = os.dup(self._fd)  # a rotation may close the segment's fd meanwhile
            except OSError as exc:
                self._prealloc_off = True  # e.g. a full disk: writers extend the file as before
                self._count(exc)
                try:
                    os.ftruncate(self._fd, start)
                except OSError:
                    pass
                log.warning("event=segment_prealloc_failed segment=%d error=%s", self.seq, exc)
                return
            self._file_end = start + n
        try:
            os.fdatasync(fd)
            self.preallocated_bytes += n
        except OSError:
            pass  # the records' own fdatasync makes whatever they need durable
        finally:
            os.close(fd)

    def _sync_loop(self) -> None:
        while True:
            with self._work:
                while True:
                    with self._lock:
                        if self._sync_wanted or self._stopping or self._prealloc_due:
                            break
                    self._work.wait()
            if self._prealloc_due:
                self._preallocate()
            with self._synclock:
                with self._lock:
                    wanted, self._sync_wanted = self._sync_wanted, False
                    if not (wanted and self._pending) and not self._stopping:
                        continue  # synced meanwhile (by the event loop), or only zeros were due
                    batch, self._pending = self._pending, []
                    fds, self._rotated = self._rotated + [self._fd], []
                    end = (self.seq, self._size)
                if not batch:
                    return  # stopping, and nothing left to sync
                self._sync(batch, fds, end)

    def _sync(self, batch: list[_Op], fds: list[int], end: tuple[int, int]) -> None:
        try:
            try:
                started = time.perf_counter()
                for fd in fds:
                    os.fdatasync(fd)
                self.last_sync_s = time.perf_counter() - started
                self.fsyncs += 1
                self.batched_ops += len(batch)
            except OSError as exc:
                self._failed = str(exc)
                for o in batch:
                    o.error = exc
                return
            finally:
                for fd in fds[:-1]:
                    os.close(fd)
            try:
                self._apply_batch(batch, end)
            except BaseException as exc:  # noqa: BLE001 - handed to every writer of the batch
                self._count(exc)
                for o in batch:
                    if o.error is None:
                        o.error = exc
                batch = batch + self._unwind(batch, exc)
        finally:
            with self._cond:
                for o in batch:
                    o.done = True
                self._cond.notify_all()
            for o in batch:
                if o.notify is not None:
                    try:
                        o.notify()
                    except Exception:  # noqa: BLE001 - e.g. the event loop is gone; nobody waits then
                        pass

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._failed = self._failed or "closed"  # no new op; the pending ones are still synced
        self._wake_sync()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._fd >= 0 and self._file_end > self._size:
                try:
                    os.ftruncate(self._fd, self._size)  # no zero tail in a closed segment
                except OSError:
                    pass  # recovery trims it
            for fd in self._rotated + [self._fd]:
                if fd < 0:
                    continue
                try:
                    os.fdatasync(fd)
                except OSError:
                    pass
                os.close(fd)
            self._rotated, self._fd = [], -1
            self._failed = self._failed or "closed"
