"""The files behind the store's objects: ``IncomingFile`` (one object version being written:
in memory while small, spilled to a blob file in ``incoming/`` beyond the store's
``inline_max_bytes``, published into ``segments/``) and ``DataFile`` (an open extent read by
offset). ``node.store`` owns them (``ObjectStore.create_incoming``, ``open_data``) and their
bookkeeping (the writing table, used bytes, the full-disk count); see its docstring.
"""

from __future__ import annotations

import os
import zlib
from typing import TYPE_CHECKING

from node.segment_log import fsync_dir, write_all
from node.segments import FILE_HEADER_SIZE, KIND_BLOB, encode_file_header, segment_name

if TYPE_CHECKING:
    from node.store import ObjectStore


class IncomingFile:
    """One object version being written. ``abort`` removes it whatever its state (idempotent)."""

    def __init__(self, store: ObjectStore, bucket_id: bytes, object_id: bytes) -> None:
        self._store = store
        self.bucket_id = bucket_id
        self.object_id = object_id
        self.size = 0
        self.crc = 0
        self.published = False
        self._buf: bytearray | None = bytearray()
        self._fd: int | None = None
        self.blob_seq: int | None = None
        self._gone = False

    @property
    def inline(self) -> bool:
        return self.blob_seq is None

    def fits(self, n: int) -> bool:
        """Whether writing ``n`` more bytes stays in memory (no file I/O: no thread needed)."""
        return self._buf is not None and len(self._buf) + n <= self._store.inline_max_bytes

    def data(self) -> bytes:
        return bytes(self._buf or b"")

    def write(self, data: bytes) -> None:
        if self._gone or self.published:
            raise ValueError("incoming file is closed")
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        if self._buf is not None:
            self._buf += data
            if len(self._buf) <= self._store.inline_max_bytes:
                return
            self._spill()
            return
        assert self._fd is not None
        try:
            write_all(self._fd, data)
        except OSError as exc:  # the object is aborted: cut the torn bytes so the space is counted right
            self._store._count(exc)
            try:
                os.ftruncate(self._fd, FILE_HEADER_SIZE + self.size - len(data))
            except OSError:
                pass
            raise
        self._store._grow(len(data))

    def _spill(self) -> None:
        self.blob_seq = self._store._new_seq()
        path = self._store.incoming_dir / segment_name(KIND_BLOB, self.blob_seq)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            assert self._buf is not None
            write_all(self._fd, encode_file_header(KIND_BLOB, self.blob_seq) + self._buf)
        except OSError as exc:
            self._store._count(exc)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                path.unlink()  # never counted in used_bytes
            self.blob_seq = None
            raise
        self._store._grow(FILE_HEADER_SIZE + len(self._buf))
        self._buf = None

    def publish(self) -> None:
        """Make the body durable: a blob is fsynced and moved into ``segments/``; a small body
        is made durable by ``commit`` (together with its COMMIT record)."""
        if self._gone or self.published:
            raise ValueError("incoming file is closed")
        if self._fd is not None:
            try:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
                name = segment_name(KIND_BLOB, self.blob_seq)  # type: ignore[arg-type]
                os.rename(self._store.incoming_dir / name, self._store.segments_dir / name)
                fsync_dir(self._store.segments_dir)
            except OSError as exc:  # the caller aborts: the blob goes wherever it is
                self._store._count(exc)
                self.published = (self._store.segments_dir / segment_name(KIND_BLOB, self.blob_seq)).exists()
                if self.published:  # renamed, but its directory entry is not durable: not published
                    self.abort()
                raise
        self.published = True

    def abort(self) -> None:
        if self._gone:
            return
        self._gone = True
        self._store._forget(self)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._buf = None
        if self.blob_seq is not None:
            where = self._store.segments_dir if self.published else self._store.incoming_dir
            self._store._unlink_segment(where / segment_name(KIND_BLOB, self.blob_seq))


class DataFile:
    """One extent opened for reading (positional reads relative to the extent, thread-safe)."""

    def __init__(self, fd: int, base: int, size: int) -> None:
        self._fd: int | None = fd
        self._base = base
        self.size = size

    def pread(self, offset: int, n: int) -> bytes:
        if self._fd is None:
            raise ValueError("data file is closed")
        n = max(0, min(n, self.size - offset))
        parts: list[bytes] = []
        pos = self._base + offset
        while n > 0:
            piece = os.pread(self._fd, n, pos)
            if not piece:
                break
            parts.append(piece)
            pos += len(piece)
            n -= len(piece)
        return b"".join(parts)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # a reader abandoned before its stream started
        self.close()
