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
* ``AddReplica`` (operator): a named node (or the best spare by rendezvous order) joins; a node
  already in the set is marked ``syncing`` again (a re-sync: the primary compares and copies
  what differs).

A node that joins is marked ``syncing`` in the same change, and ``kick`` wakes the one repair
path (``coordinator.sync_driver``): the primary copies every object of the bucket to the
newcomer (sealed chunks as stored: no KMS call) while the bucket stays readable and writable,
and reports the copy complete, which clears ``syncing``.

Pure decisions (``without``, ``with_node``) are separate from the catalog I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from coordinator.catalog import Catalog
from coordinator.store import BucketRecord
from proto.errors import InvalidRequest, Unavailable

log = logging.getLogger(__name__)



def without(record: BucketRecord, node_id: str, *, min_replicas: int) -> BucketRecord | None:
    """The record with ``node_id`` out of its set (new epoch); None if it is not in the set.

    Raises:
        Unavailable: kind ``InsufficientReplicas`` if fewer than ``min_replicas`` would remain.
    """
    if node_id not in record.replicas:
        return None
    rest = tuple(n for n in record.replicas if n != node_id)
    complete = [n for n in rest if n not in record.syncing]
    if len(complete) < min_replicas:
        raise Unavailable(f"bucket {record.name}: removing {node_id} would leave {len(complete)} complete cop"
                          f"{'y' if len(complete) == 1 else 'ies'} (minimum {min_replicas})",
                          kind="InsufficientReplicas")
    return replace(record, replicas=rest, syncing=tuple(n for n in record.syncing if n != node_id),
                   epoch=record.epoch + 1)


def with_node(record: BucketRecord, node_id: str) -> BucketRecord | None:
    """The record with ``node_id`` appended (never primary) and syncing, new epoch; a node already
    in the set (not the primary) is marked syncing again; None if nothing changes."""
    if node_id in record.replicas:
        if node_id == record.replicas[0] or node_id in record.syncing:
            return None
        return replace(record, syncing=(*record.syncing, node_id), epoch=record.epoch + 1)
    return replace(record, replicas=(*record.replicas, node_id), syncing=(*record.syncing, node_id),
                   epoch=record.epoch + 1)


class ReplicaSets:
    def __init__(self, catalog: Catalog, *, replicas: int, min_replicas: int,
                 kick: Callable[[], None] | None = None) -> None:
        self._catalog = catalog
        self._replicas = replicas
        self._min = min(min_replicas, replicas)
        self._kick = kick or (lambda: None)

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
                smaller = replace(smaller, replicas=(*smaller.replicas, spare), syncing=(*smaller.syncing, spare))
            return smaller

        record, changed = await self._catalog.change_bucket(name, change)
        wire = self._catalog.to_wire(record)
        if changed:
            log.warning("event=replica_removed bucket=%s node=%s reporter=%s epoch=%d replicas=%s", name, node_id,
                        reporter, record.epoch, ",".join(record.replicas))
            for new in added:
                log.info("event=replica_added bucket=%s node=%s epoch=%d (replacement)", name, new, record.epoch)
            if added:
                self._kick()
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
            log.info("event=replica_added bucket=%s node=%s epoch=%d (syncing)", name, chosen[0], record.epoch)
        self._kick()
        return wire
