"""boto3 over HTTPS: bodies go as aws-chunked with a trailing CRC32 (wire reference §5.2), and a
wrong checksum is refused with BadDigest, storing nothing."""

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from onezone.cluster import LocalCluster

pytestmark = pytest.mark.cluster
BUCKET = "tls--use1-az4--x-s3"


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("tls") / "data", nodes=3, port=0, https=True)
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def s3(tls_cluster):
    assert tls_cluster.endpoint.startswith("https://")
    c = boto3.client("s3", endpoint_url=tls_cluster.endpoint, region_name=tls_cluster.region,
                     aws_access_key_id=tls_cluster.credentials["access_key_id"],
                     aws_secret_access_key=tls_cluster.credentials["secret_access_key"],
                     verify=str(tls_cluster.data_dir / "certs" / "ca.pem"),
                     config=Config(retries={"max_attempts": 1}))
    c.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={
        "Location": {"Type": "AvailabilityZone", "Name": "use1-az4"},
        "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}})
    return c


def test_aws_chunked_trailer_upload(s3):
    seen = {}

    def capture(request, **kwargs):
        seen.update({k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    s3.meta.events.register("before-send.s3.PutObject", capture)
    body = bytes(range(256)) * 9000  # > 2 MiB: several 1 MiB aws chunks
    put = s3.put_object(Bucket=BUCKET, Key="chunked.bin", Body=body)
    s3.meta.events.unregister("before-send.s3.PutObject", capture)
    assert seen.get("X-Amz-Content-SHA256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert seen.get("Content-Encoding") == "aws-chunked"
    assert put["ChecksumCRC32"]
    got = s3.get_object(Bucket=BUCKET, Key="chunked.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["ChecksumCRC32"] == put["ChecksumCRC32"]
    assert "ContentEncoding" not in got  # aws-chunked is stripped from what is stored


def test_wrong_checksum_is_bad_digest_and_stores_nothing(s3):
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=BUCKET, Key="bad.bin", Body=b"some bytes", ChecksumCRC32="AAAAAA==")
    assert ei.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=BUCKET, Key="bad.bin")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
