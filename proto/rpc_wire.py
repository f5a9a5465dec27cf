"""RPC message shapes and the machinery both ends share: a framed connection and body streams.

Theory of operation. One connection carries many concurrent calls, each named by an integer id
chosen by the client. Messages are msgpack lists (short, and cheap to check):

    REQ    [0, id, method, args, timeout_s|None, has_body, request_id]   client -> server
    RESP   [1, id, error|None, result, has_body]                          server -> client
    DATA   [2, id, bytes]          a body chunk: client->server = request body, reverse = reply body
    END    [3, id, error|None]     end of that body (an error if the sender gave up)
    CREDIT [4, id, n]              the receiver of a body grants n more DATA frames
    CANCEL [5, id]                 client -> server: abandon the call

Bodies are streamed with credit-based backpressure: a sender may have at most ``window`` DATA
frames of one body unacknowledged; the receiver grants credit back as its consumer takes chunks.
A receiver therefore never buffers more than ``window * chunk_bytes`` per body, and the
connection's reader never blocks on a slow consumer (a peer that exceeds its credit is a
protocol error). ``timeout_s`` is the caller's remaining deadline: the callee runs the handler
under it, so callees never outlive their callers.

Cost per message matters (a KMS call is a few hundred bytes each way): one receive hands every
complete frame it read to the dispatcher, and frames sent while a write is in progress are
coalesced into the next write (``FramedConnection.send``), in order.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import trio

from proto.errors import RemoteProtocolError, RpcError, Unavailable, from_wire
from proto.framing import DEFAULT_MAX_FRAME_BYTES, FrameDecoder, encode_frame

log = logging.getLogger(__name__)

REQ, RESP, DATA, END, CREDIT, CANCEL = range(6)
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class WireLimits:
    """Sizes shared by both ends of a connection."""

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    chunk_bytes: int = 1 * MiB  # largest DATA payload we send
    window: int = 4  # DATA frames in flight per body
    read_bytes: int = 256 * 1024

    def __post_init__(self) -> None:
        if self.chunk_bytes + 64 > self.max_frame_bytes:
            raise ValueError("chunk_bytes must leave room for the frame envelope")
        if self.window < 1:
            raise ValueError("window must be >= 1")


class FramedConnection:
    """A trio stream speaking frames; sends are serialised, coalesced and shielded from cancellation.

    A cancelled send must never leave half a frame on the wire, so the write is shielded; the
    stream is closed if it fails. Sends coalesce: while one task writes, frames that other
    tasks send are queued, and the writing task then hands them all to the stream in one
    ``send_all`` (one TLS record and one syscall for many small frames), in the order they were
    sent. Every ``send`` still returns only once its frame was handed to the stream (or raises
    ``Unavailable``), so a sender cannot run ahead of the connection: memory stays bounded by
    one frame per sending task.
    """

    def __init__(self, stream: trio.abc.Stream, limits: WireLimits, *, peer: str) -> None:
        self.stream = stream
        self.limits = limits
        self.peer = peer
        self._decoder = FrameDecoder(max_frame_bytes=limits.max_frame_bytes)
        self.closed = False
        self._out: list[bytes] = []  # frames queued behind the current write, in send order
        self._queued = 0  # sequence number of the last frame queued
        self._sent = 0  # sequence number of the last frame handed to the stream
        self._writing = False
        self._waiters = 0
        self._flushed = trio.Event()
        self.writes = 0  # writes to the stream (frames sent / writes = coalescing ratio)
        self._try_send = getattr(stream, "try_send", None)

    def _unavailable(self, what: str) -> Unavailable:
        err = Unavailable(f"connection to {self.peer} {what}")
        err.local = True  # type: ignore[attr-defined]
        return err

    async def send(self, msg: list[Any]) -> None:
        data = encode_frame(msg, max_frame_bytes=self.limits.max_frame_bytes)
        if self.closed:
            raise self._unavailable("is closed")
        if self._writing:
            # another task is writing: it writes our frame too before it stops
            self._out.append(data)
            self._queued += 1
            mine = self._queued
            self._waiters += 1
            try:
                with trio.CancelScope(shield=True):
                    while self._sent < mine and not self.closed:
                        await self._flushed.wait()
            finally:
                self._waiters -= 1
            if self._sent < mine:
                raise self._unavailable("lost")
            return
        self._writing = True
        try:
            # Fast path: a stream that can write without waiting (TlsStream) takes the frame at
            # once, with no cancel scope and no scheduling round; nobody else ran meanwhile, so
            # nothing was queued behind it.
            done = self._try_send(data) if self._try_send is not None else 0
            if done < len(data):
                with trio.CancelScope(shield=True):
                    await self.stream.send_all(data if done == 0 else memoryview(data)[done:])
                    while self._out:  # frames other tasks queued while we waited: one write
                        batch = self._out[0] if len(self._out) == 1 else b"".join(self._out)
                        upto = self._queued
                        self._out = []
                        await self.stream.send_all(batch)
                        self.writes += 1
                        self._sent = upto
                        self._wake()
            self.writes += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError) as exc:
            self.closed = True
            self._out = []
            self._wake()
            raise self._unavailable(f"lost: {exc}") from None
        finally:
            self._writing = False

    def _wake(self) -> None:
        if self._waiters:
            flushed, self._flushed = self._flushed, trio.Event()
            flushed.set()

    async def messages(self) -> AsyncIterator[list[Any]]:
        """Yield every well-formed message until EOF; raise RemoteProtocolError on junk."""
        while True:
            try:
                data = await self.stream.receive_some(self.limits.read_bytes)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return
            if not data:
                return
            for msg in self._decoder.feed(data):
                if not (isinstance(msg, list) and len(msg) >= 2 and isinstance(msg[0], int)
                        and isinstance(msg[1], int)):
                    raise RemoteProtocolError("message is not [type, id, ...]")
                yield msg

    async def aclose(self) -> None:
        self.closed = True
        self._wake()
        with trio.CancelScope(shield=True):
            try:
                await trio.aclose_forcefully(self.stream)
            except Exception:  # closing a broken stream may fail; nothing to do
                pass


class BodyStream:
    """The receiving side of a streamed body: an async iterator of bytes chunks.

    The connection's reader calls ``_push``/``_end`` (never blocking); the consumer iterates.
    Credit is granted back to the sender in batches as the consumer takes chunks.
    """

    def __init__(self, conn: FramedConnection, call_id: int, *, idle_timeout_s: float | None = None):
        self._conn = conn
        self._id = call_id
        self._queue: deque[bytes] = deque()
        self._ended = False
        self._error: RpcError | None = None
        self._wakeup = trio.Event()
        self._owed = 0  # credit consumed but not yet granted back
        self._in_flight = 0
        self._idle_timeout_s = idle_timeout_s
        self.bytes_received = 0

    # -- reader side -------------------------------------------------------------------------
    def _push(self, chunk: Any) -> None:
        if self._ended:
            return
        if not isinstance(chunk, bytes):
            raise RemoteProtocolError("DATA payload is not bytes")
        if len(chunk) > self._conn.limits.max_frame_bytes:
            raise RemoteProtocolError("DATA chunk too large")
        self._in_flight += 1
        if self._in_flight > self._conn.limits.window:
            raise RemoteProtocolError(f"peer exceeded its body credit on call {self._id}")
        self._queue.append(chunk)
        self._wakeup.set()

    def _end(self, error: RpcError | None) -> None:
        if not self._ended:
            self._ended = True
            self._error = error
            self._wakeup.set()

    # -- consumer side -----------------------------------------------------------------------
    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._queue:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wakeup = trio.Event()
            if self._idle_timeout_s is None:
                await self._wakeup.wait()
            else:
                with trio.move_on_after(self._idle_timeout_s) as scope:
                    await self._wakeup.wait()
                if scope.cancelled_caught:
                    raise Unavailable(f"body from {self._conn.peer} stalled")
        chunk = self._queue.popleft()
        self._in_flight -= 1
        self._owed += 1
        self.bytes_received += len(chunk)
        if self._owed >= max(1, self._conn.limits.window // 2) and not self._ended:
            owed, self._owed = self._owed, 0
            try:
                await self._conn.send([CREDIT, self._id, owed])
            except Unavailable:
                pass  # the reader will end the body with an error
        return chunk

    async def read_all(self, limit: int) -> bytes:
        """Collect the whole body; InvalidRequest-like error if it exceeds ``limit``."""
        parts: list[bytes] = []
        total = 0
        async for chunk in self:
            total += len(chunk)
            if total > limit:
                from proto.errors import InvalidRequest

                raise InvalidRequest(f"body larger than {limit} bytes", kind="EntityTooLarge")
            parts.append(chunk)
        return b"".join(parts)


@dataclass(slots=True)
class SendCredit:
    """The sending side's view of one body's credit."""

    credit: int
    closed: bool = False
    event: trio.Event = field(default_factory=trio.Event)

    def grant(self, n: Any) -> None:
        if not isinstance(n, int) or n <= 0 or n > 1_000_000:
            raise RemoteProtocolError("bad CREDIT")
        self.credit += n
        self.event.set()

    def close(self) -> None:
        self.closed = True
        self.event.set()

    async def acquire(self) -> bool:
        """Wait for one credit; False if the stream was closed by the other side."""
        while self.credit <= 0:
            if self.closed:
                return False
            self.event = trio.Event()
            await self.event.wait()
        if self.closed:
            return False
        self.credit -= 1
        return True


async def send_body(
    conn: FramedConnection, call_id: int, credit: SendCredit, body: AsyncIterable[bytes]
) -> None:
    """Stream ``body`` as DATA frames (split to chunk_bytes) under credit, then END.

    If the body iterator raises an RpcError, END carries it; other errors propagate after an
    END with an internal error so the receiver never waits forever.
    """
    size = conn.limits.chunk_bytes
    try:
        async for piece in body:
            view = memoryview(piece)
            for start in range(0, len(view), size):
                if not await credit.acquire():
                    return
                await conn.send([DATA, call_id, bytes(view[start:start + size])])
    except RpcError as exc:
        await conn.send([END, call_id, exc.to_wire()])
        return
    except BaseException:
        with trio.CancelScope(shield=True):
            try:
                await conn.send([END, call_id, {"code": "internal", "msg": "sender aborted"}])
            except Exception:
                pass
        raise
    await conn.send([END, call_id, None])


def decode_error(wire: Any, peer: str) -> RpcError | None:
    return None if wire is None else from_wire(wire, peer=peer)
