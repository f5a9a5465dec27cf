"""Client call deadlines: one timer task for all the calls of a pool.

Why: a ``trio.CancelScope`` with a deadline around every call costs about 10 us of trio
bookkeeping (a cancel status, registering and unregistering the deadline, two checks), a good
part of a small RPC call's client CPU. The calls of one ``RpcPool`` share one timer instead.

Theory of operation. ``DeadlineHeap`` (pure, no trio) keeps one entry ``[deadline, seq, target]``
per armed call in a binary heap. A call that finishes in time ``disarm``s its entry: the entry's
reference to the call is dropped at once, the entry itself stays in the heap (removing it from
the middle would cost O(n)); dead entries are popped when they reach the top, and the heap is
rebuilt without them whenever they outnumber the live ones, so it never holds more than
``2 * live + COMPACT_SLACK`` entries. ``DeadlineTimer.run`` is the task: it sleeps until the
earliest *live* deadline (one cancel scope per wake-up, not per call), hands every expired target
to ``on_expire``, and sleeps again; arming a deadline earlier than the one it sleeps towards
wakes it to re-aim. Calls armed with one timeout arrive in deadline order, so the task wakes
about once per timeout period, not once per call.

A target expires at most once and never after it was disarmed; ``on_expire`` runs in the timer
task and must not block (the client's sets a flag and an event).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

import trio

COMPACT_SLACK = 64  # dead entries tolerated beyond the live count before a rebuild


class DeadlineHeap:
    """Armed deadlines, earliest first; see the module docstring."""

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []
        self._live = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        """Live (armed, not yet expired or disarmed) entries."""
        return self._live

    @property
    def size(self) -> int:
        """Entries held, dead ones included (bounded: see the module docstring)."""
        return len(self._heap)

    def arm(self, deadline: float, target: Any) -> list[Any]:
        """Arm ``target`` (not None) to expire at ``deadline``; returns the entry for ``disarm``."""
        if target is None:
            raise ValueError("target must not be None")
        entry = [deadline, next(self._seq), target]
        heapq.heappush(self._heap, entry)
        self._live += 1
        return entry

    def disarm(self, entry: list[Any]) -> None:
        """Forget an entry (idempotent; a no-op once it expired)."""
        if entry[2] is None:
            return
        entry[2] = None
        self._live -= 1
        self._maybe_compact()

    def pop_expired(self, now: float) -> list[Any]:
        """Remove and return the targets whose deadline is ``<= now``, earliest first."""
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if entry[2] is not None:
                out.append(entry[2])
                entry[2] = None
                self._live -= 1
        if out:
            self._maybe_compact()
        return out

    def _maybe_compact(self) -> None:
        if len(self._heap) > 2 * self._live + COMPACT_SLACK:
            self._heap = [e for e in self._heap if e[2] is not None]
            heapq.heapify(self._heap)

    def next_deadline(self) -> float:
        """The earliest live deadline (``math.inf`` when none); drops dead entries on top."""
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf


class DeadlineTimer:
    """A ``DeadlineHeap`` served by one task (``run``, started in the pool's nursery)."""

    def __init__(self, on_expire: Callable[[Any], None]) -> None:
        self._heap = DeadlineHeap()
        self._on_expire = on_expire
        self._aim = math.inf  # the deadline the task sleeps towards
        self._wakeup = trio.Event()

    @property
    def heap(self) -> DeadlineHeap:
        return self._heap

    def arm(self, deadline: float, target: Any) -> list[Any]:
        entry = self._heap.arm(deadline, target)
        if deadline < self._aim:
            self._aim = deadline
            self._wakeup.set()
        return entry

    def disarm(self, entry: list[Any]) -> None:
        self._heap.disarm(entry)

    async def run(self) -> None:
        while True:
            for target in self._heap.pop_expired(trio.current_time()):
                self._on_expire(target)
            self._aim = self._heap.next_deadline()
            self._wakeup = trio.Event()
            with trio.move_on_at(self._aim):
                await self._wakeup.wait()
