#!/usr/bin/env python3
"""KMS GenerateDataKey and Decrypt over mutual TLS: latency percentiles and requests/s.

    python benchmarks/kms_bench.py                    # starts its own KMS process in a temp dir
    python benchmarks/kms_bench.py --seconds 5 --concurrency 1 16

Starts a real ``onezone kms`` process (port 0, fresh certificates and root key), then for each
concurrency level runs that many RPC clients (each its own mTLS connection, as the ``node-1``
principal, in one trio process: the client side costs CPU too, on the same 2 cores) for
``--seconds`` per operation, and prints p50/p99 latency and requests/s. Every request is
audited with a group-committed fsync, as in production. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from proto.certs import write_cluster_certs  # noqa: E402
from proto.rpc import open_rpc_pool  # noqa: E402
from proto.settings import TlsConfig  # noqa: E402

CTX = {"aws:s3:arn": "arn:aws:s3express:us-east-1:000000000000:bucket/bench--use1-az4--x-s3"}


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def start_kms(tmp: Path) -> tuple[subprocess.Popen, str]:
    certs = tmp / "certs"
    write_cluster_certs(certs, ["kms", "admin", "node-1"])
    root = tmp / "root.key"
    root.write_text(secrets.token_hex(32))
    os.chmod(root, 0o600)
    cfg = tmp / "kms.toml"
    cfg.write_text(f'listen = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:0"\ndata_dir = "{tmp / "data"}"\n'
                   f'root_key_file = "{root}"\nlog_level = "WARNING"\n[tls]\nca = "{certs / "ca.pem"}"\n'
                   f'cert = "{certs / "kms.pem"}"\nkey = "{certs / "kms.key"}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "kms", "--config", str(cfg)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"READY "):
            import json
            return proc, json.loads(line[6:])["rpc"]
    raise RuntimeError("the KMS did not start")


def tls(tmp: Path, name: str) -> TlsConfig:
    c = tmp / "certs"
    return TlsConfig(ca=c / "ca.pem", cert=c / f"{name}.pem", key=c / f"{name}.key")


async def bench(tmp: Path, rpc: str, seconds: float, levels: list[int]) -> None:
    host, _, port = rpc.rpartition(":")
    async with open_rpc_pool(tls(tmp, "admin").client_context()) as pool:
        key_id = (await pool.client(host, int(port), "kms").call("CreateKey", {}))["KeyMetadata"]["KeyId"]
    for n in levels:
        for op in ("GenerateDataKey", "Decrypt"):
            latencies: list[float] = []

            async def worker(blob: bytes, deadline: float) -> None:
                # one pool per worker: its own TLS connection, as separate nodes would have
                async with open_rpc_pool(tls(tmp, "node-1").client_context()) as pool:
                    c = pool.client(host, int(port), "kms")
                    args = ({"key_id": key_id, "encryption_context": CTX} if op == "GenerateDataKey"
                            else {"ciphertext_blob": blob, "encryption_context": CTX})
                    await c.call(op, args)  # connect + warm up
                    while trio.current_time() < deadline:
                        t0 = time.perf_counter()
                        await c.call(op, args)
                        latencies.append(time.perf_counter() - t0)

            async with open_rpc_pool(tls(tmp, "node-1").client_context()) as pool:
                blob = (await pool.client(host, int(port), "kms").call(
                    "GenerateDataKey", {"key_id": key_id, "encryption_context": CTX}))["CiphertextBlob"]
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(worker, blob, start + seconds)
            elapsed = trio.current_time() - start
            print(f"{op:16s} clients={n:2d}  requests/s={len(latencies) / elapsed:8.0f}  "
                  f"p50={pct(latencies, 50) * 1000:6.2f} ms  p99={pct(latencies, 99) * 1000:6.2f} ms  "
                  f"n={len(latencies)}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kms-bench-") as d:
        tmp = Path(d)
        proc, rpc = start_kms(tmp)
        try:
            trio.run(bench, tmp, rpc, args.seconds, args.concurrency)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
