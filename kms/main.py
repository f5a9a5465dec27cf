"""``onezone kms``: command line and ``serve``, the daemon's root task.

``serve`` opens everything that can fail (root key, keystore, audit log) before it reports
started, so a misconfigured daemon exits with a clear message instead of announcing READY;
then it runs the RPC server, the /metrics endpoint, the audit fsync (group commit) task and the
maintenance task (deletion when a key's window ends, automatic rotation) in one nursery.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping

import trio

from kms.auditlog import AuditLog
from kms.config import KmsConfig
from kms.handlers import KmsHandlers, KmsMetrics
from kms.keystore import KeyStore, KeystoreError, load_root_key
from kms.service import KmsService
from proto.config import ConfigError, load_config_file
from proto.daemon import Lifecycle, endpoint_str, run_daemon
from proto.metrics import Metrics, serve_metrics
from proto.rpc import RpcServer

log = logging.getLogger(__name__)


async def serve(cfg: KmsConfig, life: Lifecycle, *, environ: Mapping[str, str] | None = None,
                store: KeyStore | None = None, clock: Callable[[], float] = time.time,
                task_status: trio.TaskStatus[dict[str, str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the KMS until cancelled.

    Args:
        cfg: the daemon's configuration.
        life: shutdown coordination (drain callbacks).
        environ: where ``cfg.root_key_env`` is looked up.
        store: an already opened keystore (``main`` opens it first, see ``open_keystore``);
            None opens it here.
        clock: wall clock for key creation dates and audit times.

    Raises:
        KeystoreError: bad root key, unusable keystore (before ``task_status.started``).
        OSError: the audit log cannot be opened.
    """
    cfg.validate()
    metrics = Metrics("kms", "kms")
    kms_metrics = KmsMetrics(metrics.registry)
    if store is None:
        store = await trio.to_thread.run_sync(open_keystore, cfg, environ or {})
    audit = await trio.to_thread.run_sync(functools.partial(
        AuditLog.open, cfg.audit_log_path, observe=kms_metrics.audit_write.observe))
    try:
        service = KmsService(store, region=cfg.region, account_id=cfg.account_id, clock=clock)
        handlers = KmsHandlers(service, audit, kms_metrics, clock=clock)
        server = RpcServer(handlers.handlers(), acl=handlers.server_acl(),
                           ssl_context=cfg.tls.server_context(), name="kms",
                           observe=metrics.observe_rpc, default_timeout_s=cfg.rpc_timeout_s)
        log.info("event=keystore_open path=%s keys=%d", store.path, len(store.records()))
        async with trio.open_nursery() as nursery:
            await nursery.start(audit.run)
            await nursery.start(handlers.run_maintenance, cfg.maintenance_interval_s)
            rpc = await nursery.start(server.serve, cfg.listen.host, cfg.listen.port)
            m = await nursery.start(serve_metrics, metrics, cfg.metrics_listen.host, cfg.metrics_listen.port)
            life.on_shutdown(server.shutdown)
            task_status.started({"rpc": endpoint_str(rpc), "metrics": endpoint_str(m)})
    finally:
        audit.close()


def open_keystore(cfg: KmsConfig, environ: Mapping[str, str]) -> KeyStore:
    """Load the root key and open the keystore (blocking).

    Raises:
        KeystoreError: with the message the operator needs (bad root key file or variable,
            damaged keystore, root key that does not match the keystore).
    """
    root_key = load_root_key(root_key_file=cfg.root_key_file, root_key_env=cfg.root_key_env,
                             environ=environ)
    return KeyStore.open(cfg.data_dir, root_key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="onezone kms",
        description=(
            "Run the onezone KMS daemon: customer master keys with AWS KMS semantics (CreateKey, "
            "aliases, Enable/DisableKey, ScheduleKeyDeletion, rotation, key policies, tags, "
            "GenerateDataKey, Encrypt, Decrypt, ReEncrypt, ...) served over mutual-TLS "
            "RPC. Master keys are stored in DATA_DIR/keys.json encrypted under a root key "
            "(root_key_file, mode 0600, or root_key_env); every request is appended to a "
            "CloudTrail-shaped JSON-lines audit log. Prints 'READY {json}' once listening; "
            "SIGTERM drains and exits 0."),
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the daemon's TOML configuration")
    args = parser.parse_args(argv)
    try:
        cfg = load_config_file(KmsConfig, args.config)
    except ConfigError as exc:
        print(f"onezone kms: {exc}", file=sys.stderr)
        return 2
    # Opened before run_daemon so that a root key or keystore problem is reported as one clear
    # line (run_daemon would print the ExceptionGroup trio wraps it in, not its message).
    try:
        store = open_keystore(cfg, os.environ)
    except KeystoreError as exc:
        print(f"onezone kms: {exc}", file=sys.stderr)
        return 1
    return run_daemon("kms", functools.partial(serve, cfg, store=store), grace_s=cfg.grace_s,
                      log_json=cfg.log_json, log_level=cfg.log_level, instance="kms")
