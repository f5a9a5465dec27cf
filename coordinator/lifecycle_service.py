"""RPC handlers for node lifecycle (docs/rpc.md, "Node lifecycle"): the operator's drain,
activate, remove and status; the primaries' sync reports; unreachable-node hints."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from coordinator.lifecycle import NodeLifecycle
from coordinator.membership import ADMIN_ACTIVE, ADMIN_DRAINING
from coordinator.service import CoordinatorService, _Args
from proto.rpc import Call, Handler

LIFECYCLE_ACL: dict[str, tuple[str, ...]] = {
    "DrainNode": ("admin",),
    "ActivateNode": ("admin",),
    "RemoveNode": ("admin",),
    "ClusterStatus": ("admin", "gateway"),
    "ListNodeAssignments": ("node-*", "admin"),
    "ReportReplicaSynced": ("node-*",),
    "ReportNodeUnreachable": ("gateway", "node-*"),
}


class LifecycleService:
    def __init__(self, lifecycle: NodeLifecycle, zones: Callable[[], set[str]]) -> None:
        self._l = lifecycle
        self._zones = zones

    def handlers(self) -> Mapping[str, Handler]:
        return {method: getattr(self, method) for method in LIFECYCLE_ACL}

    @staticmethod
    def _node(call: Call, *optional: str) -> tuple[_Args, str]:
        a = _Args(call, "InvalidArgument", required=("node_id",), optional=optional)
        return a, a.str("node_id", max_len=64)

    async def DrainNode(self, call: Call) -> dict[str, Any]:
        _, node_id = self._node(call)
        await self._l.set_admin(node_id, ADMIN_DRAINING)
        await self._l.reconcile_once()
        return {}

    async def ActivateNode(self, call: Call) -> dict[str, Any]:
        _, node_id = self._node(call)
        await self._l.set_admin(node_id, ADMIN_ACTIVE)
        return {}

    async def RemoveNode(self, call: Call) -> dict[str, Any]:
        a, node_id = self._node(call, "force")
        return await self._l.remove(node_id, force=bool(a.bool("force")))

    async def ClusterStatus(self, call: Call) -> dict[str, Any]:
        _Args(call, "InvalidArgument")
        return await self._l.status(self._zones())

    async def ListNodeAssignments(self, call: Call) -> dict[str, Any]:
        _, node_id = self._node(call)
        if call.principal != "admin":
            CoordinatorService._own_node(call, node_id)
        return {"buckets": await self._l.assignments(node_id)}

    async def ReportReplicaSynced(self, call: Call) -> dict[str, Any]:
        """From the bucket's primary: its copy to ``node_id`` (the synced replica) is complete."""
        a = _Args(call, "InvalidArgument", required=("node_id", "bucket", "epoch"))
        return await self._l.report_synced(call.principal, a.str("node_id", max_len=64), a.str("bucket", max_len=255),
                                           a.int("epoch", lo=1))

    async def ReportNodeUnreachable(self, call: Call) -> dict[str, Any]:
        """A hint: the caller could not reach ``node_id`` (see ``NodeLifecycle.report_unreachable``)."""
        _, node_id = self._node(call)
        self._l.report_unreachable(node_id)
        return {}
