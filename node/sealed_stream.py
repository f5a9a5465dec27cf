"""Sans-I/O framing of an object's body: cutting plaintext into chunks, and checking the
sealed stream a replica receives.

``ChunkCutter`` (primary side) turns a plaintext stream of arbitrary pieces into chunks of
exactly ``chunk_bytes`` plus a shorter final one, and knows which one is last by holding data
back: a chunk is released as not-last only once at least one more byte exists after it. An
empty object is one empty last chunk.

The replica stream (body of ``ReplicaPut``) is the sealed chunks back to back, exactly as they
are stored, followed by a trailer::

    4 bytes  big-endian length n (<= MAX_TRAILER_BYTES)
    n bytes  msgpack map {size, etag, chunks, checksum_value?}

The trailer carries what is only known once the whole body has been read; the primary sends it
only when every replica has received every chunk and its own copy is durable, so a replica
that never sees the trailer and a clean end of the body commits nothing.

``SealedStreamParser`` (replica side) cannot decrypt, but it checks the framing as bytes
arrive with ``chunk_codec.parse_header``: indexes in sequence, every chunk but the last of
exactly ``chunk_bytes`` plaintext, exactly one last chunk, then a well-formed trailer. It
returns the bytes to store (the chunks, not the trailer).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from node.chunk_codec import HEADER_SIZE, FormatError, parse_header

MAX_TRAILER_BYTES = 4096
_LEN = struct.Struct(">I")


class StreamError(ValueError):
    """The replica stream is malformed (framing, sequence or trailer)."""


class ChunkCutter:
    def __init__(self, chunk_bytes: int) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be >= 1")
        self.chunk_bytes = chunk_bytes
        self._buf = bytearray()
        self._next = 0
        self._finished = False

    def feed(self, data: bytes) -> list[tuple[int, bytes, bool]]:
        """Add plaintext; return the chunks now known not to be last, as (index, bytes, False)."""
        if self._finished:
            raise ValueError("feed after finish")
        self._buf += data
        out: list[tuple[int, bytes, bool]] = []
        size = self.chunk_bytes
        while len(self._buf) > size:
            out.append((self._next, bytes(self._buf[:size]), False))
            del self._buf[:size]
            self._next += 1
        return out

    def finish(self) -> tuple[int, bytes, bool]:
        """The last chunk (possibly empty for an empty object)."""
        if self._finished:
            raise ValueError("finish called twice")
        self._finished = True
        chunk = (self._next, bytes(self._buf), True)
        self._buf.clear()
        self._next += 1
        return chunk

    @property
    def chunks(self) -> int:
        return self._next


def encode_trailer(fields: dict[str, Any]) -> bytes:
    payload = msgpack.packb(fields, use_bin_type=True)
    if len(payload) > MAX_TRAILER_BYTES:
        raise ValueError("trailer too large")
    return _LEN.pack(len(payload)) + payload


class SealedStreamParser:
    _HEADER, _BODY, _TRAILER = range(3)

    def __init__(self, chunk_bytes: int, first_index: int = 0) -> None:
        self.chunk_bytes = chunk_bytes
        self.first_index = first_index  # an appended run continues its object's chunk indexes
        self.chunks = 0
        self.plaintext_bytes = 0
        self.sealed_bytes = 0
        self._state = self._HEADER
        self._hdr = bytearray()
        self._remaining = 0
        self._last_seen = False
        self._trailer = bytearray()

    def feed(self, data: bytes) -> bytes:
        """Consume received bytes; return those that belong to chunks (to be stored).

        Raises:
            StreamError: malformed header, out-of-sequence index, wrong chunk size, data after
                the trailer or an oversized trailer.
        """
        out = bytearray()
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            if self._state == self._BODY:
                n = min(self._remaining, len(view) - pos)
                out += view[pos:pos + n]
                pos += n
                self._remaining -= n
                if self._remaining == 0:
                    self._state = self._TRAILER if self._last_seen else self._HEADER
            elif self._state == self._HEADER:
                n = min(HEADER_SIZE - len(self._hdr), len(view) - pos)
                self._hdr += view[pos:pos + n]
                out += view[pos:pos + n]
                pos += n
                if len(self._hdr) == HEADER_SIZE:
                    self._start_chunk(bytes(self._hdr))
                    self._hdr.clear()
            else:
                self._trailer += view[pos:]
                pos = len(view)
                if len(self._trailer) > _LEN.size + MAX_TRAILER_BYTES:
                    raise StreamError("replica stream trailer too large")
        self.sealed_bytes += len(out)
        return bytes(out)

    def _start_chunk(self, raw: bytes) -> None:
        try:
            header = parse_header(raw)
        except FormatError as exc:
            raise StreamError(f"bad chunk header: {exc}") from None
        if header.index != self.first_index + self.chunks:
            raise StreamError(f"chunk index {header.index}, expected {self.first_index + self.chunks}")
        if header.last:
            if header.plaintext_length > self.chunk_bytes:
                raise StreamError("last chunk larger than chunk_bytes")
            if header.plaintext_length == 0 and self.chunks != 0:
                raise StreamError("empty last chunk after other chunks")
        elif header.plaintext_length != self.chunk_bytes:
            raise StreamError(f"chunk {header.index} holds {header.plaintext_length} bytes, "
                              f"expected {self.chunk_bytes}")
        self.chunks += 1
        self.plaintext_bytes += header.plaintext_length
        self._last_seen = header.last
        self._remaining = header.ciphertext_length
        self._state = self._BODY

    def finish(self) -> dict[str, Any]:
        """The trailer, once the body has ended. StreamError if the stream stopped early."""
        if self._state != self._TRAILER:
            raise StreamError("replica stream ended before its last chunk")
        if len(self._trailer) < _LEN.size:
            raise StreamError("replica stream ended before its trailer")
        (n,) = _LEN.unpack_from(self._trailer)
        if len(self._trailer) != _LEN.size + n:
            raise StreamError("replica stream trailer has the wrong length")
        try:
            trailer = msgpack.unpackb(bytes(self._trailer[_LEN.size:]), raw=False)
        except (ValueError, msgpack.ExtraData) as exc:
            raise StreamError(f"undecodable trailer: {exc}") from None
        if not isinstance(trailer, dict):
            raise StreamError("trailer is not a map")
        return trailer
