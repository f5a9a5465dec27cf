"""Per-daemon Prometheus registry, the metrics every daemon shares, and the /metrics endpoint.

Each daemon owns one ``Metrics`` (its own ``CollectorRegistry``, never the global default, so
several daemons can live in one test process). It registers build info, process metrics,
start time, up-time and the RPC server histograms; daemon-specific metrics are created on
``metrics.registry`` by the daemon. ``serve_metrics`` is a tiny HTTP/1.1 server (h11) answering
``GET /metrics`` with the text exposition format and ``GET /healthz`` with ``ok``.
"""

from __future__ import annotations

import logging
import platform
import time
from typing import Any

import h11
import trio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

VERSION = "0.1.0"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, daemon: str, instance: str = "") -> None:
        self.daemon = daemon
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        Info("onezone_build", "Build information.", registry=self.registry).info(
            {"version": VERSION, "daemon": daemon, "instance": instance or daemon,
             "python": platform.python_version()})
        Gauge("onezone_start_time_seconds", "Unix time the daemon started.",
              registry=self.registry).set(time.time())
        started = time.monotonic()
        Gauge("onezone_uptime_seconds", "Seconds since the daemon started (monotonic clock).",
              registry=self.registry).set_function(lambda: time.monotonic() - started)
        self.rpc_duration = Histogram(
            "onezone_rpc_server_duration_seconds", "Time to serve an RPC call, by method and outcome.",
            ["method", "outcome"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.rpc_calls = Counter(
            "onezone_rpc_server_calls_total", "RPC calls served, by method and outcome.",
            ["method", "outcome"], registry=self.registry)

        self._rpc_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def observe_rpc(self, method: str, outcome: str, seconds: float) -> None:
        # labels() takes a lock and builds a key each time: keep the children (method names and
        # outcomes are few and known, so this stays small)
        children = self._rpc_children.get((method, outcome))
        if children is None:
            children = (self.rpc_duration.labels(method, outcome), self.rpc_calls.labels(method, outcome))
            if len(self._rpc_children) < 4096:
                self._rpc_children[(method, outcome)] = children
        children[0].observe(seconds)
        children[1].inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def serve_metrics(
    metrics: Metrics, host: str, port: int, *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve /metrics and /healthz over plain HTTP until cancelled."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started((host, listeners[0].socket.getsockname()[1]))
    await trio.serve_listeners(lambda s: _handle(metrics, s), listeners)


async def _handle(metrics: Metrics, stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    try:
        with trio.fail_after(30):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(16 * 1024)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request):
                    path = event.target.split(b"?")[0]
                    if event.method in (b"GET", b"HEAD") and path == b"/metrics":
                        body, ctype, status = metrics.exposition(), CONTENT_TYPE_LATEST, 200
                    elif path == b"/healthz":
                        body, ctype, status = b"ok\n", "text/plain", 200
                    else:
                        body, ctype, status = b"not found\n", "text/plain", 404
                    headers = [("content-type", ctype), ("content-length", str(len(body))),
                               ("connection", "close")]
                    out = conn.send(h11.Response(status_code=status, headers=headers))
                    if event.method != b"HEAD":
                        out += conn.send(h11.Data(data=body))
                    out += conn.send(h11.EndOfMessage())
                    await stream.send_all(out)
                    return
                if isinstance(event, h11.ConnectionClosed):
                    return
    except (h11.RemoteProtocolError, trio.TooSlowError, trio.BrokenResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)
