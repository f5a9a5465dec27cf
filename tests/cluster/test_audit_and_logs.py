"""The gateway's S3 audit log, request log lines (JSON here) and metrics, with real boto3
against a real cluster: CloudTrail-shaped records for CreateSession (with its mode), object
operations and denials; no secret, signature or session token in any file the cluster writes."""

import json
import shutil
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from onezone.cluster import LocalCluster
from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

BUCKET = "audit--use1-az4--x-s3"
DIR_CONFIG = {"Location": {"Type": "AvailabilityZone", "Name": "use1-az4"},
              "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    data = tmp_path_factory.mktemp("audit")
    c = LocalCluster(data / "onezone-data", nodes=3, port=0, log_json=True)
    c.start()
    yield c
    c.stop()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def traffic(cluster):
    s3 = client(cluster, "s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration=DIR_CONFIG)
    s3.put_object(Bucket=BUCKET, Key="docs/a.txt", Body=b"hello audit")
    assert s3.get_object(Bucket=BUCKET, Key="docs/a.txt")["Body"].read() == b"hello audit"
    session = s3.create_session(Bucket=BUCKET, SessionMode="ReadOnly")["Credentials"]
    iam = client(cluster, "iam")
    iam.create_user(UserName="nobody")
    key = iam.create_access_key(UserName="nobody")["AccessKey"]
    nobody = client(cluster, "s3", akid=key["AccessKeyId"], secret=key["SecretAccessKey"])
    with pytest.raises(ClientError) as ei:
        nobody.create_session(Bucket=BUCKET)
    assert ei.value.response["Error"]["Code"] == "AccessDenied"
    bad = client(cluster, "s3", secret="not-the-secret-" * 3)
    with pytest.raises(ClientError):
        bad.list_directory_buckets()
    secrets = [cluster.credentials["secret_access_key"], key["SecretAccessKey"],
               session["SecretAccessKey"], session["SessionToken"]]
    return {"secrets": secrets, "nobody": key["AccessKeyId"]}


def _records(cluster, want: int) -> list[dict]:
    """The audit records, once the last request of ``traffic`` (the bad signature) is in."""
    path = cluster.data_dir / "gateway" / "audit.jsonl"
    deadline = time.monotonic() + 10
    while True:
        records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        last_in = any(r.get("errorCode") == "SignatureDoesNotMatch" for r in records)
        if (len(records) >= want and last_in) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def test_audit_records_are_cloudtrail_data_events(cluster, traffic):
    records = _records(cluster, 6)
    by_name = {}
    for r in records:
        by_name.setdefault(r["eventName"], []).append(r)
        assert r["eventSource"] == "s3express.amazonaws.com" and r["eventType"] == "AwsApiCall"
        assert r["requestID"] and r["eventID"] and r["eventTime"].endswith("Z")
    put = by_name["PutObject"][0]
    assert put["eventCategory"] == "Data" and put["readOnly"] is False
    assert put["requestParameters"]["bucketName"] == BUCKET and put["requestParameters"]["key"] == "docs/a.txt"
    assert put["additionalEventData"]["bytesTransferredIn"] >= len(b"hello audit")
    assert put["userIdentity"]["type"] == "IAMUser" and put["userIdentity"]["userName"] == "admin"
    get = by_name["GetObject"][0]
    assert get["readOnly"] is True and get["additionalEventData"]["bytesTransferredOut"] == len(b"hello audit")
    modes = [r["requestParameters"]["x-amz-create-session-mode"] for r in by_name["CreateSession"]]
    assert "ReadOnly" in modes and "ReadWrite" in modes  # boto3's own session, then ours
    denied = [r for r in by_name["CreateSession"] if r.get("errorCode") == "AccessDenied"]
    assert denied and denied[0]["userIdentity"]["accessKeyId"] == traffic["nobody"]
    assert denied[0]["additionalEventData"]["httpStatusCode"] == 403
    assert any(r.get("errorCode") == "SignatureDoesNotMatch" for r in records)
    assert "CreateBucket" in by_name and by_name["CreateBucket"][0]["managementEvent"] is True


def test_no_secret_in_any_file_the_cluster_wrote(cluster, traffic):
    _records(cluster, 6)
    texts = [p.read_text(errors="replace") for p in (cluster.data_dir / "logs").iterdir()]
    texts.append((cluster.data_dir / "gateway" / "audit.jsonl").read_text())
    for text in texts:
        for secret in traffic["secrets"]:
            assert secret not in text
        assert "Signature=" not in text and "X-Amz-Signature" not in text


def test_request_log_lines_are_json_with_the_request_fields(cluster, traffic):
    _records(cluster, 6)
    lines = [json.loads(line) for line in (cluster.data_dir / "logs" / "gateway.log").read_text().splitlines()
             if line.startswith("{")]
    requests = [d for d in lines if d.get("event") == "request"]
    put = next(d for d in requests if d["op"] == "PutObject")
    assert put["daemon"] == "gateway" and len(put["request_id"]) == 16 and put["bucket"] == BUCKET
    assert put["status"] == 200 and isinstance(put["duration_ms"], float) and put["bytes_in"] >= 11
    denied = next(d for d in requests if d["op"] == "CreateSession" and d["status"] == 403)
    assert denied["error"] == "AccessDenied"
    node_lines = (cluster.data_dir / "logs" / "node-1.log").read_text().splitlines()
    assert all(json.loads(line)["daemon"] == "node" for line in node_lines if line.startswith("{"))


def test_gateway_metrics_count_sessions_bytes_connections_and_buckets(cluster, traffic):
    _records(cluster, 6)
    url = f"http://{cluster.daemons['gateway'].info['metrics']}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    assert value('onezone_gateway_session_rejections_total{reason="AccessDenied"}') >= 1
    assert value('onezone_gateway_create_session_total{mode="ReadOnly",outcome="ok"}') >= 1
    assert value(f'onezone_gateway_sent_bytes_total{{bucket="{BUCKET}",operation="GetObject"}}') >= 11
    assert value(f'onezone_gateway_received_bytes_total{{bucket="{BUCKET}",operation="PutObject"}}') >= 11
    assert value('onezone_gateway_requests_total{bucket="",operation="ListDirectoryBuckets",status_class="4xx"}') >= 1
    assert value("onezone_gateway_connections_total") >= 1
    assert value('onezone_gateway_auth_failures_total{code="SignatureDoesNotMatch"}') >= 1
    assert value("onezone_gateway_audit_write_duration_seconds_count") >= 6
    assert value("onezone_uptime_seconds") > 0
