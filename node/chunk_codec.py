"""Chunk codec: the on-disk and over-the-wire format of one sealed object chunk.

Responsibility
--------------
Turn one plaintext chunk of an object into a self-describing, compressed, encrypted and
authenticated byte string, and back. This module is sans-I/O: it never touches files,
sockets, clocks or loggers, and the nonce can be passed in so tests are deterministic.
Together with ``kms/crypto.py`` it is the only module allowed to import ``cryptography``.

Theory of operation
-------------------
Keys. The node holds the bucket key (a 32-byte data key unwrapped by the KMS). Each object
gets its own key, ``derive_object_key(bucket_key, object_id)`` = HKDF-SHA256(ikm=bucket_key,
salt=None, info=b"onezone/object-key/v1" + object_id, length=32). The object id is random
and immutable (never the object's name), so renaming an object never re-encrypts it.

Sealing one chunk (``seal_chunk``):

1. ``crc = zlib.crc32(plaintext)``.
2. ``payload = zstd(plaintext)`` (one frame, content size written) if that is strictly
   smaller than the plaintext, else ``payload = plaintext`` and the compressed flag is clear.
3. A fresh random 12-byte nonce (GCM's 96-bit nonce; per-object keys keep the random-nonce
   collision budget per object, and the u32 index caps an object at 2**32 chunks).
4. ``ciphertext = AES-256-GCM(object_key, nonce, payload, aad)`` (the 16-byte tag is
   appended), where ``aad = header || bucket_id || object_id``. The header is fixed-size and
   the object id is exactly 16 bytes, so this concatenation is unambiguous.

Byte layout (all integers big-endian; ``HEADER_SIZE`` = 34)::

    offset size field
         0    4 magic              b"OZC1"
         4    1 version            u8, FORMAT_VERSION (= 1)
         5    1 flags              u8: bit0 = payload is zstd-compressed, bit1 = last chunk;
                                   other bits must be zero
         6    4 index              u32, position of the chunk in the object (0-based)
        10    4 plaintext length   u32, <= MAX_PLAINTEXT (64 MiB)
        14    4 crc32              u32, zlib.crc32 of the plaintext
        18   12 nonce              AES-GCM nonce
        30    4 ciphertext length  u32, payload length + 16 (the GCM tag)
        34    n ciphertext         AES-256-GCM(payload) || tag, n = ciphertext length

Because the whole header is AAD, the version, index, last flag, compression flag, both
lengths and the CRC are all authenticated: chunks cannot be swapped between objects,
buckets or positions, reordered, or have their "last" marker forged or stripped, and a
truncated object is detectable (the reader expects a chunk with the last flag).

Opening (``open_chunk``) checks, in order: header shape (``FormatError``), exact total length,
the expected index, the GCM tag (``IntegrityError``), then decompresses with an output bound
of the declared plaintext length (a frame claiming or producing more is rejected before any
large allocation, so a "zstd bomb" cannot exhaust memory), then length and CRC32
(``IntegrityError``). No plaintext is ever returned from a chunk that fails a check.

Threading: zstandard compressor/decompressor objects are not safe to share between threads
(seen to crash), so each call creates its own (about 15 microseconds each).
"""

from __future__ import annotations

import hmac
import secrets
import struct
import threading
import zlib
from dataclasses import dataclass

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "FORMAT_VERSION", "HEADER_SIZE", "MAGIC", "MAX_PLAINTEXT", "ChunkError", "ChunkHeader",
    "FormatError", "IntegrityError", "derive_object_key", "open_chunk", "parse_header",
    "seal_chunk",
]  # fmt: skip

MAGIC = b"OZC1"
FORMAT_VERSION = 1
MAX_PLAINTEXT = 64 * 1024 * 1024
KEY_SIZE = 32
OBJECT_ID_SIZE = 16
MAX_BUCKET_ID_SIZE = 255
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_INDEX = 2**32 - 1

FLAG_COMPRESSED = 0x01
FLAG_LAST = 0x02
_KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_LAST

_HEADER = struct.Struct(">4sBBIII12sI")
HEADER_SIZE = _HEADER.size  # 34
_HKDF_INFO_PREFIX = b"onezone/object-key/v1"
_HKDF_ZERO_SALT = bytes(32)  # RFC 5869: an absent salt is HashLen zero bytes
_ZSTD_UNKNOWN_SIZE = 2**64 - 1  # ZSTD_CONTENTSIZE_UNKNOWN
_ZSTD_MIN_LEVEL = -(1 << 17)


class ChunkError(Exception):
    """A sealed chunk could not be opened. Never carries key material."""


class IntegrityError(ChunkError):
    """The chunk is well-formed but not authentic: tag, index, length or CRC mismatch,
    truncated data, wrong key, or a chunk from another object, bucket or position."""


class FormatError(ChunkError):
    """The header is malformed: bad magic, unknown version or flags, impossible lengths."""


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    """The parsed, shape-checked fixed header of a sealed chunk (not yet authenticated).

    Attributes:
        version: format version (always FORMAT_VERSION once parsed).
        compressed: the payload is a zstd frame.
        last: this is the final chunk of its object.
        index: 0-based chunk position.
        plaintext_length: length of the plaintext after decompression.
        crc32: zlib.crc32 of the plaintext.
        nonce: 12-byte AES-GCM nonce.
        ciphertext_length: bytes following the header (payload plus 16-byte tag).
    """

    version: int
    compressed: bool
    last: bool
    index: int
    plaintext_length: int
    crc32: int
    nonce: bytes
    ciphertext_length: int

    @property
    def sealed_length(self) -> int:
        """Total length of the sealed chunk: HEADER_SIZE + ciphertext_length."""
        return HEADER_SIZE + self.ciphertext_length


def derive_object_key(bucket_key: bytes, object_id: bytes) -> bytes:
    """Derive the per-object AES-256 key from the bucket key.

    Args:
        bucket_key: the bucket's 32-byte plaintext data key.
        object_id: the object's random, immutable 16-byte id.

    Returns:
        32 bytes: HKDF-SHA256(bucket_key, salt=None, info=b"onezone/object-key/v1" + object_id).

    Raises:
        ValueError: bucket_key is not 32 bytes or object_id is not 16 bytes.
    """
    _check_bytes("bucket_key", bucket_key, KEY_SIZE)
    _check_bytes("object_id", object_id, OBJECT_ID_SIZE)
    # RFC 5869 with SHA-256, an absent salt (HashLen zero bytes) and L = HashLen = 32, so the
    # expand step is one block: the same bytes as cryptography's HKDF, without building its
    # objects on every object (8 us -> 1 us; tests/unit/node/test_chunk_codec.py compares them)
    prk = hmac.digest(_HKDF_ZERO_SALT, bytes(bucket_key), "sha256")
    return hmac.digest(prk, _HKDF_INFO_PREFIX + bytes(object_id) + b"\x01", "sha256")


def seal_chunk(
    object_key: bytes,
    *,
    bucket_id: bytes,
    object_id: bytes,
    index: int,
    last: bool,
    plaintext: bytes,
    nonce: bytes | None = None,
    compress_level: int = 1,
) -> bytes:
    """Compress (when it helps), encrypt and authenticate one chunk.

    Args:
        object_key: 32-byte key from ``derive_object_key``.
        bucket_id: the bucket's id (1..255 bytes), bound into the AAD.
        object_id: the object's 16-byte id, bound into the AAD.
        index: 0-based chunk position, 0 <= index < 2**32.
        last: True for the final chunk of the object (an empty object is one empty last chunk).
        plaintext: up to MAX_PLAINTEXT (64 MiB) bytes.
        nonce: 12-byte nonce; None (the default, and the only safe choice outside tests)
            draws a fresh random one. Never reuse a nonce under the same key.
        compress_level: zstd level (default 1).

    Returns:
        The sealed chunk: HEADER_SIZE header bytes followed by ciphertext and tag.

    Raises:
        ValueError: a key, id, nonce, index, level or plaintext length is out of range.
    """
    _check_bytes("object_key", object_key, KEY_SIZE)
    _check_ids(bucket_id, object_id)
    _check_index("index", index)
    if not isinstance(plaintext, (bytes, bytearray, memoryview)):
        raise TypeError("plaintext must be bytes-like")
    plaintext = bytes(plaintext)
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError(f"plaintext is {len(plaintext)} bytes; the limit is {MAX_PLAINTEXT}")
    if isinstance(compress_level, bool) or not isinstance(compress_level, int):
        raise TypeError("compress_level must be an int")
    if not _ZSTD_MIN_LEVEL <= compress_level <= zstandard.MAX_COMPRESSION_LEVEL:
        raise ValueError(f"compress_level {compress_level} is outside zstd's range")
    if nonce is None:
        nonce = secrets.token_bytes(NONCE_SIZE)
    _check_bytes("nonce", nonce, NONCE_SIZE)

    compressed = _compressor(compress_level).compress(plaintext)
    is_compressed = len(compressed) < len(plaintext)
    payload = compressed if is_compressed else plaintext
    return _seal_payload(
        object_key,
        bucket_id=bucket_id,
        object_id=object_id,
        index=index,
        last=last,
        compressed=is_compressed,
        plaintext_length=len(plaintext),
        crc=zlib.crc32(plaintext),
        payload=payload,
        nonce=bytes(nonce),
    )


def parse_header(data: bytes) -> ChunkHeader:
    """Parse and shape-check the fixed header at the start of ``data``.

    Only the first HEADER_SIZE bytes are read, so a streaming reader can read the header,
    then ``header.ciphertext_length`` more bytes. The header is not authenticated until
    ``open_chunk`` succeeds; use it only to size reads.

    Args:
        data: at least HEADER_SIZE bytes.

    Returns:
        The parsed ChunkHeader.

    Raises:
        FormatError: too short, bad magic, unknown version or flag bits, or lengths that
            this format can never produce.
    """
    if len(data) < HEADER_SIZE:
        raise FormatError(f"chunk header needs {HEADER_SIZE} bytes, got {len(data)}")
    magic, version, flags, index, pt_len, crc, nonce, ct_len = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise FormatError("bad chunk magic")
    if version != FORMAT_VERSION:
        raise FormatError(f"unknown chunk format version {version}")
    if flags & ~_KNOWN_FLAGS:
        raise FormatError(f"unknown chunk flags 0x{flags:02x}")
    compressed = bool(flags & FLAG_COMPRESSED)
    if pt_len > MAX_PLAINTEXT:
        raise FormatError(f"declared plaintext length {pt_len} exceeds {MAX_PLAINTEXT}")
    if ct_len < TAG_SIZE:
        raise FormatError(f"ciphertext length {ct_len} is shorter than the GCM tag")
    payload_len = ct_len - TAG_SIZE
    # The sealer keeps compression only when it is strictly smaller; raw payloads are the
    # plaintext itself. Anything else cannot come from this codec.
    if compressed and payload_len >= pt_len:
        raise FormatError("compressed payload is not smaller than the plaintext")
    if not compressed and payload_len != pt_len:
        raise FormatError("raw payload length differs from the plaintext length")
    return ChunkHeader(
        version=version,
        compressed=compressed,
        last=bool(flags & FLAG_LAST),
        index=index,
        plaintext_length=pt_len,
        crc32=crc,
        nonce=nonce,
        ciphertext_length=ct_len,
    )


def open_chunk(
    object_key: bytes,
    *,
    bucket_id: bytes,
    object_id: bytes,
    expected_index: int,
    sealed: bytes,
) -> tuple[bytes, bool]:
    """Authenticate, decrypt, decompress and verify one sealed chunk.

    Args:
        object_key: 32-byte key from ``derive_object_key``.
        bucket_id: the bucket id the chunk must have been sealed for.
        object_id: the 16-byte object id the chunk must have been sealed for.
        expected_index: the position the caller is reading.
        sealed: exactly one sealed chunk (header plus ciphertext, nothing more).

    Returns:
        (plaintext, last): the verified plaintext and the authenticated last-chunk flag.

    Raises:
        FormatError: the header is malformed or of an unknown version.
        IntegrityError: wrong length, wrong index, bad tag (tampered data, wrong key, other
            bucket or object), undecodable or oversized zstd payload, length or CRC mismatch.
        ValueError: the key, ids or expected_index are out of range (caller error).
    """
    _check_bytes("object_key", object_key, KEY_SIZE)
    _check_ids(bucket_id, object_id)
    _check_index("expected_index", expected_index)
    sealed = bytes(sealed)
    header = parse_header(sealed)
    if len(sealed) != header.sealed_length:
        raise IntegrityError(
            f"sealed chunk is {len(sealed)} bytes, header says {header.sealed_length}"
        )
    if header.index != expected_index:
        raise IntegrityError(f"chunk index {header.index}, expected {expected_index}")
    aad = sealed[:HEADER_SIZE] + bytes(bucket_id) + bytes(object_id)
    try:
        payload = AESGCM(bytes(object_key)).decrypt(header.nonce, sealed[HEADER_SIZE:], aad)
    except InvalidTag:
        raise IntegrityError("chunk authentication failed") from None
    if header.compressed:
        plaintext = _decompress_bounded(payload, header.plaintext_length)
    else:
        plaintext = payload
    if len(plaintext) != header.plaintext_length:
        raise IntegrityError("chunk plaintext length mismatch")
    if zlib.crc32(plaintext) != header.crc32:
        raise IntegrityError("chunk CRC32 mismatch")
    return plaintext, header.last


# -- internals --------------------------------------------------------------------------


def _seal_payload(
    object_key: bytes,
    *,
    bucket_id: bytes,
    object_id: bytes,
    index: int,
    last: bool,
    compressed: bool,
    plaintext_length: int,
    crc: int,
    payload: bytes,
    nonce: bytes,
) -> bytes:
    """Encrypt an already-prepared payload under a header built from the given fields.

    Does no consistency checking between the fields and the payload; ``seal_chunk`` is the
    public entry point. Tests use this to build authentic but malicious chunks (e.g. a zstd
    bomb whose declared length is smaller than its real decompressed size).
    """
    flags = (FLAG_COMPRESSED if compressed else 0) | (FLAG_LAST if last else 0)
    header = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        flags,
        index,
        plaintext_length,
        crc & 0xFFFFFFFF,
        nonce,
        len(payload) + TAG_SIZE,
    )
    aad = header + bytes(bucket_id) + bytes(object_id)
    return header + AESGCM(bytes(object_key)).encrypt(nonce, payload, aad)


def _decompress_bounded(payload: bytes, limit: int) -> bytes:
    """Decompress exactly one zstd frame producing at most ``limit`` bytes.

    zstandard's one-shot ``decompress`` ignores ``max_output_size`` when the frame header
    declares a content size and allocates that size instead, so the declared size is checked
    against ``limit`` first; frames without a declared size are bounded by
    ``max_output_size``. Trailing data after the frame is rejected.
    """
    if limit <= 0:  # max_output_size=0 would mean "unbounded"; parse_header rules this out
        raise IntegrityError("compressed chunk with empty plaintext")
    try:
        params = zstandard.get_frame_parameters(payload)
    except zstandard.ZstdError:
        raise IntegrityError("chunk payload is not a zstd frame") from None
    if params.content_size != _ZSTD_UNKNOWN_SIZE and params.content_size != limit:
        raise IntegrityError("zstd frame size differs from the declared plaintext length")
    try:
        return _decompressor().decompress(payload, max_output_size=limit, allow_extra_data=False)
    except zstandard.ZstdError:
        _zstd_local.__dict__.pop("d", None)  # a fresh context after a failure
        raise IntegrityError("chunk payload failed to decompress within its bound") from None


# zstd contexts cost 15-30 us to create (more than compressing 4 KiB) and must not be shared
# between threads: one compressor per level and one decompressor per thread, reused.
_zstd_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    by_level = _zstd_local.__dict__.setdefault("c", {})
    c = by_level.get(level)
    if c is None:
        c = by_level[level] = zstandard.ZstdCompressor(level=level)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = _zstd_local.__dict__.get("d")
    if d is None:
        d = _zstd_local.d = zstandard.ZstdDecompressor()
    return d


def _check_bytes(name: str, value: object, size: int) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes")
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")


def _check_ids(bucket_id: object, object_id: object) -> None:
    if not isinstance(bucket_id, (bytes, bytearray, memoryview)):
        raise TypeError("bucket_id must be bytes")
    if not 1 <= len(bucket_id) <= MAX_BUCKET_ID_SIZE:
        raise ValueError(f"bucket_id must be 1..{MAX_BUCKET_ID_SIZE} bytes")
    _check_bytes("object_id", object_id, OBJECT_ID_SIZE)


def _check_index(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if not 0 <= value <= MAX_INDEX:
        raise ValueError(f"{name} {value} is outside 0..{MAX_INDEX}")
