"""Membership: register this node with the coordinator, then heartbeat.

``Membership.run`` is a nursery task of the daemon. It registers (``RegisterNode`` with the
node's advertised address and capacity), retrying with capped, jittered exponential backoff
for as long as the coordinator does not answer (it may start after the node: the node serves
from its first second, and buckets simply cannot resolve until the coordinator is up). Then it
sends ``Heartbeat`` every interval (the coordinator's ``heartbeat_interval_s`` if it gives
one); ``NotFound`` kind ``UnknownNode`` (the coordinator lost or expired us) re-registers.
Failures are logged once per streak, not once per attempt.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import trio

from proto.errors import AccessDenied, NotFound, RpcError

log = logging.getLogger(__name__)


class Membership:
    def __init__(self, coordinator: Any, *, node_id: str, zone: str, host: str, port: int, capacity_bytes: int,
                 usage: Callable[[], tuple[int, int]], interval_s: float, min_backoff_s: float = 0.1,
                 max_backoff_s: float = 5.0, rng: Callable[[], float] = random.random) -> None:
        self._coord = coordinator
        self._node_id = node_id
        self._zone = zone
        self._host = host
        self._port = port
        self._capacity = capacity_bytes
        self._usage = usage
        self._interval_s = interval_s
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._rng = rng
        self.registered = trio.Event()
        self.registrations = 0
        self.heartbeats = 0

    async def run(self) -> None:
        while True:
            interval = await self._register()
            await self._heartbeat(interval)

    async def _register(self) -> float:
        delay = self._min_backoff_s
        failures = 0
        while True:
            used, free = self._usage()
            try:
                result = await self._coord.call("RegisterNode", {
                    "node_id": self._node_id, "zone": self._zone, "host": self._host, "port": self._port,
                    "capacity_bytes": self._capacity, "free_bytes": free})
            except RpcError as exc:
                failures += 1
                if isinstance(exc, AccessDenied):
                    log.error("event=register_refused node_id=%s error=%s (does node_id match the certificate?)",
                              self._node_id, exc.message)
                elif failures == 1:
                    log.warning("event=register_failed node_id=%s code=%s error=%s (retrying)", self._node_id,
                                exc.code.value, exc.message)
                await trio.sleep(delay * (0.8 + 0.4 * self._rng()))
                delay = min(delay * 2, self._max_backoff_s)
                continue
            self.registrations += 1
            self.registered.set()
            interval = result.get("heartbeat_interval_s") if isinstance(result, dict) else None
            if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval <= 3600:
                interval = self._interval_s
            log.info("event=registered node_id=%s zone=%s address=%s:%d attempts=%d heartbeat_interval_s=%s",
                     self._node_id, self._zone, self._host, self._port, failures + 1, interval)
            return float(interval)

    async def _heartbeat(self, interval: float) -> None:
        failing = False
        while True:
            await trio.sleep(interval)
            used, free = self._usage()
            try:
                await self._coord.call("Heartbeat", {"node_id": self._node_id, "free_bytes": free,
                                                     "used_bytes": used})
            except NotFound as exc:
                if exc.kind == "UnknownNode":
                    log.warning("event=heartbeat_unknown_node node_id=%s (re-registering)", self._node_id)
                    return
                self._log_failure(exc, failing)
                failing = True
            except RpcError as exc:
                self._log_failure(exc, failing)
                failing = True
            else:
                self.heartbeats += 1
                if failing:
                    log.info("event=heartbeat_recovered node_id=%s", self._node_id)
                failing = False

    def _log_failure(self, exc: RpcError, failing: bool) -> None:
        if not failing:
            log.warning("event=heartbeat_failed node_id=%s code=%s error=%s", self._node_id, exc.code.value,
                        exc.message)
