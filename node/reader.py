"""Reading one object version back: locate, read and open its sealed chunks.

Blocking (positional file reads and AES-GCM): callers run each method in a worker thread,
one at a time per reader. Chunks are variable-size on disk (compression), so a reader finds
chunk ``i`` by walking the fixed-size headers of the chunks before it, reading only those
34-byte headers; a range therefore reads only the chunks it needs. The walked headers are not
authenticated, but a forged length only lands the reader on bytes that fail to open.

Every chunk returned was authenticated (AES-GCM with the bucket, object and index in the AAD)
and passed its CRC32, and the reader also checks what the manifest promises: the last-chunk
flag exactly on chunk ``chunks - 1`` and the plaintext length of each chunk. A reader reads
one *run* (``node.runs``): for a run that continues an object (an append) the chunks' own
indexes start at ``manifest["first_index"]``; positions given to ``seek`` and returned by
``read`` are relative to the run. Any failure is
``IntegrityError`` kind ``IntegrityError``: bad bytes are never returned.
"""

from __future__ import annotations

from typing import Any

from node.chunk_codec import HEADER_SIZE, ChunkError, open_chunk, parse_header
from node.store import DataFile
from proto.errors import IntegrityError


def _corrupt(message: str) -> IntegrityError:
    return IntegrityError(message, kind="IntegrityError")


class ChunkReader:
    def __init__(self, data: DataFile, *, object_key: bytes, bucket_id: bytes, manifest: dict[str, Any]) -> None:
        self._data = data
        self._key = object_key
        self._bucket_id = bucket_id
        self._object_id: bytes = manifest["object_id"]
        self.chunk_bytes: int = manifest["chunk_bytes"]
        self.chunks: int = manifest["chunks"]
        self.size: int = manifest["size"]
        self._first: int = manifest.get("first_index", 0)  # a run of an appended object starts later
        self._index = 0
        self._offset = 0

    def expected_length(self, index: int) -> int:
        if index < self.chunks - 1:
            return self.chunk_bytes
        return self.size - (self.chunks - 1) * self.chunk_bytes

    def _header(self, index: int):
        raw = self._data.pread(self._offset, HEADER_SIZE)
        try:
            header = parse_header(raw)
        except ChunkError:
            raise _corrupt(f"chunk {index} has a malformed header") from None
        if header.index != self._first + index:
            raise _corrupt(f"chunk {self._first + index} has index {header.index}")
        return header

    def seek(self, index: int) -> None:
        """Position the reader at chunk ``index`` (forward only), reading headers only."""
        if not 0 <= index < self.chunks or index < self._index:
            raise ValueError(f"cannot seek to chunk {index}")
        while self._index < index:
            header = self._header(self._index)
            self._offset += header.sealed_length
            self._index += 1

    def read(self) -> tuple[int, bytes]:
        """Read, authenticate and open the chunk at the current position; advance.

        Returns:
            (index, plaintext).
        """
        index = self._index
        if index >= self.chunks:
            raise ValueError("read past the last chunk")
        header = self._header(index)
        sealed = self._data.pread(self._offset, header.sealed_length)
        if len(sealed) != header.sealed_length:
            raise _corrupt(f"chunk {index} is truncated")
        try:
            plaintext, last = open_chunk(self._key, bucket_id=self._bucket_id, object_id=self._object_id,
                                         expected_index=self._first + index, sealed=sealed)
        except ChunkError as exc:
            raise _corrupt(f"chunk {index} failed verification: {exc}") from None
        if last != (index == self.chunks - 1):
            raise _corrupt(f"chunk {index} has the wrong last-chunk flag")
        if len(plaintext) != self.expected_length(index):
            raise _corrupt(f"chunk {index} holds {len(plaintext)} bytes, expected {self.expected_length(index)}")
        self._offset += header.sealed_length
        self._index += 1
        return index, plaintext

    def close(self) -> None:
        self._data.close()
