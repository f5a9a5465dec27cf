"""The real Prometheus against a real cluster: every dashboard query and alert expression works.

Debian's ``prometheus`` binary (``dev.py test`` installs it when it can) scrapes the cluster
through the file_sd target file ``LocalCluster`` writes, with the config ``onezone up
--with-prometheus`` uses and the rules of ops/alerts.yml. After a small boto3 load, each query
of ops/grafana/onezone-dashboard.json must return data (the headline ones a positive value),
and each alert expression must be valid and evaluate, on the query API and in the rule manager.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from onezone.prom import Prometheus, prometheus_config
from tests.cluster.conftest import client

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
BUCKET = "prom--use1-az4--x-s3"
RATE_INTERVAL = "30s"


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"Debian's {binary} is not installed and could not be installed here "
                    "(dev.py test installs the package 'prometheus' when run as root with apt-get)")
    return path


@pytest.fixture(scope="module")
def prom(cluster, tmp_path_factory):
    exe = _need("prometheus")
    home = tmp_path_factory.mktemp("prometheus")
    config = home / "prometheus.yml"
    config.write_text(prometheus_config(cluster.data_dir, rules=OPS / "alerts.yml", interval_s=1))
    check = subprocess.run([_need("promtool"), "check", "config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    p = Prometheus(config=config, storage=home / "data", log_path=home / "prometheus.log", port=0, binary=exe)
    p.start()
    yield p
    p.stop()


def api(prom: Prometheus, path: str, **params) -> dict:
    url = f"{prom.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:  # 400/422: a bad expression; the body says why
        return json.loads(exc.read())


def instant(prom: Prometheus, expr: str) -> dict:
    return api(prom, "query", query=expr)


def values(result: dict) -> list[float]:
    return [float(s["value"][1]) for s in result["data"]["result"]]


def wait_for(prom: Prometheus, expr: str, pred, timeout_s: float = 30.0) -> list[float]:
    deadline = time.monotonic() + timeout_s
    got: list[float] = []
    while time.monotonic() < deadline:
        r = instant(prom, expr)
        if r.get("status") == "success":
            got = values(r)
            if got and pred(got):
                return got
        time.sleep(0.5)
    raise AssertionError(f"{expr} never satisfied the condition; last values {got}")


def load(cluster, s3, rounds: int) -> None:
    for i in range(rounds):
        s3.put_object(Bucket=BUCKET, Key=f"obj-{i}", Body=b"x" * (1024 + i))
        assert s3.get_object(Bucket=BUCKET, Key=f"obj-{i}")["Body"].read() == b"x" * (1024 + i)
        s3.head_object(Bucket=BUCKET, Key=f"obj-{i}")
    with pytest.raises(ClientError):
        s3.get_object(Bucket=BUCKET, Key="missing")
    s3.delete_object(Bucket=BUCKET, Key="obj-0")
    bad = client(cluster, "s3", secret="wrong" * 8)
    with pytest.raises(ClientError):
        bad.head_bucket(Bucket=BUCKET)


def test_dashboard_queries_and_alerts_against_real_prometheus(cluster, prom):
    # every daemon is a target and up
    wait_for(prom, 'count(up{job="onezone"} == 1)', lambda v: v[0] == 2 + cluster.nodes + 1)
    s3 = client(cluster, "s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={
        "Location": {"Type": "AvailabilityZone", "Name": "use1-az4"},
        "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}})
    # two phases: the first creates the series, the second moves them after Prometheus saw them,
    # so rate() over the load is positive
    load(cluster, s3, 3)
    wait_for(prom, 'sum(onezone_gateway_requests_total{operation="GetObject"})', lambda v: v[0] >= 4)
    time.sleep(1.5)  # one more scrape of the phase-1 values
    load(cluster, s3, 10)
    wait_for(prom, 'sum(onezone_gateway_requests_total{operation="GetObject"})', lambda v: v[0] >= 14)
    time.sleep(1.5)

    dashboard = json.loads((OPS / "grafana" / "onezone-dashboard.json").read_text())
    failures = []
    checked = 0
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
            r = instant(prom, expr)
            checked += 1
            if r.get("status") != "success":
                failures.append(f"{panel['title']}: {expr}: {r.get('error')}")
            elif not r["data"]["result"]:
                failures.append(f"{panel['title']}: {expr}: no data")
    assert not failures, "\n".join(failures)
    assert checked >= 30

    # the headline numbers are real, not just present
    positive = [
        f"sum(rate(onezone_gateway_requests_total[{RATE_INTERVAL}]))",
        f'sum(rate(onezone_gateway_requests_total{{status_class="4xx"}}[{RATE_INTERVAL}]))',
        f"histogram_quantile(0.99, sum by (le) (rate(onezone_gateway_request_duration_seconds_bucket"
        f'{{operation="GetObject"}}[{RATE_INTERVAL}])))',
        f'histogram_quantile(0.5, sum by (le) (rate(onezone_gateway_time_to_first_byte_seconds_bucket'
        f'{{operation="GetObject"}}[{RATE_INTERVAL}])))',
        f"sum(rate(onezone_gateway_received_bytes_total[{RATE_INTERVAL}]))",
        f"sum(rate(onezone_gateway_sent_bytes_total[{RATE_INTERVAL}]))",
        f'sum(rate(onezone_gateway_requests_total{{bucket="{BUCKET}"}}[{RATE_INTERVAL}]))',
        f"sum(rate(onezone_node_bucket_key_cache_hits_total[{RATE_INTERVAL}]))",
        f"sum(onezone_node_disk_used_bytes)",
        f"sum(onezone_gateway_create_session_total)",
        f"sum(onezone_kms_requests_total)",
        f"sum(onezone_node_replication_duration_seconds_count)",
        f'sum(onezone_gateway_auth_failures_total{{code="SignatureDoesNotMatch"}})',
        'sum(onezone_coordinator_nodes{state="up"})',
        "min(onezone_uptime_seconds)",
    ]
    for expr in positive:
        got = values(instant(prom, expr))
        assert got and got[0] > 0 and not math.isnan(got[0]), f"{expr} -> {got}"
    assert values(instant(prom, "sum(onezone_coordinator_buckets_under_replicated)")) == [0.0]

    # every alert expression is valid and evaluates, both on the query API and in the rule manager
    rules = api(prom, "rules")["data"]["groups"]
    exprs = [(rule["name"], rule["query"]) for g in rules for rule in g["rules"]]
    assert len(exprs) >= 10
    for name, expr in exprs:
        r = instant(prom, expr)
        assert r.get("status") == "success", f"{name}: {r}"
    deadline = time.monotonic() + 20
    while True:
        groups = api(prom, "rules")["data"]["groups"]
        health = {rule["name"]: (rule["health"], rule.get("lastError")) for g in groups for rule in g["rules"]}
        if all(h == "ok" for h, _ in health.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(h == "ok" for h, _ in health.values()), health
    # nothing is wrong with this cluster: no alert fires (pending is allowed only for none either)
    firing = [a for a in api(prom, "alerts")["data"]["alerts"] if a["state"] == "firing"]
    assert not firing, firing
