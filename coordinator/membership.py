"""Node membership: who is registered, where they listen, and whether they are alive.

Sans-I/O: no clock, no sockets, no logging. Every method that depends on time takes ``now``
(seconds, the same clock as the heartbeats), so tests drive it with plain numbers.

Theory of operation
-------------------
A node is keyed by its ``node_id`` (its certificate principal); its zone is fixed at first
registration, its address and capacity may change on every re-registration (a node restarted
on a new port). A node's state is a pure function of the age of its last heartbeat::

    age <= suspect_after_s                 -> up
    suspect_after_s < age <= down_after_s  -> suspect
    age > down_after_s                     -> down

A registration counts as a heartbeat. ``observe(now)`` compares every node's current state
with the one last reported and returns the ``Transition``s, so the daemon can log them and act
on them; heartbeats and registrations report their own transitions (e.g. down -> up) at once.

Independently of liveness, the operator sets an administrative state (``ADMIN_ACTIVE``,
``ADMIN_DRAINING``, ``ADMIN_REMOVED``): a draining or removed node is never given new
replicas, and the lifecycle reconciler moves its replicas off (``coordinator.reconcile``).

Nodes loaded from the store after a coordinator restart are given ``now`` as their last
heartbeat: the coordinator cannot know what happened while it was away, so every node gets
``suspect_after_s`` to show up before it is considered suspect.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class NodeState(enum.StrEnum):
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


ADMIN_ACTIVE = "active"
ADMIN_DRAINING = "draining"
ADMIN_REMOVED = "removed"


class UnknownNode(LookupError):
    """A heartbeat from a node that never registered."""


class ZoneChange(ValueError):
    """A node tried to re-register in another zone than the one it joined."""


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    zone: str
    host: str
    port: int
    capacity_bytes: int
    free_bytes: int
    used_bytes: int
    registered: float
    last_heartbeat: float


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node together with its state at some ``now``."""

    node: Node
    state: NodeState
    age_s: float
    admin: str = ADMIN_ACTIVE


@dataclass(frozen=True, slots=True)
class Transition:
    node_id: str
    old: NodeState | None  # None: first registration
    new: NodeState


class Membership:
    def __init__(self, *, suspect_after_s: float, down_after_s: float) -> None:
        if not 0 < suspect_after_s < down_after_s:
            raise ValueError("need 0 < suspect_after_s < down_after_s")
        self.suspect_after_s = suspect_after_s
        self.down_after_s = down_after_s
        self._nodes: dict[str, Node] = {}
        self._reported: dict[str, NodeState] = {}
        self._admin: dict[str, str] = {}

    # -- state -----------------------------------------------------------------------------
    def state_at(self, node: Node, now: float) -> NodeState:
        age = now - node.last_heartbeat
        if age <= self.suspect_after_s:
            return NodeState.UP
        if age <= self.down_after_s:
            return NodeState.SUSPECT
        return NodeState.DOWN

    def get(self, node_id: str) -> Node | None:
        return self._nodes.get(node_id)

    def view(self, now: float, *, zone: str | None = None) -> list[NodeView]:
        """Every node (of ``zone`` if given) with its state at ``now``, by node id."""
        return [NodeView(n, self.state_at(n, now), max(0.0, now - n.last_heartbeat),
                         self._admin.get(n.node_id, ADMIN_ACTIVE))
                for _, n in sorted(self._nodes.items()) if zone is None or n.zone == zone]

    def admin(self, node_id: str) -> str:
        return self._admin.get(node_id, ADMIN_ACTIVE)

    def set_admin(self, node_id: str, state: str) -> None:
        """Set the administrative state (also for a node not registered (yet): a removed one)."""
        if state not in (ADMIN_ACTIVE, ADMIN_DRAINING, ADMIN_REMOVED):
            raise ValueError(f"unknown admin state {state!r}")
        if state == ADMIN_ACTIVE:
            self._admin.pop(node_id, None)
        else:
            self._admin[node_id] = state

    def forget(self, node_id: str) -> None:
        """Drop a node's registration (its admin state stays)."""
        self._nodes.pop(node_id, None)
        self._reported.pop(node_id, None)

    def zones(self) -> set[str]:
        return {n.zone for n in self._nodes.values()}

    # -- events ----------------------------------------------------------------------------
    def load(self, node: Node, now: float) -> None:
        """Add a node known from persistent state (restart grace: heartbeat = ``now``)."""
        self._nodes[node.node_id] = replace(node, last_heartbeat=now)
        self._reported[node.node_id] = NodeState.UP

    def register(self, *, node_id: str, zone: str, host: str, port: int, capacity_bytes: int,
                 free_bytes: int, used_bytes: int, now: float) -> tuple[Node, Transition | None]:
        """Add or refresh a node; its address and capacity may change, its zone may not.

        Returns:
            The node as now recorded and the state transition, if any.

        Raises:
            ZoneChange: the node is known in another zone.
        """
        old = self._nodes.get(node_id)
        if old is not None and old.zone != zone:
            raise ZoneChange(f"node {node_id} is registered in zone {old.zone}, not {zone}")
        node = Node(node_id=node_id, zone=zone, host=host, port=port, capacity_bytes=capacity_bytes,
                    free_bytes=free_bytes, used_bytes=used_bytes,
                    registered=now if old is None else old.registered, last_heartbeat=now)
        self._nodes[node_id] = node
        return node, self._report(node_id, NodeState.UP)

    def heartbeat(self, node_id: str, *, free_bytes: int, used_bytes: int, now: float) -> Transition | None:
        """Record a heartbeat; returns the transition (e.g. suspect -> up) if any.

        Raises:
            UnknownNode: the node never registered (it must register again).
        """
        node = self._nodes.get(node_id)
        if node is None:
            raise UnknownNode(node_id)
        self._nodes[node_id] = replace(node, free_bytes=free_bytes, used_bytes=used_bytes,
                                       last_heartbeat=max(node.last_heartbeat, now))
        return self._report(node_id, NodeState.UP)

    def observe(self, now: float) -> list[Transition]:
        """Transitions since the last report, caused by time passing (up -> suspect -> down)."""
        out = []
        for node_id, node in sorted(self._nodes.items()):
            t = self._report(node_id, self.state_at(node, now))
            if t is not None:
                out.append(t)
        return out

    def _report(self, node_id: str, state: NodeState) -> Transition | None:
        old = self._reported.get(node_id)
        self._reported[node_id] = state
        return None if old is state else Transition(node_id, old, state)
