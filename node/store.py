"""The node's local store: an SQLite object index plus one data file per object version.

Responsibility
--------------
Durably keep, per bucket, ``key -> (object_id, manifest bytes)`` and, per object version, the
sealed chunks back to back. The store never looks inside manifests or chunks: callers encode
them (``node.manifest``, ``node.chunk_codec``). Every method blocks (file I/O, fsync, SQLite);
callers run them in ``trio.to_thread.run_sync``. A later issue replaces the one-file-per-object
layout with segment files and group commit; this small class interface is what stays.

Layout under ``data_dir``::

    index.db                          SQLite (WAL, synchronous=FULL): table objects
    incoming/<bucket hex>.<object hex>  a data file being written (never read)
    objects/<bucket hex>/<object hex>   a published data file

Theory of operation (tahoe's incoming/ publish)
-----------------------------------------------
A writer creates its file in ``incoming/`` (O_EXCL), appends, then ``publish`` fsyncs it,
renames it into ``objects/`` and fsyncs the directory; only then does the caller ``commit``
the index row (one SQLite transaction that also returns the previous version's object id, so
the caller deletes the old data file *after* the new row is durable). Hence after a crash at
any point: a file in ``incoming/`` was never acknowledged, and a published file without an
index row is either an uncommitted new version or an old version whose deletion did not run.
``open`` removes both (and logs what it found), and reports index rows whose data file is
missing (which only a lost disk write can cause).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_BUCKET_ID_BYTES = 64
OBJECT_ID_BYTES = 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    bucket_id BLOB NOT NULL,
    key TEXT NOT NULL,
    object_id BLOB NOT NULL,
    size INTEGER NOT NULL,
    manifest BLOB NOT NULL,
    PRIMARY KEY (bucket_id, key)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Recovery:
    """What ``ObjectStore.open`` found and cleaned."""

    incoming_removed: int = 0
    orphans_removed: int = 0
    bytes_removed: int = 0
    missing: int = 0


@dataclass(frozen=True, slots=True)
class IndexRow:
    key: str
    object_id: bytes
    manifest: bytes


def _check_ids(bucket_id: bytes, object_id: bytes) -> None:
    if not isinstance(bucket_id, bytes) or not 1 <= len(bucket_id) <= MAX_BUCKET_ID_BYTES:
        raise ValueError(f"bucket_id must be 1..{MAX_BUCKET_ID_BYTES} bytes")
    if not isinstance(object_id, bytes) or len(object_id) != OBJECT_ID_BYTES:
        raise ValueError(f"object_id must be {OBJECT_ID_BYTES} bytes")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IncomingFile:
    """One data file being written; ``publish`` makes it durable under its final name.

    ``abort`` removes it whatever its state (idempotent), so a caller may call it from a
    ``finally`` on every path that did not commit.
    """

    def __init__(self, store: ObjectStore, bucket_id: bytes, object_id: bytes, path: Path, fd: int) -> None:
        self._store = store
        self.bucket_id = bucket_id
        self.object_id = object_id
        self._path = path
        self._fd: int | None = fd
        self.size = 0
        self.published = False
        self._gone = False

    def write(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("incoming file is closed")
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.size += len(data)

    def publish(self) -> None:
        """fsync, rename into ``objects/``, fsync the directory."""
        if self._fd is None:
            raise ValueError("incoming file is closed")
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        final = self._store.data_path(self.bucket_id, self.object_id)
        self._store._ensure_dir(final.parent)
        os.rename(self._path, final)
        _fsync_dir(final.parent)
        self.published = True
        self._store._account(self.size)

    def abort(self) -> None:
        if self._gone:
            return
        self._gone = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.published:
            self._store.delete_data(self.bucket_id, self.object_id)
        else:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass


class DataFile:
    """A published data file opened for reading (positional reads, thread-safe)."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd: int | None = fd
        self.size = size

    def pread(self, offset: int, n: int) -> bytes:
        if self._fd is None:
            raise ValueError("data file is closed")
        parts: list[bytes] = []
        while n > 0:
            piece = os.pread(self._fd, n, offset)
            if not piece:
                break
            parts.append(piece)
            offset += len(piece)
            n -= len(piece)
        return b"".join(parts)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # a reader abandoned before its stream started
        self.close()


class ObjectStore:
    """See the module docstring. Create with ``ObjectStore.open(data_dir)``."""

    def __init__(self, data_dir: Path, db: sqlite3.Connection, recovery: Recovery,
                 used_bytes: int, object_count: int) -> None:
        self.data_dir = data_dir
        self._db = db
        self._lock = threading.Lock()
        self.recovery = recovery
        self.used_bytes = used_bytes
        self.object_count = object_count
        self._incoming = data_dir / "incoming"
        self._objects = data_dir / "objects"

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, data_dir: Path) -> ObjectStore:
        """Open (creating if needed) the store in ``data_dir`` and clean crash leftovers.

        Raises:
            OSError: the directory cannot be created or written.
            RuntimeError: the index has an unknown schema version.
        """
        data_dir = Path(data_dir)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (data_dir / "incoming").mkdir(mode=0o700, exist_ok=True)
        (data_dir / "objects").mkdir(mode=0o700, exist_ok=True)
        db = sqlite3.connect(data_dir / "index.db", check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise RuntimeError(f"{data_dir / 'index.db'}: index schema version {row[0]} is not "
                                   f"supported (this node knows version {SCHEMA_VERSION})")
            recovery, used = cls._recover(data_dir, db)
            count = db.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
        except BaseException:
            db.close()
            raise
        store = cls(data_dir, db, recovery, used, count)
        log.info("event=store_open data_dir=%s objects=%d used_bytes=%d incoming_removed=%d "
                 "orphans_removed=%d bytes_removed=%d missing=%d", data_dir, count, used,
                 recovery.incoming_removed, recovery.orphans_removed, recovery.bytes_removed,
                 recovery.missing)
        return store

    @staticmethod
    def _recover(data_dir: Path, db: sqlite3.Connection) -> tuple[Recovery, int]:
        incoming_removed = orphans = removed_bytes = used = 0
        for entry in os.scandir(data_dir / "incoming"):
            removed_bytes += entry.stat(follow_symlinks=False).st_size
            os.unlink(entry.path)
            incoming_removed += 1
            log.warning("event=store_leftover_removed where=incoming file=%s", entry.name)
        live = {(bytes(b), bytes(o)) for b, o in db.execute("SELECT bucket_id, object_id FROM objects")}
        seen: set[tuple[bytes, bytes]] = set()
        for bucket_dir in os.scandir(data_dir / "objects"):
            if not bucket_dir.is_dir(follow_symlinks=False):
                log.warning("event=store_unknown_file file=%s", bucket_dir.path)
                continue
            for entry in os.scandir(bucket_dir.path):
                try:
                    ident = (bytes.fromhex(bucket_dir.name), bytes.fromhex(entry.name))
                except ValueError:
                    log.warning("event=store_unknown_file file=%s", entry.path)
                    continue
                size = entry.stat(follow_symlinks=False).st_size
                if ident in live:
                    seen.add(ident)
                    used += size
                else:
                    os.unlink(entry.path)
                    orphans += 1
                    removed_bytes += size
                    log.warning("event=store_leftover_removed where=objects bucket_id=%s object_id=%s "
                                "bytes=%d", bucket_dir.name, entry.name, size)
        missing = live - seen
        for bucket_id, object_id in sorted(missing):
            log.error("event=store_data_missing bucket_id=%s object_id=%s", bucket_id.hex(), object_id.hex())
        if incoming_removed or orphans:
            _fsync_dir(data_dir / "incoming")
        return Recovery(incoming_removed, orphans, removed_bytes, len(missing)), used

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- data files ----------------------------------------------------------------------------
    def data_path(self, bucket_id: bytes, object_id: bytes) -> Path:
        _check_ids(bucket_id, object_id)
        return self._objects / bucket_id.hex() / object_id.hex()

    def create_incoming(self, bucket_id: bytes, object_id: bytes) -> IncomingFile:
        """Start a new data file; FileExistsError if this object id is already being written."""
        _check_ids(bucket_id, object_id)
        path = self._incoming / f"{bucket_id.hex()}.{object_id.hex()}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        return IncomingFile(self, bucket_id, object_id, path, fd)

    def open_data(self, bucket_id: bytes, object_id: bytes) -> DataFile:
        """Open a published data file; FileNotFoundError if it is gone."""
        fd = os.open(self.data_path(bucket_id, object_id), os.O_RDONLY | os.O_CLOEXEC)
        return DataFile(fd, os.fstat(fd).st_size)

    def delete_data(self, bucket_id: bytes, object_id: bytes) -> None:
        """Remove a data file (missing is fine); the directory entry removal is not fsynced:
        a resurrected file has no index row and is removed at the next open."""
        path = self.data_path(bucket_id, object_id)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        self._account(-size)

    def _ensure_dir(self, path: Path) -> None:
        if not path.is_dir():
            path.mkdir(mode=0o700, exist_ok=True)
            _fsync_dir(path.parent)

    def _account(self, delta: int) -> None:
        with self._lock:
            self.used_bytes += delta

    # -- index ---------------------------------------------------------------------------------
    def get(self, bucket_id: bytes, key: str) -> IndexRow | None:
        with self._lock:
            row = self._db.execute("SELECT object_id, manifest FROM objects WHERE bucket_id = ? AND key = ?",
                                   (bucket_id, key)).fetchone()
        return None if row is None else IndexRow(key, bytes(row[0]), bytes(row[1]))

    def commit(self, bucket_id: bytes, key: str, object_id: bytes, size: int, manifest: bytes) -> bytes | None:
        """Make ``key`` point at ``object_id`` (one durable transaction).

        Returns:
            The object id the key pointed at before (its data file is the caller's to delete),
            or None.
        """
        _check_ids(bucket_id, object_id)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT object_id FROM objects WHERE bucket_id = ? AND key = ?",
                                       (bucket_id, key)).fetchone()
                self._db.execute(
                    "INSERT OR REPLACE INTO objects (bucket_id, key, object_id, size, manifest) "
                    "VALUES (?, ?, ?, ?, ?)", (bucket_id, key, object_id, size, manifest))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if row is None:
                self.object_count += 1
        return None if row is None else bytes(row[0])

    def remove(self, bucket_id: bytes, key: str) -> bytes | None:
        """Delete ``key``'s row; returns the object id it pointed at, or None."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT object_id FROM objects WHERE bucket_id = ? AND key = ?",
                                       (bucket_id, key)).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM objects WHERE bucket_id = ? AND key = ?", (bucket_id, key))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if row is not None:
                self.object_count -= 1
        return None if row is None else bytes(row[0])

    def list(self, bucket_id: bytes, *, prefix: str = "", start_after: str = "",
             limit: int = 1000) -> tuple[list[IndexRow], bool]:
        """Rows of one bucket in key order (UTF-8 byte order), after ``start_after``, under ``prefix``.

        Returns:
            (rows, truncated): at most ``limit`` rows, and whether more match.
        """
        rows: list[IndexRow] = []
        truncated = False
        with self._lock:
            cur = self._db.execute(
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
