"""Appends (PutObject with x-amz-write-offset-bytes) with real boto3 against real processes:
create at offset 0, appends of several chunks, GET and ranges across runs, the full-object
CRC carried on, InvalidWriteOffset, rename and overwrite of an appended object."""

import base64
import hashlib
import os
import sqlite3
import zlib

import pytest
from botocore.exceptions import ClientError

from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ZONE = "use1-az4"
BUCKET = f"app--{ZONE}--x-s3"
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": ZONE},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}


@pytest.fixture(scope="module")
def s3(cluster):
    s3 = client(cluster, "s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration=DIR_CONFIG)
    return s3


def _code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _replica_rows(cluster, key: str) -> list[tuple[int, int]]:
    """(size, owned runs) of ``key`` in every node's index, read-only (the nodes keep running)."""
    out = []
    for name in sorted(n for n in cluster.daemons if n.startswith("node-")):
        db = sqlite3.connect(f"file:{cluster.data_dir / name / 'index.db'}?mode=ro", uri=True)
        try:
            size, oid = db.execute("SELECT size, object_id FROM objects WHERE key = ?", (key,)).fetchone()
            runs = db.execute("SELECT COUNT(*) FROM runs WHERE owner = ?", (oid,)).fetchone()[0]
        finally:
            db.close()
        out.append((size, runs))
    return out


def test_append_builds_the_concatenation(cluster, s3):
    pieces = [b"first line\n", os.urandom(3 * 1024 * 1024 + 17), b"", b"tail" * 1000]
    data = b""
    etags = set()
    for piece in pieces:
        r = s3.put_object(Bucket=BUCKET, Key="log/a.log", Body=piece, WriteOffsetBytes=len(data))
        data += piece
        assert int(r["ResponseMetadata"]["HTTPHeaders"]["x-amz-object-size"]) == len(data)
        assert r["ChecksumCRC32"] == _crc32(piece)  # the appended bytes' checksum
        etags.add(r["ETag"])
    assert len(etags) == len(pieces)  # the ETag changes on every append
    assert _replica_rows(cluster, "log/a.log") == [(len(data), 3)] * 3  # every replica has every run
    got = s3.get_object(Bucket=BUCKET, Key="log/a.log", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data) and got["ChecksumCRC32"] == _crc32(data)  # full-object CRC
    for first, last in [(0, 5), (5, 20), (10, 3 * 1024 * 1024 + 40), (len(data) - 10, len(data) - 1),
                        (3 * 1024 * 1024 + 20, 3 * 1024 * 1024 + 30)]:
        r = s3.get_object(Bucket=BUCKET, Key="log/a.log", Range=f"bytes={first}-{last}")
        assert r["Body"].read() == data[first:last + 1], (first, last)
    head = s3.head_object(Bucket=BUCKET, Key="log/a.log", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data) and head["ChecksumCRC32"] == _crc32(data)
    attrs = s3.get_object_attributes(Bucket=BUCKET, Key="log/a.log", ObjectAttributes=["ObjectSize", "ETag"])
    assert attrs["ObjectSize"] == len(data)


def test_append_keeps_metadata_and_survives_rename(s3):
    s3.put_object(Bucket=BUCKET, Key="m/x", Body=b"abc", ContentType="text/plain", Metadata={"a": "1"})
    s3.put_object(Bucket=BUCKET, Key="m/x", Body=b"def", WriteOffsetBytes=3)
    s3.rename_object(Bucket=BUCKET, Key="m/y", RenameSource=f"{BUCKET}/m/x")
    r = s3.get_object(Bucket=BUCKET, Key="m/y")
    assert r["Body"].read() == b"abcdef" and r["ContentType"] == "text/plain" and r["Metadata"] == {"a": "1"}
    s3.put_object(Bucket=BUCKET, Key="m/y", Body=b"ghi", WriteOffsetBytes=6)
    assert s3.get_object(Bucket=BUCKET, Key="m/y")["Body"].read() == b"abcdefghi"
    s3.put_object(Bucket=BUCKET, Key="m/y", Body=b"new")  # an overwrite frees the runs
    assert s3.get_object(Bucket=BUCKET, Key="m/y")["Body"].read() == b"new"
    s3.delete_object(Bucket=BUCKET, Key="m/y")


def test_append_offset_errors(s3):
    s3.put_object(Bucket=BUCKET, Key="e/k", Body=b"12345")
    for offset in (0, 4, 6):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=BUCKET, Key="e/k", Body=b"x", WriteOffsetBytes=offset)
        assert _code(e) == "InvalidWriteOffset" and e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=BUCKET, Key="e/missing", Body=b"x", WriteOffsetBytes=3)
    assert _code(e) == "InvalidWriteOffset"
    assert s3.get_object(Bucket=BUCKET, Key="e/k")["Body"].read() == b"12345"  # nothing changed
    s3.put_object(Bucket=BUCKET, Key="e/new", Body=b"zero", WriteOffsetBytes=0)  # offset 0 creates
    assert s3.get_object(Bucket=BUCKET, Key="e/new")["Body"].read() == b"zero"


def test_append_with_sha256_drops_the_full_object_checksum(s3):
    s3.put_object(Bucket=BUCKET, Key="s/k", Body=b"one", ChecksumAlgorithm="SHA256")
    r = s3.put_object(Bucket=BUCKET, Key="s/k", Body=b"two", WriteOffsetBytes=3, ChecksumAlgorithm="SHA256")
    assert r["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(b"two").digest()).decode()
    head = s3.head_object(Bucket=BUCKET, Key="s/k", ChecksumMode="ENABLED")
    assert "ChecksumSHA256" not in head and head["ContentLength"] == 6
    assert s3.get_object(Bucket=BUCKET, Key="s/k")["Body"].read() == b"onetwo"
