"""Primary-side replication of one write: stream the sealed chunks to every other replica.

Theory of operation
-------------------
``Fanout`` runs one ``ReplicaPut`` call per peer, in parallel, inside a nursery the caller
owns. Each call's request body is fed from a small memory channel (``window`` chunks), so a
slow replica applies backpressure to the whole write and no replica ever has more than a few
chunks in flight: the object is never held in memory.

1. ``send(sealed)`` queues a sealed chunk for every peer (waiting for room);
2. ``close_inputs()`` after the last chunk: every body then waits at a barrier;
3. ``commit(trailer)`` releases the barrier: each body sends the trailer (see
   ``node.sealed_stream``) and ends cleanly; each replica then makes the object durable and
   commits it, and answers. ``commit`` returns when every replica answered OK.

**Small objects** (the body ended before a first chunk was cut): ``start`` is never called;
``commit_whole(data)`` sends each peer one ``ReplicaPut`` whose ``data`` argument is the whole
body (the sealed chunk(s), then the trailer), with no streamed body: one request and one reply
per replica instead of a stream of frames, with the same fencing and failure handling.

Any failure (a replica refuses, cannot be reached, times out) closes that peer's channel and
awaits ``on_failure(node_id, error)``: the caller reports the replica to the coordinator, and
if a new epoch without it was issued, returns True: the peer is *excluded* and the write goes
on with the rest. Otherwise the next ``send`` or ``commit`` raises ``Unavailable`` kind
``ReplicationFailed`` (``failure()``), and the caller can stop reading a body it can no longer
store. To abort, the
caller cancels the nursery: each in-progress body then ends with an error and the replicas
discard what they received (nothing becomes visible). The window where a replica has
committed while another failed after the trailer is closed the same way: the failed one
leaves the set (and is re-copied if it joins again, ``node.repair``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import trio

from proto.errors import RpcError, Unavailable

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Peer:
    node_id: str
    client: Any
    send: trio.MemorySendChannel[bytes]
    receive: trio.MemoryReceiveChannel[bytes]
    done: trio.Event = field(default_factory=trio.Event)
    trailer_sent: bool = False
    ok: bool = False
    excluded: bool = False  # failed, and out of the replica set now (a new epoch without it)
    error: RpcError | None = None


class Fanout:
    """See the module docstring. ``start(nursery)`` launches the calls."""

    def __init__(self, peers: list[tuple[str, Any]], args: dict[str, Any], *, window: int = 2,
                 request_id: str | None = None, on_failure: Any = None, method: str = "ReplicaPut") -> None:
        self._method = method  # ReplicaAppend streams the same way (node.append)
        self._peers: list[_Peer] = []
        for node_id, client in peers:
            send, receive = trio.open_memory_channel[bytes](window)
            self._peers.append(_Peer(node_id, client, send, receive))
        self._args = args
        self._request_id = request_id
        self._on_failure = on_failure
        self._release = trio.Event()
        self._trailer: bytes | None = None
        self.started = False

    @property
    def targets(self) -> list[str]:
        return [p.node_id for p in self._peers]

    def start(self, nursery: trio.Nursery) -> None:
        self.started = True
        for peer in self._peers:
            nursery.start_soon(self._replicate, peer)

    async def commit_whole(self, data: bytes) -> None:
        """Send every peer the whole body (sealed chunks + trailer) in one call and wait until
        each answered; ReplicationFailed unless all of them committed (or were excluded)."""
        assert not self.started, "commit_whole replaces start/send/commit"
        async with trio.open_nursery() as nursery:
            for peer in self._peers:
                nursery.start_soon(self._replicate, peer, data)
        if self.failed():
            raise self.failure()

    async def _replicate(self, peer: _Peer, whole: bytes | None = None) -> None:
        deadline = trio.current_effective_deadline()
        timeout = None if math.isinf(deadline) else max(0.001, deadline - trio.current_time())
        try:
            if whole is not None:
                await peer.client.call(self._method, {**self._args, "data": whole}, timeout_s=timeout,
                                       request_id=self._request_id)
                peer.trailer_sent = True
            else:
                await peer.client.call(self._method, self._args, body=self._body(peer), timeout_s=timeout,
                                       request_id=self._request_id)
            if not peer.trailer_sent:
                raise Unavailable(f"{peer.node_id} answered ReplicaPut before the end of the body")
            peer.ok = True
        except RpcError as exc:
            peer.error = exc
            log.warning("event=replication_failed peer=%s code=%s kind=%s error=%s", peer.node_id,
                        exc.code.value, exc.kind, exc.message)
            if self._on_failure is not None:
                peer.excluded = bool(await self._on_failure(peer.node_id, exc))
        finally:
            peer.receive.close()
            peer.done.set()

    async def _body(self, peer: _Peer) -> AsyncIterator[bytes]:
        async for sealed in peer.receive:
            yield sealed
        await self._release.wait()
        if self._trailer is None:  # pragma: no cover - commit() always sets it before release
            raise Unavailable("write aborted", kind="ReplicationAborted")
        yield self._trailer
        peer.trailer_sent = True

    def failure(self) -> Unavailable:
        failed = [p for p in self._peers if p.done.is_set() and not p.ok and not p.excluded]
        detail = "; ".join(f"{p.node_id}: {p.error.message if p.error else 'no answer'}" for p in failed)
        return Unavailable(f"replication failed ({detail})", kind="ReplicationFailed")

    async def send(self, sealed: bytes) -> None:
        """Queue one sealed chunk for every peer; ReplicationFailed if one has failed."""
        for peer in self._peers:
            if peer.excluded:
                continue
            try:
                await peer.send.send(sealed)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await peer.done.wait()  # its failure report may still be running
                if not peer.excluded:
                    raise self.failure() from None

    def close_inputs(self) -> None:
        for peer in self._peers:
            peer.send.close()

    def failed(self) -> bool:
        return any(p.done.is_set() and not p.ok and not p.excluded for p in self._peers)

    async def commit(self, trailer: bytes) -> None:
        """Release the trailer to every peer and wait until each answered; ReplicationFailed
        unless all of them committed."""
        self.close_inputs()
        if self.failed():
            raise self.failure()
        self._trailer = trailer
        self._release.set()
        for peer in self._peers:
            await peer.done.wait()
        if self.failed():
            raise self.failure()


async def replicate_call(obj: Any, rec: Any, method: str, args: dict[str, Any], request_id: str | None,
                         *, op: str) -> None:
    """Send one metadata-only replica call (``ReplicaRename``, ``ReplicaComplete``...) to every
    other replica of the epoch in parallel. A replica that fails is reported to the coordinator
    (``obj._report_failure``); if it cannot be excluded the write fails with ReplicationFailed."""
    failures: list[str] = []

    async def one(peer: Any) -> None:
        try:
            await obj._peer_client(peer).call(method, args, request_id=request_id)
        except RpcError as exc:
            obj._metrics.replication_failures.inc()
            log.warning("event=replication_failed op=%s peer=%s kind=%s error=%s", op, peer.node_id,
                        exc.kind, exc.message)
            if await obj._report_failure(rec, peer.node_id, exc) is None:
                failures.append(f"{peer.node_id}: {exc.message}")

    async with trio.open_nursery() as nursery:
        for peer in rec.peers(obj.node_id):
            nursery.start_soon(one, peer)
    if failures:
        obj._buckets.invalidate(rec.name)
        raise Unavailable(f"replication failed ({'; '.join(failures)})", kind="ReplicationFailed")
