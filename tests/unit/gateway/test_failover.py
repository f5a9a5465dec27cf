"""gateway/failover.py: replayable request bodies, read order, which errors are retried."""

import pytest
import trio

from gateway.failover import ReplayableBody, read_next, read_order, write_retryable
from proto import errors


async def source(pieces, fail_after=None):
    for i, p in enumerate(pieces):
        if fail_after is not None and i == fail_after:
            raise ValueError("client went away")
        yield p


async def take(it, n=None):
    out = []
    async for p in it:
        out.append(p)
        if n is not None and len(out) == n:
            break
    return out


async def test_a_small_body_is_replayed_whole_after_a_partial_attempt():
    body = ReplayableBody(source([b"ab", b"cd", b"ef"]), limit=100)
    assert await take(body.attempt(), 2) == [b"ab", b"cd"]  # the call broke after two pieces
    assert body.consumed and body.replayable
    assert b"".join(await take(body.attempt())) == b"abcdef"


async def test_a_large_body_is_not_replayable_once_consumed():
    body = ReplayableBody(source([b"x" * 60, b"y" * 60]), limit=100)
    await take(body.attempt())
    assert body.consumed and not body.replayable


async def test_an_untouched_body_is_replayable_whatever_its_size():
    body = ReplayableBody(source([b"x" * 1000]), limit=10)
    assert not body.consumed and body.replayable
    assert await take(body.attempt()) == [b"x" * 1000]


async def test_a_body_that_failed_is_never_replayed():
    body = ReplayableBody(source([b"a", b"b"], fail_after=1), limit=100)
    with pytest.raises(ValueError):
        await take(body.attempt())
    assert not body.replayable


def test_read_order_puts_syncing_replicas_last():
    rec = {"replicas": [{"node_id": "node-1"}, {"node_id": "node-2"}, {"node_id": "node-3"}], "syncing": ["node-1"]}
    assert [r["node_id"] for r in read_order(rec)] == ["node-2", "node-3", "node-1"]
    assert [r["node_id"] for r in read_order({**rec, "syncing": []})] == ["node-1", "node-2", "node-3"]


def test_which_errors_move_on():
    assert write_retryable(errors.Unavailable("connection refused"))
    assert write_retryable(errors.InvalidRequest("not primary", kind="NotPrimary"))
    assert write_retryable(errors.Unavailable("x", kind="ReplicationFailed"))
    assert not write_retryable(errors.Unavailable("full", kind="InsufficientStorage"))
    assert not write_retryable(errors.Unavailable("kms", kind="KMSUnavailable"))
    assert not write_retryable(errors.PreconditionFailed("x", kind="PreconditionFailed"))
    assert read_next(errors.Unavailable("syncing", kind="ReplicaSyncing"))
    assert read_next(errors.InvalidRequest("x", kind="NotReplica"))
    assert not read_next(errors.NotFound("x", kind="NoSuchKey"))


async def test_aclose_runs_the_sources_cleanup():
    closed = []

    async def src():
        try:
            yield b"a"
            yield b"b"
        finally:
            closed.append(True)  # e.g. the HTTP layer marks the unread rest of the body

    body = ReplayableBody(src())
    await take(body.attempt(), 1)
    assert not closed
    await body.aclose()
    assert closed == [True]
