"""``onezone admin``: operator commands against a running cluster, as the ``admin`` principal.

    onezone admin nodes  [--data-dir DIR]   the coordinator's view of the storage nodes
    onezone admin buckets [--data-dir DIR]  every bucket with its zone, encryption and replicas

The coordinator's address and the admin certificate are taken from DIR/cluster.json and
DIR/certs (what ``onezone up`` writes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import trio

from proto.errors import RpcError
from proto.rpc import open_rpc_pool
from proto.settings import TlsConfig


async def _call(data_dir: Path, method: str, args: dict[str, Any]) -> Any:
    cluster = json.loads((data_dir / "cluster.json").read_text())
    host, _, port = cluster["daemons"]["coordinator"]["rpc"].rpartition(":")
    certs = data_dir / "certs"
    tls = TlsConfig(ca=certs / "ca.pem", cert=certs / "admin.pem", key=certs / "admin.key")
    async with open_rpc_pool(tls.client_context(), default_timeout_s=5) as pool:
        return await pool.client(host.strip("[]"), int(port), "coordinator").call(method, args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="onezone admin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["nodes", "buckets"])
    p.add_argument("--data-dir", type=Path, default=Path("onezone-data"))
    args = p.parse_args(argv)
    try:
        if args.what == "nodes":
            r = trio.run(_call, args.data_dir, "ListNodes", {})
            print(f"{'NODE':<12} {'ZONE':<12} {'STATE':<8} {'ADDRESS':<22} {'FREE/CAPACITY (GiB)':>20}")
            for n in r["nodes"]:
                cap = f"{n['free_bytes'] / 2**30:.1f}/{n['capacity_bytes'] / 2**30:.1f}"
                print(f"{n['node_id']:<12} {n['zone']:<12} {n['state']:<8} {n['host'] + ':' + str(n['port']):<22} {cap:>20}")
        else:
            r = trio.run(_call, args.data_dir, "ListBuckets", {})
            print(f"{'BUCKET':<40} {'ZONE':<10} {'SSE':<8} REPLICAS")
            for b in r["buckets"]:
                replicas = ",".join(x["node_id"] for x in b["replicas"])
                print(f"{b['name']:<40} {b['zone']:<10} {b['sse_algorithm']:<8} {replicas} (epoch {b['epoch']})")
    except FileNotFoundError as exc:
        print(f"onezone admin: {exc.filename} not found: is the cluster running (onezone up)?", file=sys.stderr)
        return 1
    except RpcError as exc:
        print(f"onezone admin: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return 1
    return 0
