"""The coordinator's configuration: one frozen dataclass loaded strictly from TOML.

Example::

    listen = "0.0.0.0:7100"
    metrics_listen = "0.0.0.0:9102"
    data_dir = "/var/lib/onezone/coordinator"
    kms = "kms.internal:7000"
    zones = ["use1-az4"]
    default_zone = "use1-az4"   # where general-purpose buckets go (default: the first of zones)
    replicas = 3
    [tls]
    ca = "certs/ca.pem"
    cert = "certs/coordinator.pem"
    key = "certs/coordinator.key"

Times are seconds (``_s``). ``admin_credentials_file`` defaults to
``<data_dir>/admin-credentials.json`` (see ``admin_credentials_path``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proto.config import Endpoint
from proto.names import InvalidName, validate_zone_id
from proto.settings import DaemonConfig


@dataclass(frozen=True, kw_only=True)
class CoordinatorConfig(DaemonConfig):
    data_dir: Path
    kms: Endpoint
    zones: list[str] = field(default_factory=list)
    default_zone: str | None = None  # general-purpose buckets' zone; None = the first of ``zones``
    replicas: int = 3
    min_replicas: int = 2  # a failed replica leaves its set only while this many copies remain
    heartbeat_interval_s: float = 2.0
    suspect_after_s: float = 6.0
    down_after_s: float = 15.0
    admin_credentials_file: Path | None = None
    iam_secret_cache_s: float = 60.0
    kms_wait_s: float = 30.0
    replace_after_s: float = 300.0       # a node down this long is replaced in its buckets' replica sets
    reconcile_interval_s: float = 2.0    # how often replica sets are checked (replacement, drain)

    def validate(self) -> None:
        super().validate()
        for zone in self.zones:
            try:
                validate_zone_id(zone)
            except InvalidName as e:
                raise ValueError(f"zones: {e.message}") from None
        if len(set(self.zones)) != len(self.zones):
            raise ValueError("zones: duplicate zone id")
        if self.default_zone is not None and self.default_zone not in self.zones:
            raise ValueError("default_zone must be one of zones")
        if not 1 <= self.replicas <= 16:
            raise ValueError("replicas must be between 1 and 16")
        if not 1 <= self.min_replicas <= 16:
            raise ValueError("min_replicas must be between 1 and 16 (1: the operator allows single copies)")
        if not 0 < self.heartbeat_interval_s < self.suspect_after_s < self.down_after_s:
            raise ValueError("need 0 < heartbeat_interval_s < suspect_after_s < down_after_s")
        if self.iam_secret_cache_s < 0:
            raise ValueError("iam_secret_cache_s must be >= 0")
        if self.replace_after_s <= 0 or self.reconcile_interval_s <= 0:
            raise ValueError("replace_after_s and reconcile_interval_s must be > 0")
        if self.kms_wait_s < 0:
            raise ValueError("kms_wait_s must be >= 0")

    @property
    def admin_credentials_path(self) -> Path:
        """Where the bootstrap admin's credentials are written on first start."""
        if self.admin_credentials_file is not None:
            return self.admin_credentials_file
        return self.data_dir / "admin-credentials.json"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "coordinator.sqlite3"
