"""kms/service.py and the argument checks of kms/handlers.py, without sockets."""

from __future__ import annotations

import itertools
import uuid

import pytest

from kms.handlers import allowed, parse_args
from kms.keystore import KeyStore
from kms.service import KmsService
from proto.errors import InvalidRequest, NotFound

ROOT = bytes(32)
CTX = {"aws:s3:arn": "arn:aws:s3express:us-east-1:000000000000:bucket/b--use1-az4--x-s3", "x": "1"}


@pytest.fixture
def svc(tmp_path):
    ticks = itertools.count(1700000000)
    return KmsService(KeyStore.open(tmp_path, ROOT), region="us-east-1", account_id="000000000000",
                      clock=lambda: float(next(ticks)))


def kind(excinfo) -> str:
    return excinfo.value.kind


def test_create_and_describe_by_id_or_arn(svc):
    meta = svc.create_key(description="mine", tags=(("a", "b"),))["KeyMetadata"]
    assert uuid.UUID(meta["KeyId"]).version == 4
    assert meta["Arn"] == f"arn:aws:kms:us-east-1:000000000000:key/{meta['KeyId']}"
    assert meta | {"CreationDate": 0} == {
        "KeyId": meta["KeyId"], "Arn": meta["Arn"], "AWSAccountId": "000000000000", "CreationDate": 0,
        "Enabled": True, "Description": "mine", "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": "Enabled",
        "KeySpec": "SYMMETRIC_DEFAULT", "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT", "KeyManager": "CUSTOMER",
        "Origin": "AWS_KMS", "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"], "MultiRegion": False}
    assert svc.describe_key(meta["KeyId"])["KeyMetadata"] == meta
    assert svc.describe_key(meta["Arn"])["KeyMetadata"] == meta


@pytest.mark.parametrize("ref", [
    "arn:aws:kms:eu-west-1:000000000000:key/{id}",    # other region
    "arn:aws:kms:us-east-1:111122223333:key/{id}",    # other account
    "0f8e6a2c-3b4d-4e5f-8a9b-0c1d2e3f4a5b",             # unknown id
    "not-a-key", "alias/aws/s3",
])
def test_unresolvable_references_are_not_found(svc, ref):
    key_id = svc.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(NotFound) as ei:
        svc.describe_key(ref.format(id=key_id))
    assert kind(ei) == "NotFoundException"


def test_data_key_round_trip_context_order_insensitive(svc):
    arn = svc.create_key()["KeyMetadata"]["Arn"]
    out = svc.generate_data_key(arn, encryption_context=CTX, number_of_bytes=64)
    assert out["KeyId"] == arn and len(out["Plaintext"]) == 64
    reordered = dict(reversed(list(CTX.items())))
    assert svc.decrypt(out["CiphertextBlob"], encryption_context=reordered) == {
        "KeyId": arn, "Plaintext": out["Plaintext"], "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    no_pt = svc.generate_data_key(arn, encryption_context={}, include_plaintext=False)
    assert "Plaintext" not in no_pt
    assert len(svc.decrypt(no_pt["CiphertextBlob"], encryption_context={})["Plaintext"]) == 32


@pytest.mark.parametrize("ctx", [{}, {"aws:s3:arn": CTX["aws:s3:arn"]}, {**CTX, "extra": "1"},
                                 {**CTX, "x": "2"}])
def test_context_must_match_exactly(svc, ctx):
    arn = svc.create_key()["KeyMetadata"]["Arn"]
    blob = svc.encrypt(arn, plaintext=b"hello", encryption_context=CTX)["CiphertextBlob"]
    with pytest.raises(InvalidRequest) as ei:
        svc.decrypt(blob, encryption_context=ctx)
    assert kind(ei) == "InvalidCiphertextException"


def test_incorrect_key_and_unknown_key_blob(svc, tmp_path):
    a = svc.create_key()["KeyMetadata"]["Arn"]
    b = svc.create_key()["KeyMetadata"]["Arn"]
    blob = svc.encrypt(a, plaintext=b"x", encryption_context={})["CiphertextBlob"]
    assert svc.decrypt(blob, encryption_context={}, key_id=a)["Plaintext"] == b"x"
    with pytest.raises(InvalidRequest) as ei:
        svc.decrypt(blob, encryption_context={}, key_id=b)
    assert kind(ei) == "IncorrectKeyException"
    other = KmsService(KeyStore.open(tmp_path / "other", ROOT), region="us-east-1", account_id="000000000000")
    with pytest.raises(InvalidRequest) as ei:
        other.decrypt(blob, encryption_context={})
    assert kind(ei) == "InvalidCiphertextException"
    with pytest.raises(InvalidRequest) as ei:
        svc.decrypt(b"garbage" * 10, encryption_context={})
    assert kind(ei) == "InvalidCiphertextException"


@pytest.mark.parametrize("state, expected", [("Disabled", "DisabledException"),
                                             ("PendingDeletion", "KMSInvalidStateException")])
def test_key_state_is_enforced_on_every_crypto_operation(svc, state, expected):
    meta = svc.create_key()["KeyMetadata"]
    blob = svc.encrypt(meta["KeyId"], plaintext=b"x", encryption_context={})["CiphertextBlob"]
    svc.store.set_state(meta["KeyId"], state, deletion_date=1800000000.0)
    ops = [lambda: svc.generate_data_key(meta["KeyId"], encryption_context={}),
           lambda: svc.generate_data_key(meta["KeyId"], encryption_context={}, include_plaintext=False),
           lambda: svc.encrypt(meta["KeyId"], plaintext=b"x", encryption_context={}),
           lambda: svc.decrypt(blob, encryption_context={})]
    for op in ops:
        with pytest.raises(InvalidRequest) as ei:
            op()
        assert kind(ei) == expected
    described = svc.describe_key(meta["Arn"])["KeyMetadata"]
    assert described["KeyState"] == state and described["Enabled"] is False
    assert ("DeletionDate" in described) == (state == "PendingDeletion")


def test_old_versions_decrypt_after_rotation(svc):
    key_id = svc.create_key()["KeyMetadata"]["KeyId"]
    old = svc.encrypt(key_id, plaintext=b"v1", encryption_context={})["CiphertextBlob"]
    svc.store.add_version(key_id, created=1.0, material=bytes(range(32)))
    new = svc.encrypt(key_id, plaintext=b"v2", encryption_context={})["CiphertextBlob"]
    assert old[21:25] == (1).to_bytes(4, "big") and new[21:25] == (2).to_bytes(4, "big")
    assert svc.decrypt(old, encryption_context={})["Plaintext"] == b"v1"
    assert svc.decrypt(new, encryption_context={})["Plaintext"] == b"v2"


def test_list_keys_pages(svc):
    ids = sorted(svc.create_key()["KeyMetadata"]["KeyId"] for _ in range(5))
    seen, marker = [], None
    while True:
        page = svc.list_keys(limit=2, marker=marker)
        seen += [k["KeyId"] for k in page["Keys"]]
        if not page["Truncated"]:
            assert "NextMarker" not in page
            break
        marker = page["NextMarker"]
    assert seen == ids


def test_managed_key_is_created_once(svc):
    first = svc.get_managed_key("aws/s3")["KeyMetadata"]
    assert first["KeyManager"] == "AWS"
    assert svc.get_managed_key("aws/s3")["KeyMetadata"] == first
    assert svc.get_managed_key("alias/aws/s3")["KeyMetadata"] == first
    assert svc.get_managed_key("onezone/iam")["KeyMetadata"]["KeyId"] != first["KeyId"]
    with pytest.raises(InvalidRequest) as ei:
        svc.get_managed_key("../etc")
    assert kind(ei) == "ValidationException"


# -- edge checks -------------------------------------------------------------------------------


@pytest.mark.parametrize("operation, args", [
    ("DescribeKey", {}),
    ("DescribeKey", {"key_id": 5}),
    ("DescribeKey", {"key_id": "k", "bogus": 1}),
    ("ListKeys", {"limit": 0}),
    ("ListKeys", {"limit": True}),
    ("GenerateDataKey", {"key_id": "k", "number_of_bytes": 1025}),
    ("GenerateDataKey", {"key_id": "k", "encryption_context": {"a": 1}}),
    ("GenerateDataKey", {"key_id": "k", "encryption_context": ["a"]}),
    ("GenerateDataKey", {"key_id": "k", "encryption_context": {str(i): "v" for i in range(65)}}),
    ("GenerateDataKey", {"key_id": "k", "encryption_context": {"a": "v" * 9000}}),
    ("Encrypt", {"key_id": "k", "plaintext": b""}),
    ("Encrypt", {"key_id": "k", "plaintext": b"x" * 4097}),
    ("Encrypt", {"key_id": "k", "plaintext": "text"}),
    ("Decrypt", {"ciphertext_blob": "text"}),
    ("Decrypt", {"ciphertext_blob": b"x" * 7000}),
    ("CreateKey", {"tags": [{"TagKey": "a"}]}),
    ("CreateKey", {"tags": [{"TagKey": "a", "TagValue": "1"}, {"TagKey": "a", "TagValue": "2"}]}),
    ("CreateKey", {"description": "d" * 8193}),
    ("CreateKey", {"caller": 7}),
])
def test_bad_arguments_are_validation_errors(operation, args):
    with pytest.raises(InvalidRequest) as ei:
        parse_args(operation, args)
    assert kind(ei) == "ValidationException"


def test_good_arguments():
    ctx = {str(i): "v" for i in range(64)}
    clean, caller = parse_args("GenerateDataKey", {"key_id": "k", "encryption_context": ctx,
                                                   "caller": "arn:aws:iam::000000000000:user/a"})
    assert clean == {"key_id": "k", "encryption_context": ctx}
    assert caller == "arn:aws:iam::000000000000:user/a"
    assert parse_args("CreateKey", {"tags": [{"TagKey": "a", "TagValue": ""}]})[0] == {"tags": (("a", ""),)}


@pytest.mark.parametrize("principal, operation, ok", [
    ("node-1", "Decrypt", True), ("node-17", "GenerateDataKey", True), ("node-1", "CreateKey", False),
    ("coordinator", "GetManagedKey", True), ("gateway", "GetManagedKey", False),
    ("admin", "ListKeys", True), ("intruder", "DescribeKey", False), ("node-1", "Encrypt", False),
    ("nodes", "Decrypt", False),
])
def test_acl(principal, operation, ok):
    assert allowed(principal, operation) is ok
