"""proto/rpc_wire.FramedConnection: coalesced sends keep order, many frames per receive,
failures reach every waiting sender; over trio memory streams and over real mutual TLS."""

import pytest
import trio
import trio.testing

from proto import errors
from proto.rpc_wire import FramedConnection, WireLimits

from tests.integration.test_tls_stream import tls_pair

LIMITS = WireLimits()


async def test_concurrent_sends_coalesce_in_order():
    # a memory stream whose send_all blocks until the reader pulls: while the first frame is
    # being written, the others queue up and go in one write, in the order they were sent
    a, b = trio.testing.lockstep_stream_pair()
    sender = FramedConnection(a, LIMITS, peer="b")
    receiver = FramedConnection(b, LIMITS, peer="a")
    got: list[list] = []
    called: list[int] = []

    async def send(i):
        called.append(i)  # send queues its frame before its first checkpoint: this is wire order
        await sender.send([2, i, b"payload-%d" % i])

    async def read(n):
        async for msg in receiver.messages():
            got.append(msg)
            if len(got) == n:
                return

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(send, i)
        await read(50)
    assert sorted(called) == list(range(50))
    assert [m[1] for m in got] == called
    assert [m[2] for m in got] == [b"payload-%d" % i for i in called]
    assert sender.writes < 50  # frames were coalesced into fewer writes


async def test_many_frames_in_one_receive_are_all_dispatched():
    a, b = trio.testing.memory_stream_pair()
    receiver = FramedConnection(b, LIMITS, peer="a")
    from proto.framing import encode_frame

    await a.send_all(b"".join(encode_frame([3, i, None]) for i in range(200)))
    await a.aclose()
    seen = [msg[1] async for msg in receiver.messages()]
    assert seen == list(range(200))


async def test_a_broken_stream_fails_every_queued_sender():
    a, b = trio.testing.lockstep_stream_pair()
    sender = FramedConnection(a, LIMITS, peer="b")
    failures: list[BaseException] = []

    async def send(i):
        try:
            await sender.send([2, i, b"x"])
        except errors.Unavailable as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(send, i)
        await trio.sleep(0.05)  # all blocked: the first writing, the others queued behind it
        await b.aclose()  # the peer goes away
    assert len(failures) == 5 and sender.closed
    with pytest.raises(errors.Unavailable):
        await sender.send([2, 99, b"late"])


async def test_coalesced_frames_over_mutual_tls(nursery, tls_for):
    cli, srv = await tls_pair(nursery, tls_for)
    sender = FramedConnection(cli, LIMITS, peer="kms")
    receiver = FramedConnection(srv, LIMITS, peer="node-1")
    n = 300
    got: list[int] = []
    called: list[int] = []

    async def send(i):
        called.append(i)
        # big frames fill the socket: later sends queue behind a blocked write
        await sender.send([2, i, bytes([i % 256]) * 60_000])

    async def read():
        async for msg in receiver.messages():
            got.append(msg[1])
            if len(got) == n:
                return

    with trio.fail_after(20):
        async with trio.open_nursery() as inner:
            inner.start_soon(read)
            async with trio.open_nursery() as senders:
                for i in range(n):
                    senders.start_soon(send, i)
    assert got == called and sorted(called) == list(range(n))
    assert sender.writes < n
    await sender.aclose()
    await receiver.aclose()
