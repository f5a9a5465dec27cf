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
- Survivors keep their order (the primary stays primary unless it leaves); newcomers go last,
  so a syncing replica is never the primary (unless nothing else is left).

A node reports a replica synced (``ReportReplicaSynced``) once it holds the bucket's data; a
bucket is **under-replicated** while fewer than R of its replicas are live (up or suspect),
not draining and not syncing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coordinator import placement
from coordinator.membership import ADMIN_DRAINING, ADMIN_REMOVED, NodeState, NodeView


@dataclass(frozen=True, slots=True)
class Change:
    replicas: tuple[str, ...]
    syncing: tuple[str, ...]
    added: tuple[str, ...]
    dropped: tuple[str, ...]
    reason: str  # "replace_lost", "drain", "drain_done"


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


def plan(name: str, zone: str, replicas: tuple[str, ...], syncing: tuple[str, ...], *, want: int,
         views: Iterable[NodeView], replace_after_s: float) -> Change | None:
    """The next replica set of bucket ``name`` (see the module docstring), or None."""
    nodes = {v.node.node_id: v for v in views}
    current = list(replicas)
    keep = [r for r in current if not lost(r, nodes, replace_after_s)]
    if not keep:
        return None  # every copy is gone or unreachable for good: nothing to copy from
    dropped = [r for r in current if r not in keep]
    draining = [r for r in keep if nodes[r].admin == ADMIN_DRAINING]
    active = [r for r in keep if r not in draining]
    ranked = [n for n in placement.rank(name, placement.candidates(nodes.values(), zone)) if n not in keep]
    added = ranked[:max(0, want - len(active))]
    new_syncing = [r for r in syncing if r in keep] + added
    new = keep + added
    reason = "replace_lost" if dropped else "drain" if added else ""
    if draining and not new_syncing and len(active) + len(added) >= want:
        new = [r for r in new if r not in draining]
        dropped += draining
        reason = reason or "drain_done"
    if tuple(new) == tuple(current) and tuple(new_syncing) == tuple(syncing):
        return None
    return Change(tuple(new), tuple(new_syncing), tuple(added), tuple(dropped), reason or "sync")
