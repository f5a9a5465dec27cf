"""Catalog and IAM business logic without sockets, against a scripted fake KMS.

The fake lets the tests produce what the real KMS cannot yet be asked for (disabled keys,
keys pending deletion, asymmetric keys, outages) and count the calls made (secret cache).
"""

from __future__ import annotations

import random
import uuid

import pytest
import trio

from coordinator.catalog import Catalog
from coordinator.iam import BootstrapError, Iam
from coordinator.kms_client import KmsApi
from coordinator.membership import Membership
from coordinator.service import ACL, CoordinatorService
from coordinator.store import SqliteStore
from proto import errors

ARN = "arn:aws:kms:us-east-1:000000000000:key/"
ALICE = "arn:aws:iam::000000000000:user/alice"


class FakeKms:
    """Same method names and shapes as the KMS daemon; not crypto, just bookkeeping."""

    def __init__(self) -> None:
        self.keys: dict[str, dict] = {}
        self.calls: list[str] = []
        self.fail_with: errors.RpcError | None = None

    def add_key(self, *, state="Enabled", manager="CUSTOMER", spec="SYMMETRIC_DEFAULT") -> dict:
        key_id = str(uuid.uuid4())
        meta = {"KeyId": key_id, "Arn": ARN + key_id, "KeyState": state, "KeyManager": manager,
                "KeySpec": spec, "KeyUsage": "ENCRYPT_DECRYPT", "Enabled": state == "Enabled"}
        self.keys[key_id] = meta
        return meta

    def _resolve(self, ref: str) -> dict:
        meta = self.keys.get(ref.removeprefix(ARN))
        if meta is None:
            raise errors.NotFound(f"{ref} not found", kind="NotFoundException")
        return meta

    async def call(self, method, args=None):
        self.calls.append(method)
        await trio.sleep(0)
        if self.fail_with is not None:
            raise self.fail_with
        if method == "GetManagedKey":
            alias = args["alias"]
            if alias not in self.keys:
                self.keys[alias] = self.add_key(manager="AWS")
            return {"KeyMetadata": self.keys[alias]}
        if method == "DescribeKey":
            return {"KeyMetadata": self._resolve(args["key_id"])}
        if method == "GenerateDataKeyWithoutPlaintext":
            meta = self._resolve(args["key_id"])
            return {"KeyId": meta["Arn"], "CiphertextBlob": repr(args["encryption_context"]).encode()}
        if method == "Encrypt":
            meta = self._resolve(args["key_id"])
            return {"KeyId": meta["Arn"], "CiphertextBlob": repr(args["encryption_context"]).encode()
                    + b"|" + args["plaintext"]}
        if method == "Decrypt":
            context, _, plain = args["ciphertext_blob"].partition(b"|")
            if context != repr(args["encryption_context"]).encode():
                raise errors.InvalidRequest("bad context", kind="InvalidCiphertextException")
            return {"KeyId": "x", "Plaintext": plain}
        raise AssertionError(method)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    s = SqliteStore.open(tmp_path / "db.sqlite3")
    yield s
    s.close()


@pytest.fixture
def fake():
    return FakeKms()


@pytest.fixture
def catalog(store, fake):
    membership = Membership(suspect_after_s=6, down_after_s=15)
    for n in ("node-1", "node-2", "node-3"):
        membership.register(node_id=n, zone="use1-az4", host="h", port=1, capacity_bytes=100,
                            free_bytes=50, used_bytes=50, now=1000.0)
    return Catalog(store=store, membership=membership, kms=KmsApi(fake), region="us-east-1",
                   account_id="000000000000", zones=["use1-az4"], replicas=3, clock=Clock(),
                   rng=random.Random(7))


async def test_cmk_states_and_kinds(catalog, fake):
    name = "b--use1-az4--x-s3"
    await catalog.create_bucket(name, ALICE)
    for meta, cls, kind in [
        (fake.add_key(state="Disabled"), errors.InvalidRequest, "DisabledException"),
        (fake.add_key(state="PendingDeletion"), errors.InvalidRequest, "KMSInvalidStateException"),
        (fake.add_key(spec="RSA_2048"), errors.InvalidRequest, "InvalidArgument"),
        (fake.add_key(manager="AWS"), errors.InvalidRequest, "InvalidArgument"),
    ]:
        with pytest.raises(cls) as info:
            await catalog.put_bucket_encryption(name, "aws:kms", meta["Arn"])
        assert info.value.kind == kind
    record = await catalog.get_bucket(name)
    assert (record.version, record.kms_key_arn, len(record.keys)) == (1, None, 1)


async def test_kms_outage_creates_nothing(catalog, fake):
    fake.fail_with = errors.Unavailable("kms down")
    with pytest.raises(errors.Unavailable):
        await catalog.create_bucket("b--use1-az4--x-s3", ALICE)
    with pytest.raises(errors.NotFound):
        await catalog.get_bucket("b--use1-az4--x-s3")


async def test_concurrent_creates_of_one_name(catalog):
    results = []

    async def create(owner):
        try:
            results.append(await catalog.create_bucket("same--use1-az4--x-s3", owner))
        except errors.Conflict as exc:
            results.append(exc.kind)

    async with trio.open_nursery() as nursery:
        for owner in (ALICE, ALICE + "2", ALICE):
            nursery.start_soon(create, owner)
    assert sum(1 for r in results if not isinstance(r, str)) == 1
    assert len(results) == 3


async def test_bucket_keys_get_new_generations(catalog, fake):
    name = "g--use1-az4--x-s3"
    first = await catalog.create_bucket(name, ALICE)
    assert first.keys[0].wrapped == repr({"aws:s3:arn": catalog.arn(name)}).encode()
    cmk = fake.add_key()
    after = await catalog.put_bucket_encryption(name, "aws:kms", cmk["KeyId"])
    assert [k.gen for k in after.keys] == [1, 2] and after.active_gen == 2
    assert after.keys[1].kms_key_arn == cmk["Arn"] and after.keys[0] == first.keys[0]
    assert catalog.to_wire(after)["replicas"][0] == {"node_id": after.replicas[0], "host": "h", "port": 1}


async def test_secret_cache_ttl_and_invalidation(store, fake):
    clock = Clock()
    iam = Iam(store=store, kms=KmsApi(fake), account_id="000000000000", clock=clock, secret_cache_s=60)
    await iam.create_user("alice")
    key = await iam.create_access_key("alice")
    akid = key["AccessKeyId"]
    for _ in range(3):
        assert (await iam.auth_context(akid))["secret_access_key"] == key["SecretAccessKey"]
    assert fake.calls.count("Decrypt") == 1
    clock.now += 61
    await iam.auth_context(akid)
    assert fake.calls.count("Decrypt") == 2
    await iam.delete_access_key("alice", akid)
    with pytest.raises(errors.NotFound) as info:
        await iam.auth_context(akid)
    assert info.value.kind == "InvalidAccessKeyId"


async def test_bootstrap_refused_by_the_kms_is_not_retried(store, fake, tmp_path):
    fake.fail_with = errors.AccessDenied("no", kind="AccessDeniedException")
    iam = Iam(store=store, kms=KmsApi(fake), account_id="000000000000", clock=Clock(), secret_cache_s=60)
    with pytest.raises(BootstrapError, match="refused"):
        await iam.bootstrap(tmp_path / "admin.json", wait_s=30)
    assert fake.calls == ["GetManagedKey"]
    assert not (tmp_path / "admin.json").exists() and store.user_count() == 0
    fake.fail_with = None
    assert await iam.bootstrap(tmp_path / "admin.json", wait_s=30) is True
    assert await iam.bootstrap(tmp_path / "admin.json", wait_s=30) is False


async def test_ids_and_secrets_shape(store, fake):
    iam = Iam(store=store, kms=KmsApi(fake), account_id="000000000000", clock=Clock(),
              secret_cache_s=60, rng=random.Random(1))
    user = await iam.create_user("bob", "/team/")
    assert user["Path"] == "/team/" and user["UserId"][:4] == "AIDA"
    for _ in range(2):
        key = await iam.create_access_key("bob")
        assert key["AccessKeyId"][:4] == "AKIA" and key["AccessKeyId"][4:].isalnum()
        assert len(key["SecretAccessKey"]) == 40
        assert set(key["SecretAccessKey"]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def test_every_method_has_an_acl_and_a_handler():
    service = CoordinatorService(nodes=None, catalog=None, iam=None, heartbeat_interval_s=2.0)
    assert set(service.handlers()) == set(ACL)
    assert ACL["GetAuthContext"] == ("gateway",)
    assert all("intruder" not in principals for principals in ACL.values())
