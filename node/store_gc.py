"""What the stale-copy collector (``node.stale_collector``) needs of the store: fences, the
bucket ids held here, one bucket's usage, batched removes, orphan extents. A mixin of
``node.store.ObjectStore`` (its locks, connections and log), kept apart so that the store's
module stays about writing and reading objects.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING

from node.segments import REC_REMOVE, encode_record, remove_payload
from node.store_index import apply_remove

if TYPE_CHECKING:
    from node.segment_log import SegmentLog


class StaleCopyMixin:
    _seqlock: threading.Lock
    _rlock: threading.Lock
    _rdb: sqlite3.Connection
    _writing: dict
    _fenced: set[bytes]
    log: SegmentLog
    object_count: int

    def fence(self, bucket_id: bytes) -> bool:
        """Refuse new writes to ``bucket_id`` (``create_incoming`` raises ``BucketFenced``) until
        ``unfence``; False (and no fence) if a write to it is in flight."""
        with self._seqlock:
            if any(b == bucket_id for b, _ in self._writing):
                return False
            self._fenced.add(bucket_id)
            return True

    def unfence(self, bucket_id: bytes) -> None:
        with self._seqlock:
            self._fenced.discard(bucket_id)

    def fenced(self, bucket_id: bytes) -> bool:
        with self._seqlock:
            return bucket_id in self._fenced

    def bucket_ids(self) -> list[bytes]:
        """Every bucket id with an index row or an extent here (one index seek per bucket)."""
        out: set[bytes] = set()
        with self._rlock:
            for table in ("objects", "extents"):
                after = b""
                while True:
                    row = self._rdb.execute(f"SELECT bucket_id FROM {table} WHERE bucket_id > ? ORDER BY bucket_id "
                                            "LIMIT 1", (after,)).fetchone()
                    if row is None:
                        break
                    after = bytes(row[0])
                    out.add(after)
        return sorted(out)

    def bucket_usage(self, bucket_id: bytes) -> tuple[int, int]:
        """(index rows, extent bytes) of one bucket."""
        with self._rlock:
            rows = self._rdb.execute("SELECT COUNT(*) FROM objects WHERE bucket_id = ?", (bucket_id,)).fetchone()[0]
            size = self._rdb.execute("SELECT COALESCE(SUM(length), 0) FROM extents WHERE bucket_id = ?",
                                     (bucket_id,)).fetchone()[0]
        return rows, size

    def remove_many(self, bucket_id: bytes, keys: list[str]) -> list[bytes]:
        """``remove`` of several keys of one bucket in one log append (one REMOVE record each,
        one fsync); the object ids they pointed at (their data is the caller's to delete)."""
        payloads = [(key, remove_payload(bucket_id=bucket_id, key=key)) for key in keys]

        def apply(db: sqlite3.Connection) -> list[bytes]:
            return [o for o in (apply_remove(db, bucket_id, key) for key, _ in payloads) if o is not None]

        def build(seq: int, offset: int):
            return b"".join(encode_record(REC_REMOVE, p) for _, p in payloads), apply

        old = self.log.append(build)
        self.object_count -= len(old)
        return old

    def orphan_extents(self, bucket_id: bytes, limit: int = 100) -> list[bytes]:
        """Extent ids of ``bucket_id`` that no index row names (left by an interrupted deletion)."""
        with self._rlock:
            rows = self._rdb.execute(
                "SELECT e.object_id FROM extents e WHERE e.bucket_id = ? AND NOT EXISTS (SELECT 1 FROM objects o "
                "WHERE o.bucket_id = e.bucket_id AND o.object_id = e.object_id) AND NOT EXISTS (SELECT 1 FROM runs r "
                "JOIN objects o ON o.bucket_id = r.bucket_id AND o.object_id = r.owner WHERE r.bucket_id = e.bucket_id "
                "AND r.extent_id = e.object_id) LIMIT ?", (bucket_id, limit)).fetchall()
        return [bytes(r[0]) for r in rows]
