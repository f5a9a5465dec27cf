"""``onezone node``: command line and ``serve``, the storage node's root task.

``serve`` opens the store first (cleaning crash leftovers; a data_dir that cannot be used
fails here, before READY), then runs in one nursery: the RPC server (Node section of
docs/rpc.md), /metrics, the membership task that registers with the coordinator and
heartbeats, the key-state watcher (``node.keywatch``: revoked KMS keys leave the bucket-key
cache within a second) and the collector of stale bucket copies (``node.stale_collector``).
The coordinator need not be up: the node announces READY at once and keeps retrying
registration in the background.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from collections.abc import Callable

import trio

from node.buckets import BucketCache, coordinator_fetch
from node.compaction import Compactor
from node.config import NodeConfig
from node.keycache import BucketKeyCache, kms_unwrapper
from node.keywatch import KeyStateWatcher
from node.membership import Membership
from node.capacity import SpaceGuard
from node.metrics import NodeMetrics
from node.objects import ObjectService
from node.repair import Repairer
from node.scrub import Scrubber
from node.stale_collector import StaleCollector
from node.replica import ReplicaService
from node.service import ACL, NodeHandlers
from node.store import ObjectStore
from proto.config import ConfigError, load_config_file
from proto.daemon import Lifecycle, endpoint_str, run_daemon
from proto.metrics import Metrics, serve_metrics
from proto.rpc import RpcServer, open_rpc_pool

log = logging.getLogger(__name__)


async def serve(cfg: NodeConfig, life: Lifecycle, *, clock: Callable[[], float] = time.time,
                task_status: trio.TaskStatus[dict[str, str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the storage node until cancelled.

    Args:
        cfg: the daemon's configuration.
        life: shutdown coordination (drain callbacks).
        clock: wall clock for objects' last_modified.

    Raises:
        OSError, RuntimeError: the data directory or its index cannot be used (before
            ``task_status.started``).
    """
    cfg.validate()
    metrics = Metrics("node", cfg.node_id)
    node_metrics = NodeMetrics(metrics.registry)
    store = await trio.to_thread.run_sync(ObjectStore.open, cfg.data_dir)
    try:
        space = SpaceGuard(cfg.data_dir, capacity_bytes=cfg.capacity_bytes, reserve_bytes=cfg.reserve_bytes,
                           used=lambda: store.used_bytes, node_id=cfg.node_id,
                           no_space=lambda: store.no_space_errors)
        usage = space.usage
        node_metrics.bind_store(used=lambda: store.used_bytes, free=space.free,
                                objects=lambda: store.object_count, no_space=lambda: store.no_space_errors)
        async with open_rpc_pool(cfg.tls.client_context(), default_timeout_s=cfg.rpc_timeout_s) as pool:
            kms = pool.client(cfg.kms.host, cfg.kms.port, "kms")
            coordinator = pool.client(cfg.coordinator.host, cfg.coordinator.port, "coordinator")
            keys = BucketKeyCache(kms_unwrapper(kms), ttl_s=cfg.key_cache_ttl_s,
                                  max_entries=cfg.key_cache_max_entries, registry=metrics.registry,
                                  grace_s=cfg.kms_outage_grace_s)
            watcher = KeyStateWatcher(kms, keys, interval_s=cfg.kms_poll_interval_s,
                                      grace_s=cfg.kms_outage_grace_s, registry=metrics.registry)
            buckets = BucketCache(coordinator_fetch(coordinator), ttl_s=cfg.bucket_cache_ttl_s,
                                  max_stale_s=cfg.coordinator_max_stale_s)

            async def report(bucket: str, epoch: int, node_id: str) -> dict:
                r = await coordinator.call("ReportReplicaFailure", {"name": bucket, "epoch": epoch, "node_id": node_id})
                return r["bucket"]

            peer_client = lambda r: pool.client(r.host, r.port, r.node_id)  # noqa: E731
            objects = ObjectService(node_id=cfg.node_id, store=store, buckets=buckets, keys=keys,
                                    peer_client=peer_client, chunk_bytes=cfg.chunk_bytes, metrics=node_metrics,
                                    clock=clock, report=report)
            objects.space_check = space.check
            replicas = ReplicaService(node_id=cfg.node_id, store=store, buckets=buckets, metrics=node_metrics,
                                      space_check=space.check)
            async def report_synced(bucket: str, target: str, epoch: int) -> dict:
                return await coordinator.call("ReportReplicaSynced", {"bucket": bucket, "node_id": target, "epoch": epoch})

            repairer = Repairer(node_id=cfg.node_id, store=store, buckets=buckets, objects=objects,
                                peer_client=peer_client, metrics=node_metrics,
                                rate_bytes_per_s=cfg.repair_rate_bytes_per_s, report_synced=report_synced)
            objects.read_repair = repairer.repair_object
            scrubber = Scrubber(store, buckets, repairer, node_metrics, rate_bytes_per_s=cfg.scrub_rate_bytes_per_s,
                                pause_s=cfg.scrub_pause_s)
            server = RpcServer(NodeHandlers(objects, replicas, repairer).handlers(), acl=ACL,
                               ssl_context=cfg.tls.server_context(), name="node", observe=metrics.observe_rpc,
                               default_timeout_s=cfg.rpc_timeout_s)
            async with trio.open_nursery() as nursery:
                await nursery.start(repairer.run)
                if cfg.scrub_rate_bytes_per_s > 0:
                    nursery.start_soon(scrubber.run)
                nursery.start_soon(Compactor(store, interval_s=cfg.compact_interval_s,
                                             min_garbage_ratio=cfg.compact_min_garbage_ratio,
                                             rate_bytes_per_s=cfg.compact_rate_bytes_per_s,
                                             metrics=node_metrics).run)
                rpc = await nursery.start(server.serve, cfg.listen.host, cfg.listen.port)
                m = await nursery.start(serve_metrics, metrics, cfg.metrics_listen.host, cfg.metrics_listen.port)
                life.on_shutdown(server.shutdown)
                membership = Membership(coordinator, node_id=cfg.node_id, zone=cfg.zone,
                                        host=cfg.advertise_host or rpc[0], port=rpc[1],
                                        capacity_bytes=cfg.capacity_bytes, usage=usage,
                                        interval_s=cfg.heartbeat_interval_s)
                nursery.start_soon(membership.run)
                nursery.start_soon(watcher.run)
                stale = StaleCollector(store, coordinator, node_id=cfg.node_id, grace_s=cfg.stale_gc_grace_s,
                                       interval_s=cfg.stale_gc_interval_s, registry=metrics.registry,
                                       rate_objects_per_s=cfg.stale_gc_rate_objects_per_s)
                if cfg.stale_gc_interval_s > 0:
                    nursery.start_soon(stale.run)
                task_status.started({"rpc": endpoint_str(rpc), "metrics": endpoint_str(m),
                                     "node_id": cfg.node_id, "zone": cfg.zone})
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="onezone node",
        description=(
            "Run an onezone storage node: it stores the objects of the directory buckets placed "
            "on it, compressed and encrypted (AES-256-GCM under per-object keys derived from the "
            "bucket key, which the KMS unwraps and the node caches in memory only), in DATA_DIR "
            "(append-only segment files with group commit plus an SQLite index), and replicates every write "
            "to the bucket's other replicas before acknowledging it. It registers with the "
            "coordinator (retrying until it answers) and heartbeats. Prints 'READY {json}' once "
            "listening; SIGTERM drains and exits 0."),
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the node's TOML configuration")
    args = parser.parse_args(argv)
    try:
        cfg = load_config_file(NodeConfig, args.config)
    except ConfigError as exc:
        print(f"onezone node: {exc}", file=sys.stderr)
        return 2
    return run_daemon("node", functools.partial(serve, cfg), grace_s=cfg.grace_s, log_json=cfg.log_json,
                      log_level=cfg.log_level, instance=cfg.node_id)
