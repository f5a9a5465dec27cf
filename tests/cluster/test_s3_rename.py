"""RenameObject with real boto3 against real processes: metadata-only and atomic (no chunk
written on any node, no KMS call even with cold bucket-key caches), conditions on both sides,
idempotency tokens, the directory-bucket rules and errors."""

import datetime
import json
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ZONE = "use1-az4"
BUCKET = f"ren--{ZONE}--x-s3"
OTHER = f"ren-other--{ZONE}--x-s3"
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": ZONE},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}
KMS_DATA_EVENTS = {"Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "Encrypt", "ReEncrypt"}


@pytest.fixture(scope="module")
def s3(cluster):
    s3 = client(cluster, "s3")
    for b in (BUCKET, OTHER):
        s3.create_bucket(Bucket=b, CreateBucketConfiguration=DIR_CONFIG)
    return s3


def _code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def _metric(cluster, name: str, metric: str) -> float:
    text = urllib.request.urlopen(f"http://{cluster.daemons[name].info['metrics']}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(metric + " "))


def _kms_data_calls(cluster) -> int:
    lines = (cluster.data_dir / "kms" / "audit.jsonl").read_text().splitlines()
    return sum(1 for x in lines if json.loads(x).get("eventName") in KMS_DATA_EVENTS)


def test_rename_moves_no_data_and_calls_no_kms(cluster, s3):
    body = b"rename me " * 300_000  # 3 MB: several chunks, a blob segment
    s3.put_object(Bucket=BUCKET, Key="big/source.bin", Body=body)
    nodes = [n for n in cluster.daemons if n.startswith("node-")]
    for n in nodes:  # cold bucket-key caches: any KMS need would show in the audit log
        cluster.restart(n)
    chunks = {n: _metric(cluster, n, "onezone_node_chunks_written_total") for n in nodes}
    kms = _kms_data_calls(cluster)
    s3.rename_object(Bucket=BUCKET, Key="big/renamed.bin", RenameSource=f"{BUCKET}/big/source.bin")
    assert {n: _metric(cluster, n, "onezone_node_chunks_written_total") for n in nodes} == chunks
    assert _kms_data_calls(cluster) == kms
    assert sum(_metric(cluster, n, "onezone_node_renames_total") for n in nodes) == 1
    got = s3.get_object(Bucket=BUCKET, Key="big/renamed.bin")["Body"].read()
    assert got == body
    assert _kms_data_calls(cluster) > kms  # the read needed the bucket key: the check above can fail
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=BUCKET, Key="big/source.bin")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="big/")["Contents"]]
    assert keys == ["big/renamed.bin"]


def test_rename_keeps_metadata_and_overwrites(s3):
    s3.put_object(Bucket=BUCKET, Key="m/a", Body=b"AAA", ContentType="text/plain", Metadata={"k": "v"},
                  ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=BUCKET, Key="m/b", Body=b"old B")
    before = s3.head_object(Bucket=BUCKET, Key="m/a", ChecksumMode="ENABLED")
    s3.rename_object(Bucket=BUCKET, Key="m/b", RenameSource=f"{BUCKET}/m/a")
    after = s3.head_object(Bucket=BUCKET, Key="m/b", ChecksumMode="ENABLED")
    for field in ("ETag", "LastModified", "ContentType", "Metadata", "ChecksumSHA256", "ContentLength"):
        assert after[field] == before[field], field
    assert s3.get_object(Bucket=BUCKET, Key="m/b")["Body"].read() == b"AAA"


def test_rename_source_unencoded_and_encoded(s3):
    s3.put_object(Bucket=BUCKET, Key="r a+b.txt", Body=b"1")
    s3.rename_object(Bucket=BUCKET, Key="plain+ok.txt", RenameSource=f"{BUCKET}/r a+b.txt")  # botocore: as typed
    assert s3.get_object(Bucket=BUCKET, Key="plain+ok.txt")["Body"].read() == b"1"
    s3.rename_object(Bucket=BUCKET, Key="back.txt", RenameSource=f"/{BUCKET}/plain%2Bok.txt")  # URL-encoded
    assert s3.get_object(Bucket=BUCKET, Key="back.txt")["Body"].read() == b"1"


def test_rename_conditions(s3):
    s3.put_object(Bucket=BUCKET, Key="c/src", Body=b"s")
    etag = s3.put_object(Bucket=BUCKET, Key="c/dst", Body=b"d")["ETag"]
    src_etag = s3.head_object(Bucket=BUCKET, Key="c/src")["ETag"]
    src = f"{BUCKET}/c/src"
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    for kwargs in ({"DestinationIfNoneMatch": "*"}, {"DestinationIfMatch": '"0123"'},
                   {"DestinationIfUnmodifiedSince": past}, {"DestinationIfModifiedSince": future},
                   {"SourceIfMatch": '"0123"'}, {"SourceIfNoneMatch": src_etag},
                   {"SourceIfUnmodifiedSince": past}, {"SourceIfModifiedSince": future}):
        with pytest.raises(ClientError) as e:
            s3.rename_object(Bucket=BUCKET, Key="c/dst", RenameSource=src, **kwargs)
        assert _code(e) == "PreconditionFailed", kwargs
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3.get_object(Bucket=BUCKET, Key="c/dst")["Body"].read() == b"d"  # nothing changed
    s3.rename_object(Bucket=BUCKET, Key="c/dst", RenameSource=src, DestinationIfMatch=etag, SourceIfMatch=src_etag,
                     SourceIfUnmodifiedSince=future, DestinationIfModifiedSince=past)
    assert s3.get_object(Bucket=BUCKET, Key="c/dst")["Body"].read() == b"s"
    s3.put_object(Bucket=BUCKET, Key="c/src2", Body=b"2")
    s3.rename_object(Bucket=BUCKET, Key="c/new", RenameSource=f"{BUCKET}/c/src2", DestinationIfNoneMatch="*")
    assert s3.get_object(Bucket=BUCKET, Key="c/new")["Body"].read() == b"2"


def test_rename_idempotency_token(s3):
    s3.put_object(Bucket=BUCKET, Key="t/a", Body=b"x")
    token = str(uuid.uuid4())
    s3.rename_object(Bucket=BUCKET, Key="t/b", RenameSource=f"{BUCKET}/t/a", ClientToken=token)
    s3.rename_object(Bucket=BUCKET, Key="t/b", RenameSource=f"{BUCKET}/t/a", ClientToken=token)  # a retry: OK
    with pytest.raises(ClientError) as e:
        s3.rename_object(Bucket=BUCKET, Key="t/c", RenameSource=f"{BUCKET}/t/a", ClientToken=token)
    assert _code(e) == "IdempotencyParameterMismatch"
    with pytest.raises(ClientError) as e:  # without the token the source is simply gone
        s3.rename_object(Bucket=BUCKET, Key="t/b", RenameSource=f"{BUCKET}/t/a")
    assert _code(e) == "NoSuchKey"


def test_rename_errors(s3):
    s3.put_object(Bucket=OTHER, Key="o", Body=b"o")
    cases = [({"Key": "x", "RenameSource": f"{BUCKET}/missing"}, "NoSuchKey"),
             ({"Key": "x", "RenameSource": f"{OTHER}/o"}, "InvalidRequest"),
             ({"Key": "x", "RenameSource": "no-slash"}, "InvalidArgument"),
             ({"Key": "dir/", "RenameSource": f"{BUCKET}/t/b"}, "InvalidRequest"),
             ({"Key": "x", "RenameSource": f"{BUCKET}/\x01u/abc"}, "InvalidArgument")]
    for kwargs, code in cases:
        with pytest.raises(ClientError) as e:
            s3.rename_object(Bucket=BUCKET, **kwargs)
        assert _code(e) == code, kwargs
    assert s3.get_object(Bucket=OTHER, Key="o")["Body"].read() == b"o"
