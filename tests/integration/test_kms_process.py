"""`python -m kms --config FILE` as a real process: READY line, /metrics, SIGTERM, config errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.process_helpers import read_ready

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, tls, extra: str = "") -> Path:
    root = tmp_path / "root.key"
    root.write_text("ab" * 32 + "\n")
    os.chmod(root, 0o600)
    cfg = tmp_path / "kms.toml"
    cfg.write_text(
        'listen = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:0"\n'
        f'data_dir = "{tmp_path / "data"}"\nroot_key_file = "{root}"\ngrace_s = 1.0\n{extra}'
        f'[tls]\nca = "{tls.ca}"\ncert = "{tls.cert}"\nkey = "{tls.key}"\n')
    return cfg



def test_kms_process_ready_metrics_sigterm(tmp_path, tls_for):
    cfg = write_config(tmp_path, tls_for("kms"))
    proc = subprocess.Popen([sys.executable, "-m", "kms", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        info = read_ready(proc)
        assert info["daemon"] == "kms" and info["rpc"].startswith("127.0.0.1:")
        with urllib.request.urlopen(f"http://{info['metrics']}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert 'onezone_kms_keys{state="Enabled"} 0.0' in text
        assert (tmp_path / "data" / "keys.json").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kms_process_config_errors(tmp_path, tls_for):
    cfg = write_config(tmp_path, tls_for("kms"), extra='root_key_fiel = "x"\n')
    proc = subprocess.run([sys.executable, "-m", "kms", "--config", str(cfg)],
                          capture_output=True, cwd=REPO, timeout=20)
    assert proc.returncode == 2
    assert b"root_key_fiel" in proc.stderr and proc.stderr.startswith(b"onezone kms: ")

    cfg = write_config(tmp_path, tls_for("kms"))
    os.chmod(tmp_path / "root.key", 0o644)
    proc = subprocess.run([sys.executable, "-m", "kms", "--config", str(cfg)],
                          capture_output=True, cwd=REPO, timeout=20)
    assert proc.returncode == 1 and b"READY" not in proc.stdout
    assert proc.stderr.startswith(b"onezone kms: root_key_file ") and b"chmod 600" in proc.stderr
