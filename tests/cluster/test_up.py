"""`onezone up` as a user runs it: a banner with endpoint and credentials, cluster.json (0600),
the aws CLI working against it, Ctrl-C stopping every process, and a restart on the same data
dir keeping credentials and objects."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def start_up(data_dir: Path) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "onezone", "up", "--data-dir", str(data_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Press Ctrl-C" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("onezone up did not come up:\n" + "".join(lines) + proc.stderr.read())


def stop_up(proc: subprocess.Popen, pids: list[int]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        pytest.fail(f"daemon {pid} still running after Ctrl-C")


def aws(env: dict, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "awscli", *args], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_up_banner_cli_restart(tmp_path):
    data = tmp_path / "onezone-data"
    proc, lines = start_up(data)
    pids: list[int] = []
    try:
        banner = "".join(lines)
        info = json.loads((data / "cluster.json").read_text())
        assert stat.S_IMODE((data / "cluster.json").stat().st_mode) == 0o600
        for field in ("endpoint", "region", "zone", "access_key_id", "secret_access_key", "metrics"):
            assert info[field], field
        assert set(info["metrics"]) == {"kms", "coordinator", "node-1", "node-2", "node-3", "gateway"}
        assert info["endpoint"] in banner and info["access_key_id"] in banner
        assert "boto3" in banner and "aws --endpoint-url" in banner
        env = {**os.environ, "AWS_ACCESS_KEY_ID": info["access_key_id"],
               "AWS_SECRET_ACCESS_KEY": info["secret_access_key"], "AWS_DEFAULT_REGION": info["region"],
               "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
        ep = ["--endpoint-url", info["endpoint"]]
        key = json.loads(aws(env, *ep, "kms", "create-key", "--description", "cli"))["KeyMetadata"]
        assert key["KeyState"] == "Enabled"
        bucket = "cli--use1-az4--x-s3"
        aws(env, *ep, "s3api", "create-bucket", "--bucket", bucket, "--create-bucket-configuration",
            "Location={Type=AvailabilityZone,Name=use1-az4},Bucket={DataRedundancy=SingleAvailabilityZone,Type=Directory}")
        src = tmp_path / "hello.txt"
        src.write_bytes(b"hello from the aws cli\n")
        put = json.loads(aws(env, *ep, "s3api", "put-object", "--bucket", bucket, "--key", "hello.txt", "--body", str(src)))
        assert put["ServerSideEncryption"] == "AES256"
        out = tmp_path / "out.txt"
        aws(env, *ep, "s3api", "get-object", "--bucket", bucket, "--key", "hello.txt", str(out))
        assert out.read_bytes() == src.read_bytes()
        pids = [d["pid"] for d in info["daemons"].values()]
    finally:
        if proc.poll() is None:
            stop_up(proc, pids)
    # a restart keeps the credentials and the data
    proc, _ = start_up(data)
    try:
        info2 = json.loads((data / "cluster.json").read_text())
        assert info2["access_key_id"] == info["access_key_id"]
        out.unlink()
        aws(env | {}, "--endpoint-url", info2["endpoint"], "s3api", "get-object", "--bucket", bucket, "--key",
            "hello.txt", str(out))
        assert out.read_bytes() == src.read_bytes()
        pids = [d["pid"] for d in info2["daemons"].values()]
    finally:
        stop_up(proc, pids)
