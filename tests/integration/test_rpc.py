"""RPC client and server over real loopback TCP (plaintext here; mTLS in test_rpc_tls)."""

import hashlib

import pytest
import trio

from proto import errors
from proto.rpc import RpcServer, Streamed, WireLimits, open_rpc_pool

LIMITS = WireLimits(max_frame_bytes=128 * 1024, chunk_bytes=32 * 1024, window=2)


async def echo(call):
    return {"echo": call.args, "principal": call.principal}


async def digest(call):
    h = hashlib.sha256()
    n = 0
    async for chunk in call.body:
        h.update(chunk)
        n += len(chunk)
        await trio.sleep(0)
    return {"sha256": h.hexdigest(), "n": n}


async def produce(call):
    size = call.args["size"]

    async def gen():
        block = bytes(range(256)) * 256
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            sent += len(piece)
            yield piece

    return Streamed({"size": size}, gen())


async def fail(call):
    raise errors.NotFound("no such thing", kind="NoSuchBucket")


async def crash(call):
    raise ZeroDivisionError("secret data 1234")


async def slow(call):
    await trio.sleep(10)


HANDLERS = {"echo": echo, "digest": digest, "produce": produce, "fail": fail, "crash": crash,
            "slow": slow, "private": echo}
ACL = {m: ["anonymous"] for m in HANDLERS if m != "private"} | {"private": ["kms"]}


@pytest.fixture
async def server(nursery):
    srv = RpcServer(HANDLERS, acl=ACL, ssl_context=None, limits=LIMITS, name="test")
    host, port = await nursery.start(srv.serve, "127.0.0.1", 0)
    yield srv, host, port


async def test_call_and_errors(server):
    srv, host, port = server
    async with open_rpc_pool(None, limits=LIMITS) as pool:
        c = pool.client(host, port, "test")
        assert await c.call("echo", {"a": 1, "b": b"x"}) == {"echo": {"a": 1, "b": b"x"}, "principal": "anonymous"}
        with pytest.raises(errors.NotFound) as ei:
            await c.call("fail")
        assert ei.value.kind == "NoSuchBucket"
        with pytest.raises(errors.Internal) as ei:
            await c.call("crash")
        assert "1234" not in ei.value.message
        with pytest.raises(errors.InvalidRequest):
            await c.call("nope")
        with pytest.raises(errors.AccessDenied):
            await c.call("private")
        with pytest.raises(errors.DeadlineExceeded):
            await c.call("slow", timeout_s=0.2)
        # the connection is still usable after all of that
        assert (await c.call("echo", {}))["echo"] == {}


async def test_concurrent_calls_share_one_connection(server):
    srv, host, port = server
    async with open_rpc_pool(None, limits=LIMITS) as pool:
        c = pool.client(host, port, "test")
        results = {}

        async def one(i):
            results[i] = await c.call("echo", {"i": i})

        async with trio.open_nursery() as n:
            for i in range(50):
                n.start_soon(one, i)
        assert all(results[i]["echo"]["i"] == i for i in range(50))


async def test_streamed_request_body_with_backpressure(server):
    srv, host, port = server
    payload = bytes(range(256)) * 4096  # 1 MiB, 32 frames at 32 KiB with a window of 2

    async def body():
        for i in range(0, len(payload), 100_000):
            yield payload[i:i + 100_000]

    async with open_rpc_pool(None, limits=LIMITS) as pool:
        c = pool.client(host, port, "test")
        r = await c.call("digest", body=body())
        assert r == {"sha256": hashlib.sha256(payload).hexdigest(), "n": len(payload)}


async def test_streamed_reply(server):
    srv, host, port = server
    async with open_rpc_pool(None, limits=LIMITS) as pool:
        c = pool.client(host, port, "test")
        async with c.stream("produce", {"size": 500_000}) as reply:
            assert reply.result == {"size": 500_000}
            got = 0
            async for chunk in reply.body:
                assert len(chunk) <= LIMITS.chunk_bytes
                got += len(chunk)
        assert got == 500_000
        # leaving early cancels the call and keeps the connection healthy
        async with c.stream("produce", {"size": 5_000_000}) as reply:
            async for chunk in reply.body:
                break
        assert (await c.call("echo", {"k": 1}))["echo"] == {"k": 1}


async def test_reconnect_after_server_restart(nursery):
    srv = RpcServer(HANDLERS, acl=ACL, ssl_context=None, limits=LIMITS)
    async with trio.open_nursery() as n1:
        host, port = await n1.start(srv.serve, "127.0.0.1", 0)
        async with open_rpc_pool(None, limits=LIMITS) as pool:
            c = pool.client(host, port, "test")
            assert await c.call("echo", {})
            await srv.shutdown(0.1)
            n1.cancel_scope.cancel()
            await trio.sleep(0.05)
            with pytest.raises(errors.Unavailable):
                await c.call("echo", {})
            srv2 = RpcServer(HANDLERS, acl=ACL, ssl_context=None, limits=LIMITS)
            try:
                await nursery.start(srv2.serve, "127.0.0.1", port)
            except OSError:
                pytest.skip("port was taken in between")
            assert (await c.call("echo", {"again": True}))["echo"] == {"again": True}


async def test_garbage_from_client_closes_connection(server):
    srv, host, port = server
    s = await trio.open_tcp_stream(host, port)
    await s.send_all(b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")  # 0xc1 is never valid msgpack
    with trio.fail_after(5):
        assert await s.receive_some(100) == b""
    s2 = await trio.open_tcp_stream(host, port)
    await s2.send_all(b"\xff\xff\xff\xff")  # announces a 4 GiB frame
    with trio.fail_after(5):
        assert await s2.receive_some(100) == b""
