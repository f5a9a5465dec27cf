"""The gateway's configuration (one frozen object, loaded strictly from TOML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proto.config import Endpoint
from proto.settings import DaemonConfig

GiB = 1024 ** 3


@dataclass(frozen=True, kw_only=True)
class GatewayConfig(DaemonConfig):
    listen: Endpoint = Endpoint("127.0.0.1", 9000)
    coordinator: Endpoint
    kms: Endpoint
    session_key_file: Path
    session_ttl_s: int = 300
    # host names the gateway answers to (virtual-host addressing: <bucket>.<host>)
    hostnames: list[str] = field(default_factory=lambda: ["localhost"])
    https_cert: Path | None = None  # serve HTTPS when both are set
    https_key: Path | None = None
    max_header_bytes: int = 64 * 1024
    max_xml_bytes: int = 1024 * 1024
    max_object_bytes: int = 5 * GiB
    idle_timeout_s: float = 60.0
    auth_cache_s: float = 30.0
    bucket_cache_s: float = 5.0
    # coordinator outage: serve cached credentials and bucket records up to this much past
    # their TTL (0 = never serve stale)
    coordinator_max_stale_s: float = 600.0
    max_clock_skew_s: int = 900
    # S3 audit log (CloudTrail-shaped JSON lines); none when unset. Rotated by size.
    audit_log: Path | None = None
    audit_max_bytes: int = 64 * 1024 * 1024
    audit_keep: int = 5
    # per-bucket metrics: this many buckets (by traffic) keep their own label, the rest are "other"
    metrics_top_buckets: int = 10

    def validate(self) -> None:
        DaemonConfig.validate(self)
        if not 60 <= self.session_ttl_s <= 36 * 3600:
            raise ValueError("session_ttl_s must be between 60 and 129600")
        if self.coordinator_max_stale_s < 0:
            raise ValueError("coordinator_max_stale_s must be >= 0")
        if self.audit_max_bytes < 4096 or not 1 <= self.audit_keep <= 1000:
            raise ValueError("audit_max_bytes must be >= 4096 and audit_keep between 1 and 1000")
        if not 0 <= self.metrics_top_buckets <= 1000:
            raise ValueError("metrics_top_buckets must be between 0 and 1000")
        if (self.https_cert is None) != (self.https_key is None):
            raise ValueError("https_cert and https_key go together")
