"""boto3 over HTTPS (the gateway serves TLS when given a certificate): current boto3 then sends
PutObject and UploadPart bodies aws-chunked with a trailing checksum and no Content-Length
(wire reference §0.6), which is exercised here end to end, multipart included."""

import hashlib
import re
import os
import shutil

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from onezone.cluster import LocalCluster

pytestmark = pytest.mark.cluster

BUCKET = "tls--use1-az4--x-s3"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    data = tmp_path_factory.mktemp("tls")
    c = LocalCluster(data / "onezone-data", nodes=3, port=0, https=True)
    c.start()
    yield c, str(c.data_dir / "certs" / "ca.pem")
    c.stop()
    shutil.rmtree(data, ignore_errors=True)


def test_https_aws_chunked_trailers(tls_cluster, tmp_path):
    c, ca = tls_cluster
    assert c.endpoint.startswith("https://")
    s3 = boto3.client("s3", endpoint_url=c.endpoint, region_name=c.region, verify=ca,
                      aws_access_key_id=c.credentials["access_key_id"],
                      aws_secret_access_key=c.credentials["secret_access_key"],
                      config=Config(retries={"max_attempts": 1}))
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={
        "Location": {"Type": "AvailabilityZone", "Name": c.zone},
        "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}})
    put = s3.put_object(Bucket=BUCKET, Key="t/hello.txt", Body=b"hello over tls")
    assert put["ChecksumCRC32"]
    assert s3.get_object(Bucket=BUCKET, Key="t/hello.txt", ChecksumMode="ENABLED")["Body"].read() == b"hello over tls"
    src = tmp_path / "big.bin"
    data = os.urandom(17 * MiB)
    src.write_bytes(data)
    s3.upload_file(str(src), BUCKET, "t/big.bin")
    back = tmp_path / "back.bin"
    s3.download_file(BUCKET, "t/big.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()
    log = c.daemons["gateway"].log_path.read_text()
    assert re.search(r"op=UploadPart .*status=200", log)


def test_aws_chunked_headers_and_bad_digest(tls_cluster):
    c, ca = tls_cluster
    s3 = boto3.client("s3", endpoint_url=c.endpoint, region_name=c.region, verify=ca,
                      aws_access_key_id=c.credentials["access_key_id"],
                      aws_secret_access_key=c.credentials["secret_access_key"],
                      config=Config(retries={"max_attempts": 1}))
    seen = {}

    def capture(request, **kwargs):
        seen.update({k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    s3.meta.events.register("before-send.s3.PutObject", capture)
    body = bytes(range(256)) * 9000  # > 2 MiB: several 1 MiB aws chunks
    put = s3.put_object(Bucket=BUCKET, Key="t/chunked.bin", Body=body)
    s3.meta.events.unregister("before-send.s3.PutObject", capture)
    assert seen.get("X-Amz-Content-SHA256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert seen.get("Content-Encoding") == "aws-chunked"
    got = s3.get_object(Bucket=BUCKET, Key="t/chunked.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == body and got["ChecksumCRC32"] == put["ChecksumCRC32"]
    assert "ContentEncoding" not in got  # aws-chunked is stripped from what is stored
    # a wrong checksum is BadDigest and stores nothing
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=BUCKET, Key="t/bad.bin", Body=b"some bytes", ChecksumCRC32="AAAAAA==")
    assert ei.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=BUCKET, Key="t/bad.bin")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
