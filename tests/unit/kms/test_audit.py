"""kms/audit.py: CloudTrail record shape, and that no secret ever reaches it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kms.audit import (
    AuditEvent, EventIds, encode_event, encode_record, format_record, format_time, request_parameters,
)
from kms.auditlog import AuditLog

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
    assert format_time(1700000000.9) == "2023-11-14T22:13:20Z"  # cached per second...
    assert format_time(1700000001.0) == "2023-11-14T22:13:21Z"  # ...and moves on with it
    assert format_time(1700000000.2) == "2023-11-14T22:13:20Z"


def test_event_ids_are_unique_uuids():
    import uuid

    ids = EventIds()
    other = EventIds()
    seen = [ids() for _ in range(1000)] + [other() for _ in range(1000)]
    assert len(set(seen)) == 2000
    assert all(uuid.UUID(x).version == 4 and str(uuid.UUID(x)) == x for x in seen)


# -- AuditLog: group commit ------------------------------------------------------------------------


async def test_group_commit_writes_every_record_in_order_and_durably(tmp_path):
    import trio

    path = tmp_path / "audit" / "audit.jsonl"
    groups: list[float] = []
    log = AuditLog.open(path, observe=groups.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(log.run)

        written: list[int] = []

        async def one(i):
            written.append(i)
            seq = log.write({"n": i})
            await log.durable(seq)
            # once durable, the line is in the file (another reader sees it)
            assert any(json.loads(x)["n"] == i for x in path.read_text().splitlines())

        async with trio.open_nursery() as inner:
            for i in range(200):
                inner.start_soon(one, i)
        nursery.cancel_scope.cancel()
    lines = [json.loads(x)["n"] for x in path.read_text().splitlines()]
    assert sorted(lines) == list(range(200)) and len(lines) == 200
    assert lines == written  # queue order is file order
    assert 1 <= log.groups < 200 and len(groups) == log.groups  # records shared fsyncs
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    log.write({"n": 200})  # queued after the committer stopped: close writes it
    log.close()
    assert json.loads(path.read_text().splitlines()[-1]) == {"n": 200}


async def test_a_failed_write_fails_durable_for_its_records(tmp_path):
    import trio

    log = AuditLog.open(Path("/dev/full"))  # every write fails with ENOSPC
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(log.run)
            seq = log.write({"n": 1})
            with pytest.raises(OSError):
                await log.durable(seq)
            nursery.cancel_scope.cancel()
    finally:
        log.close()  # logs the failure, does not raise


@pytest.mark.parametrize("kw", [
    {},
    {"key_arn": ARN, "request_parameters": {"keyId": ARN, "encryptionContext": CTX}},
    {"key_arn": ARN, "error_code": "DisabledException", "error_message": "it is \"disabled\"\n"},
    {"error_code": "AccessDeniedException", "error_message": "x" * 5000, "caller": "arn:aws:iam::000000000000:user/é"},
    {"operation": "CreateKey", "caller": "arn:aws:iam::000000000000:user/alice", "key_arn": ARN,
     "request_parameters": {"description": "\u2603 \x00 \\ \"q\"", "tags": [{"tagKey": "a", "tagValue": "b"}]}},
    {"source": "", "operation": "ListKeys"},
])
def test_fast_encoder_matches_the_dict_record_byte_for_byte(kw):
    ev = event(**kw)
    assert encode_event(ev) == encode_record(format_record(ev))
