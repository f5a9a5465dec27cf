"""Replica sets and epochs: a failed replica leaves, a replacement joins, the primary re-copies.

Theory of operation
-------------------
A bucket's record carries its replica set (primary first) and an ``epoch``; every change of the
set bumps the epoch (and the record's ``version``), and the nodes refuse writes that carry an
older epoch than the one they know (``StaleEpoch``).

* ``ReportReplicaFailure`` (from the bucket's primary, for the epoch it writes under): the
  failed replica leaves the set, in a new epoch, so the primary completes the write on the
  rest. Never below ``min_replicas`` copies (default 2; the operator may allow 1): the report
  is then refused (``Unavailable`` kind ``InsufficientReplicas``) and the write fails. A report
  for an older epoch, or for a node already out of the set, changes nothing and returns the
  current record (the primary retries its write against it). When the zone has a spare live
  node, it joins as the replacement in the same epoch change.
* ``AddReplica`` (operator): a named node (or the best spare by rendezvous order) joins.

After a node joins, the coordinator tells the primary (``SyncReplica``, fire and forget: the
primary runs the copy in the background, throttled, and exposes its progress as metrics), and
the primary copies every object of the bucket to the newcomer (sealed chunks as stored: no KMS
call) while the bucket stays readable and writable.

Pure decisions (``without``, ``with_node``) are separate from the catalog I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from coordinator.catalog import Catalog
from coordinator.store import BucketRecord
from proto.errors import InvalidRequest, RpcError, Unavailable

log = logging.getLogger(__name__)

Notify = Callable[[dict[str, Any], str], Awaitable[None]]
"""``await notify(bucket wire record, new node_id)``: tell the primary to copy to the newcomer."""


def without(record: BucketRecord, node_id: str, *, min_replicas: int) -> BucketRecord | None:
    """The record with ``node_id`` out of its set (new epoch); None if it is not in the set.

    Raises:
        Unavailable: kind ``InsufficientReplicas`` if fewer than ``min_replicas`` would remain.
    """
    if node_id not in record.replicas:
        return None
    rest = tuple(n for n in record.replicas if n != node_id)
    if len(rest) < min_replicas:
        raise Unavailable(f"bucket {record.name}: removing {node_id} would leave {len(rest)} cop"
                          f"{'y' if len(rest) == 1 else 'ies'} (minimum {min_replicas})",
                          kind="InsufficientReplicas")
    return replace(record, replicas=rest, epoch=record.epoch + 1)


def with_node(record: BucketRecord, node_id: str) -> BucketRecord | None:
    """The record with ``node_id`` appended (never primary), new epoch; None if already in."""
    if node_id in record.replicas:
        return None
    return replace(record, replicas=(*record.replicas, node_id), epoch=record.epoch + 1)


class ReplicaSets:
    def __init__(self, catalog: Catalog, *, replicas: int, min_replicas: int, notify: Notify | None = None) -> None:
        self._catalog = catalog
        self._replicas = replicas
        self._min = min(min_replicas, replicas)
        self._notify = notify

    async def report_failure(self, *, reporter: str, name: str, epoch: int, node_id: str) -> dict[str, Any]:
        """See the module docstring. Returns the current bucket record (wire form).

        Raises:
            InvalidRequest: kind ``NotPrimary`` if ``reporter`` is not the primary;
            Unavailable: kind ``InsufficientReplicas``; NotFound: ``NoSuchBucket``.
        """
        added: list[str] = []

        def change(record: BucketRecord) -> BucketRecord | None:
            added.clear()
            if record.replicas[0] != reporter:
                raise InvalidRequest(f"{reporter} is not the primary of {name}", kind="NotPrimary")
            if epoch != record.epoch or node_id == reporter:
                return None
            smaller = without(record, node_id, min_replicas=self._min)
            if smaller is None:
                return None
            spare = self._catalog.place_extra(name, record.zone, exclude=record.replicas)
            if spare is not None and len(smaller.replicas) < self._replicas:
                added.append(spare)
                smaller = replace(smaller, replicas=(*smaller.replicas, spare))
            return smaller

        record, changed = await self._catalog.change_bucket(name, change)
        wire = self._catalog.to_wire(record)
        if changed:
            log.warning("event=replica_removed bucket=%s node=%s reporter=%s epoch=%d replicas=%s", name, node_id,
                        reporter, record.epoch, ",".join(record.replicas))
            for new in added:
                log.info("event=replica_added bucket=%s node=%s epoch=%d (replacement)", name, new, record.epoch)
                await self._tell_primary(wire, new)
        return wire

    async def add_replica(self, *, name: str, node_id: str | None = None) -> dict[str, Any]:
        """Add ``node_id`` (or the best spare live node of the zone) to the bucket's set.

        Raises:
            Unavailable: kind ``InsufficientCapacity`` when no spare node exists;
            InvalidRequest: kind ``InvalidArgument`` for an unknown or full node.
        """
        chosen: list[str] = []

        def change(record: BucketRecord) -> BucketRecord | None:
            target = node_id
            if target is None:
                target = self._catalog.place_extra(name, record.zone, exclude=record.replicas)
                if target is None:
                    raise Unavailable(f"zone {record.zone} has no spare live node for {name}",
                                      kind="InsufficientCapacity")
            elif target not in record.replicas and not self._catalog.placeable(record.zone, target):
                raise InvalidRequest(f"{target} is not a live node of zone {record.zone} with free space",
                                     kind="InvalidArgument")
            chosen[:] = [target]
            return with_node(record, target)

        record, changed = await self._catalog.change_bucket(name, change)
        wire = self._catalog.to_wire(record)
        if changed:
            log.info("event=replica_added bucket=%s node=%s epoch=%d", name, chosen[0], record.epoch)
        if chosen[0] != record.replicas[0]:
            await self._tell_primary(wire, chosen[0])  # again if it was already in: a re-sync
        return wire

    async def _tell_primary(self, wire: dict[str, Any], new_node: str) -> None:
        if self._notify is None:
            return
        try:
            await self._notify(wire, new_node)
        except RpcError as exc:  # AddReplica with the same node asks again
            log.warning("event=sync_notify_failed bucket=%s node=%s error=%s", wire["name"], new_node, exc.message)
