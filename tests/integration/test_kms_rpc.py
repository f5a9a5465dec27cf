"""The KMS daemon in-process over real mutual-TLS RPC: operations, ACL, bad input, restart, audit."""

from __future__ import annotations

import base64
import json
import os
import urllib.request
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from kms.config import KmsConfig
from kms.keystore import KeystoreError
from kms.main import serve
from proto import errors
from proto.daemon import Lifecycle
from proto.rpc import open_rpc_pool

ROOT_HEX = "11" * 32
BUCKET_CTX = {"aws:s3:arn": "arn:aws:s3express:us-east-1:000000000000:bucket/photos--use1-az4--x-s3"}


def make_cfg(tmp_path: Path, tls_for, *, root_hex: str = ROOT_HEX, name: str = "kms") -> KmsConfig:
    key_file = tmp_path / f"{name}-root.key"
    key_file.write_text(root_hex + "\n")
    os.chmod(key_file, 0o600)
    return KmsConfig(data_dir=tmp_path / name, root_key_file=key_file, tls=tls_for("kms"))


def split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


@asynccontextmanager
async def running(cfg: KmsConfig, **kw):
    """Start the real daemon in-process; stop it (cancel) on exit."""
    async with trio.open_nursery() as nursery:
        info = await nursery.start(lambda task_status: serve(cfg, Lifecycle(1.0), task_status=task_status, **kw))
        yield info
        nursery.cancel_scope.cancel()


@pytest.fixture
async def kms(tmp_path, tls_for):
    cfg = make_cfg(tmp_path, tls_for)
    async with running(cfg) as info:
        yield cfg, info


@pytest.fixture
def client_for(kms, tls_for):
    """client_for(principal) -> async context manager giving an RpcClient for the KMS."""
    _cfg, info = kms
    host, port = split(info["rpc"])

    @asynccontextmanager
    async def make(principal: str):
        async with open_rpc_pool(tls_for(principal).client_context()) as pool:
            yield pool.client(host, port, "kms")

    return make


def audit_lines(cfg: KmsConfig) -> list[dict]:
    return [json.loads(line) for line in cfg.audit_log_path.read_text().splitlines()]


async def test_wrapped_bucket_key_round_trip(client_for, kms):
    cfg, _ = kms
    async with client_for("admin") as admin, client_for("coordinator") as coord, client_for("node-1") as node:
        meta = (await admin.call("CreateKey", {"description": "photos",
                                               "caller": "arn:aws:iam::000000000000:user/alice"}))["KeyMetadata"]
        assert meta["KeyState"] == "Enabled" and meta["KeyManager"] == "CUSTOMER"
        wrapped = await coord.call("GenerateDataKeyWithoutPlaintext",
                                   {"key_id": meta["Arn"], "encryption_context": BUCKET_CTX})
        assert set(wrapped) == {"KeyId", "CiphertextBlob"} and wrapped["KeyId"] == meta["Arn"]
        out = await node.call("Decrypt", {"ciphertext_blob": wrapped["CiphertextBlob"],
                                          "encryption_context": BUCKET_CTX})
        assert out["KeyId"] == meta["Arn"] and len(out["Plaintext"]) == 32
        # the same key id given explicitly (id form) is accepted
        again = await node.call("Decrypt", {"ciphertext_blob": wrapped["CiphertextBlob"],
                                            "encryption_context": BUCKET_CTX, "key_id": meta["KeyId"]})
        assert again["Plaintext"] == out["Plaintext"]
        gdk = await node.call("GenerateDataKey", {"key_id": meta["KeyId"], "encryption_context": BUCKET_CTX,
                                                  "number_of_bytes": 16})
        assert len(gdk["Plaintext"]) == 16
        back = await coord.call("Decrypt", {"ciphertext_blob": gdk["CiphertextBlob"],
                                            "encryption_context": BUCKET_CTX})
        assert back["Plaintext"] == gdk["Plaintext"]

    records = audit_lines(cfg)
    assert [r["eventName"] for r in records] == ["CreateKey", "GenerateDataKeyWithoutPlaintext", "Decrypt",
                                                 "Decrypt", "GenerateDataKey", "Decrypt"]
    assert records[0]["userIdentity"]["arn"] == "arn:aws:iam::000000000000:user/alice"
    assert records[2]["userIdentity"]["principalId"] == "node-1"
    assert records[2]["requestParameters"]["encryptionContext"] == BUCKET_CTX
    assert records[2]["resources"][0]["ARN"] == meta["Arn"]
    raw = cfg.audit_log_path.read_bytes()
    for secret in (out["Plaintext"], gdk["Plaintext"], wrapped["CiphertextBlob"]):
        for form in (secret, base64.b64encode(secret), secret.hex().encode()):
            assert form not in raw


async def test_bad_blobs_are_invalid_ciphertext(client_for, kms, tmp_path, tls_for):
    async with client_for("gateway") as gw:
        a = (await gw.call("CreateKey"))["KeyMetadata"]
        b = (await gw.call("CreateKey"))["KeyMetadata"]
        blob = (await gw.call("Encrypt", {"key_id": a["KeyId"], "plaintext": b"secret",
                                          "encryption_context": BUCKET_CTX}))["CiphertextBlob"]
        tampered = blob[:-1] + bytes([blob[-1] ^ 1])
        wrong_ctx = {"aws:s3:arn": BUCKET_CTX["aws:s3:arn"].replace("photos", "videos")}
        for ct, ctx in [(blob, wrong_ctx), (blob, {}), (tampered, BUCKET_CTX), (b"\x00" * 60, BUCKET_CTX)]:
            with pytest.raises(errors.InvalidRequest) as ei:
                await gw.call("Decrypt", {"ciphertext_blob": ct, "encryption_context": ctx})
            assert ei.value.kind == "InvalidCiphertextException"
        with pytest.raises(errors.InvalidRequest) as ei:
            await gw.call("Decrypt", {"ciphertext_blob": blob, "encryption_context": BUCKET_CTX,
                                      "key_id": b["Arn"]})
        assert ei.value.kind == "IncorrectKeyException"
        assert (await gw.call("Decrypt", {"ciphertext_blob": blob, "encryption_context": BUCKET_CTX}))[
            "Plaintext"] == b"secret"

    # a blob of another KMS's key (same root key, other keystore) is unknown here
    other_cfg = make_cfg(tmp_path, tls_for, name="other")
    async with running(other_cfg) as other_info:
        host, port = split(other_info["rpc"])
        async with open_rpc_pool(tls_for("gateway").client_context()) as pool:
            other = pool.client(host, port, "kms")
            key = (await other.call("CreateKey"))["KeyMetadata"]
            foreign = (await other.call("Encrypt", {"key_id": key["KeyId"], "plaintext": b"x"}))["CiphertextBlob"]
    async with client_for("gateway") as gw:
        with pytest.raises(errors.InvalidRequest) as ei:
            await gw.call("Decrypt", {"ciphertext_blob": foreign})
        assert ei.value.kind == "InvalidCiphertextException"
        with pytest.raises(errors.NotFound) as ei:
            await gw.call("DescribeKey", {"key_id": key["Arn"].replace("us-east-1", "eu-west-1")})
        assert ei.value.kind == "NotFoundException"


async def test_acl_refusals_are_denied_and_audited(client_for, kms):
    cfg, _ = kms
    async with client_for("node-1") as node, client_for("intruder") as intruder, \
            client_for("gateway") as gw, client_for("admin") as admin:
        with pytest.raises(errors.AccessDenied) as ei:
            await node.call("CreateKey", {"description": "sneaky"})
        assert ei.value.kind == "AccessDeniedException"
        key = (await admin.call("CreateKey"))["KeyMetadata"]
        for client, method, args in [
            (intruder, "DescribeKey", {"key_id": key["KeyId"]}),
            (intruder, "Decrypt", {"ciphertext_blob": b"x"}),
            (node, "Encrypt", {"key_id": key["KeyId"], "plaintext": b"x"}),
            (node, "ListKeys", {}),
            (gw, "GetManagedKey", {"alias": "aws/s3"}),
        ]:
            with pytest.raises(errors.AccessDenied):
                await client.call(method, args)
        assert len((await admin.call("ListKeys"))["Keys"]) == 1
    denied = [r for r in audit_lines(cfg) if r.get("errorCode") == "AccessDeniedException"]
    assert [(r["eventName"], r["userIdentity"]["principalId"]) for r in denied] == [
        ("CreateKey", "node-1"), ("DescribeKey", "intruder"), ("Decrypt", "intruder"), ("Encrypt", "node-1"),
        ("ListKeys", "node-1"), ("GetManagedKey", "gateway")]


async def test_bad_input_is_validation_error_and_changes_nothing(client_for, kms):
    cfg, _ = kms
    async with client_for("gateway") as gw:
        key = (await gw.call("CreateKey"))["KeyMetadata"]
        before = cfg.data_dir.joinpath("keys.json").read_bytes()
        cases = [
            ("CreateKey", {"description": 12}),
            ("CreateKey", {"description": "d" * 10000}),
            ("CreateKey", {"tags": "nope"}),
            ("CreateKey", {"unexpected": True}),
            ("DescribeKey", {}),
            ("ListKeys", {"limit": 5000}),
            ("GenerateDataKey", {"key_id": key["KeyId"], "number_of_bytes": 0}),
            ("GenerateDataKey", {"key_id": key["KeyId"], "encryption_context": {"k": 1}}),
            ("GenerateDataKey", {"key_id": key["KeyId"],
                                 "encryption_context": {f"k{i}": "v" for i in range(65)}}),
            ("Encrypt", {"key_id": key["KeyId"], "plaintext": b"x" * 5000}),
            ("Encrypt", {"key_id": key["KeyId"], "plaintext": "str"}),
            ("Decrypt", {"ciphertext_blob": b"x" * 100_000}),
            ("Decrypt", {"ciphertext_blob": []}),
        ]
        for method, args in cases:
            with pytest.raises(errors.InvalidRequest) as ei:
                await gw.call(method, args)
            assert ei.value.kind == "ValidationException", (method, args)
        assert cfg.data_dir.joinpath("keys.json").read_bytes() == before
        assert [k["KeyId"] for k in (await gw.call("ListKeys"))["Keys"]] == [key["KeyId"]]
    records = audit_lines(cfg)
    assert sum(r.get("errorCode") == "ValidationException" for r in records) == len(cases)
    assert b"x" * 64 not in cfg.audit_log_path.read_bytes()


async def test_managed_key_is_idempotent(client_for):
    async with client_for("coordinator") as coord, client_for("admin") as admin:
        first = (await coord.call("GetManagedKey", {"alias": "aws/s3"}))["KeyMetadata"]
        assert first["KeyManager"] == "AWS" and first["KeyState"] == "Enabled"
        second = (await coord.call("GetManagedKey", {"alias": "aws/s3"}))["KeyMetadata"]
        assert second == first
        # concurrent first use of another alias creates one key
        results = []
        async with trio.open_nursery() as n:
            for _ in range(5):
                n.start_soon(lambda: _append(results, coord.call("GetManagedKey", {"alias": "onezone/iam"})))
        assert len({r["KeyMetadata"]["KeyId"] for r in results}) == 1
        assert len((await admin.call("ListKeys"))["Keys"]) == 2
        blob = await coord.call("Encrypt", {"key_id": first["Arn"], "plaintext": b"secret-of-iam"})
        assert (await coord.call("Decrypt", {"ciphertext_blob": blob["CiphertextBlob"]}))["Plaintext"] == \
            b"secret-of-iam"


async def _append(results, awaitable):
    results.append(await awaitable)


async def test_restart_keeps_keys_and_old_blobs_decrypt(tmp_path, tls_for):
    cfg = make_cfg(tmp_path, tls_for)
    async with running(cfg) as info:
        host, port = split(info["rpc"])
        async with open_rpc_pool(tls_for("coordinator").client_context()) as pool:
            c = pool.client(host, port, "kms")
            managed = (await c.call("GetManagedKey", {"alias": "aws/s3"}))["KeyMetadata"]
            blob = (await c.call("GenerateDataKeyWithoutPlaintext",
                                 {"key_id": managed["KeyId"], "encryption_context": BUCKET_CTX}))["CiphertextBlob"]
            first = (await c.call("Decrypt", {"ciphertext_blob": blob, "encryption_context": BUCKET_CTX}))
    async with running(cfg) as info:
        host, port = split(info["rpc"])
        async with open_rpc_pool(tls_for("coordinator").client_context()) as pool:
            c = pool.client(host, port, "kms")
            assert (await c.call("GetManagedKey", {"alias": "aws/s3"}))["KeyMetadata"] == managed
            again = await c.call("Decrypt", {"ciphertext_blob": blob, "encryption_context": BUCKET_CTX})
            assert again == first
        metrics = await trio.to_thread.run_sync(_get, f"http://{info['metrics']}/metrics")
        assert 'onezone_kms_keys{state="Enabled"} 1.0' in metrics
        assert 'onezone_kms_requests_total{operation="Decrypt",outcome="ok"} 1.0' in metrics
        assert "onezone_kms_audit_write_duration_seconds_count 2.0" in metrics
    assert len(audit_lines(cfg)) == 5  # both runs append to one log


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


async def _start_fails(cfg: KmsConfig, **kw) -> str:
    with pytest.raises(BaseException) as ei:
        async with running(cfg, **kw):
            pass
    exc = ei.value
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, KeystoreError), repr(exc)
    return str(exc)


async def test_start_refuses_wrong_root_key_and_bad_permissions(tmp_path, tls_for):
    cfg = make_cfg(tmp_path, tls_for)
    async with running(cfg):
        pass
    wrong = make_cfg(tmp_path, tls_for, root_hex="22" * 32)
    assert "root key does not match the keystore" in await _start_fails(wrong)
    os.chmod(wrong.root_key_file, 0o644)
    assert "chmod 600" in await _start_fails(wrong)


async def test_root_key_from_environment(tmp_path, tls_for):
    base = make_cfg(tmp_path, tls_for)
    async with running(base):
        pass
    cfg = KmsConfig(data_dir=base.data_dir, root_key_env="ONEZONE_KMS_ROOT", tls=base.tls)
    async with running(cfg, environ={"ONEZONE_KMS_ROOT": base64.b64encode(bytes.fromhex(ROOT_HEX)).decode()}):
        pass
    assert "ONEZONE_KMS_ROOT is not set" in await _start_fails(cfg, environ={})
