"""Placement: deterministic, live nodes of the zone only, capacity-weighted, minimal movement."""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.membership import Node, NodeState, NodeView
from coordinator.placement import (
    Candidate,
    InsufficientNodes,
    candidates,
    is_full,
    place,
    rank,
    score,
)

TB = 10**12
BUCKETS = [f"b{i}--use1-az4--x-s3" for i in range(1000)]


def nodes(*caps):
    return [Candidate(f"node-{i + 1}", c * TB) for i, c in enumerate(caps)]


def view(node_id, zone="use1-az4", state=NodeState.UP, capacity=TB, free=TB // 2):
    node = Node(node_id=node_id, zone=zone, host="10.0.0.1", port=7000, capacity_bytes=capacity,
                free_bytes=free, used_bytes=capacity - free, registered=0.0, last_heartbeat=0.0)
    return NodeView(node, state, 0.0)


def test_deterministic_and_independent_of_candidate_order():
    six = nodes(1, 2, 3, 1, 2, 3)
    first = [place(b, six, 3) for b in BUCKETS[:200]]
    again = [place(b, list(reversed(six)), 3) for b in BUCKETS[:200]]
    assert first == again
    assert all(len(set(p)) == 3 for p in first)


def test_golden_values():
    # The hash is BLAKE2b, not Python's salted hash(): these never change between runs or
    # machines. A change here means every future placement moved: do it on purpose only.
    assert score("logs--use1-az4--x-s3", "node-1", 1.0) == pytest.approx(0.8404721351086991, rel=1e-12)
    equal = nodes(1, 1, 1, 1, 1, 1)
    assert [place(f"b{i}--use1-az4--x-s3", equal, 3) for i in range(3)] == [
        ("node-1", "node-3", "node-5"), ("node-2", "node-6", "node-3"), ("node-6", "node-4", "node-5")]


def test_only_up_not_full_nodes_of_the_zone_are_candidates():
    views = [
        view("node-1"), view("node-2"), view("node-3", state=NodeState.SUSPECT),
        view("node-4", state=NodeState.DOWN), view("node-5", zone="use1-az5"),
        view("node-6", free=0), view("node-7", capacity=TB, free=TB // 200), view("node-8", capacity=0, free=0),
    ]
    assert [c.node_id for c in candidates(views, "use1-az4")] == ["node-1", "node-2"]
    assert [c.node_id for c in candidates(views, "use1-az5")] == ["node-5"]
    assert is_full(100, 1) and is_full(0, 0) and not is_full(100, 50)


def test_fewer_live_nodes_than_replicas_is_an_error():
    with pytest.raises(InsufficientNodes) as info:
        place("x--use1-az4--x-s3", nodes(1, 1), 3)
    assert (info.value.have, info.value.need) == (2, 3)
    with pytest.raises(InsufficientNodes):
        place("x--use1-az4--x-s3", [Candidate("node-9", 0.0), *nodes(1, 1)], 3)
    assert len(place("x--use1-az4--x-s3", nodes(1, 1, 1), 3)) == 3
    with pytest.raises(ValueError):
        rank("x", [Candidate("node-1", 1.0), Candidate("node-1", 2.0)])


@pytest.mark.parametrize("caps", [(1, 1, 1, 1, 1, 1), (4, 4, 5, 5, 6, 6), (6, 5, 4, 6, 5, 4)])
def test_replicas_follow_capacity_within_ten_percent(caps):
    six = nodes(*caps)
    held = Counter(n for b in BUCKETS for n in place(b, six, 3))
    total = sum(caps)
    for c in six:
        share = held[c.node_id] / (3 * len(BUCKETS))
        expected = c.weight / TB / total
        assert abs(share - expected) <= 0.10 * expected, (c.node_id, share, expected)


def test_primary_share_follows_capacity():
    three = nodes(1, 2, 3)
    primaries = Counter(place(b, three, 1)[0] for b in BUCKETS)
    assert primaries["node-1"] < primaries["node-2"] < primaries["node-3"]
    assert abs(primaries["node-3"] / len(BUCKETS) - 0.5) < 0.05


@settings(max_examples=25, deadline=None)
@given(caps=st.lists(st.integers(min_value=1, max_value=20), min_size=6, max_size=6),
       leaving=st.integers(min_value=0, max_value=5))
def test_when_a_node_leaves_only_its_buckets_move(caps, leaving):
    six = nodes(*caps)
    gone = six[leaving].node_id
    five = [c for c in six if c.node_id != gone]
    for b in BUCKETS[:300]:
        before, after = place(b, six, 3), place(b, five, 3)
        if gone not in before:
            assert after == before
        else:
            survivors = [n for n in before if n != gone]
            assert [n for n in after if n in survivors] == survivors  # order kept
            assert len(set(after) - set(before)) == 1


def test_a_new_node_only_takes_buckets():
    six = nodes(1, 1, 1, 1, 1, 1)
    seven = [*six, Candidate("node-7", TB)]
    moved = 0
    for b in BUCKETS:
        before, after = place(b, six, 3), place(b, seven, 3)
        if "node-7" in after:
            moved += 1
            assert len(set(before) - set(after)) == 1
        else:
            assert after == before
    assert 0.3 < moved / len(BUCKETS) < 0.56  # about 3/7 of the buckets


@settings(max_examples=15, deadline=None)
@given(caps=st.lists(st.integers(min_value=8, max_value=10), min_size=5, max_size=8))
def test_balance_within_ten_percent_of_capacity_share_property(caps):
    """Every node's replica share is within 10% of its capacity share, for any 5-8 nodes with
    capacities within 1.25x. Over 3,000 buckets: with 1,000 buckets and 7-8 nodes a node holds
    ~350 replicas, whose sampling noise alone (about 5%, so 10% at 2 sigma) breaks the bound
    for some capacity lists (hypothesis found [10, 8, 9, 10, 10, 10, 10]: 10.3%)."""
    zone_nodes = nodes(*caps)
    many = [f"p{i}--use1-az4--x-s3" for i in range(3000)]
    held = Counter(n for b in many for n in place(b, zone_nodes, 3))
    total = sum(caps)
    for c in zone_nodes:
        share = held[c.node_id] / (3 * len(many))
        expected = c.weight / TB / total
        assert abs(share - expected) <= 0.10 * expected, (caps, c.node_id, share, expected)


@settings(max_examples=25, deadline=None)
@given(caps=st.lists(st.integers(min_value=1, max_value=20), min_size=4, max_size=8))
def test_a_joining_node_only_takes_buckets_property(caps):
    before_nodes = nodes(*caps)
    after_nodes = [*before_nodes, Candidate("node-new", 5 * TB)]
    for b in BUCKETS[:300]:
        before, after = place(b, before_nodes, 3), place(b, after_nodes, 3)
        assert after == before or ("node-new" in after and len(set(before) - set(after)) == 1)
