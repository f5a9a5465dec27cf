"""RPC over mutual TLS: principals from certificates, ACLs, and server identity checks."""

import pytest
import trio

from proto import errors
from proto.rpc import RpcServer, open_rpc_pool


async def whoami(call):
    return {"principal": call.principal}


async def test_mtls_principal_and_acl(nursery, tls_for):
    srv = RpcServer({"whoami": whoami, "secret": whoami},
                    acl={"whoami": ["node-*", "gateway"], "secret": ["coordinator"]},
                    ssl_context=tls_for("kms").server_context(), name="kms")
    host, port = await nursery.start(srv.serve, "127.0.0.1", 0)
    async with open_rpc_pool(tls_for("node-1").client_context()) as pool:
        c = pool.client(host, port, "kms")
        assert await c.call("whoami") == {"principal": "node-1"}
        with pytest.raises(errors.AccessDenied):
            await c.call("secret")
    async with open_rpc_pool(tls_for("intruder").client_context()) as pool:
        with pytest.raises(errors.AccessDenied):
            await pool.client(host, port, "kms").call("whoami")
    # the server is not who we expect: the hostname check fails, nothing is sent
    async with open_rpc_pool(tls_for("node-1").client_context()) as pool:
        with pytest.raises(errors.Unavailable):
            await pool.client(host, port, "coordinator").call("whoami")


async def test_plaintext_client_is_refused(nursery, tls_for):
    srv = RpcServer({"whoami": whoami}, acl={"whoami": ["*"]},
                    ssl_context=tls_for("kms").server_context(), name="kms", handshake_timeout_s=2)
    host, port = await nursery.start(srv.serve, "127.0.0.1", 0)
    async with open_rpc_pool(None, connect_timeout_s=2, default_timeout_s=3) as pool:
        with pytest.raises((errors.Unavailable, errors.DeadlineExceeded)):
            await pool.client(host, port, "kms").call("whoami")


# -- the whole RPC contract over mutual TLS (the production transport: proto/tls_stream.py) -----


async def _digest(call):
    import hashlib

    h, n = hashlib.sha256(), 0
    async for chunk in call.body:
        h.update(chunk)
        n += len(chunk)
    return {"sha256": h.hexdigest(), "n": n}


async def _produce(call):
    from proto.rpc import Streamed

    async def gen():
        block = bytes(range(256)) * 1024
        for _ in range(call.args["blocks"]):
            await trio.sleep(call.args.get("pause", 0))
            yield block

    return Streamed({"blocks": call.args["blocks"]}, gen())


async def _slow(call):
    await trio.sleep(30)


async def _echo(call):
    return {"i": call.args.get("i")}


@pytest.fixture
async def tls_server(nursery, tls_for):
    from proto.rpc import WireLimits

    limits = WireLimits(max_frame_bytes=256 * 1024, chunk_bytes=64 * 1024, window=2)
    handlers = {"digest": _digest, "produce": _produce, "slow": _slow, "echo": _echo}
    srv = RpcServer(handlers, acl={m: ["node-*"] for m in handlers},
                    ssl_context=tls_for("kms").server_context(), name="kms", limits=limits)
    host, port = await nursery.start(srv.serve, "127.0.0.1", 0)
    async with open_rpc_pool(tls_for("node-1").client_context(), limits=limits) as pool:
        yield srv, pool.client(host, port, "kms")


async def test_tls_streams_both_ways_with_backpressure(tls_server):
    import hashlib

    srv, c = tls_server
    payload = bytes(range(256)) * 8192  # 2 MiB: 32 frames at 64 KiB under a window of 2

    async def body():
        for i in range(0, len(payload), 100_000):
            yield payload[i:i + 100_000]

    assert await c.call("digest", body=body()) == {"sha256": hashlib.sha256(payload).hexdigest(),
                                                   "n": len(payload)}
    async with c.stream("produce", {"blocks": 40}) as reply:
        got = b"".join([chunk async for chunk in reply.body])
    assert got == (bytes(range(256)) * 1024) * 40


async def test_tls_many_concurrent_calls_on_one_connection(tls_server):
    srv, c = tls_server
    results: dict[int, int] = {}

    async def one(i):
        results[i] = (await c.call("echo", {"i": i}))["i"]

    async with trio.open_nursery() as n:
        for i in range(300):
            n.start_soon(one, i)
    assert results == {i: i for i in range(300)}


async def test_tls_deadline_cancel_and_reply_stream_outliving_the_deadline(tls_server):
    srv, c = tls_server
    with pytest.raises(errors.DeadlineExceeded):
        await c.call("slow", timeout_s=0.2)
    # leaving a stream early cancels the call on the server; the connection stays usable
    async with c.stream("produce", {"blocks": 10_000}) as reply:
        async for _ in reply.body:
            break
    # the deadline bounds the handler, not the reply body that follows it
    async with c.stream("produce", {"blocks": 6, "pause": 0.1}, timeout_s=0.3) as reply:
        got = [chunk async for chunk in reply.body]
    assert len(b"".join(got)) == 6 * 256 * 1024
    assert await c.call("echo", {"i": 7}) == {"i": 7}
    with trio.fail_after(5):
        while srv._active:  # every call, cancelled or not, has finished on the server
            await trio.sleep(0.01)
