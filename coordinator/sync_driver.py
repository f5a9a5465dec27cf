"""The one repair path: every replica marked ``syncing`` gets its copy from the bucket's primary.

Whoever adds a replica to a bucket's set (the reconciler replacing a lost node, a drain, a
node that came back, ``ReportReplicaFailure``'s spare, the operator's ``AddReplica``) marks it
``syncing`` in the same record change and calls ``kick()``. ``SyncDriver`` then asks the
bucket's primary to copy the bucket to each syncing replica (``SyncReplica {bucket, epoch,
target}``, node/repair.py). The primary answers at once and copies in the background; when the
copy is complete it reports ``ReportReplicaSynced {node_id: target, bucket, epoch}`` and the
coordinator clears ``syncing`` (``NodeLifecycle.report_synced``).

The driver is level-triggered: each round (every ``interval_s``, or at once after a kick) it
asks again for every syncing replica still listed, so a lost call, a primary that restarted, a
sync that stopped on an error, a report refused because the epoch moved on (another change of
the set, a failover: the new primary is asked), all converge without any bookkeeping. The
primary ignores a request for a copy it is already running, and a repeated copy only moves
what differs (the primary merges its index with the target's).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from coordinator.membership import Membership, NodeState
from coordinator.store import BucketRecord
from proto.errors import RpcError

log = logging.getLogger(__name__)

CallNode = Callable[[str, str, int, str, dict[str, Any]], Awaitable[Any]]
"""``await call(node_id, host, port, method, args)``."""

MAX_PARALLEL = 16


class SyncDriver:
    def __init__(self, *, list_buckets: Callable[[], Awaitable[list[BucketRecord]]], membership: Membership,
                 clock: Callable[[], float], call_node: CallNode) -> None:
        self._list = list_buckets
        self._membership = membership
        self._clock = clock
        self._call = call_node
        self._wake = trio.Event()
        self._limiter = trio.CapacityLimiter(MAX_PARALLEL)
        self._failing: set[tuple[str, str]] = set()  # (bucket, target) whose last request failed: logged once
        self.requests = 0

    def kick(self) -> None:
        """Run a round now (a replica was just added)."""
        self._wake.set()

    async def run(self, interval_s: float) -> None:
        while True:
            with trio.move_on_after(interval_s):
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                await self.drive_once()
            except Exception:  # a bad round must not stop the loop; the next one retries
                log.exception("event=sync_round_failed")

    async def drive_once(self) -> int:
        """Ask the primaries for every pending copy; returns how many requests were sent."""
        now = self._clock()
        jobs = []
        for b in await self._list():
            if not b.syncing or b.replicas[0] in b.syncing:
                continue  # nothing to copy, or no complete primary (the reconciler fails over first)
            node = self._membership.get(b.replicas[0])
            if node is None or self._membership.state_at(node, now) is NodeState.DOWN:
                continue
            jobs += [(b, node, target) for target in b.syncing]
        async with trio.open_nursery() as nursery:
            for b, node, target in jobs:
                nursery.start_soon(self._ask, b, node, target)
        return len(jobs)

    async def _ask(self, b: BucketRecord, node: Any, target: str) -> None:
        async with self._limiter:
            self.requests += 1
            try:
                r = await self._call(node.node_id, node.host, node.port, "SyncReplica",
                                     {"bucket": b.name, "epoch": b.epoch, "target": target})
            except RpcError as exc:
                if (b.name, target) not in self._failing:
                    log.warning("event=sync_request_failed bucket=%s primary=%s target=%s kind=%s error=%s",
                                b.name, node.node_id, target, exc.kind, exc.message)
                self._failing.add((b.name, target))
                return
            self._failing.discard((b.name, target))
            if isinstance(r, dict) and r.get("started"):
                log.info("event=sync_requested bucket=%s primary=%s target=%s epoch=%d", b.name, node.node_id,
                         target, b.epoch)
