"""Membership state machine driven by a fake clock (plain numbers)."""

import pytest

from coordinator.membership import Membership, Node, NodeState, Transition, UnknownNode, ZoneChange

UP, SUSPECT, DOWN = NodeState.UP, NodeState.SUSPECT, NodeState.DOWN


def register(m, node_id="node-1", now=0.0, zone="use1-az4", host="10.0.0.1", port=7001):
    return m.register(node_id=node_id, zone=zone, host=host, port=port, capacity_bytes=1000,
                      free_bytes=900, used_bytes=100, now=now)


@pytest.fixture
def m():
    return Membership(suspect_after_s=6.0, down_after_s=15.0)


def states(m, now):
    return {v.node.node_id: v.state for v in m.view(now)}


def test_state_follows_heartbeat_age(m):
    node, t = register(m, now=100.0)
    assert t == Transition("node-1", None, UP)
    for now, want in [(100.0, UP), (106.0, UP), (106.01, SUSPECT), (115.0, SUSPECT), (115.01, DOWN),
                      (10_000.0, DOWN)]:
        assert m.state_at(node, now) is want, now
    assert m.view(110.0)[0].age_s == pytest.approx(10.0)


def test_observe_reports_each_transition_once(m):
    register(m, now=0.0)
    assert m.observe(5.0) == []
    assert m.observe(7.0) == [Transition("node-1", UP, SUSPECT)]
    assert m.observe(8.0) == []
    assert m.observe(16.0) == [Transition("node-1", SUSPECT, DOWN)]
    assert m.observe(100.0) == []
    # a heartbeat brings it back at once, and says so
    assert m.heartbeat("node-1", free_bytes=800, used_bytes=200, now=101.0) == Transition("node-1", DOWN, UP)
    assert m.observe(102.0) == []
    assert m.heartbeat("node-1", free_bytes=800, used_bytes=200, now=103.0) is None
    assert m.get("node-1").free_bytes == 800 and m.get("node-1").used_bytes == 200


def test_heartbeats_keep_a_node_up_and_the_others_age(m):
    register(m, "node-1", now=0.0)
    register(m, "node-2", now=0.0)
    for now in range(2, 30, 2):
        m.heartbeat("node-1", free_bytes=900, used_bytes=100, now=float(now))
    assert states(m, 29.0) == {"node-1": UP, "node-2": DOWN}
    # a late (older) heartbeat never moves the clock backwards
    m.heartbeat("node-1", free_bytes=900, used_bytes=100, now=1.0)
    assert m.get("node-1").last_heartbeat == 28.0


def test_heartbeat_from_unknown_node(m):
    with pytest.raises(UnknownNode):
        m.heartbeat("node-9", free_bytes=1, used_bytes=1, now=0.0)


def test_reregister_updates_address_keeps_first_registration_time(m):
    register(m, now=0.0, host="10.0.0.1", port=7001)
    m.observe(20.0)
    node, t = register(m, now=20.0, host="10.0.0.9", port=7999)
    assert (node.host, node.port, node.registered, node.last_heartbeat) == ("10.0.0.9", 7999, 0.0, 20.0)
    assert t == Transition("node-1", DOWN, UP)
    assert register(m, now=21.0)[1] is None


def test_zone_is_fixed(m):
    register(m, zone="use1-az4")
    with pytest.raises(ZoneChange):
        register(m, zone="use1-az5")
    assert m.zones() == {"use1-az4"}


def test_view_filters_by_zone_and_sorts(m):
    register(m, "node-2", zone="use1-az5")
    register(m, "node-1")
    register(m, "node-3")
    assert [v.node.node_id for v in m.view(0.0)] == ["node-1", "node-2", "node-3"]
    assert [v.node.node_id for v in m.view(0.0, zone="use1-az4")] == ["node-1", "node-3"]
    assert m.zones() == {"use1-az4", "use1-az5"}


def test_loaded_nodes_get_a_restart_grace(m):
    stale = Node(node_id="node-1", zone="use1-az4", host="h", port=1, capacity_bytes=1, free_bytes=1,
                 used_bytes=0, registered=0.0, last_heartbeat=0.0)
    m.load(stale, now=1000.0)
    assert states(m, 1000.0) == {"node-1": UP}
    assert m.observe(1001.0) == []
    assert m.observe(1007.0) == [Transition("node-1", UP, SUSPECT)]


def test_thresholds_are_checked():
    with pytest.raises(ValueError):
        Membership(suspect_after_s=10.0, down_after_s=5.0)
