"""Replica-set reconciliation (pure): lost nodes replaced with minimal movement, drains are
make-before-break, syncing replicas do not count, a fake clock drives the down -> replaced
timeline through the real Membership state machine."""

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator import placement
from coordinator.membership import ADMIN_DRAINING, ADMIN_REMOVED, Membership, NodeState
from coordinator.reconcile import healthy_count, plan

ZONE = "use1-az4"
TB = 10**12
NAME = f"b--{ZONE}--x-s3"


def cluster(n=5, now=0.0):
    m = Membership(suspect_after_s=6, down_after_s=15)
    for i in range(1, n + 1):
        m.register(node_id=f"node-{i}", zone=ZONE, host="10.0.0.1", port=7000 + i, capacity_bytes=TB,
                   free_bytes=TB, used_bytes=0, now=now)
    return m


def placed(m, name=NAME, now=0.0):
    return placement.place(name, placement.candidates(m.view(now), ZONE), 3)


def test_nothing_to_do_when_all_replicas_live():
    m = cluster()
    assert plan(NAME, ZONE, placed(m), (), want=3, views=m.view(0.0), replace_after_s=60) is None


def test_down_node_replaced_only_after_the_timeout_with_the_next_ranked_node():
    m = cluster()
    replicas = placed(m)
    dead = replicas[1]
    for t in (5.0, 20.0, 50.0, 70.0, 80.0):  # everyone but `dead` keeps heartbeating
        for v in m.view(t):
            if v.node.node_id != dead:
                m.heartbeat(v.node.node_id, free_bytes=TB, used_bytes=0, now=t)
    assert m.state_at(m.get(dead), 50.0) is NodeState.DOWN
    assert plan(NAME, ZONE, replicas, (), want=3, views=m.view(50.0), replace_after_s=60) is None
    change = plan(NAME, ZONE, replicas, (), want=3, views=m.view(80.0), replace_after_s=60)
    assert change is not None and change.reason == "replace_lost"
    assert change.dropped == (dead,)
    survivors = tuple(r for r in replicas if r != dead)
    assert change.replicas[:2] == survivors  # order (and primary) kept
    # exactly where placement would put the bucket without the dead node: minimal movement
    without = [c for c in placement.candidates(m.view(80.0), ZONE) if c.node_id != dead]
    assert set(change.replicas) == set(placement.place(NAME, without, 3))
    assert change.syncing == change.added == (change.replicas[2],)


def test_drain_is_make_before_break():
    m = cluster()
    replicas = placed(m)
    m.set_admin(replicas[0], ADMIN_DRAINING)
    first = plan(NAME, ZONE, replicas, (), want=3, views=m.view(1.0), replace_after_s=60)
    assert first.reason == "drain" and first.dropped == ()
    assert first.replicas[:3] == replicas and len(first.replicas) == 4
    assert first.replicas[0] == replicas[0]  # still primary while its replacement copies
    assert plan(NAME, ZONE, first.replicas, first.syncing, want=3, views=m.view(1.0), replace_after_s=60) is None
    done = plan(NAME, ZONE, first.replicas, (), want=3, views=m.view(1.0), replace_after_s=60)
    assert done.reason == "drain_done" and done.dropped == (replicas[0],)
    assert replicas[0] not in done.replicas and len(done.replicas) == 3


def test_drain_without_spare_nodes_waits():
    m = cluster(3)
    replicas = placed(m)
    m.set_admin(replicas[2], ADMIN_DRAINING)
    assert plan(NAME, ZONE, replicas, (), want=3, views=m.view(1.0), replace_after_s=60) is None
    assert healthy_count(replicas, (), {v.node.node_id: v for v in m.view(1.0)}) == 2


def test_removed_node_is_dropped_at_once_and_never_picked():
    m = cluster(4)
    replicas = placed(m)
    m.set_admin(replicas[0], ADMIN_REMOVED)
    change = plan(NAME, ZONE, replicas, (), want=3, views=m.view(1.0), replace_after_s=600)
    assert change.dropped == (replicas[0],) and change.replicas[0] == replicas[1]
    assert replicas[0] not in change.replicas
    assert placed(m, "other--use1-az4--x-s3", 1.0) and replicas[0] not in placed(m, "other--use1-az4--x-s3", 1.0)


def test_the_last_replica_is_never_dropped():
    m = cluster(3)
    replicas = placed(m)
    for r in replicas:
        m.set_admin(r, ADMIN_REMOVED)
    assert plan(NAME, ZONE, replicas, (), want=3, views=m.view(1.0), replace_after_s=60) is None


def test_syncing_replicas_are_not_healthy():
    m = cluster()
    replicas = placed(m)
    views = {v.node.node_id: v for v in m.view(0.0)}
    assert healthy_count(replicas, (), views) == 3
    assert healthy_count(replicas, (replicas[2],), views) == 2


@settings(max_examples=30, deadline=None)
@given(n=st.integers(min_value=4, max_value=9), dead_index=st.integers(min_value=0, max_value=2),
       bucket=st.integers(min_value=0, max_value=10_000))
def test_replacement_moves_exactly_one_replica(n, dead_index, bucket):
    name = f"h{bucket}--{ZONE}--x-s3"
    m = cluster(n)
    replicas = placed(m, name)
    m.set_admin(replicas[dead_index], ADMIN_REMOVED)
    change = plan(name, ZONE, replicas, (), want=3, views=m.view(1.0), replace_after_s=60)
    assert len(set(change.replicas) - set(replicas)) == 1
    assert set(replicas) - set(change.replicas) == {replicas[dead_index]}
    assert len(set(change.replicas)) == 3


def heartbeat_all_but(m, t, *silent):
    for v in m.view(t):
        if v.node.node_id not in silent:
            m.heartbeat(v.node.node_id, free_bytes=TB, used_bytes=0, now=t)


def test_down_primary_fails_over_to_the_first_live_in_sync_replica():
    m = cluster(4)
    replicas = placed(m)
    heartbeat_all_but(m, 20.0, replicas[0])
    change = plan(NAME, ZONE, replicas, (), want=3, views=m.view(20.0), replace_after_s=600)
    assert change.reason == "failover" and change.dropped == () and change.added == ()
    assert change.replicas == (replicas[1], replicas[0], replicas[2])  # the old primary stays a replica
    # once past replace_after_s it is dropped and replaced, the new primary kept
    heartbeat_all_but(m, 700.0, replicas[0])
    later = plan(NAME, ZONE, change.replicas, (), want=3, views=m.view(700.0), replace_after_s=600)
    assert later.replicas[:2] == (replicas[1], replicas[2]) and later.dropped == (replicas[0],)


def test_a_syncing_replica_is_never_promoted():
    m = cluster(4)
    replicas = placed(m)
    heartbeat_all_but(m, 20.0, replicas[0], replicas[1])  # primary and the second replica down
    change = plan(NAME, ZONE, replicas, (replicas[2],), want=3, views=m.view(20.0), replace_after_s=600)
    assert change is None  # the only live replica is still being copied to: nothing to promote
    heartbeat_all_but(m, 700.0, replicas[0], replicas[1])
    # both lost for good: no complete copy is left, the set is kept as it is (never a syncing primary)
    assert plan(NAME, ZONE, replicas, (replicas[2],), want=3, views=m.view(700.0), replace_after_s=600) is None


def test_a_suspect_primary_fails_over_only_when_reported_unreachable():
    m = cluster(4)
    replicas = placed(m)
    heartbeat_all_but(m, 10.0, replicas[0])  # 10 s without a heartbeat: suspect (6 < 10 <= 15)
    views = m.view(10.0)
    assert plan(NAME, ZONE, replicas, (), want=3, views=views, replace_after_s=600) is None
    change = plan(NAME, ZONE, replicas, (), want=3, views=views, replace_after_s=600, suspects={replicas[0]})
    assert change.reason == "failover" and change.replicas[0] == replicas[1]
    # an up primary is never failed over on a report alone
    assert plan(NAME, ZONE, replicas, (), want=3, views=views, replace_after_s=600, suspects={replicas[1]}) is None


def test_an_up_replica_is_preferred_to_a_suspect_one_and_an_active_one_to_a_draining_one():
    m = cluster(5)
    replicas = placed(m)
    heartbeat_all_but(m, 20.0, replicas[0], replicas[1])  # the primary: 20 s old at 20 -> down
    m.heartbeat(replicas[1], free_bytes=TB, used_bytes=0, now=12.0)  # the second: 8 s old at 20 -> suspect
    change = plan(NAME, ZONE, replicas, (), want=3, views=m.view(20.0), replace_after_s=600)
    assert change.replicas[0] == replicas[2]
    m.set_admin(replicas[2], ADMIN_DRAINING)
    heartbeat_all_but(m, 21.0, replicas[0])
    change = plan(NAME, ZONE, replicas, (), want=3, views=m.view(21.0), replace_after_s=600)
    assert change.replicas[0] == replicas[1]


def test_a_short_set_is_refilled_with_a_syncing_node():
    m = cluster(3)
    replicas = placed(m)
    change = plan(NAME, ZONE, replicas[:2], (), want=3, views=m.view(1.0), replace_after_s=600)
    assert change.reason == "refill" and change.added == change.syncing == (replicas[2],)
