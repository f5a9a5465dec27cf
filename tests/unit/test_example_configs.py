"""Every example config in ops/ loads with the daemon's strict loader (so a renamed or removed
field cannot leave the documentation behind)."""

from pathlib import Path

import pytest

from coordinator.config import CoordinatorConfig
from gateway.config import GatewayConfig
from kms.config import KmsConfig
from node.config import NodeConfig
from proto.config import load_config_file

OPS = Path(__file__).resolve().parents[2] / "ops"


@pytest.mark.parametrize("name,cls", [("kms", KmsConfig), ("coordinator", CoordinatorConfig),
                                      ("node", NodeConfig), ("gateway", GatewayConfig)])
def test_example_config_loads(name, cls):
    cfg = load_config_file(cls, OPS / f"{name}.example.toml")
    assert cfg.tls.ca.name == "ca.pem"
