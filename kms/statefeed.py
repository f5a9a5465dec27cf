"""The key-state change feed that lets nodes drop revoked bucket keys within a second.

Responsibility
--------------
Pure logic (no I/O, no clock). The KMS notes every change of a key's usability here (Enable,
Disable, ScheduleKeyDeletion, CancelKeyDeletion, deletion); callers poll ``changes_since``
with the cursor of their previous answer (the ``KeyStateChanges`` RPC, one cheap call a
second per node) and drop cached keys of every key that is no longer ``Enabled``.

Theory of operation
-------------------
A feed has an ``epoch`` (random, new at every daemon start) and a ``version`` counter bumped
per change; the last ``max_changes`` changes are kept. A poll with the current epoch and a
version still in the window gets just the newer changes (``full: false``). A first poll, a
poll after a KMS restart (other epoch) or one that fell out of the window gets a full snapshot
(``full: true``): the state of every key that is not ``Enabled``, so the caller re-derives its
view from scratch. Deleted keys appear with state ``Deleted``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["StateFeed"]


class StateFeed:
    def __init__(self, epoch: str, snapshot: Callable[[], Iterable[tuple[str, str]]], *,
                 max_changes: int = 10_000) -> None:
        """Args:
            epoch: this daemon run's id.
            snapshot: ``() -> [(key_id, state)]`` of every key (for full answers).
            max_changes: how many changes an incremental poll can catch up on.
        """
        self.epoch = epoch
        self.version = 0
        self._snapshot = snapshot
        self._changes: deque[tuple[int, str, str]] = deque(maxlen=max_changes)

    def note(self, key_id: str, state: str) -> None:
        """Record that ``key_id`` is now in ``state`` (``Deleted`` once deleted)."""
        self.version += 1
        self._changes.append((self.version, key_id, state))

    def changes_since(self, epoch: str | None, version: int | None) -> dict[str, Any]:
        """The answer of ``KeyStateChanges``: ``{epoch, version, full, changes: [{KeyId, KeyState}]}``."""
        oldest = self._changes[0][0] if self._changes else self.version + 1
        incremental = (epoch == self.epoch and version is not None
                       and version <= self.version and version + 1 >= oldest)
        if incremental:
            assert version is not None
            changes = [{"KeyId": k, "KeyState": s} for v, k, s in self._changes if v > version]
        else:
            changes = [{"KeyId": k, "KeyState": s} for k, s in self._snapshot() if s != "Enabled"]
        return {"epoch": self.epoch, "version": self.version, "full": not incremental, "changes": changes}
