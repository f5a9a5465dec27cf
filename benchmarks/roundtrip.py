#!/usr/bin/env python3
"""Put/get round trips through the gateway with real boto3: latency percentiles and throughput.

    python benchmarks/roundtrip.py                       # starts its own cluster in a temp dir
    python benchmarks/roundtrip.py --cluster-json onezone-data/cluster.json   # against a running one

Measures, on one SSE-KMS directory bucket (3 replicas): 4 KiB PUT and GET latency (p50/p90/p99)
from one client, ops/s with --threads clients, and MB/s for one large object. Numbers, not
assertions: the machines are shared and noisy; compare ratios measured in one run. boto3 itself
costs ~0.6-0.8 ms per call on this machine (../shared/reference/performance-floor.md), which is
included in these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

BUCKET = "bench--use1-az4--x-s3"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def client(info: dict) -> object:
    return boto3.client("s3", endpoint_url=info["endpoint"], region_name=info["region"],
                        aws_access_key_id=info["access_key_id"], aws_secret_access_key=info["secret_access_key"],
                        config=Config(retries={"max_attempts": 1}, max_pool_connections=64))


def run(info: dict, n: int, threads: int, big_mib: int) -> None:
    kms = boto3.client("kms", endpoint_url=info["endpoint"], region_name=info["region"],
                       aws_access_key_id=info["access_key_id"], aws_secret_access_key=info["secret_access_key"])
    s3 = client(info)
    try:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={
            "Location": {"Type": "AvailabilityZone", "Name": "use1-az4"},
            "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"}})
        key = kms.create_key(Description="bench")["KeyMetadata"]["Arn"]
        s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
            "BucketKeyEnabled": True}]})
    except s3.exceptions.ClientError as exc:
        if "BucketAlready" not in str(exc):
            raise
    body = os.urandom(4096)
    for i in range(20):  # warm up: session, connections, bucket-key caches
        s3.put_object(Bucket=BUCKET, Key=f"warm/{i}", Body=body)
        s3.get_object(Bucket=BUCKET, Key=f"warm/{i}")["Body"].read()
    puts, gets = [], []
    for i in range(n):
        t = time.perf_counter()
        s3.put_object(Bucket=BUCKET, Key=f"lat/{i}", Body=body)
        puts.append(time.perf_counter() - t)
    for i in range(n):
        t = time.perf_counter()
        s3.get_object(Bucket=BUCKET, Key=f"lat/{i}")["Body"].read()
        gets.append(time.perf_counter() - t)
    print(f"4 KiB PUT, 1 client, n={n}: p50 {pct(puts, 50)*1e3:.2f} ms  p90 {pct(puts, 90)*1e3:.2f} ms  "
          f"p99 {pct(puts, 99)*1e3:.2f} ms  mean {statistics.mean(puts)*1e3:.2f} ms")
    print(f"4 KiB GET, 1 client, n={n}: p50 {pct(gets, 50)*1e3:.2f} ms  p90 {pct(gets, 90)*1e3:.2f} ms  "
          f"p99 {pct(gets, 99)*1e3:.2f} ms  mean {statistics.mean(gets)*1e3:.2f} ms")

    for op in ("PUT", "GET"):
        done = [0]
        lock = threading.Lock()
        deadline = time.perf_counter() + 5.0

        def worker(w: int) -> None:
            c = client(info)
            i = 0
            while time.perf_counter() < deadline:
                if op == "PUT":
                    c.put_object(Bucket=BUCKET, Key=f"tp/{w}/{i}", Body=body)
                else:
                    c.get_object(Bucket=BUCKET, Key=f"lat/{i % n}")["Body"].read()
                i += 1
            with lock:
                done[0] += i

        ts = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
        start = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print(f"4 KiB {op}, {threads} clients: {done[0] / (time.perf_counter() - start):.0f} ops/s")

    big = os.urandom(big_mib * 1024 * 1024)
    t = time.perf_counter()
    s3.put_object(Bucket=BUCKET, Key="big", Body=big)
    put_s = time.perf_counter() - t
    t = time.perf_counter()
    got = s3.get_object(Bucket=BUCKET, Key="big")["Body"].read()
    get_s = time.perf_counter() - t
    assert got == big
    print(f"{big_mib} MiB PUT {big_mib / put_s:.0f} MiB/s, GET {big_mib / get_s:.0f} MiB/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster-json", type=Path)
    p.add_argument("-n", type=int, default=300)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--big-mib", type=int, default=64)
    args = p.parse_args()
    if args.cluster_json:
        run(json.loads(args.cluster_json.read_text()), args.n, args.threads, args.big_mib)
        return
    from onezone.cluster import LocalCluster

    with tempfile.TemporaryDirectory() as d:
        cluster = LocalCluster(Path(d) / "data", port=0)
        cluster.start()
        try:
            run(json.loads((cluster.data_dir / "cluster.json").read_text()), args.n, args.threads, args.big_mib)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
