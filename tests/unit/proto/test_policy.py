"""Table-driven tests for proto.policy (IAM policy parsing and evaluation)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto.policy import (
    Decision,
    MalformedPolicy,
    Policy,
    evaluate,
    parse_policy,
)

ACCT = "111122223333"
OTHER_ACCT = "444455556666"
BUCKET_ARN = f"arn:aws:s3express:us-east-1:{ACCT}:bucket/amzn-s3-demo-bucket--use1-az4--x-s3"
OTHER_BUCKET_ARN = f"arn:aws:s3express:us-east-1:{ACCT}:bucket/other--use1-az4--x-s3"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY_ARN = f"arn:aws:kms:us-east-1:{ACCT}:key/0000abcd-12ab-34cd-56ef-1234567890ab"
ALICE = f"arn:aws:iam::{ACCT}:user/alice"
BOB = f"arn:aws:iam::{ACCT}:user/bob"
MALLORY = f"arn:aws:iam::{OTHER_ACCT}:user/mallory"

ALLOW, DENY, IMPLICIT = Decision.ALLOW, Decision.DENY, Decision.IMPLICIT_DENY


def stmt(effect: str = "Allow", action: Any = "*", resource: Any = "*", **extra: Any) -> dict:
    """Build a statement; ``not_action``/``not_resource`` switch to the Not* forms."""
    out: dict[str, Any] = {"Effect": effect}
    out["NotAction" if extra.pop("not_action", False) else "Action"] = action
    out["NotResource" if extra.pop("not_resource", False) else "Resource"] = resource
    out.update(extra)
    return out


def doc(*statements: dict, version: str | None = "2012-10-17") -> dict:
    out: dict[str, Any] = {"Statement": list(statements)}
    if version is not None:
        out["Version"] = version
    return out


class Case(NamedTuple):
    id: str
    policies: list[dict]
    action: str
    resource: str
    expected: Decision
    context: dict = {}
    principal: str | None = None


S3X_EXAMPLE = {
    "Effect": "Allow",
    "Action": "s3express:CreateSession",
    "Resource": BUCKET_ARN,
    "Condition": {"StringEquals": {"s3express:SessionMode": "ReadOnly"}},
}
KMS_POLICY = doc(stmt("Allow", ["kms:GenerateDataKey", "kms:Decrypt"], KEY_ARN))
CREATE = "s3express:CreateSession"

CASES = [
    # --- allow / deny matrix
    Case("no-policies", [], CREATE, BUCKET_ARN, IMPLICIT),
    Case("empty-effect-match-allow", [doc(stmt())], CREATE, BUCKET_ARN, ALLOW),
    Case("allow-other-action", [doc(stmt(action="s3:GetObject"))], CREATE, BUCKET_ARN, IMPLICIT),
    Case("deny-only", [doc(stmt("Deny"))], CREATE, BUCKET_ARN, DENY),
    Case("allow-and-deny-same-policy", [doc(stmt(), stmt("Deny", CREATE))], CREATE, BUCKET_ARN, DENY),
    Case("deny-first-policy", [doc(stmt("Deny", CREATE)), doc(stmt())], CREATE, BUCKET_ARN, DENY),
    Case("deny-second-policy", [doc(stmt()), doc(stmt("Deny", CREATE))], CREATE, BUCKET_ARN, DENY),
    Case("deny-other-action", [doc(stmt()), doc(stmt("Deny", "s3:*"))], CREATE, BUCKET_ARN, ALLOW),
    Case("deny-other-resource", [doc(stmt(), stmt("Deny", "*", OTHER_BUCKET_ARN))], CREATE, BUCKET_ARN, ALLOW),
    Case("allow-in-second-policy", [doc(stmt(action="s3:*")), doc(stmt(action=CREATE))], CREATE, BUCKET_ARN, ALLOW),
    # --- action wildcards and case
    Case("service-star", [doc(stmt(action="s3express:*"))], CREATE, BUCKET_ARN, ALLOW),
    Case("service-star-other-service", [doc(stmt(action="s3express:*"))], "s3:GetObject", BUCKET_ARN, IMPLICIT),
    Case("prefix-star", [doc(stmt(action="kms:Generate*"))], "kms:GenerateDataKeyWithoutPlaintext", KEY_ARN, ALLOW),
    Case("prefix-star-miss", [doc(stmt(action="kms:Generate*"))], "kms:Decrypt", KEY_ARN, IMPLICIT),
    Case("question-mark", [doc(stmt(action="kms:?ecrypt"))], "kms:Decrypt", KEY_ARN, ALLOW),
    Case("question-mark-one-char", [doc(stmt(action="kms:?ecrypt"))], "kms:ReEncrypt", KEY_ARN, IMPLICIT),
    Case("action-case-insensitive", [doc(stmt(action="S3EXPRESS:createsession"))], CREATE, BUCKET_ARN, ALLOW),
    Case("action-list", [doc(stmt(action=["s3:GetObject", CREATE]))], CREATE, BUCKET_ARN, ALLOW),
    Case("action-service-prefix-only", [doc(stmt(action="s3:*"))], CREATE, BUCKET_ARN, IMPLICIT),
    # --- resource wildcards and case
    Case("resource-star-spans-slash", [doc(stmt(resource="arn:aws:s3:::b/*"))], "s3:GetObject", "arn:aws:s3:::b/x/y/z", ALLOW),
    Case("resource-prefix-not-bucket", [doc(stmt(resource="arn:aws:s3:::b/*"))], "s3:GetObject", "arn:aws:s3:::b", IMPLICIT),
    Case("resource-other-bucket", [doc(stmt(resource="arn:aws:s3:::b/*"))], "s3:GetObject", "arn:aws:s3:::b2/x", IMPLICIT),
    Case("resource-star-spans-colon", [doc(stmt(resource="arn:aws:s3express:*"))], CREATE, BUCKET_ARN, ALLOW),
    Case("resource-case-sensitive", [doc(stmt(resource="arn:aws:s3:::B/*"))], "s3:GetObject", "arn:aws:s3:::b/x", IMPLICIT),
    Case("resource-question", [doc(stmt(resource="arn:aws:s3:::log?"))], "s3:ListBucket", "arn:aws:s3:::logs", ALLOW),
    Case("resource-question-one", [doc(stmt(resource="arn:aws:s3:::log?"))], "s3:ListBucket", "arn:aws:s3:::logsx", IMPLICIT),
    Case("resource-list", [doc(stmt(resource=[OTHER_BUCKET_ARN, BUCKET_ARN]))], CREATE, BUCKET_ARN, ALLOW),
    Case("resource-regex-chars-literal", [doc(stmt(resource="arn:aws:s3:::a.c/*"))], "s3:GetObject", "arn:aws:s3:::abc/x", IMPLICIT),
    # --- NotAction / NotResource
    Case("notaction-allows-others", [doc(stmt(action="kms:Decrypt", not_action=True))], "kms:Encrypt", KEY_ARN, ALLOW),
    Case("notaction-excludes", [doc(stmt(action="kms:Decrypt", not_action=True))], "kms:Decrypt", KEY_ARN, IMPLICIT),
    Case("deny-notaction", [doc(stmt(), stmt("Deny", CREATE, not_action=True))], "s3express:DeleteBucket", BUCKET_ARN, DENY),
    Case("deny-notaction-spared", [doc(stmt(), stmt("Deny", CREATE, not_action=True))], CREATE, BUCKET_ARN, ALLOW),
    Case("deny-notresource-outside", [doc(stmt(), stmt("Deny", resource=BUCKET_ARN, not_resource=True))], CREATE, OTHER_BUCKET_ARN, DENY),
    Case("deny-notresource-inside", [doc(stmt(), stmt("Deny", resource=BUCKET_ARN, not_resource=True))], CREATE, BUCKET_ARN, ALLOW),
    Case("allow-notresource", [doc(stmt(resource="arn:aws:s3express:*", not_resource=True))], "kms:Decrypt", KEY_ARN, ALLOW),
    # --- the S3 Express documentation example
    Case("s3x-readonly", [doc(S3X_EXAMPLE)], CREATE, BUCKET_ARN, ALLOW, {"s3express:SessionMode": "ReadOnly"}),
    Case("s3x-readwrite", [doc(S3X_EXAMPLE)], CREATE, BUCKET_ARN, IMPLICIT, {"s3express:SessionMode": "ReadWrite"}),
    Case("s3x-no-mode", [doc(S3X_EXAMPLE)], CREATE, BUCKET_ARN, IMPLICIT),
    Case("s3x-other-bucket", [doc(S3X_EXAMPLE)], CREATE, OTHER_BUCKET_ARN, IMPLICIT, {"s3express:SessionMode": "ReadOnly"}),
    Case("s3x-2008-version", [doc(S3X_EXAMPLE, version=None)], CREATE, BUCKET_ARN, ALLOW, {"s3express:SessionMode": "ReadOnly"}),
    # --- KMS
    Case("kms-generate", [KMS_POLICY], "kms:GenerateDataKey", KEY_ARN, ALLOW),
    Case("kms-decrypt", [KMS_POLICY], "kms:Decrypt", KEY_ARN, ALLOW),
    Case("kms-encrypt-not-granted", [KMS_POLICY], "kms:Encrypt", KEY_ARN, IMPLICIT),
    Case("kms-other-key", [KMS_POLICY], "kms:Decrypt", OTHER_KEY_ARN, IMPLICIT),
    Case(
        "kms-encryption-context",
        [doc(stmt("Allow", "kms:Decrypt", KEY_ARN, Condition={"StringEquals": {"kms:EncryptionContext:aws:s3express:arn": BUCKET_ARN}}))],
        "kms:Decrypt", KEY_ARN, ALLOW, {"kms:EncryptionContext:aws:s3express:arn": BUCKET_ARN},
    ),
    Case(
        "kms-encryption-context-mismatch",
        [doc(stmt("Allow", "kms:Decrypt", KEY_ARN, Condition={"StringEquals": {"kms:EncryptionContext:aws:s3express:arn": BUCKET_ARN}}))],
        "kms:Decrypt", KEY_ARN, IMPLICIT, {"kms:EncryptionContext:aws:s3express:arn": OTHER_BUCKET_ARN},
    ),
    # --- principals (resource policies)
    Case("principal-account-root", [doc(stmt(Principal={"AWS": f"arn:aws:iam::{ACCT}:root"}))], "kms:Decrypt", KEY_ARN, ALLOW, principal=ALICE),
    Case("principal-account-root-other", [doc(stmt(Principal={"AWS": f"arn:aws:iam::{ACCT}:root"}))], "kms:Decrypt", KEY_ARN, IMPLICIT, principal=MALLORY),
    Case("principal-account-id", [doc(stmt(Principal={"AWS": ACCT}))], "kms:Decrypt", KEY_ARN, ALLOW, principal=BOB),
    Case("principal-star", [doc(stmt(Principal="*"))], "kms:Decrypt", KEY_ARN, ALLOW, principal=MALLORY),
    Case("principal-aws-star", [doc(stmt(Principal={"AWS": "*"}))], "kms:Decrypt", KEY_ARN, ALLOW, principal=MALLORY),
    Case("principal-user", [doc(stmt(Principal={"AWS": ALICE}))], "kms:Decrypt", KEY_ARN, ALLOW, principal=ALICE),
    Case("principal-user-other", [doc(stmt(Principal={"AWS": ALICE}))], "kms:Decrypt", KEY_ARN, IMPLICIT, principal=BOB),
    Case("principal-list", [doc(stmt(Principal={"AWS": [BOB, ALICE]}))], "kms:Decrypt", KEY_ARN, ALLOW, principal=ALICE),
    Case("principal-not-checked", [doc(stmt(Principal={"AWS": ALICE}))], "kms:Decrypt", KEY_ARN, ALLOW),
    Case("principal-identity-policy", [doc(stmt())], "kms:Decrypt", KEY_ARN, ALLOW, principal=BOB),
    Case("notprincipal-deny-other", [doc(stmt(Principal="*"), stmt("Deny", NotPrincipal={"AWS": ALICE}))], "kms:Decrypt", KEY_ARN, DENY, principal=BOB),
    Case("notprincipal-deny-spared", [doc(stmt(Principal="*"), stmt("Deny", NotPrincipal={"AWS": ALICE}))], "kms:Decrypt", KEY_ARN, ALLOW, principal=ALICE),
    # --- policy variables
    Case("var-own-home", [doc(stmt(resource="arn:aws:s3:::home/${aws:username}/*"))], "s3:GetObject", "arn:aws:s3:::home/alice/f", ALLOW, {"aws:username": "alice"}),
    Case("var-other-home", [doc(stmt(resource="arn:aws:s3:::home/${aws:username}/*"))], "s3:GetObject", "arn:aws:s3:::home/bob/f", IMPLICIT, {"aws:username": "alice"}),
    Case("var-key-case", [doc(stmt(resource="arn:aws:s3:::home/${AWS:UserName}/*"))], "s3:GetObject", "arn:aws:s3:::home/alice/f", ALLOW, {"aws:username": "alice"}),
    Case("var-unknown-allow", [doc(stmt(resource="arn:aws:s3:::home/${aws:username}/*"))], "s3:GetObject", "arn:aws:s3:::home/alice/f", IMPLICIT),
    Case("var-unknown-deny-skipped", [doc(stmt(), stmt("Deny", resource="arn:aws:s3:::home/${aws:username}/*"))], "s3:GetObject", "arn:aws:s3:::home/alice/f", ALLOW),
    Case("var-default", [doc(stmt(resource="arn:aws:s3:::home/${aws:username, 'guest'}/*"))], "s3:GetObject", "arn:aws:s3:::home/guest/f", ALLOW),
    Case("var-value-is-literal", [doc(stmt(resource="arn:aws:s3:::home/${aws:username}/*"))], "s3:GetObject", "arn:aws:s3:::home/bob/f", IMPLICIT, {"aws:username": "*"}),
    Case("var-escape-star", [doc(stmt(resource="arn:aws:s3:::b/${*}"))], "s3:GetObject", "arn:aws:s3:::b/*", ALLOW),
    Case("var-escape-star-literal", [doc(stmt(resource="arn:aws:s3:::b/${*}"))], "s3:GetObject", "arn:aws:s3:::b/x", IMPLICIT),
    Case("var-2008-literal", [doc(stmt(resource="arn:aws:s3:::home/${aws:username}/*"), version="2008-10-17")], "s3:GetObject", "arn:aws:s3:::home/${aws:username}/f", ALLOW, {"aws:username": "alice"}),
    Case("var-2008-no-substitution", [doc(stmt(resource="arn:aws:s3:::home/${aws:username}/*"), version="2008-10-17")], "s3:GetObject", "arn:aws:s3:::home/alice/f", IMPLICIT, {"aws:username": "alice"}),
    Case("var-multivalued-unresolved", [doc(stmt(resource="arn:aws:s3:::home/${aws:username}/*"))], "s3:GetObject", "arn:aws:s3:::home/alice/f", IMPLICIT, {"aws:username": ["alice", "bob"]}),
    Case("var-in-condition", [doc(stmt(Condition={"StringLike": {"s3:prefix": "home/${aws:username}/*"}}))], "s3:ListBucket", "arn:aws:s3:::b", ALLOW, {"aws:username": "alice", "s3:prefix": "home/alice/docs"}),
    Case("var-in-condition-miss", [doc(stmt(Condition={"StringLike": {"s3:prefix": "home/${aws:username}/*"}}))], "s3:ListBucket", "arn:aws:s3:::b", IMPLICIT, {"aws:username": "alice", "s3:prefix": "home/bob/docs"}),
    Case("var-in-condition-unknown", [doc(stmt(Condition={"StringEquals": {"s3:prefix": "${aws:username}"}}))], "s3:ListBucket", "arn:aws:s3:::b", IMPLICIT, {"s3:prefix": "alice"}),
    Case("var-in-condition-equals", [doc(stmt(Condition={"StringEquals": {"aws:PrincipalTag/owner": "${aws:username}"}}))], "s3:ListBucket", "arn:aws:s3:::b", ALLOW, {"aws:username": "alice", "aws:PrincipalTag/owner": "alice"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_evaluate(case: Case) -> None:
    policies = [parse_policy(p) for p in case.policies]
    got = evaluate(
        policies, action=case.action, resource=case.resource,
        context=case.context, principal=case.principal,
    )
    assert got == case.expected


# (id, Condition element, request context, whether the condition holds)
CONDITION_CASES = [
    # String
    ("StringEquals-hit", {"StringEquals": {"k": "v"}}, {"k": "v"}, True),
    ("StringEquals-miss", {"StringEquals": {"k": "v"}}, {"k": "w"}, False),
    ("StringEquals-case", {"StringEquals": {"k": "v"}}, {"k": "V"}, False),
    ("StringEquals-values-or", {"StringEquals": {"k": ["a", "b"]}}, {"k": "b"}, True),
    ("StringEquals-missing", {"StringEquals": {"k": "v"}}, {}, False),
    ("StringEquals-no-wildcards", {"StringEquals": {"k": "a*"}}, {"k": "abc"}, False),
    ("StringEquals-multictx-any", {"StringEquals": {"k": "b"}}, {"k": ["a", "b"]}, True),
    ("StringNotEquals-hit", {"StringNotEquals": {"k": "v"}}, {"k": "w"}, True),
    ("StringNotEquals-miss", {"StringNotEquals": {"k": "v"}}, {"k": "v"}, False),
    ("StringNotEquals-nor", {"StringNotEquals": {"k": ["a", "b"]}}, {"k": "b"}, False),
    ("StringNotEquals-nor-hit", {"StringNotEquals": {"k": ["a", "b"]}}, {"k": "c"}, True),
    ("StringNotEquals-missing-true", {"StringNotEquals": {"k": "v"}}, {}, True),
    ("StringNotEquals-multictx", {"StringNotEquals": {"k": "b"}}, {"k": ["a", "b"]}, False),
    ("StringEqualsIgnoreCase-hit", {"StringEqualsIgnoreCase": {"k": "ReadOnly"}}, {"k": "READONLY"}, True),
    ("StringEqualsIgnoreCase-miss", {"StringEqualsIgnoreCase": {"k": "ReadOnly"}}, {"k": "ReadWrite"}, False),
    ("StringNotEqualsIgnoreCase-hit", {"StringNotEqualsIgnoreCase": {"k": "ReadOnly"}}, {"k": "ReadWrite"}, True),
    ("StringNotEqualsIgnoreCase-miss", {"StringNotEqualsIgnoreCase": {"k": "ReadOnly"}}, {"k": "readonly"}, False),
    ("StringLike-star", {"StringLike": {"k": "home/*"}}, {"k": "home/a/b"}, True),
    ("StringLike-question", {"StringLike": {"k": "v?"}}, {"k": "v1"}, True),
    ("StringLike-question-miss", {"StringLike": {"k": "v?"}}, {"k": "v12"}, False),
    ("StringLike-case", {"StringLike": {"k": "home/*"}}, {"k": "HOME/a"}, False),
    ("StringLike-miss", {"StringLike": {"k": "home/*"}}, {"k": "other/a"}, False),
    ("StringNotLike-hit", {"StringNotLike": {"k": "home/*"}}, {"k": "other/a"}, True),
    ("StringNotLike-miss", {"StringNotLike": {"k": "home/*"}}, {"k": "home/a"}, False),
    ("StringNotLike-missing-true", {"StringNotLike": {"k": "home/*"}}, {}, True),
    # ARN
    ("ArnEquals-hit", {"ArnEquals": {"aws:SourceArn": BUCKET_ARN}}, {"aws:SourceArn": BUCKET_ARN}, True),
    ("ArnEquals-miss", {"ArnEquals": {"aws:SourceArn": BUCKET_ARN}}, {"aws:SourceArn": OTHER_BUCKET_ARN}, False),
    ("ArnLike-hit", {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:user/*"}}, {"aws:PrincipalArn": ALICE}, True),
    ("ArnLike-account-wild", {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/alice"}}, {"aws:PrincipalArn": ALICE}, True),
    ("ArnLike-miss", {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{OTHER_ACCT}:user/*"}}, {"aws:PrincipalArn": ALICE}, False),
    ("ArnLike-star-stays-in-field", {"ArnLike": {"aws:SourceArn": "arn:aws:*:b"}}, {"aws:SourceArn": "arn:aws:s3:::b"}, False),
    ("ArnLike-resource-field-spans", {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::*"}}, {"aws:SourceArn": "arn:aws:s3:::b/k:x"}, True),
    ("ArnLike-not-an-arn", {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::*"}}, {"aws:SourceArn": "bucket"}, False),
    ("ArnNotEquals-hit", {"ArnNotEquals": {"aws:SourceArn": BUCKET_ARN}}, {"aws:SourceArn": OTHER_BUCKET_ARN}, True),
    ("ArnNotEquals-miss", {"ArnNotEquals": {"aws:SourceArn": BUCKET_ARN}}, {"aws:SourceArn": BUCKET_ARN}, False),
    ("ArnNotLike-hit", {"ArnNotLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:*"}}, {"aws:PrincipalArn": MALLORY}, True),
    ("ArnNotLike-miss", {"ArnNotLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCT}:*"}}, {"aws:PrincipalArn": ALICE}, False),
    # Numeric
    ("NumericEquals-hit", {"NumericEquals": {"n": "10"}}, {"n": "10.0"}, True),
    ("NumericEquals-json-number", {"NumericEquals": {"n": 10}}, {"n": "10"}, True),
    ("NumericEquals-miss", {"NumericEquals": {"n": "10"}}, {"n": "11"}, False),
    ("NumericEquals-garbage-ctx", {"NumericEquals": {"n": "10"}}, {"n": "ten"}, False),
    ("NumericNotEquals-hit", {"NumericNotEquals": {"n": "10"}}, {"n": "11"}, True),
    ("NumericNotEquals-miss", {"NumericNotEquals": {"n": "10"}}, {"n": "10"}, False),
    ("NumericLessThan-hit", {"NumericLessThan": {"n": "10"}}, {"n": "9.5"}, True),
    ("NumericLessThan-equal", {"NumericLessThan": {"n": "10"}}, {"n": "10"}, False),
    ("NumericLessThanEquals-hit", {"NumericLessThanEquals": {"n": "10"}}, {"n": "10"}, True),
    ("NumericLessThanEquals-miss", {"NumericLessThanEquals": {"n": "10"}}, {"n": "11"}, False),
    ("NumericGreaterThan-hit", {"NumericGreaterThan": {"n": "10"}}, {"n": "11"}, True),
    ("NumericGreaterThan-miss", {"NumericGreaterThan": {"n": "10"}}, {"n": "10"}, False),
    ("NumericGreaterThanEquals-hit", {"NumericGreaterThanEquals": {"n": "-1"}}, {"n": "-1"}, True),
    ("NumericGreaterThanEquals-miss", {"NumericGreaterThanEquals": {"n": "0"}}, {"n": "-1"}, False),
    ("NumericLessThan-missing", {"NumericLessThan": {"n": "10"}}, {}, False),
    # Date
    ("DateEquals-iso-epoch", {"DateEquals": {"d": "2024-01-01T00:00:00Z"}}, {"d": "1704067200"}, True),
    ("DateEquals-offset", {"DateEquals": {"d": "2024-01-01T01:00:00+01:00"}}, {"d": "2024-01-01T00:00:00Z"}, True),
    ("DateEquals-naive-is-utc", {"DateEquals": {"d": "2024-01-01T00:00:00"}}, {"d": "2024-01-01T00:00:00Z"}, True),
    ("DateEquals-miss", {"DateEquals": {"d": "2024-01-01T00:00:00Z"}}, {"d": "2024-01-02T00:00:00Z"}, False),
    ("DateEquals-garbage-ctx", {"DateEquals": {"d": "2024-01-01T00:00:00Z"}}, {"d": "yesterday"}, False),
    ("DateNotEquals-hit", {"DateNotEquals": {"d": "2024-01-01"}}, {"d": "2024-01-02T00:00:00Z"}, True),
    ("DateNotEquals-miss", {"DateNotEquals": {"d": "2024-01-01"}}, {"d": "2024-01-01T00:00:00Z"}, False),
    ("DateLessThan-hit", {"DateLessThan": {"aws:CurrentTime": "2024-01-01T00:00:00Z"}}, {"aws:CurrentTime": "2023-12-31T23:59:59Z"}, True),
    ("DateLessThan-miss", {"DateLessThan": {"aws:CurrentTime": "2024-01-01T00:00:00Z"}}, {"aws:CurrentTime": "2024-01-01T00:00:00Z"}, False),
    ("DateLessThanEquals-hit", {"DateLessThanEquals": {"d": "1704067200"}}, {"d": "2024-01-01T00:00:00Z"}, True),
    ("DateLessThanEquals-miss", {"DateLessThanEquals": {"d": "1704067200"}}, {"d": "1704067201"}, False),
    ("DateGreaterThan-hit", {"DateGreaterThan": {"d": "2024-01-01T00:00:00Z"}}, {"d": "2024-06-01T00:00:00Z"}, True),
    ("DateGreaterThan-miss", {"DateGreaterThan": {"d": "2024-01-01T00:00:00Z"}}, {"d": "2023-06-01T00:00:00Z"}, False),
    ("DateGreaterThanEquals-hit", {"DateGreaterThanEquals": {"d": "2024-01-01T00:00:00Z"}}, {"d": "1704067200"}, True),
    ("DateGreaterThanEquals-miss", {"DateGreaterThanEquals": {"d": "2024-01-01T00:00:00Z"}}, {"d": "1704067199"}, False),
    # Bool
    ("Bool-true", {"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "true"}, True),
    ("Bool-false-ctx", {"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "false"}, False),
    ("Bool-json-bool", {"Bool": {"aws:SecureTransport": True}}, {"aws:SecureTransport": "TRUE"}, True),
    ("Bool-python-bool-ctx", {"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": False}, True),
    ("Bool-missing", {"Bool": {"aws:SecureTransport": "false"}}, {}, False),
    # IP
    ("IpAddress-cidr-hit", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "10.1.2.3"}, True),
    ("IpAddress-cidr-miss", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "11.0.0.1"}, False),
    ("IpAddress-single", {"IpAddress": {"aws:SourceIp": "203.0.113.5"}}, {"aws:SourceIp": "203.0.113.5"}, True),
    ("IpAddress-list", {"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "10.0.0.0/8"]}}, {"aws:SourceIp": "10.9.9.9"}, True),
    ("IpAddress-v6", {"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, {"aws:SourceIp": "2001:db8::1"}, True),
    ("IpAddress-v4-vs-v6", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "2001:db8::1"}, False),
    ("IpAddress-garbage-ctx", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "nope"}, False),
    ("NotIpAddress-hit", {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "11.0.0.1"}, True),
    ("NotIpAddress-miss", {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "10.0.0.1"}, False),
    # Null
    ("Null-true-missing", {"Null": {"k": "true"}}, {}, True),
    ("Null-true-present", {"Null": {"k": "true"}}, {"k": "v"}, False),
    ("Null-false-present", {"Null": {"k": "false"}}, {"k": "v"}, True),
    ("Null-false-missing", {"Null": {"k": "false"}}, {}, False),
    ("Null-empty-list-is-missing", {"Null": {"k": "true"}}, {"k": []}, True),
    ("Null-json-bool", {"Null": {"k": False}}, {"k": "v"}, True),
    # IfExists
    ("IfExists-missing", {"StringEqualsIfExists": {"k": "v"}}, {}, True),
    ("IfExists-present-match", {"StringEqualsIfExists": {"k": "v"}}, {"k": "v"}, True),
    ("IfExists-present-miss", {"StringEqualsIfExists": {"k": "v"}}, {"k": "w"}, False),
    ("IfExists-numeric-missing", {"NumericLessThanIfExists": {"n": "5"}}, {}, True),
    ("IfExists-numeric-miss", {"NumericLessThanIfExists": {"n": "5"}}, {"n": "6"}, False),
    ("IfExists-bool", {"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}, {}, True),
    ("IfExists-ip", {"IpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "11.0.0.1"}, False),
    ("IfExists-negated-present", {"StringNotLikeIfExists": {"k": "a*"}}, {"k": "abc"}, False),
    # Set qualifiers
    ("ForAnyValue-hit", {"ForAnyValue:StringEquals": {"aws:TagKeys": "b"}}, {"aws:TagKeys": ["a", "b"]}, True),
    ("ForAnyValue-miss", {"ForAnyValue:StringEquals": {"aws:TagKeys": "c"}}, {"aws:TagKeys": ["a", "b"]}, False),
    ("ForAnyValue-missing", {"ForAnyValue:StringEquals": {"aws:TagKeys": "c"}}, {}, False),
    ("ForAnyValue-empty", {"ForAnyValue:StringEquals": {"aws:TagKeys": "c"}}, {"aws:TagKeys": []}, False),
    ("ForAnyValue-ifexists-missing", {"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": "c"}}, {}, True),
    ("ForAnyValue-negated", {"ForAnyValue:StringNotEquals": {"aws:TagKeys": "a"}}, {"aws:TagKeys": ["a", "b"]}, True),
    ("ForAnyValue-negated-miss", {"ForAnyValue:StringNotEquals": {"aws:TagKeys": "a"}}, {"aws:TagKeys": ["a"]}, False),
    ("ForAllValues-hit", {"ForAllValues:StringLike": {"aws:TagKeys": "Created*"}}, {"aws:TagKeys": ["CreatedBy", "CreatedAt"]}, True),
    ("ForAllValues-miss", {"ForAllValues:StringLike": {"aws:TagKeys": "Created*"}}, {"aws:TagKeys": ["CreatedBy", "Owner"]}, False),
    ("ForAllValues-subset", {"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b", "c"]}}, {"aws:TagKeys": ["a", "c"]}, True),
    ("ForAllValues-missing", {"ForAllValues:StringEquals": {"aws:TagKeys": "a"}}, {}, True),
    ("ForAllValues-empty", {"ForAllValues:StringEquals": {"aws:TagKeys": "a"}}, {"aws:TagKeys": []}, True),
    ("ForAllValues-notlike-hit", {"ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}}, {"aws:TagKeys": ["key2:audit"]}, True),
    ("ForAllValues-notlike-miss", {"ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}}, {"aws:TagKeys": ["key1:hr", "key2:x"]}, False),
    ("ForAllValues-numeric", {"ForAllValues:NumericLessThan": {"n": "10"}}, {"n": ["1", "9"]}, True),
    # Combination rules and key case
    ("keys-anded-hit", {"StringEquals": {"a": "1", "b": "2"}}, {"a": "1", "b": "2"}, True),
    ("keys-anded-miss", {"StringEquals": {"a": "1", "b": "2"}}, {"a": "1", "b": "3"}, False),
    ("operators-anded-hit", {"StringEquals": {"a": "1"}, "IpAddress": {"ip": "10.0.0.0/8"}}, {"a": "1", "ip": "10.0.0.1"}, True),
    ("operators-anded-miss", {"StringEquals": {"a": "1"}, "IpAddress": {"ip": "10.0.0.0/8"}}, {"a": "1", "ip": "11.0.0.1"}, False),
    ("key-case-insensitive", {"StringEquals": {"S3Express:SessionMode": "ReadOnly"}}, {"s3express:sessionmode": "ReadOnly"}, True),
    ("key-case-insensitive-ctx", {"StringEquals": {"s3express:sessionmode": "ReadOnly"}}, {"S3EXPRESS:SESSIONMODE": "ReadOnly"}, True),
    ("empty-condition", {}, {}, True),
]


@pytest.mark.parametrize(
    "condition, context, holds",
    [c[1:] for c in CONDITION_CASES],
    ids=[c[0] for c in CONDITION_CASES],
)
def test_condition_operators(condition: dict, context: dict, holds: bool) -> None:
    policy = parse_policy(doc(stmt(Condition=condition)))
    got = evaluate([policy], action="s3:GetObject", resource="arn:aws:s3:::b/k", context=context)
    assert got == (ALLOW if holds else IMPLICIT)
    # The same condition on a Deny must decide the other way round.
    denied = parse_policy(doc(stmt(), stmt("Deny", Condition=condition)))
    got = evaluate([denied], action="s3:GetObject", resource="arn:aws:s3:::b/k", context=context)
    assert got == (DENY if holds else ALLOW)


def test_every_operator_covered() -> None:
    base = {
        op.split(":")[-1].removesuffix("IfExists")
        for _, cond, _, _ in CONDITION_CASES for op in cond
    }
    expected = {
        "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
        "StringLike", "StringNotLike", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike",
        "Bool", "IpAddress", "NotIpAddress", "Null",
    } | {f"{kind}{cmp}" for kind in ("Numeric", "Date") for cmp in (
        "Equals", "NotEquals", "LessThan", "LessThanEquals", "GreaterThan", "GreaterThanEquals")}
    assert expected <= base


# (id, document (str or dict), substring expected in the error message)
MALFORMED_CASES = [
    ("bad-json", '{"Statement": [', "not valid JSON"),
    ("not-object", "[]", "must be a JSON object"),
    ("nan", '{"Statement": [], "Id": NaN}', "NaN"),
    ("duplicate-key", '{"Statement": {"Effect": "Allow", "Effect": "Deny", "Action": "*", "Resource": "*"}}', "duplicate key"),
    ("too-large-text", json.dumps(doc(stmt(Sid="x" * 30000))), "more than the 20480"),
    ("too-large-dict", doc(stmt(Sid="x" * 30000)), "more than the 20480"),
    ("bad-version", {"Version": "2020-01-01", "Statement": stmt()}, "Version"),
    ("unknown-top-level", {"Version": "2012-10-17", "Statements": [stmt()]}, "Statements"),
    ("missing-statement", {"Version": "2012-10-17"}, "Statement"),
    ("empty-statement", doc(), "non-empty"),
    ("statement-not-object", {"Statement": ["x"]}, "Statement[0] must be an object"),
    ("bad-effect", doc({"Effect": "allow", "Action": "*", "Resource": "*"}), "Effect"),
    ("missing-effect", doc({"Action": "*", "Resource": "*"}), "Effect"),
    ("missing-action", doc({"Effect": "Allow", "Resource": "*"}), "missing required field Action"),
    ("action-and-notaction", doc({"Effect": "Allow", "Action": "*", "NotAction": "*", "Resource": "*"}), "not both"),
    ("missing-resource", doc({"Effect": "Allow", "Action": "*"}), "missing required field Resource"),
    ("resource-and-notresource", doc(stmt(NotResource="*")), "not both"),
    ("unknown-statement-key", doc(stmt(Actions="*")), "Actions"),
    ("action-no-service", doc(stmt(action="CreateSession")), "service:Action"),
    ("action-empty-list", doc(stmt(action=[])), "empty list"),
    ("action-not-string", doc(stmt(action=[123])), "string"),
    ("resource-not-arn", doc(stmt(resource="bucket")), "ARN"),
    ("sid-not-string", doc(stmt(Sid=5)), "Sid"),
    ("bad-principal-type", doc(stmt(Principal={"Users": "x"})), "principal type"),
    ("principal-list", doc(stmt(Principal=["*"])), "Principal"),
    ("principal-and-notprincipal", doc(stmt(Principal="*", NotPrincipal="*")), "not both"),
    ("condition-not-object", doc(stmt(Condition=["x"])), "Condition must be an object"),
    ("unknown-operator", doc(stmt(Condition={"StringEqualz": {"k": "v"}})), "unknown condition operator"),
    ("unknown-qualifier", doc(stmt(Condition={"ForSomeValues:StringEquals": {"k": "v"}})), "set qualifier"),
    ("null-ifexists", doc(stmt(Condition={"NullIfExists": {"k": "true"}})), "not allowed"),
    ("null-qualified", doc(stmt(Condition={"ForAnyValue:Null": {"k": "true"}})), "not allowed"),
    ("operator-block-empty", doc(stmt(Condition={"StringEquals": {}})), "non-empty object"),
    ("condition-value-object", doc(stmt(Condition={"StringEquals": {"k": {"x": 1}}})), "condition values"),
    ("condition-value-null", doc(stmt(Condition={"StringEquals": {"k": None}})), "condition values"),
    ("condition-values-empty", doc(stmt(Condition={"StringEquals": {"k": []}})), "must not be empty"),
    ("numeric-bad", doc(stmt(Condition={"NumericLessThan": {"n": "ten"}})), "invalid value"),
    ("date-bad", doc(stmt(Condition={"DateLessThan": {"d": "yesterday"}})), "invalid value"),
    ("ip-bad", doc(stmt(Condition={"IpAddress": {"ip": "10.0.0.300/8"}})), "invalid value"),
    ("bool-bad", doc(stmt(Condition={"Bool": {"b": "yes"}})), "invalid value"),
    ("null-bad", doc(stmt(Condition={"Null": {"k": "maybe"}})), "invalid value"),
    ("variable-default-unquoted", doc(stmt(resource="arn:aws:s3:::${aws:username, guest}")), "single-quoted"),
    ("variable-bad-key", doc(stmt(Condition={"StringEquals": {"k": "${bad key}"}})), "policy variable"),
]


@pytest.mark.parametrize(
    "document, message",
    [c[1:] for c in MALFORMED_CASES],
    ids=[c[0] for c in MALFORMED_CASES],
)
def test_malformed(document: Any, message: str) -> None:
    with pytest.raises(MalformedPolicy) as info:
        parse_policy(document)
    assert message in str(info.value)
    assert info.value.code == "MalformedPolicyDocument"


def test_max_bytes_is_configurable() -> None:
    text = json.dumps(doc(stmt()))
    parse_policy(text, max_bytes=len(text))
    with pytest.raises(MalformedPolicy):
        parse_policy(text, max_bytes=len(text) - 1)


def test_require_principal_for_resource_policies() -> None:
    with pytest.raises(MalformedPolicy, match="Principal"):
        parse_policy(doc(stmt()), require_principal=True)
    parse_policy(doc(stmt(Principal="*")), require_principal=True)
    parse_policy(doc(stmt(NotPrincipal={"AWS": ALICE})), require_principal=True)


def test_parse_shapes() -> None:
    text = json.dumps({"Version": "2012-10-17", "Id": "p1", "Statement": S3X_EXAMPLE})
    policy = parse_policy(text)
    assert parse_policy(text.encode()) == policy
    assert policy.id == "p1" and len(policy.statements) == 1
    statement = policy.statements[0]
    assert statement.actions == (CREATE,) and statement.resources == (BUCKET_ARN,)
    (condition,) = statement.conditions
    assert condition.key == "s3express:sessionmode" and condition.values == ("ReadOnly",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        statement.effect = "Deny"  # type: ignore[misc]
    # Missing Version means the 2008 language, as in AWS.
    assert parse_policy({"Statement": stmt()}).version == "2008-10-17"
    # Non-string condition values are stringified the way IAM renders them.
    parsed = parse_policy(doc(stmt(Condition={"NumericEquals": {"n": [1, 2.5]}, "Bool": {"b": True}})))
    assert [c.values for c in parsed.statements[0].conditions] == [("1", "2.5"), ("true",)]
    assert parse_policy(doc(stmt(Principal="*"))).statements[0].principals == (("AWS", ("*",)),)


# --- property: an applicable explicit Deny always wins ----------------------

ACTIONS = [CREATE, "kms:Decrypt", "kms:GenerateDataKey", "s3:GetObject"]
RESOURCES = [BUCKET_ARN, KEY_ARN, "arn:aws:s3:::b/k"]
CONDITIONS = [
    None,
    {"StringEquals": {"s3express:SessionMode": "ReadOnly"}},
    {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"Null": {"aws:username": "false"}},
    {"ForAllValues:StringLike": {"aws:TagKeys": "a*"}},
]
CONTEXTS = [
    {},
    {"s3express:SessionMode": "ReadOnly", "aws:SourceIp": "10.0.0.1"},
    {"s3express:SessionMode": "ReadWrite", "aws:username": "alice", "aws:TagKeys": ["ab", "b"]},
]


@st.composite
def statements(draw: st.DrawFn) -> dict:
    extra: dict[str, Any] = {}
    condition = draw(st.sampled_from(CONDITIONS))
    if condition:
        extra["Condition"] = condition
    if draw(st.booleans()):
        extra["Principal"] = draw(st.sampled_from(["*", {"AWS": ALICE}, {"AWS": ACCT}]))
    return stmt(
        draw(st.sampled_from(["Allow", "Deny"])),
        draw(st.sampled_from(["*", "s3express:*", "kms:Generate*", *ACTIONS])),
        draw(st.sampled_from(["*", "arn:aws:s3express:*", "arn:aws:s3:::b/*", *RESOURCES])),
        not_action=draw(st.booleans()),
        not_resource=draw(st.booleans()),
        **extra,
    )


@given(
    policies=st.lists(st.lists(statements(), min_size=1, max_size=3), max_size=3),
    action=st.sampled_from(ACTIONS),
    resource=st.sampled_from(RESOURCES),
    context=st.sampled_from(CONTEXTS),
    principal=st.sampled_from([None, ALICE, MALLORY]),
    deny_action=st.sampled_from(["exact", "*", "service-star"]),
    deny_resource=st.booleans(),
    placement=st.integers(min_value=0, max_value=3),
)
def test_matching_deny_always_wins(
    policies, action, resource, context, principal, deny_action, deny_resource, placement,
) -> None:
    def decide(docs: list[list[dict]]) -> Decision:
        parsed: list[Policy] = [parse_policy(doc(*s)) for s in docs]
        return evaluate(parsed, action=action, resource=resource, context=context, principal=principal)

    before = decide(policies)
    deny_act = {"exact": action, "*": "*", "service-star": action.split(":")[0] + ":*"}[deny_action]
    deny = stmt("Deny", deny_act, resource if deny_resource else "*")
    with_deny = [list(s) for s in policies]
    if placement < len(with_deny):
        with_deny[placement].insert(placement % (len(with_deny[placement]) + 1), deny)
    else:
        with_deny.append([deny])
    after = decide(with_deny)
    assert after == DENY
    assert not (before != ALLOW and after == ALLOW)
