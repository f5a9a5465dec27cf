"""Configuration fields every daemon shares, and the TLS files they point to.

Each daemon's config dataclass inherits ``DaemonConfig`` (keyword-only, frozen) and adds its own
fields; ``proto.config`` loads it strictly from TOML. ``TlsConfig`` turns the three PEM paths
into ssl contexts for serving and for calling other daemons (mutual TLS, cluster CA).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from proto.config import Endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        from proto.certs import server_context

        return server_context(self.cert, self.key, self.ca)

    def client_context(self) -> ssl.SSLContext:
        from proto.certs import client_context

        return client_context(self.cert, self.key, self.ca)


@dataclass(frozen=True, kw_only=True)
class DaemonConfig:
    listen: Endpoint = Endpoint("127.0.0.1", 0)
    metrics_listen: Endpoint = Endpoint("127.0.0.1", 0)
    region: str = "us-east-1"
    account_id: str = "000000000000"
    grace_s: float = 5.0
    rpc_timeout_s: float = 10.0
    log_json: bool = False
    log_level: str = "INFO"
    tls: TlsConfig

    def validate(self) -> None:
        if not (self.account_id.isdigit() and len(self.account_id) == 12):
            raise ValueError("account_id must be 12 digits")
        if self.grace_s < 0 or self.rpc_timeout_s <= 0:
            raise ValueError("grace_s must be >= 0 and rpc_timeout_s > 0")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("log_level must be DEBUG, INFO, WARNING or ERROR")
