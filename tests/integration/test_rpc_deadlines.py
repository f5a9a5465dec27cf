"""The client's shared deadline timer (proto/rpc_deadlines.py), alone and under real calls."""

from functools import partial

import pytest
import trio

from proto import errors
from proto.rpc import RpcServer, open_rpc_pool
from proto.rpc_deadlines import DeadlineTimer


async def test_timer_fires_each_target_once_at_its_deadline(nursery, autojump_clock):
    fired: list[tuple[str, float]] = []
    timer = DeadlineTimer(lambda t: fired.append((t, trio.current_time())))
    nursery.start_soon(timer.run)
    start = trio.current_time()
    timer.arm(start + 10, "late")
    await trio.sleep(1)  # the task now sleeps towards +10
    timer.arm(start + 3, "early")  # earlier: must wake the task to re-aim
    kept = timer.arm(start + 5, "disarmed")
    timer.disarm(kept)
    await trio.sleep(20)
    assert fired == [("early", start + 3), ("late", start + 10)]
    assert len(timer.heap) == 0


async def test_timer_with_nothing_armed_sleeps_until_armed(nursery, autojump_clock):
    fired: list[str] = []
    timer = DeadlineTimer(fired.append)
    nursery.start_soon(timer.run)
    await trio.sleep(1000)
    assert fired == []
    timer.arm(trio.current_time() + 1, "x")
    await trio.sleep(2)
    assert fired == ["x"]


async def slow(call):
    await trio.sleep(10)


async def echo(call):
    return call.args


async def deaf(call):
    with trio.CancelScope(shield=True):  # ignores its deadline and CANCEL: only the client's timer ends the wait
        await trio.sleep(call.args["s"])


@pytest.fixture
async def server(nursery):
    srv = RpcServer({"slow": slow, "echo": echo, "deaf": deaf}, acl={"*": ["anonymous"]}, ssl_context=None, name="t")
    host, port = await nursery.start(srv.serve, "127.0.0.1", 0)
    return srv, host, port


async def test_a_short_deadline_behind_a_long_one_fires_on_time(server):
    srv, host, port = server
    async with open_rpc_pool(None) as pool:
        c = pool.client(host, port, "t")
        outcome: dict[str, object] = {}

        async def long_call():
            try:
                await c.call("slow", timeout_s=5)
            except errors.DeadlineExceeded as exc:
                outcome["long"] = exc

        async with trio.open_nursery() as n:
            n.start_soon(long_call)
            await trio.sleep(0.05)  # the timer now aims at the 5 s deadline
            t0 = trio.current_time()
            with pytest.raises(errors.DeadlineExceeded):
                await c.call("slow", timeout_s=0.2)
            assert 0.15 < trio.current_time() - t0 < 2
            n.cancel_scope.cancel()  # the outer caller gives up on the long call
        assert "long" not in outcome
        # both calls were cancelled on the server (CANCEL sent), and nothing stays armed
        with trio.fail_after(5):
            while srv._active:
                await trio.sleep(0.01)
        assert len(pool._deadlines.heap) == 0
        assert await c.call("echo", {"k": 1}) == {"k": 1}


async def test_finished_calls_leave_nothing_armed(server):
    srv, host, port = server
    async with open_rpc_pool(None) as pool:
        c = pool.client(host, port, "t")
        for i in range(500):
            assert await c.call("echo", {"i": i}, timeout_s=60) == {"i": i}
        assert len(pool._deadlines.heap) == 0
        assert pool._deadlines.heap.size <= 64


async def test_the_client_gives_up_on_time_when_the_server_does_not_answer(server):
    srv, host, port = server
    async with open_rpc_pool(None) as pool:
        c = pool.client(host, port, "t")
        async with trio.open_nursery() as n:
            n.start_soon(partial(c.call, "deaf", {"s": 1.0}, timeout_s=30))  # the timer aims at +30 s
            await trio.sleep(0.05)
            t0 = trio.current_time()
            with pytest.raises(errors.DeadlineExceeded):
                await c.call("deaf", {"s": 1.0}, timeout_s=0.2)
            assert 0.15 < trio.current_time() - t0 < 0.8
        assert len(pool._deadlines.heap) == 0
