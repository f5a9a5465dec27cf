"""The S3 API beyond put/get, with real boto3 (sessions on and off) against real processes:
ListObjectsV2/ListObjects with directory-bucket rules, DeleteObjects, multipart (low-level calls,
errors, the transfer manager's upload_file/download_file), CopyObject and UploadPartCopy across
buckets with different keys, GetObjectAttributes."""

import base64
import hashlib
import os
import zlib

import pytest
from botocore.exceptions import ClientError

from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ZONE = "use1-az4"
BUCKET = f"api--{ZONE}--x-s3"
OTHER = f"api-other--{ZONE}--x-s3"
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": ZONE},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3(cluster):
    s3 = client(cluster, "s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration=DIR_CONFIG)
    s3.create_bucket(Bucket=OTHER, CreateBucketConfiguration=DIR_CONFIG)
    kms = client(cluster, "kms")
    key = kms.create_key(Description="api-other")["KeyMetadata"]
    s3.put_bucket_encryption(Bucket=OTHER, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]},
        "BucketKeyEnabled": True}]})
    s3.other_key_arn = key["Arn"]
    return s3


@pytest.fixture(scope="module")
def iam_s3(cluster):
    """A client that opts out of sessions: every call IAM-signed (service s3)."""
    return client(cluster, "s3", signature_version="s3v4")


def _code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def test_list_objects_v2_directory_rules(s3):
    keys = ["ls/a.txt", "ls/b b+ü.txt", "ls/sub/c.txt", "ls/sub/d.txt", "ls/sub2/e/f.txt", "ls/z%2F.txt"]
    for k in keys:
        s3.put_object(Bucket=BUCKET, Key=k, Body=k.encode())
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="ls/", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["ls/a.txt", "ls/b b+ü.txt", "ls/z%2F.txt"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["ls/sub/", "ls/sub2/"]
    assert r["KeyCount"] == 5 and r["IsTruncated"] is False
    assert r["Contents"][0]["StorageClass"] == "EXPRESS_ONEZONE" and r["Contents"][0]["Size"] == 8
    assert r["Contents"][0]["ETag"] == s3.head_object(Bucket=BUCKET, Key="ls/a.txt")["ETag"]
    # no delimiter: every key, in order, paginated two at a time
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="ls/",
                                                              PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3
    assert [o["Key"] for p in pages for o in p["Contents"]] == sorted(keys, key=lambda k: k.encode())
    # paginating a delimited listing: prefixes count toward max-keys
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="ls/", Delimiter="/",
                                                              PaginationConfig={"PageSize": 1}))
    got = [o.get("Key") or o.get("Prefix") for p in pages for o in p.get("Contents", []) + p.get("CommonPrefixes", [])]
    assert got == ["ls/a.txt", "ls/b b+ü.txt", "ls/sub/", "ls/sub2/", "ls/z%2F.txt"]
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="ls/", FetchOwner=True, MaxKeys=1)
    assert r["Contents"][0]["Owner"]["ID"] and r["IsTruncated"] and r["NextContinuationToken"]
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=BUCKET, Prefix="ls")
    assert _code(e) == "InvalidRequest"
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=BUCKET, Prefix="ls/", Delimiter="*")
    assert _code(e) == "InvalidArgument"
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=BUCKET, ContinuationToken="!!!not-a-token")
    assert _code(e) == "InvalidArgument"
    # the v1 call too (boto3's list_objects), with markers
    r = s3.list_objects(Bucket=BUCKET, Prefix="ls/", MaxKeys=2)
    assert [o["Key"] for o in r["Contents"]] == ["ls/a.txt", "ls/b b+ü.txt"] and r["IsTruncated"]
    r = s3.list_objects(Bucket=BUCKET, Prefix="ls/", Marker="ls/b b+ü.txt", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["ls/z%2F.txt"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["ls/sub/", "ls/sub2/"]


def test_empty_directory_disappears_with_its_last_object(s3):
    s3.put_object(Bucket=BUCKET, Key="gone/only/x", Body=b"x")
    assert [p["Prefix"] for p in s3.list_objects_v2(Bucket=BUCKET, Prefix="gone/", Delimiter="/")["CommonPrefixes"]] \
        == ["gone/only/"]
    s3.delete_object(Bucket=BUCKET, Key="gone/only/x")
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="gone/", Delimiter="/")
    assert "CommonPrefixes" not in r and r["KeyCount"] == 0


def test_delete_objects_quiet_and_per_key_errors(s3):
    for i in range(5):
        s3.put_object(Bucket=BUCKET, Key=f"del/{i}", Body=b"d")
    r = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "del/0"}, {"Key": "del/1"},
                                                              {"Key": "del/missing"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["del/0", "del/1", "del/missing"]
    r = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "del/2"}, {"Key": "del/3", "ETag": '"00"'}],
                                                 "Quiet": True})
    assert "Deleted" not in r
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("del/3", "PreconditionFailed")]
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="del/")["Contents"]]
    assert left == ["del/3", "del/4"]


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_multipart_low_level_and_errors(s3):
    key = "mp/low.bin"
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail" * 1000]
    up = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm="CRC32", ContentType="text/x-mp",
                                    Metadata={"who": "test"})
    uid = up["UploadId"]
    # in progress: listed, not in ListObjects, bucket not empty
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]] == [uid]
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="mp/")
    etags = []
    for n, data in enumerate(parts_data, start=1):
        r = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=n, Body=data, ChecksumAlgorithm="CRC32")
        assert r["ETag"] == f'"{hashlib.md5(data).hexdigest()}"' and r["ChecksumCRC32"] == _crc32_b64(data)
        etags.append(r["ETag"])
    lp = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in lp["Parts"]] == [1, 2] and lp["IsTruncated"]
    assert lp["Parts"][0]["Size"] == 5 * MiB and lp["Parts"][0]["ChecksumCRC32"] == _crc32_b64(parts_data[0])
    lp = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid, PartNumberMarker=2)
    assert [p["PartNumber"] for p in lp["Parts"]] == [3]

    def complete(parts):
        return s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})

    with pytest.raises(ClientError) as e:
        complete([{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}])
    assert _code(e) == "InvalidPartOrder"
    with pytest.raises(ClientError) as e:
        complete([{"PartNumber": 1, "ETag": etags[1]}])
    assert _code(e) == "InvalidPart"
    with pytest.raises(ClientError) as e:
        complete([{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 4, "ETag": etags[2]}])
    assert _code(e) == "InvalidPart"
    s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid)


def test_multipart_complete_composite_checksum(s3):
    key = "mp/comp.bin"
    parts_data = [os.urandom(5 * MiB), b"small", os.urandom(1000)]
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm="CRC32",
                                     ContentType="text/x-mp", Metadata={"who": "test"})["UploadId"]
    done = [s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=n, Body=d, ChecksumAlgorithm="CRC32")
            for n, d in enumerate(parts_data, start=1)]
    parts = [{"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]}
             for n, r in enumerate(done, start=1)]
    with pytest.raises(ClientError) as e:  # part 2 (5 bytes) is not the last
        s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
    assert _code(e) == "EntityTooSmall"
    bad = [dict(parts[0], ChecksumCRC32=_crc32_b64(b"other")), parts[2]]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid, MultipartUpload={"Parts": bad})
    assert _code(e) == "InvalidPart"
    chosen = [parts[0], parts[2]]
    r = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid, MultipartUpload={"Parts": chosen})
    md5s = hashlib.md5(bytes.fromhex(hashlib.md5(parts_data[0]).hexdigest())
                       + bytes.fromhex(hashlib.md5(parts_data[2]).hexdigest())).hexdigest()
    assert r["ETag"] == f'"{md5s}-2"'
    crcs = base64.b64decode(done[0]["ChecksumCRC32"]) + base64.b64decode(done[2]["ChecksumCRC32"])
    assert r["ChecksumCRC32"] == f"{_crc32_b64(crcs)}-2" and r["ChecksumType"] == "COMPOSITE"
    # a retried Complete answers the same
    again = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid, MultipartUpload={"Parts": chosen})
    assert again["ETag"] == r["ETag"]
    whole = parts_data[0] + parts_data[2]
    got = s3.get_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == whole and got["ContentType"] == "text/x-mp" and got["Metadata"] == {"who": "test"}
    assert got["PartsCount"] == 2 if "PartsCount" in got else True
    p2 = s3.get_object(Bucket=BUCKET, Key=key, PartNumber=2)
    assert p2["Body"].read() == parts_data[2] and p2["PartsCount"] == 2
    attrs = s3.get_object_attributes(Bucket=BUCKET, Key=key,
                                     ObjectAttributes=["ETag", "Checksum", "ObjectParts", "ObjectSize"])
    assert attrs["ETag"] == f"{md5s}-2" and attrs["ObjectSize"] == len(whole)
    assert attrs["ObjectParts"]["TotalPartsCount"] == 2
    assert [p["Size"] for p in attrs["ObjectParts"]["Parts"]] == [5 * MiB, 1000]
    assert attrs["Checksum"]["ChecksumCRC32"] == r["ChecksumCRC32"]
    # the upload and its parts are gone
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid)
    assert _code(e) == "NoSuchUpload"


def test_multipart_abort_and_unknown_upload(s3):
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key="mp/abort")["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key="mp/abort", UploadId=uid, PartNumber=1, Body=b"x" * 100)
    with pytest.raises(ClientError) as e:  # the upload id is for another key
        s3.upload_part(Bucket=BUCKET, Key="mp/other", UploadId=uid, PartNumber=1, Body=b"x")
    assert _code(e) == "NoSuchUpload"
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=BUCKET, Key="mp/abort", UploadId=uid, PartNumber=10001, Body=b"x")
    assert _code(e) == "InvalidArgument"
    s3.abort_multipart_upload(Bucket=BUCKET, Key="mp/abort", UploadId=uid)
    with pytest.raises(ClientError) as e:
        s3.abort_multipart_upload(Bucket=BUCKET, Key="mp/abort", UploadId=uid)
    assert _code(e) == "NoSuchUpload"
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=BUCKET, Key="mp/abort", UploadId="nope", PartNumber=1, Body=b"x")
    assert _code(e) == "NoSuchUpload"


def test_transfer_manager_20_mib_round_trip(s3, tmp_path):
    src = tmp_path / "big.bin"
    data = os.urandom(20 * MiB)
    src.write_bytes(data)
    s3.upload_file(str(src), BUCKET, "tm/big.bin")
    head = s3.head_object(Bucket=BUCKET, Key="tm/big.bin")
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-3"')
    dst = tmp_path / "back.bin"
    s3.download_file(BUCKET, "tm/big.bin", str(dst))
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_copy_object_across_buckets_reencrypts(s3, iam_s3):
    s3.put_object(Bucket=BUCKET, Key="cp/src.txt", Body=b"copy me", ContentType="text/plain",
                  Metadata={"a": "1"})
    src_etag = s3.head_object(Bucket=BUCKET, Key="cp/src.txt")["ETag"]
    r = s3.copy_object(Bucket=OTHER, Key="cp/dst.txt", CopySource={"Bucket": BUCKET, "Key": "cp/src.txt"},
                       CopySourceIfMatch=src_etag)
    assert r["ServerSideEncryption"] == "aws:kms" and r["SSEKMSKeyId"] == s3.other_key_arn
    got = s3.get_object(Bucket=OTHER, Key="cp/dst.txt")
    assert got["Body"].read() == b"copy me" and got["ContentType"] == "text/plain" and got["Metadata"] == {"a": "1"}
    assert got["SSEKMSKeyId"] == s3.other_key_arn
    iam_s3.copy_object(Bucket=BUCKET, Key="cp/replaced.txt", CopySource=f"{BUCKET}/cp/src.txt",
                       MetadataDirective="REPLACE", ContentType="text/x-new", Metadata={"b": "2"})
    got = s3.head_object(Bucket=BUCKET, Key="cp/replaced.txt")
    assert got["ContentType"] == "text/x-new" and got["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=BUCKET, Key="cp/x", CopySource={"Bucket": BUCKET, "Key": "cp/src.txt"},
                       CopySourceIfNoneMatch=src_etag)
    assert _code(e) == "PreconditionFailed"
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=BUCKET, Key="cp/x", CopySource={"Bucket": BUCKET, "Key": "cp/missing"})
    assert _code(e) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=BUCKET, Key="cp/src.txt", CopySource={"Bucket": BUCKET, "Key": "cp/src.txt"})
    assert _code(e) == "InvalidRequest"


def test_upload_part_copy_with_ranges(s3):
    data = os.urandom(6 * MiB)
    s3.put_object(Bucket=BUCKET, Key="upc/src", Body=data)
    uid = s3.create_multipart_upload(Bucket=OTHER, Key="upc/dst")["UploadId"]
    p1 = s3.upload_part_copy(Bucket=OTHER, Key="upc/dst", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": BUCKET, "Key": "upc/src"}, CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    p2 = s3.upload_part_copy(Bucket=OTHER, Key="upc/dst", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": BUCKET, "Key": "upc/src"},
                             CopySourceRange=f"bytes={5 * MiB}-{6 * MiB - 1}")
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=OTHER, Key="upc/dst", UploadId=uid, PartNumber=3,
                            CopySource={"Bucket": BUCKET, "Key": "upc/src"}, CopySourceRange=f"bytes=0-{7 * MiB}")
    assert _code(e) == "InvalidRange"
    s3.complete_multipart_upload(Bucket=OTHER, Key="upc/dst", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=OTHER, Key="upc/dst")["Body"].read() == data


def test_reserved_keys_are_refused(s3):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=BUCKET, Key="\x01u/x", Body=b"x")
    assert _code(e) == "InvalidArgument"


def test_bucket_with_upload_in_progress_is_not_empty(s3):
    s3.create_bucket(Bucket=f"api-mpu--{ZONE}--x-s3", CreateBucketConfiguration=DIR_CONFIG)
    uid = s3.create_multipart_upload(Bucket=f"api-mpu--{ZONE}--x-s3", Key="k")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=f"api-mpu--{ZONE}--x-s3")
    assert _code(e) == "BucketNotEmpty"
    s3.abort_multipart_upload(Bucket=f"api-mpu--{ZONE}--x-s3", Key="k", UploadId=uid)
    s3.delete_bucket(Bucket=f"api-mpu--{ZONE}--x-s3")


def test_presigned_get_and_put(s3, iam_s3):
    import urllib.request

    s3.put_object(Bucket=BUCKET, Key="pre/a.txt", Body=b"presigned")
    for c in (s3, iam_s3):
        url = c.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "pre/a.txt"}, ExpiresIn=60)
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.read() == b"presigned"
    url = iam_s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "pre/b.txt"}, ExpiresIn=60)
    req = urllib.request.Request(url, data=b"put via url", method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    assert s3.get_object(Bucket=BUCKET, Key="pre/b.txt")["Body"].read() == b"put via url"
    bad = url.replace("pre/b.txt", "pre/c.txt")  # the signature covers the path
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(bad, data=b"x", method="PUT"), timeout=10)
    assert e.value.code == 403
