"""node/sealed_stream.py and node/manifest.py: chunk cutting, the replica stream framing, meta checks."""

from __future__ import annotations

import random

import pytest

from node.chunk_codec import seal_chunk
from node.manifest import (
    decode_manifest,
    encode_manifest,
    finish_manifest,
    parse_replica_meta,
    parse_user_fields,
    public_meta,
    start_manifest,
)
from node.sealed_stream import ChunkCutter, SealedStreamParser, StreamError, encode_trailer
from proto import errors

KEY = bytes(32)
BID = bytes(16)
OID = bytes(range(16))


def cut(data: bytes, chunk: int, piece: int) -> list[tuple[int, bytes, bool]]:
    c = ChunkCutter(chunk)
    out = []
    for i in range(0, len(data), piece):
        out += c.feed(data[i:i + piece])
    out.append(c.finish())
    return out


@pytest.mark.parametrize("size", [0, 1, 9, 10, 11, 20, 35])
@pytest.mark.parametrize("piece", [1, 3, 10, 64])
def test_cutter_sizes_and_last_flag(size, piece):
    data = bytes(random.Random(size).randbytes(size))
    chunks = cut(data, 10, piece)
    assert b"".join(c[1] for c in chunks) == data
    assert [c[0] for c in chunks] == list(range(len(chunks)))
    assert [c[2] for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(len(c[1]) == 10 for c in chunks[:-1])
    assert len(chunks) == max(1, -(-size // 10))  # an empty object is one empty chunk


def sealed_stream(plain: bytes, chunk: int) -> tuple[bytes, int]:
    parts = [seal_chunk(KEY, bucket_id=BID, object_id=OID, index=i, last=last, plaintext=p)
             for i, p, last in cut(plain, chunk, 1000)]
    return b"".join(parts), len(parts)


@pytest.mark.parametrize("size", [0, 5, 100, 250])
def test_parser_accepts_any_split_and_returns_only_chunks(size):
    plain = random.Random(1).randbytes(size)
    stream, n = sealed_stream(plain, 100)
    trailer = encode_trailer({"size": size, "etag": "e", "chunks": n})
    wire = stream + trailer
    for step in (1, 7, 34, 4096):
        p = SealedStreamParser(100)
        kept = b"".join(p.feed(wire[i:i + step]) for i in range(0, len(wire), step))
        assert kept == stream
        assert p.finish() == {"size": size, "etag": "e", "chunks": n}
        assert (p.chunks, p.plaintext_bytes) == (n, size)


def test_parser_rejects_bad_streams():
    stream, n = sealed_stream(b"x" * 250, 100)
    trailer = encode_trailer({"size": 250})
    p = SealedStreamParser(100)
    p.feed(stream)
    with pytest.raises(StreamError):
        p.finish()  # no trailer
    p = SealedStreamParser(100)
    p.feed(stream[:-5])
    with pytest.raises(StreamError):
        p.finish()  # ended inside the last chunk
    with pytest.raises(StreamError):
        SealedStreamParser(50).feed(stream)  # chunk larger than announced chunk_bytes
    with pytest.raises(StreamError):
        SealedStreamParser(100).feed(b"XXXX" + stream[4:])  # bad magic
    second_only = seal_chunk(KEY, bucket_id=BID, object_id=OID, index=1, last=True, plaintext=b"a")
    with pytest.raises(StreamError):
        SealedStreamParser(100).feed(second_only)  # out of sequence
    p = SealedStreamParser(100)
    p.feed(stream + trailer + b"extra")
    with pytest.raises(StreamError):
        p.finish()
    with pytest.raises(StreamError):
        SealedStreamParser(100).feed(stream + b"\x00\x00\x00\x05" + b"\x00" * 5000)


def test_user_fields_validation():
    u = parse_user_fields({"content_type": "text/plain", "user_meta": {"a": "1"}, "checksum_algorithm": "CRC32"})
    assert u == {"content_type": "text/plain", "user_meta": {"a": "1"}, "checksum_algorithm": "CRC32"}
    assert parse_user_fields(None)["content_type"] == "binary/octet-stream"
    for bad in ({"nope": 1}, {"content_type": 5}, {"user_meta": {"a": 1}}, {"checksum_algorithm": "MD5"},
                {"checksum_value": "x"}, {"expires": True}, "str"):
        with pytest.raises(errors.InvalidRequest) as ei:
            parse_user_fields(bad)
        assert ei.value.kind == "InvalidArgument"
    with pytest.raises(errors.InvalidRequest) as ei:
        parse_user_fields({"user_meta": {"k": "v" * 2048}})
    assert ei.value.kind == "MetadataTooLarge"


def test_manifest_round_trip_and_public_view():
    start = start_manifest(key="k", user=parse_user_fields({"checksum_algorithm": "SHA256", "checksum_value": "x"}),
                           object_id=OID, key_gen=1, chunk_bytes=100, last_modified=5.0,
                           sse_algorithm="AES256", kms_key_arn=None)
    assert "checksum_value" not in start and "kms_key_arn" not in start
    assert parse_replica_meta(start) == start
    m = finish_manifest(start, size=3, etag="abc", chunks=1, checksum_value="y")
    assert decode_manifest(encode_manifest(m)) == m
    pub = public_meta(m)
    assert "object_id" not in pub and "v" not in pub and pub["checksum_value"] == "y"
    for bad in (dict(start, object_id=b"x"), dict(start, extra=1), dict(start, key=""), dict(start, chunk_bytes=0)):
        with pytest.raises(errors.InvalidRequest):
            parse_replica_meta(bad)
    with pytest.raises(errors.Internal):
        decode_manifest(encode_manifest(dict(m, v=99)))
