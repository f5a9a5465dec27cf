"""kms/audit.py: CloudTrail record shape, and that no secret ever reaches it."""

from __future__ import annotations

import json

import pytest

from kms.audit import AuditEvent, encode_record, format_record, format_time, request_parameters

ARN = "arn:aws:kms:us-east-1:000000000000:key/0f8e6a2c-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
SECRET = b"\x13\x37SUPERSECRET-PLAINTEXT\x00"
BLOB = b"OZKB\x01" + b"C" * 80
CTX = {"aws:s3:arn": "arn:aws:s3express:us-east-1:000000000000:bucket/b--use1-az4--x-s3"}


def event(**kw) -> AuditEvent:
    base = dict(operation="Decrypt", principal="node-1", region="us-east-1", account_id="000000000000",
                time=1700000000.5, request_id="req-1", event_id="evt-1", source="10.0.0.7")
    base.update(kw)
    return AuditEvent(**base)


def test_success_record_shape():
    params = request_parameters("GenerateDataKey", {"key_id": ARN, "encryption_context": CTX,
                                                    "number_of_bytes": 32})
    rec = format_record(event(operation="GenerateDataKey", request_parameters=params, key_arn=ARN))
    assert rec["eventVersion"] == "1.08"
    assert rec["eventTime"] == "2023-11-14T22:13:20Z"
    assert rec["eventSource"] == "kms.amazonaws.com"
    assert rec["eventName"] == "GenerateDataKey"
    assert rec["awsRegion"] == "us-east-1"
    assert rec["userIdentity"] == {"type": "AWSService", "principalId": "node-1", "accountId": "000000000000"}
    assert rec["requestParameters"] == {"keyId": ARN, "encryptionContext": CTX, "numberOfBytes": 32}
    assert rec["responseElements"] == {"keyId": ARN}
    assert rec["requestID"] == "req-1" and rec["eventID"] == "evt-1"
    assert rec["readOnly"] is True
    assert rec["resources"] == [{"accountId": "000000000000", "type": "AWS::KMS::Key", "ARN": ARN}]
    assert "errorCode" not in rec and rec["sourceIPAddress"] == "10.0.0.7"


def test_error_record_and_caller_identity():
    caller = "arn:aws:iam::000000000000:user/alice"
    rec = format_record(event(operation="CreateKey", principal="gateway", caller=caller,
                              error_code="AccessDeniedException", error_message="not allowed"))
    assert rec["userIdentity"] == {"type": "IAMUser", "principalId": "gateway", "accountId": "000000000000",
                                   "arn": caller, "invokedBy": "gateway"}
    assert rec["errorCode"] == "AccessDeniedException" and rec["errorMessage"] == "not allowed"
    assert rec["responseElements"] is None and rec["resources"] == []
    assert rec["readOnly"] is False


@pytest.mark.parametrize("operation, args", [
    ("Encrypt", {"key_id": ARN, "plaintext": SECRET, "encryption_context": CTX}),
    ("Decrypt", {"ciphertext_blob": BLOB, "encryption_context": CTX, "key_id": ARN}),
    ("GenerateDataKey", {"key_id": ARN, "encryption_context": CTX, "plaintext": SECRET}),
    ("Decrypt", {"ciphertext_blob": SECRET.decode("latin-1"), "Plaintext": SECRET}),
])
def test_no_secret_in_request_parameters(operation, args):
    params = request_parameters(operation, args)
    assert "plaintext" not in json.dumps(params).lower()
    assert "ciphertext" not in json.dumps(params).lower()
    line = encode_record(format_record(event(operation=operation, request_parameters=params, key_arn=ARN)))
    for needle in (SECRET, SECRET.hex().encode(), b"SUPERSECRET", BLOB, b"CCCCCCCC"):
        assert needle not in line
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    json.loads(line)


def test_bad_argument_types_are_dropped_and_long_strings_truncated():
    params = request_parameters("GenerateDataKey", {
        "key_id": "k" * 10000, "encryption_context": {"a": b"bytes"}, "number_of_bytes": True,
    })
    assert set(params) == {"keyId"} and len(params["keyId"]) < 2100
    assert request_parameters("ListKeys", "not a mapping") == {}
    assert request_parameters("CreateKey", {"tags": [{"TagKey": "a", "TagValue": "b"}]}) == {
        "keyUsage": "ENCRYPT_DECRYPT", "keySpec": "SYMMETRIC_DEFAULT", "tags": [{"tagKey": "a", "tagValue": "b"}]}


def test_format_time():
    assert format_time(0) == "1970-01-01T00:00:00Z"
