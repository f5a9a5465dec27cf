"""Other clients against real processes: the aws CLI (`aws s3 cp/ls/rm` of multipart sizes,
`aws s3api`) and a non-AWS client, the `minio` Python SDK (IAM-signed, no sessions, path style)."""

import hashlib
import io
import json
import os
import subprocess
import sys
from urllib.parse import urlparse

import pytest

from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ZONE = "use1-az4"
BUCKET = f"cli--{ZONE}--x-s3"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def env(cluster, tmp_path_factory):
    client(cluster, "s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={
        "Location": {"Type": "AvailabilityZone", "Name": ZONE},
        "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}})
    home = tmp_path_factory.mktemp("awshome")
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "AWS_ACCESS_KEY_ID": cluster.credentials["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": cluster.credentials["secret_access_key"], "AWS_DEFAULT_REGION": cluster.region,
            "AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none")}


def aws(cluster, env, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", cluster.endpoint, *args], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_aws_s3_cp_ls_sync_rm(cluster, env, tmp_path):
    big = tmp_path / "up" / "big.bin"
    big.parent.mkdir()
    data = os.urandom(20 * MiB)
    big.write_bytes(data)
    (tmp_path / "up" / "small.txt").write_bytes(b"small\n")
    aws(cluster, env, "s3", "cp", str(big), f"s3://{BUCKET}/dir/big.bin")
    head = json.loads(aws(cluster, env, "s3api", "head-object", "--bucket", BUCKET, "--key", "dir/big.bin"))
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-3"')
    back = tmp_path / "back.bin"
    aws(cluster, env, "s3", "cp", f"s3://{BUCKET}/dir/big.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()
    # (the CLI itself refuses `aws s3 sync` on directory buckets: cp --recursive is its equivalent)
    aws(cluster, env, "s3", "cp", "--recursive", str(tmp_path / "up"), f"s3://{BUCKET}/synced/")
    listing = aws(cluster, env, "s3", "ls", f"s3://{BUCKET}/synced/")
    assert "big.bin" in listing and "small.txt" in listing
    assert "PRE dir/" in aws(cluster, env, "s3", "ls", f"s3://{BUCKET}/")
    aws(cluster, env, "s3", "rm", "--recursive", f"s3://{BUCKET}/synced/")
    left = json.loads(aws(cluster, env, "s3api", "list-objects-v2", "--bucket", BUCKET, "--prefix", "synced/"))
    assert not left.get("Contents")
    attrs = json.loads(aws(cluster, env, "s3api", "get-object-attributes", "--bucket", BUCKET, "--key", "dir/big.bin",
                           "--object-attributes", "ObjectSize", "ObjectParts"))
    assert attrs["ObjectSize"] == len(data) and attrs["ObjectParts"]["TotalPartsCount"] == 3


def test_minio_client_put_get_list(cluster):
    from minio import Minio

    url = urlparse(cluster.endpoint)
    mc = Minio(url.netloc, access_key=cluster.credentials["access_key_id"],
               secret_key=cluster.credentials["secret_access_key"], secure=False, region=cluster.region)
    payload = os.urandom(300_000)
    mc.put_object(BUCKET, "minio/one.bin", io.BytesIO(payload), len(payload), content_type="application/x-test")
    big = os.urandom(6 * MiB)
    mc.put_object(BUCKET, "minio/big.bin", io.BytesIO(big), -1, part_size=5 * MiB)  # unknown length: multipart
    got = mc.get_object(BUCKET, "minio/one.bin")
    try:
        assert got.read() == payload
    finally:
        got.close()
        got.release_conn()
    st = mc.stat_object(BUCKET, "minio/one.bin")
    assert st.size == len(payload) and st.content_type == "application/x-test"
    assert [o.object_name for o in mc.list_objects(BUCKET, prefix="minio/")] == ["minio/big.bin", "minio/one.bin"]
    got = mc.get_object(BUCKET, "minio/big.bin")
    try:
        assert hashlib.sha256(got.read()).digest() == hashlib.sha256(big).digest()
    finally:
        got.close()
        got.release_conn()
    mc.remove_object(BUCKET, "minio/one.bin")
    assert [o.object_name for o in mc.list_objects(BUCKET, prefix="minio/")] == ["minio/big.bin"]
