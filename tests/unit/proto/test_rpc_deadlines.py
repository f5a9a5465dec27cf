"""DeadlineHeap: the pure half of the client's shared call timer (proto/rpc_deadlines.py)."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from proto.rpc_deadlines import COMPACT_SLACK, DeadlineHeap


def test_expires_in_deadline_order_and_at_the_deadline_itself():
    h = DeadlineHeap()
    h.arm(3.0, "c")
    h.arm(1.0, "a")
    h.arm(2.0, "b")
    assert h.next_deadline() == 1.0
    assert h.pop_expired(0.5) == []
    assert h.pop_expired(2.0) == ["a", "b"]  # "<= now"
    assert len(h) == 1 and h.next_deadline() == 3.0
    assert h.pop_expired(10.0) == ["c"]
    assert len(h) == 0 and h.next_deadline() == math.inf


def test_equal_deadlines_keep_arming_order_and_never_compare_targets():
    h = DeadlineHeap()
    targets = [object() for _ in range(5)]  # not orderable: only (deadline, seq) may be compared
    for t in targets:
        h.arm(1.0, t)
    assert h.pop_expired(1.0) == targets


def test_disarmed_entries_never_expire_and_disarm_is_idempotent():
    h = DeadlineHeap()
    a = h.arm(1.0, "a")
    b = h.arm(2.0, "b")
    h.disarm(a)
    h.disarm(a)
    assert len(h) == 1
    assert h.next_deadline() == 2.0  # the dead entry on top is dropped
    assert h.pop_expired(5.0) == ["b"]
    h.disarm(b)  # after expiry: nothing to do
    assert len(h) == 0


def test_disarm_drops_the_reference_to_the_target_at_once():
    h = DeadlineHeap()
    entry = h.arm(100.0, ["a large result"])
    h.disarm(entry)
    assert entry[2] is None


def test_none_is_not_a_target():
    with pytest.raises(ValueError):
        DeadlineHeap().arm(1.0, None)


def test_finished_calls_do_not_pile_up():
    """Many calls that each finish long before their deadline: the heap stays small."""
    h = DeadlineHeap()
    live = [h.arm(30.0 + i, i) for i in range(10)]
    for i in range(100_000):
        h.disarm(h.arm(30.0 + i * 1e-4, ("call", i)))
        assert h.size <= 2 * len(h) + COMPACT_SLACK + 1
    assert len(h) == 10
    assert h.pop_expired(math.inf) == list(range(10))
    assert live[0][2] is None


def test_expiring_live_entries_does_not_leave_a_heap_of_dead_ones():
    h = DeadlineHeap()
    dead = [h.arm(100.0 + i, i) for i in range(200)]
    soon = [h.arm(1.0, -i) for i in range(200)]
    for e in dead:
        h.disarm(e)
    assert len(h) == 200
    assert len(h.pop_expired(1.0)) == 200
    assert len(h) == 0 and h.size <= COMPACT_SLACK
    assert soon[0][2] is None


@given(st.lists(st.tuples(st.sampled_from(["arm", "disarm", "pop"]), st.floats(0, 100),
                          st.integers(0, 10**6)), max_size=300))
@settings(max_examples=200, deadline=None)
def test_matches_a_simple_model(ops):
    h = DeadlineHeap()
    model: dict[int, tuple[float, int]] = {}  # target -> (deadline, arming order)
    entries: dict[int, list] = {}
    order = 0
    for op, when, pick in ops:
        if op == "arm":
            target = order
            entries[target] = h.arm(when, target)
            model[target] = (when, order)
            order += 1
        elif op == "disarm" and entries:
            target = sorted(entries)[pick % len(entries)]
            h.disarm(entries.pop(target))
            model.pop(target, None)
        elif op == "pop":
            expected = sorted((t for t, (d, _) in model.items() if d <= when), key=lambda t: model[t])
            assert h.pop_expired(when) == expected
            for t in expected:
                del model[t]
        assert len(h) == len(model)
        assert h.size <= 2 * len(model) + COMPACT_SLACK + 1  # +1: just armed
        assert h.next_deadline() == min((d for d, _ in model.values()), default=math.inf)
