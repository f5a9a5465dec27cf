"""The store's SQLite index: schema, and the operations the log's records turn into.

Tables (schema version 3; a version-2 index is upgraded in place by adding ``runs``)::

    meta     (name PRIMARY KEY, value)   schema_version, applied_seq, applied_offset
    objects  (bucket_id, key) -> object_id, size, manifest
    extents  (bucket_id, object_id) -> seq, offset, length, crc   (where the sealed chunks are;
             "object_id" is the *extent id*: an object version's own id for its first run)
    runs     (bucket_id, owner, extent_id)   the further extents an object version owns (its
             appended runs, or the parts a zero-copy multipart Complete adopted)

An extent is live while an ``objects`` row names it, or a ``runs`` row of an object version
that an ``objects`` row names.

``applied_seq/offset`` is the log position up to which the records are reflected here; it is
written in the same transaction as the records' effects, so replay (``node.store_recovery``)
applies each record exactly once. ``apply_commit`` and ``apply_remove`` are used both live
(inside the group-commit transaction) and by replay, so both give the same result.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    bucket_id BLOB NOT NULL,
    key TEXT NOT NULL,
    object_id BLOB NOT NULL,
    size INTEGER NOT NULL,
    manifest BLOB NOT NULL,
    PRIMARY KEY (bucket_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_by_id ON objects (bucket_id, object_id);
CREATE TABLE IF NOT EXISTS extents (
    bucket_id BLOB NOT NULL,
    object_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    PRIMARY KEY (bucket_id, object_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS extents_by_seq ON extents (seq);
CREATE TABLE IF NOT EXISTS runs (
    bucket_id BLOB NOT NULL,
    owner BLOB NOT NULL,
    extent_id BLOB NOT NULL,
    PRIMARY KEY (bucket_id, owner, extent_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_by_extent ON runs (bucket_id, extent_id);
"""


@dataclass(frozen=True, slots=True)
class IndexRow:
    key: str
    object_id: bytes
    manifest: bytes


def open_index(path: Path) -> sqlite3.Connection:
    """Open (creating) the index; RuntimeError for another schema version."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # the segment log is the durability point
        old = db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
        if old is not None:
            raise RuntimeError(f"{path}: this index was written by store format 1 (one file per object), "
                               f"which this node no longer reads; move the data directory aside")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema_version', ?), ('applied_seq', 0), ('applied_offset', 0)",
                       (SCHEMA_VERSION,))
        elif row[0] == 2:
            db.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise RuntimeError(f"{path}: index schema version {row[0]} is not supported (this node knows "
                               f"version {SCHEMA_VERSION})")
    except BaseException:
        db.close()
        raise
    return db


def applied(db: sqlite3.Connection) -> tuple[int, int]:
    rows = dict(db.execute("SELECT name, value FROM meta WHERE name IN ('applied_seq', 'applied_offset')"))
    return rows.get("applied_seq", 0), rows.get("applied_offset", 0)


def set_applied(db: sqlite3.Connection, pos: tuple[int, int]) -> None:
    db.execute("UPDATE meta SET value = ? WHERE name = 'applied_seq'", (pos[0],))
    db.execute("UPDATE meta SET value = ? WHERE name = 'applied_offset'", (pos[1],))


class NotApplied(Exception):
    """A conditional COMMIT whose condition did not hold (nothing changed)."""


def apply_commit(db: sqlite3.Connection, f: dict[str, Any]) -> tuple[bytes | None, bool]:
    """Apply a COMMIT record's map. Returns (the object id the key pointed at before, whether
    the key is new). A rewrite (``r``) only moves an extent of the version the key still has,
    and returns (old, whether it moved).

    Optional fields: ``e`` (the extent the location ``s f n c`` is for, when not ``o``: an
    appended run), no location at all (a zero-copy Complete writes no data), ``R`` (the full
    list of further extents ``o`` owns: replaces its ``runs`` rows), ``x`` (``[[key, object
    id]]``: rows removed in the same step, their extents adopted through ``R``; every one must
    still point at that object id, else ``NotApplied`` is *returned* in place of the tuple and
    nothing changes - the same on replay, since rows only change through the log).
    """
    b, k, o = f["b"], f["k"], f["o"]
    e = f.get("e", o)
    row = db.execute("SELECT object_id FROM objects WHERE bucket_id = ? AND key = ?", (b, k)).fetchone()
    old = None if row is None else bytes(row[0])
    if f.get("r"):
        if old != o or (e != o and db.execute("SELECT 1 FROM runs WHERE bucket_id = ? AND owner = ? AND extent_id = ?",
                                               (b, o, e)).fetchone() is None):
            return old, False
    else:
        for xk, xo in f.get("x") or ():
            there = db.execute("SELECT object_id FROM objects WHERE bucket_id = ? AND key = ?", (b, xk)).fetchone()
            if there is None or bytes(there[0]) != xo:
                return NotApplied(xk)  # type: ignore[return-value]
        for xk, _xo in f.get("x") or ():
            db.execute("DELETE FROM objects WHERE bucket_id = ? AND key = ?", (b, xk))
        db.execute("INSERT OR REPLACE INTO objects (bucket_id, key, object_id, size, manifest) VALUES (?, ?, ?, ?, ?)",
                   (b, k, o, f["z"], f["m"]))
        if f.get("R") is not None:
            db.execute("DELETE FROM runs WHERE bucket_id = ? AND owner = ?", (b, o))
            db.executemany("INSERT OR IGNORE INTO runs (bucket_id, owner, extent_id) VALUES (?, ?, ?)",
                           [(b, o, r) for r in f["R"]])
    if "s" in f:
        db.execute("INSERT OR REPLACE INTO extents (bucket_id, object_id, seq, offset, length, crc) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (b, e, f["s"], f["f"], f["n"], f["c"]))
    return old, True if f.get("r") else row is None  # a rewrite: (old, moved)


def apply_rename(db: sqlite3.Connection, f: dict[str, Any]) -> tuple[bool, bytes | None]:
    """Apply a RENAME record's map: move the row of ``k`` to ``d`` if ``k`` still points at
    ``o``. Returns (applied, the object id ``d`` pointed at before or None)."""
    b, src, dst, o = f["b"], f["k"], f["d"], f["o"]
    row = db.execute("SELECT object_id, size FROM objects WHERE bucket_id = ? AND key = ?", (b, src)).fetchone()
    if row is None or bytes(row[0]) != o:
        return False, None
    old = db.execute("SELECT object_id FROM objects WHERE bucket_id = ? AND key = ?", (b, dst)).fetchone()
    db.execute("DELETE FROM objects WHERE bucket_id = ? AND key = ?", (b, src))
    db.execute("INSERT OR REPLACE INTO objects (bucket_id, key, object_id, size, manifest) VALUES (?, ?, ?, ?, ?)",
               (b, dst, o, row[1], f["m"]))
    return True, None if old is None else bytes(old[0])


def apply_remove(db: sqlite3.Connection, bucket_id: bytes, key: str) -> bytes | None:
    row = db.execute("SELECT object_id FROM objects WHERE bucket_id = ? AND key = ?", (bucket_id, key)).fetchone()
    if row is None:
        return None
    db.execute("DELETE FROM objects WHERE bucket_id = ? AND key = ?", (bucket_id, key))
    return bytes(row[0])
