"""Revocation in seconds: the node polls the KMS's key-state feed and drops revoked bucket keys.

Responsibility
--------------
Every ``interval_s`` (1 s by default) call the KMS's cheap ``KeyStateChanges`` with the cursor
(``epoch``, ``version``) of the previous answer, and drop from the ``BucketKeyCache`` every
bucket key wrapped by a KMS key that is no longer ``Enabled`` (Disabled, PendingDeletion,
Deleted). The next GetObject/PutObject on such a bucket needs the KMS, which refuses with
``DisabledException`` / ``KMSInvalidStateException``: a Disable takes effect within
``interval_s`` + one RPC, well inside 5 seconds. Re-enabling needs nothing here: the next
request unwraps the bucket key again.

KMS outage: while polls fail, cached keys keep serving (the KMS cannot have told us
anything); once the last successful poll is older than ``grace_s``, every cached key is
dropped (fail closed: we could be missing a revocation), and operations that need the KMS
fail with ``KMSUnavailable`` (the gateway answers 503 SlowDown) until it is back.
Time is injected (``clock``); ``poll_once`` is the unit of work tests drive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from node.keycache import BucketKeyCache
from proto.errors import RpcError

log = logging.getLogger(__name__)

__all__ = ["KeyStateWatcher"]


class KeyStateWatcher:
    def __init__(self, kms: Any, cache: BucketKeyCache, *, interval_s: float = 1.0, grace_s: float = 300.0,
                 clock: Callable[[], float] = trio.current_time,
                 registry: CollectorRegistry | None = None) -> None:
        """Args:
            kms: an RpcClient of the KMS (anything with ``call(method, args, timeout_s=)``).
            cache: the node's bucket-key cache.
            interval_s: time between polls.
            grace_s: how long cached keys may outlive the last successful poll.
            clock: monotonic seconds (trio's clock by default, so MockClock tests work).
        """
        self._kms = kms
        self._cache = cache
        self.interval_s = interval_s
        self.grace_s = grace_s
        self._clock = clock
        self._epoch: str | None = None
        self._version: int | None = None
        self.last_ok: float | None = None
        self._dropped_for_outage = False
        reg = registry if registry is not None else CollectorRegistry()
        self.poll_failures = Counter("onezone_node_kms_state_poll_failures",
                                     "KeyStateChanges polls that failed.", registry=reg)
        self.kms_reachable = Gauge("onezone_node_kms_reachable",
                                   "1 if the last KeyStateChanges poll succeeded.", registry=reg)

    async def poll_once(self) -> None:
        """One poll: apply the changes, or account for a failure (never raises RpcError)."""
        if self.last_ok is None:
            self.last_ok = self._clock()  # the grace starts when the node does
        args: dict[str, Any] = {}
        if self._epoch is not None:
            args = {"epoch": self._epoch, "version": self._version}
        try:
            reply = await self._kms.call("KeyStateChanges", args, timeout_s=max(self.interval_s, 1.0))
            epoch, version, changes = reply["epoch"], reply["version"], reply["changes"]
        except RpcError as exc:
            self._failed(f"{type(exc).__name__}: {exc.message}")
            return
        except (KeyError, TypeError):
            self._failed("malformed KeyStateChanges reply")
            return
        for change in changes:
            if isinstance(change, dict) and change.get("KeyState") != "Enabled" and isinstance(change.get("KeyId"), str):
                self._cache.invalidate_key(change["KeyId"])
        self._epoch, self._version = epoch, version
        self.last_ok = self._clock()
        self._dropped_for_outage = False
        self.kms_reachable.set(1)

    def _failed(self, why: str) -> None:
        self.poll_failures.inc()
        self.kms_reachable.set(0)
        assert self.last_ok is not None
        if not self._dropped_for_outage and self._clock() - self.last_ok > self.grace_s:
            dropped = self._cache.invalidate()
            self._dropped_for_outage = True
            log.warning("event=kms_outage_grace_over dropped=%d grace_s=%s error=%s", dropped, self.grace_s, why)
        else:
            log.debug("event=kms_state_poll_failed error=%s", why)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll until cancelled."""
        task_status.started()
        while True:
            await self.poll_once()
            await trio.sleep(self.interval_s)
