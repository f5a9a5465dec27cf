"""docs/metrics.md names every metric every daemon registers (and names no metric that is gone)."""

import re
from pathlib import Path

from coordinator.membership import Membership
from coordinator.metrics import CoordinatorMetrics
from gateway.metrics import GatewayMetrics
from kms.handlers import KmsMetrics
from node.keycache import BucketKeyCache
from node.metrics import NodeMetrics
from node.stale_collector import StaleGcMetrics
from proto.metrics import Metrics

DOC = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"


async def _unwrap(wrapped: bytes, arn: str) -> bytes:
    return b"\0" * 32


def _registered() -> set[str]:
    names = set()
    for daemon in ("gateway", "node", "kms", "coordinator"):
        m = Metrics(daemon)
        if daemon == "gateway":
            GatewayMetrics(m)
        elif daemon == "node":
            NodeMetrics(m.registry)
            StaleGcMetrics(m.registry)
            BucketKeyCache(_unwrap, ttl_s=1, max_entries=1, registry=m.registry)
        elif daemon == "kms":
            KmsMetrics(m.registry)
        else:
            CoordinatorMetrics(m, Membership(suspect_after_s=5, down_after_s=10), lambda: 0.0, lambda: ["z"])
        for family in m.registry.collect():
            if family.name.startswith("process_"):
                continue
            suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
            names.add(family.name + suffix)
    return names


def test_every_metric_is_documented():
    documented = set(re.findall(r"`(onezone_[a-z0-9_]+)`", DOC.read_text()))
    registered = _registered()
    assert registered - documented == set(), "undocumented metrics"
    assert documented - registered == set(), "documented metrics that no daemon registers"
