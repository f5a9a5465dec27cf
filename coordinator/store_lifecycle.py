"""Store table for the operator's intent about nodes: ``draining`` or ``removed``.

A mixin of ``coordinator.store.SqliteStore`` (same transactions). A node without a row is
``active``. The replica sets' sync state (which replicas are still being copied to) is a column
of the bucket row (``syncing``), so it changes atomically with the replica set and its epoch.
"""

from __future__ import annotations

import json
from typing import Any

from coordinator.store_errors import NoSuchRow

ADMIN_STATES = ("active", "draining", "removed")

LIFECYCLE_SCHEMA_V2 = """;
CREATE TABLE node_admin (
    node_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('draining', 'removed')),
    since REAL NOT NULL
);
ALTER TABLE buckets ADD COLUMN syncing TEXT NOT NULL DEFAULT '[]'
"""


class LifecycleTables:
    _tx: Any  # provided by SqliteStore

    def set_node_admin_state(self, node_id: str, state: str, since: float) -> None:
        """Record ``draining`` / ``removed``, or forget the row for ``active``."""
        if state not in ADMIN_STATES:
            raise ValueError(f"unknown node admin state {state!r}")
        with self._tx() as db:
            if state == "active":
                db.execute("DELETE FROM node_admin WHERE node_id = ?", (node_id,))
            else:
                db.execute("INSERT INTO node_admin VALUES (?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET "
                           "state = excluded.state, since = excluded.since", (node_id, state, since))

    def node_admin_states(self) -> dict[str, tuple[str, float]]:
        with self._tx() as db:
            return {r[0]: (r[1], r[2]) for r in db.execute("SELECT node_id, state, since FROM node_admin")}

    def delete_node(self, node_id: str) -> None:
        """Forget a node's registration (its ``removed`` mark stays). Raises NoSuchRow."""
        with self._tx() as db:
            if db.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,)).rowcount == 0:
                raise NoSuchRow(f"node {node_id} is not registered")

    def buckets_by_id(self, bucket_ids: list[bytes]) -> tuple[dict[bytes, tuple[str, list[str], list[str], int]], int]:
        """For the stale-copy collection of nodes (``coordinator.gc_service``): the buckets among
        ``bucket_ids`` that exist, as ``{bucket_id: (name, replicas, syncing, epoch)}``, and how
        many buckets the catalog holds in all (read in one transaction: one consistent view)."""
        out: dict[bytes, tuple[str, list[str], list[str], int]] = {}
        with self._tx() as db:
            for bucket_id in bucket_ids:
                row = db.execute("SELECT name, replicas, syncing, epoch FROM buckets WHERE bucket_id = ?",
                                 (bucket_id,)).fetchone()
                if row is not None:
                    out[bucket_id] = (row[0], json.loads(row[1]), json.loads(row[2]), row[3])
            total = db.execute("SELECT COUNT(*) FROM buckets").fetchone()[0]
        return out, total
