"""The S3 audit record (CloudTrail shape, no secrets, bounded) and the rotating audit file."""

import json

import pytest

from gateway.audit import AuditFile, S3Event, encode_record, format_event, should_record


def event(**kw):
    base = dict(operation="PutObject", time=1_700_000_000.5, request_id="REQ1", event_id="EV1",
                region="us-east-1", account_id="000000000000", status=200, source_ip="127.0.0.1",
                user_agent="Boto3/1.36", host="127.0.0.1:9000", bucket="b--use1-az4--x-s3", key="dir/k.txt",
                access_key_id="AKIAEXAMPLE", user_arn="arn:aws:iam::000000000000:user/alice", user_name="alice",
                session_mode="ReadWrite", bytes_in=5, bytes_out=0)
    base.update(kw)
    return S3Event(**base)


def test_object_operation_is_a_cloudtrail_data_event():
    r = format_event(event())
    assert r["eventSource"] == "s3express.amazonaws.com"
    assert r["eventName"] == "PutObject" and r["eventCategory"] == "Data" and r["managementEvent"] is False
    assert r["eventTime"] == "2023-11-14T22:13:20Z"
    assert r["readOnly"] is False
    assert r["requestParameters"] == {"bucketName": "b--use1-az4--x-s3", "Host": "127.0.0.1:9000", "key": "dir/k.txt"}
    assert r["userIdentity"]["type"] == "IAMUser" and r["userIdentity"]["accessKeyId"] == "AKIAEXAMPLE"
    assert r["userIdentity"]["sessionContext"] == {"attributes": {"sessionMode": "ReadWrite"}}
    assert r["resources"][0] == {"type": "AWS::S3Express::Object",
                                 "ARN": "arn:aws:s3express:us-east-1:000000000000:bucket/b--use1-az4--x-s3/dir/k.txt"}
    assert r["additionalEventData"]["bytesTransferredIn"] == 5
    assert "errorCode" not in r


def test_create_session_records_its_mode_and_denials_record_the_error():
    r = format_event(event(operation="CreateSession", key=None, create_session_mode="ReadOnly", status=403,
                           error_code="AccessDenied", error_message="Access Denied", user_arn=None,
                           session_mode=None))
    assert r["requestParameters"]["x-amz-create-session-mode"] == "ReadOnly"
    assert r["errorCode"] == "AccessDenied" and r["errorMessage"] == "Access Denied"
    assert r["userIdentity"] == {"type": "Unknown", "accountId": "000000000000", "accessKeyId": "AKIAEXAMPLE"}
    assert [x["type"] for x in r["resources"]] == ["AWS::S3Express::DirectoryBucket"]


def test_bucket_operations_are_management_events():
    r = format_event(event(operation="CreateBucket", key=None))
    assert r["managementEvent"] is True and r["eventCategory"] == "Management"


def test_hostile_values_are_truncated_and_cannot_forge_a_line():
    r = format_event(event(key="x" * 10_000 + "\n{\"eventName\":\"Forged\"}", user_agent="u\r\n" * 1000))
    line = encode_record(r)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert len(line) < 5000
    assert json.loads(line)["eventName"] == "PutObject"


def test_which_requests_are_recorded():
    assert should_record("GetObject", 200)
    assert should_record("Unknown", 403)
    assert not should_record("KmsJson", 200)
    assert should_record("IamQuery", 403)


def test_file_rotates_by_size_and_keeps_n(tmp_path):
    path = tmp_path / "audit" / "audit.jsonl"
    f = AuditFile(path, max_bytes=4096, keep=2)
    rec = format_event(event())
    size = len(encode_record(rec))
    for _ in range(4096 // size * 3 + 3):
        f.write(rec)
    f.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    for p in path.parent.iterdir():
        assert p.stat().st_size <= 4096
        assert oct(p.stat().st_mode & 0o777) == "0o600"
        for line in p.read_text().splitlines():
            assert json.loads(line)["eventName"] == "PutObject"


def test_reopen_appends(tmp_path):
    path = tmp_path / "audit.jsonl"
    for _ in range(2):
        f = AuditFile(path, max_bytes=1 << 20, keep=1)
        f.write(format_event(event()))
        f.close()
    assert len(path.read_text().splitlines()) == 2


@pytest.mark.parametrize("kw", [dict(max_bytes=100, keep=1), dict(max_bytes=1 << 20, keep=0)])
def test_bad_limits(tmp_path, kw):
    with pytest.raises(ValueError):
        AuditFile(tmp_path / "a.jsonl", **kw)
