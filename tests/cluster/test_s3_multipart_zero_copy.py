"""Zero-copy CompleteMultipartUpload with real boto3 against real processes: no chunk is
written by Complete on any node, the object reads back whole and by ranges across parts, the
full-object CRC is the parts' combined, retries and overwrites behave, SHA uploads still
stream."""

import base64
import urllib.request
import zlib

import pytest
from botocore.exceptions import ClientError

from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ZONE = "use1-az4"
BUCKET = f"zc--{ZONE}--x-s3"
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": ZONE},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3(cluster):
    s3 = client(cluster, "s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration=DIR_CONFIG)
    return s3


def _chunks_written(cluster) -> float:
    total = 0.0
    for name, d in cluster.daemons.items():
        if name.startswith("node-"):
            text = urllib.request.urlopen(f"http://{d.info['metrics']}/metrics", timeout=5).read().decode()
            total += sum(float(x.split()[-1]) for x in text.splitlines()
                         if x.startswith("onezone_node_chunks_written_total "))
    return total


def _upload(s3, key, parts, **create):
    up = s3.create_multipart_upload(Bucket=BUCKET, Key=key, **create)["UploadId"]
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=n, Body=data,
                           **({"ChecksumAlgorithm": create["ChecksumAlgorithm"]} if "ChecksumAlgorithm" in create else {}))
        entry = {"PartNumber": n, "ETag": r["ETag"]}
        for f in ("ChecksumCRC32", "ChecksumSHA256"):
            if r.get(f) and "ChecksumAlgorithm" in create:
                entry[f] = r[f]
        done.append(entry)
    return up, done


@pytest.mark.parametrize("create", [{}, {"ChecksumAlgorithm": "CRC32", "ChecksumType": "FULL_OBJECT"},
                                    {"ChecksumAlgorithm": "CRC32"}])
def test_complete_writes_no_chunk(cluster, s3, create):
    parts = [bytes([65 + i]) * (5 * MiB + i) for i in range(3)] + [b"last"]
    data = b"".join(parts)
    up, done = _upload(s3, "zc/obj", parts, **create)
    before = _chunks_written(cluster)
    r = s3.complete_multipart_upload(Bucket=BUCKET, Key="zc/obj", UploadId=up, MultipartUpload={"Parts": done})
    assert _chunks_written(cluster) == before  # zero-copy: no byte sealed or stored again
    assert r["ETag"].strip('"').endswith("-4")
    got = s3.get_object(Bucket=BUCKET, Key="zc/obj", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ContentLength"] == len(data)
    if create.get("ChecksumType") == "FULL_OBJECT":
        assert got["ChecksumCRC32"] == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    for lo, hi in ((5 * MiB - 3, 5 * MiB + 3), (0, 10), (len(data) - 6, len(data) - 1)):
        assert s3.get_object(Bucket=BUCKET, Key="zc/obj", Range=f"bytes={lo}-{hi}")["Body"].read() == data[lo:hi + 1]
    # a retried Complete answers success again; the parts are gone from the listing
    again = s3.complete_multipart_upload(Bucket=BUCKET, Key="zc/obj", UploadId=up, MultipartUpload={"Parts": done})
    assert again["ETag"] == r["ETag"]
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    s3.put_object(Bucket=BUCKET, Key="zc/obj", Body=b"over")  # an overwrite frees the adopted parts
    assert s3.get_object(Bucket=BUCKET, Key="zc/obj")["Body"].read() == b"over"


def test_appending_to_a_zero_copy_object(s3):
    parts = [b"x" * (5 * MiB), b"yz"]
    up, done = _upload(s3, "zc/app", parts)
    s3.complete_multipart_upload(Bucket=BUCKET, Key="zc/app", UploadId=up, MultipartUpload={"Parts": done})
    s3.put_object(Bucket=BUCKET, Key="zc/app", Body=b"!", WriteOffsetBytes=5 * MiB + 2)
    assert s3.get_object(Bucket=BUCKET, Key="zc/app")["Body"].read() == b"".join(parts) + b"!"


def test_sha256_upload_still_streams(cluster, s3):
    parts = [b"s" * (5 * MiB), b"t"]
    up, done = _upload(s3, "zc/sha", parts, ChecksumAlgorithm="SHA256")
    before = _chunks_written(cluster)
    s3.complete_multipart_upload(Bucket=BUCKET, Key="zc/sha", UploadId=up, MultipartUpload={"Parts": done})
    assert _chunks_written(cluster) > before
    assert s3.get_object(Bucket=BUCKET, Key="zc/sha")["Body"].read() == b"".join(parts)


def test_transfer_manager_round_trip(s3, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * (24 * MiB // 256))
    s3.upload_file(str(src), BUCKET, "zc/tm.bin")
    dst = tmp_path / "dst.bin"
    s3.download_file(BUCKET, "zc/tm.bin", str(dst))
    assert dst.read_bytes() == src.read_bytes()
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="zc/none")
