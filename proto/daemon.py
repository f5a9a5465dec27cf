"""What every daemon's ``main`` shares: logging set-up, the READY announcement, signals, drain.

A daemon provides ``serve(lifecycle, task_status)``: it opens its resources, starts its
listeners (port 0 allowed) inside its own nursery, registers drain callbacks with
``lifecycle.on_shutdown`` and calls ``task_status.started(info)`` with a dict of the addresses it
bound. ``run_daemon`` then prints exactly one line ``READY {json}`` on stdout (the harness and
``onezone up`` read it), waits for SIGTERM or SIGINT, runs the drain callbacks under a grace
deadline, and cancels the rest. Exit status 0 after a clean drain.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from proto.logs import configure_logging

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._drains: list[Callable[[float], Awaitable[None]]] = []
        self.stopping = trio.Event()

    def on_shutdown(self, drain: Callable[[float], Awaitable[None]]) -> None:
        """Register ``drain(grace_s)``, called in reverse order of registration."""
        self._drains.append(drain)

    async def drain(self) -> None:
        self.stopping.set()
        with trio.move_on_after(self.grace_s + 1):
            for fn in reversed(self._drains):
                try:
                    await fn(self.grace_s)
                except Exception:
                    log.exception("event=drain_failed")


Serve = Callable[..., Awaitable[None]]


def announce(daemon: str, info: dict[str, Any]) -> None:
    print("READY " + json.dumps({"daemon": daemon, **info}, sort_keys=True), flush=True)


def run_daemon(daemon: str, serve: Serve, *, grace_s: float, log_json: bool = False,
               log_level: str = "INFO", instance: str = "") -> int:
    configure_logging(daemon=daemon, instance=instance or daemon, json_format=log_json, level=log_level)

    async def main() -> None:
        life = Lifecycle(grace_s)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                info = await nursery.start(serve, life)
                announce(daemon, info)
                log.info("event=ready %s", " ".join(f"{k}={v}" for k, v in sorted(info.items())))
                async for signum in signals:
                    log.info("event=stopping signal=%s grace_s=%s", signal.Signals(signum).name, grace_s)
                    break
                await life.drain()
                nursery.cancel_scope.cancel()
        log.info("event=stopped")

    try:
        trio.run(main)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        # trio wraps a failure of serve() in an exception group: show the real cause
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        log.error("event=fatal error=%s message=%s", type(exc).__name__, exc)
        print(f"onezone {daemon}: fatal: {exc}", file=sys.stderr)
        return 1
    return 0


def endpoint_str(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
