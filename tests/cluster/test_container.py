"""The container image builds from the Dockerfile and runs `onezone up`, reached from the host.

There is no Docker engine on these machines: the image is built and run with buildah, as
../shared/reference/containers.md describes. The base image is a debootstrapped Debian with
Python, imported once and reused (``localhost/onezone-base:bookworm``). Slow (about 80 s for
the base on a new machine, 10-60 s for the build): marked ``slow``, still part of the default
run. Skips (saying why) only when not root or buildah/podman/debootstrap are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/onezone-base:bookworm"
VFS = ["--storage-driver", "vfs"]
# inside the container: start the cluster, announce cluster.json, wait for the host's go to stop
# (a file the host creates through `buildah mount`; /data is a volume, so not there)
STOP = "opt/onezone/stop"
INNER = r"""
onezone up --port 0 --nodes 3 --data-dir /data/t > /data/up.log 2>&1 &
pid=$!
for i in $(seq 900); do [ -f /data/t/cluster.json ] && break; sleep 0.1; done
[ -f /data/t/cluster.json ] || cat /data/up.log
echo "CLUSTER-JSON $(python3 -c 'import json; print(json.dumps(json.load(open("/data/t/cluster.json"))))')"
for i in $(seq 1200); do [ -f /opt/onezone/stop ] && break; sleep 0.1; done
kill -TERM $pid
wait $pid
echo "EXIT=$?"
"""


def _run(*cmd: str, timeout: float, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def image():
    missing = [b for b in ("buildah", "podman", "debootstrap") if shutil.which(b) is None]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"building the image needs root and buildah, podman, debootstrap (missing: {missing or 'root'}); "
                    "dev.py test installs them when run as root")
    exists = subprocess.run(["podman", *VFS, "image", "exists", BASE]).returncode == 0
    if not exists:
        with tempfile.TemporaryDirectory() as rootfs:
            _run("debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip", "bookworm",
                 rootfs, timeout=900)
            os.chmod(rootfs, 0o755)  # mktemp's 0700 would lock the image's non-root user out of /
            tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
            _run("podman", *VFS, "import", "-", BASE, stdin=tar.stdout, timeout=600)
            assert tar.wait() == 0
    tag = f"localhost/onezone:test-{os.getpid()}"
    build = ["buildah", *VFS, "bud", "--isolation", "chroot", "--build-arg", f"BASE={BASE}", "-t", tag]
    cert = os.environ.get("PIP_CERT")
    if cert:
        build += ["-v", f"{cert}:/etc/ssl/certs/ca-certificates.crt:ro",
                  "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"]
    t0 = time.monotonic()
    _run(*build, str(ROOT), timeout=900)
    print(f"image built in {time.monotonic() - t0:.0f} s")
    yield tag
    subprocess.run(["buildah", *VFS, "rmi", "-f", tag], capture_output=True)


def test_image_runs_onezone_up_reached_from_the_host(image):
    name = f"onezone-test-{os.getpid()}"
    _run("buildah", *VFS, "from", "--name", name, image, timeout=300)
    proc = None
    mount = "/nonexistent"
    try:
        r = _run("buildah", *VFS, "run", "--isolation", "chroot", name, "--", "onezone", "--help", timeout=120)
        assert "onezone up" in r.stdout
        mount = _run("buildah", *VFS, "mount", name, timeout=60).stdout.strip()
        Path(mount, STOP).unlink(missing_ok=True)
        proc = subprocess.Popen(["buildah", *VFS, "run", "--isolation", "chroot", name, "--", "sh", "-c", INNER],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        info = None
        deadline = time.monotonic() + 180
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("CLUSTER-JSON "):
                info = json.loads(line[len("CLUSTER-JSON "):])
                break
        assert info, "".join(lines)
        # the daemons inside the image share the host's network: talk S3 to them from here
        s3 = boto3.client("s3", endpoint_url=info["endpoint"], region_name=info["region"],
                          aws_access_key_id=info["access_key_id"], aws_secret_access_key=info["secret_access_key"],
                          config=Config(retries={"max_attempts": 1}))
        bucket = "image--use1-az4--x-s3"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={
            "Location": {"Type": "AvailabilityZone", "Name": info["zone"]},
            "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}})
        s3.put_object(Bucket=bucket, Key="k", Body=b"from the container")
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"from the container"
        import urllib.request

        metrics = urllib.request.urlopen(info["metrics"]["gateway"], timeout=5).read().decode()
        assert 'onezone_gateway_requests_total{bucket="image--use1-az4--x-s3",operation="PutObject"' in metrics
        Path(mount, STOP).touch()
        out, _ = proc.communicate(timeout=60)
        assert "EXIT=0" in out, out
    finally:
        if proc is not None and proc.poll() is None:
            Path(mount, STOP).touch()  # let the cluster inside stop its own processes
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["buildah", *VFS, "umount", name], capture_output=True)
        subprocess.run(["buildah", *VFS, "rm", name], capture_output=True)
