"""Sans-I/O on-disk format of the node's segment files (format version 1).

The store (``node.store``) keeps object data in two kinds of append-only segment files, both
starting with the same 32-byte file header, so every file on disk names its format version:

    offset size field
         0    4 magic          b"OZSG"
         4    2 version        u16, SEGMENT_VERSION (= 1)
         6    1 kind           u8: 1 = log segment, 2 = blob segment
         7    1 reserved       0
         8    8 seq            u64: the segment's sequence number (names the file too)
        16   12 reserved       zero
        28    4 crc32          of bytes 0..27

A **log segment** (``log-<seq hex>.ozs``) is a sequence of records, each::

    0  2 magic     b"OR"
    2  1 type      DATA (1) | COMMIT (2) | REMOVE (3) | RENAME (4)
    3  1 reserved  0
    4  4 length    u32 payload length (<= MAX_RECORD_PAYLOAD)
    8  4 crc32     of type byte + payload
   12  n payload

* DATA: the sealed chunks of one small object, exactly as the reader wants them.
* COMMIT: msgpack map {b: bucket id, k: key, o: object id, z: size, m: manifest,
  s: segment seq, f: offset, n: length, c: crc32 of the data, r?: true, e?: extent id,
  R?: [extent ids], x?: [[key, object id]]} - the index row it makes; with ``r`` (a rewrite by
  repair or compaction) it applies only while the key still points at that object id, and only
  moves the extent. ``e``: the location is that of another extent of the object (an appended
  run); ``R``: the further extents the object owns; ``x``: rows removed in the same step (a
  zero-copy Complete adopting its parts); ``s f n c`` are absent when no data was written
  (``node.store_index.apply_commit``).
* REMOVE: msgpack map {b: bucket id, k: key}.
* RENAME: msgpack map {b: bucket id, k: source key, d: destination key, o: object id,
  m: the manifest under the new name} - moves the index row of ``k`` to ``d`` (replacing
  whatever ``d`` held) if ``k`` still points at ``o``, else does nothing. One record, so a
  rename is atomic: after a crash either both keys changed or neither did. No data moves.

The log is the index's write-ahead log: the store appends records, fsyncs the segment (group
commit), and only then applies them to SQLite, which it runs with ``synchronous=NORMAL``; at
open it re-applies the COMMIT/REMOVE records after the last position SQLite recorded. A record
whose header, length or CRC does not check out ends the log (a torn tail: it was never
acknowledged, and the store truncates it away).

A **blob segment** (``blob-<seq hex>.ozs``) holds the sealed chunks of one large object after
the header, with no record framing (its extent is the rest of the file); its COMMIT record
lives in the log.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

SEGMENT_MAGIC = b"OZSG"
SEGMENT_VERSION = 1
KIND_LOG = 1
KIND_BLOB = 2
FILE_HEADER = struct.Struct(">4sHBBQ12x")
FILE_HEADER_SIZE = FILE_HEADER.size + 4  # 32 with the crc

REC_MAGIC = b"OR"
REC_DATA, REC_COMMIT, REC_REMOVE, REC_RENAME = 1, 2, 3, 4
REC_HEADER = struct.Struct(">2sBBII")
REC_HEADER_SIZE = REC_HEADER.size  # 12
MAX_RECORD_PAYLOAD = 256 * 1024 * 1024
_CRC = struct.Struct(">I")


class SegmentFormatError(ValueError):
    """A segment file header is malformed or of an unknown version."""


@dataclass(frozen=True, slots=True)
class FileHeader:
    kind: int
    seq: int


def encode_file_header(kind: int, seq: int) -> bytes:
    head = FILE_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, kind, 0, seq)
    return head + _CRC.pack(zlib.crc32(head))


def decode_file_header(raw: bytes) -> FileHeader:
    if len(raw) < FILE_HEADER_SIZE:
        raise SegmentFormatError("segment file shorter than its header")
    head = raw[:FILE_HEADER.size]
    (crc,) = _CRC.unpack_from(raw, FILE_HEADER.size)
    if zlib.crc32(head) != crc:
        raise SegmentFormatError("segment file header fails its crc32")
    magic, version, kind, _reserved, seq = FILE_HEADER.unpack(head)
    if magic != SEGMENT_MAGIC:
        raise SegmentFormatError("not a segment file (bad magic)")
    if version != SEGMENT_VERSION:
        raise SegmentFormatError(f"segment format version {version} is not supported (this node knows "
                                 f"{SEGMENT_VERSION})")
    if kind not in (KIND_LOG, KIND_BLOB):
        raise SegmentFormatError(f"unknown segment kind {kind}")
    return FileHeader(kind, seq)


def encode_record(rtype: int, payload: bytes) -> bytes:
    if len(payload) > MAX_RECORD_PAYLOAD:
        raise ValueError("record payload too large")
    crc = zlib.crc32(payload, zlib.crc32(bytes([rtype])))
    return REC_HEADER.pack(REC_MAGIC, rtype, 0, len(payload), crc) + payload


def commit_payload(*, bucket_id: bytes, key: str, object_id: bytes, size: int, manifest: bytes,
                   seq: int, offset: int, length: int, crc: int, rewrite: bool = False) -> bytes:
    doc = {"b": bucket_id, "k": key, "o": object_id, "z": size, "m": manifest, "s": seq, "f": offset, "n": length,
           "c": crc}
    if rewrite:
        doc["r"] = True
    return msgpack.packb(doc, use_bin_type=True)


def pack_fields(doc: dict[str, Any]) -> bytes:
    """A COMMIT record's payload from its map (any of the optional fields)."""
    return msgpack.packb(doc, use_bin_type=True)


def remove_payload(*, bucket_id: bytes, key: str) -> bytes:
    return msgpack.packb({"b": bucket_id, "k": key}, use_bin_type=True)


def rename_payload(*, bucket_id: bytes, src: str, dst: str, object_id: bytes, manifest: bytes) -> bytes:
    return msgpack.packb({"b": bucket_id, "k": src, "d": dst, "o": object_id, "m": manifest}, use_bin_type=True)


@dataclass(frozen=True, slots=True)
class Record:
    type: int
    offset: int          # of the record header in the file
    payload_offset: int
    payload: bytes

    @property
    def end(self) -> int:
        return self.payload_offset + len(self.payload)

    def fields(self) -> dict[str, Any]:
        """The decoded map of a COMMIT, REMOVE or RENAME record (ValueError if malformed)."""
        try:
            doc = msgpack.unpackb(self.payload, raw=False)
        except (ValueError, msgpack.ExtraData) as exc:
            raise ValueError(f"undecodable record: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("b"), bytes) or not isinstance(doc.get("k"), str):
            raise ValueError("malformed record map")
        if self.type == REC_COMMIT:
            names = (("o", bytes), ("z", int), ("m", bytes)) + (
                (("s", int), ("f", int), ("n", int), ("c", int)) if "s" in doc else ())
            for name, tp in names:
                if not isinstance(doc.get(name), tp):
                    raise ValueError(f"malformed commit record field {name}")
        elif self.type == REC_RENAME:
            for name, tp in (("d", str), ("o", bytes), ("m", bytes)):
                if not isinstance(doc.get(name), tp):
                    raise ValueError(f"malformed rename record field {name}")
        return doc


def parse_record(buf: bytes, pos: int, base: int) -> Record | None:
    """Parse the record at ``buf[pos:]`` (file offset ``base + pos``); None if it is torn,
    truncated or corrupt (the log ends there)."""
    if len(buf) - pos < REC_HEADER_SIZE:
        return None
    magic, rtype, _res, length, crc = REC_HEADER.unpack_from(buf, pos)
    if magic != REC_MAGIC or rtype not in (REC_DATA, REC_COMMIT, REC_REMOVE, REC_RENAME) or length > MAX_RECORD_PAYLOAD:
        return None
    start = pos + REC_HEADER_SIZE
    if len(buf) - start < length:
        return None
    payload = bytes(buf[start:start + length])
    if zlib.crc32(payload, zlib.crc32(bytes([rtype]))) != crc:
        return None
    return Record(rtype, base + pos, base + start, payload)


def segment_name(kind: int, seq: int) -> str:
    return f"{'log' if kind == KIND_LOG else 'blob'}-{seq:016x}.ozs"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(kind, seq) of a segment file name, or None for anything else."""
    for prefix, kind in (("log-", KIND_LOG), ("blob-", KIND_BLOB)):
        if name.startswith(prefix) and name.endswith(".ozs"):
            digits = name[len(prefix):-4]
            if len(digits) == 16:
                try:
                    return kind, int(digits, 16)
                except ValueError:
                    return None
    return None
