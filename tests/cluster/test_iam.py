"""IAM through the gateway's query protocol, end to end with real processes: managed policies
with versions, groups, attachments (boto3 and the aws CLI), and what they mean for real S3
requests: a group policy grants, an attached managed Deny beats an inline Allow, and the
condition operators of real requests (s3express:SessionMode, aws:SourceIp, aws:SecureTransport)."""

import json
import os
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ZONE = "use1-az4"
BUCKET = f"iam-e2e--{ZONE}--x-s3"
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": ZONE},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def iam(cluster):
    return client(cluster, "iam")


@pytest.fixture(scope="module")
def bucket_arn(cluster):
    client(cluster, "s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration=DIR_CONFIG)
    return f"arn:aws:s3express:{cluster.region}:{cluster.account_id}:bucket/{BUCKET}"


def new_user(cluster, iam, name):
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return client(cluster, "s3", akid=key["AccessKeyId"], secret=key["SecretAccessKey"])


def test_managed_policy_versions(iam):
    p = iam.create_policy(PolicyName="ReadThings", Path="/team/", Description="read",
                          PolicyDocument=doc({"Effect": "Allow", "Action": "s3express:CreateSession",
                                              "Resource": "*"}))["Policy"]
    arn = p["Arn"]
    assert arn.endswith(":policy/team/ReadThings") and p["DefaultVersionId"] == "v1"
    assert p["AttachmentCount"] == 0 and p["IsAttachable"] is True
    with pytest.raises(ClientError) as e:
        iam.create_policy(PolicyName="readthings", PolicyDocument=doc({"Effect": "Allow", "Action": "*", "Resource": "*"}))
    assert code(e) == "EntityAlreadyExists"
    with pytest.raises(ClientError) as e:
        iam.create_policy(PolicyName="Bad", PolicyDocument='{"Statement": "nope"}')
    assert code(e) == "MalformedPolicyDocument"
    v2 = iam.create_policy_version(PolicyArn=arn, SetAsDefault=True,
                                   PolicyDocument=doc({"Effect": "Deny", "Action": "*", "Resource": "*"}))
    assert v2["PolicyVersion"]["VersionId"] == "v2" and v2["PolicyVersion"]["IsDefaultVersion"]
    got = iam.get_policy_version(PolicyArn=arn, VersionId="v2")["PolicyVersion"]
    assert got["Document"]["Statement"][0]["Effect"] == "Deny"  # botocore decoded the URL-encoded JSON
    assert [v["VersionId"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]] == ["v2", "v1"]
    with pytest.raises(ClientError) as e:
        iam.delete_policy_version(PolicyArn=arn, VersionId="v2")
    assert code(e) == "DeleteConflict"
    iam.set_default_policy_version(PolicyArn=arn, VersionId="v1")
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v1"
    iam.delete_policy_version(PolicyArn=arn, VersionId="v2")
    for n in range(4):
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc({"Effect": "Allow", "Action": "s3express:*",
                                                                     "Resource": f"arn:aws:s3express:::{n}"}))
    with pytest.raises(ClientError) as e:
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc({"Effect": "Allow", "Action": "*", "Resource": "*"}))
    assert code(e) == "LimitExceeded"
    assert arn in [x["Arn"] for x in iam.list_policies(Scope="Local")["Policies"]]
    assert iam.list_policies(Scope="AWS")["Policies"] == []
    with pytest.raises(ClientError) as e:
        iam.get_policy(PolicyArn=arn + "x")
    assert code(e) == "NoSuchEntity"
    iam.delete_policy(PolicyArn=arn)
    assert arn not in [x["Arn"] for x in iam.list_policies()["Policies"]]


def test_groups_and_attachments(cluster, iam):
    iam.create_user(UserName="gina")
    g = iam.create_group(GroupName="readers")["Group"]
    assert g["Arn"].endswith(":group/readers")
    iam.add_user_to_group(GroupName="readers", UserName="gina")
    got = iam.get_group(GroupName="readers")
    assert [u["UserName"] for u in got["Users"]] == ["gina"]
    assert [x["GroupName"] for x in iam.list_groups_for_user(UserName="gina")["Groups"]] == ["readers"]
    iam.put_group_policy(GroupName="readers", PolicyName="inline",
                         PolicyDocument=doc({"Effect": "Allow", "Action": "s3express:CreateSession", "Resource": "*"}))
    assert iam.get_group_policy(GroupName="readers", PolicyName="inline")["PolicyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert iam.list_group_policies(GroupName="readers")["PolicyNames"] == ["inline"]
    arn = iam.create_policy(PolicyName="Shared", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "s3express:CreateSession", "Resource": "*"}))["Policy"]["Arn"]
    iam.attach_group_policy(GroupName="readers", PolicyArn=arn)
    iam.attach_user_policy(UserName="gina", PolicyArn=arn)
    assert iam.list_attached_group_policies(GroupName="readers")["AttachedPolicies"] == [{"PolicyName": "Shared", "PolicyArn": arn}]
    assert iam.list_attached_user_policies(UserName="gina")["AttachedPolicies"] == [{"PolicyName": "Shared", "PolicyArn": arn}]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 2
    for call, kwargs in ((iam.delete_policy, {"PolicyArn": arn}), (iam.delete_group, {"GroupName": "readers"}),
                         (iam.delete_user, {"UserName": "gina"})):
        with pytest.raises(ClientError) as e:
            call(**kwargs)
        assert code(e) == "DeleteConflict", call
    with pytest.raises(ClientError) as e:
        iam.attach_user_policy(UserName="gina", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    assert code(e) == "NoSuchEntity"
    with pytest.raises(ClientError) as e:
        iam.add_user_to_group(GroupName="nosuch", UserName="gina")
    assert code(e) == "NoSuchEntity"
    iam.detach_user_policy(UserName="gina", PolicyArn=arn)
    iam.detach_group_policy(GroupName="readers", PolicyArn=arn)
    iam.delete_group_policy(GroupName="readers", PolicyName="inline")
    iam.remove_user_from_group(GroupName="readers", UserName="gina")
    iam.delete_group(GroupName="readers")
    iam.delete_policy(PolicyArn=arn)
    iam.delete_user(UserName="gina")
    assert "readers" not in [x["GroupName"] for x in iam.list_groups()["Groups"]]


def test_group_grant_and_managed_deny_beats_inline_allow(cluster, iam, bucket_arn):
    s3 = new_user(cluster, iam, "alice")
    with pytest.raises(ClientError) as e:
        s3.create_session(Bucket=BUCKET)
    assert code(e) == "AccessDenied"
    iam.create_group(GroupName="writers")
    iam.put_group_policy(GroupName="writers", PolicyName="session", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "s3express:CreateSession", "Resource": bucket_arn}))
    iam.add_user_to_group(GroupName="writers", UserName="alice")
    assert s3.create_session(Bucket=BUCKET)["Credentials"]["SessionToken"]  # granted by the group
    iam.put_user_policy(UserName="alice", PolicyName="allow", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "s3express:*", "Resource": "*"}))
    deny = iam.create_policy(PolicyName="NoSessions", PolicyDocument=doc(
        {"Effect": "Deny", "Action": "s3express:CreateSession", "Resource": bucket_arn}))["Policy"]["Arn"]
    iam.attach_user_policy(UserName="alice", PolicyArn=deny)
    with pytest.raises(ClientError) as e:
        s3.create_session(Bucket=BUCKET)
    assert code(e) == "AccessDenied"
    # a new default version of the managed policy changes the decision
    iam.create_policy_version(PolicyArn=deny, SetAsDefault=True, PolicyDocument=doc(
        {"Effect": "Deny", "Action": "s3express:CreateSession", "Resource": "arn:aws:s3express:::other"}))
    assert s3.create_session(Bucket=BUCKET)["Credentials"]["SessionToken"]
    iam.detach_user_policy(UserName="alice", PolicyArn=deny)


@pytest.mark.parametrize("condition,allowed", [
    ({"StringEquals": {"s3express:SessionMode": "ReadOnly"}}, {"ReadOnly": True, "ReadWrite": False}),
    ({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {"ReadOnly": True, "ReadWrite": True}),
    ({"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {"ReadOnly": False, "ReadWrite": False}),
    ({"Bool": {"aws:SecureTransport": "true"}}, {"ReadOnly": False, "ReadWrite": False}),
    ({"Bool": {"aws:SecureTransport": "false"}}, {"ReadOnly": True, "ReadWrite": True}),
])
def test_condition_operators_in_real_requests(cluster, iam, bucket_arn, condition, allowed):
    name = "cond-" + os.urandom(4).hex()
    s3 = new_user(cluster, iam, name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "s3express:CreateSession", "Resource": bucket_arn, "Condition": condition}))
    for mode, ok in allowed.items():
        if ok:
            assert s3.create_session(Bucket=BUCKET, SessionMode=mode)["Credentials"]["AccessKeyId"]
        else:
            with pytest.raises(ClientError) as e:
                s3.create_session(Bucket=BUCKET, SessionMode=mode)
            assert code(e) == "AccessDenied", (condition, mode)


def test_iam_denied_and_bad_input(cluster, iam):
    s3 = new_user(cluster, iam, "mallory")
    creds = s3._request_signer._credentials  # noqa: SLF001 (reuse the user's keys for an IAM client)
    weak = client(cluster, "iam", akid=creds.access_key, secret=creds.secret_key)
    with pytest.raises(ClientError) as e:
        weak.create_group(GroupName="mine")
    assert code(e) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        iam.create_group(GroupName="bad name!")
    assert code(e) == "ValidationError"
    with pytest.raises(ClientError) as e:
        iam.get_policy_version(PolicyArn=f"arn:aws:iam::{cluster.account_id}:policy/x", VersionId="2")
    assert code(e) == "ValidationError"


def aws(cluster, *args: str) -> dict:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": cluster.credentials["access_key_id"],
           "AWS_SECRET_ACCESS_KEY": cluster.credentials["secret_access_key"], "AWS_DEFAULT_REGION": cluster.region,
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    r = subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", cluster.endpoint, "--output", "json",
                        "iam", *args], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip() else {}


def test_aws_cli_groups_and_policies(cluster):
    aws(cluster, "create-user", "--user-name", "cli-user")
    aws(cluster, "create-group", "--group-name", "cli-group")
    aws(cluster, "add-user-to-group", "--group-name", "cli-group", "--user-name", "cli-user")
    arn = aws(cluster, "create-policy", "--policy-name", "CliPolicy", "--policy-document",
              doc({"Effect": "Allow", "Action": "s3express:CreateSession", "Resource": "*"}))["Policy"]["Arn"]
    aws(cluster, "attach-group-policy", "--group-name", "cli-group", "--policy-arn", arn)
    attached = aws(cluster, "list-attached-group-policies", "--group-name", "cli-group")["AttachedPolicies"]
    assert attached == [{"PolicyName": "CliPolicy", "PolicyArn": arn}]
    groups = aws(cluster, "list-groups-for-user", "--user-name", "cli-user")["Groups"]
    assert [g["GroupName"] for g in groups] == ["cli-group"]
    version = aws(cluster, "get-policy-version", "--policy-arn", arn, "--version-id", "v1")["PolicyVersion"]
    assert version["Document"]["Statement"][0]["Action"] == "s3express:CreateSession"
