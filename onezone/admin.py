"""``onezone admin``: operator commands against a running cluster, as the ``admin`` principal.

    onezone admin status                         zones, nodes (state, usage, replicas), drains, under-replicated buckets
    onezone admin nodes | node list              the storage nodes
    onezone admin node drain|activate NODE       move every replica off NODE / put it back in service
    onezone admin node remove NODE [--force]     forget NODE (refused while it holds replicas and is up)
    onezone admin buckets                        every bucket with its zone, encryption and replicas
    onezone admin user list|create|delete NAME
    onezone admin key list|create USER / key delete USER KEYID
    onezone admin policy list / policy create NAME FILE / policy delete|show ARN
    onezone admin policy attach|detach ARN (--user U | --group G)
    onezone admin group list|create|delete|show NAME / group add|remove GROUP USER

The coordinator's address and the admin certificate are taken from DIR/cluster.json and
DIR/certs (what ``onezone up`` writes). Results of IAM commands are printed as JSON.
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
    async with open_rpc_pool(tls.client_context(), default_timeout_s=15) as pool:
        return await pool.client(host.strip("[]"), int(port), "coordinator").call(method, args)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}"


def _print_nodes(nodes: list[dict[str, Any]]) -> None:
    print(f"{'NODE':<12} {'ZONE':<12} {'STATE':<8} {'ADMIN':<9} {'ADDRESS':<22} {'USED/FREE/CAP (GiB)':>20} "
          f"{'REPLICAS':>8} {'SYNCING':>7}")
    for n in nodes:
        usage = f"{_gib(n.get('used_bytes', 0))}/{_gib(n['free_bytes'])}/{_gib(n['capacity_bytes'])}"
        print(f"{n['node_id']:<12} {n['zone']:<12} {n['state']:<8} {n.get('admin', 'active'):<9} "
              f"{n['host'] + ':' + str(n['port']):<22} {usage:>20} {n.get('replicas', '-'):>8} "
              f"{n.get('syncing', '-'):>7}")


def _status(data_dir: Path) -> None:
    s = trio.run(_call, data_dir, "ClusterStatus", {})
    print(f"replicas per bucket: {s['replicas']}   replace a node after: {s['replace_after_s']:g}s down")
    print(f"\n{'ZONE':<12} {'UP':>4} {'SUSPECT':>8} {'DOWN':>5} {'BUCKETS':>8}")
    for z in s["zones"]:
        print(f"{z['zone']:<12} {z['nodes']['up']:>4} {z['nodes']['suspect']:>8} {z['nodes']['down']:>5} {z['buckets']:>8}")
    print()
    _print_nodes(s["nodes"])
    if s["draining"]:
        print("\nDRAINING / REMOVED: " + ", ".join(f"{d['node_id']} ({d['remaining_buckets']} bucket(s) left)"
                                                  for d in s["draining"]))
    print(f"\nUNDER-REPLICATED BUCKETS: {len(s['under_replicated'])}")
    for b in s["under_replicated"]:
        print(f"  {b['name']:<40} healthy {b['healthy']}/{s['replicas']} replicas={','.join(b['replicas'])} "
              f"syncing={','.join(b['syncing']) or '-'} epoch={b['epoch']}")


def _iam(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(RPC method, arguments) of an IAM subcommand."""
    what, verb, rest = args.what, args.verb, args.args
    need = {("user", "create"): 1, ("user", "delete"): 1, ("key", "list"): 1, ("key", "create"): 1,
            ("key", "delete"): 2, ("policy", "create"): 2, ("policy", "delete"): 1, ("policy", "show"): 1,
            ("policy", "attach"): 1, ("policy", "detach"): 1, ("group", "create"): 1, ("group", "delete"): 1,
            ("group", "show"): 1, ("group", "add"): 2, ("group", "remove"): 2}.get((what, verb), 0)
    if len(rest) != need:
        raise SystemExit(f"onezone admin {what} {verb}: expected {need} argument(s), got {len(rest)}")
    if what == "user":
        return {"list": ("ListUsers", {}), "create": ("CreateUser", {"user_name": rest[0] if rest else ""}),
                "delete": ("DeleteUser", {"user_name": rest[0] if rest else ""})}[verb]
    if what == "key":
        if verb == "delete":
            return "DeleteAccessKey", {"user_name": rest[0], "access_key_id": rest[1]}
        return {"list": "ListAccessKeys", "create": "CreateAccessKey"}[verb], {"user_name": rest[0]}
    if what == "group":
        if verb == "list":
            return "ListGroups", {}
        if verb in ("add", "remove"):
            return ("AddUserToGroup" if verb == "add" else "RemoveUserFromGroup"), \
                {"group_name": rest[0], "user_name": rest[1]}
        return {"create": "CreateGroup", "delete": "DeleteGroup", "show": "GetGroup"}[verb], {"group_name": rest[0]}
    if verb == "list":
        return "ListPolicies", {}
    if verb == "create":
        return "CreatePolicy", {"policy_name": rest[0], "policy_document": Path(rest[1]).read_text()}
    if verb in ("attach", "detach"):
        if (args.user is None) == (args.group is None):
            raise SystemExit(f"onezone admin policy {verb}: give exactly one of --user or --group")
        kind = "User" if args.user else "Group"
        method = ("Attach" if verb == "attach" else "Detach") + kind + "Policy"
        return method, {"policy_arn": rest[0], **({"user_name": args.user} if args.user else {"group_name": args.group})}
    return {"delete": "DeletePolicy", "show": "GetPolicy"}[verb], {"policy_arn": rest[0]}


IAM_VERBS = {"user": ("list", "create", "delete"), "key": ("list", "create", "delete"),
             "policy": ("list", "create", "delete", "show", "attach", "detach"),
             "group": ("list", "create", "delete", "show", "add", "remove")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="onezone admin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["status", "nodes", "node", "buckets", *IAM_VERBS])
    p.add_argument("verb", nargs="?", help="list, drain, activate, remove, create, delete, show, attach, ...")
    p.add_argument("args", nargs="*", help="names, ARNs, files (see above)")
    p.add_argument("--force", action="store_true", help="node remove: even while it holds replicas")
    p.add_argument("--user", help="policy attach/detach: the user")
    p.add_argument("--group", help="policy attach/detach: the group")
    p.add_argument("--data-dir", type=Path, default=Path("onezone-data"))
    args = p.parse_args(argv)
    try:
        if args.what == "status":
            _status(args.data_dir)
        elif args.what == "nodes" or (args.what == "node" and args.verb in (None, "list")):
            _print_nodes(trio.run(_call, args.data_dir, "ClusterStatus", {})["nodes"])
        elif args.what == "node":
            if args.verb not in ("drain", "activate", "remove") or len(args.args) != 1:
                p.error("node: use node list | node drain NODE | node activate NODE | node remove NODE [--force]")
            method = {"drain": "DrainNode", "activate": "ActivateNode", "remove": "RemoveNode"}[args.verb]
            call_args: dict[str, Any] = {"node_id": args.args[0]}
            if args.verb == "remove" and args.force:
                call_args["force"] = True
            trio.run(_call, args.data_dir, method, call_args)
            print(f"{args.args[0]}: {args.verb} requested; follow it with: onezone admin status")
        elif args.what == "buckets":
            r = trio.run(_call, args.data_dir, "ListBuckets", {})
            print(f"{'BUCKET':<40} {'ZONE':<10} {'SSE':<8} REPLICAS")
            for b in r["buckets"]:
                replicas = ",".join(x["node_id"] + ("*" if x["node_id"] in b.get("syncing", []) else "")
                                    for x in b["replicas"])
                print(f"{b['name']:<40} {b['zone']:<10} {b['sse_algorithm']:<8} {replicas} (epoch {b['epoch']})")
        else:
            if args.verb not in IAM_VERBS[args.what]:
                p.error(f"{args.what}: verbs are {', '.join(IAM_VERBS[args.what])}")
            method, call_args = _iam(args)
            print(json.dumps(trio.run(_call, args.data_dir, method, call_args), indent=2, default=str))
    except FileNotFoundError as exc:
        print(f"onezone admin: {exc.filename} not found: is the cluster running (onezone up)?", file=sys.stderr)
        return 1
    except RpcError as exc:
        print(f"onezone admin: {type(exc).__name__} {exc.kind or ''}: {exc.message}", file=sys.stderr)
        return 1
    return 0
