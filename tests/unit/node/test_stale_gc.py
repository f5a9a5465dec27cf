"""node/stale_gc.py: what is garbage given the coordinator's answers, the grace period, and that
every doubt keeps the data."""

from __future__ import annotations

from node.stale_gc import Answer, StalePlanner, consistent, is_garbage, parse_reply, Suspect

A, B, C = b"a" * 16, b"b" * 16, b"c" * 16
GONE = Answer(exists=False)


def member(epoch: int = 3) -> Answer:
    return Answer(exists=True, member=True, epoch=epoch)


def outsider(epoch: int = 3) -> Answer:
    return Answer(exists=True, member=False, epoch=epoch)


def reply(*entries: dict, total: int = 5) -> dict:
    return {"buckets": list(entries), "catalog_buckets": total}


def test_garbage_only_when_the_coordinator_says_so():
    assert is_garbage(GONE)
    assert is_garbage(outsider())
    assert not is_garbage(member())
    assert not is_garbage(None)  # no answer: keep


def test_parse_reply_reads_members_syncing_and_gone_buckets():
    r = reply({"bucket_id": A, "exists": True, "name": "x", "epoch": 4, "member": True, "syncing": False},
              {"bucket_id": B, "exists": True, "name": "y", "epoch": 2, "member": False, "syncing": False},
              {"bucket_id": C, "exists": False})
    assert parse_reply(r, [A, B, C]) == {A: member(4), B: outsider(2), C: GONE}


def test_parse_reply_leaves_out_anything_doubtful():
    assert parse_reply(None, [A]) == {}
    assert parse_reply({"buckets": [{"bucket_id": A, "exists": False}]}, [A]) == {}  # no catalog count
    assert parse_reply(reply({"bucket_id": A, "exists": False}, total=0), [A]) == {}  # an empty catalog
    assert parse_reply(reply({"bucket_id": A, "exists": False}, total=True), [A]) == {}
    assert parse_reply(reply({"bucket_id": A, "exists": "no"}), [A]) == {}
    assert parse_reply(reply({"bucket_id": A, "exists": True, "epoch": 3}), [A]) == {}  # membership unknown
    assert parse_reply(reply({"bucket_id": A, "exists": True, "member": False, "epoch": -1}), [A]) == {}
    assert parse_reply(reply({"bucket_id": A, "exists": False}), [B]) == {}  # not asked
    assert parse_reply(reply({"bucket_id": A, "exists": False}, {"bucket_id": A, "exists": False},
                             {"bucket_id": A, "exists": False}), [A]) == {}  # ambiguous
    assert parse_reply(reply({"bucket_id": "a", "exists": False}), [A]) == {}
    assert parse_reply({"buckets": "x", "catalog_buckets": 3}, [A]) == {}


def test_a_syncing_replica_is_a_member():
    r = reply({"bucket_id": A, "exists": True, "epoch": 4, "member": False, "syncing": True})
    assert parse_reply(r, [A]) == {A: member(4)}


def test_views_may_only_move_forward():
    assert consistent(Suspect(0, 3), outsider(3)) and consistent(Suspect(0, 3), outsider(4))
    assert consistent(Suspect(0, 3), GONE)          # deleted since
    assert not consistent(Suspect(0, 3), outsider(2))  # an older view
    assert consistent(Suspect(0, None), GONE)
    assert not consistent(Suspect(0, None), outsider(9))  # a bucket id does not come back


def test_two_checks_a_grace_period_apart():
    p = StalePlanner(grace_s=600)
    assert p.observe(0, [A, B], {A: outsider(), B: member()}) == []
    assert set(p.suspects) == {A}
    assert p.observe(599, [A, B], {A: outsider(), B: member()}) == []
    assert p.observe(600, [A, B], {A: outsider(4), B: member()}) == [A]
    assert p.confirm(601, A, outsider(4))
    assert not p.confirm(601, B, member())


def test_a_member_again_resets_the_clock():
    p = StalePlanner(grace_s=10)
    p.observe(0, [A], {A: outsider(3)})
    p.observe(5, [A], {A: member(4)})  # re-added meanwhile
    assert A not in p.suspects
    assert p.observe(11, [A], {A: outsider(5)}) == []  # a new suspicion starts now
    assert p.observe(21, [A], {A: outsider(5)}) == [A]


def test_doubt_keeps_and_restarts_the_clock():
    p = StalePlanner(grace_s=10)
    p.observe(0, [A, B], {A: outsider(), B: GONE})
    assert p.observe(20, [A, B], {}) == []  # no answers at all
    assert p.suspects == {}
    assert p.observe(25, [A, B], {A: outsider(), B: GONE}) == []
    assert p.observe(35, [A, B], {A: outsider(), B: GONE}) == [A, B]


def test_an_older_view_restarts_the_clock():
    p = StalePlanner(grace_s=10)
    p.observe(0, [A], {A: outsider(5)})
    assert p.observe(20, [A], {A: outsider(4)}) == []
    assert p.suspects[A] == Suspect(20, 4)


def test_a_gone_bucket_is_due_after_the_grace():
    p = StalePlanner(grace_s=10)
    p.observe(0, [A], {A: outsider(5)})
    assert p.observe(10, [A], {A: GONE}) == [A]  # deleted since: a newer view


def test_the_last_check_must_agree_and_copies_no_longer_held_are_forgotten():
    p = StalePlanner(grace_s=10)
    p.observe(0, [A, B], {A: outsider(), B: outsider()})
    assert p.observe(10, [A, B], {A: outsider(), B: outsider()}) == [A, B]
    assert not p.confirm(11, A, None)   # the coordinator did not answer the last time: keep
    assert A not in p.suspects
    assert not p.confirm(11, B, member())
    p.observe(12, [C], {C: GONE})
    assert set(p.suspects) == {C}
    assert not p.confirm(30, A, outsider())  # not a suspect any more


def test_zero_grace_still_needs_two_checks():
    p = StalePlanner(grace_s=0)
    assert p.observe(0, [A], {A: GONE}) == []
    assert p.observe(0, [A], {A: GONE}) == [A]
