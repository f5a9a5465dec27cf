"""Harness for the node integration tests: real nodes and the real KMS in-process, a fake
coordinator (RegisterNode / Heartbeat / GetBucket) whose bucket records list the nodes at the
addresses they registered. Loaded by the test modules with ``load_harness()``."""

from __future__ import annotations

import functools
import hashlib
import os
from collections import Counter
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite3

import trio

from kms.config import KmsConfig
from kms.main import serve as serve_kms
from node.config import NodeConfig
from node.main import serve as serve_node
from node.segments import FILE_HEADER_SIZE, KIND_BLOB, KIND_LOG, segment_name
from proto import errors
from proto.config import Endpoint
from proto.daemon import Lifecycle
from proto.names import bucket_arn
from proto.rpc import RpcServer, open_rpc_pool

KiB = 1024
ZONE = "use1-az4"
REGION, ACCOUNT = "us-east-1", "000000000000"
BUCKET = "data--use1-az4--x-s3"


class FakeCoordinator:
    """Membership and bucket records, as docs/rpc.md shapes them; counts every call."""

    def __init__(self, tls: Any, node_ids: list[str]) -> None:
        self.node_ids = node_ids
        self.nodes: dict[str, dict[str, Any]] = {}
        self.buckets: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.registered = trio.Event()
        self.heartbeat_interval_s = 0.05
        self.server = RpcServer(
            {"RegisterNode": self.register_node, "Heartbeat": self.heartbeat, "GetBucket": self.get_bucket},
            acl={"RegisterNode": ["node-*"], "Heartbeat": ["node-*"], "GetBucket": ["node-*", "gateway"]},
            ssl_context=tls.server_context(), name="coordinator")

    async def register_node(self, call):
        a = call.args
        if a["node_id"] != call.principal:
            raise errors.AccessDenied("node_id is not the caller", kind="AccessDenied")
        self.calls["RegisterNode:" + call.principal] += 1
        self.nodes[a["node_id"]] = dict(a)
        if all(n in self.nodes for n in self.node_ids):
            self.registered.set()
        return {"heartbeat_interval_s": self.heartbeat_interval_s}

    async def heartbeat(self, call):
        self.calls["Heartbeat:" + call.principal] += 1
        if call.args["node_id"] not in self.nodes:
            raise errors.NotFound("unknown node", kind="UnknownNode")
        self.nodes[call.args["node_id"]].update(call.args)
        return {}

    async def get_bucket(self, call):
        self.calls["GetBucket"] += 1
        name = call.args["name"]
        if name not in self.buckets:
            raise errors.NotFound(f"no bucket {name}", kind="NoSuchBucket")
        return {"bucket": self.record(name)}

    def add_bucket(self, name: str, *, wrapped: bytes, key_arn: str, replicas: list[str] | None = None,
                   sse_algorithm: str = "AES256") -> dict[str, Any]:
        self.buckets[name] = {
            "name": name, "bucket_id": hashlib.sha256(name.encode()).digest()[:16],
            "arn": bucket_arn(REGION, ACCOUNT, name), "zone": ZONE,
            "owner": f"arn:aws:iam::{ACCOUNT}:user/admin", "created": 1.0, "type": "Directory",
            "sse_algorithm": sse_algorithm, "kms_key_arn": key_arn if sse_algorithm == "aws:kms" else None,
            "bucket_key_enabled": True, "keys": [{"gen": 1, "kms_key_arn": key_arn, "wrapped": wrapped}],
            "active_gen": 1, "replica_ids": list(replicas or self.node_ids), "epoch": 1, "version": 1,
        }
        return self.record(name)

    def record(self, name: str) -> dict[str, Any]:
        rec = {k: v for k, v in self.buckets[name].items() if k != "replica_ids"}
        rec["replicas"] = [{"node_id": n, "host": self.nodes[n]["host"], "port": self.nodes[n]["port"]}
                           for n in self.buckets[name]["replica_ids"]]
        return rec


async def start_kms(nursery: trio.Nursery, tmp_path: Path, tls_for) -> Endpoint:
    root = tmp_path / "kms-root.key"
    root.write_text("cd" * 32 + "\n")
    os.chmod(root, 0o600)
    cfg = KmsConfig(data_dir=tmp_path / "kms", root_key_file=root, tls=tls_for("kms"), grace_s=0.5)
    info = await nursery.start(serve_kms, cfg, Lifecycle(0.5))
    return Endpoint.parse(info["rpc"])


async def _run_node(cfg: NodeConfig, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            info = await nursery.start(serve_node, cfg, Lifecycle(0.5))
            task_status.started((info, scope))


@dataclass(frozen=True)
class ExtentFile:
    """One object version's bytes inside a segment file."""

    path: Path
    offset: int
    length: int

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            return fh.read(self.length)

    def flip(self, offset: int) -> None:
        """Flip one bit of the byte at ``offset`` in the extent (a disk corruption)."""
        with open(self.path, "r+b") as fh:
            fh.seek(self.offset + offset)
            b = fh.read(1)
            fh.seek(self.offset + offset)
            fh.write(bytes([b[0] ^ 0x01]))


@dataclass
class NodeHandle:
    cfg: NodeConfig
    info: dict[str, Any]
    scope: trio.CancelScope

    @property
    def data_dir(self) -> Path:
        return self.cfg.data_dir

    def data_files(self) -> list[ExtentFile]:
        """The live extents (object versions' sealed chunks) in the node's segment files."""
        db = sqlite3.connect(f"file:{self.data_dir / 'index.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT seq, offset, length FROM extents ORDER BY seq, offset").fetchall()
        finally:
            db.close()
        return [ExtentFile(self.data_dir / "segments" / segment_name(KIND_BLOB if off == FILE_HEADER_SIZE else KIND_LOG,
                                                                      seq), off, n) for seq, off, n in rows]

    def incoming_files(self) -> list[Path]:
        return sorted((self.data_dir / "incoming").iterdir())

    def stop(self) -> None:
        self.scope.cancel()


def node_config(tmp_path: Path, tls_for, node_id: str, *, coordinator: Endpoint, kms: Endpoint,
                chunk_bytes: int = 64 * KiB, **options: Any) -> NodeConfig:
    return NodeConfig(node_id=node_id, zone=ZONE, data_dir=tmp_path / node_id, coordinator=coordinator, kms=kms,
                      tls=tls_for(node_id), chunk_bytes=chunk_bytes, heartbeat_interval_s=0.05, grace_s=0.5,
                      rpc_timeout_s=10.0, **options)


class Cluster:
    def __init__(self, coord: FakeCoordinator, kms: Endpoint, nodes: list[NodeHandle], pools: dict[str, Any],
                 bucket_key: bytes, key_arn: str) -> None:
        self.coord = coord
        self.kms = kms
        self.nodes = nodes
        self.pools = pools
        self.bucket_key = bucket_key
        self.key_arn = key_arn

    def client(self, i: int, principal: str = "gateway"):
        n = self.nodes[i]
        host, port = n.info["rpc"].rsplit(":", 1)
        return self.pools[principal].client(host, int(port), n.cfg.node_id)

    async def put(self, key: str, data: bytes, *, node: int = 0, bucket: str = BUCKET, piece: int = 50_000,
                  meta: dict | None = None, **extra) -> dict[str, Any]:
        async def body():
            for i in range(0, len(data), piece):
                yield data[i:i + piece]

        args = {"bucket": bucket, "key": key, "bucket_version": 1, "meta": meta or {}, **extra}
        return (await self.client(node).call("PutObject", args, body=body()))["meta"]

    async def get(self, key: str, *, node: int = 0, rng: list[int] | None = None,
                  bucket: str = BUCKET) -> tuple[dict[str, Any], bytes]:
        args: dict[str, Any] = {"bucket": bucket, "key": key, "bucket_version": 1}
        if rng is not None:
            args["range"] = rng
        async with self.client(node).stream("GetObject", args) as reply:
            data = b"".join([piece async for piece in reply.body])
        return reply.result["meta"], data

    async def head(self, key: str, *, node: int = 0, bucket: str = BUCKET) -> dict[str, Any]:
        args = {"bucket": bucket, "key": key, "bucket_version": 1}
        return (await self.client(node).call("HeadObject", args))["meta"]

    async def wait_clean(self, timeout_s: float = 5.0) -> None:
        """Wait until no node holds an incoming/ file (replicas discard asynchronously)."""
        with trio.fail_after(timeout_s):
            while any(n.incoming_files() for n in self.nodes):
                await trio.sleep(0.01)


@asynccontextmanager
async def open_cluster(tmp_path: Path, tls_for, *, n: int = 3, chunk_bytes: int = 64 * KiB,
                       node_options: dict[str, Any] | None = None):
    """``node_options``: further NodeConfig fields for every node (e.g. the scrubber's rate)."""
    node_ids = [f"node-{i}" for i in range(1, n + 1)]
    async with trio.open_nursery() as nursery:
        try:
            coord = FakeCoordinator(tls_for("coordinator"), node_ids)
            chost, cport = await nursery.start(coord.server.serve, "127.0.0.1", 0)
            kms = await start_kms(nursery, tmp_path, tls_for)
            async with AsyncExitStack() as stack:
                pools = {p: await stack.enter_async_context(
                    open_rpc_pool(tls_for(p).client_context(), default_timeout_s=10))
                    for p in ("gateway", "coordinator", "node-1", "node-4", "intruder")}
                kms_client = pools["coordinator"].client(kms.host, kms.port, "kms")
                key_arn = (await kms_client.call("GetManagedKey", {"alias": "aws/s3"}))["KeyMetadata"]["Arn"]
                context = {"aws:s3:arn": bucket_arn(REGION, ACCOUNT, BUCKET)}
                wrapped = (await kms_client.call("GenerateDataKeyWithoutPlaintext",
                                                 {"key_id": key_arn, "encryption_context": context}))["CiphertextBlob"]
                plaintext = (await kms_client.call("Decrypt", {"ciphertext_blob": wrapped,
                                                               "encryption_context": context}))["Plaintext"]
                nodes = []
                for node_id in node_ids:
                    cfg = node_config(tmp_path, tls_for, node_id, coordinator=Endpoint(chost, cport), kms=kms,
                                      chunk_bytes=chunk_bytes, **(node_options or {}))
                    info, scope = await nursery.start(_run_node, cfg)
                    nodes.append(NodeHandle(cfg, info, scope))
                with trio.fail_after(5):
                    await coord.registered.wait()
                coord.add_bucket(BUCKET, wrapped=wrapped, key_arn=key_arn)
                yield Cluster(coord, kms, nodes, pools, plaintext, key_arn)
        finally:
            nursery.cancel_scope.cancel()


def run_node_task(cfg: NodeConfig):
    """For tests that start a node themselves: ``await nursery.start(*run_node_task(cfg))``."""
    return (functools.partial(_run_node, cfg),)
