"""A local cluster of real daemon processes under one data dir: used by ``onezone up`` and by
the tests' harness.

``LocalCluster.start()`` creates what a first start needs (certificates for every principal,
the KMS root key, the gateway session key: all mode 0600 under ``data_dir``), writes one TOML
config per daemon, and starts the KMS, the coordinator, the nodes and the gateway as separate
OS processes (``python -m <daemon> --config FILE``), each binding port 0 unless told otherwise
and announcing ``READY {json}``; addresses flow from one daemon's announcement into the next
one's config. It then waits until the coordinator sees every node up and the bootstrap admin's
credentials exist, and writes ``cluster.json`` (mode 0600) and a Prometheus file_sd target file.

Restarting on the same data dir reuses the certificates, keys, data and admin credentials.
``stop()`` sends SIGTERM to every process it started (gateway first), waits, then SIGKILLs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from proto.certs import write_cluster_certs

READY_TIMEOUT_S = 60.0


def _write_secret(path: Path, text: str) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())


def _toml(mapping: dict[str, Any]) -> str:
    """Plain TOML for the generated configs (values are str, int, float, bool, list, dict)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for k, v in mapping.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _reachable(addr: str) -> str:
    """A scrape target for a bound address: a wildcard bind is reached on loopback."""
    host, _, port = addr.rpartition(":")
    return {"0.0.0.0": f"127.0.0.1:{port}", "[::]": f"[::1]:{port}"}.get(host, addr)


@dataclass
class Daemon:
    name: str
    kind: str
    config: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    info: dict[str, Any] = field(default_factory=dict)
    _log: IO[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.kind, "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        line = self._readline(deadline)
        if not line.startswith("READY "):
            self.stop(1.0)
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} did not start (exit {self.proc.returncode}); log tail:\n{tail}")
        self.info = json.loads(line[len("READY "):])
        threading.Thread(target=self._drain_stdout, daemon=True).start()
        return self.info

    def _readline(self, deadline: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        result: list[str] = []

        def reader() -> None:
            result.append(self.proc.stdout.readline().decode(errors="replace"))

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(max(0.0, deadline - time.monotonic()))
        return result[0].strip() if result else ""

    def _drain_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read(4096), b""):
            if self._log is not None and not self._log.closed:
                self._log.write(chunk)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        return self.proc.returncode


@dataclass
class LocalCluster:
    data_dir: Path
    nodes: int = 3
    zone: str = "use1-az4"
    host: str = "127.0.0.1"
    port: int = 9000
    region: str = "us-east-1"
    account_id: str = "000000000000"
    https: bool = False  # serve S3 over TLS with a certificate from the cluster CA
    node_options: dict[str, Any] = field(default_factory=dict)
    coordinator_options: dict[str, Any] = field(default_factory=dict)
    gateway_options: dict[str, Any] = field(default_factory=dict)
    log_json: bool = False
    daemons: dict[str, Daemon] = field(default_factory=dict)
    endpoint: str = ""
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def node_names(self) -> list[str]:
        return [f"node-{i}" for i in range(1, self.nodes + 1)]

    def _prepare(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.data_dir, 0o700)
        write_cluster_certs(self.data_dir / "certs", ["kms", "coordinator", "gateway", "admin", *self.node_names])
        _write_secret(self.data_dir / "kms" / "root.key", secrets.token_hex(32))
        _write_secret(self.data_dir / "gateway" / "session.key", secrets.token_hex(32))
        if self.https:
            self._https_cert()

    def _https_cert(self) -> None:
        """The S3 endpoint's certificate, signed by the cluster CA (clients verify with ca.pem)."""
        from proto.certs import issue_cert

        certs = self.data_dir / "certs"
        if (certs / "s3-endpoint.pem").exists():
            return
        cert, key = issue_cert((certs / "ca.pem").read_bytes(), (certs / "ca.key").read_bytes(), "s3-endpoint",
                               extra_dns=["localhost"], ip_addresses=["127.0.0.1", "::1"])
        _write_secret(certs / "s3-endpoint.key", key.decode())
        (certs / "s3-endpoint.pem").write_bytes(cert)

    def _common(self, principal: str) -> dict[str, Any]:
        certs = self.data_dir / "certs"
        return {"listen": f"{self.host}:0", "metrics_listen": f"{self.host}:0", "region": self.region,
                "account_id": self.account_id, "log_json": self.log_json,
                "tls": {"ca": str(certs / "ca.pem"), "cert": str(certs / f"{principal}.pem"),
                        "key": str(certs / f"{principal}.key")}}

    def _daemon(self, name: str, kind: str, cfg: dict[str, Any]) -> Daemon:
        path = self.data_dir / "config" / f"{name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(f"# generated by onezone up; rewritten at every start\n{_toml(cfg)}")
        d = Daemon(name, kind, path, self.data_dir / "logs" / f"{name}.log")
        self.daemons[name] = d
        return d

    def start(self) -> None:
        self._prepare()
        try:
            kms = self._daemon("kms", "kms", {**self._common("kms"), "data_dir": str(self.data_dir / "kms"),
                                              "root_key_file": str(self.data_dir / "kms" / "root.key")})
            kms_addr = kms.start()["rpc"]
            coord = self._daemon("coordinator", "coordinator", {
                **self._common("coordinator"), "data_dir": str(self.data_dir / "coordinator"),
                "kms": kms_addr, "zones": [self.zone], "default_zone": self.zone,
                "replicas": min(3, self.nodes),
                **self.coordinator_options})
            coord_addr = coord.start()["rpc"]
            for name in self.node_names:
                self._daemon(name, "node", {
                    **self._common(name), "node_id": name, "zone": self.zone,
                    "data_dir": str(self.data_dir / name), "coordinator": coord_addr, "kms": kms_addr,
                    **self.node_options}).start()
            gw = self._daemon("gateway", "gateway", {
                **self._common("gateway"), "listen": f"{self.host}:{self.port}",
                "coordinator": coord_addr, "kms": kms_addr,
                "session_key_file": str(self.data_dir / "gateway" / "session.key"),
                "audit_log": str(self.data_dir / "gateway" / "audit.jsonl"),
                **({"https_cert": str(self.data_dir / "certs" / "s3-endpoint.pem"),
                    "https_key": str(self.data_dir / "certs" / "s3-endpoint.key")} if self.https else {}),
                **self.gateway_options})
            self.endpoint = gw.start()["endpoint"]
            self._wait_ready()
            self._write_cluster_json()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        creds_file = self.data_dir / "coordinator" / "admin-credentials.json"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if creds_file.exists() and self._nodes_up() >= self.nodes:
                self.credentials = json.loads(creds_file.read_text())
                return
            for d in self.daemons.values():
                if not d.alive():
                    raise RuntimeError(f"{d.name} exited; see {d.log_path}")
            time.sleep(0.1)
        raise RuntimeError("the cluster did not become ready (nodes not registered or no admin credentials)")

    def _nodes_up(self) -> int:
        import trio

        from proto.rpc import open_rpc_pool
        from proto.settings import TlsConfig

        certs = self.data_dir / "certs"
        tls = TlsConfig(ca=certs / "ca.pem", cert=certs / "admin.pem", key=certs / "admin.key")
        host, _, port = self.daemons["coordinator"].info["rpc"].rpartition(":")

        async def ask() -> int:
            async with open_rpc_pool(tls.client_context(), default_timeout_s=2) as pool:
                r = await pool.client(host.strip("[]"), int(port), "coordinator").call("ListNodes", {})
                return sum(1 for n in r["nodes"] if n["state"] == "up")

        try:
            return trio.run(ask)
        except Exception:
            return 0

    def _write_cluster_json(self) -> None:
        doc = {
            "endpoint": self.endpoint, "region": self.region, "zone": self.zone,
            "access_key_id": self.credentials["access_key_id"],
            "secret_access_key": self.credentials["secret_access_key"],
            "metrics": {name: f"http://{d.info['metrics']}/metrics" for name, d in self.daemons.items()},
            "daemons": {name: {"rpc": d.info.get("rpc"), "metrics": d.info.get("metrics"),
                               "pid": d.proc.pid if d.proc else None} for name, d in self.daemons.items()},
            "data_dir": str(self.data_dir),
        }
        path = self.data_dir / "cluster.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
        os.replace(tmp, path)
        targets = [{"targets": [_reachable(d.info["metrics"])], "labels": {"daemon": d.kind, "instance_name": name}}
                   for name, d in self.daemons.items()]
        (self.data_dir / "prometheus-targets.json").write_text(json.dumps(targets, indent=2))

    def kill(self, name: str) -> None:
        """SIGKILL one daemon (a crash: no drain, no cleanup)."""
        d = self.daemons[name]
        if d.alive():
            d.proc.kill()
            d.proc.wait()

    def restart(self, name: str) -> dict[str, Any]:
        """Start a stopped daemon again on the address it had (as a restarted host would), so
        the daemons configured with that address find it again."""
        d = self.daemons[name]
        d.stop(1.0)
        text = re.sub(rf'^listen = "{re.escape(self.host)}:0"$', f'listen = "{d.info["rpc"]}"', d.config.read_text(),
                      count=1, flags=re.M)  # not metrics_listen (a second restart)
        d.config.write_text(text)
        return d.start()

    def stop(self) -> None:
        order = ["gateway", *reversed(self.node_names), "coordinator", "kms"]
        for name in order:
            d = self.daemons.get(name)
            if d is not None:
                d.stop()
