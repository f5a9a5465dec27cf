"""The seed's walkthrough, end to end with real boto3 against real processes:
a KMS key, a directory bucket with SSE-KMS, put/head/get of a confidential document, the key
fixed for the bucket's life, CreateSession denied without KMS permissions, allowed with them,
and no plaintext anywhere on disk."""

import json
import os
import time

import pytest
from botocore.exceptions import ClientError

from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

BUCKET = "s3express-kms--use1-az4--x-s3"
MARKER = b"CONFIDENTIAL-onezone-" + os.urandom(8).hex().encode()
DOC = MARKER + b" quarterly numbers: 42\n" * 100
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": "use1-az4"},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}


@pytest.fixture(scope="module")
def walkthrough(cluster):
    kms = client(cluster, "kms")
    key = kms.create_key(Description="walkthrough")["KeyMetadata"]
    s3 = client(cluster, "s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration=DIR_CONFIG)
    s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]},
        "BucketKeyEnabled": True}]})
    put = s3.put_object(Bucket=BUCKET, Key="confidential-doc.txt", Body=DOC)
    return {"key": key, "s3": s3, "kms": kms, "put": put}


def _sse_fields(resp, key_arn):
    assert resp["ServerSideEncryption"] == "aws:kms"
    assert resp["SSEKMSKeyId"] == key_arn
    assert resp["BucketKeyEnabled"] is True


def test_kms_key_metadata(walkthrough):
    key = walkthrough["key"]
    assert key["KeyState"] == "Enabled" and key["KeyManager"] == "CUSTOMER"
    assert key["Arn"].endswith(key["KeyId"])
    described = walkthrough["kms"].describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert described["Arn"] == key["Arn"]
    listed = walkthrough["kms"].list_keys()["Keys"]
    assert key["KeyId"] in [k["KeyId"] for k in listed]


def test_put_head_get_with_sse_kms(walkthrough):
    s3, arn = walkthrough["s3"], walkthrough["key"]["Arn"]
    _sse_fields(walkthrough["put"], arn)
    assert walkthrough["put"]["ETag"].startswith('"')
    head = s3.head_object(Bucket=BUCKET, Key="confidential-doc.txt", ChecksumMode="ENABLED")
    _sse_fields(head, arn)
    assert head["StorageClass"] == "EXPRESS_ONEZONE"
    assert head["ContentLength"] == len(DOC)
    assert head["ChecksumCRC32"]
    get = s3.get_object(Bucket=BUCKET, Key="confidential-doc.txt", ChecksumMode="ENABLED")
    _sse_fields(get, arn)
    assert get["Body"].read() == DOC
    enc = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": arn}
    assert enc["BucketKeyEnabled"] is True


def test_range_and_missing_key(walkthrough):
    s3 = walkthrough["s3"]
    part = s3.get_object(Bucket=BUCKET, Key="confidential-doc.txt", Range="bytes=0-9")
    assert part["Body"].read() == DOC[:10] and part["ContentRange"] == f"bytes 0-9/{len(DOC)}"
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=BUCKET, Key="no-such-doc.txt")
    assert ei.value.response["Error"]["Code"] == "NoSuchKey"


def test_second_key_is_refused(walkthrough):
    other = walkthrough["kms"].create_key(Description="another")["KeyMetadata"]
    with pytest.raises(ClientError) as ei:
        walkthrough["s3"].put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": other["Arn"]},
            "BucketKeyEnabled": True}]})
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # the same key again is fine, and the bucket still uses the first one
    walkthrough["s3"].put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": walkthrough["key"]["Arn"]},
        "BucketKeyEnabled": True}]})
    head = walkthrough["s3"].head_object(Bucket=BUCKET, Key="confidential-doc.txt")
    assert head["SSEKMSKeyId"] == walkthrough["key"]["Arn"]


def _user(cluster, name, statements):
    iam = client(cluster, "iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": statements}))
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return client(cluster, "s3", akid=k["AccessKeyId"], secret=k["SecretAccessKey"])


def test_create_session_needs_kms_permissions(cluster, walkthrough):
    bucket_arn = f"arn:aws:s3express:{cluster.region}:000000000000:bucket/{BUCKET}"
    session_only = _user(cluster, "no-kms-user", [
        {"Effect": "Allow", "Action": "s3express:CreateSession", "Resource": bucket_arn}])
    with pytest.raises(ClientError) as ei:
        session_only.create_session(Bucket=BUCKET)
    assert ei.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as ei:
        session_only.get_object(Bucket=BUCKET, Key="confidential-doc.txt")
    assert ei.value.response["Error"]["Code"] == "AccessDenied"

    full = _user(cluster, "kms-user", [
        {"Effect": "Allow", "Action": "s3express:CreateSession", "Resource": bucket_arn},
        {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": walkthrough["key"]["Arn"]}])
    got = full.get_object(Bucket=BUCKET, Key="confidential-doc.txt")
    assert got["Body"].read() == DOC
    _sse_fields(got, walkthrough["key"]["Arn"])


def test_read_only_session_cannot_write(cluster, walkthrough):
    s3 = walkthrough["s3"]
    creds = s3.create_session(Bucket=BUCKET, SessionMode="ReadOnly")["Credentials"]
    assert creds["Expiration"].timestamp() > time.time() + 200
    assert creds["AccessKeyId"].startswith("ASIA")


def test_no_plaintext_on_disk(cluster, walkthrough):
    hits = []
    for root, _dirs, files in os.walk(cluster.data_dir):
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                if MARKER in fh.read():
                    hits.append(path)
    assert hits == []


def test_list_directory_buckets_paginates(cluster, walkthrough):
    s3 = client(cluster, "s3")
    names = [f"page{i}--use1-az4--x-s3" for i in range(3)]
    for name in names:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration=DIR_CONFIG)
    pages = list(s3.get_paginator("list_directory_buckets").paginate(PaginationConfig={"PageSize": 2}))
    listed = [b["Name"] for p in pages for b in p["Buckets"]]
    assert set(names) | {BUCKET} <= set(listed) and len(listed) == len(set(listed))
    assert len(pages) >= 2 and "ContinuationToken" not in pages[-1]
    with pytest.raises(ClientError) as ei:
        s3.list_directory_buckets(ContinuationToken="not!base64")
    assert ei.value.response["Error"]["Code"] == "InvalidArgument"
    for name in names:
        s3.delete_bucket(Bucket=name)
