"""Configuration of the storage node daemon (``onezone node --config node.toml``).

One frozen, keyword-only dataclass loaded once by ``node.main`` (strict TOML, see
``proto.config``) and passed down; components receive only the values they need.

Example::

    node_id = "node-1"                  # must be the principal of tls.cert
    zone = "use1-az4"
    data_dir = "/var/lib/onezone/node-1"
    coordinator = "10.0.0.2:7200"
    kms = "10.0.0.3:7100"
    listen = "0.0.0.0:7300"
    advertise_host = "10.0.0.11"        # required when listen is a wildcard address
    [tls]
    ca = "certs/ca.pem"
    cert = "certs/node-1.pem"
    key = "certs/node-1.key"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proto.certs import validate_principal
from proto.config import Endpoint
from proto.names import InvalidName, validate_zone_id
from proto.settings import DaemonConfig

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

MIN_CHUNK_BYTES = 1 * KiB
MAX_CHUNK_BYTES = 16 * MiB
_WILDCARDS = ("0.0.0.0", "::")


@dataclass(frozen=True, kw_only=True)
class NodeConfig(DaemonConfig):
    node_id: str
    """This node's id, which is also its principal (the CN of ``tls.cert``), e.g. ``node-1``."""
    zone: str
    """The zone label the node registers in, e.g. ``use1-az4``."""
    data_dir: Path
    """Object index and data files; created (mode 0700) if missing."""
    coordinator: Endpoint
    kms: Endpoint
    advertise_host: str | None = None
    """Host registered with the coordinator; default: the host of ``listen``."""
    capacity_bytes: int = 100 * GiB
    reserve_bytes: int = 64 * MiB
    """Disk space never used for objects; the node is full (refuses writes, is no longer placed on)
    when min(capacity - used, disk free - reserve) is at most 1% of capacity (node/capacity.py)."""
    chunk_bytes: int = 1 * MiB
    """Plaintext bytes per sealed chunk for new objects."""
    key_cache_ttl_s: float = 300.0
    key_cache_max_entries: int = 1024
    kms_poll_interval_s: float = 1.0
    """How often the node asks the KMS which keys were disabled or scheduled for deletion."""
    kms_outage_grace_s: float = 300.0
    """How long cached bucket keys keep serving while the KMS cannot be reached."""
    bucket_cache_ttl_s: float = 30.0
    coordinator_max_stale_s: float = 600.0
    """While the coordinator is unreachable, cached bucket records serve this long past their TTL."""
    heartbeat_interval_s: float = 2.0
    repair_rate_bytes_per_s: float = 50.0 * 1024 * 1024  # replica syncs' copy rate (0: unthrottled)
    scrub_rate_bytes_per_s: float = 4.0 * 1024 * 1024  # background verification rate (0: no scrubbing)
    scrub_pause_s: float = 60.0  # rest between two full passes
    compact_interval_s: float = 30.0  # how often compaction looks for segments to reclaim
    compact_min_garbage_ratio: float = 0.5  # compact a closed log segment once this share is dead
    compact_rate_bytes_per_s: float = 20.0 * 1024 * 1024  # live bytes moved per second at most
    stale_gc_interval_s: float = 60.0
    """How often the node asks the coordinator which bucket copies it holds are still needed
    (node/stale_collector.py); 0 turns the collection of stale copies off."""
    stale_gc_grace_s: float = 600.0
    """A copy is deleted only when found stale at two checks at least this far apart."""
    stale_gc_rate_objects_per_s: float = 1000.0  # index rows of stale copies deleted per second (0: unthrottled)

    def validate(self) -> None:
        super().validate()
        try:
            validate_principal(self.node_id)
        except ValueError as exc:
            raise ValueError(f"node_id: {exc}") from None
        if not self.node_id.startswith("node-"):
            raise ValueError(f"node_id {self.node_id!r} must start with 'node-' (it is the node's principal)")
        try:
            validate_zone_id(self.zone)
        except InvalidName as exc:
            raise ValueError(f"zone: {exc}") from None
        if self.advertise_host is not None:
            Endpoint(self.advertise_host, 0)  # raises ValueError for a malformed host
            if self.advertise_host in _WILDCARDS:
                raise ValueError("advertise_host must be an address other nodes can reach, not a wildcard")
        elif self.listen.host in _WILDCARDS:
            raise ValueError(f"listen host {self.listen.host} is a wildcard: set advertise_host")
        if self.capacity_bytes <= 0:
            raise ValueError("capacity_bytes must be > 0")
        if self.reserve_bytes < 0:
            raise ValueError("reserve_bytes must be >= 0")
        if not MIN_CHUNK_BYTES <= self.chunk_bytes <= MAX_CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be in {MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES}")
        if self.key_cache_ttl_s <= 0 or self.bucket_cache_ttl_s <= 0:
            raise ValueError("key_cache_ttl_s and bucket_cache_ttl_s must be > 0")
        if not 0 < self.kms_poll_interval_s <= 60 or self.kms_outage_grace_s < 0:
            raise ValueError("kms_poll_interval_s must be in (0, 60] and kms_outage_grace_s >= 0")
        if self.key_cache_max_entries < 1:
            raise ValueError("key_cache_max_entries must be >= 1")
        if self.heartbeat_interval_s <= 0:
            raise ValueError("heartbeat_interval_s must be > 0")
        if self.repair_rate_bytes_per_s < 0 or self.scrub_rate_bytes_per_s < 0 or self.scrub_pause_s < 0:
            raise ValueError("repair_rate_bytes_per_s, scrub_rate_bytes_per_s and scrub_pause_s must be >= 0")
        if self.compact_interval_s <= 0 or not 0 < self.compact_min_garbage_ratio <= 1 \
                or self.compact_rate_bytes_per_s < 0:
            raise ValueError("compact_interval_s must be > 0, compact_min_garbage_ratio in (0, 1], "
                             "compact_rate_bytes_per_s >= 0")

        if self.stale_gc_interval_s < 0 or self.stale_gc_grace_s < 0 or self.stale_gc_rate_objects_per_s < 0:
            raise ValueError("stale_gc_interval_s, stale_gc_grace_s and stale_gc_rate_objects_per_s must be >= 0")

    @property
    def advertised_host(self) -> str:
        return self.advertise_host or self.listen.host
