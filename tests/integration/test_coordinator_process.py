"""`python -m coordinator --config FILE` as a real process (with a real KMS process).

READY line, bootstrap credentials file, /metrics over HTTP, SIGTERM -> exit 0; config errors
exit 2 naming the key; an unreachable KMS fails the start with a clear message (exit 1).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.process_helpers import read_ready

REPO = Path(__file__).resolve().parents[2]


def tls_toml(tls) -> str:
    return f'[tls]\nca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n'


def kms_config(tmp_path: Path, tls) -> Path:
    root = tmp_path / "root.key"
    root.write_text("cd" * 32 + "\n")
    os.chmod(root, 0o600)
    cfg = tmp_path / "kms.toml"
    cfg.write_text(f'listen = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:0"\ndata_dir = "{tmp_path / "kms"}"\n'
                   f'root_key_file = "{root}"\ngrace_s = 1.0\n' + tls_toml(tls))
    return cfg


def coordinator_config(tmp_path: Path, tls, kms_rpc: str, extra: str = "") -> Path:
    cfg = tmp_path / "coordinator.toml"
    cfg.write_text(f'listen = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:0"\ndata_dir = "{tmp_path / "coord"}"\n'
                   f'kms = "{kms_rpc}"\nzones = ["use1-az4"]\ngrace_s = 1.0\n{extra}' + tls_toml(tls))
    return cfg


def start(module: str, cfg: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)



def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def test_coordinator_process_ready_metrics_sigterm(tmp_path, tls_for):
    kms = start("kms", kms_config(tmp_path, tls_for("kms")))
    coord = None
    try:
        kms_info = read_ready(kms)
        coord = start("coordinator", coordinator_config(tmp_path, tls_for("coordinator"), kms_info["rpc"]))
        info = read_ready(coord)
        assert info["daemon"] == "coordinator" and info["rpc"].startswith("127.0.0.1:")
        creds_file = tmp_path / "coord" / "admin-credentials.json"
        assert info["admin_credentials_file"] == str(creds_file)
        assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
        creds = json.loads(creds_file.read_text())
        with urllib.request.urlopen(f"http://{info['metrics']}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert 'onezone_coordinator_nodes{state="up",zone="use1-az4"} 0.0' in text
        assert 'onezone_coordinator_placement_decisions_total{outcome="placed"} 0.0' in text
        assert stop(coord) == 0
        stderr = coord.stderr.read().decode()
        assert "event=bootstrap_admin_created" in stderr and "event=stopped" in stderr
        assert creds["secret_access_key"] not in stderr
    finally:
        if coord is not None and coord.poll() is None:
            coord.kill()
            coord.wait()
        assert stop(kms) == 0


def test_coordinator_process_config_errors(tmp_path, tls_for):
    cfg = coordinator_config(tmp_path, tls_for("coordinator"), "127.0.0.1:9", extra="replicaz = 3\n")
    proc = subprocess.run([sys.executable, "-m", "coordinator", "--config", str(cfg)],
                          capture_output=True, cwd=REPO, timeout=20)
    assert proc.returncode == 2 and b"READY" not in proc.stdout
    assert proc.stderr.startswith(b"onezone coordinator: ") and b'"replicaz"' in proc.stderr
    assert b'did you mean "replicas"' in proc.stderr

    cfg = coordinator_config(tmp_path, tls_for("coordinator"), "127.0.0.1:9",
                             extra="suspect_after_s = 20.0\n")
    proc = subprocess.run([sys.executable, "-m", "coordinator", "--config", str(cfg)],
                          capture_output=True, cwd=REPO, timeout=20)
    assert proc.returncode == 2 and b"suspect_after_s" in proc.stderr


def test_coordinator_process_without_kms_fails_clearly(tmp_path, tls_for):
    # A bound socket that does not listen: every connection attempt is refused at once.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        where = "127.0.0.1:%d" % closed.getsockname()[1]
        cfg = coordinator_config(tmp_path, tls_for("coordinator"), where, extra="kms_wait_s = 0.5\n")
        proc = subprocess.run([sys.executable, "-m", "coordinator", "--config", str(cfg)],
                              capture_output=True, cwd=REPO, timeout=20)
    assert proc.returncode == 1 and b"READY" not in proc.stdout
    last = proc.stderr.decode().strip().splitlines()[-1]
    assert last.startswith(f"onezone coordinator: fatal: cannot create the bootstrap admin: the KMS at {where} "
                           "did not answer within kms_wait_s=0.5s"), last
    assert not (tmp_path / "coord" / "admin-credentials.json").exists()
