"""Run Debian's ``prometheus`` binary against a local cluster (``onezone up --with-prometheus``).

``prometheus_config`` writes the scrape config for a cluster's data dir: one job scraping every
daemon through the file_sd target file that ``LocalCluster`` writes
(``DATA_DIR/prometheus-targets.json``), the alert rules of ``ops/alerts.yml`` when that file
can be found, and a short scrape interval (5 s) so a user sees live numbers at once.
``Prometheus.start`` runs the binary with its TSDB under ``DATA_DIR/prometheus/data`` and waits
for ``/-/ready``. Prometheus needs a fixed ``--web.listen-address``; with ``port=0`` a free port
is chosen and, since another process may take it before Prometheus binds it, the start is
retried on a new port when Prometheus exits early.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SCRAPE_INTERVAL_S = 5
READY_TIMEOUT_S = 30.0


def find_binary(name: str = "prometheus") -> str | None:
    """The path of Debian's binary (``apt-get install prometheus``), or None."""
    return shutil.which(name)


def find_rules(explicit: Path | None = None) -> Path | None:
    """``ops/alerts.yml``: given explicitly, next to the source tree, or in the container image."""
    candidates = [explicit] if explicit else [
        Path(__file__).resolve().parents[1] / "ops" / "alerts.yml", Path("/opt/onezone/ops/alerts.yml")]
    for path in candidates:
        if path is not None and path.is_file():
            return path
    return None


def prometheus_config(data_dir: Path, *, rules: Path | None, interval_s: int = SCRAPE_INTERVAL_S) -> str:
    """The YAML (JSON is valid YAML) scrape config for the cluster under ``data_dir``."""
    doc = {
        "global": {"scrape_interval": f"{interval_s}s", "evaluation_interval": f"{interval_s}s",
                   "external_labels": {"cluster": "onezone-local"}},
        "rule_files": [str(rules)] if rules else [],
        "scrape_configs": [{
            "job_name": "onezone",
            "file_sd_configs": [{"files": [str(data_dir / "prometheus-targets.json")], "refresh_interval": "10s"}],
        }],
    }
    return json.dumps(doc, indent=2) + "\n"


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Prometheus:
    """One prometheus process; ``start`` then ``stop`` (SIGTERM, then SIGKILL, by pid)."""

    config: Path
    storage: Path
    log_path: Path
    host: str = "127.0.0.1"
    port: int = 9090
    binary: str = "prometheus"
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, *, attempts: int = 5) -> str:
        """Start and wait until ready; returns the URL.

        Raises:
            RuntimeError: prometheus exited or did not become ready (its log tail is included).
        """
        pick = self.port == 0
        for attempt in range(attempts):
            if pick:
                self.port = free_port(self.host)
            self.storage.mkdir(parents=True, exist_ok=True)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.storage}",
                     f"--web.listen-address={self.host}:{self.port}", "--web.enable-lifecycle", *self.extra_args],
                    stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
            if self._wait_ready():
                return self.url
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            if not (pick and "address already in use" in tail and attempt + 1 < attempts):
                raise RuntimeError(f"prometheus did not start on {self.host}:{self.port}; log tail:\n{tail}")
        raise RuntimeError("prometheus did not start")  # pragma: no cover (loop always returns or raises)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def for_cluster(data_dir: Path, *, host: str = "127.0.0.1", port: int = 9090, rules: Path | None = None,
                binary: str | None = None) -> Prometheus:
    """A Prometheus set up (config written) to scrape the cluster under ``data_dir``.

    Raises:
        RuntimeError: no prometheus binary is installed.
    """
    exe = binary or find_binary()
    if exe is None:
        raise RuntimeError("--with-prometheus needs Debian's prometheus binary: apt-get install prometheus")
    home = data_dir / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    config.write_text(prometheus_config(data_dir, rules=find_rules(rules)))
    return Prometheus(config=config, storage=home / "data", log_path=data_dir / "logs" / "prometheus.log",
                      host=host, port=port, binary=exe)
