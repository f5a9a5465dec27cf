#!/usr/bin/env python3
"""The server's own latency, measured with lean clients (boto3 costs ~0.6-0.8 ms a call).

    python benchmarks/lean.py --cluster-json onezone-data/cluster.json
    python benchmarks/lean.py                  # starts its own 3-node cluster in a temp dir

Two clients, on the same SSE-KMS directory bucket (3 replicas) as benchmarks/roundtrip.py:

* **http**: raw HTTP/1.1 (``http.client``, one keep-alive connection per thread) signing each
  request with SigV4 (``UNSIGNED-PAYLOAD``, the gateway's own signing code): gateway ->
  primary -> replicas, everything but boto3.
* **rpc**: the node's RPC directly (``PutObject`` with the body in its ``data`` argument, as the
  gateway sends small bodies, and ``GetObject``, to the bucket's primary with the gateway's
  certificate): node + replication + store, without the gateway.

Prints p50/p90/p99 for 4 KiB PUT and GET with one client, ops/s with --threads, MB/s for one
large object over HTTP, and the client process's CPU time per request (so the client's own
cost can be subtracted). Numbers, not assertions; the machine is shared: compare ratios
measured in one run.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.sigv4 import canonical_request, compute_signature, signing_key, string_to_sign  # noqa: E402

BUCKET = "bench--use1-az4--x-s3"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Signer:
    def __init__(self, info: dict) -> None:
        self.akid, self.secret, self.region = info["access_key_id"], info["secret_access_key"], info["region"]
        self._keys: dict[str, bytes] = {}

    def headers(self, method: str, path: str, host: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        h = {"host": host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "x-amz-date": amz_date, **(extra or {})}
        signed = sorted(h)
        creq = canonical_request(method, path, list(h.items()), signed, "UNSIGNED-PAYLOAD", presigned=False)
        scope = f"{date}/{self.region}/s3/aws4_request"
        key = self._keys.get(date) or self._keys.setdefault(date, signing_key(self.secret, date, self.region, "s3"))
        sig = compute_signature(key, string_to_sign(amz_date, scope, creq))
        h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.akid}/{scope}, "
                              f"SignedHeaders={';'.join(signed)}, Signature={sig}")
        return h


class HttpClient:
    def __init__(self, info: dict) -> None:
        self.hostport = info["endpoint"].split("//", 1)[1]
        host, port = self.hostport.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port))
        self.signer = Signer(info)

    def request(self, method: str, key: str, body: bytes | None = None) -> bytes:
        path = f"/{BUCKET}/{key}"
        extra = {"content-length": str(len(body))} if body is not None else None
        h = self.signer.headers(method, path, self.hostport, extra)
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{method} {key}: {r.status} {data[:300]!r}")
        return data


def setup_bucket(info: dict) -> None:
    import boto3
    kw = dict(endpoint_url=info["endpoint"], region_name=info["region"], aws_access_key_id=info["access_key_id"],
              aws_secret_access_key=info["secret_access_key"])
    s3, kms = boto3.client("s3", **kw), boto3.client("kms", **kw)
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


def report(label: str, lat: list[float], cpu: float) -> None:
    print(f"{label}: p50 {pct(lat, 50) * 1e3:.2f} ms  p90 {pct(lat, 90) * 1e3:.2f} ms  p99 {pct(lat, 99) * 1e3:.2f} ms"
          f"  (client CPU {cpu / len(lat) * 1e3:.2f} ms/op)")


def bench_http(info: dict, n: int, threads: int, big_mib: int) -> None:
    c = HttpClient(info)
    body = os.urandom(4096)
    for i in range(30):
        c.request("PUT", f"lean/warm/{i}", body)
        c.request("GET", f"lean/warm/{i}")
    for op in ("PUT", "GET"):
        lat = []
        cpu0 = cpu_s()
        for i in range(n):
            t = time.perf_counter()
            c.request(op, f"lean/lat/{i}", body if op == "PUT" else None)
            lat.append(time.perf_counter() - t)
        report(f"http 4 KiB {op}, 1 client, n={n}", lat, cpu_s() - cpu0)
    for op in ("PUT", "GET"):
        done = [0]
        lock = threading.Lock()
        deadline = time.perf_counter() + 5.0

        def worker(w: int) -> None:
            cl = HttpClient(info)
            i = 0
            while time.perf_counter() < deadline:
                cl.request(op, f"lean/tp/{w}/{i}" if op == "PUT" else f"lean/lat/{i % n}", body if op == "PUT" else None)
                i += 1
            with lock:
                done[0] += i

        ts = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
        start = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print(f"http 4 KiB {op}, {threads} clients: {done[0] / (time.perf_counter() - start):.0f} ops/s")
    big = os.urandom(big_mib * 1024 * 1024)
    t = time.perf_counter()
    c.request("PUT", "lean/big", big)
    put_s = time.perf_counter() - t
    gets = []
    for _ in range(3):
        t = time.perf_counter()
        got = c.request("GET", "lean/big")
        gets.append(time.perf_counter() - t)
        assert got == big
    mb = big_mib * 1024 * 1024 / 1e6
    print(f"http {big_mib} MiB PUT {mb / put_s:.0f} MB/s, GET {mb / min(gets):.0f} MB/s (best of 3), "
          f"{mb / statistics_median(gets):.0f} MB/s (median)")


def statistics_median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def bench_rpc(info: dict, n: int) -> None:
    import trio

    from proto.rpc import open_rpc_pool
    from proto.settings import TlsConfig

    certs = Path(info["data_dir"]) / "certs"
    tls = TlsConfig(ca=certs / "ca.pem", cert=certs / "gateway.pem", key=certs / "gateway.key")
    chost, cport = info["daemons"]["coordinator"]["rpc"].rsplit(":", 1)

    async def run() -> None:
        async with open_rpc_pool(tls.client_context(), default_timeout_s=10) as pool:
            rec = (await pool.client(chost, int(cport), "coordinator").call("GetBucket", {"name": BUCKET}))["bucket"]
            p = rec["replicas"][0]
            node = pool.client(p["host"], p["port"], p["node_id"])
            body = os.urandom(4096)

            async def put(key: str) -> None:  # whole in the call, as the gateway sends small bodies
                await node.call("PutObject", {"bucket": BUCKET, "key": key, "bucket_version": rec["version"],
                                              "meta": {}, "data": body})

            async def get(key: str) -> None:
                async with node.stream("GetObject", {"bucket": BUCKET, "key": key,
                                                     "bucket_version": rec["version"]}) as r:
                    async for _ in r.body:
                        pass

            for i in range(30):
                await put(f"rpc/warm/{i}")
                await get(f"rpc/warm/{i}")
            for op, fn in (("PutObject", put), ("GetObject", get)):
                lat = []
                cpu0 = cpu_s()
                for i in range(n):
                    t = time.perf_counter()
                    await fn(f"rpc/lat/{i}")
                    lat.append(time.perf_counter() - t)
                report(f"rpc 4 KiB {op} to the primary, 1 client, n={n}", lat, cpu_s() - cpu0)

    trio.run(run)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster-json", type=Path)
    p.add_argument("-n", type=int, default=500)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--big-mib", type=int, default=64)
    args = p.parse_args()

    def go(info: dict) -> None:
        setup_bucket(info)
        bench_rpc(info, args.n)
        bench_http(info, args.n, args.threads, args.big_mib)

    if args.cluster_json:
        go(json.loads(args.cluster_json.read_text()))
        return
    from onezone.cluster import LocalCluster

    with tempfile.TemporaryDirectory() as d:
        cluster = LocalCluster(Path(d) / "data", port=0)
        cluster.start()
        try:
            go(json.loads((cluster.data_dir / "cluster.json").read_text()))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
