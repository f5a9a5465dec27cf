"""Placement: which nodes of a zone hold a bucket's replicas.

Sans-I/O and deterministic: the same key and the same candidate nodes always give the same
answer, on any machine (the hash is BLAKE2b, not Python's salted ``hash``).

Theory of operation
-------------------
Capacity-weighted rendezvous hashing (highest random weight; Ceph calls it "straw2"). For a
key ``k`` and a node ``n`` of weight ``w`` (its capacity in bytes), draw ``u`` uniformly in
(0, 1) from ``BLAKE2b(k, n)`` and score the node ``w / -ln(u)``; the nodes with the R highest
scores hold the key, the best first (the primary). ``-ln(u) / w`` is an exponential variable
of rate ``w``, so the first pick is node ``n`` with probability ``w / sum(w)``.

Why this scheme: a node's score depends only on the key and on that node, so when a node
leaves, only the keys that had it move (each to the next-best node), and when a node joins it
takes only the keys it now wins; nothing else is reshuffled. No table has to be built,
stored or agreed upon.

Known limit: picking R > 1 distinct nodes flattens the shares when capacities differ a lot in
a small zone (a node cannot hold two replicas of one bucket, so very large nodes get somewhat
less than their capacity share and small ones somewhat more: the "multi-pick anomaly"). With
capacities within 1.5x of each other (6 nodes, R = 3) shares stay within ~7% of the capacity
share; at 3x the largest node gets ~10% less than its share. Correcting that would need
weights computed from the whole zone, which would break the minimal-movement property.

Only live nodes are candidates: a node must be ``up`` (not suspect, not down), active (not
draining or removed by the operator) and not full
(free space below ``min_free_ratio`` of its capacity). Fewer candidates than R is an error,
never a silently smaller replica set.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from coordinator.membership import ADMIN_ACTIVE, NodeState, NodeView

DEFAULT_MIN_FREE_RATIO = 0.01


class InsufficientNodes(Exception):
    """Fewer eligible nodes than replicas requested."""

    def __init__(self, have: int, need: int) -> None:
        super().__init__(f"{have} eligible node(s), {need} needed")
        self.have = have
        self.need = need


@dataclass(frozen=True, slots=True)
class Candidate:
    node_id: str
    weight: float


def is_full(capacity_bytes: int, free_bytes: int, min_free_ratio: float = DEFAULT_MIN_FREE_RATIO) -> bool:
    return capacity_bytes <= 0 or free_bytes <= capacity_bytes * min_free_ratio


def candidates(views: Iterable[NodeView], zone: str, *,
               min_free_ratio: float = DEFAULT_MIN_FREE_RATIO) -> list[Candidate]:
    """The nodes of ``zone`` that may receive new replicas: up, active (not draining or
    removed) and not full."""
    return [Candidate(v.node.node_id, float(v.node.capacity_bytes)) for v in views
            if v.node.zone == zone and v.state is NodeState.UP and v.admin == ADMIN_ACTIVE
            and not is_full(v.node.capacity_bytes, v.node.free_bytes, min_free_ratio)]


def score(key: str, node_id: str, weight: float) -> float:
    """The rendezvous score of ``node_id`` for ``key`` (higher wins)."""
    digest = hashlib.blake2b(key.encode() + b"\x00" + node_id.encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 0.5) / 2.0**64  # strictly inside (0, 1)
    return weight / -math.log(u)


def rank(key: str, nodes: Sequence[Candidate]) -> list[str]:
    """Every candidate's node id, best first (ties, which need equal scores, by node id)."""
    if len({c.node_id for c in nodes}) != len(nodes):
        raise ValueError("duplicate node ids among candidates")
    scored = sorted(nodes, key=lambda c: (-score(key, c.node_id, c.weight), c.node_id))
    return [c.node_id for c in scored if c.weight > 0]


def place(key: str, nodes: Sequence[Candidate], replicas: int) -> tuple[str, ...]:
    """The ``replicas`` distinct nodes that hold ``key``, primary first.

    Args:
        key: what is placed (the bucket name).
        nodes: the eligible nodes (see ``candidates``).
        replicas: how many distinct nodes (R >= 1).

    Returns:
        R node ids.

    Raises:
        InsufficientNodes: fewer than R nodes of positive weight.
    """
    if replicas < 1:
        raise ValueError("replicas must be >= 1")
    ranked = rank(key, nodes)
    if len(ranked) < replicas:
        raise InsufficientNodes(len(ranked), replicas)
    return tuple(ranked[:replicas])
