"""Node registry: the membership state machine plus persistence, clock and logging.

Registrations are persisted (so buckets' replica addresses survive a coordinator restart);
heartbeats live in memory only (see ``coordinator.membership`` for the restart grace).
``watch`` runs for the daemon's life and logs the transitions time causes (up -> suspect ->
down), each once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from coordinator.membership import ADMIN_REMOVED, Membership, Node, NodeState, Transition, UnknownNode, ZoneChange
from coordinator.store import NodeRecord, SqliteStore
from proto.errors import AccessDenied, InvalidRequest, NotFound

log = logging.getLogger(__name__)


class NodeRegistry:
    def __init__(self, *, store: SqliteStore, membership: Membership, clock: Callable[[], float]) -> None:
        self._store = store
        self.membership = membership
        self._clock = clock
        self._lock = trio.Lock()

    async def load(self) -> int:
        """Load the persisted registrations; returns how many nodes are known."""
        records = await trio.to_thread.run_sync(self._store.list_nodes)
        now = self._clock()
        for r in records:
            self.membership.load(Node(node_id=r.node_id, zone=r.zone, host=r.host, port=r.port,
                                      capacity_bytes=r.capacity_bytes, free_bytes=r.free_bytes,
                                      used_bytes=r.used_bytes, registered=r.registered,
                                      last_heartbeat=now), now)
        return len(records)

    async def register(self, *, node_id: str, zone: str, host: str, port: int,
                       capacity_bytes: int, free_bytes: int) -> None:
        if self.membership.admin(node_id) == ADMIN_REMOVED:
            raise AccessDenied(f"node {node_id} was removed from the cluster; an operator must "
                               "activate it again (onezone admin node activate)", kind="NodeRemoved")
        async with self._lock:
            old = self.membership.get(node_id)
            if old is not None and old.zone != zone:
                raise InvalidRequest(f"node {node_id} is registered in zone {old.zone}; a node cannot "
                                     f"change zone (got {zone})", kind="InvalidArgument")
            now = self._clock()
            record = NodeRecord(node_id=node_id, zone=zone, host=host, port=port,
                                capacity_bytes=capacity_bytes, free_bytes=free_bytes,
                                used_bytes=old.used_bytes if old else 0,
                                registered=old.registered if old else now)
            await trio.to_thread.run_sync(self._store.put_node, record)
            try:
                _, transition = self.membership.register(
                    node_id=node_id, zone=zone, host=host, port=port, capacity_bytes=capacity_bytes,
                    free_bytes=free_bytes, used_bytes=record.used_bytes, now=now)
            except ZoneChange as exc:  # cannot happen under the lock; kept for safety
                raise InvalidRequest(str(exc), kind="InvalidArgument") from None
        moved = old is not None and (old.host, old.port) != (host, port)
        log.info("event=node_registered node=%s zone=%s addr=%s:%d capacity_bytes=%d free_bytes=%d%s",
                 node_id, zone, host, port, capacity_bytes, free_bytes,
                 f" previous_addr={old.host}:{old.port}" if moved else "")
        if transition is not None and transition.old is not None:
            _log_transition(transition)

    def heartbeat(self, node_id: str, *, free_bytes: int, used_bytes: int) -> None:
        try:
            transition = self.membership.heartbeat(node_id, free_bytes=free_bytes, used_bytes=used_bytes,
                                                   now=self._clock())
        except UnknownNode:
            raise NotFound(f"node {node_id} is not registered: register again",
                           kind="UnknownNode") from None
        if transition is not None:
            _log_transition(transition)

    def list_nodes(self, zone: str | None = None) -> list[dict[str, Any]]:
        return [{"node_id": v.node.node_id, "zone": v.node.zone, "host": v.node.host, "port": v.node.port,
                 "state": v.state.value, "capacity_bytes": v.node.capacity_bytes,
                 "free_bytes": v.node.free_bytes, "last_heartbeat": v.node.last_heartbeat}
                for v in self.membership.view(self._clock(), zone=zone)]

    async def watch(self, interval_s: float) -> None:
        """Log state changes caused by missing heartbeats, until cancelled."""
        while True:
            for transition in self.membership.observe(self._clock()):
                _log_transition(transition)
            await trio.sleep(interval_s)


def _log_transition(t: Transition) -> None:
    level = logging.INFO if t.new is NodeState.UP else logging.WARNING
    log.log(level, "event=node_state node=%s from=%s to=%s", t.node_id,
            t.old.value if t.old else "-", t.new.value)
