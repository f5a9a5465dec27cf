"""`onezone up --with-prometheus`: one command gives a cluster and Debian's Prometheus scraping
every daemon with the alert rules loaded; Ctrl-C stops both."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_up_with_prometheus(tmp_path):
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus is not installed (dev.py test installs it when run as root)")
    data = tmp_path / "onezone-data"
    proc = subprocess.Popen([sys.executable, "-m", "onezone", "up", "--data-dir", str(data), "--port", "0",
                             "--nodes", "1", "--with-prometheus", "--prometheus-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        banner = "".join(lines)
        m = re.search(r"prometheus\s+(http://\S+)", banner)
        assert m, banner + proc.stderr.read() if proc.poll() is not None else banner
        url = m.group(1)
        deadline = time.monotonic() + 30
        while True:
            targets = _get(f"{url}/api/v1/targets")["data"]["activeTargets"]
            healthy = {t["labels"]["instance_name"] for t in targets if t["health"] == "up"}
            if healthy == {"kms", "coordinator", "node-1", "gateway"} or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert healthy == {"kms", "coordinator", "node-1", "gateway"}, targets
        groups = _get(f"{url}/api/v1/rules")["data"]["groups"]
        assert sum(len(g["rules"]) for g in groups) >= 10  # ops/alerts.yml is loaded
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/-/ready", timeout=2)


def test_up_with_prometheus_says_what_is_missing(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no prometheus on this PATH
    r = subprocess.run([sys.executable, "-m", "onezone", "up", "--data-dir", str(tmp_path / "d"),
                        "--with-prometheus"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert "apt-get install prometheus" in r.stderr
    assert not (tmp_path / "d").exists()
