"""What the store does at open: check every file, replay the log into the index, clean up.

``recover(data_dir, db)``, in order:

1. removes everything in ``incoming/`` (writes that were never committed);
2. checks every segment file's header (magic, format version, crc): an unknown version or a
   corrupt header stops the node (RuntimeError) rather than guess; an empty file left by a
   crash while creating a segment is removed;
3. replays the log records after the position the index last applied (``applied_seq/offset``),
   in log order and exactly once, in one transaction; the first torn or corrupt record of the
   newest log segment ends the log and the file is truncated there (that write was never
   acknowledged: its fsync had not returned; zeros after it are the log's preallocation, cut
   too but not counted as torn). A corrupt record in an older segment is
   reported and replay of that segment stops;
4. drops ``runs`` rows of versions no key points at, and extents that no index row (nor a live
   version's ``runs`` row) names (old versions whose deletion did not run, replayed
   overwrites and removes), removes blob files no extent names, and reports extents whose
   file is missing or too short (only a lost disk can cause that).

It returns a ``Recovery`` summary that ``ObjectStore.open`` logs and exposes.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from node.segments import (FILE_HEADER_SIZE, KIND_BLOB, KIND_LOG, REC_COMMIT, REC_REMOVE, REC_RENAME,
                           SegmentFormatError,
                           decode_file_header, parse_record, parse_segment_name)
from node.store_index import applied, apply_commit, apply_remove, apply_rename, set_applied

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recovery:
    """What ``ObjectStore.open`` found and cleaned."""

    incoming_removed: int = 0
    orphans_removed: int = 0
    bytes_removed: int = 0
    missing: int = 0
    replayed: int = 0
    truncated_bytes: int = 0
    segments: int = 0
    live_bytes: int = 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(data_dir: Path, db: sqlite3.Connection) -> tuple[Recovery, int, int]:
    """Returns (summary, highest segment seq in use, bytes of all segment files)."""
    incoming_removed = removed_bytes = 0
    for entry in os.scandir(data_dir / "incoming"):
        removed_bytes += entry.stat(follow_symlinks=False).st_size
        os.unlink(entry.path)
        incoming_removed += 1
        log.warning("event=store_leftover_removed where=incoming file=%s", entry.name)
    if incoming_removed:
        _fsync_dir(data_dir / "incoming")

    seg_dir = data_dir / "segments"
    logs: list[tuple[int, Path]] = []
    blobs: dict[int, Path] = {}
    for entry in os.scandir(seg_dir):
        parsed = parse_segment_name(entry.name)
        if parsed is None:
            log.warning("event=store_unknown_file file=%s", entry.path)
            continue
        kind, seq = parsed
        with open(entry.path, "rb") as fh:
            raw = fh.read(FILE_HEADER_SIZE)
        if len(raw) < FILE_HEADER_SIZE:
            log.warning("event=store_leftover_removed where=segments file=%s bytes=%d", entry.name, len(raw))
            removed_bytes += len(raw)
            os.unlink(entry.path)
            continue
        try:
            header = decode_file_header(raw)
        except SegmentFormatError as exc:
            raise RuntimeError(f"{entry.path}: {exc}") from None
        if header.kind != kind or header.seq != seq:
            raise RuntimeError(f"{entry.path}: header says kind {header.kind} seq {header.seq}")
        (logs.append((seq, Path(entry.path))) if kind == KIND_LOG else blobs.__setitem__(seq, Path(entry.path)))
    logs.sort()

    replayed, truncated = _replay(db, logs)

    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM runs WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.bucket_id = runs.bucket_id "
                   "AND o.object_id = runs.owner)")
        db.execute("DELETE FROM extents WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.bucket_id = extents.bucket_id "
                   "AND o.object_id = extents.object_id) AND NOT EXISTS (SELECT 1 FROM runs r WHERE "
                   "r.bucket_id = extents.bucket_id AND r.extent_id = extents.object_id)")
        db.execute("COMMIT")
    except sqlite3.OperationalError as exc:  # e.g. the disk is full: garbage stays until a later start
        if db.in_transaction:
            db.execute("ROLLBACK")
        log.warning("event=store_garbage_kept error=%s (removed at a later start)", exc)
    sizes = {seq: p.stat().st_size for seq, p in logs}
    sizes.update({seq: p.stat().st_size for seq, p in blobs.items()})
    missing = 0
    referenced: set[int] = set()
    for b, o, seq, offset, length in db.execute("SELECT bucket_id, object_id, seq, offset, length FROM extents"):
        referenced.add(seq)
        kind_ok = (seq in blobs) if offset == FILE_HEADER_SIZE else any(s == seq for s, _ in logs)
        if not kind_ok or offset + length > sizes.get(seq, 0):
            missing += 1
            log.error("event=store_data_missing bucket_id=%s object_id=%s segment=%d", bytes(b).hex(),
                      bytes(o).hex(), seq)
    orphans = 0
    for seq, path in sorted(blobs.items()):
        if seq not in referenced:
            removed_bytes += sizes.pop(seq)
            os.unlink(path)
            orphans += 1
            log.warning("event=store_leftover_removed where=segments file=%s", path.name)
    if orphans:
        _fsync_dir(seg_dir)
    live = db.execute("SELECT COALESCE(SUM(length), 0) FROM extents").fetchone()[0]
    top = max([*sizes.keys(), *(s for s, _ in logs), *blobs.keys(), applied(db)[0], 0])
    summary = Recovery(incoming_removed, orphans, removed_bytes, missing, replayed, truncated,
                       len(sizes), live)
    return summary, top, sum(sizes.values())


def _replay(db: sqlite3.Connection, logs: list[tuple[int, Path]]) -> tuple[int, int]:
    applied_seq, applied_offset = applied(db)
    replayed = truncated = 0
    db.execute("BEGIN IMMEDIATE")
    try:
        for i, (seq, path) in enumerate(logs):
            if seq < applied_seq:
                continue
            start = applied_offset if seq == applied_seq else FILE_HEADER_SIZE
            data = path.read_bytes()
            pos = max(start, FILE_HEADER_SIZE)
            while pos < len(data):
                rec = parse_record(data, pos, 0)
                if rec is None:
                    break
                if rec.type in (REC_COMMIT, REC_REMOVE, REC_RENAME):
                    try:
                        fields = rec.fields()
                    except ValueError as exc:
                        log.error("event=store_bad_record segment=%d offset=%d error=%s", seq, pos, exc)
                        rec = None
                        break
                    if rec.type == REC_COMMIT:
                        apply_commit(db, fields)
                    elif rec.type == REC_RENAME:
                        apply_rename(db, fields)
                    else:
                        apply_remove(db, fields["b"], fields["k"])
                    replayed += 1
                pos = rec.end
            if pos < len(data):
                if i == len(logs) - 1:
                    # zeros past the last record are the log's preallocation (node.segment_log),
                    # not a torn write: only what precedes them counts as torn
                    torn = len(data[pos:].rstrip(b"\0"))
                    truncated += torn
                    if torn:
                        log.warning("event=store_torn_tail_truncated segment=%d offset=%d bytes=%d", seq, pos,
                                    torn)
                    else:
                        log.info("event=store_prealloc_trimmed segment=%d offset=%d bytes=%d", seq, pos,
                                 len(data) - pos)
                    fd = os.open(path, os.O_WRONLY)
                    try:
                        os.ftruncate(fd, pos)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                else:
                    log.error("event=store_corrupt_log segment=%d offset=%d bytes_skipped=%d", seq, pos,
                              len(data) - pos)
            set_applied(db, (seq, pos))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if replayed:
        log.info("event=store_replayed records=%d", replayed)
    return replayed, truncated
