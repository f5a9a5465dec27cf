"""Single flight: concurrent requests for the same missing value share one fetch.

The first caller for a key (the leader) runs the fetch; the others wait for its outcome. A
failure is handed to every waiter (as a copy, so concurrent raisers do not share one traceback)
and is not remembered: the next call fetches again. If the leader is cancelled, the waiters do
not hang: one of them becomes the next leader.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import trio

from proto.errors import Internal, RpcError

T = TypeVar("T")


@dataclass(slots=True)
class _Flight:
    done: trio.Event = field(default_factory=trio.Event)
    ok: bool = False
    result: Any = None
    error: BaseException | None = None


def _copy_error(err: BaseException) -> BaseException:
    if isinstance(err, RpcError):
        copy = type(err)(err.message, kind=err.kind, retryable=err.retryable, details=err.details)
        if hasattr(err, "peer"):
            copy.peer = err.peer  # type: ignore[attr-defined]
        return copy
    return Internal("shared fetch failed")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight] = {}

    def in_flight(self, key: Hashable) -> bool:
        return key in self._flights

    async def run(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> T:
        while True:
            flight = self._flights.get(key)
            if flight is None:
                flight = _Flight()
                self._flights[key] = flight
                try:
                    flight.result = await fetch()
                    flight.ok = True
                    return flight.result
                except Exception as exc:
                    flight.error = exc
                    raise
                finally:
                    del self._flights[key]
                    flight.done.set()
            await flight.done.wait()
            if flight.ok:
                return flight.result
            if flight.error is not None:
                raise _copy_error(flight.error)
            # the leader was cancelled: try again (this task may become the leader)
