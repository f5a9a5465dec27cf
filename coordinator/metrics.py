"""The coordinator's own Prometheus metrics, on the daemon's registry.

- ``onezone_coordinator_nodes{zone,state}``: nodes per zone and state, every state listed
  (0 included) for every known zone; computed at scrape time from the membership.
- ``onezone_coordinator_heartbeat_age_seconds{node}``: seconds since each node's last
  heartbeat, at scrape time.
- ``onezone_coordinator_buckets{zone}``: buckets per zone, updated on every create/delete.
- ``onezone_coordinator_buckets_under_replicated{zone}``: buckets with fewer than ``replicas``
  replicas in state up, at scrape time, from the replica sets that ``watch_replica_sets``
  reloads from the catalog every few seconds.
- ``onezone_coordinator_placement_decisions_total{outcome}``: ``placed`` or
  ``insufficient_capacity``.
- ``onezone_coordinator_kms_calls_total{operation,outcome}``: calls to the KMS; outcome ``ok``
  or the error kind.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import trio

from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from coordinator.membership import Membership, NodeState
from proto.metrics import Metrics

log = logging.getLogger(__name__)


UNDER_HELP = "Buckets with fewer replicas up than the replication factor, by zone."


class _MembershipCollector(Collector):
    def __init__(self, membership: Membership, clock: Callable[[], float],
                 zones: Callable[[], Iterable[str]], replicas: int) -> None:
        self._membership = membership
        self._clock = clock
        self._zones = zones
        self._replicas = replicas
        # (zone, replica node ids) of every bucket, reloaded by watch_replica_sets
        self.replica_sets: list[tuple[str, tuple[str, ...]]] = []

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("onezone_coordinator_nodes", "Registered nodes by zone and state.",
                                labels=["zone", "state"])
        yield GaugeMetricFamily("onezone_coordinator_heartbeat_age_seconds",
                                "Seconds since the node's last heartbeat.", labels=["node"])
        yield GaugeMetricFamily("onezone_coordinator_buckets_under_replicated", UNDER_HELP, labels=["zone"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        views = self._membership.view(self._clock())
        counts = {(zone, state): 0 for zone in self._zones() for state in NodeState}
        for v in views:
            counts[(v.node.zone, v.state)] = counts.get((v.node.zone, v.state), 0) + 1
        nodes = GaugeMetricFamily("onezone_coordinator_nodes", "Registered nodes by zone and state.",
                                  labels=["zone", "state"])
        for (zone, state), n in sorted(counts.items()):
            nodes.add_metric([zone, state.value], n)
        yield nodes
        ages = GaugeMetricFamily("onezone_coordinator_heartbeat_age_seconds",
                                 "Seconds since the node's last heartbeat.", labels=["node"])
        for v in views:
            ages.add_metric([v.node.node_id], v.age_s)
        yield ages
        up = {v.node.node_id for v in views if v.state is NodeState.UP}
        under = {zone: 0 for zone in self._zones()}
        for zone, replicas in self.replica_sets:
            live = sum(1 for node_id in replicas if node_id in up)
            under[zone] = under.get(zone, 0) + (1 if live < max(len(replicas), self._replicas) else 0)
        fam = GaugeMetricFamily("onezone_coordinator_buckets_under_replicated", UNDER_HELP, labels=["zone"])
        for zone, n in sorted(under.items()):
            fam.add_metric([zone], n)
        yield fam


class CoordinatorMetrics:
    def __init__(self, metrics: Metrics, membership: Membership, clock: Callable[[], float],
                 zones: Callable[[], Iterable[str]], *, replicas: int = 3) -> None:
        registry = metrics.registry
        self._collector = _MembershipCollector(membership, clock, zones, replicas)
        registry.register(self._collector)
        self._buckets = Gauge("onezone_coordinator_buckets", "Directory buckets by zone.",
                              ["zone"], registry=registry)
        self._placements = Counter("onezone_coordinator_placement_decisions_total",
                                   "Bucket placement decisions by outcome.", ["outcome"], registry=registry)
        self._kms_calls = Counter("onezone_coordinator_kms_calls_total",
                                  "Calls to the KMS by operation and outcome.",
                                  ["operation", "outcome"], registry=registry)
        for outcome in ("placed", "insufficient_capacity"):
            self._placements.labels(outcome)

    def placement(self, outcome: str) -> None:
        self._placements.labels(outcome).inc()

    def bucket_counts(self, counts: Mapping[str, int]) -> None:
        for zone, n in counts.items():
            self._buckets.labels(zone).set(n)

    def kms_call(self, operation: str, outcome: str) -> None:
        self._kms_calls.labels(operation, outcome).inc()

    async def watch_replica_sets(self, list_buckets: Callable[[], Awaitable[list[Any]]],
                                 interval_s: float = 5.0) -> None:
        """Reload every bucket's (zone, replica set) from the catalog every ``interval_s``."""
        while True:
            try:
                records = await list_buckets()
                self._collector.replica_sets = [(b.zone, tuple(b.replicas)) for b in records]
            except Exception as exc:  # a metrics task must never take the daemon down
                log.warning("event=replica_sets_reload_failed error=%s", exc)
            await trio.sleep(interval_s)
