"""The node's Prometheus metrics, on the daemon's own registry (``proto.metrics.Metrics``).

The bucket-key cache registers its own four metrics (``node.keycache``); the disk and object
gauges read the store's counters at scrape time (``bind_store``), so they cost nothing per
request.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REPLICATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class NodeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.registry = reg
        self.chunks_written = Counter("onezone_node_chunks_written", "Sealed chunks written to local data files.",
                                      registry=reg)
        self.renames = Counter("onezone_node_renames", "RenameObject calls applied (primary side): index "
                               "entries moved, no data rewritten.", registry=reg)
        self.appends = Counter("onezone_node_appends", "Appends (PutObject with a write offset) committed "
                               "(primary side).", registry=reg)
        self.chunks_read = Counter("onezone_node_chunks_read", "Sealed chunks read and opened.", registry=reg)
        self.replication_duration = Histogram(
            "onezone_node_replication_duration_seconds",
            "Time a write waits for its replicas once its body has ended: until every replica has "
            "received the rest and committed (primary side).",
            buckets=REPLICATION_BUCKETS, registry=reg)
        self.replication_failures = Counter(
            "onezone_node_replication_failures", "Replica calls (ReplicaPut/ReplicaDelete) that failed.",
            registry=reg)
        self.integrity_failures = Counter(
            "onezone_node_integrity_failures", "Chunks that failed authentication or their checksum on read.",
            registry=reg)
        self.disk_used = Gauge("onezone_node_disk_used_bytes", "Bytes of object data files on this node.",
                               registry=reg)
        self.disk_free = Gauge("onezone_node_disk_free_bytes",
                               "Bytes this node may still use: min(capacity - used, disk free - reserve_bytes) "
                               "(node/capacity.py).",
                               registry=reg)
        self.objects = Gauge("onezone_node_objects", "Objects in this node's index.", registry=reg)
        self.no_space_errors = Gauge("onezone_node_no_space_errors",
                                     "Writes that failed because the disk was really full (ENOSPC) since "
                                     "the node started.", registry=reg)
        self.repair_running = Gauge("onezone_node_repair_running", "Replica syncs (repairs) in progress.",
                                    registry=reg)
        self.repair_keys = Counter("onezone_node_repair_keys", "Keys compared by replica syncs.", registry=reg)
        self.repair_bytes = Counter("onezone_node_repair_bytes", "Sealed bytes copied to replicas by syncs "
                                    "and read repairs.", registry=reg)
        self.read_repairs = Counter("onezone_node_read_repairs", "Damaged local copies replaced with a "
                                    "replica's (on read or by the scrubber).", registry=reg)
        self.scrub_bytes = Counter("onezone_node_scrub_bytes", "Bytes the scrubber verified.", registry=reg)
        self.scrub_bad = Counter("onezone_node_scrub_bad_extents", "Extents (object versions, or runs of appended "
                                 "objects) whose stored bytes failed their crc32 in the scrubber.", registry=reg)
        self.repair_failures = Counter("onezone_node_repair_failures", "Replica syncs that stopped on an error.",
                                       registry=reg)
        self.compaction_reclaimed = Counter("onezone_node_compaction_reclaimed_bytes",
                                            "Bytes of deleted or overwritten data reclaimed.", registry=reg)
        self.compaction_pending = Gauge("onezone_node_compaction_pending_bytes",
                                        "Bytes of dead data in closed log segments, at the last compaction pass.",
                                        registry=reg)

    def bind_store(self, *, used: Callable[[], int], free: Callable[[], int], objects: Callable[[], int],
                   no_space: Callable[[], int] = lambda: 0) -> None:
        self.no_space_errors.set_function(no_space)
        self.disk_used.set_function(used)
        self.disk_free.set_function(free)
        self.objects.set_function(objects)
