"""The coordinator's own Prometheus metrics, on the daemon's registry.

- ``onezone_coordinator_nodes{zone,state}``: nodes per zone and state, every state listed
  (0 included) for every known zone; computed at scrape time from the membership.
- ``onezone_coordinator_heartbeat_age_seconds{node}``: seconds since each node's last
  heartbeat, at scrape time.
- ``onezone_coordinator_buckets{zone}``: buckets per zone, updated on every create/delete.
- ``onezone_coordinator_placement_decisions_total{outcome}``: ``placed`` or
  ``insufficient_capacity``.
- ``onezone_coordinator_nodes_admin{zone,admin}``: nodes per zone that are ``draining`` or
  ``removed`` by the operator.
- ``onezone_coordinator_buckets_under_replicated{zone}``: buckets with fewer than R healthy
  replicas (live, not draining, not syncing), after each reconciliation round.
- ``onezone_coordinator_replica_set_changes_total{reason}``: replica-set changes
  (``replace_lost``, ``drain``, ``drain_done``, ``sync``).
- ``onezone_coordinator_kms_calls_total{operation,outcome}``: calls to the KMS; outcome ``ok``
  or the error kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from coordinator.membership import Membership, NodeState
from proto.metrics import Metrics


class _MembershipCollector(Collector):
    def __init__(self, membership: Membership, clock: Callable[[], float],
                 zones: Callable[[], Iterable[str]]) -> None:
        self._membership = membership
        self._clock = clock
        self._zones = zones

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("onezone_coordinator_nodes", "Registered nodes by zone and state.",
                                labels=["zone", "state"])
        yield GaugeMetricFamily("onezone_coordinator_heartbeat_age_seconds",
                                "Seconds since the node's last heartbeat.", labels=["node"])
        yield GaugeMetricFamily("onezone_coordinator_nodes_admin",
                                "Nodes draining or removed, by zone.", labels=["zone", "admin"])

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
        admin = GaugeMetricFamily("onezone_coordinator_nodes_admin",
                                  "Nodes draining or removed, by zone.", labels=["zone", "admin"])
        for zone in sorted(set(self._zones()) | {v.node.zone for v in views}):
            for state in ("draining", "removed"):
                admin.add_metric([zone, state], sum(1 for v in views if v.node.zone == zone and v.admin == state))
        yield admin


class CoordinatorMetrics:
    def __init__(self, metrics: Metrics, membership: Membership, clock: Callable[[], float],
                 zones: Callable[[], Iterable[str]]) -> None:
        registry = metrics.registry
        self._collector = _MembershipCollector(membership, clock, zones)
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
        self._under = Gauge("onezone_coordinator_buckets_under_replicated",
                            "Buckets with fewer healthy replicas than wanted, by zone.", ["zone"], registry=registry)
        self._changes = Counter("onezone_coordinator_replica_set_changes_total",
                                "Replica-set changes by reason.", ["reason"], registry=registry)
        self._zones = zones
        for reason in ("replace_lost", "drain", "drain_done", "sync"):
            self._changes.labels(reason)

    def replica_set_change(self, reason: str) -> None:
        self._changes.labels(reason).inc()

    def under_replicated(self, counts: Mapping[str, int]) -> None:
        for zone in set(self._zones()) | set(counts):
            self._under.labels(zone).set(counts.get(zone, 0))

    def placement(self, outcome: str) -> None:
        self._placements.labels(outcome).inc()

    def bucket_counts(self, counts: Mapping[str, int]) -> None:
        for zone, n in counts.items():
            self._buckets.labels(zone).set(n)

    def kms_call(self, operation: str, outcome: str) -> None:
        self._kms_calls.labels(operation, outcome).inc()
