"""The KMS through the gateway with real boto3 (and the aws CLI) against real processes:
the whole key lifecycle, aliases, rotation, policies, tags, and revocation reaching S3 within
5 seconds (disable -> KMS.DisabledException, enable -> works, ScheduleKeyDeletion ->
KMS.KMSInvalidStateException, CancelKeyDeletion -> Disabled -> enable -> works)."""

import base64
import json
import os
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ZONE = "use1-az4"
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": ZONE},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}
REVOCATION_DEADLINE_S = 5.0


def code_of(fn, *a, **kw) -> str:
    with pytest.raises(ClientError) as ei:
        fn(*a, **kw)
    return ei.value.response["Error"]["Code"]


def test_key_lifecycle_through_boto3(cluster):
    kms = client(cluster, "kms")
    key = kms.create_key(Description="lifecycle", Tags=[{"TagKey": "team", "TagValue": "storage"}])["KeyMetadata"]
    kid, arn = key["KeyId"], key["Arn"]
    assert arn == f"arn:aws:kms:{cluster.region}:000000000000:key/{kid}"

    # aliases, and every way of naming a key
    kms.create_alias(AliasName="alias/lifecycle", TargetKeyId=kid)
    alias_arn = f"arn:aws:kms:{cluster.region}:000000000000:alias/lifecycle"
    for ref in (kid, arn, "alias/lifecycle", alias_arn):
        assert kms.describe_key(KeyId=ref)["KeyMetadata"]["KeyId"] == kid
    names = [a["AliasName"] for a in kms.list_aliases(KeyId=kid)["Aliases"]]
    assert names == ["alias/lifecycle"]
    assert code_of(kms.create_alias, AliasName="alias/aws/mine", TargetKeyId=kid) == "NotAuthorizedException"
    assert code_of(kms.create_alias, AliasName="alias/lifecycle", TargetKeyId=kid) == "AlreadyExistsException"

    # envelope operations, context as AAD
    ctx = {"app": "test", "tenant": "a"}
    enc = kms.encrypt(KeyId="alias/lifecycle", Plaintext=b"secret", EncryptionContext=ctx)
    assert enc["KeyId"] == arn
    blob = enc["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=dict(reversed(ctx.items())))["Plaintext"] == b"secret"
    assert code_of(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"app": "test"}) == "InvalidCiphertextException"
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    assert code_of(kms.decrypt, CiphertextBlob=tampered, EncryptionContext=ctx) == "InvalidCiphertextException"
    other = kms.create_key(Description="other")["KeyMetadata"]
    assert code_of(kms.decrypt, CiphertextBlob=blob, EncryptionContext=ctx,
                   KeyId=other["KeyId"]) == "IncorrectKeyException"
    dk = kms.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext=ctx)
    assert len(dk["Plaintext"]) == 32
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == dk["Plaintext"]
    assert "Plaintext" not in kms.generate_data_key_without_plaintext(KeyId=arn, NumberOfBytes=16)
    assert len(kms.generate_random(NumberOfBytes=64)["Plaintext"]) == 64

    # rotation keeps old versions; ReEncrypt moves a blob to the newest
    assert kms.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is False
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    status = kms.get_key_rotation_status(KeyId=kid)
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 90
    kms.rotate_key_on_demand(KeyId=kid)
    rotations = kms.list_key_rotations(KeyId=kid)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"secret"
    moved = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=ctx, DestinationKeyId=kid,
                           DestinationEncryptionContext={"new": "ctx"})
    assert moved["SourceKeyId"] == moved["KeyId"] == arn and moved["CiphertextBlob"] != blob
    assert kms.decrypt(CiphertextBlob=moved["CiphertextBlob"],
                       EncryptionContext={"new": "ctx"})["Plaintext"] == b"secret"
    kms.disable_key_rotation(KeyId=kid)

    # policy and tags
    policy = json.loads(kms.get_key_policy(KeyId=kid, PolicyName="default")["Policy"])
    assert policy["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::000000000000:root"}
    assert code_of(kms.put_key_policy, KeyId=kid, PolicyName="default", Policy="{nope") == \
        "MalformedPolicyDocumentException"
    kms.tag_resource(KeyId=kid, Tags=[{"TagKey": "env", "TagValue": "test"}])
    kms.untag_resource(KeyId=kid, TagKeys=["team"])
    assert kms.list_resource_tags(KeyId=kid)["Tags"] == [{"TagKey": "env", "TagValue": "test"}]

    # states
    kms.disable_key(KeyId=kid)
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled"
    assert code_of(kms.decrypt, CiphertextBlob=blob, EncryptionContext=ctx) == "DisabledException"
    kms.enable_key(KeyId=kid)
    assert code_of(kms.schedule_key_deletion, KeyId=kid, PendingWindowInDays=6) == "ValidationException"
    out = kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    assert out["KeyState"] == "PendingDeletion" and out["PendingWindowInDays"] == 7
    assert code_of(kms.encrypt, KeyId=kid, Plaintext=b"x") == "KMSInvalidStateException"
    assert code_of(kms.enable_key, KeyId=kid) == "KMSInvalidStateException"
    kms.cancel_key_deletion(KeyId=kid)
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled"
    kms.enable_key(KeyId=kid)
    kms.update_alias(AliasName="alias/lifecycle", TargetKeyId=other["KeyId"])
    assert kms.describe_key(KeyId="alias/lifecycle")["KeyMetadata"]["KeyId"] == other["KeyId"]
    kms.delete_alias(AliasName="alias/lifecycle")
    assert code_of(kms.describe_key, KeyId="alias/lifecycle") == "NotFoundException"
    listed = {k["KeyId"] for k in kms.list_keys()["Keys"]}
    assert {kid, other["KeyId"]} <= listed


def test_iam_policy_and_key_policy_both_decide(cluster):
    admin_kms = client(cluster, "kms")
    iam = client(cluster, "iam")
    key = admin_kms.create_key(Description="guarded")["KeyMetadata"]
    iam.create_user(UserName="kms-limited")
    iam.put_user_policy(UserName="kms-limited", PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}]}))
    k = iam.create_access_key(UserName="kms-limited")["AccessKey"]
    user = client(cluster, "kms", akid=k["AccessKeyId"], secret=k["SecretAccessKey"])
    blob = user.encrypt(KeyId=key["KeyId"], Plaintext=b"hi")["CiphertextBlob"]
    assert code_of(user.disable_key, KeyId=key["KeyId"]) == "AccessDeniedException"  # IAM says no
    assert code_of(user.create_key) == "AccessDeniedException"
    # the key policy now denies this user Decrypt although IAM allows it
    user_arn = "arn:aws:iam::000000000000:user/kms-limited"
    admin_kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"}, "Action": "kms:*",
             "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": user_arn}, "Action": "kms:Decrypt", "Resource": "*"}]}))
    with pytest.raises(ClientError) as ei:
        user.decrypt(CiphertextBlob=blob)
    assert ei.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "no resource-based policy allows" in ei.value.response["Error"]["Message"] or \
        "not authorized" in ei.value.response["Error"]["Message"]
    assert admin_kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"hi"
    audit = [json.loads(x) for x in (cluster.data_dir / "kms" / "audit.jsonl").read_text().splitlines()]
    denied = [r for r in audit if r["eventName"] == "Decrypt" and r.get("errorCode") == "AccessDeniedException"]
    assert denied and denied[-1]["userIdentity"]["arn"] == user_arn
    assert denied[-1]["resources"][0]["ARN"] == key["Arn"]


def test_aws_cli_kms_commands(cluster, tmp_path):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": cluster.credentials["access_key_id"],
           "AWS_SECRET_ACCESS_KEY": cluster.credentials["secret_access_key"],
           "AWS_DEFAULT_REGION": cluster.region, "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}

    def aws(*args: str) -> dict:
        out = subprocess.run(["aws", "--endpoint-url", cluster.endpoint, "--output", "json", "kms", *args],
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    kid = aws("create-key", "--description", "from the cli")["KeyMetadata"]["KeyId"]
    aws("create-alias", "--alias-name", "alias/cli", "--target-key-id", kid)
    assert aws("describe-key", "--key-id", "alias/cli")["KeyMetadata"]["KeyId"] == kid
    (tmp_path / "plain").write_bytes(b"cli!")
    blob = aws("encrypt", "--key-id", "alias/cli", "--plaintext", f"fileb://{tmp_path / 'plain'}")["CiphertextBlob"]
    (tmp_path / "blob").write_bytes(base64.b64decode(blob))  # the CLI prints blobs base64, takes them as files
    assert base64.b64decode(aws("decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'blob'}")["Plaintext"]) == b"cli!"
    aws("disable-key", "--key-id", kid)
    assert aws("describe-key", "--key-id", kid)["KeyMetadata"]["KeyState"] == "Disabled"
    assert kid in [a.get("TargetKeyId") for a in aws("list-aliases")["Aliases"]]


# -- revocation reaching S3 -------------------------------------------------------------------


def _wait_for(fn, want: str | None, deadline_s: float = REVOCATION_DEADLINE_S) -> float:
    """Call fn until it fails with S3 error ``want`` (or succeeds, want=None); returns the time taken."""
    start = time.monotonic()
    last = None
    while True:
        try:
            fn()
            last = None
        except ClientError as exc:
            last = exc.response["Error"]["Code"]
        if last == want:
            return time.monotonic() - start
        assert time.monotonic() - start < deadline_s, f"still {last!r} after {deadline_s}s, want {want!r}"
        time.sleep(0.1)


def test_revocation_reaches_s3_within_seconds(cluster):
    kms, s3 = client(cluster, "kms"), client(cluster, "s3")
    kid = kms.create_key(Description="revocable")["KeyMetadata"]["KeyId"]
    arn = kms.describe_key(KeyId=kid)["KeyMetadata"]["Arn"]
    bucket = f"revocable--{ZONE}--x-s3"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=DIR_CONFIG)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": arn},
        "BucketKeyEnabled": True}]})
    s3.put_object(Bucket=bucket, Key="doc", Body=b"payload")

    def get():
        assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"payload"

    def put():
        s3.put_object(Bucket=bucket, Key="doc2", Body=b"more")

    get()  # cached on the node now
    kms.disable_key(KeyId=kid)
    took = _wait_for(get, "KMS.DisabledException")
    assert code_of(put) == "KMS.DisabledException"
    print(f"disable -> GetObject refused after {took:.2f}s")
    with pytest.raises(ClientError) as ei:
        get()
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    kms.enable_key(KeyId=kid)
    _wait_for(get, None)
    put()

    kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    _wait_for(get, "KMS.KMSInvalidStateException")
    assert code_of(put) == "KMS.KMSInvalidStateException"
    kms.cancel_key_deletion(KeyId=kid)
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled"
    assert code_of(get) == "KMS.DisabledException"
    kms.enable_key(KeyId=kid)
    _wait_for(get, None)
    assert s3.get_object(Bucket=bucket, Key="doc2")["Body"].read() == b"more"
