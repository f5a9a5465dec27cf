"""The node's local store: append-only segment files with group commit, and an SQLite index.

Responsibility
--------------
Durably keep, per bucket, ``key -> (object_id, manifest bytes)`` and, per object version, the
sealed chunks back to back (an *extent*). The store never looks inside manifests or chunks:
callers encode them (``node.manifest``, ``node.chunk_codec``). Every method blocks (file I/O,
fsync, SQLite); callers run them in ``trio.to_thread.run_sync``.

Public interface (what ``node.objects``, ``node.replica`` and others use; stable):
``open``, ``close``, ``create_incoming`` -> ``IncomingFile`` (``write``, ``publish``,
``abort``), ``commit``, ``get``, ``list``, ``remove``, ``rename``, ``open_data`` -> ``DataFile``
(``pread``, ``size``, ``close``), ``delete_data``, ``used_bytes``, ``object_count``,
``recovery``; plus ``locate``, ``extents``, ``check_extent``, ``rewrite``, ``live_bytes``
for the scrubber, repair and compaction.

Layout under ``data_dir`` (formats: ``node.segments``)::

    index.db                       SQLite (WAL, synchronous=NORMAL): objects, extents, meta
    segments/log-<seq>.ozs         log segments: DATA, COMMIT and REMOVE records
    segments/blob-<seq>.ozs        one large object's sealed chunks
    incoming/blob-<seq>.ozs        a large object being written (never read)

Theory of operation
-------------------
A write's body goes into an ``IncomingFile``: in memory while it is small (at most
``inline_max_bytes``), spilled to a blob file in ``incoming/`` beyond that. ``publish`` makes a
blob durable (fsync, rename into ``segments/``, fsync the directory); a small body stays in
memory. ``commit`` appends to the log, in one write, the DATA record (small objects) and the
COMMIT record naming the key, manifest and extent, then waits for the group commit
(``node.segment_log``): one fdatasync shared by every concurrent writer, then one SQLite
transaction applying the whole batch in log order. ``remove`` appends a REMOVE record the same
way. The log is the durability point; SQLite may lose its last transactions on power loss
(synchronous=NORMAL) and ``open`` re-applies the log after the position SQLite recorded
(``node.store_recovery``), so an acknowledged write survives kill -9 and power loss, and a torn
tail (never acknowledged) is cut off. Nothing is visible before its COMMIT record is durable.

Space: an overwritten or deleted version's extent row goes (``delete_data``); a blob file is
unlinked at once, log space is reclaimed by compaction (``node.compaction``), which moves live
small extents with ``rewrite`` (a conditional COMMIT record) and then deletes old segments.

A full disk changes nothing: every write path fails with ``OSError`` ``ENOSPC`` (never an
``sqlite3`` error: SQLite's ``database or disk is full`` is mapped, and its transaction rolled
back if SQLite did not already) and leaves the store as it was. The log cuts a failed record
or batch off again (``node.segment_log``), a blob that cannot be written is cut back or
discarded with its object, and ``delete_data`` that cannot update the index leaves the old
extent as garbage that the next ``open`` removes. ``no_space_errors`` counts these failures.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.segment_log import SegmentLog, fsync_dir
from node.segments import (FILE_HEADER_SIZE, KIND_BLOB, KIND_LOG, REC_COMMIT, REC_DATA, REC_HEADER_SIZE,
                           REC_REMOVE, REC_RENAME, encode_record, pack_fields, remove_payload,
                           rename_payload, segment_name)
from node.store_files import DataFile, IncomingFile
from node.store_gc import StaleCopyMixin
from node.store_index import (IndexRow, NotApplied, apply_commit, apply_remove, apply_rename, open_index,
                              set_applied)
from node.store_recovery import Recovery, recover

log = logging.getLogger(__name__)

MAX_BUCKET_ID_BYTES = 64
OBJECT_ID_BYTES = 16
DEFAULT_INLINE_MAX_BYTES = 1024 * 1024 + 64 * 1024
DEFAULT_SEGMENT_MAX_BYTES = 64 * 1024 * 1024

__all__ = ["BucketFenced", "DataFile", "Extent", "IncomingFile", "IndexRow", "ObjectStore", "Recovery"]


@dataclass(frozen=True, slots=True)
class Extent:
    bucket_id: bytes
    object_id: bytes
    path: Path
    seq: int
    offset: int
    length: int
    crc: int


class BucketFenced(OSError):
    """A write to a bucket whose local copy is being collected (``ObjectStore.fence``)."""


SQLITE_FULL = 13  # "database or disk is full"


def index_error(exc: sqlite3.Error) -> OSError:
    """The OSError for a failed index update: ``ENOSPC`` for SQLite's "disk is full"."""
    full = (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == SQLITE_FULL or "is full" in str(exc)
    return OSError(errno.ENOSPC if full else errno.EIO, f"the index cannot be updated: {exc}")


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already (it does on SQLITE_FULL)."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _check_ids(bucket_id: bytes, object_id: bytes) -> None:
    if not isinstance(bucket_id, bytes) or not 1 <= len(bucket_id) <= MAX_BUCKET_ID_BYTES:
        raise ValueError(f"bucket_id must be 1..{MAX_BUCKET_ID_BYTES} bytes")
    if not isinstance(object_id, bytes) or len(object_id) != OBJECT_ID_BYTES:
        raise ValueError(f"object_id must be {OBJECT_ID_BYTES} bytes")


class ObjectStore(StaleCopyMixin):
    """See the module docstring. Create with ``ObjectStore.open(data_dir)``."""

    def __init__(self, data_dir: Path, db: sqlite3.Connection, rdb: sqlite3.Connection, recovery: Recovery,
                 *, next_seq: int, used_bytes: int, object_count: int, inline_max_bytes: int,
                 segment_max_bytes: int) -> None:
        self.data_dir = data_dir
        self.segments_dir = data_dir / "segments"
        self.incoming_dir = data_dir / "incoming"
        self.recovery = recovery
        self.used_bytes = used_bytes
        self.object_count = object_count
        self.inline_max_bytes = inline_max_bytes
        self._db = db                       # writes: only the group-commit leader, under _dblock
        self._rdb = rdb                     # reads
        self._dblock = threading.Lock()
        self._rlock = threading.Lock()
        self._seqlock = threading.Lock()
        self._seq = next_seq
        self._writing: dict[tuple[bytes, bytes], IncomingFile] = {}
        self._fenced: set[bytes] = set()   # buckets whose stale copy is being collected (node.stale_gc)
        self._no_space = 0
        self.log = SegmentLog(self.segments_dir, next_seq=self._new_seq, max_bytes=segment_max_bytes,
                              apply_batch=self._apply_batch, on_grow=self._grow)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, data_dir: Path, *, inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES,
             segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES) -> ObjectStore:
        """Open (creating if needed) the store in ``data_dir``: check it, replay the log, clean
        crash leftovers, log what was found.

        Raises:
            OSError: the directory cannot be created or written.
            RuntimeError: an unknown index schema or segment format version.
        """
        data_dir = Path(data_dir)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("incoming", "segments"):
            (data_dir / sub).mkdir(mode=0o700, exist_ok=True)
        db = open_index(data_dir / "index.db")
        rdb = None
        try:
            recovery, next_seq, used = recover(data_dir, db)
            count = db.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
            rdb = sqlite3.connect(data_dir / "index.db", check_same_thread=False, isolation_level=None)
            store = cls(data_dir, db, rdb, recovery, next_seq=next_seq, used_bytes=used, object_count=count,
                        inline_max_bytes=inline_max_bytes, segment_max_bytes=segment_max_bytes)
        except BaseException:
            db.close()
            if rdb is not None:
                rdb.close()
            raise
        with store._dblock:
            try:
                set_applied(db, store.log.position)
            except sqlite3.OperationalError as exc:  # a full disk: the next batch records it
                log.warning("event=store_position_not_recorded error=%s", exc)
        log.info("event=store_open data_dir=%s format=segments-v1 objects=%d used_bytes=%d live_bytes=%d "
                 "segments=%d replayed=%d truncated_bytes=%d incoming_removed=%d orphans_removed=%d "
                 "bytes_removed=%d missing=%d", data_dir, count, store.used_bytes, recovery.live_bytes,
                 recovery.segments, recovery.replayed, recovery.truncated_bytes, recovery.incoming_removed,
                 recovery.orphans_removed, recovery.bytes_removed, recovery.missing)
        return store

    def close(self) -> None:
        self.log.close()
        with self._dblock, self._rlock:
            self._db.close()
            self._rdb.close()

    # -- bookkeeping ---------------------------------------------------------------------------
    def _new_seq(self) -> int:
        with self._seqlock:
            self._seq += 1
            return self._seq

    @property
    def no_space_errors(self) -> int:
        """How many writes failed because the disk is full (ENOSPC), since open."""
        return self._no_space + self.log.no_space_errors

    def _count(self, exc: BaseException) -> None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            with self._seqlock:
                self._no_space += 1

    def _grow(self, delta: int) -> None:
        with self._seqlock:
            self.used_bytes += delta

    def _unlink_segment(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        self._grow(-size)

    def _forget(self, incoming: IncomingFile) -> None:
        with self._seqlock:
            self._writing.pop((incoming.bucket_id, incoming.object_id), None)

    def segment_path(self, seq: int, kind: int) -> Path:
        return self.segments_dir / segment_name(kind, seq)

    # -- writing -------------------------------------------------------------------------------
    def create_incoming(self, bucket_id: bytes, object_id: bytes) -> IncomingFile:
        """Start a new object version; FileExistsError if this object id is already being written."""
        _check_ids(bucket_id, object_id)
        incoming = IncomingFile(self, bucket_id, object_id)
        with self._seqlock:
            if bucket_id in self._fenced:
                raise BucketFenced(bucket_id)
            if (bucket_id, object_id) in self._writing:
                raise FileExistsError("this object id is already being written")
            self._writing[(bucket_id, object_id)] = incoming
        return incoming

    def commit(self, bucket_id: bytes, key: str, object_id: bytes, size: int, manifest: bytes, *,
               extent_id: bytes | None = None, runs: list[bytes] | None = None) -> bytes | None:
        """Make ``key`` point at the published ``object_id`` (durable when this returns).

        ``extent_id`` (an append): the published data is that extent of ``object_id`` (created
        with ``create_incoming(bucket_id, extent_id)``), and ``runs`` is the full list of the
        further extents ``object_id`` owns from now on.

        Returns:
            The object id the key pointed at before (its data is the caller's to delete), or None.
        Raises:
            ValueError: the data was not published; OSError: the disk failed.
        """
        return self.stage_commit(bucket_id, key, object_id, size, manifest, extent_id=extent_id, runs=runs)()

    def stage_commit(self, bucket_id: bytes, key: str, object_id: bytes, size: int, manifest: bytes, *,
                     extent_id: bytes | None = None, runs: list[bytes] | None = None) -> Callable[[], bytes | None]:
        """``commit`` in two steps: write the records now (a full disk fails here, before the
        caller lets anyone else commit) and return ``result``, which blocks until they are
        durable and applied and returns what ``commit`` would have."""
        build, finish = self._commit_plan(bucket_id, key, object_id, size, manifest, extent_id=extent_id, runs=runs)
        op = self.log.submit(build)
        return lambda: finish(self.log.wait(op))

    def try_commit(self, bucket_id: bytes, key: str, object_id: bytes, size: int, manifest: bytes, *,
                   notify: Callable[[], Any], wake: bool = True) -> Callable[[], bytes | None] | None:
        """``commit`` without blocking (from the event loop; a small in-memory object: its record
        is written to the page cache at once). Returns ``result``: once ``notify()`` was called
        (from the thread that synced the batch: the record is durable and applied), ``result()``
        returns what ``commit`` would have, or raises its error. None: the log is busy; use
        ``commit``. ``wake=False``: the caller syncs with ``self.log.sync_pending()`` itself.
        """
        build, finish = self._commit_plan(bucket_id, key, object_id, size, manifest)
        op = self.log.try_submit(build, notify, wake=wake)
        return None if op is None else (lambda: finish(op.outcome()))

    def _commit_plan(self, bucket_id: bytes, key: str, object_id: bytes, size: int, manifest: bytes, *,
                     extent_id: bytes | None = None, runs: list[bytes] | None = None):
        _check_ids(bucket_id, object_id)
        ext_id = object_id if extent_id is None else extent_id
        with self._seqlock:
            incoming = self._writing.get((bucket_id, ext_id))
        if incoming is None or not incoming.published:
            raise ValueError("commit of an object id that is not published")
        data = incoming.data() if incoming.inline else b""

        def build(seq: int, offset: int):
            if incoming.inline:
                loc = (seq, offset + REC_HEADER_SIZE, len(data))
                head = encode_record(REC_DATA, data)
            else:
                loc, head = (incoming.blob_seq, FILE_HEADER_SIZE, incoming.size), b""
            fields = {"b": bucket_id, "k": key, "o": object_id, "z": size, "m": manifest, "s": loc[0],
                      "f": loc[1], "n": loc[2], "c": incoming.crc}
            if extent_id is not None:
                fields["e"] = extent_id
            if runs is not None:
                fields["R"] = list(runs)
            return head + encode_record(REC_COMMIT, pack_fields(fields)), lambda db: apply_commit(db, fields)

        def finish(result: tuple[bytes | None, bool]) -> bytes | None:
            old, created = result
            self._forget(incoming)
            incoming._gone = True
            if created:
                self.object_count += 1
            return old

        return build, finish

    def link(self, bucket_id: bytes, key: str, object_id: bytes, size: int, manifest: bytes, *,
             runs: list[bytes], take: list[tuple[str, bytes]]) -> tuple[bool, bytes | None]:
        """Make ``key`` point at ``object_id`` made only of existing extents (``runs``), removing
        the rows ``take`` (``[(key, object id)]``) in the same record: their extents are adopted,
        not freed. No data is written. Applied only if every ``take`` key still points at its
        object id (atomic, durable when this returns).

        Returns:
            (linked, the object id ``key`` pointed at before: the caller's to delete).
        """
        _check_ids(bucket_id, object_id)
        fields = {"b": bucket_id, "k": key, "o": object_id, "z": size, "m": manifest, "R": list(runs),
                  "x": [[k, o] for k, o in take]}

        def build(seq: int, offset: int):
            return encode_record(REC_COMMIT, pack_fields(fields)), lambda db: apply_commit(db, fields)

        result = self.log.append(build)
        if isinstance(result, NotApplied):
            return False, None
        old, created = result
        self.object_count += (1 if created else 0) - len(take)
        return True, old

    def rewrite(self, bucket_id: bytes, key: str, object_id: bytes, data: bytes, *,
                extent_id: bytes | None = None) -> bool:
        """Store a fresh copy of ``key``'s extent (repair, compaction) if ``key`` still points at
        ``object_id`` (and, for ``extent_id``, the object still owns that extent); True if it
        did. The old extent's space becomes garbage."""
        row = self.get(bucket_id, key)
        if row is None or row.object_id != object_id:
            return False
        crc = zlib.crc32(data)

        def build(seq: int, offset: int):
            fields = {"b": bucket_id, "k": key, "o": object_id, "z": 0, "m": row.manifest, "s": seq,
                      "f": offset + REC_HEADER_SIZE, "n": len(data), "c": crc, "r": True}
            if extent_id is not None and extent_id != object_id:
                fields["e"] = extent_id
            rec = encode_record(REC_COMMIT, pack_fields(fields))
            return encode_record(REC_DATA, data) + rec, lambda db: apply_commit(db, fields)

        old, moved = self.log.append(build)
        return old == object_id and moved

    def remove(self, bucket_id: bytes, key: str) -> bytes | None:
        """Delete ``key`` (durable when this returns); the object id it pointed at, or None."""
        payload = remove_payload(bucket_id=bucket_id, key=key)

        def build(seq: int, offset: int):
            return encode_record(REC_REMOVE, payload), lambda db: apply_remove(db, bucket_id, key)

        old = self.log.append(build)
        if old is not None:
            self.object_count -= 1
        return old

    def rename(self, bucket_id: bytes, src: str, dst: str, object_id: bytes, manifest: bytes) -> tuple[bool, bytes | None]:
        """Move ``src``'s index row to ``dst`` with a new manifest, if ``src`` still points at
        ``object_id`` (one RENAME record: atomic, durable when this returns; no data moves).

        Returns:
            (renamed, the object id ``dst`` pointed at before: its data is the caller's to delete).
        """
        _check_ids(bucket_id, object_id)
        fields = {"b": bucket_id, "k": src, "d": dst, "o": object_id, "m": manifest}
        payload = rename_payload(bucket_id=bucket_id, src=src, dst=dst, object_id=object_id, manifest=manifest)

        def build(seq: int, offset: int):
            return encode_record(REC_RENAME, payload), lambda db: apply_rename(db, fields)

        done, old = self.log.append(build)
        if done and old is not None:
            self.object_count -= 1
        return done, old

    def _apply_batch(self, batch: list, end: tuple[int, int]) -> None:
        """Apply a batch in one transaction; a failure that ends the transaction (SQLite rolls
        back by itself on "disk is full") fails the whole batch with ``index_error``'s OSError."""
        db = self._db
        with self._dblock:
            try:
                db.execute("BEGIN IMMEDIATE")
                for op in batch:
                    try:
                        op.result = op.apply(db)
                    except sqlite3.Error as exc:
                        if not db.in_transaction or index_error(exc).errno == errno.ENOSPC:
                            raise
                        op.error = OSError(f"index update failed: {exc}")
                set_applied(db, end)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(db)
                raise index_error(exc) from exc
            except BaseException:
                _rollback(db)
                raise

    def delete_data(self, bucket_id: bytes, object_id: bytes) -> None:
        """Drop an old version's extents (its own and its runs'; missing is fine) that nothing
        live references any more (an extent another live version adopted stays); a blob file is
        unlinked now, log space is left to compaction."""
        _check_ids(bucket_id, object_id)
        blobs = []
        with self._dblock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                ids = [object_id] + [bytes(r[0]) for r in db.execute(
                    "SELECT extent_id FROM runs WHERE bucket_id = ? AND owner = ?", (bucket_id, object_id))]
                db.execute("DELETE FROM runs WHERE bucket_id = ? AND owner = ?", (bucket_id, object_id))
                for ext in ids:
                    if db.execute("SELECT 1 FROM runs WHERE bucket_id = ? AND extent_id = ? LIMIT 1",
                                  (bucket_id, ext)).fetchone() or (ext != object_id and db.execute(
                                      "SELECT 1 FROM objects WHERE bucket_id = ? AND object_id = ? LIMIT 1",
                                      (bucket_id, ext)).fetchone()):
                        continue  # still referenced by a live object
                    row = db.execute("SELECT seq, offset FROM extents WHERE bucket_id = ? AND object_id = ?",
                                     (bucket_id, ext)).fetchone()
                    if row is None:
                        continue
                    db.execute("DELETE FROM extents WHERE bucket_id = ? AND object_id = ?", (bucket_id, ext))
                    if row[1] == FILE_HEADER_SIZE:
                        blobs.append(row[0])
                db.execute("COMMIT")
            except sqlite3.Error as exc:  # e.g. the disk is full: the write that called us is done
                _rollback(db)
                err = index_error(exc)
                self._count(err)
                log.warning("event=delete_data_deferred bucket_id=%s object_id=%s error=%s (the next start "
                            "removes the garbage)", bucket_id.hex(), object_id.hex(), err.strerror)
                return
            except BaseException:
                _rollback(db)
                raise
        for seq in blobs:
            self._unlink_segment(self.segment_path(seq, KIND_BLOB))

    def holder_of(self, bucket_id: bytes, extent_id: bytes) -> tuple[str, bytes] | None:
        """(key, object id) of the live object version that holds an extent, or None."""
        key = self.key_of(bucket_id, extent_id)
        if key is not None:
            return key, extent_id
        with self._rlock:
            row = self._rdb.execute("SELECT o.key, o.object_id FROM runs r JOIN objects o ON o.bucket_id = r.bucket_id "
                                    "AND o.object_id = r.owner WHERE r.bucket_id = ? AND r.extent_id = ? LIMIT 1",
                                    (bucket_id, extent_id)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    # -- reading -------------------------------------------------------------------------------
    def get(self, bucket_id: bytes, key: str) -> IndexRow | None:
        with self._rlock:
            row = self._rdb.execute("SELECT object_id, manifest FROM objects WHERE bucket_id = ? AND key = ?",
                                    (bucket_id, key)).fetchone()
        return None if row is None else IndexRow(key, bytes(row[0]), bytes(row[1]))

    def locate(self, bucket_id: bytes, object_id: bytes) -> Extent | None:
        with self._rlock:
            row = self._rdb.execute("SELECT seq, offset, length, crc FROM extents WHERE bucket_id = ? AND "
                                    "object_id = ?", (bucket_id, object_id)).fetchone()
        if row is None:
            return None
        seq, offset, length, crc = row
        kind = KIND_BLOB if offset == FILE_HEADER_SIZE else KIND_LOG  # a log record's data starts later
        return Extent(bucket_id, object_id, self.segment_path(seq, kind), seq, offset, length, crc)

    def open_data(self, bucket_id: bytes, object_id: bytes) -> DataFile:
        """Open an object version's extent; FileNotFoundError if it is gone."""
        _check_ids(bucket_id, object_id)
        ext = self.locate(bucket_id, object_id)
        if ext is None:
            raise FileNotFoundError(f"no extent for object {object_id.hex()}")
        fd = os.open(ext.path, os.O_RDONLY | os.O_CLOEXEC)
        return DataFile(fd, ext.offset, ext.length)

    def read_extent(self, ext: Extent) -> bytes:
        data = DataFile(os.open(ext.path, os.O_RDONLY | os.O_CLOEXEC), ext.offset, ext.length)
        try:
            return data.pread(0, ext.length)
        finally:
            data.close()

    def check_extent(self, ext: Extent) -> bool:
        """Re-read an extent and compare its crc32 with the one recorded at write time."""
        try:
            data = self.read_extent(ext)
        except OSError:
            return False
        return len(data) == ext.length and zlib.crc32(data) == ext.crc

    def extents(self, after: tuple[bytes, bytes] = (b"", b""), limit: int = 100) -> list[Extent]:
        """Live extents in (bucket_id, object_id) order after ``after`` (the scrubber's walk)."""
        with self._rlock:
            rows = self._rdb.execute("SELECT bucket_id, object_id FROM extents WHERE (bucket_id, object_id) > (?, ?) "
                                     "ORDER BY bucket_id, object_id LIMIT ?", (after[0], after[1], limit)).fetchall()
        out = []
        for b, o in rows:
            ext = self.locate(bytes(b), bytes(o))
            if ext is not None:
                out.append(ext)
        return out

    def extents_in(self, seq: int) -> list[Extent]:
        """The live extents stored in segment ``seq`` (compaction's work list)."""
        with self._rlock:
            rows = self._rdb.execute("SELECT bucket_id, object_id FROM extents WHERE seq = ?", (seq,)).fetchall()
        return [e for e in (self.locate(bytes(b), bytes(o)) for b, o in rows) if e is not None]

    def drop_segment(self, seq: int) -> int:
        """Delete closed log segment ``seq`` once no extent is in it; its size, or 0 if it is still
        used (or active), or the index could not be checkpointed whole. The index is checkpointed
        first (fsynced): after a power loss it must not need the segment."""
        if seq >= self.log.position[0]:
            return 0
        with self._dblock:
            try:
                if self._db.execute("SELECT 1 FROM extents WHERE seq = ? LIMIT 1", (seq,)).fetchone():
                    return 0
                # PASSIVE: never waits for readers (FULL would, up to the 5 s busy timeout, with
                # every writer held off by _dblock); a reader's snapshot may keep it from
                # copying everything, and then the segment stays for a later pass
                busy, frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:  # e.g. the disk is full: the segment stays
                raise index_error(exc) from exc
            if busy or copied < frames:
                return 0  # the index may still need the segment after a power loss: later
        path = self.segment_path(seq, KIND_LOG)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0
        self._unlink_segment(path)
        fsync_dir(self.segments_dir)
        return size

    def key_of(self, bucket_id: bytes, object_id: bytes) -> str | None:
        with self._rlock:
            row = self._rdb.execute("SELECT key FROM objects WHERE bucket_id = ? AND object_id = ?",
                                    (bucket_id, object_id)).fetchone()
        return None if row is None else row[0]

    def live_bytes(self) -> dict[int, int]:
        """Live extent bytes per segment seq (compaction's input)."""
        with self._rlock:
            return {s: n for s, n in self._rdb.execute("SELECT seq, SUM(length) FROM extents GROUP BY seq")}

    def list(self, bucket_id: bytes, *, prefix: str = "", start_after: str = "",
             limit: int = 1000) -> tuple[list[IndexRow], bool]:
        """Rows of one bucket in key order (UTF-8 byte order), after ``start_after``, under ``prefix``.

        Returns:
            (rows, truncated): at most ``limit`` rows, and whether more match.
        """
        rows: list[IndexRow] = []
        truncated = False
        with self._rlock:
            cur = self._rdb.execute(
                "SELECT key, object_id, manifest FROM objects WHERE bucket_id = ? AND key > ? AND key >= ? "
                "ORDER BY key", (bucket_id, start_after, prefix))
            try:
                for key, object_id, manifest in cur:
                    if not key.startswith(prefix):
                        break  # keys under a prefix are contiguous in this order
                    if len(rows) >= limit:
                        truncated = True
                        break
                    rows.append(IndexRow(key, bytes(object_id), bytes(manifest)))
            finally:
                cur.close()
        return rows, truncated

