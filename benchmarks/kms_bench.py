#!/usr/bin/env python3
"""KMS GenerateDataKey and Decrypt over mutual TLS: latency percentiles, requests/s, CPU.

    python benchmarks/kms_bench.py                          # 1 and 16 clients, 5 s per run
    python benchmarks/kms_bench.py --clients 1 16 64 --procs 2 --seconds 5
    python benchmarks/kms_bench.py --server-prefix "py-spy record -o kms.svg --"   # profile

Starts a real ``onezone kms`` process (port 0, fresh certificates and root key, every request
audited with a group-committed fsync, as in production), then for each number of clients and
each operation runs that many concurrent callers for ``--seconds`` and prints requests/s,
p50/p99 latency, and the CPU the KMS and the load generator used (in cores: 1.0 = one core
busy for the whole run). A client is one caller making one call after another on its own
mutual-TLS connection (principal ``node-1``), as separate nodes would. The callers are spread
over ``--procs`` load-generating processes (default: one per core, at most one per client):
the load generator shares the machine's 2 cores with the KMS, so its CPU figure says how much
of the machine it took. ``--share-conns`` puts all callers of one process on one connection
(calls multiplexed), which costs the load generator less per call.

Numbers, not assertions. Internally the parent re-runs this script with ``--worker`` for each
load process; a worker connects, warms up, prints ``ready``, waits for ``go`` on stdin, runs,
and prints its latencies and CPU as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shlex
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
TICK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def tls(tmp: Path, name: str) -> TlsConfig:
    c = tmp / "certs"
    return TlsConfig(ca=c / "ca.pem", cert=c / f"{name}.pem", key=c / f"{name}.key")


# -- the KMS under test -------------------------------------------------------------------------


def start_kms(tmp: Path, prefix: list[str]) -> tuple[subprocess.Popen, dict]:
    certs = tmp / "certs"
    write_cluster_certs(certs, ["kms", "admin", "node-1"])
    root = tmp / "root.key"
    root.write_text(secrets.token_hex(32))
    os.chmod(root, 0o600)
    cfg = tmp / "kms.toml"
    cfg.write_text(f'listen = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:0"\ndata_dir = "{tmp / "data"}"\n'
                   f'root_key_file = "{root}"\nlog_level = "WARNING"\n[tls]\nca = "{certs / "ca.pem"}"\n'
                   f'cert = "{certs / "kms.pem"}"\nkey = "{certs / "kms.key"}"\n')
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "kms", "--config", str(cfg)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"READY "):
            return proc, json.loads(line[6:])
    raise RuntimeError("the KMS did not start")


def kms_pid(root_pid: int) -> int:
    """The ``python -m kms`` process: ``root_pid`` itself or (under --server-prefix) a descendant."""
    todo, seen = [root_pid], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            todo.extend(int(c) for c in children)
    for pid in reversed(seen):  # the deepest match: a profiler's own command line names kms too
        try:
            if b"\0-m\0kms\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    return root_pid


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


# -- a load-generating worker process -----------------------------------------------------------


async def worker(tmp: Path, rpc: str, op: str, key_id: str, blob: bytes, callers: int, seconds: float,
                 share_conns: bool) -> dict:
    host, _, port = rpc.rpartition(":")
    args = ({"key_id": key_id, "encryption_context": CTX} if op == "GenerateDataKey"
            else {"ciphertext_blob": blob, "encryption_context": CTX})
    ctx = tls(tmp, "node-1").client_context()
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        pools = []
        for _ in range(1 if share_conns else callers):
            pools.append(await nursery.start(_pool, ctx))
        clients = [pools[i % len(pools)].client(host, int(port), "kms") for i in range(callers)]
        for c in clients:
            await c.call(op, args)  # connect and warm up
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        deadline = trio.current_time() + seconds

        async def caller(c) -> None:
            while trio.current_time() < deadline:
                start = time.perf_counter()
                await c.call(op, args)
                latencies.append(time.perf_counter() - start)

        async with trio.open_nursery() as callers_nursery:
            for c in clients:
                callers_nursery.start_soon(caller, c)
        elapsed = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        nursery.cancel_scope.cancel()
    return {"latencies": latencies, "elapsed": elapsed,
            "cpu": ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime}


async def _pool(ctx, task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with open_rpc_pool(ctx) as pool:
        task_status.started(pool)
        await trio.sleep_forever()


def worker_main(a: argparse.Namespace) -> int:
    out = trio.run(worker, Path(a.tmp), a.rpc, a.op, a.key_id, bytes.fromhex(a.blob), a.callers, a.seconds,
                   a.share_conns)
    print(json.dumps(out), flush=True)
    return 0


# -- the parent -----------------------------------------------------------------------------------


async def prepare(tmp: Path, rpc: str) -> tuple[str, bytes]:
    host, _, port = rpc.rpartition(":")
    async with open_rpc_pool(tls(tmp, "admin").client_context()) as pool:
        key_id = (await pool.client(host, int(port), "kms").call("CreateKey", {}))["KeyMetadata"]["KeyId"]
    async with open_rpc_pool(tls(tmp, "node-1").client_context()) as pool:
        blob = (await pool.client(host, int(port), "kms").call(
            "GenerateDataKey", {"key_id": key_id, "encryption_context": CTX}))["CiphertextBlob"]
    return key_id, blob


def run_level(tmp: Path, rpc: str, server_pid: int, op: str, key_id: str, blob: bytes, clients: int,
              procs: int, seconds: float, share_conns: bool) -> None:
    procs = max(1, min(procs, clients))
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [subprocess.Popen(
        [sys.executable, __file__, "--worker", "--tmp", str(tmp), "--rpc", rpc, "--op", op, "--key-id", key_id,
         "--blob", blob.hex(), "--callers", str(n), "--seconds", str(seconds),
         *(["--share-conns"] if share_conns else [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for n in shares]
    for w in workers:
        if w.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
            raise RuntimeError("a load worker failed to start")
    cpu0 = cpu_seconds(server_pid)
    for w in workers:
        w.stdin.write("go\n")  # type: ignore[union-attr]
        w.stdin.flush()  # type: ignore[union-attr]
    results = [json.loads(w.stdout.readline()) for w in workers]  # type: ignore[union-attr]
    server_cpu = cpu_seconds(server_pid) - cpu0
    for w in workers:
        w.wait()
    latencies = [x for r in results for x in r["latencies"]]
    elapsed = max(r["elapsed"] for r in results)
    client_cpu = sum(r["cpu"] for r in results)
    print(f"{op:16s} clients={clients:3d} procs={procs}  requests/s={len(latencies) / elapsed:7.0f}  "
          f"p50={pct(latencies, 50) * 1000:6.2f} ms  p99={pct(latencies, 99) * 1000:6.2f} ms  "
          f"kms_cpu={server_cpu / elapsed:4.2f}  client_cpu={client_cpu / elapsed:4.2f}  "
          f"kms_us/req={server_cpu / max(1, len(latencies)) * 1e6:5.0f}  "
          f"client_us/req={client_cpu / max(1, len(latencies)) * 1e6:5.0f}  n={len(latencies)}", flush=True)


def print_metrics(endpoint: str, prefixes: list[str]) -> None:
    """Print the KMS's /metrics lines that start with one of ``prefixes``."""
    import urllib.request

    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if any(line.startswith(p) for p in prefixes):
                print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each run (default 5)")
    ap.add_argument("--clients", "--concurrency", type=int, nargs="+", default=[1, 16],
                    help="numbers of concurrent callers to run (default: 1 16)")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1,
                    help="load-generating processes (default: one per core)")
    ap.add_argument("--share-conns", action="store_true",
                    help="one connection per load process, calls multiplexed on it")
    ap.add_argument("--ops", nargs="+", default=["GenerateDataKey", "Decrypt"],
                    choices=["GenerateDataKey", "Decrypt"])
    ap.add_argument("--server-prefix", default="",
                    help='command the KMS is started under, e.g. "py-spy record -o kms.svg --"')
    ap.add_argument("--metrics", nargs="+", default=[], metavar="PREFIX",
                    help="after the runs, print the KMS metrics whose lines start with PREFIX "
                         "(e.g. onezone_kms_audit_write)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--tmp", "--rpc", "--op", "--key-id", "--blob"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--callers", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args)
    with tempfile.TemporaryDirectory(prefix="kms-bench-") as d:
        tmp = Path(d)
        proc, ready = start_kms(tmp, shlex.split(args.server_prefix))
        rpc = ready["rpc"]
        try:
            server_pid = kms_pid(proc.pid)
            key_id, blob = trio.run(prepare, tmp, rpc)
            for n in args.clients:
                for op in args.ops:
                    run_level(tmp, rpc, server_pid, op, key_id, blob, n, args.procs, args.seconds,
                              args.share_conns)
            if args.metrics:
                print_metrics(ready["metrics"], args.metrics)
        finally:
            proc.send_signal(2 if args.server_prefix else 15)
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
