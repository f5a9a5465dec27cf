"""The gateway's Prometheus metrics, on the daemon's own registry (``proto.metrics.Metrics``).

Every per-bucket series uses a bounded ``bucket`` label (``gateway.topn.TopN``: the busiest
``top_buckets`` buckets by name, every other bucket ``other``, requests without a bucket
``""``); when a bucket leaves the top set its series are removed, so the number of series stays
bounded whatever clients do. The ``operation`` label takes the router's operation names (a
fixed set) and ``status_class`` is ``2xx``..``5xx``. The reference of every metric is
docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from prometheus_client import Counter, Gauge, Histogram

from gateway.topn import TopN
from proto.metrics import LATENCY_BUCKETS, Metrics

SESSION_MODES = ("ReadWrite", "ReadOnly")


class GatewayMetrics:
    """See the module docstring; one per gateway process."""

    def __init__(self, metrics: Metrics, *, top_buckets: int = 10) -> None:
        r = metrics.registry
        self.top = TopN(top_buckets)
        self.requests = Counter(
            "onezone_gateway_requests_total", "S3 requests by operation, status class and bucket (top N).",
            ["operation", "status_class", "bucket"], registry=r)
        self.duration = Histogram(
            "onezone_gateway_request_duration_seconds",
            "Full request duration, from the request head to the last byte of the response.",
            ["operation", "status_class", "bucket"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttfb = Histogram(
            "onezone_gateway_time_to_first_byte_seconds",
            "Time from the request head to the response head (headers sent).",
            ["operation"], buckets=LATENCY_BUCKETS, registry=r)
        self.bytes_in = Counter(
            "onezone_gateway_received_bytes_total", "Request body bytes received, by operation and bucket.",
            ["operation", "bucket"], registry=r)
        self.bytes_out = Counter(
            "onezone_gateway_sent_bytes_total", "Response body bytes sent, by operation and bucket.",
            ["operation", "bucket"], registry=r)
        self.sessions = Counter(
            "onezone_gateway_create_session_total", "CreateSession calls by session mode and outcome "
            "(ok or the S3 error code).", ["mode", "outcome"], registry=r)
        self.session_rejections = Counter(
            "onezone_gateway_session_rejections_total",
            "Sessions refused: CreateSession denied or invalid, or a session token rejected "
            "(expired, malformed, wrong bucket), by reason (the S3 error code).", ["reason"], registry=r)
        self.auth_failures = Counter(
            "onezone_gateway_auth_failures_total", "Authentication and authorization failures by S3 error code.",
            ["code"], registry=r)
        self.in_flight = Gauge("onezone_gateway_requests_in_flight", "Requests being served.", registry=r)
        self.connections = Gauge("onezone_gateway_connections_active", "Open client connections.", registry=r)
        self.connections_total = Counter("onezone_gateway_connections_total", "Client connections accepted.",
                                         registry=r)
        self.audit_write = Histogram(
            "onezone_gateway_audit_write_duration_seconds", "Time to append one S3 audit record.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.audit_failures = Counter("onezone_gateway_audit_write_failures_total",
                                      "S3 audit records that could not be written.", registry=r)
        self.stale_served = Counter("onezone_gateway_stale_served_total",
                                    "Cached entries served past their TTL because the coordinator was "
                                    "unreachable, by what (auth_context, bucket).", ["what"], registry=r)
        self.iam_eval = Histogram("onezone_gateway_iam_evaluation_seconds",
                                  "Time to evaluate the caller's IAM policies for one decision.",
                                  buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1),
                                  registry=r)
        for mode in SESSION_MODES:
            self.sessions.labels(mode, "ok")
        self.session_rejections.labels("AccessDenied")
        self.auth_failures.labels("SignatureDoesNotMatch")

    # -- per request -----------------------------------------------------------------------
    def bucket_label(self, bucket: str | None) -> str:
        """The label for ``bucket`` (counts one request for it); drops series of demoted buckets."""
        label = self.top.label(bucket)
        for gone in self.top.pop_dropped():
            self._remove_bucket(gone)
        return label

    def _remove_bucket(self, bucket: str) -> None:
        for metric in (self.requests, self.duration, self.bytes_in, self.bytes_out):
            # the label tuples of a metric: remove each one whose bucket is the demoted one
            for labels in list(metric._metrics):  # noqa: SLF001 (prometheus_client has no public lister)
                if labels[-1] == bucket:
                    metric.remove(*labels)

    def request_done(self, *, operation: str, bucket_label: str, status: int, seconds: float,
                     bytes_in: int, bytes_out: int) -> None:
        status_class = f"{status // 100}xx"
        self.requests.labels(operation, status_class, bucket_label).inc()
        self.duration.labels(operation, status_class, bucket_label).observe(seconds)
        if bytes_in:
            self.bytes_in.labels(operation, bucket_label).inc(bytes_in)
        if bytes_out:
            self.bytes_out.labels(operation, bucket_label).inc(bytes_out)

    def first_byte(self, operation: str, seconds: float) -> None:
        self.ttfb.labels(operation).observe(seconds)

    def create_session(self, mode: str, outcome: str) -> None:
        self.sessions.labels(mode if mode in SESSION_MODES else "invalid", outcome).inc()
        if outcome != "ok":
            self.session_rejections.labels(outcome).inc()

    # -- per connection --------------------------------------------------------------------
    def connection(self, delta: int) -> None:
        """``+1`` when a client connection opens, ``-1`` when it closes."""
        self.connections.inc(delta)
        if delta > 0:
            self.connections_total.inc()


class CountingBody:
    """Wraps a streamed response body and counts the bytes that went out."""

    def __init__(self, body: AsyncIterable[bytes]) -> None:
        self._body = body
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        async for chunk in self._body:
            self.sent += len(chunk)
            yield chunk
