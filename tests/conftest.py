"""Shared fixtures: a cluster CA with certificates for every principal, as TlsConfig objects."""

from pathlib import Path

import pytest

from proto.settings import TlsConfig

PRINCIPALS = ["kms", "coordinator", "gateway", "admin", "node-1", "node-2", "node-3", "node-4", "intruder"]


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory) -> Path:
    from proto.certs import write_cluster_certs

    d = tmp_path_factory.mktemp("certs")
    write_cluster_certs(d, PRINCIPALS)
    return d


@pytest.fixture(scope="session")
def tls_for(certs_dir):
    """tls_for("node-1") -> TlsConfig with that principal's certificate."""

    def make(name: str) -> TlsConfig:
        return TlsConfig(ca=certs_dir / "ca.pem", cert=certs_dir / f"{name}.pem", key=certs_dir / f"{name}.key")

    return make
