"""boto3 over HTTPS (the gateway serves TLS when given a certificate): current boto3 then sends
PutObject and UploadPart bodies aws-chunked with a trailing checksum and no Content-Length
(wire reference §0.6), which is exercised here end to end, multipart included."""

import hashlib
import os
import shutil

import boto3
import pytest
from botocore.config import Config

from onezone.cluster import LocalCluster
from proto.certs import create_ca, issue_cert

pytestmark = pytest.mark.cluster

BUCKET = "tls--use1-az4--x-s3"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    data = tmp_path_factory.mktemp("tls")
    ca_cert, ca_key = create_ca("test https CA")
    cert, key = issue_cert(ca_cert, ca_key, "gateway", extra_dns=["localhost"], ip_addresses=["127.0.0.1"])
    (data / "ca.pem").write_bytes(ca_cert)
    (data / "https.pem").write_bytes(cert)
    (data / "https.key").write_bytes(key)
    os.chmod(data / "https.key", 0o600)
    c = LocalCluster(data / "onezone-data", nodes=3, port=0,
                     gateway_options={"https_cert": str(data / "https.pem"), "https_key": str(data / "https.key")})
    c.start()
    yield c, str(data / "ca.pem")
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
    assert "op=UploadPart status=200" in log
