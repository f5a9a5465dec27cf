"""``onezone gateway --config FILE``: the S3-compatible HTTP front door."""

from __future__ import annotations

import argparse
import functools
import os
import stat
import sys
from pathlib import Path

import trio

from gateway.app import Gateway
from gateway.audit import AuditFile
from gateway.backend import Backend
from gateway.config import GatewayConfig
from gateway.http import HttpLimits, serve_http
from proto.config import ConfigError, load_config_file
from proto.daemon import Lifecycle, endpoint_str, run_daemon
from proto.metrics import Metrics, serve_metrics
from proto.rpc import open_rpc_pool


def read_session_key(path: Path) -> bytes:
    """The cluster's session key: 32+ bytes, hex in a file that only its owner may read."""
    try:
        st = path.stat()
        text = path.read_text().strip()
    except OSError as exc:
        raise RuntimeError(f"cannot read session_key_file {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RuntimeError(f"session_key_file {path} must not be readable by group or others (chmod 600)")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise RuntimeError(f"session_key_file {path} must hold hex") from None
    if len(key) < 32:
        raise RuntimeError(f"session_key_file {path} must hold at least 32 bytes")
    return key


async def serve(cfg: GatewayConfig, life: Lifecycle, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    session_key = read_session_key(cfg.session_key_file)
    metrics = Metrics("gateway")
    https = None
    if cfg.https_cert is not None and cfg.https_key is not None:
        import ssl

        https = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        https.load_cert_chain(cfg.https_cert, cfg.https_key)
    async with open_rpc_pool(cfg.tls.client_context(), default_timeout_s=cfg.rpc_timeout_s) as pool:
        backend = Backend(pool, coordinator=(cfg.coordinator.host, cfg.coordinator.port),
                          kms=(cfg.kms.host, cfg.kms.port), auth_cache_s=cfg.auth_cache_s,
                          bucket_cache_s=cfg.bucket_cache_s, timeout_s=cfg.rpc_timeout_s,
                          max_stale_s=cfg.coordinator_max_stale_s)
        audit = None
        if cfg.audit_log is not None:
            audit = AuditFile(cfg.audit_log, max_bytes=cfg.audit_max_bytes, keep=cfg.audit_keep)
        try:
            gw = Gateway(cfg, backend, session_key, metrics, audit=audit)
            limits = HttpLimits(max_header_bytes=cfg.max_header_bytes, idle_timeout_s=cfg.idle_timeout_s)
            async with trio.open_nursery() as nursery:
                if audit is not None:
                    await nursery.start(audit.run)
                addr = await nursery.start(functools.partial(
                    serve_http, gw.handle, cfg.listen.host, cfg.listen.port, limits=limits, ssl_context=https,
                    on_connection=gw.m.connection))
                m = await nursery.start(serve_metrics, metrics, cfg.metrics_listen.host, cfg.metrics_listen.port)

                async def drain(grace_s: float) -> None:
                    with trio.move_on_after(grace_s):
                        while gw.active > 0:
                            await trio.sleep(0.05)
                    nursery.cancel_scope.cancel()

                life.on_shutdown(drain)
                scheme = "https" if https else "http"
                task_status.started({"rpc": endpoint_str(addr), "metrics": endpoint_str(m),
                                     "endpoint": f"{scheme}://{endpoint_str(addr)}"})
        finally:
            if audit is not None:
                audit.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="onezone gateway",
        description="Run the S3-compatible gateway (SigV4, CreateSession, S3 XML; KMS JSON and IAM query "
                    "protocols forwarded to the KMS and the coordinator). Announces READY {json} on stdout.")
    parser.add_argument("--config", required=True, type=Path, help="gateway TOML config (see ops/gateway.example.toml)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config_file(GatewayConfig, args.config)
    except ConfigError as exc:
        print(f"onezone gateway: {exc}", file=sys.stderr)
        return 2
    return run_daemon("gateway", functools.partial(serve, cfg), grace_s=cfg.grace_s, log_json=cfg.log_json,
                      log_level=cfg.log_level, instance=f"gateway-{os.getpid()}")
