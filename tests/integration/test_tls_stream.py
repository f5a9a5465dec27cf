"""proto/tls_stream.py: TLS over a non-blocking SSLSocket, with real sockets and certificates."""

import hashlib
import ssl

import pytest
import trio
import trio.testing

from proto.tls_stream import TlsStream, wrap_tls


async def tls_pair(nursery, tls_for, *, client="node-1", server_name="kms", server="kms"):
    """A connected (client, server) pair of handshaken TlsStreams over loopback TCP."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    send, recv = trio.open_memory_channel(1)

    async def accept():
        tcp = await listeners[0].accept()
        srv = wrap_tls(tcp, tls_for(server).server_context(), server_side=True)
        try:
            await srv.do_handshake()
        except trio.BrokenResourceError as exc:
            await srv.aclose()
            await send.send(exc)
            return
        await send.send(srv)

    nursery.start_soon(accept)
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    cli = wrap_tls(tcp, tls_for(client).client_context(), server_hostname=server_name)
    try:
        await cli.do_handshake()
    finally:
        srv = await recv.receive()
        await listeners[0].aclose()
    return cli, srv


async def test_handshake_identity_and_both_directions(nursery, tls_for):
    cli, srv = await tls_pair(nursery, tls_for)
    assert isinstance(cli, TlsStream) and isinstance(srv, TlsStream)
    subject = dict(x[0] for x in srv.getpeercert()["subject"])
    assert subject["commonName"] == "node-1"
    await cli.send_all(b"ping")
    assert await srv.receive_some(100) == b"ping"
    await srv.send_all(b"pong")
    assert await cli.receive_some(100) == b"pong"
    await cli.aclose()
    assert await srv.receive_some(100) == b""  # end of stream
    await srv.aclose()


async def test_large_transfers_block_and_resume_intact(nursery, tls_for):
    """Megabytes in both directions at once: the socket buffers fill, OpenSSL says 'want write',
    the stream waits and resumes; every byte arrives once, in order."""
    cli, srv = await tls_pair(nursery, tls_for)
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB

    async def send_then_close(stream):
        await stream.send_all(payload)

    async def drain(stream, out):
        h, n = hashlib.sha256(), 0
        while n < len(payload):
            chunk = await stream.receive_some(70_000)
            assert chunk
            h.update(chunk)
            n += len(chunk)
        out.append(h.hexdigest())

    got: list[str] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(send_then_close, cli)
            n.start_soon(send_then_close, srv)
            n.start_soon(drain, cli, got)
            n.start_soon(drain, srv, got)
    assert got == [hashlib.sha256(payload).hexdigest()] * 2
    await cli.aclose()
    await srv.aclose()


async def test_try_send_never_waits_and_send_all_finishes(nursery, tls_for):
    cli, srv = await tls_pair(nursery, tls_for)
    assert cli.try_send(b"small") == 5
    assert await srv.receive_some(100) == b"small"
    # nobody reads: a big buffer cannot go at once; the rest goes with send_all
    big = b"x" * (8 * 1024 * 1024)
    done = cli.try_send(big)
    assert done < len(big)
    received = bytearray()

    async def reader():
        while len(received) < len(big):
            received.extend(await srv.receive_some(1 << 20))

    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(reader)
            await cli.send_all(memoryview(big)[done:])
    assert bytes(received) == big
    await cli.aclose()
    await srv.aclose()


async def test_misuse_and_close(nursery, tls_for):
    cli, srv = await tls_pair(nursery, tls_for)
    async with trio.open_nursery() as n:
        n.start_soon(srv.receive_some, 10)
        await trio.sleep(0.05)
        with pytest.raises(trio.BusyResourceError):
            await srv.receive_some(10)
        await cli.send_all(b"x")
    # closing wakes a blocked receiver with ClosedResourceError, and later use fails the same way
    async with trio.open_nursery() as n:
        async def blocked():
            with pytest.raises(trio.ClosedResourceError):
                await srv.receive_some(10)
        n.start_soon(blocked)
        await trio.sleep(0.05)
        await srv.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await srv.send_all(b"late")
    with pytest.raises(trio.ClosedResourceError):
        srv.try_send(b"late")
    await cli.aclose()


async def test_untrusted_or_wrong_server_fails_the_handshake(nursery, tls_for):
    # the client expects "coordinator" but talks to "kms": certificate name check fails
    with pytest.raises(trio.BrokenResourceError) as ei:
        await tls_pair(nursery, tls_for, server_name="coordinator")
    assert isinstance(ei.value.__cause__, ssl.SSLError)


async def test_records_queued_after_a_short_read_are_all_received(nursery, tls_for):
    """A short read makes the next receive ask the kernel first: records already queued behind
    it must still be read at once, and one that arrives later must wake the waiting reader."""
    cli, srv = await tls_pair(nursery, tls_for)
    for word in (b"one", b"two", b"three"):
        assert cli.try_send(word) == len(word)  # one TLS record each
    await trio.sleep(0.05)  # all three are in the server's kernel buffer
    got = bytearray()
    with trio.fail_after(5):
        while len(got) < len(b"onetwothree"):
            got += await srv.receive_some(1000)
    assert bytes(got) == b"onetwothree"

    async def late():
        await trio.sleep(0.05)
        await cli.send_all(b"late")

    nursery.start_soon(late)
    with trio.fail_after(5):
        assert await srv.receive_some(1000) == b"late"
    await cli.aclose()
    assert await srv.receive_some(1000) == b""
    await srv.aclose()


async def test_nothing_to_read_sees_openssl_and_kernel_buffers(nursery, tls_for):
    cli, srv = await tls_pair(nursery, tls_for)
    assert srv._nothing_to_read()
    await cli.send_all(b"x" * 1000)
    await trio.sleep(0.05)
    assert not srv._nothing_to_read()  # queued in the kernel
    assert await srv.receive_some(100) == b"x" * 100
    assert not srv._nothing_to_read()  # the rest of the record is decrypted inside OpenSSL
    assert await srv.receive_some(1000) == b"x" * 900
    assert srv._nothing_to_read()
    await cli.aclose()
    await srv.aclose()


async def test_receive_and_send_are_checkpoints_whether_or_not_they_wait(nursery, tls_for):
    cli, srv = await tls_pair(nursery, tls_for)
    await cli.send_all(b"ready")
    await trio.sleep(0.05)
    with trio.testing.assert_checkpoints():
        assert await srv.receive_some(100) == b"ready"  # answered without waiting

    async def later():
        await trio.sleep(0.05)
        await cli.send_all(b"later")

    nursery.start_soon(later)
    with trio.testing.assert_checkpoints():
        assert await srv.receive_some(100) == b"later"  # waited for readability
    with trio.testing.assert_checkpoints():
        await srv.send_all(b"reply")
    # cancelled before it starts: raises Cancelled and consumes nothing
    await cli.send_all(b"kept")
    await trio.sleep(0.05)
    with trio.CancelScope() as scope:
        scope.cancel()
        await srv.receive_some(100)
    assert scope.cancelled_caught
    assert await srv.receive_some(100) == b"kept"
    await cli.aclose()
    await srv.aclose()
