#!/usr/bin/env python3
"""Build ops/grafana/onezone-dashboard.json (the committed file is this script's output).

    python3 ops/grafana/build_dashboard.py          rewrite the JSON
    python3 ops/grafana/build_dashboard.py --check  exit 1 if the committed JSON is stale

Every panel queries metrics that exist (tests/cluster/test_prometheus.py runs each query against
a real Prometheus scraping a real cluster). Queries use Grafana's ``$__rate_interval``; the
datasource is the provisioned one (uid ``onezone-prometheus``, ops/grafana/provisioning/).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "onezone-dashboard.json"
DS = {"type": "prometheus", "uid": "onezone-prometheus"}
R = "$__rate_interval"


def q(expr: str, legend: str = "", ref: str = "A") -> dict:
    return {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "range": True}


# (row title, [(panel title, unit, [targets], kind)])
ROWS: list[tuple[str, list[tuple[str, str, list[dict], str]]]] = [
    ("S3 gateway", [
        ("Request rate by operation", "reqps",
         [q(f"sum by (operation) (rate(onezone_gateway_requests_total[{R}]))", "{{operation}}")], "timeseries"),
        ("Errors by operation and status class", "reqps",
         [q(f'sum by (operation, status_class) (rate(onezone_gateway_requests_total{{status_class=~"4xx|5xx"}}[{R}]))',
            "{{operation}} {{status_class}}")], "timeseries"),
        ("Error ratio (5xx)", "percentunit",
         [q(f'(sum(rate(onezone_gateway_requests_total{{status_class="5xx"}}[{R}])) or vector(0)) '
            f"/ clamp_min(sum(rate(onezone_gateway_requests_total[{R}])), 1e-9)", "5xx ratio")], "stat"),
        ("Latency p50 / p99 by operation", "s",
         [q(f"histogram_quantile(0.50, sum by (operation, le) (rate(onezone_gateway_request_duration_seconds_bucket[{R}])))",
            "p50 {{operation}}", "A"),
          q(f"histogram_quantile(0.99, sum by (operation, le) (rate(onezone_gateway_request_duration_seconds_bucket[{R}])))",
            "p99 {{operation}}", "B")], "timeseries"),
        ("Time to first byte p50 / p99 by operation", "s",
         [q(f"histogram_quantile(0.50, sum by (operation, le) (rate(onezone_gateway_time_to_first_byte_seconds_bucket[{R}])))",
            "p50 {{operation}}", "A"),
          q(f"histogram_quantile(0.99, sum by (operation, le) (rate(onezone_gateway_time_to_first_byte_seconds_bucket[{R}])))",
            "p99 {{operation}}", "B")], "timeseries"),
        ("Top buckets by request rate", "reqps",
         [q(f'topk(10, sum by (bucket) (rate(onezone_gateway_requests_total{{bucket!=""}}[{R}])))', "{{bucket}}")],
         "timeseries"),
        ("Top buckets: p99 latency", "s",
         [q(f'histogram_quantile(0.99, sum by (bucket, le) (rate(onezone_gateway_request_duration_seconds_bucket{{bucket!=""}}[{R}])))',
            "{{bucket}}")], "timeseries"),
        ("Bytes in / out", "Bps",
         [q(f"sum(rate(onezone_gateway_received_bytes_total[{R}]))", "in", "A"),
          q(f"sum(rate(onezone_gateway_sent_bytes_total[{R}]))", "out", "B")], "timeseries"),
        ("Connections and requests in flight", "short",
         [q("sum(onezone_gateway_connections_active)", "connections", "A"),
          q("sum(onezone_gateway_requests_in_flight)", "in flight", "B")], "timeseries"),
        ("CreateSession rate by mode and outcome", "reqps",
         [q(f"sum by (mode, outcome) (rate(onezone_gateway_create_session_total[{R}]))", "{{mode}} {{outcome}}")],
         "timeseries"),
        ("Session rejections and auth failures", "reqps",
         [q(f"sum by (reason) (rate(onezone_gateway_session_rejections_total[{R}]))", "session: {{reason}}", "A"),
          q(f"sum by (code) (rate(onezone_gateway_auth_failures_total[{R}]))", "auth: {{code}}", "B")], "timeseries"),
    ]),
    ("KMS and bucket keys", [
        ("KMS calls by operation and outcome", "reqps",
         [q(f"sum by (operation, outcome) (rate(onezone_kms_requests_total[{R}]))", "{{operation}} {{outcome}}")],
         "timeseries"),
        ("KMS latency p50 / p99", "s",
         [q(f"histogram_quantile(0.50, sum by (operation, le) (rate(onezone_kms_request_duration_seconds_bucket[{R}])))",
            "p50 {{operation}}", "A"),
          q(f"histogram_quantile(0.99, sum by (operation, le) (rate(onezone_kms_request_duration_seconds_bucket[{R}])))",
            "p99 {{operation}}", "B")], "timeseries"),
        ("Bucket-key cache hit ratio", "percentunit",
         [q(f"sum(rate(onezone_node_bucket_key_cache_hits_total[{R}])) / clamp_min("
            f"sum(rate(onezone_node_bucket_key_cache_hits_total[{R}])) "
            f"+ sum(rate(onezone_node_bucket_key_cache_misses_total[{R}])), 1e-9)", "hit ratio")], "timeseries"),
        ("Bucket-key cache entries and evictions", "short",
         [q("sum by (instance_name) (onezone_node_bucket_key_cache_entries)", "entries {{instance_name}}", "A"),
          q(f"sum by (instance_name) (rate(onezone_node_bucket_key_cache_evictions_total[{R}]))",
            "evictions/s {{instance_name}}", "B")], "timeseries"),
        ("Keys by state", "short", [q("sum by (state) (onezone_kms_keys)", "{{state}}")], "timeseries"),
        ("Coordinator calls to the KMS", "reqps",
         [q(f"sum by (operation, outcome) (rate(onezone_coordinator_kms_calls_total[{R}]))",
            "{{operation}} {{outcome}}")], "timeseries"),
    ]),
    ("Storage nodes", [
        ("Replication latency p50 / p99", "s",
         [q(f"histogram_quantile(0.50, sum by (le) (rate(onezone_node_replication_duration_seconds_bucket[{R}])))",
            "p50", "A"),
          q(f"histogram_quantile(0.99, sum by (le) (rate(onezone_node_replication_duration_seconds_bucket[{R}])))",
            "p99", "B")], "timeseries"),
        ("Replication failures", "short",
         [q(f"sum by (instance_name) (rate(onezone_node_replication_failures_total[{R}]))", "{{instance_name}}")],
         "timeseries"),
        ("Disk used", "bytes", [q("sum by (instance_name) (onezone_node_disk_used_bytes)", "{{instance_name}}")],
         "timeseries"),
        ("Disk free fraction", "percentunit",
         [q("onezone_node_disk_free_bytes / clamp_min(onezone_node_disk_used_bytes + onezone_node_disk_free_bytes, 1)",
            "{{instance_name}}")], "timeseries"),
        ("Chunks written / read", "ops",
         [q(f"sum by (instance_name) (rate(onezone_node_chunks_written_total[{R}]))", "written {{instance_name}}", "A"),
          q(f"sum by (instance_name) (rate(onezone_node_chunks_read_total[{R}]))", "read {{instance_name}}", "B")],
         "timeseries"),
        ("Node RPC latency p99", "s",
         [q(f'histogram_quantile(0.99, sum by (method, le) (rate(onezone_rpc_server_duration_seconds_bucket{{daemon="node"}}[{R}])))',
            "{{method}}")], "timeseries"),
    ]),
    ("Cluster", [
        ("Nodes by state", "short", [q("sum by (state) (onezone_coordinator_nodes)", "{{state}}")], "stat"),
        ("Heartbeat age", "s", [q("onezone_coordinator_heartbeat_age_seconds", "{{node}}")], "timeseries"),
        ("Buckets and under-replicated buckets", "short",
         [q("sum by (zone) (onezone_coordinator_buckets)", "buckets {{zone}}", "A"),
          q("sum by (zone) (onezone_coordinator_buckets_under_replicated)", "under-replicated {{zone}}", "B")],
         "timeseries"),
        ("Daemons up", "short", [q('up{job="onezone"}', "{{instance_name}}")], "stat"),
        ("Uptime", "s", [q("onezone_uptime_seconds", "{{instance_name}}")], "stat"),
        ("Resident memory", "bytes", [q("process_resident_memory_bytes", "{{instance_name}}")], "timeseries"),
    ]),
]


def build() -> dict:
    panels: list[dict] = []
    pid, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, (title, unit, targets, kind) in enumerate(row_panels):
            panel = {
                "id": pid, "type": kind, "title": title, "datasource": DS,
                "gridPos": {"h": 8, "w": 8, "x": (i % 3) * 8, "y": y + (i // 3) * 8},
                "targets": targets,
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                            "tooltip": {"mode": "multi", "sort": "desc"}} if kind == "timeseries" else
                           {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "value", "graphMode": "area", "textMode": "auto"},
            }
            panels.append(panel)
            pid += 1
        y += ((len(row_panels) + 2) // 3) * 8
    return {
        "title": "onezone", "uid": "onezone-overview", "description":
            "S3 gateway, KMS, bucket keys, storage nodes and membership of an onezone cluster.",
        "tags": ["onezone", "s3"], "timezone": "browser", "editable": True, "graphTooltip": 1,
        "schemaVersion": 39, "version": 1, "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"}, "timepicker": {},
        "templating": {"list": []}, "annotations": {"list": []}, "links": [],
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != render():
            print(f"{OUT} is stale: run python3 {Path(__file__).name}", file=sys.stderr)
            raise SystemExit(1)
        raise SystemExit(0)
    OUT.write_text(render())
    print(f"wrote {OUT}")
