"""Configuration of the KMS daemon (``onezone kms --config kms.toml``).

One frozen, keyword-only dataclass loaded once by ``kms.main`` (strict TOML, see
``proto.config``) and passed down. The root key that protects master key material at rest
comes from exactly one of ``root_key_file`` (a file of mode 0600 holding 64 hex characters
or base64 of 32 bytes) or ``root_key_env`` (the name of an environment variable holding the
same); it is never given inline.

Example::

    listen = "127.0.0.1:7100"
    metrics_listen = "127.0.0.1:7101"
    data_dir = "/var/lib/onezone/kms"
    root_key_file = "/etc/onezone/kms-root.key"
    [tls]
    ca = "certs/ca.pem"
    cert = "certs/kms.pem"
    key = "certs/kms.key"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from proto.settings import DaemonConfig

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, kw_only=True)
class KmsConfig(DaemonConfig):
    data_dir: Path
    """Directory of ``keys.json`` (the keystore); created (mode 0700) if missing."""
    root_key_file: Path | None = None
    """File holding the root key; must not be readable by group or others."""
    root_key_env: str | None = None
    """Name of an environment variable holding the root key (instead of a file)."""
    audit_log: Path | None = None
    """CloudTrail-shaped JSON-lines audit log; default ``data_dir/audit.jsonl``."""
    maintenance_interval_s: float = 30.0
    """How often the background task deletes keys whose window ended and rotates due keys."""

    def validate(self) -> None:
        super().validate()
        if (self.root_key_file is None) == (self.root_key_env is None):
            raise ValueError("exactly one of root_key_file and root_key_env must be set")
        if self.root_key_env is not None and not _ENV_NAME.fullmatch(self.root_key_env):
            raise ValueError(f"root_key_env {self.root_key_env!r} is not a valid environment variable name")
        if not 0 < self.maintenance_interval_s <= 3600:
            raise ValueError("maintenance_interval_s must be in (0, 3600]")

    @property
    def audit_log_path(self) -> Path:
        return self.audit_log if self.audit_log is not None else self.data_dir / "audit.jsonl"
