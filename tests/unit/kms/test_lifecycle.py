"""kms/lifecycle.py, kms/keypolicy.py, kms/statefeed.py: every state transition and its errors,
deletion and rotation with a fake clock, aliases, policies, tags -- without sockets."""

from __future__ import annotations

import json

import pytest

from kms.keypolicy import decide, default_policy, service_arn
from kms.keystore import KeyStore
from kms.lifecycle import KeyAdmin, check_policy
from kms.service import DAY_S, KmsService
from kms.statefeed import StateFeed
from proto.errors import Conflict, InvalidRequest, NotFound

ROOT = bytes(32)
ACCT = "000000000000"
ALICE = f"arn:aws:iam::{ACCT}:user/alice"
CTX = {"purpose": "test"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env(tmp_path):
    clock = FakeClock()
    svc = KmsService(KeyStore.open(tmp_path, ROOT), region="us-east-1", account_id=ACCT, clock=clock)
    return svc, KeyAdmin(svc), clock, tmp_path


def kind_of(fn, *a, **kw) -> str:
    with pytest.raises((InvalidRequest, NotFound, Conflict)) as ei:
        fn(*a, **kw)
    return ei.value.kind


def test_state_machine_and_errors(env):
    svc, adm, clock, _ = env
    kid = svc.create_key()["KeyMetadata"]["KeyId"]
    blob = svc.encrypt(kid, plaintext=b"x", encryption_context=CTX)["CiphertextBlob"]
    adm.disable_key(kid)
    assert svc.describe_key(kid)["KeyMetadata"]["KeyState"] == "Disabled"
    assert kind_of(svc.decrypt, blob, encryption_context=CTX) == "DisabledException"
    assert kind_of(svc.generate_data_key, kid, encryption_context={}) == "DisabledException"
    adm.enable_key(kid)
    assert svc.decrypt(blob, encryption_context=CTX)["Plaintext"] == b"x"
    assert kind_of(adm.schedule_key_deletion, kid, pending_window_in_days=6) == "ValidationException"
    assert kind_of(adm.schedule_key_deletion, kid, pending_window_in_days=31) == "ValidationException"
    out = adm.schedule_key_deletion(kid)
    assert out["PendingWindowInDays"] == 30 and out["DeletionDate"] == clock.now + 30 * DAY_S
    meta = svc.describe_key(kid)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and meta["PendingDeletionWindowInDays"] == 30
    for fn in (adm.enable_key, adm.disable_key, adm.schedule_key_deletion, adm.rotate_key_on_demand):
        assert kind_of(fn, kid) == "KMSInvalidStateException"
    assert kind_of(svc.decrypt, blob, encryption_context=CTX) == "KMSInvalidStateException"
    adm.cancel_key_deletion(kid)
    assert svc.describe_key(kid)["KeyMetadata"]["KeyState"] == "Disabled"  # as AWS
    assert kind_of(adm.cancel_key_deletion, kid) == "KMSInvalidStateException"
    adm.enable_key(kid)
    assert svc.decrypt(blob, encryption_context=CTX)["Plaintext"] == b"x"


def test_deletion_when_the_window_ends_with_a_fake_clock(env):
    svc, adm, clock, tmp = env
    kid = svc.create_key()["KeyMetadata"]["KeyId"]
    keep = svc.create_key()["KeyMetadata"]["KeyId"]
    adm.create_alias(alias_name="alias/doomed", target_key_id=kid)
    blob = svc.encrypt(kid, plaintext=b"x", encryption_context={})["CiphertextBlob"]
    adm.schedule_key_deletion(kid, pending_window_in_days=7)
    clock.now += 7 * DAY_S - 1
    assert adm.run_due() == []
    clock.now += 1
    assert adm.run_due() == [(kid, "Deleted")]
    assert kind_of(svc.describe_key, kid) == "NotFoundException"
    assert kind_of(svc.describe_key, "alias/doomed") == "NotFoundException"
    assert kind_of(svc.decrypt, blob, encryption_context={}) == "InvalidCiphertextException"
    reopened = KeyStore.open(tmp, ROOT)  # deleted for good, on disk too
    assert reopened.get(kid) is None and reopened.get(keep) is not None and reopened.aliases() == []


def test_rotation_on_demand_and_automatic_keep_old_versions(env):
    svc, adm, clock, tmp = env
    kid = svc.create_key()["KeyMetadata"]["KeyId"]
    v1 = svc.encrypt(kid, plaintext=b"one", encryption_context=CTX)["CiphertextBlob"]
    assert adm.get_key_rotation_status(kid) == {"KeyRotationEnabled": False, "KeyId": svc.arn(kid)}
    assert kind_of(adm.enable_key_rotation, kid, rotation_period_in_days=89) == "ValidationException"
    assert kind_of(adm.enable_key_rotation, kid, rotation_period_in_days=2561) == "ValidationException"
    adm.enable_key_rotation(kid, rotation_period_in_days=90)
    status = adm.get_key_rotation_status(kid)
    assert status["RotationPeriodInDays"] == 90 and status["NextRotationDate"] == clock.now + 90 * DAY_S
    adm.rotate_key_on_demand(kid)
    v2 = svc.encrypt(kid, plaintext=b"two", encryption_context=CTX)["CiphertextBlob"]
    clock.now += 90 * DAY_S
    assert adm.run_due() == [(kid, "Rotated")]
    assert adm.run_due() == []
    rotations = adm.list_key_rotations(kid)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND", "AUTOMATIC"]
    page = adm.list_key_rotations(kid, limit=1)
    assert page["Truncated"] and adm.list_key_rotations(kid, marker=page["NextMarker"])["Rotations"] == rotations[1:]
    assert svc.store.get(kid).current_version == 3
    store2 = KeyStore.open(tmp, ROOT)  # every version survives a restart
    svc2 = KmsService(store2, region="us-east-1", account_id=ACCT, clock=clock)
    for blob, plain in ((v1, b"one"), (v2, b"two")):
        assert svc2.decrypt(blob, encryption_context=CTX)["Plaintext"] == plain
        moved = svc2.re_encrypt(blob, destination_key_id=kid, source_encryption_context=CTX,
                                destination_encryption_context={"new": "ctx"})
        assert moved["SourceKeyId"] == moved["KeyId"] == svc.arn(kid)
        assert moved["CiphertextBlob"][21:25] == (3).to_bytes(4, "big")  # newest version
        assert svc2.decrypt(moved["CiphertextBlob"], encryption_context={"new": "ctx"})["Plaintext"] == plain
    adm.disable_key_rotation(kid)
    assert adm.get_key_rotation_status(kid)["KeyRotationEnabled"] is False
    for _ in range(9):
        adm.rotate_key_on_demand(kid)
    assert kind_of(adm.rotate_key_on_demand, kid) == "LimitExceededException"


def test_disabled_keys_do_not_rotate_until_enabled(env):
    svc, adm, clock, _ = env
    kid = svc.create_key()["KeyMetadata"]["KeyId"]
    adm.enable_key_rotation(kid, rotation_period_in_days=90)
    adm.disable_key(kid)
    clock.now += 100 * DAY_S
    assert adm.run_due() == []
    adm.enable_key(kid)
    assert adm.run_due() == [(kid, "Rotated")]


def test_aliases_resolve_everywhere_and_reserved_names(env):
    svc, adm, _, _ = env
    a = svc.create_key()["KeyMetadata"]["KeyId"]
    b = svc.create_key()["KeyMetadata"]["KeyId"]
    adm.create_alias(alias_name="alias/app", target_key_id=a)
    alias_arn = f"arn:aws:kms:us-east-1:{ACCT}:alias/app"
    for ref in ("alias/app", alias_arn):
        assert svc.describe_key(ref)["KeyMetadata"]["KeyId"] == a
        blob = svc.encrypt(ref, plaintext=b"p", encryption_context={})["CiphertextBlob"]
        assert svc.decrypt(blob, encryption_context={}, key_id=ref)["KeyId"] == svc.arn(a)
    assert kind_of(svc.describe_key, f"arn:aws:kms:eu-west-1:{ACCT}:alias/app") == "NotFoundException"
    assert kind_of(adm.create_alias, alias_name="alias/app", target_key_id=b) == "AlreadyExistsException"
    assert kind_of(adm.create_alias, alias_name="alias/aws/mine", target_key_id=b) == "NotAuthorizedException"
    assert kind_of(adm.create_alias, alias_name="nope", target_key_id=b) == "InvalidAliasNameException"
    assert kind_of(adm.create_alias, alias_name="alias/x", target_key_id="alias/app") == "ValidationException"
    adm.update_alias(alias_name="alias/app", target_key_id=b)
    assert svc.describe_key("alias/app")["KeyMetadata"]["KeyId"] == b
    assert kind_of(adm.update_alias, alias_name="alias/none", target_key_id=b) == "NotFoundException"
    svc.get_managed_key("aws/s3")
    names = [x["AliasName"] for x in adm.list_aliases()["Aliases"]]
    assert names == ["alias/app", "alias/aws/s3"]
    assert [x["AliasName"] for x in adm.list_aliases(key_id=b)["Aliases"]] == ["alias/app"]
    managed = svc.describe_key("alias/aws/s3")["KeyMetadata"]
    assert managed["KeyManager"] == "AWS"
    assert kind_of(adm.disable_key, "alias/aws/s3") == "UnsupportedOperationException"
    assert kind_of(adm.create_alias, alias_name="alias/m", target_key_id=managed["KeyId"]) == \
        "UnsupportedOperationException"
    adm.delete_alias(alias_name="alias/app")
    assert kind_of(adm.delete_alias, alias_name="alias/app") == "NotFoundException"
    assert kind_of(svc.describe_key, "alias/app") == "NotFoundException"


def test_policies_default_put_get_and_lockout_check(env):
    svc, adm, _, _ = env
    kid = svc.create_key()["KeyMetadata"]["KeyId"]
    arn = svc.arn(kid)
    got = adm.get_key_policy(kid)
    assert got["PolicyName"] == "default" and json.loads(got["Policy"]) == json.loads(default_policy(ACCT))
    node = service_arn(ACCT, "node-1")
    for who in (ALICE, node):
        assert decide(None, account_id=ACCT, principal=who, action="kms:Decrypt", key_arn=arn)
    assert not decide(None, account_id=ACCT, principal="arn:aws:iam::111122223333:user/eve",
                      action="kms:Decrypt", key_arn=arn)
    only_alice = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": ALICE}, "Action": "kms:Decrypt", "Resource": "*"}]})
    bob = f"arn:aws:iam::{ACCT}:user/bob"
    assert kind_of(adm.put_key_policy, kid, policy=only_alice, principal=bob) == "MalformedPolicyDocumentException"
    assert kind_of(adm.put_key_policy, kid, policy="{", principal=ALICE) == "MalformedPolicyDocumentException"
    no_principal = json.dumps({"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})
    assert kind_of(adm.put_key_policy, kid, policy=no_principal, principal=ALICE) == \
        "MalformedPolicyDocumentException"
    adm.put_key_policy(kid, policy=only_alice, principal=ALICE)
    rec = svc.store.get(kid)
    assert adm.get_key_policy(kid)["Policy"] == only_alice
    assert decide(rec.policy, account_id=ACCT, principal=ALICE, action="kms:Encrypt", key_arn=arn)
    assert not decide(rec.policy, account_id=ACCT, principal=ALICE, action="kms:Decrypt", key_arn=arn)
    assert not decide(rec.policy, account_id=ACCT, principal=node, action="kms:Decrypt", key_arn=arn)
    adm.put_key_policy(kid, policy=only_alice.replace(ALICE, f"arn:aws:iam::{ACCT}:user/carol"),
                       principal=ALICE, bypass_policy_lockout_safety_check=True)
    assert kind_of(adm.get_key_policy, kid, policy_name="other") == "NotFoundException"
    check_policy(default_policy(ACCT), account_id=ACCT, principal=ALICE, key_arn="*", bypass=False)


def test_tags(env):
    svc, adm, _, _ = env
    kid = svc.create_key(tags=(("a", "1"),))["KeyMetadata"]["KeyId"]
    adm.tag_resource(kid, tags=(("b", "2"), ("a", "3")))
    assert adm.list_resource_tags(kid)["Tags"] == [{"TagKey": "a", "TagValue": "3"}, {"TagKey": "b", "TagValue": "2"}]
    page = adm.list_resource_tags(kid, limit=1)
    assert page["Truncated"] and adm.list_resource_tags(kid, marker=page["NextMarker"])["Tags"][0]["TagKey"] == "b"
    adm.untag_resource(kid, tag_keys=["a"])
    assert adm.list_resource_tags(kid)["Tags"] == [{"TagKey": "b", "TagValue": "2"}]
    too_many = tuple((f"k{i}", "v") for i in range(50))
    assert kind_of(adm.tag_resource, kid, tags=too_many) == "TagException"


def test_state_feed_incremental_full_and_restart(env):
    svc, adm, _, _ = env
    kid = svc.create_key()["KeyMetadata"]["KeyId"]
    first = svc.feed.changes_since(None, None)
    assert first["full"] and first["changes"] == []
    adm.disable_key(kid)
    inc = svc.feed.changes_since(first["epoch"], first["version"])
    assert not inc["full"] and inc["changes"] == [{"KeyId": kid, "KeyState": "Disabled"}]
    assert svc.feed.changes_since(inc["epoch"], inc["version"])["changes"] == []
    again = svc.feed.changes_since("another-epoch", inc["version"])  # the KMS restarted
    assert again["full"] and again["changes"] == [{"KeyId": kid, "KeyState": "Disabled"}]
    small = StateFeed("e", lambda: [("k1", "Disabled"), ("k2", "Enabled")], max_changes=2)
    for i in range(5):
        small.note(f"k{i}", "Disabled")
    assert small.changes_since("e", 1)["full"]  # fell out of the window: full snapshot
    assert small.changes_since("e", 1)["changes"] == [{"KeyId": "k1", "KeyState": "Disabled"}]
    assert small.changes_since("e", 3)["changes"] == [{"KeyId": "k3", "KeyState": "Disabled"},
                                                      {"KeyId": "k4", "KeyState": "Disabled"}]


def test_cached_key_policy_decisions_follow_the_policy_text():
    arn = "arn:aws:kms:us-east-1:000000000000:key/0f8e6a2c-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
    node = "arn:aws:iam::000000000000:role/onezone/node-1"

    def policy(principal):
        return json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": principal}, "Action": "kms:Decrypt", "Resource": "*"}]})

    for _ in range(3):  # the same answer from the cache as from the first evaluation
        assert decide(None, account_id="000000000000", principal=node, action="kms:Decrypt", key_arn=arn)
        assert decide(policy(node), account_id="000000000000", principal=node, action="kms:Decrypt", key_arn=arn)
        assert not decide(policy("arn:aws:iam::000000000000:user/alice"), account_id="000000000000",
                          principal=node, action="kms:Decrypt", key_arn=arn)
        assert not decide(policy(node), account_id="000000000000", principal=node, action="kms:Encrypt",
                          key_arn=arn)
        # a condition context is never answered from the cache
        assert decide(policy(node), account_id="000000000000", principal=node, action="kms:Decrypt",
                      key_arn=arn, context={"kms:EncryptionContext:a": "b"})
