#!/usr/bin/env python3
"""Bucket-policy cost and POST-form uploads through the gateway (starts its own 3-node cluster).

    python benchmarks/policies_post.py [--mib 64] [--requests 300]

Prints: the pure policy decision time (IAM policies alone vs IAM + a 10-statement bucket
policy), GetObject latency of a 1 KiB object on a general-purpose bucket with real boto3 without
and with that bucket policy (p50/p99), and the MiB/s of one object uploaded with PutObject vs a
browser-form POST (``generate_presigned_post`` + urllib). Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
import urllib.request

import boto3
import urllib3
from botocore.config import Config

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from onezone.cluster import LocalCluster  # noqa: E402
from proto.bucket_policy import validate_bucket_policy  # noqa: E402
from proto.policy import evaluate, parse_policy  # noqa: E402

BUCKET = "bench-policies"
ARN = f"arn:aws:s3:::{BUCKET}"


def bucket_policy() -> str:
    statements = [{"Sid": f"s{i}", "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::000000000000:user/u{i}"},
                   "Action": "s3:GetObject", "Resource": f"{ARN}/private{i}/*"} for i in range(9)]
    statements.append({"Sid": "reads", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"{ARN}/*", "Condition": {"StringEquals": {"aws:username": "admin"}}})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def pure_decisions(n: int = 20000) -> None:
    iam = (parse_policy({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),)
    bp = validate_bucket_policy(bucket_policy(), ARN)
    ctx = {"aws:username": "admin"}
    for label, policies in (("IAM only", iam), ("IAM + bucket policy", (*iam, bp))):
        start = time.perf_counter()
        for _ in range(n):
            evaluate(policies, action="s3:GetObject", resource=f"{ARN}/k", context=ctx,
                     principal="arn:aws:iam::000000000000:user/admin")
        print(f"policy decision, {label:<20}: {(time.perf_counter() - start) / n * 1e6:7.1f} us")


def latencies(s3, n: int) -> tuple[float, float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        s3.get_object(Bucket=BUCKET, Key="small")["Body"].read()
        out.append(time.perf_counter() - t)
    out.sort()
    return statistics.median(out) * 1000, out[int(len(out) * 0.99) - 1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    pure_decisions()
    d = pathlib.Path(tempfile.mkdtemp())
    c = LocalCluster(d / "data", nodes=3, port=0)
    c.start()
    try:
        s3 = boto3.client("s3", endpoint_url=c.endpoint, region_name=c.region,
                          aws_access_key_id=c.credentials["access_key_id"],
                          aws_secret_access_key=c.credentials["secret_access_key"],
                          config=Config(retries={"max_attempts": 1}, signature_version="s3v4"))
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="small", Body=os.urandom(1024))
        latencies(s3, 20)  # warm up connections and caches
        p50, p99 = latencies(s3, args.requests)
        print(f"GetObject 1 KiB, no bucket policy      : p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
        s3.put_bucket_policy(Bucket=BUCKET, Policy=bucket_policy())
        latencies(s3, 20)
        p50, p99 = latencies(s3, args.requests)
        print(f"GetObject 1 KiB, 10-statement policy   : p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")

        data = os.urandom(args.mib * 1024 * 1024)
        t = time.perf_counter()
        s3.put_object(Bucket=BUCKET, Key="big-put", Body=data)
        put_s = time.perf_counter() - t
        form = s3.generate_presigned_post(BUCKET, "big-post")
        body, ctype = urllib3.encode_multipart_formdata([*form["fields"].items(), ("file", ("f", data))])
        t = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(form["url"], data=body, method="POST",
                                                           headers={"Content-Type": ctype})) as resp:
            assert resp.status == 204
        post_s = time.perf_counter() - t
        print(f"PutObject {args.mib} MiB                       : {args.mib / put_s:7.1f} MiB/s")
        print(f"POST form {args.mib} MiB                       : {args.mib / post_s:7.1f} MiB/s")
    finally:
        c.stop()


if __name__ == "__main__":
    main()
