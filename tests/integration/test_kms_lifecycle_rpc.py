"""The KMS lifecycle over real mutual-TLS RPC (in-process daemon) and as a real process:
what a node may never do, refused calls audited, the background deletion with a fake clock,
revocation reaching a node's bucket-key cache through the real KeyStateChanges feed, and
kill -9 + restart keeping keys, versions, states, aliases and policies."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import trio

from kms.service import DAY_S
from node.keycache import BucketKeyCache, kms_unwrapper
from node.keywatch import KeyStateWatcher
from proto import errors
from proto.rpc import open_rpc_pool
from tests.integration.test_kms_process import REPO, read_ready, write_config
from tests.integration.test_kms_rpc import BUCKET_CTX, audit_lines, client_for, kms, make_cfg, running, split  # noqa: F401

ALICE = "arn:aws:iam::000000000000:user/alice"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("op, args", [
    ("CreateKey", {}),
    ("PutKeyPolicy", {"key_id": "{kid}", "policy": "{{}}"}),
    ("ScheduleKeyDeletion", {"key_id": "{kid}"}),
    ("DisableKey", {"key_id": "{kid}"}),
    ("CreateAlias", {"alias_name": "alias/x", "target_key_id": "{kid}"}),
])
async def test_node_may_never_manage_keys(client_for, kms, op, args):
    cfg, _ = kms
    async with client_for("admin") as admin, client_for("node-1") as node:
        kid = (await admin.call("CreateKey", {}))["KeyMetadata"]["KeyId"]
        with pytest.raises(errors.AccessDenied) as ei:
            await node.call(op, {k: v.format(kid=kid) for k, v in args.items()})
        assert ei.value.kind == "AccessDeniedException"
        # ... but may use keys: GenerateDataKey and Decrypt
        dk = await node.call("GenerateDataKey", {"key_id": kid, "encryption_context": BUCKET_CTX})
        plain = await node.call("Decrypt", {"ciphertext_blob": dk["CiphertextBlob"], "encryption_context": BUCKET_CTX})
        assert plain["Plaintext"] == dk["Plaintext"]
        assert (await admin.call("DescribeKey", {"key_id": kid}))["KeyMetadata"]["KeyState"] == "Enabled"
    refused = [r for r in audit_lines(cfg) if r["eventName"] == op and r.get("errorCode") == "AccessDeniedException"]
    assert refused and refused[-1]["userIdentity"]["principalId"] == "node-1"


async def test_key_policy_binds_services_and_users(client_for, kms):
    cfg, _ = kms
    async with client_for("admin") as admin, client_for("node-1") as node, client_for("gateway") as gw:
        kid = (await admin.call("CreateKey", {}))["KeyMetadata"]["KeyId"]
        only_alice = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "kms:*", "Resource": "*"}]})
        with pytest.raises(errors.InvalidRequest) as ei:  # the admin service would lock itself out
            await admin.call("PutKeyPolicy", {"key_id": kid, "policy": only_alice})
        assert ei.value.kind == "MalformedPolicyDocumentException"
        await admin.call("PutKeyPolicy", {"key_id": kid, "policy": only_alice, "caller": ALICE})
        with pytest.raises(errors.AccessDenied):  # the node's role is not in the policy any more
            await node.call("GenerateDataKey", {"key_id": kid})
        with pytest.raises(errors.AccessDenied):
            await gw.call("Encrypt", {"key_id": kid, "plaintext": b"x",
                                      "caller": "arn:aws:iam::000000000000:user/bob"})
        blob = await gw.call("Encrypt", {"key_id": kid, "plaintext": b"x", "caller": ALICE})
        assert blob["KeyId"].endswith(kid)
        with pytest.raises(errors.InvalidRequest) as ei:
            await admin.call("DescribeKey", {"key_id": kid, "caller": "not-an-arn"})
        assert ei.value.kind == "ValidationException"
    denied = [r for r in audit_lines(cfg) if r.get("errorCode") == "AccessDeniedException"]
    assert any(r["userIdentity"].get("arn") == "arn:aws:iam::000000000000:user/bob" for r in denied)


async def test_background_deletion_with_a_fake_clock(tmp_path, tls_for):
    cfg = make_cfg(tmp_path, tls_for)
    from dataclasses import replace
    cfg = replace(cfg, maintenance_interval_s=0.01)
    clock = FakeClock()
    async with running(cfg, clock=clock) as info, open_rpc_pool(tls_for("admin").client_context()) as pool:
        admin = pool.client(*split(info["rpc"]), "kms")
        kid = (await admin.call("CreateKey", {}))["KeyMetadata"]["KeyId"]
        await admin.call("CreateAlias", {"alias_name": "alias/short-lived", "target_key_id": kid})
        out = await admin.call("ScheduleKeyDeletion", {"key_id": kid, "pending_window_in_days": 7})
        assert out["DeletionDate"] == clock.now + 7 * DAY_S
        await trio.sleep(0.1)
        assert (await admin.call("DescribeKey", {"key_id": kid}))["KeyMetadata"]["KeyState"] == "PendingDeletion"
        clock.now += 7 * DAY_S
        with trio.fail_after(5):
            while True:
                try:
                    await admin.call("DescribeKey", {"key_id": kid})
                except errors.NotFound:
                    break
                await trio.sleep(0.02)
        with pytest.raises(errors.NotFound):
            await admin.call("DescribeKey", {"key_id": "alias/short-lived"})
    deleted = [r for r in audit_lines(cfg) if r["eventName"] == "DeleteKey"]
    assert deleted and deleted[0]["resources"][0]["ARN"].endswith(kid)


async def test_revocation_reaches_the_node_cache(client_for, kms):
    async with client_for("admin") as admin, client_for("node-1") as node, client_for("coordinator") as coord:
        kid = (await admin.call("CreateKey", {}))["KeyMetadata"]["KeyId"]
        arn = BUCKET_CTX["aws:s3:arn"]
        wrapped = (await coord.call("Encrypt", {"key_id": kid, "plaintext": bytes(32),
                                                "encryption_context": BUCKET_CTX}))["CiphertextBlob"]
        cache = BucketKeyCache(kms_unwrapper(node), ttl_s=300, max_entries=10, grace_s=60)
        watcher = KeyStateWatcher(node, cache, interval_s=1.0, grace_s=60)
        await watcher.poll_once()  # first poll: full snapshot
        assert await cache.get(b"b" * 16, 1, wrapped, arn) == bytes(32)
        assert len(cache) == 1
        await admin.call("DisableKey", {"key_id": kid})
        await watcher.poll_once()
        assert len(cache) == 0
        with pytest.raises(errors.InvalidRequest) as ei:
            await cache.get(b"b" * 16, 1, wrapped, arn)
        assert ei.value.kind == "DisabledException"
        await admin.call("EnableKey", {"key_id": kid})
        await watcher.poll_once()
        assert await cache.get(b"b" * 16, 1, wrapped, arn) == bytes(32)


def test_kill_9_and_restart_keep_everything(tmp_path, tls_for):
    cfg = write_config(tmp_path, tls_for("kms"))

    def start():
        proc = subprocess.Popen([sys.executable, "-m", "kms", "--config", str(cfg)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        return proc, read_ready(proc)

    async def call(info, method, args):
        principal = "gateway" if method in ("Encrypt", "Decrypt") else "admin"
        async with open_rpc_pool(tls_for(principal).client_context()) as pool:
            return await pool.client(*split(info["rpc"]), "kms").call(method, args)

    proc, info = start()
    try:
        kid = trio.run(call, info, "CreateKey", {"description": "durable"})["KeyMetadata"]["KeyId"]
        blob1 = trio.run(call, info, "Encrypt", {"key_id": kid, "plaintext": b"v1"})["CiphertextBlob"]
        trio.run(call, info, "RotateKeyOnDemand", {"key_id": kid})
        trio.run(call, info, "CreateAlias", {"alias_name": "alias/durable", "target_key_id": kid})
        trio.run(call, info, "EnableKeyRotation", {"key_id": kid, "rotation_period_in_days": 100})
        policy = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"}, "Action": "kms:*",
             "Resource": "*"}, {"Sid": "marker", "Effect": "Deny", "Principal": {"AWS": ALICE},
                                "Action": "kms:Decrypt", "Resource": "*"}]})
        trio.run(call, info, "PutKeyPolicy", {"key_id": kid, "policy": policy})
        trio.run(call, info, "DisableKey", {"key_id": kid})
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc, info = start()
    try:
        meta = trio.run(call, info, "DescribeKey", {"key_id": "alias/durable"})["KeyMetadata"]
        assert meta["KeyId"] == kid and meta["KeyState"] == "Disabled" and meta["Description"] == "durable"
        assert trio.run(call, info, "GetKeyPolicy", {"key_id": kid})["Policy"] == policy
        status = trio.run(call, info, "GetKeyRotationStatus", {"key_id": kid})
        assert status["KeyRotationEnabled"] and status["RotationPeriodInDays"] == 100
        assert len(trio.run(call, info, "ListKeyRotations", {"key_id": kid})["Rotations"]) == 1
        trio.run(call, info, "EnableKey", {"key_id": kid})
        assert trio.run(call, info, "Decrypt", {"ciphertext_blob": blob1})["Plaintext"] == b"v1"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
