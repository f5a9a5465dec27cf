"""``onezone coordinator``: the control plane daemon (membership, buckets, placement, IAM).

``serve`` opens the store, loads the known nodes, creates the bootstrap admin on first start
(waiting up to ``kms_wait_s`` for the KMS), then serves RPC and /metrics until cancelled.

Start-up failures (database, bootstrap) are raised before ``task_status.started`` with a
message meant for the operator; ``run_daemon`` prints it and exits 1.
"""

from __future__ import annotations

import argparse
import functools
import logging
import random
import sqlite3
import sys
import time
from collections.abc import Callable

import trio

from coordinator.catalog import Catalog
from coordinator.config import CoordinatorConfig
from coordinator.iam import BootstrapError, Iam
from coordinator.iam_entities import IamEntities
from coordinator.iam_service import IAM_ENTITY_ACL, IamEntityService
from coordinator.kms_client import KmsApi
from coordinator.lifecycle import NodeLifecycle
from coordinator.gc_service import GC_ACL, GcService
from coordinator.lifecycle_service import LIFECYCLE_ACL, LifecycleService
from coordinator.membership import Membership
from coordinator.metrics import CoordinatorMetrics
from coordinator.nodes import NodeRegistry
from coordinator.replica_sets import ReplicaSets
from coordinator.service import ACL, CoordinatorService
from coordinator.store import SqliteStore, StoreError
from coordinator.sync_driver import SyncDriver
from proto.config import ConfigError, load_config_file
from proto.daemon import Lifecycle, endpoint_str, run_daemon
from proto.metrics import Metrics, serve_metrics
from proto.rpc import RpcServer, open_rpc_pool

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The coordinator cannot start; the message says why and what to do."""


async def open_store(cfg: CoordinatorConfig) -> SqliteStore:
    """Open (creating) the database in ``cfg.data_dir``; StartupError if impossible."""
    try:
        await trio.to_thread.run_sync(lambda: cfg.data_dir.mkdir(parents=True, exist_ok=True))
        return await trio.to_thread.run_sync(SqliteStore.open, cfg.db_path)
    except (OSError, StoreError, sqlite3.Error) as exc:
        raise StartupError(f"cannot open the coordinator database {cfg.db_path}: {exc}") from exc


async def bootstrap_admin(cfg: CoordinatorConfig, store: SqliteStore, *,
                          clock: Callable[[], float] = time.time,
                          rng: random.Random | None = None) -> bool:
    """Create the bootstrap admin if there are no users yet (see ``Iam.bootstrap``).

    Returns:
        True if it was created now.

    Raises:
        BootstrapError: with the operator-facing reason (never wrapped in an ExceptionGroup).
    """
    try:
        async with open_rpc_pool(cfg.tls.client_context(), default_timeout_s=cfg.rpc_timeout_s,
                                 connect_timeout_s=min(5.0, cfg.rpc_timeout_s)) as pool:
            kms = KmsApi(pool.client(cfg.kms.host, cfg.kms.port, "kms"))
            iam = Iam(store=store, kms=kms, account_id=cfg.account_id, clock=clock,
                      secret_cache_s=0.0, rng=rng)
            return await iam.bootstrap(cfg.admin_credentials_path, wait_s=cfg.kms_wait_s,
                                       kms_where=str(cfg.kms))
    except BaseExceptionGroup as group:
        matched, rest = group.split(BootstrapError)
        if matched is not None and rest is None:
            raise _first_leaf(matched) from None
        raise


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def serve(
    cfg: CoordinatorConfig,
    life: Lifecycle,
    *,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[dict[str, str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the coordinator until cancelled; ``task_status.started`` gets its addresses.

    Args:
        cfg: the configuration.
        life: drain callbacks are registered on it.
        clock: wall clock (epoch seconds) for heartbeats and record times; injectable for tests.
        rng: randomness for ids, secrets and bucket ids (default: the OS CSPRNG).

    Raises:
        StartupError: the database cannot be opened.
        BootstrapError: first start, and the admin cannot be created (KMS unreachable...).
    """
    metrics = Metrics("coordinator", f"coordinator@{cfg.listen}")
    store = await open_store(cfg)
    try:
        created = await bootstrap_admin(cfg, store, clock=clock, rng=rng)
        membership = Membership(suspect_after_s=cfg.suspect_after_s, down_after_s=cfg.down_after_s)
        nodes = NodeRegistry(store=store, membership=membership, clock=clock)
        known = await nodes.load()
        cm_ref: list[CoordinatorMetrics] = []
        driver_ref: list[SyncDriver] = []
        lifecycle = NodeLifecycle(store=store, membership=membership, clock=clock, replicas=cfg.replicas,
                                  replace_after_s=cfg.replace_after_s,
                                  observe_change=lambda reason: cm_ref[0].replica_set_change(reason),
                                  observe_under_replicated=lambda counts: cm_ref[0].under_replicated(counts),
                                  on_added=lambda: driver_ref[0].kick())
        await lifecycle.load()
        cm = CoordinatorMetrics(metrics, membership, clock, lambda: set(cfg.zones) | membership.zones())
        cm_ref.append(cm)
        async with open_rpc_pool(cfg.tls.client_context(), default_timeout_s=cfg.rpc_timeout_s) as pool:
            kms = KmsApi(pool.client(cfg.kms.host, cfg.kms.port, "kms"), observe=cm.kms_call)
            catalog = Catalog(store=store, membership=membership, kms=kms, region=cfg.region,
                              account_id=cfg.account_id, zones=cfg.zones, replicas=cfg.replicas,
                              clock=clock, rng=rng, observe_placement=cm.placement,
                              observe_bucket_counts=cm.bucket_counts, default_zone=cfg.default_zone)
            await catalog.refresh_counts()
            iam = Iam(store=store, kms=kms, account_id=cfg.account_id, clock=clock,
                      secret_cache_s=cfg.iam_secret_cache_s, rng=rng)
            async def call_node(node_id: str, host: str, port: int, method: str, args: dict) -> dict:
                return await pool.client(host, port, node_id).call(method, args)

            driver = SyncDriver(list_buckets=catalog.list_buckets, membership=membership, clock=clock,
                                call_node=call_node)
            driver_ref.append(driver)
            replica_sets = ReplicaSets(catalog, replicas=cfg.replicas, min_replicas=cfg.min_replicas,
                                       kick=driver.kick)
            service = CoordinatorService(nodes=nodes, catalog=catalog, iam=iam,
                                         heartbeat_interval_s=cfg.heartbeat_interval_s, replica_sets=replica_sets)
            entities = IamEntityService(IamEntities(store=store, account_id=cfg.account_id, clock=clock, rng=rng))
            life_service = LifecycleService(lifecycle, catalog.zones)
            server = RpcServer({**service.handlers(), **entities.handlers(), **life_service.handlers(),
                                **GcService(store).handlers()},
                               acl={**ACL, **IAM_ENTITY_ACL, **LIFECYCLE_ACL, **GC_ACL},
                               ssl_context=cfg.tls.server_context(),
                               name="coordinator", observe=metrics.observe_rpc,
                               default_timeout_s=cfg.rpc_timeout_s)
            async with trio.open_nursery() as nursery:
                rpc = await nursery.start(server.serve, cfg.listen.host, cfg.listen.port)
                m = await nursery.start(serve_metrics, metrics, cfg.metrics_listen.host,
                                        cfg.metrics_listen.port)
                nursery.start_soon(nodes.watch, min(1.0, cfg.heartbeat_interval_s))
                nursery.start_soon(lifecycle.run, cfg.reconcile_interval_s)
                nursery.start_soon(driver.run, cfg.reconcile_interval_s)
                life.on_shutdown(server.shutdown)
                log.info("event=coordinator_started nodes=%d zones=%s admin_bootstrapped=%s",
                         known, ",".join(sorted(catalog.zones())) or "-", created)
                task_status.started({"rpc": endpoint_str(rpc), "metrics": endpoint_str(m),
                                     "admin_credentials_file": str(cfg.admin_credentials_path)})
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="onezone coordinator",
        description="Run the onezone coordinator: the control plane that tracks storage nodes "
                    "(registration, heartbeats, up/suspect/down), the zones, the directory-bucket "
                    "catalog with its placement and wrapped bucket keys, and IAM users, access "
                    "keys and policies. On first start it creates the bootstrap admin and writes "
                    "its credentials (mode 0600) to admin_credentials_file (default "
                    "DATA_DIR/admin-credentials.json). Prints 'READY {json}' once listening; "
                    "SIGTERM drains and exits 0.")
    parser.add_argument("--config", required=True, metavar="FILE", help="the daemon's TOML configuration")
    args = parser.parse_args(argv)
    try:
        cfg = load_config_file(CoordinatorConfig, args.config)
    except ConfigError as exc:
        print(f"onezone coordinator: {exc}", file=sys.stderr)
        return 2
    return run_daemon("coordinator", functools.partial(serve, cfg), grace_s=cfg.grace_s,
                      log_json=cfg.log_json, log_level=cfg.log_level, instance=f"coordinator@{cfg.listen}")
