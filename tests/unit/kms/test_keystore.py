"""kms/keystore.py: atomic rewrite, reload, root key checks, wrong root key, damage."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from kms.keystore import KeyStore, KeystoreError, atomic_write, load_root_key

ROOT = bytes(range(32))
OTHER_ROOT = bytes(range(1, 33))
MATERIAL = bytes(range(100, 132))
KID = "0f8e6a2c-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
KID2 = "1f8e6a2c-3b4d-4e5f-8a9b-0c1d2e3f4a5b"


def add(store: KeyStore, key_id: str = KID, **kw) -> None:
    args = dict(key_id=key_id, created=1700000000.0, description="d", key_manager="CUSTOMER",
                tags=(("team", "storage"),), material=MATERIAL)
    args.update(kw)
    store.add_key(**args)


# -- atomic_write ----------------------------------------------------------------------------


def test_atomic_write_replaces_with_mode_0600_and_leaves_no_temp(tmp_path):
    target = tmp_path / "f.json"
    target.write_bytes(b"old")
    atomic_write(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_atomic_write_failure_keeps_old_content_and_removes_temp(tmp_path):
    target = tmp_path / "f.json"
    target.write_bytes(b"old")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError):
        atomic_write(target, b"new", fsync=broken_fsync)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


# -- open, persist, reload -------------------------------------------------------------------


def test_new_keystore_is_created_bound_to_the_root_key(tmp_path):
    store = KeyStore.open(tmp_path / "kms", ROOT)
    assert store.records() == []
    doc = json.loads((tmp_path / "kms" / "keys.json").read_text())
    assert doc["format"] == 2 and doc["keys"] == {} and doc["root_check"]
    assert stat.S_IMODE((tmp_path / "kms").stat().st_mode) == 0o700
    # even an empty keystore refuses another root key
    with pytest.raises(KeystoreError, match="root key does not match the keystore"):
        KeyStore.open(tmp_path / "kms", OTHER_ROOT)


def test_add_key_persists_and_reload_gives_same_keys(tmp_path):
    store = KeyStore.open(tmp_path, ROOT)
    add(store)
    add(store, KID2, key_manager="AWS", managed_alias="aws/s3", tags=())
    store.set_state(KID, "Disabled")
    store.add_version(KID2, created=1700000001.0, material=bytes(32))

    again = KeyStore.open(tmp_path, ROOT)
    assert again.records() == store.records()
    assert again.get(KID).state == "Disabled"
    assert again.get(KID).tags == (("team", "storage"),)
    assert again.managed_key_id("aws/s3") == KID2
    assert again.material(KID, 1) == MATERIAL
    assert again.get(KID2).current_version == 2
    assert again.material(KID2, 1) == MATERIAL and again.material(KID2, 2) == bytes(32)
    assert again.count_by_state() == {"Enabled": 1, "Disabled": 1, "PendingDeletion": 0}


def test_no_plaintext_material_on_disk(tmp_path):
    store = KeyStore.open(tmp_path, ROOT)
    add(store)
    raw = (tmp_path / "keys.json").read_bytes()
    for form in (MATERIAL, MATERIAL.hex().encode(), base64.b64encode(MATERIAL), ROOT.hex().encode(),
                 base64.b64encode(ROOT)):
        assert form not in raw
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600


def test_failed_write_changes_nothing(tmp_path):
    calls = []

    def writer(path, data):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        atomic_write(path, data)

    store = KeyStore.open(tmp_path, ROOT, writer=writer)  # first call: creation
    before = (tmp_path / "keys.json").read_bytes()
    with pytest.raises(OSError):
        add(store)
    assert store.get(KID) is None and store.material(KID, 1) is None
    assert (tmp_path / "keys.json").read_bytes() == before


def test_duplicate_id_and_alias_refused(tmp_path):
    store = KeyStore.open(tmp_path, ROOT)
    add(store, managed_alias="aws/s3")
    with pytest.raises(ValueError):
        add(store)
    with pytest.raises(ValueError):
        add(store, KID2, managed_alias="aws/s3")


def test_wrong_root_key_is_refused(tmp_path):
    store = KeyStore.open(tmp_path, ROOT)
    add(store)
    with pytest.raises(KeystoreError, match="root key does not match the keystore"):
        KeyStore.open(tmp_path, OTHER_ROOT)


def test_leftover_temp_files_are_removed(tmp_path):
    KeyStore.open(tmp_path, ROOT)
    (tmp_path / ".keys.json.tmp-deadbeef").write_bytes(b"half written")
    KeyStore.open(tmp_path, ROOT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: b"{not json", "not valid JSON"),
    (lambda raw: b"[]", "not a keystore document"),
    (lambda raw: raw.replace(b'"format": 2', b'"format": 9'), "unsupported format"),
    (lambda raw: raw.replace(b'"state": "Enabled"', b'"state": "Weird"'), "damaged"),
    (lambda raw: raw.replace(b'"aws/s3": "', b'"aws/s3": "x'), "missing key"),
])
def test_damaged_document_is_refused(tmp_path, mutate, message):
    store = KeyStore.open(tmp_path, ROOT)
    add(store, managed_alias="aws/s3")
    path = tmp_path / "keys.json"
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(KeystoreError, match=message):
        KeyStore.open(tmp_path, ROOT)


def test_swapped_material_records_are_detected(tmp_path):
    store = KeyStore.open(tmp_path, ROOT)
    add(store)
    add(store, KID2)
    path = tmp_path / "keys.json"
    doc = json.loads(path.read_text())
    a, b = doc["keys"][KID]["versions"][0], doc["keys"][KID2]["versions"][0]
    a["material"], b["material"] = b["material"], a["material"]
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="cannot unwrap key"):
        KeyStore.open(tmp_path, ROOT)


# -- root key ----------------------------------------------------------------------------------


def key_file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "root.key"
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("text", [ROOT.hex() + "\n", base64.b64encode(ROOT).decode()])
def test_root_key_file_hex_or_base64(tmp_path, text):
    assert load_root_key(root_key_file=key_file(tmp_path, text), root_key_env=None, environ={}) == ROOT


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_root_key_file_readable_by_others_is_refused(tmp_path, mode):
    path = key_file(tmp_path, ROOT.hex(), mode)
    with pytest.raises(KeystoreError, match="chmod 600"):
        load_root_key(root_key_file=path, root_key_env=None, environ={})


def test_root_key_file_missing_malformed_or_not_a_file(tmp_path):
    with pytest.raises(KeystoreError, match="no such file"):
        load_root_key(root_key_file=tmp_path / "nope", root_key_env=None, environ={})
    with pytest.raises(KeystoreError, match="64 hex characters") as ei:
        load_root_key(root_key_file=key_file(tmp_path, "secret-ish-text"), root_key_env=None, environ={})
    assert "secret-ish-text" not in str(ei.value)
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(KeystoreError, match="not a regular file"):
        load_root_key(root_key_file=d, root_key_env=None, environ={})


def test_root_key_env(tmp_path):
    assert load_root_key(root_key_file=None, root_key_env="K", environ={"K": ROOT.hex()}) == ROOT
    with pytest.raises(KeystoreError, match="K is not set"):
        load_root_key(root_key_file=None, root_key_env="K", environ={})
    with pytest.raises(KeystoreError, match="root_key_env K"):
        load_root_key(root_key_file=None, root_key_env="K", environ={"K": "short"})
