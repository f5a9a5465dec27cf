"""Primary failover as the gateway sees it: which replica to ask, when a call may be retried,
and request bodies that can be sent twice.

Theory of operation
-------------------
Writes go to the bucket's primary (the first replica of the record). When the primary cannot
be reached, or answers that it is no longer the primary (``NotPrimary``: our cached record is
older than its), or that the write could not be replicated (``ReplicationFailed``: a replica
failed and the coordinator could not yet change the set), the coordinator is about to issue,
or has issued, a new epoch. The gateway then tells the coordinator which node it could not
reach (``ReportNodeUnreachable``, a hint that speeds up the failover), waits a little, reads
the bucket record afresh and sends the call again to the (new) primary, for up to
``FAILOVER_WAIT_S`` in all.

A write is retried only if its body can be sent again: ``ReplayableBody`` keeps the pieces it
has handed out while they total at most ``REPLAY_BUFFER_BYTES``, so a small body is replayed
whole and a large one is retried only if not a byte of it was consumed (a connection refused).
Retrying a write that may have been applied is safe for the operations that use it: a PUT or
a DELETE applied twice leaves the same state (a conditional PUT retried after it was applied
answers PreconditionFailed).

Reads go to the replicas in record order, those still ``syncing`` (incomplete copies) last;
the next one is tried when one cannot be reached or refuses (``ReplicaSyncing``, ``NotReplica``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from proto import errors as rpc_errors

FAILOVER_WAIT_S = 10.0
REPLAY_BUFFER_BYTES = 1024 * 1024
RETRY_KINDS = frozenset({"NotPrimary", "ReplicationFailed", "StaleEpoch"})
READ_NEXT_KINDS = frozenset({"ReplicaSyncing", "NotReplica"})


def read_order(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The replicas to read from: complete copies first (record order), syncing ones last."""
    syncing = set(record.get("syncing") or ())
    replicas = record["replicas"]
    return [r for r in replicas if r["node_id"] not in syncing] + [r for r in replicas if r["node_id"] in syncing]


def unreachable(exc: rpc_errors.RpcError) -> bool:
    """The node did not answer (as opposed to answering with an error)."""
    return isinstance(exc, rpc_errors.DeadlineExceeded) or (isinstance(exc, rpc_errors.Unavailable) and not exc.kind)


def write_retryable(exc: rpc_errors.RpcError) -> bool:
    return unreachable(exc) or exc.kind in RETRY_KINDS


def read_next(exc: rpc_errors.RpcError) -> bool:
    return isinstance(exc, rpc_errors.Unavailable) or exc.kind in READ_NEXT_KINDS


class ReplayableBody:
    """Wraps a request body so that a failed call can send it again (see the module docstring).

    Each ``attempt()`` is a fresh iterable: the pieces handed out before, then the rest of the
    source. ``replayable`` is False once more than ``limit`` bytes were handed out.
    """

    def __init__(self, source: AsyncIterable[bytes], limit: int = REPLAY_BUFFER_BYTES) -> None:
        self._source = source.__aiter__()
        self._limit = limit
        self._kept: list[bytes] = []
        self._size = 0
        self.consumed = False
        self.replayable = True  # False once too large to keep, or once the source itself failed

    async def _attempt(self) -> AsyncIterator[bytes]:
        for piece in list(self._kept):
            yield piece
        while True:
            try:
                piece = await self._source.__anext__()
            except StopAsyncIteration:
                return
            except BaseException:
                self.replayable = False  # the client's body failed: its error is the answer
                raise
            self.consumed = True
            if self.replayable:
                self._size += len(piece)
                if self._size <= self._limit:
                    self._kept.append(piece)
                else:
                    self.replayable = False
                    self._kept.clear()
            yield piece

    def attempt(self) -> AsyncIterator[bytes]:
        return self._attempt()

    async def aclose(self) -> None:
        """Close the source (its cleanup runs now, e.g. the HTTP layer's account of what was read)."""
        close = getattr(self._source, "aclose", None)
        if close is not None:
            await close()
