"""Node lifecycle: drain, activate and remove nodes; the reconciler that keeps every bucket's
replica set on live nodes; the cluster status the operator sees.

The decisions are ``coordinator.reconcile.plan`` (pure); this module applies them: every
``reconcile_interval_s`` it plans each bucket and writes each change as a new replica set with
``epoch + 1`` and ``version + 1`` (compare-and-swap on the version: a concurrent change simply
waits for the next round), including primary failovers. The data copy itself is the one repair
path of ``coordinator.sync_driver``: a replica added to a set is marked ``syncing``, the driver
asks the primary to copy the bucket to it (``SyncReplica``), and the primary reports the copy
complete (``ReportReplicaSynced``, ``report_synced`` here: ``syncing`` is cleared with
``version + 1``; the epoch does not change, the replica set is the same).

Gateways and nodes that cannot reach a node report it (``ReportNodeUnreachable``): a primary
that is ``suspect`` and reported is failed over at once instead of after ``down_after_s``.

Admin states persist in the store (``node_admin``) and are mirrored in ``Membership`` so that
placement never picks a draining or removed node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import trio

from coordinator import reconcile
from coordinator.membership import ADMIN_ACTIVE, ADMIN_DRAINING, ADMIN_REMOVED, Membership, NodeState
from coordinator.store import BucketRecord, SqliteStore
from coordinator.store_errors import NoSuchRow, VersionMismatch
from proto.errors import Conflict, NotFound

log = logging.getLogger(__name__)


class NodeLifecycle:
    def __init__(self, *, store: SqliteStore, membership: Membership, clock: Callable[[], float],
                 replicas: int, replace_after_s: float,
                 observe_change: Callable[[str], None] | None = None,
                 observe_under_replicated: Callable[[dict[str, int]], None] | None = None,
                 on_added: Callable[[], None] | None = None) -> None:
        self._store = store
        self._membership = membership
        self._clock = clock
        self._want = replicas
        self._replace_after_s = replace_after_s
        self._observe_change = observe_change or (lambda reason: None)
        self._observe_under = observe_under_replicated or (lambda counts: None)
        self._lock = trio.Lock()
        self._on_added = on_added or (lambda: None)
        self._reported: dict[str, float] = {}  # node id -> when a gateway or node last could not reach it
        self.wake = trio.Event()

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args)

    async def load(self) -> None:
        for node_id, (state, _) in (await self._db(self._store.node_admin_states)).items():
            self._membership.set_admin(node_id, state)

    # -- operator commands -------------------------------------------------------------------
    async def set_admin(self, node_id: str, state: str) -> None:
        if self._membership.get(node_id) is None and state != ADMIN_ACTIVE:
            raise NotFound(f"node {node_id} is not registered", kind="UnknownNode")
        await self._db(self._store.set_node_admin_state, node_id, state, self._clock())
        self._membership.set_admin(node_id, state)
        log.info("event=node_admin node=%s state=%s", node_id, state)

    async def remove(self, node_id: str, *, force: bool) -> dict[str, Any]:
        """Remove a node: refused while it holds replicas and is alive, unless ``force``."""
        node = self._membership.get(node_id)
        if node is None:
            raise NotFound(f"node {node_id} is not registered", kind="UnknownNode")
        holding = [b.name for b in await self._db(self._store.list_buckets) if node_id in b.replicas]
        state = self._membership.state_at(node, self._clock())
        if holding and state is not NodeState.DOWN and not force:
            raise Conflict(f"node {node_id} still holds replicas of {len(holding)} bucket(s) "
                           f"(e.g. {holding[0]}); drain it first, or force", kind="NodeNotDrained")
        await self.set_admin(node_id, ADMIN_REMOVED)
        await self.reconcile_once()
        if not any(node_id in b.replicas for b in await self._db(self._store.list_buckets)):
            await self._forget(node_id)
        return {"buckets": len(holding)}

    async def _forget(self, node_id: str) -> None:
        try:
            await self._db(self._store.delete_node, node_id)
        except NoSuchRow:
            pass
        self._membership.forget(node_id)
        log.info("event=node_removed node=%s", node_id)

    # -- reconciliation ----------------------------------------------------------------------
    async def reconcile_once(self) -> list[tuple[str, reconcile.Change]]:
        """Plan and apply one round; returns the changes written."""
        async with self._lock:
            views = self._membership.view(self._clock())
            suspects = self._suspects()
            done = []
            for b in await self._db(self._store.list_buckets):
                change = reconcile.plan(b.name, b.zone, b.replicas, b.syncing, want=self._want, views=views,
                                        replace_after_s=self._replace_after_s, suspects=suspects)
                if change is None:
                    continue
                updated = replace(b, replicas=change.replicas, syncing=change.syncing, epoch=b.epoch + 1,
                                  version=b.version + 1)
                try:
                    await self._db(lambda: self._store.update_bucket(updated, expected_version=b.version))
                except (VersionMismatch, NoSuchRow):
                    continue  # changed or deleted meanwhile: next round
                self._observe_change(change.reason)
                log.info("event=replica_set_changed bucket=%s epoch=%d reason=%s replicas=%s added=%s dropped=%s",
                         b.name, updated.epoch, change.reason, ",".join(change.replicas),
                         ",".join(change.added) or "-", ",".join(change.dropped) or "-")
                done.append((b.name, change))
            if any(change.added for _, change in done):
                self._on_added()
            for node_id in [v.node.node_id for v in views if v.admin == ADMIN_REMOVED]:
                if not any(node_id in b.replicas for b in await self._db(self._store.list_buckets)):
                    await self._forget(node_id)
            await self._publish_under_replicated()
            return done

    async def _publish_under_replicated(self) -> None:
        counts: dict[str, int] = {}
        for b in await self._under_replicated():
            counts[b.zone] = counts.get(b.zone, 0) + 1
        self._observe_under(counts)

    async def _under_replicated(self) -> list[BucketRecord]:
        nodes = {v.node.node_id: v for v in self._membership.view(self._clock())}
        return [b for b in await self._db(self._store.list_buckets)
                if reconcile.healthy_count(b.replicas, b.syncing, nodes) < self._want]

    def _suspects(self) -> set[str]:
        now = self._clock()
        horizon = self._membership.down_after_s
        for node_id in [n for n, t in self._reported.items() if now - t > horizon]:
            del self._reported[node_id]
        return set(self._reported)

    def report_unreachable(self, node_id: str) -> None:
        """A gateway or node could not reach ``node_id``: a hint (the heartbeats decide) that
        lets a ``suspect`` primary be failed over now; wakes the reconciler."""
        if self._membership.get(node_id) is None:
            return
        self._reported[node_id] = self._clock()
        self.wake.set()

    async def run(self, interval_s: float) -> None:
        while True:
            with trio.move_on_after(interval_s):
                await self.wake.wait()
            self.wake = trio.Event()
            try:
                await self.reconcile_once()
            except Exception:  # a bad round must not stop the loop; the next one retries
                log.exception("event=reconcile_failed")

    # -- node-facing -------------------------------------------------------------------------
    async def report_synced(self, reporter: str, node_id: str, bucket: str, epoch: int) -> dict[str, Any]:
        """The primary ``reporter`` has copied ``bucket`` to ``node_id`` at ``epoch``: clear its
        ``syncing`` mark (version + 1; same replica set, same epoch).

        Raises:
            NotFound: NoSuchBucket. Conflict: NotPrimary (the reporter is not the primary),
            NotReplica, StaleEpoch (the set changed since: the driver asks for the copy again).
        """
        async with self._lock:
            b = await self._db(self._store.get_bucket, bucket)
            if b is None:
                raise NotFound(f"the bucket {bucket} does not exist", kind="NoSuchBucket")
            if b.replicas[0] != reporter:
                raise Conflict(f"{reporter} is not the primary of {bucket}", kind="NotPrimary")
            if node_id not in b.replicas:
                raise Conflict(f"{node_id} is not a replica of {bucket}", kind="NotReplica")
            if epoch != b.epoch:
                raise Conflict(f"bucket {bucket} is at epoch {b.epoch}, not {epoch}", kind="StaleEpoch")
            if node_id in b.syncing:
                updated = replace(b, syncing=tuple(n for n in b.syncing if n != node_id), version=b.version + 1)
                try:
                    await self._db(lambda: self._store.update_bucket(updated, expected_version=b.version))
                except VersionMismatch:
                    raise Conflict(f"bucket {bucket} changed meanwhile", kind="StaleEpoch") from None
                log.info("event=replica_synced bucket=%s node=%s epoch=%d", bucket, node_id, updated.epoch)
                b = updated
        await self.reconcile_once()  # a drain may complete now
        return {"epoch": b.epoch, "version": b.version}

    async def assignments(self, node_id: str) -> list[dict[str, Any]]:
        return [{"name": b.name, "epoch": b.epoch, "version": b.version, "syncing": node_id in b.syncing}
                for b in await self._db(self._store.list_buckets) if node_id in b.replicas]

    # -- status ------------------------------------------------------------------------------
    async def status(self, zones: set[str]) -> dict[str, Any]:
        views = self._membership.view(self._clock())
        buckets = await self._db(self._store.list_buckets)
        holding: dict[str, int] = {}
        syncing: dict[str, int] = {}
        for b in buckets:
            for r in b.replicas:
                holding[r] = holding.get(r, 0) + 1
            for r in b.syncing:
                syncing[r] = syncing.get(r, 0) + 1
        nodes = [{"node_id": v.node.node_id, "zone": v.node.zone, "state": v.state.value, "admin": v.admin,
                  "host": v.node.host, "port": v.node.port, "capacity_bytes": v.node.capacity_bytes,
                  "free_bytes": v.node.free_bytes, "used_bytes": v.node.used_bytes,
                  "heartbeat_age_s": v.age_s, "replicas": holding.get(v.node.node_id, 0),
                  "syncing": syncing.get(v.node.node_id, 0)} for v in views]
        by_id = {v.node.node_id: v for v in views}
        under = [{"name": b.name, "zone": b.zone, "epoch": b.epoch, "replicas": list(b.replicas),
                  "syncing": list(b.syncing), "healthy": reconcile.healthy_count(b.replicas, b.syncing, by_id)}
                 for b in buckets if reconcile.healthy_count(b.replicas, b.syncing, by_id) < self._want]
        zone_rows = []
        for zone in sorted(zones | {v.node.zone for v in views}):
            states = {s.value: sum(1 for v in views if v.node.zone == zone and v.state is s) for s in NodeState}
            zone_rows.append({"zone": zone, "nodes": states,
                              "buckets": sum(1 for b in buckets if b.zone == zone)})
        draining = [{"node_id": v.node.node_id, "remaining_buckets": holding.get(v.node.node_id, 0)}
                    for v in views if v.admin in (ADMIN_DRAINING, ADMIN_REMOVED)]
        return {"zones": zone_rows, "nodes": nodes, "under_replicated": under, "draining": draining,
                "replicas": self._want, "replace_after_s": self._replace_after_s}
