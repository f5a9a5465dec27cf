"""kms/audit_query.py: the filters of `onezone audit`, and the command on a real file."""

import json

from kms.audit_query import main, matches, parse_time

ARN = "arn:aws:kms:us-east-1:000000000000:key/0f8e6a2c-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
REC = {"eventName": "Decrypt", "eventTime": "2025-01-02T03:04:05Z", "errorCode": "AccessDeniedException",
       "userIdentity": {"arn": "arn:aws:iam::000000000000:user/alice"},
       "resources": [{"ARN": ARN}], "requestParameters": {}}


def test_filters():
    assert matches(REC, key=ARN) and matches(REC, key=ARN.rsplit("/", 1)[1])
    assert not matches(REC, key="1f8e6a2c-3b4d-4e5f-8a9b-0c1d2e3f4a5b")
    assert matches(REC, events=["Decrypt", "Encrypt"]) and not matches(REC, events=["Encrypt"])
    assert matches(REC, since=parse_time("2025-01-02T03:04:05Z"), until=parse_time("2025-01-02T04:05:00+01:00"))
    assert not matches(REC, since=parse_time("2025-01-02T03:04:06"))
    assert matches(REC, errors_only=True) and not matches({**REC, "errorCode": None}, errors_only=True)
    assert matches(REC, user="arn:aws:iam::000000000000:user/alice") and not matches(REC, user="x")


def test_command_on_a_file(tmp_path, capsys):
    log = tmp_path / "audit.jsonl"
    log.write_text(json.dumps(REC) + "\nnot json\n" + json.dumps({**REC, "eventName": "Encrypt"}) + "\n")
    assert main(["--file", str(log), "--event-name", "Decrypt"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(x)["eventName"] for x in out.splitlines()] == ["Decrypt"]
    assert "skipped 1 malformed" in err
    assert main(["--file", str(tmp_path / "missing")]) == 1
