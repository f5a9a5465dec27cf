"""`python -m node --config FILE` as a real process: READY without a coordinator, /metrics,
SIGTERM, config errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.process_helpers import read_ready

REPO = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path: Path, tls, extra: str = "") -> Path:
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        'node_id = "node-1"\nzone = "use1-az4"\nlisten = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:0"\n'
        f'data_dir = "{tmp_path / "data"}"\ncoordinator = "127.0.0.1:{closed_port()}"\n'
        f'kms = "127.0.0.1:{closed_port()}"\ngrace_s = 1.0\n{extra}'
        f'[tls]\nca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n')
    return cfg



def test_node_process_ready_without_coordinator_metrics_sigterm(tmp_path, tls_for):
    cfg = write_config(tmp_path, tls_for("node-1"))
    proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        info = read_ready(proc)
        assert info["daemon"] == "node" and info["node_id"] == "node-1"
        assert info["rpc"].startswith("127.0.0.1:") and not info["rpc"].endswith(":0")
        with urllib.request.urlopen(f"http://{info['metrics']}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert "onezone_node_objects 0.0" in text and "onezone_node_disk_free_bytes" in text
        assert "onezone_node_bucket_key_cache_entries 0.0" in text
        assert (tmp_path / "data" / "index.db").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        stderr = proc.stderr.read().decode()
        assert "event=register_failed" in stderr  # it kept trying in the background
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_node_process_config_errors_exit_2(tmp_path, tls_for):
    cfg = write_config(tmp_path, tls_for("node-1"), extra="chunk_byts = 4096\n")
    proc = subprocess.run([sys.executable, "-m", "node", "--config", str(cfg)], capture_output=True, cwd=REPO,
                          timeout=30)
    assert proc.returncode == 2
    assert b"chunk_byts" in proc.stderr and b"chunk_bytes" in proc.stderr
    assert proc.stdout == b""
    cfg = write_config(tmp_path, tls_for("node-1"), extra='advertise_host = "0.0.0.0"\n')
    proc = subprocess.run([sys.executable, "-m", "node", "--config", str(cfg)], capture_output=True, cwd=REPO,
                          timeout=30)
    assert proc.returncode == 2 and b"advertise_host" in proc.stderr
