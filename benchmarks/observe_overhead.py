#!/usr/bin/env python3
"""What the gateway's per-request bookkeeping costs: S3 audit record (format + write), the
bounded bucket label, and the metric updates. Prints microseconds per request (median of 5 runs).

    .venv/bin/python benchmarks/observe_overhead.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from gateway.audit import AuditFile, S3Event, format_event
from gateway.metrics import GatewayMetrics
from proto.metrics import Metrics

N = 20_000


def bench(fn) -> float:
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) / N * 1e6)
    return statistics.median(runs)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        audit = AuditFile(Path(d) / "audit.jsonl", max_bytes=64 << 20, keep=2)
        ev = S3Event(operation="GetObject", time=time.time(), request_id="0123456789ABCDEF", event_id="e" * 36,
                     region="us-east-1", account_id="000000000000", status=200, source_ip="127.0.0.1",
                     user_agent="Boto3/1.36 md/Botocore#1.36", host="127.0.0.1:9000", bucket="bench--use1-az4--x-s3",
                     key="dir/object-0001.bin", access_key_id="ASIAEXAMPLE", user_arn="arn:aws:iam::0:user/u",
                     user_name="u", session_mode="ReadWrite", bytes_out=4096)

        def audit_loop() -> None:
            for _ in range(N):
                audit.write(format_event(ev))

        print(f"audit record (format + write + flush): {bench(audit_loop):.1f} us/request")
        audit.close()
    m = GatewayMetrics(Metrics("gateway"), top_buckets=10)
    buckets = [f"b{i}--use1-az4--x-s3" for i in range(50)]

    def metrics_loop() -> None:
        for i in range(N):
            label = m.bucket_label(buckets[i % 50] if i % 3 else buckets[0])
            m.request_done(operation="GetObject", bucket_label=label, status=200, seconds=0.002,
                           bytes_in=0, bytes_out=4096)
            m.first_byte("GetObject", 0.001)

    print(f"metrics (bucket label + counters + 2 histograms): {bench(metrics_loop):.1f} us/request")


if __name__ == "__main__":
    main()
