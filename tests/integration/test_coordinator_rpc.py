"""The coordinator daemon in-process with the REAL KMS daemon, over mutual-TLS RPC.

Covers membership (node_id == principal, re-registration, states from heartbeat age with an
injected clock), buckets (placement, wrapped keys the nodes can unwrap, names, zones,
duplicates, encryption rules), IAM (CRUD, GetAuthContext, malformed policies, limits), the
ACL, bad input that changes nothing, metrics, and the bootstrap admin across restarts.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import stat
import urllib.request
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from coordinator.config import CoordinatorConfig
from coordinator.iam import BootstrapError
from coordinator.main import serve
from kms.config import KmsConfig
from kms.main import serve as serve_kms
from proto import errors
from proto.config import Endpoint
from proto.daemon import Lifecycle
from proto.rpc import open_rpc_pool

ZONE = "use1-az4"
ALICE = "arn:aws:iam::000000000000:user/alice"
BOB = "arn:aws:iam::000000000000:user/bob"
GIB = 2**30


def scrape(metrics_endpoint: str) -> str:
    with urllib.request.urlopen(f"http://{metrics_endpoint}/metrics", timeout=5) as resp:
        return resp.read().decode()


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


@asynccontextmanager
async def running(fn, *args, **kw):
    """Start a daemon's ``serve`` in-process; cancel it on exit."""
    async with trio.open_nursery() as nursery:
        info = await nursery.start(lambda task_status: fn(*args, Lifecycle(1.0), task_status=task_status, **kw))
        yield info
        nursery.cancel_scope.cancel()


async def start_error(cfg: CoordinatorConfig) -> Exception:
    """The exception the coordinator fails to start with (as ``nursery.start`` raises it)."""
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(functools.partial(serve, cfg, Lifecycle(1.0)))
        except Exception as exc:
            return exc
        nursery.cancel_scope.cancel()
    raise AssertionError("the coordinator started")


def kms_config(tmp_path: Path, tls_for) -> KmsConfig:
    root = tmp_path / "kms-root.key"
    root.write_text("5a" * 32 + "\n")
    os.chmod(root, 0o600)
    return KmsConfig(data_dir=tmp_path / "kms", root_key_file=root, tls=tls_for("kms"))


def coordinator_config(tmp_path: Path, tls_for, kms_rpc: str, **kw) -> CoordinatorConfig:
    kw.setdefault("zones", [ZONE, "use1-az5"])
    return CoordinatorConfig(data_dir=tmp_path / "coordinator", kms=Endpoint.parse(kms_rpc),
                             tls=tls_for("coordinator"), kms_wait_s=5.0, **kw)


PRINCIPALS = ["gateway", "admin", "intruder", "node-1", "node-2", "node-3", "node-4"]


@asynccontextmanager
async def rpc_pools(tls_for):
    """One client pool per principal (pools work from any task: fixtures may own them)."""
    async with AsyncExitStack() as stack:
        yield {p: await stack.enter_async_context(open_rpc_pool(tls_for(p).client_context()))
               for p in PRINCIPALS}


class Cluster:
    def __init__(self, cfg, info, kms_info, clock, pools):
        self.cfg = cfg
        self.info = info
        self.kms_info = kms_info
        self.clock = clock
        self.pools = pools

    def clients(self, *principals: str):
        """RpcClients by principal to the coordinator, and as ``kms:<principal>`` to the KMS."""
        out = {}
        for p in principals:
            out[p] = self.pools[p].client(*split(self.info["rpc"]), "coordinator")
            out["kms:" + p] = self.pools[p].client(*split(self.kms_info["rpc"]), "kms")
        return out

    async def register(self, client, node_id: str, *, zone: str = ZONE, port: int = 7000, **kw):
        args = {"node_id": node_id, "zone": zone, "host": f"10.0.0.{node_id[-1]}", "port": port,
                "capacity_bytes": 100 * GIB, "free_bytes": 90 * GIB} | kw
        return await client.call("RegisterNode", args)


@pytest.fixture
async def kms(tmp_path, tls_for):
    async with running(serve_kms, kms_config(tmp_path, tls_for)) as info:
        yield info


@pytest.fixture
async def cluster(tmp_path, tls_for, kms):
    clock = FakeClock()
    cfg = coordinator_config(tmp_path, tls_for, kms["rpc"])
    async with running(serve, cfg, clock=clock) as info, rpc_pools(tls_for) as pools:
        yield Cluster(cfg, info, kms, clock, pools)


async def three_nodes(cluster):
    cl = cluster.clients("node-1", "node-2", "node-3")
    for n in ("node-1", "node-2", "node-3"):
        assert await cluster.register(cl[n], n) == {"heartbeat_interval_s": 2.0}
    return cl


# -- membership --------------------------------------------------------------------------------
async def test_nodes_register_heartbeat_and_age(cluster):
    cl = cluster.clients("node-1", "node-2", "node-3", "node-4", "gateway")
    await three_nodes(cluster)
    with pytest.raises(errors.AccessDenied):  # a node may only speak for itself
        await cluster.register(cl["node-1"], "node-2")
    with pytest.raises(errors.AccessDenied):
        await cl["node-1"].call("Heartbeat", {"node_id": "node-2", "free_bytes": 1, "used_bytes": 1})
    with pytest.raises(errors.AccessDenied):  # the ACL: only node-* register
        await cluster.register(cl["gateway"], "gateway")
    with pytest.raises(errors.NotFound) as info:
        await cl["node-4"].call("Heartbeat", {"node_id": "node-4", "free_bytes": 1, "used_bytes": 1})
    assert info.value.kind == "UnknownNode"

    listed = (await cl["gateway"].call("ListNodes", {}))["nodes"]
    assert [(n["node_id"], n["state"], n["zone"]) for n in listed] == [
        ("node-1", "up", ZONE), ("node-2", "up", ZONE), ("node-3", "up", ZONE)]
    assert listed[0] | {"last_heartbeat": 0} == {
        "node_id": "node-1", "zone": ZONE, "host": "10.0.0.1", "port": 7000, "state": "up",
        "capacity_bytes": 100 * GIB, "free_bytes": 90 * GIB, "last_heartbeat": 0}
    assert listed[0]["last_heartbeat"] == cluster.clock.now

    # time passes: node-1 heartbeats, node-2 goes quiet, node-3 re-registers on a new address
    cluster.clock.now += 5
    await cl["node-1"].call("Heartbeat", {"node_id": "node-1", "free_bytes": 80 * GIB, "used_bytes": 20 * GIB})
    cluster.clock.now += 5
    states = {n["node_id"]: n["state"] for n in (await cl["node-1"].call("ListNodes", {}))["nodes"]}
    assert states == {"node-1": "up", "node-2": "suspect", "node-3": "suspect"}
    await cluster.register(cl["node-3"], "node-3", port=7999)
    await cl["node-1"].call("Heartbeat", {"node_id": "node-1", "free_bytes": 80 * GIB, "used_bytes": 20 * GIB})
    cluster.clock.now += 6
    listed = {n["node_id"]: n for n in (await cl["gateway"].call("ListNodes", {"zone": ZONE}))["nodes"]}
    assert {k: v["state"] for k, v in listed.items()} == {"node-1": "up", "node-2": "down", "node-3": "up"}
    assert listed["node-3"]["port"] == 7999 and listed["node-1"]["free_bytes"] == 80 * GIB
    assert (await cl["gateway"].call("ListNodes", {"zone": "use1-az9"}))["nodes"] == []

    # the ListNodes ACL, and bad input that changes nothing
    with pytest.raises(errors.AccessDenied):
        await (cluster.clients("intruder"))["intruder"].call("ListNodes", {})
    for bad in ({"port": "7000"}, {"port": 0}, {"zone": "Not A Zone"}, {"capacity_bytes": -1},
                {"host": "bad host!"}, {"extra": 1}, {"free_bytes": True}):
        with pytest.raises(errors.InvalidRequest):
            await cluster.register(cl["node-3"], "node-3", **bad)
    with pytest.raises(errors.InvalidRequest):  # a node cannot change zone
        await cluster.register(cl["node-3"], "node-3", zone="use1-az5", port=7999)
    with pytest.raises(errors.InvalidRequest):
        await cl["node-3"].call("Heartbeat", {"node_id": "node-3"})
    listed2 = {n["node_id"]: n for n in (await cl["gateway"].call("ListNodes", {}))["nodes"]}
    assert listed2 == listed


# -- buckets -----------------------------------------------------------------------------------
async def test_create_bucket_places_and_wraps_a_key(cluster):
    cl = cluster.clients("gateway", "node-1", "admin", "intruder")
    await three_nodes(cluster)
    await cluster.register(cluster.clients("node-4")["node-4"], "node-4")
    name = "photos--use1-az4--x-s3"
    b = (await cl["gateway"].call("CreateBucket", {"name": name, "owner": ALICE, "zone": ZONE}))["bucket"]
    assert b["name"] == name and b["zone"] == ZONE and b["owner"] == ALICE and b["type"] == "Directory"
    assert b["arn"] == f"arn:aws:s3express:us-east-1:000000000000:bucket/{name}"
    assert isinstance(b["bucket_id"], bytes) and len(b["bucket_id"]) == 16
    assert (b["sse_algorithm"], b["kms_key_arn"], b["bucket_key_enabled"]) == ("AES256", None, True)
    assert (b["active_gen"], b["epoch"], b["version"], b["created"]) == (1, 1, 1, cluster.clock.now)
    replicas = b["replicas"]
    assert len({r["node_id"] for r in replicas}) == 3
    assert all(r["host"] == f"10.0.0.{r['node_id'][-1]}" and r["port"] == 7000 for r in replicas)
    [key] = b["keys"]
    assert key["gen"] == 1 and key["kms_key_arn"].startswith("arn:aws:kms:us-east-1:000000000000:key/")
    # the managed aws/s3 key, and a node can unwrap the bucket key with the bucket's context
    meta = (await cl["kms:node-1"].call("DescribeKey", {"key_id": key["kms_key_arn"]}))["KeyMetadata"]
    assert meta["KeyManager"] == "AWS"
    plain = await cl["kms:node-1"].call("Decrypt", {"ciphertext_blob": key["wrapped"],
                                                    "encryption_context": {"aws:s3:arn": b["arn"]}})
    assert len(plain["Plaintext"]) == 32
    with pytest.raises(errors.InvalidRequest):
        await cl["kms:node-1"].call("Decrypt", {"ciphertext_blob": key["wrapped"],
                                                "encryption_context": {"aws:s3:arn": "other"}})

    assert (await cl["node-1"].call("GetBucket", {"name": name}))["bucket"] == b
    with pytest.raises(errors.AccessDenied):
        await cl["intruder"].call("GetBucket", {"name": name})
    with pytest.raises(errors.AccessDenied):
        await cl["node-1"].call("CreateBucket", {"name": "x--use1-az4--x-s3", "owner": ALICE})

    # placement is deterministic: the same name lands on the same nodes after delete + create
    await cl["admin"].call("DeleteBucket", {"name": name})
    again = (await cl["admin"].call("CreateBucket", {"name": name, "owner": BOB}))["bucket"]
    assert again["replicas"] == replicas and again["bucket_id"] != b["bucket_id"]


async def test_bucket_name_zone_and_duplicate_rules(cluster):
    cl = cluster.clients("gateway", "admin")
    await three_nodes(cluster)

    async def refused(cls, kind, **args):
        with pytest.raises(cls) as info:
            await cl["gateway"].call("CreateBucket", {"owner": ALICE} | args)
        assert info.value.kind == kind, info.value

    await cl["gateway"].call("CreateBucket", {"name": "logs--use1-az4--x-s3", "owner": ALICE})
    await refused(errors.Conflict, "BucketAlreadyOwnedByYou", name="logs--use1-az4--x-s3")
    await refused(errors.Conflict, "BucketAlreadyExists", name="logs--use1-az4--x-s3", owner=BOB)
    await refused(errors.InvalidRequest, "InvalidLocationConstraint", name="logs--use1-az9--x-s3")
    await refused(errors.InvalidRequest, "InvalidLocationConstraint", name="new--use1-az4--x-s3",
                  zone="use1-az5")
    for bad in ("Bad_Name--use1-az4--x-s3", "ab", "-x--use1-az4--x-s3", "a" * 60 + "--use1-az4--x-s3",
                "logs--x-s3", "xn--abc--use1-az4--x-s3", "has space--use1-az4--x-s3"):
        await refused(errors.InvalidRequest, "InvalidBucketName", name=bad)
    # general-purpose names: AWS general rules, placed in the default zone (the first configured)
    gp = (await cl["gateway"].call("CreateBucket", {"name": "general.purpose-bucket", "owner": ALICE}))["bucket"]
    assert gp["zone"] == "use1-az4" and gp["type"] == "GeneralPurpose" and gp["arn"] == "arn:aws:s3:::general.purpose-bucket"
    assert len(gp["replicas"]) == 3 and gp["policy"] is None
    await refused(errors.InvalidRequest, "InvalidLocationConstraint", name="other-general", zone="use1-az5")
    for bad in ("Upper-Case", "a..b", "192.168.1.1", "ends-with-", "x-s3alias-bucket-s3alias"):
        await refused(errors.InvalidRequest, "InvalidBucketName", name=bad)
    await cl["gateway"].call("DeleteBucket", {"name": "general.purpose-bucket"})
    # a configured zone without nodes, then a zone whose nodes are down
    await refused(errors.Unavailable, "InsufficientCapacity", name="new--use1-az5--x-s3")
    cluster.clock.now += 16
    await refused(errors.Unavailable, "InsufficientCapacity", name="new--use1-az4--x-s3")
    # wrong types and unknown arguments
    for args in ({"name": 5}, {"name": "n--use1-az4--x-s3", "owner": 7}, {"name": "n--use1-az4--x-s3", "x": 1},
                 {"name": "n--use1-az4--x-s3", "owner": "o" * 5000}, {"name": None}):
        with pytest.raises(errors.InvalidRequest):
            await cl["gateway"].call("CreateBucket", {"owner": ALICE} | args)

    listed = (await cl["admin"].call("ListBuckets", {}))["buckets"]
    assert [b["name"] for b in listed] == ["logs--use1-az4--x-s3"]
    assert (await cl["admin"].call("ListBuckets", {"owner": BOB}))["buckets"] == []
    await cl["gateway"].call("DeleteBucket", {"name": "logs--use1-az4--x-s3"})
    for method in ("GetBucket", "DeleteBucket"):
        with pytest.raises(errors.NotFound) as info:
            await cl["gateway"].call(method, {"name": "logs--use1-az4--x-s3"})
        assert info.value.kind == "NoSuchBucket"

    text = await trio.to_thread.run_sync(scrape, cluster.info["metrics"])
    assert 'onezone_coordinator_nodes{state="down",zone="use1-az4"} 3.0' in text
    assert 'onezone_coordinator_nodes{state="up",zone="use1-az5"} 0.0' in text
    assert 'onezone_coordinator_buckets{zone="use1-az4"} 0.0' in text
    assert 'onezone_coordinator_placement_decisions_total{outcome="placed"} 2.0' in text
    # (the RPC client retries an Unavailable once on a reused connection: count >= 2)
    assert re.search(r'onezone_coordinator_placement_decisions_total\{outcome="insufficient_capacity"\} [2-9]', text)
    assert 'onezone_coordinator_heartbeat_age_seconds{node="node-1"} 16.0' in text
    assert 'onezone_coordinator_kms_calls_total{operation="GenerateDataKeyWithoutPlaintext",outcome="ok"} 2.0' in text


async def test_bucket_policy_rpcs(cluster):
    cl = cluster.clients("gateway", "admin", "node-1")
    await three_nodes(cluster)
    name = "pol--use1-az4--x-s3"
    created = (await cl["gateway"].call("CreateBucket", {"name": name, "owner": ALICE}))["bucket"]
    arn = created["arn"]
    doc = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": {"AWS": BOB}, "Action": "s3express:CreateSession", "Resource": arn}]})
    put = (await cl["gateway"].call("PutBucketPolicy", {"name": name, "policy": doc}))["bucket"]
    assert put["policy"] == doc and put["version"] == created["version"] + 1
    assert (await cl["node-1"].call("GetBucket", {"name": name}))["bucket"]["policy"] == doc
    bad = {
        "no principal": {"Statement": [{"Effect": "Allow", "Action": "s3express:*", "Resource": arn}]},
        "other bucket": {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3express:*",
                                        "Resource": arn.replace("pol--", "other--")}]},
        "kms action": {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": arn}]},
    }
    for why, policy in bad.items():
        with pytest.raises(errors.InvalidRequest) as info:
            await cl["gateway"].call("PutBucketPolicy", {"name": name, "policy": json.dumps(policy)})
        assert info.value.kind == "MalformedPolicy", why
    for text in ("not json", "{" * 5000, "x" * 200_000):
        with pytest.raises(errors.InvalidRequest) as info:
            await cl["gateway"].call("PutBucketPolicy", {"name": name, "policy": text})
    assert (await cl["admin"].call("GetBucket", {"name": name}))["bucket"]["policy"] == doc  # unchanged
    with pytest.raises(errors.AccessDenied):
        await cl["node-1"].call("PutBucketPolicy", {"name": name, "policy": doc})
    with pytest.raises(errors.NotFound) as info:
        await cl["gateway"].call("PutBucketPolicy", {"name": "nope--use1-az4--x-s3", "policy": doc})
    assert info.value.kind == "NoSuchBucket"
    gone = (await cl["gateway"].call("DeleteBucketPolicy", {"name": name}))["bucket"]
    assert gone["policy"] is None
    assert (await cl["gateway"].call("DeleteBucketPolicy", {"name": name}))["bucket"]["version"] == gone["version"]


async def test_put_bucket_encryption_rules(cluster):
    cl = cluster.clients("gateway", "admin", "node-1")
    await three_nodes(cluster)
    name = "secure--use1-az4--x-s3"
    await cl["gateway"].call("CreateBucket", {"name": name, "owner": ALICE})
    cmk1 = (await cl["kms:admin"].call("CreateKey", {}))["KeyMetadata"]
    cmk2 = (await cl["kms:admin"].call("CreateKey", {}))["KeyMetadata"]

    async def put(**args):
        return (await cl["gateway"].call("PutBucketEncryption", {"name": name} | args))["bucket"]

    async def refused(cls, kind, **args):
        with pytest.raises(cls) as info:
            await put(**args)
        assert info.value.kind == kind, info.value

    assert (await put(sse_algorithm="AES256"))["version"] == 1  # already SSE-S3: no change
    await refused(errors.InvalidRequest, "InvalidArgument", sse_algorithm="aws:kms", kms_key_id="alias/mine")
    await refused(errors.InvalidRequest, "InvalidArgument", sse_algorithm="aws:kms")
    await refused(errors.InvalidRequest, "InvalidArgument", sse_algorithm="aws:kms:dsse", kms_key_id=cmk1["KeyId"])
    await refused(errors.NotFound, "NotFoundException", sse_algorithm="aws:kms", kms_key_id=str(uuid.uuid4()))
    managed = (await cl["gateway"].call("GetBucket", {"name": name}))["bucket"]["keys"][0]["kms_key_arn"]
    await refused(errors.InvalidRequest, "InvalidArgument", sse_algorithm="aws:kms", kms_key_id=managed)
    with pytest.raises(errors.NotFound):
        await put(sse_algorithm="AES256", name="nope--use1-az4--x-s3")

    b = await put(sse_algorithm="aws:kms", kms_key_id=cmk1["KeyId"], bucket_key_enabled=True)
    assert (b["sse_algorithm"], b["kms_key_arn"], b["active_gen"], b["version"]) == ("aws:kms", cmk1["Arn"], 2, 2)
    assert [(k["gen"], k["kms_key_arn"]) for k in b["keys"]] == [(1, managed), (2, cmk1["Arn"])]
    plain = await cl["kms:node-1"].call("Decrypt", {"ciphertext_blob": b["keys"][1]["wrapped"],
                                                    "encryption_context": {"aws:s3:arn": b["arn"]}})
    assert plain["KeyId"] == cmk1["Arn"] and len(plain["Plaintext"]) == 32
    assert await put(sse_algorithm="aws:kms", kms_key_id=cmk1["Arn"]) == b  # same CMK by ARN: no-op
    await refused(errors.InvalidRequest, "InvalidArgument", sse_algorithm="aws:kms", kms_key_id=cmk2["KeyId"])
    with pytest.raises(errors.InvalidRequest) as info:
        await put(sse_algorithm="AES256")
    assert info.value.kind == "InvalidArgument" and "cannot be changed" in info.value.message
    await refused(errors.InvalidRequest, "InvalidArgument", sse_algorithm="aws:kms",
                  kms_key_id=cmk1["KeyId"], bucket_key_enabled="yes")
    assert (await cl["node-1"].call("GetBucket", {"name": name}))["bucket"] == b
    with pytest.raises(errors.AccessDenied):
        await cl["node-1"].call("PutBucketEncryption", {"name": name, "sse_algorithm": "AES256"})


# -- IAM ---------------------------------------------------------------------------------------
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3express:CreateSession", "Resource": "*"}]})


async def test_iam_crud_and_auth_context(cluster):
    cl = cluster.clients("gateway", "admin", "node-1")
    gw, admin = cl["gateway"], cl["admin"]

    async def refused(client, cls, kind, method, **args):
        with pytest.raises(cls) as info:
            await client.call(method, args)
        assert info.value.kind == kind, info.value

    user = (await admin.call("CreateUser", {"user_name": "alice"}))["User"]
    assert user["UserName"] == "alice" and user["Path"] == "/" and user["Arn"] == ALICE
    assert user["UserId"].startswith("AIDA") and len(user["UserId"]) == 20 and user["UserId"].isupper()
    await refused(gw, errors.Conflict, "EntityAlreadyExists", "CreateUser", user_name="ALICE")
    await refused(gw, errors.InvalidRequest, "ValidationError", "CreateUser", user_name="bad name")
    await refused(gw, errors.InvalidRequest, "ValidationError", "CreateUser", user_name="x", path="no-slash")
    await refused(cl["node-1"], errors.AccessDenied, "AccessDeniedException", "CreateUser", user_name="eve")
    assert (await gw.call("GetUser", {"user_name": "alice"}))["User"] == user
    assert [u["UserName"] for u in (await gw.call("ListUsers", {}))["Users"]] == ["admin", "alice"]

    key = (await gw.call("CreateAccessKey", {"user_name": "alice"}))["AccessKey"]
    akid, secret = key["AccessKeyId"], key["SecretAccessKey"]
    assert akid.startswith("AKIA") and len(akid) == 20 and akid[4:].isalnum() and akid.isupper()
    assert len(secret) == 40 and key["Status"] == "Active" and key["UserName"] == "alice"
    key2 = (await gw.call("CreateAccessKey", {"user_name": "alice"}))["AccessKey"]
    await refused(gw, errors.InvalidRequest, "LimitExceeded", "CreateAccessKey", user_name="alice")
    await refused(gw, errors.NotFound, "NoSuchEntity", "CreateAccessKey", user_name="nobody")
    listed = (await gw.call("ListAccessKeys", {"user_name": "alice"}))["AccessKeyMetadata"]
    assert sorted(k["AccessKeyId"] for k in listed) == sorted([akid, key2["AccessKeyId"]])
    assert all("SecretAccessKey" not in k for k in listed)

    ctx = await gw.call("GetAuthContext", {"access_key_id": akid})
    assert ctx == {"user_name": "alice", "user_arn": ALICE, "account_id": "000000000000",
                   "secret_access_key": secret, "status": "Active", "policies": []}
    await refused(admin, errors.AccessDenied, "AccessDeniedException", "GetAuthContext", access_key_id=akid)
    await refused(gw, errors.NotFound, "InvalidAccessKeyId", "GetAuthContext", access_key_id="AKIA" + "X" * 16)

    await refused(gw, errors.InvalidRequest, "MalformedPolicyDocument", "PutUserPolicy", user_name="alice",
                  policy_name="p", policy_document='{"Statement": "nope"}')
    await refused(gw, errors.InvalidRequest, "MalformedPolicyDocument", "PutUserPolicy", user_name="alice",
                  policy_name="p", policy_document="not json")
    await refused(gw, errors.InvalidRequest, "ValidationError", "PutUserPolicy", user_name="alice",
                  policy_name="bad name!", policy_document=POLICY)
    assert (await gw.call("ListUserPolicies", {"user_name": "alice"}))["PolicyNames"] == []
    await gw.call("PutUserPolicy", {"user_name": "alice", "policy_name": "sessions", "policy_document": POLICY})
    assert await gw.call("GetUserPolicy", {"user_name": "alice", "policy_name": "sessions"}) == {
        "UserName": "alice", "PolicyName": "sessions", "PolicyDocument": POLICY}
    assert (await gw.call("ListUserPolicies", {"user_name": "alice"}))["PolicyNames"] == ["sessions"]
    assert (await gw.call("GetAuthContext", {"access_key_id": akid}))["policies"] == [POLICY]
    await refused(gw, errors.NotFound, "NoSuchEntity", "GetUserPolicy", user_name="alice", policy_name="other")

    # secrets are stored only as KMS ciphertext
    db = sqlite3.connect(cluster.cfg.db_path)
    dump = "\n".join(db.iterdump())
    db.close()
    assert secret not in dump and key2["SecretAccessKey"] not in dump

    await refused(gw, errors.Conflict, "DeleteConflict", "DeleteUser", user_name="alice")
    await gw.call("DeleteAccessKey", {"user_name": "alice", "access_key_id": akid})
    await refused(gw, errors.NotFound, "InvalidAccessKeyId", "GetAuthContext", access_key_id=akid)
    await refused(gw, errors.NotFound, "NoSuchEntity", "DeleteAccessKey", user_name="alice", access_key_id=akid)
    await gw.call("DeleteAccessKey", {"user_name": "alice", "access_key_id": key2["AccessKeyId"]})
    await gw.call("DeleteUserPolicy", {"user_name": "alice", "policy_name": "sessions"})
    await gw.call("DeleteUser", {"user_name": "alice"})
    await refused(gw, errors.NotFound, "NoSuchEntity", "GetUser", user_name="alice")
    await refused(gw, errors.NotFound, "NoSuchEntity", "ListAccessKeys", user_name="alice")
    await refused(gw, errors.InvalidRequest, "ValidationError", "GetUser", user_name=12)
    await refused(gw, errors.InvalidRequest, "ValidationError", "ListUsers", unexpected=True)


# -- bootstrap and restart ---------------------------------------------------------------------
async def test_bootstrap_admin_and_restart_keep_everything(tmp_path, tls_for, kms):
    clock = FakeClock()
    cfg = coordinator_config(tmp_path, tls_for, kms["rpc"])
    creds_file = cfg.data_dir / "admin-credentials.json"
    async with rpc_pools(tls_for) as pools:
        async with running(serve, cfg, clock=clock) as info:
            assert info["admin_credentials_file"] == str(creds_file)
            c = Cluster(cfg, info, kms, clock, pools)
            await three_nodes(c)
            bucket = (await c.clients("gateway")["gateway"].call(
                "CreateBucket", {"name": "keep--use1-az4--x-s3", "owner": ALICE}))["bucket"]
        assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
        creds = json.loads(creds_file.read_text())
        assert set(creds) == {"user_name", "access_key_id", "secret_access_key"}
        assert creds["user_name"] == "admin" and len(creds["secret_access_key"]) == 40
        before = creds_file.read_bytes()

        clock.now += 100
        async with running(serve, cfg, clock=clock) as info:
            gw = Cluster(cfg, info, kms, clock, pools).clients("gateway")["gateway"]
            ctx = await gw.call("GetAuthContext", {"access_key_id": creds["access_key_id"]})
            assert ctx["user_name"] == "admin" and ctx["secret_access_key"] == creds["secret_access_key"]
            assert [json.loads(p) for p in ctx["policies"]] == [
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}]
            assert [u["UserName"] for u in (await gw.call("ListUsers", {}))["Users"]] == ["admin"]
            assert (await gw.call("GetBucket", {"name": "keep--use1-az4--x-s3"}))["bucket"] == bucket
            nodes = (await gw.call("ListNodes", {}))["nodes"]
            assert [(n["node_id"], n["state"], n["host"]) for n in nodes] == [
                ("node-1", "up", "10.0.0.1"), ("node-2", "up", "10.0.0.2"), ("node-3", "up", "10.0.0.3")]
        assert creds_file.read_bytes() == before


async def test_bootstrap_refuses_to_overwrite_a_stale_credentials_file(tmp_path, tls_for, kms):
    cfg = coordinator_config(tmp_path, tls_for, kms["rpc"], admin_credentials_file=tmp_path / "admin.json")
    (tmp_path / "admin.json").write_text("old\n")
    err = await start_error(cfg)
    assert isinstance(err, BootstrapError) and "exists but the database has no users" in str(err)
    assert (tmp_path / "admin.json").read_text() == "old\n"


async def test_bootstrap_fails_clearly_when_the_kms_never_answers(tmp_path, tls_for):
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with listener:  # accepts nothing: connecting succeeds, the TLS handshake times out
        cfg = CoordinatorConfig(data_dir=tmp_path / "c", kms=Endpoint("127.0.0.1", port), kms_wait_s=0.5,
                                rpc_timeout_s=0.2, tls=tls_for("coordinator"))
        err = await start_error(cfg)
    assert isinstance(err, BootstrapError) and "did not answer within kms_wait_s=0.5s" in str(err)
    assert not (tmp_path / "c" / "admin-credentials.json").exists()


async def test_bootstrap_waits_for_a_late_kms(tmp_path, tls_for, kms):
    """A proxy refuses connections until the KMS is 'up', then forwards them."""
    ready = trio.Event()
    kms_host, kms_port = split(kms["rpc"])

    async def proxy(client: trio.SocketStream) -> None:
        if not ready.is_set():
            await client.aclose()
            return
        upstream = await trio.open_tcp_stream(kms_host, kms_port)

        async def pump(src, dst):
            try:
                while data := await src.receive_some(65536):
                    await dst.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                nursery.cancel_scope.cancel()

        async with upstream, client, trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, upstream)
            nursery.start_soon(pump, upstream, client)

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(functools.partial(trio.serve_tcp, proxy, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        cfg = CoordinatorConfig(data_dir=tmp_path / "c", kms=Endpoint("127.0.0.1", port), kms_wait_s=10.0,
                                tls=tls_for("coordinator"))
        nursery.start_soon(_set_later, ready, 0.4)
        start = trio.current_time()
        async with running(serve, cfg):
            assert trio.current_time() - start >= 0.4
            assert (tmp_path / "c" / "admin-credentials.json").exists()
        nursery.cancel_scope.cancel()


async def _set_later(event: trio.Event, delay_s: float) -> None:
    await trio.sleep(delay_s)
    event.set()
