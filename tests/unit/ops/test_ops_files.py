"""ops/: the Grafana dashboard is valid and up to date, the provisioning, Prometheus and compose
files are consistent with it, and promtool accepts the config and the rules."""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

OPS = Path(__file__).resolve().parents[3] / "ops"
DASHBOARD = OPS / "grafana" / "onezone-dashboard.json"
PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "table", "bargauge", "text"}


def _builder():
    spec = importlib.util.spec_from_file_location("build_dashboard", OPS / "grafana" / "build_dashboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _datasource_uid() -> str:
    doc = yaml.safe_load((OPS / "grafana" / "provisioning" / "datasources" / "onezone.yml").read_text())
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus"
    return ds["uid"]


def test_committed_dashboard_is_the_builders_output():
    assert DASHBOARD.read_text() == _builder().render(), "run python3 ops/grafana/build_dashboard.py"


def test_dashboard_is_valid_for_grafana():
    d = json.loads(DASHBOARD.read_text())
    for key in ("title", "uid", "schemaVersion", "panels", "time", "templating"):
        assert key in d
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    uid = _datasource_uid()
    covered = set()
    for p in d["panels"]:
        assert p["type"] in PANEL_TYPES
        gp = p["gridPos"]
        assert set(gp) == {"h", "w", "x", "y"} and gp["x"] + gp["w"] <= 24 and gp["h"] > 0
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": uid}
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["datasource"]["uid"] == uid and t["expr"].strip()
            covered.add(t["expr"])
    # what the issue asks the dashboard to show
    text = "\n".join(covered)
    for metric in ("onezone_gateway_requests_total", "onezone_gateway_request_duration_seconds_bucket",
                   "onezone_gateway_time_to_first_byte_seconds_bucket", "topk(10",
                   "onezone_kms_requests_total", "onezone_kms_request_duration_seconds_bucket",
                   "onezone_node_bucket_key_cache_hits_total", "onezone_node_replication_duration_seconds_bucket",
                   "onezone_node_disk_used_bytes", "onezone_coordinator_nodes"):
        assert metric in text, metric


def test_no_two_panels_overlap():
    d = json.loads(DASHBOARD.read_text())
    cells = set()
    for p in d["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))


def test_dashboard_provider_and_compose_agree():
    prov = yaml.safe_load((OPS / "grafana" / "provisioning" / "dashboards" / "onezone.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    compose = yaml.safe_load((OPS / "compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"onezone", "prometheus", "grafana"}
    mounts = services["grafana"]["volumes"]
    assert any(m.endswith(":" + path + ":ro") for m in mounts)
    for svc in services.values():  # every bind-mounted file exists in ops/
        for m in svc.get("volumes", []):
            src = m.split(":")[0]
            if src.startswith("./"):
                assert (OPS / src).exists(), src
    assert services["onezone"]["build"]["dockerfile"] == "Dockerfile"
    assert (OPS.parent / services["onezone"]["build"]["context"].replace("..", ".") / "Dockerfile").exists()


def _promtool():
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool (Debian package prometheus) is not installed; dev.py test installs it as root")
    return exe


def test_promtool_accepts_rules_and_configs(tmp_path):
    promtool = _promtool()
    r = subprocess.run([promtool, "check", "rules", str(OPS / "alerts.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=OPS, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # the compose variant, with its container paths pointed at the files here
    text = (OPS / "prometheus.compose.yml").read_text().replace("/etc/prometheus/alerts.yml", str(OPS / "alerts.yml"))
    (tmp_path / "p.yml").write_text(text)
    r = subprocess.run([promtool, "check", "config", str(tmp_path / "p.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_alert_rules_fire_on_synthetic_series():
    promtool = _promtool()
    r = subprocess.run([promtool, "test", "rules", str(OPS / "alerts_test.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_generated_prometheus_config_is_valid(tmp_path):
    from onezone.prom import prometheus_config

    promtool = _promtool()
    (tmp_path / "p.yml").write_text(prometheus_config(tmp_path, rules=OPS / "alerts.yml"))
    r = subprocess.run([promtool, "check", "config", str(tmp_path / "p.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
