"""KMS outage with real processes: the KMS is stopped (SIGTERM, by pid); cached bucket keys keep
serving reads for the configured grace, a bucket whose key is not cached fails with 503
SlowDown, new bucket creation fails with a 503, and once the grace is over cached reads fail
closed too."""

import os
import shutil
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from onezone.cluster import LocalCluster
from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ZONE = "use1-az4"
GRACE_S = 4.0
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": ZONE},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    data = tmp_path_factory.mktemp("outage")
    c = LocalCluster(data / "onezone-data", nodes=3, port=0,
                     node_options={"kms_outage_grace_s": GRACE_S, "kms_poll_interval_s": 0.5})
    c.start()
    yield c
    c.stop()
    if not os.environ.get("ONEZONE_KEEP_CLUSTER"):
        shutil.rmtree(data, ignore_errors=True)


def _error(fn):
    try:
        fn()
    except ClientError as exc:
        return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"], \
            exc.response["Error"].get("Message", "")
    return None


def _kms_bucket(s3, kms, name):
    arn = kms.create_key(Description=name)["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket=name, CreateBucketConfiguration=DIR_CONFIG)
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": arn},
        "BucketKeyEnabled": True}]})
    s3.put_object(Bucket=name, Key="doc", Body=name.encode())
    return arn


def test_kms_outage(cluster):
    s3, kms = client(cluster, "s3"), client(cluster, "kms")
    # one attempt only: we want the gateway's first answer (and see the report about a 503 retry on a
    # kept-alive connection after a PUT)
    once = boto3.client("s3", endpoint_url=cluster.endpoint, region_name=cluster.region,
                        aws_access_key_id=cluster.credentials["access_key_id"],
                        aws_secret_access_key=cluster.credentials["secret_access_key"],
                        config=Config(retries={"total_max_attempts": 1}))
    cached = f"cached--{ZONE}--x-s3"
    cold = f"cold--{ZONE}--x-s3"
    _kms_bucket(s3, kms, cached)
    cold_key = _kms_bucket(s3, kms, cold)
    assert s3.get_object(Bucket=cached, Key="doc")["Body"].read() == cached.encode()
    # drop the cold bucket's key from every node's cache (a disable), then enable it again
    kms.disable_key(KeyId=cold_key)
    deadline = time.monotonic() + 5
    while _error(lambda: s3.head_object(Bucket=cold, Key="doc")) is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    kms.enable_key(KeyId=cold_key)

    cluster.daemons["kms"].stop()
    stopped = time.monotonic()

    # cached reads keep working while the grace lasts
    assert s3.get_object(Bucket=cached, Key="doc")["Body"].read() == cached.encode()
    # a bucket whose key is not cached needs the KMS: 503 SlowDown with a clear message
    code, status, message = _error(lambda: s3.get_object(Bucket=cold, Key="doc"))
    assert (code, status) == ("SlowDown", 503) and "KMS" in message
    code, status, _ = _error(lambda: once.put_object(Bucket=cold, Key="new", Body=b"x"))
    assert (code, status) == ("SlowDown", 503)
    # creating a bucket needs a new bucket key from the KMS
    _code, status, _ = _error(lambda: s3.create_bucket(Bucket=f"new--{ZONE}--x-s3",
                                                       CreateBucketConfiguration=DIR_CONFIG))
    assert status == 503
    assert time.monotonic() - stopped < GRACE_S, "the checks above must run within the grace"

    # once the grace is over, cached keys are dropped: fail closed
    deadline = stopped + GRACE_S + 5
    while (err := _error(lambda: s3.get_object(Bucket=cached, Key="doc"))) is None:
        assert time.monotonic() < deadline, "cached reads still served long after the grace"
        time.sleep(0.2)
    assert err[:2] == ("SlowDown", 503)
    assert time.monotonic() - stopped >= GRACE_S - 0.5
