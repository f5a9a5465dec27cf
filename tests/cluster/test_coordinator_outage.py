"""The data plane outlives a coordinator outage (real processes, kill -9).

With short cache TTLs (so the outage outlasts every cache), the coordinator is killed with
SIGKILL while a boto3 client writes and reads: reads and writes of the existing bucket keep
working from the gateway's and the nodes' cached credentials and placements; control
operations fail with 503 (S3 ServiceUnavailable, IAM ServiceFailure) saying why. The
coordinator then restarts on its address: no bucket, user or key is lost, the nodes are up
again, and control operations work.
"""

import threading
import time

import pytest
from botocore.exceptions import ClientError

from onezone.cluster import LocalCluster
from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ZONE = "use1-az4"
BUCKET = f"outage--{ZONE}--x-s3"
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": ZONE},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}


@pytest.fixture
def short_ttl_cluster(tmp_path):
    c = LocalCluster(tmp_path / "onezone-data", nodes=3, port=0,
                     node_options={"bucket_cache_ttl_s": 1.0},
                     gateway_options={"auth_cache_s": 1.0, "bucket_cache_s": 1.0, "rpc_timeout_s": 2.0})
    c.start()
    yield c
    c.stop()


class Load(threading.Thread):
    """put + get of fresh keys in a loop; records every failure."""

    def __init__(self, s3):
        super().__init__(daemon=True)
        self.s3, self.ok, self.errors, self.stop = s3, 0, [], threading.Event()
        self.last = None

    def run(self):
        i = 0
        while not self.stop.is_set():
            key, body = f"load/{i}", f"object {i}".encode() * 10
            try:
                self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
                assert self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
                self.ok += 1
                self.last = (key, body)
            except Exception as exc:  # noqa: BLE001 (recorded, asserted on below)
                self.errors.append(f"{key}: {exc}")
            i += 1


def test_kill_coordinator_during_load_then_restart(short_ttl_cluster):
    c = short_ttl_cluster
    s3, iam = client(c, "s3"), client(c, "iam")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration=DIR_CONFIG)
    s3.put_object(Bucket=BUCKET, Key="before", Body=b"written before the outage")
    iam.create_user(UserName="survivor")
    key = iam.create_access_key(UserName="survivor")["AccessKey"]

    load = Load(s3)
    load.start()
    time.sleep(1.0)
    c.kill("coordinator")
    killed_at_ok = load.ok
    time.sleep(4.0)  # every cache TTL (1 s) has expired several times over
    during = load.ok - killed_at_ok
    # control operations fail with 503 and say why
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=f"new--{ZONE}--x-s3", CreateBucketConfiguration=DIR_CONFIG)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert e.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert "coordinator" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        iam.create_user(UserName="during-outage")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert e.value.response["Error"]["Code"] == "ServiceFailure"
    assert s3.get_object(Bucket=BUCKET, Key="before")["Body"].read() == b"written before the outage"

    c.restart("coordinator")
    time.sleep(1.0)
    load.stop.set()
    load.join(30)
    assert during > 0, "no request succeeded while the coordinator was down"
    assert not load.errors, load.errors[:5]

    deadline = time.monotonic() + 20
    while c._nodes_up() < 3:  # noqa: SLF001
        assert time.monotonic() < deadline, "nodes did not come back up"
        time.sleep(0.2)
    assert BUCKET in [b["Name"] for b in s3.list_directory_buckets()["Buckets"]]
    assert "survivor" in [u["UserName"] for u in iam.list_users()["Users"]]
    survivor = client(c, "s3", akid=key["AccessKeyId"], secret=key["SecretAccessKey"])
    with pytest.raises(ClientError) as e:  # authenticated (the key survived), not authorized
        survivor.create_session(Bucket=BUCKET)
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    s3.create_bucket(Bucket=f"after--{ZONE}--x-s3", CreateBucketConfiguration=DIR_CONFIG)
    last_key, last_body = load.last
    assert s3.get_object(Bucket=BUCKET, Key=last_key)["Body"].read() == last_body
    print(f"requests ok: {load.ok} (during the outage: {during})")
