"""node/keycache.py: TTL (fake clock), size bound, single flight, errors passing through."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from node.keycache import BucketKeyCache, kms_unwrapper
from proto import errors

ARN = "arn:aws:s3express:us-east-1:000000000000:bucket/b--use1-az4--x-s3"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingUnwrap:
    """A fake KMS unwrap: key = wrapped blob padded; counts calls; optional gate and failure."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: trio.Event | None = None
        self.error: Exception | None = None
        self.seen: list[tuple[bytes, str]] = []

    async def __call__(self, wrapped: bytes, arn: str) -> bytes:
        self.calls += 1
        self.seen.append((wrapped, arn))
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return wrapped.ljust(32, b"\0")


def sample(reg: CollectorRegistry, name: str) -> float:
    return reg.get_sample_value(name) or 0.0


def make(ttl_s: float = 60.0, max_entries: int = 10):
    unwrap, clock, reg = CountingUnwrap(), FakeClock(), CollectorRegistry()
    cache = BucketKeyCache(unwrap, ttl_s=ttl_s, max_entries=max_entries, clock=clock, registry=reg)
    return cache, unwrap, clock, reg


async def test_hit_after_miss_and_ttl_expiry():
    cache, unwrap, clock, reg = make(ttl_s=60)
    assert await cache.get(b"b1", 1, b"w1", ARN) == b"w1".ljust(32, b"\0")
    assert unwrap.seen == [(b"w1", ARN)]
    clock.now += 59.9
    assert await cache.get(b"b1", 1, b"w1", ARN) == b"w1".ljust(32, b"\0")
    assert unwrap.calls == 1
    clock.now += 0.2  # past the TTL
    await cache.get(b"b1", 1, b"w1", ARN)
    assert unwrap.calls == 2
    assert sample(reg, "onezone_node_bucket_key_cache_hits_total") == 1
    assert sample(reg, "onezone_node_bucket_key_cache_misses_total") == 2
    assert sample(reg, "onezone_node_bucket_key_cache_evictions_total") == 1  # the expired entry
    assert sample(reg, "onezone_node_bucket_key_cache_entries") == 1


async def test_generations_are_separate_entries():
    cache, unwrap, clock, reg = make()
    await cache.get(b"b1", 1, b"w1", ARN)
    await cache.get(b"b1", 2, b"w2", ARN)
    await cache.get(b"b1", 1, b"w1", ARN)
    assert unwrap.calls == 2 and len(cache) == 2


async def test_max_entries_evicts_least_recently_used():
    cache, unwrap, clock, reg = make(max_entries=2)
    await cache.get(b"b1", 1, b"w1", ARN)
    await cache.get(b"b2", 1, b"w2", ARN)
    await cache.get(b"b1", 1, b"w1", ARN)  # b1 is now the most recently used
    await cache.get(b"b3", 1, b"w3", ARN)  # evicts b2
    assert len(cache) == 2 and unwrap.calls == 3
    await cache.get(b"b1", 1, b"w1", ARN)
    assert unwrap.calls == 3
    await cache.get(b"b2", 1, b"w2", ARN)
    assert unwrap.calls == 4
    assert sample(reg, "onezone_node_bucket_key_cache_evictions_total") == 2
    assert sample(reg, "onezone_node_bucket_key_cache_entries") == 2


async def test_single_flight_100_concurrent_misses_one_kms_call():
    cache, unwrap, clock, reg = make()
    unwrap.gate = trio.Event()
    results = []

    async def one():
        results.append(await cache.get(b"b1", 7, b"wrapped", ARN))

    async with trio.open_nursery() as n:
        for _ in range(100):
            n.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        assert unwrap.calls == 1
        unwrap.gate.set()
    assert unwrap.calls == 1
    assert results == [b"wrapped".ljust(32, b"\0")] * 100
    assert sample(reg, "onezone_node_bucket_key_cache_misses_total") == 100


async def test_errors_pass_through_with_kind_and_are_not_cached():
    cache, unwrap, clock, reg = make()
    unwrap.gate = trio.Event()
    unwrap.error = errors.InvalidRequest("key is disabled", kind="DisabledException")
    raised = []

    async def one():
        with pytest.raises(errors.InvalidRequest) as ei:
            await cache.get(b"b1", 1, b"w", ARN)
        raised.append(ei.value)

    async with trio.open_nursery() as n:
        for _ in range(5):
            n.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        unwrap.gate.set()
    assert unwrap.calls == 1
    assert [e.kind for e in raised] == ["DisabledException"] * 5
    assert len({id(e) for e in raised}) == 5  # each waiter raises its own copy
    unwrap.error, unwrap.gate = None, None
    assert await cache.get(b"b1", 1, b"w", ARN)
    assert unwrap.calls == 2 and len(cache) == 1


async def test_cancelled_leader_does_not_strand_waiters():
    cache, unwrap, clock, reg = make()
    unwrap.gate = trio.Event()
    got = []

    async def waiter():
        got.append(await cache.get(b"b1", 1, b"w", ARN))

    async with trio.open_nursery() as n:
        leader_scope = trio.CancelScope()

        async def leader():
            with leader_scope:
                await cache.get(b"b1", 1, b"w", ARN)

        n.start_soon(leader)
        await trio.testing.wait_all_tasks_blocked()
        n.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        leader_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert unwrap.calls == 2  # the waiter took over
        unwrap.gate.set()
    assert got == [b"w".ljust(32, b"\0")]


async def test_invalidate_and_no_key_in_repr():
    cache, unwrap, clock, reg = make()
    key = await cache.get(b"b1", 1, b"secret-ish", ARN)
    await cache.get(b"b2", 1, b"w2", ARN)
    assert repr(key) not in repr(cache) and "secret-ish" not in repr(cache)
    assert cache.invalidate(b"b1") == 1 and len(cache) == 1
    await cache.get(b"b1", 1, b"secret-ish", ARN)
    assert unwrap.calls == 3


async def test_wrong_size_key_is_refused():
    async def bad(wrapped, arn):
        return b"short"

    cache = BucketKeyCache(bad, ttl_s=1, max_entries=1)
    with pytest.raises(errors.Internal):
        await cache.get(b"b", 1, b"w", ARN)
    assert len(cache) == 0


class FakeKmsClient:
    def __init__(self, outcome):
        self.outcome = outcome
        self.calls = []

    async def call(self, method, args):
        self.calls.append((method, args))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


async def test_kms_unwrapper_shapes_and_error_mapping():
    client = FakeKmsClient({"KeyId": "arn:k", "Plaintext": b"k" * 32})
    assert await kms_unwrapper(client)(b"blob", ARN) == b"k" * 32
    assert client.calls == [("Decrypt", {"ciphertext_blob": b"blob", "encryption_context": {"aws:s3:arn": ARN}})]
    for exc in (errors.Unavailable("cannot connect to kms"), errors.DeadlineExceeded("slow")):
        with pytest.raises(errors.Unavailable) as ei:
            await kms_unwrapper(FakeKmsClient(exc))(b"blob", ARN)
        assert ei.value.kind == "KMSUnavailable"
    for exc in (errors.InvalidRequest("x", kind="KMSInvalidStateException"),
                errors.NotFound("x", kind="NotFoundException"),
                errors.AccessDenied("x", kind="AccessDeniedException")):
        with pytest.raises(type(exc)) as ei:
            await kms_unwrapper(FakeKmsClient(exc))(b"blob", ARN)
        assert ei.value.kind == exc.kind
    with pytest.raises(errors.Internal):
        await kms_unwrapper(FakeKmsClient({"nope": 1}))(b"blob", ARN)
