"""General-purpose buckets (names without ``--x-s3``) with clients that know nothing of directory
buckets: boto3 (default config and ``signature_version='s3v4'``), the aws CLI (`aws s3
mb/cp/ls/sync/rm/rb`) and the minio SDK, against real processes. Standard S3 semantics: any
delimiter and prefix, ListObjects v1 and v2, MD5 ETags, ListBuckets, IAM ``s3:*`` actions on
``arn:aws:s3:::bucket/key``."""

import hashlib
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urlparse

import pytest
import urllib3
from botocore.exceptions import ClientError

from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

MiB = 1024 * 1024


def code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


CLIENTS: dict[str, object] = {}


@pytest.fixture(scope="module", params=["default", "s3v4"])
def s3(cluster, request):
    c = client(cluster, "s3") if request.param == "default" else client(cluster, "s3", signature_version="s3v4")
    CLIENTS[request.param] = c
    return c


def default_client(c):
    return CLIENTS.get("default")


def test_bucket_lifecycle_and_names(cluster, s3):
    name = f"gp-life-{id(s3) % 10000}"
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    loc = s3.get_bucket_location(Bucket=name)
    assert loc.get("LocationConstraint") in (None, "")  # us-east-1
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name)
    assert code(e) == "BucketAlreadyOwnedByYou"
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name + "-2", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert code(e) == "IllegalLocationConstraintException"
    for bad in ("a..b", "192.168.5.4", "ab"):
        with pytest.raises(ClientError) as e:
            s3.create_bucket(Bucket=bad)
        assert code(e) == "InvalidBucketName", bad
    with pytest.raises(ClientError) as e:
        s3.create_session(Bucket=name)
    assert code(e) in ("InvalidRequest", "AccessDenied")
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert code(e) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_objects_md5_etags_and_listings(cluster, s3):
    name = f"gp-objects-{id(s3) % 10000}"
    s3.create_bucket(Bucket=name)
    keys = ["a-1", "a-2", "a-b-1", "b-1", "c/x", "c/y/z", "d"]
    for k in keys:
        body = k.encode() * 3
        r = s3.put_object(Bucket=name, Key=k, Body=body, ContentType="text/plain")
        assert r["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    head = s3.head_object(Bucket=name, Key="a-1")
    assert head["ETag"] == f'"{hashlib.md5(b"a-1" * 3).hexdigest()}"' and "StorageClass" not in head
    # any delimiter, a prefix not ending in it, lexicographic order
    r = s3.list_objects_v2(Bucket=name, Delimiter="-")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a-", "b-"]
    assert [o["Key"] for o in r["Contents"]] == ["c/x", "c/y/z", "d"]
    assert all(o["StorageClass"] == "STANDARD" for o in r["Contents"])
    r = s3.list_objects_v2(Bucket=name, Prefix="a-", Delimiter="b")
    assert [o["Key"] for o in r["Contents"]] == ["a-1", "a-2"] and r["CommonPrefixes"] == [{"Prefix": "a-b"}]
    r = s3.list_objects_v2(Bucket=name, Prefix="c")
    assert [o["Key"] for o in r["Contents"]] == ["c/x", "c/y/z"]
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=name, PaginationConfig={"PageSize": 2}))
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == sorted(keys) and len(pages) == 4
    v1 = list(s3.get_paginator("list_objects").paginate(Bucket=name, PaginationConfig={"PageSize": 3}))
    assert [o["Key"] for p in v1 for o in p.get("Contents", [])] == sorted(keys)
    # Content-MD5 is checked on general-purpose buckets
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=name, Key="md5", Body=b"hello", ContentMD5="XrY7u+Ae7tCTyyK7j1rNww==")
    assert code(e) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=name, Key="md5")
    # multipart ETag, copy, delete_objects
    mpu = s3.create_multipart_upload(Bucket=name, Key="mp")
    p1 = s3.upload_part(Bucket=name, Key="mp", UploadId=mpu["UploadId"], PartNumber=1, Body=b"1" * (5 * MiB))
    p2 = s3.upload_part(Bucket=name, Key="mp", UploadId=mpu["UploadId"], PartNumber=2, Body=b"2")
    done = s3.complete_multipart_upload(Bucket=name, Key="mp", UploadId=mpu["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert done["ETag"].endswith('-2"')
    s3.copy_object(Bucket=name, Key="d-copy", CopySource={"Bucket": name, "Key": "d"})
    assert s3.get_object(Bucket=name, Key="d-copy")["Body"].read() == b"ddd"
    # presigned GET/PUT and POST forms: SigV2 with the default config, SigV4 with s3v4
    url = s3.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "b-1"}, ExpiresIn=60)
    assert ("Signature=" in url) and (("X-Amz-Signature=" in url) == (s3 is not default_client(s3)))
    with urllib.request.urlopen(url) as resp:
        assert resp.read() == b"b-1" * 3
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("b-1", "a-1"))
    assert e.value.code == 403 and b"SignatureDoesNotMatch" in e.value.read()
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": name, "Key": "presigned-put"}, ExpiresIn=60)
    req = urllib.request.Request(put_url, data=b"via url", method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
    assert s3.get_object(Bucket=name, Key="presigned-put")["Body"].read() == b"via url"
    form = s3.generate_presigned_post(name, "posted/${filename}", ExpiresIn=60)
    body, ctype = urllib3.encode_multipart_formdata([*form["fields"].items(), ("file", ("p.txt", b"posted"))])
    with urllib.request.urlopen(urllib.request.Request(form["url"], data=body, method="POST",
                                                       headers={"Content-Type": ctype})) as resp:
        assert resp.status == 204
    assert s3.get_object(Bucket=name, Key="posted/p.txt")["Body"].read() == b"posted"
    s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "presigned-put"}, {"Key": "posted/p.txt"}]})
    everything = [o["Key"] for p in pages for o in p["Contents"]] + ["mp", "d-copy"]
    r = s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in everything]})
    assert len(r["Deleted"]) == len(everything) and not r.get("Errors")
    s3.delete_bucket(Bucket=name)


def test_iam_s3_actions_on_object_arns(cluster):
    admin = client(cluster, "s3")
    iam = client(cluster, "iam")
    name = "gp-iam"
    admin.create_bucket(Bucket=name)
    for k in ("public/a", "private/b"):
        admin.put_object(Bucket=name, Key=k, Body=k.encode())
    iam.create_user(UserName="gp-reader")
    iam.put_user_policy(UserName="gp-reader", PolicyName="read-public", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/public/*"},
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:DeleteObject"], "Resource": [
                f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/public/*"]}]}))
    key = iam.create_access_key(UserName="gp-reader")["AccessKey"]
    user = client(cluster, "s3", akid=key["AccessKeyId"], secret=key["SecretAccessKey"])
    assert user.get_object(Bucket=name, Key="public/a")["Body"].read() == b"public/a"
    assert [o["Key"] for o in user.list_objects_v2(Bucket=name)["Contents"]] == ["private/b", "public/a"]
    for call in (lambda: user.get_object(Bucket=name, Key="private/b"),
                 lambda: user.put_object(Bucket=name, Key="public/new", Body=b"x"),
                 lambda: user.delete_bucket(Bucket=name),
                 lambda: user.create_bucket(Bucket="gp-iam-other")):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "AccessDenied"
    r = user.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "public/a"}, {"Key": "private/b"}]})
    assert [d["Key"] for d in r["Deleted"]] == ["public/a"]
    assert [(x["Key"], x["Code"]) for x in r["Errors"]] == [("private/b", "AccessDenied")]
    assert admin.get_object(Bucket=name, Key="private/b")["Body"].read() == b"private/b"


@pytest.fixture(scope="module")
def cli_env(cluster, tmp_path_factory):
    home = tmp_path_factory.mktemp("awshome-gp")
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home),
            "AWS_ACCESS_KEY_ID": cluster.credentials["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": cluster.credentials["secret_access_key"], "AWS_DEFAULT_REGION": cluster.region,
            "AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none")}


def aws(cluster, env, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", cluster.endpoint, *args], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_aws_cli_mb_cp_sync_ls_rm_rb(cluster, cli_env, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    big = os.urandom(12 * MiB)
    (src / "big.bin").write_bytes(big)
    (src / "a.txt").write_bytes(b"a\n")
    (src / "sub" / "b.txt").write_bytes(b"b\n")
    assert "make_bucket: gp-cli" in aws(cluster, cli_env, "s3", "mb", "s3://gp-cli")
    assert "gp-cli" in aws(cluster, cli_env, "s3", "ls")
    out = aws(cluster, cli_env, "s3", "sync", str(src), "s3://gp-cli/tree/")
    assert out.count("upload:") == 3
    assert aws(cluster, cli_env, "s3", "sync", str(src), "s3://gp-cli/tree/").count("upload:") == 0  # in sync
    listing = aws(cluster, cli_env, "s3", "ls", "--recursive", "s3://gp-cli/")
    assert "tree/big.bin" in listing and "tree/sub/b.txt" in listing
    assert "PRE sub/" in aws(cluster, cli_env, "s3", "ls", "s3://gp-cli/tree/")
    back = tmp_path / "back"
    aws(cluster, cli_env, "s3", "sync", "s3://gp-cli/tree/", str(back))
    assert (back / "big.bin").read_bytes() == big and (back / "sub" / "b.txt").read_bytes() == b"b\n"
    aws(cluster, cli_env, "s3", "cp", str(src / "a.txt"), "s3://gp-cli/single.txt")
    head = json.loads(aws(cluster, cli_env, "s3api", "head-object", "--bucket", "gp-cli", "--key", "single.txt"))
    assert head["ETag"] == f'"{hashlib.md5(b"a" + bytes([10])).hexdigest()}"'
    aws(cluster, cli_env, "s3", "rm", "--recursive", "s3://gp-cli/")
    aws(cluster, cli_env, "s3", "rb", "s3://gp-cli")
    assert "gp-cli" not in aws(cluster, cli_env, "s3", "ls")


def test_minio_client(cluster):
    from minio import Minio
    from minio.deleteobjects import DeleteObject

    url = urlparse(cluster.endpoint)
    mc = Minio(url.netloc, access_key=cluster.credentials["access_key_id"],
               secret_key=cluster.credentials["secret_access_key"], secure=False, region=cluster.region)
    mc.make_bucket("gp-minio")
    assert mc.bucket_exists("gp-minio") and not mc.bucket_exists("gp-minio-absent")
    payload = os.urandom(200_000)
    r = mc.put_object("gp-minio", "dir/one.bin", io.BytesIO(payload), len(payload))
    assert r.etag == hashlib.md5(payload).hexdigest()
    mc.put_object("gp-minio", "dir/big.bin", io.BytesIO(os.urandom(6 * MiB)), -1, part_size=5 * MiB)
    got = mc.get_object("gp-minio", "dir/one.bin")
    try:
        assert got.read() == payload
    finally:
        got.close()
        got.release_conn()
    assert [o.object_name for o in mc.list_objects("gp-minio", prefix="dir/", recursive=True)] == \
        ["dir/big.bin", "dir/one.bin"]
    assert not list(mc.remove_objects("gp-minio", [DeleteObject("dir/one.bin"), DeleteObject("dir/big.bin")]))
    mc.remove_bucket("gp-minio")
    assert not mc.bucket_exists("gp-minio")
