"""Replica-set reconciliation: which change a bucket's replica set needs, if any.

Sans-I/O and deterministic (no clock, no store): ``plan`` takes the bucket's replica set, the
replicas still being copied to (``syncing``) and the membership view, and returns the next
replica set, or None when nothing is to be done. The caller writes it with a new epoch.

Theory of operation
-------------------
A replica is **lost** when its node is removed by the operator, no longer registered, or
``down`` for longer than ``replace_after_s``; it is **draining** when the operator drains its
node. Replacements are chosen by the bucket's rendezvous ranking (``placement.rank`` over the
eligible nodes: up, active, not full), skipping nodes already in the set, so the bucket moves
to exactly the node placement would pick without the lost one: minimal movement.

- Lost replicas are dropped at once (break-before-make: the node is gone, and keeping it would
  block every write), and replacements added, marked ``syncing``. The last replica is never
  dropped: a bucket whose every node is lost keeps its set until one comes back.
- Draining replicas are make-before-break: replacements are added (``syncing``) until the set
  holds R non-draining replicas, and the draining ones are dropped only once no replica is
  syncing any more, so the bucket never has fewer copies than before the drain.
- Survivors keep their order (the primary stays primary unless it leaves or fails); newcomers
  go last.
- **Primary failover**: when the primary is ``down`` (or ``suspect`` and reported unreachable
  by a gateway or a node: ``suspects``), or was dropped, the first live (``up``, else
  ``suspect``) replica that is not syncing, preferably not draining, moves to the front, in the
  same new epoch. A syncing replica is never promoted: it may lack objects. When no in-sync
  replica is live, the set is left as it is (a dropped primary is replaced by the first in-sync
  survivor, live or not), and when no in-sync replica is left at all nothing is done.

The bucket's primary reports a replica synced (``ReportReplicaSynced``) once its copy to it
(``SyncReplica``) is complete; a bucket is **under-replicated** while fewer than R of its
replicas are live (up or suspect), not draining and not syncing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from coordinator import placement
from coordinator.membership import ADMIN_DRAINING, ADMIN_REMOVED, NodeState, NodeView


@dataclass(frozen=True, slots=True)
class Change:
    replicas: tuple[str, ...]
    syncing: tuple[str, ...]
    added: tuple[str, ...]
    dropped: tuple[str, ...]
    reason: str  # "replace_lost", "drain", "drain_done", "failover", "refill"


def lost(node_id: str, nodes: Mapping[str, NodeView], replace_after_s: float) -> bool:
    v = nodes.get(node_id)
    if v is None or v.admin == ADMIN_REMOVED:
        return True
    return v.state is NodeState.DOWN and v.age_s > replace_after_s


def healthy_count(replicas: Iterable[str], syncing: Iterable[str], nodes: Mapping[str, NodeView]) -> int:
    """Replicas that count as copies: live (up/suspect), not draining, not syncing."""
    busy = set(syncing)
    return sum(1 for r in replicas if r not in busy and r in nodes
               and nodes[r].state is not NodeState.DOWN and nodes[r].admin not in (ADMIN_DRAINING, ADMIN_REMOVED))


def failed_primary(node_id: str, nodes: Mapping[str, NodeView], suspects: Collection[str] = ()) -> bool:
    """Whether a primary must hand over: gone, ``down``, or ``suspect`` and reported unreachable."""
    v = nodes.get(node_id)
    if v is None or v.admin == ADMIN_REMOVED or v.state is NodeState.DOWN:
        return True
    return v.state is NodeState.SUSPECT and node_id in suspects


def _promotable(candidates: list[str], nodes: Mapping[str, NodeView]) -> str | None:
    """The best live candidate: up before suspect, active before draining; None if none is live."""
    def rank(r: str) -> tuple[int, int]:
        v = nodes[r]
        return (0 if v.state is NodeState.UP else 1, 1 if v.admin == ADMIN_DRAINING else 0)
    live = [r for r in candidates if r in nodes and nodes[r].state is not NodeState.DOWN]
    return min(live, key=lambda r: (rank(r), candidates.index(r))) if live else None


def plan(name: str, zone: str, replicas: tuple[str, ...], syncing: tuple[str, ...], *, want: int,
         views: Iterable[NodeView], replace_after_s: float, suspects: Collection[str] = ()) -> Change | None:
    """The next replica set of bucket ``name`` (see the module docstring), or None."""
    nodes = {v.node.node_id: v for v in views}
    current = list(replicas)
    keep = [r for r in current if not lost(r, nodes, replace_after_s)]
    in_sync = [r for r in keep if r not in syncing]
    if not in_sync:
        return None  # no complete copy is left or reachable: nothing to copy from, nothing to promote
    dropped = [r for r in current if r not in keep]
    reason = "replace_lost" if dropped else ""
    # failover: the primary must be a live replica holding every object
    head = current[0]
    if head not in keep or failed_primary(head, nodes, suspects):
        pick = _promotable(in_sync, nodes)
        if pick is None and head not in keep:
            pick = in_sync[0]
        if pick is not None and pick != keep[0]:
            keep = [pick] + [r for r in keep if r != pick]
            reason = reason or "failover"
    draining = [r for r in keep if nodes[r].admin == ADMIN_DRAINING]
    active = [r for r in keep if r not in draining]
    ranked = [n for n in placement.rank(name, placement.candidates(nodes.values(), zone)) if n not in keep]
    added = ranked[:max(0, want - len(active))]
    new_syncing = [r for r in syncing if r in keep] + added
    new = keep + added
    if added and not reason:
        reason = "drain" if draining else "refill"
    if draining and not new_syncing and len(active) + len(added) >= want:
        new = [r for r in new if r not in draining]
        dropped += draining
        reason = reason or "drain_done"
    if tuple(new) == tuple(current) and tuple(new_syncing) == tuple(syncing):
        return None
    return Change(tuple(new), tuple(new_syncing), tuple(added), tuple(dropped), reason or "sync")
