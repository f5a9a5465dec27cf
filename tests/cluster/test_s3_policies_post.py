"""Bucket policies, browser-form (POST) uploads and the authentication edges, end to end against
real processes with a one-minute session lifetime (``session_ttl_s = 60``): presigned URL
validity = min(X-Amz-Expires, session expiry), virtual-host addressing, RequestTimeTooSkewed,
``Expect: 100-continue`` refused on its headers, DeleteBucketEncryption."""

import datetime
import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode, urlparse

import boto3
import pytest
import urllib3
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from gateway import sessions
from onezone.cluster import LocalCluster
from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ZONE = "use1-az4"
DIR = f"pol--{ZONE}--x-s3"
GP = "pol-general"
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": ZONE},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    data = tmp_path_factory.mktemp("cluster-pol")
    c = LocalCluster(data / "onezone-data", nodes=3, port=0, gateway_options={"session_ttl_s": 60})
    c.start()
    yield c
    c.stop()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def s3(cluster):
    s3 = client(cluster, "s3")
    s3.create_bucket(Bucket=DIR, CreateBucketConfiguration=DIR_CONFIG)
    s3.create_bucket(Bucket=GP)
    return s3


def code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def doc(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def user(cluster, name, policy=None):
    iam = client(cluster, "iam")
    iam.create_user(UserName=name)
    if policy:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    KEYS[name] = (key["AccessKeyId"], key["SecretAccessKey"])
    return client(cluster, "s3", akid=key["AccessKeyId"], secret=key["SecretAccessKey"])


KEYS: dict[str, tuple[str, str]] = {}


def again(cluster, name, **config):
    """A new client for the same user: no cached session."""
    akid, secret = KEYS[name]
    return client(cluster, "s3", akid=akid, secret=secret, **config)


def arn_of(cluster, name):
    return f"arn:aws:iam::{cluster.account_id}:user/{name}"


def dir_arn(cluster):
    return f"arn:aws:s3express:{cluster.region}:{cluster.account_id}:bucket/{DIR}"


# -- bucket policies ---------------------------------------------------------------------------
def test_bucket_policy_crud_and_errors(cluster, s3):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=DIR)
    assert code(e) == "NoSuchBucketPolicy"
    policy = doc({"Sid": "x", "Effect": "Deny", "Principal": {"AWS": arn_of(cluster, "nobody")},
                  "Action": "s3express:CreateSession", "Resource": dir_arn(cluster)})
    s3.put_bucket_policy(Bucket=DIR, Policy=policy)
    assert json.loads(s3.get_bucket_policy(Bucket=DIR)["Policy"]) == json.loads(policy)
    bad = [doc({"Effect": "Allow", "Action": "s3express:*", "Resource": dir_arn(cluster)}),  # no Principal
           doc({"Effect": "Allow", "Principal": "*", "Action": "s3express:*", "Resource": "arn:aws:s3:::elsewhere"}),
           "{not json", doc({"Effect": "Maybe", "Principal": "*", "Action": "s3:*", "Resource": "*"})]
    for text in bad:
        with pytest.raises(ClientError) as e:
            s3.put_bucket_policy(Bucket=DIR, Policy=text)
        assert code(e) == "MalformedPolicy", text
    with pytest.raises(ClientError) as e:
        s3.put_bucket_policy(Bucket="absent-bucket", Policy=policy)
    assert code(e) == "NoSuchBucket"
    assert json.loads(s3.get_bucket_policy(Bucket=DIR)["Policy"]) == json.loads(policy)  # unchanged
    s3.delete_bucket_policy(Bucket=DIR)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=DIR)
    assert code(e) == "NoSuchBucketPolicy"


def test_bucket_policy_deny_and_readonly_sessions(cluster, s3):
    allow_all = doc({"Effect": "Allow", "Action": "s3express:*", "Resource": "*"})
    bob = user(cluster, "pol-bob", allow_all)
    carol = user(cluster, "pol-carol", allow_all)
    dave = user(cluster, "pol-dave")  # no IAM policy at all: the bucket policy alone allows him
    s3.put_object(Bucket=DIR, Key="shared.txt", Body=b"shared")
    assert bob.get_object(Bucket=DIR, Key="shared.txt")["Body"].read() == b"shared"
    with pytest.raises(ClientError) as e:
        dave.get_object(Bucket=DIR, Key="shared.txt")
    assert code(e) == "AccessDenied"
    s3.put_bucket_policy(Bucket=DIR, Policy=doc(
        {"Sid": "NoBob", "Effect": "Deny", "Principal": {"AWS": arn_of(cluster, "pol-bob")},
         "Action": "s3express:CreateSession", "Resource": dir_arn(cluster)},
        {"Sid": "CarolReadOnly", "Effect": "Deny", "Principal": {"AWS": [arn_of(cluster, "pol-carol")]},
         "Action": "s3express:CreateSession", "Resource": dir_arn(cluster),
         "Condition": {"StringNotEquals": {"s3express:SessionMode": "ReadOnly"}}},
        {"Sid": "DaveReads", "Effect": "Allow", "Principal": {"AWS": arn_of(cluster, "pol-dave")},
         "Action": "s3express:CreateSession", "Resource": dir_arn(cluster),
         "Condition": {"StringEquals": {"s3express:SessionMode": "ReadOnly"}}}))
    fresh_bob = again(cluster, "pol-bob")
    for call in (lambda: fresh_bob.get_object(Bucket=DIR, Key="shared.txt"),
                 lambda: fresh_bob.create_session(Bucket=DIR, SessionMode="ReadOnly")):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "AccessDenied"
    assert carol.create_session(Bucket=DIR, SessionMode="ReadOnly")["Credentials"]["SessionToken"]
    with pytest.raises(ClientError) as e:
        carol.create_session(Bucket=DIR, SessionMode="ReadWrite")
    assert code(e) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        carol.put_object(Bucket=DIR, Key="carol.txt", Body=b"x")  # implicit ReadWrite session
    assert code(e) == "AccessDenied"
    assert dave.create_session(Bucket=DIR, SessionMode="ReadOnly")["Credentials"]["AccessKeyId"].startswith("ASIA")
    # IAM-signed data calls (s3v4 clients) are CreateSession with the mode the operation needs
    dave_v4 = again(cluster, "pol-dave", signature_version="s3v4")
    assert dave_v4.get_object(Bucket=DIR, Key="shared.txt")["Body"].read() == b"shared"
    with pytest.raises(ClientError) as e:
        dave_v4.put_object(Bucket=DIR, Key="dave.txt", Body=b"x")
    assert code(e) == "AccessDenied"
    s3.delete_bucket_policy(Bucket=DIR)
    assert again(cluster, "pol-bob").get_object(Bucket=DIR, Key="shared.txt")["Body"].read() == b"shared"


def test_general_bucket_policy_deny_beats_admin_allow(cluster, s3):
    s3.put_object(Bucket=GP, Key="secret/a", Body=b"a")
    s3.put_object(Bucket=GP, Key="open/b", Body=b"b")
    s3.put_bucket_policy(Bucket=GP, Policy=doc(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{GP}/secret/*"}))
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=GP, Key="secret/a")
    assert code(e) == "AccessDenied"
    assert s3.get_object(Bucket=GP, Key="open/b")["Body"].read() == b"b"
    # a bucket policy never locks its administrators out of the policy itself
    s3.put_bucket_policy(Bucket=GP, Policy=doc(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{GP}", f"arn:aws:s3:::{GP}/*"]}))
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=GP)
    s3.delete_bucket_policy(Bucket=GP)
    assert s3.get_object(Bucket=GP, Key="secret/a")["Body"].read() == b"a"


# -- POST uploads ------------------------------------------------------------------------------------
def post(url, fields, data, filename="f.bin"):
    body, ctype = urllib3.encode_multipart_formdata([*fields.items(), ("file", (filename, data, "application/x-test"))])
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def error_code(body: bytes) -> str:
    return body.split(b"<Code>")[1].split(b"</Code>")[0].decode()


def test_presigned_post_general_bucket(cluster, s3):
    v4 = client(cluster, "s3", signature_version="s3v4")
    p = v4.generate_presigned_post(GP, "uploads/${filename}", Fields={"x-amz-meta-who": "form"},
                                   Conditions=[["starts-with", "$key", "uploads/"], ["content-length-range", 1, 1000],
                                               {"x-amz-meta-who": "form"}], ExpiresIn=120)
    status, headers, _ = post(p["url"], p["fields"], b"x" * 500, filename="photo.jpg")
    assert status == 204 and headers["etag"].strip('"') and headers["location"] == f"/{GP}/uploads/photo.jpg"
    head = s3.head_object(Bucket=GP, Key="uploads/photo.jpg")
    assert head["ContentLength"] == 500 and head["Metadata"] == {"who": "form"}
    assert head["ContentType"] == "application/x-test"
    status, _, body = post(p["url"], p["fields"], b"y" * 1001, filename="big.jpg")
    assert (status, error_code(body)) == (400, "EntityTooLarge")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=GP, Key="uploads/big.jpg")
    status, _, body = post(p["url"], p["fields"], b"", filename="empty.jpg")
    assert (status, error_code(body)) == (400, "EntityTooSmall")
    status, _, body = post(p["url"], {**p["fields"], "x-amz-meta-extra": "1"}, b"z")
    assert (status, error_code(body)) == (403, "AccessDenied")
    tampered = dict(p["fields"], policy=p["fields"]["policy"][:-4] + "AAA=")
    status, _, body = post(p["url"], tampered, b"z")
    assert status == 403 and error_code(body) in ("SignatureDoesNotMatch", "AccessDenied")
    status, _, body = post(p["url"], {k: v for k, v in p["fields"].items() if k != "x-amz-signature"}, b"z")
    assert status == 400 and error_code(body) == "InvalidArgument"
    created = v4.generate_presigned_post(GP, "created.txt", Fields={"success_action_status": "201"},
                                         Conditions=[{"success_action_status": "201"}])
    status, _, body = post(created["url"], created["fields"], b"made")
    assert status == 201 and b"<Key>created.txt</Key>" in body
    expired = v4.generate_presigned_post(GP, "late.txt", ExpiresIn=-5)
    status, _, body = post(expired["url"], expired["fields"], b"late")
    assert (status, error_code(body)) == (403, "AccessDenied") and b"expired" in body
    status, _, body = post(p["url"], {"key": "anon.txt"}, b"anon")
    assert (status, error_code(body)) == (403, "AccessDenied")


def test_presigned_post_directory_bucket_with_session(cluster, s3):
    p = s3.generate_presigned_post(DIR, "form/${filename}", ExpiresIn=120)
    assert "x-amz-s3session-token" in {k.lower() for k in p["fields"]}
    data = os.urandom(300_000)
    status, _, _ = post(p["url"], p["fields"], data, filename="d.bin")
    assert status == 204
    assert s3.get_object(Bucket=DIR, Key="form/d.bin")["Body"].read() == data


# -- authentication edges ------------------------------------------------------------------------------
def sign_at(auth, request, when: datetime.datetime):
    """botocore's SigV4 signing (SigV4Auth.add_auth) at a chosen instant."""
    request.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
    auth._modify_request_before_signing(request)
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    auth._inject_signature_to_request(request, signature)
    return request


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def session_key(cluster) -> bytes:
    return bytes.fromhex((cluster.data_dir / "gateway" / "session.key").read_text().strip())


def presigned_with_session(cluster, session, when, expires_s):
    token, secret = sessions.mint(session_key(cluster), session)
    url = f"{cluster.endpoint}/{DIR}/shared.txt?" + urlencode({"X-Amz-S3session-Token": token})
    req = sign_at(S3SigV4QueryAuth(Credentials(session.access_key_id, secret), "s3express", cluster.region,
                                   expires=expires_s), AWSRequest(method="GET", url=url), when)
    return req.url


def fetch(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_session_ttl_and_presigned_validity(cluster, s3):
    s3.put_object(Bucket=DIR, Key="shared.txt", Body=b"shared")
    creds = s3.create_session(Bucket=DIR)["Credentials"]
    left = creds["Expiration"].timestamp() - time.time()
    assert 50 < left <= 61  # the gateway's session_ttl_s
    url = s3.generate_presigned_url("get_object", Params={"Bucket": DIR, "Key": "shared.txt"}, ExpiresIn=3600)
    assert "X-Amz-Expires=3600" in url and fetch(url) == (200, b"shared")

    admin_key = cluster.credentials["access_key_id"]
    admin_arn = arn_of(cluster, "admin")
    now = int(time.time())

    def session(expires):
        return sessions.Session(os.urandom(16), DIR, admin_key, admin_arn, "ReadWrite", expires, "AES256", None)

    live = session(now + 50)
    assert fetch(presigned_with_session(cluster, live, utcnow(), 3600)) == (200, b"shared")
    # an hour-long URL whose session has ended: dead with its session
    status, body = fetch(presigned_with_session(cluster, session(now - 1), utcnow(), 3600))
    assert status == 403 and error_code(body) == "AccessDenied" and b"session" in body
    # a live session, but X-Amz-Expires has passed
    status, body = fetch(presigned_with_session(cluster, live, utcnow() - datetime.timedelta(seconds=120), 60))
    assert status == 403 and error_code(body) == "AccessDenied" and b"expired" in body


def test_virtual_host_addressing(cluster, s3):
    s3.put_object(Bucket=GP, Key="vhost/k.txt", Body=b"vhost-gp")
    s3.put_object(Bucket=DIR, Key="vhost/k.txt", Body=b"vhost-dir")
    port = urlparse(cluster.endpoint).port
    seen = []

    def to_loopback(request, **_):
        # the client addresses <bucket>.localhost:port (virtual host); *.localhost does not resolve
        # here, so send to 127.0.0.1 with the Host header the request was signed for
        u = urlparse(request.url)
        seen.append(u.netloc)
        request.headers["Host"] = u.netloc
        request.url = request.url.replace(u.netloc, f"127.0.0.1:{port}", 1)

    vc = boto3.client("s3", endpoint_url=f"http://localhost:{port}", region_name=cluster.region,
                      aws_access_key_id=cluster.credentials["access_key_id"],
                      aws_secret_access_key=cluster.credentials["secret_access_key"],
                      config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "virtual"}))
    vc.meta.events.register("before-send.s3", to_loopback)
    assert vc.get_object(Bucket=GP, Key="vhost/k.txt")["Body"].read() == b"vhost-gp"
    assert vc.get_object(Bucket=DIR, Key="vhost/k.txt")["Body"].read() == b"vhost-dir"
    vc.put_object(Bucket=DIR, Key="vhost/new.txt", Body=b"new")
    assert [o["Key"] for o in vc.list_objects_v2(Bucket=GP, Prefix="vhost/")["Contents"]] == ["vhost/k.txt"]
    assert f"{GP}.localhost:{port}" in seen and f"{DIR}.localhost:{port}" in seen
    assert s3.get_object(Bucket=DIR, Key="vhost/new.txt")["Body"].read() == b"new"


def test_request_time_too_skewed(cluster, s3):
    creds = Credentials(cluster.credentials["access_key_id"], cluster.credentials["secret_access_key"])

    def signed(when):
        req = AWSRequest(method="GET", url=f"{cluster.endpoint}/{GP}?list-type=2",
                         headers={"x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})
        sign_at(S3SigV4Auth(creds, "s3", cluster.region), req, when)
        return fetch(req.url, dict(req.headers.items()))

    assert signed(utcnow())[0] == 200  # the same signer, now: accepted
    status, body = signed(utcnow() - datetime.timedelta(minutes=20))
    assert status == 403 and error_code(body) == "RequestTimeTooSkewed"
    status, body = signed(utcnow() + datetime.timedelta(minutes=20))
    assert status == 403 and error_code(body) == "RequestTimeTooSkewed"


def test_expect_100_continue_refused_on_headers(cluster, s3):
    u = urlparse(cluster.endpoint)
    length = 50 * 1024 * 1024
    creds = Credentials(cluster.credentials["access_key_id"], "wrong-secret")
    req = AWSRequest(method="PUT", url=f"{cluster.endpoint}/{GP}/expect.bin",
                     headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": str(length)})
    sign_at(S3SigV4Auth(creds, "s3", cluster.region), req, utcnow())
    head = f"PUT /{GP}/expect.bin HTTP/1.1\r\nHost: {u.netloc}\r\nExpect: 100-continue\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() != "host") + "\r\n"
    with socket.create_connection((u.hostname, u.port), timeout=10) as sock:
        sock.sendall(head.encode())  # no body: a correct server answers on the headers alone
        reply = b""
        while b"</Error>" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    status_line = reply.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 403") and b"100 Continue" not in reply
    assert b"<Code>SignatureDoesNotMatch</Code>" in reply and b"connection: close" in reply.lower()
    with pytest.raises(ClientError):
        s3.head_object(Bucket=GP, Key="expect.bin")


def test_delete_bucket_encryption(cluster, s3):
    s3.delete_bucket_encryption(Bucket=DIR)  # SSE-S3 already: resets to SSE-S3, a no-op
    rule = s3.get_bucket_encryption(Bucket=DIR)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    name = f"cmk--{ZONE}--x-s3"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration=DIR_CONFIG)
    key_arn = client(cluster, "kms").create_key()["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
        "BucketKeyEnabled": True}]})
    with pytest.raises(ClientError) as e:
        s3.delete_bucket_encryption(Bucket=name)
    assert code(e) == "InvalidArgument" and "cannot be changed" in str(e.value)
    rule = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == key_arn
    with pytest.raises(ClientError) as e:
        s3.delete_bucket_encryption(Bucket="absent-bucket")
    assert code(e) == "NoSuchBucket"
