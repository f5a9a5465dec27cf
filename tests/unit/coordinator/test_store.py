"""SQLite store round trips in a temporary file."""

import dataclasses
import hashlib
import sqlite3

import pytest

from coordinator.store import (
    SCHEMA_VERSION,
    AccessKeyRecord,
    BucketKey,
    BucketRecord,
    HasDependents,
    LimitReached,
    NodeRecord,
    NoSuchRow,
    RowExists,
    SchemaError,
    SqliteStore,
    UserRecord,
    VersionMismatch,
)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "coordinator.sqlite3"


@pytest.fixture
def store(path):
    s = SqliteStore.open(path)
    yield s
    s.close()


def bucket(name="logs--use1-az4--x-s3", owner="arn:aws:iam::000000000000:user/alice", **kw):
    fields = dict(name=name, bucket_id=hashlib.blake2b(name.encode(), digest_size=16).digest(),
                  zone="use1-az4", owner=owner, created=1700000000.5, type="Directory",
                  sse_algorithm="AES256", kms_key_arn=None, bucket_key_enabled=True,
                  keys=(BucketKey(1, "arn:aws:kms:us-east-1:000000000000:key/aws-s3", b"\x01wrapped"),),
                  active_gen=1, replicas=("node-2", "node-1", "node-3"), epoch=1, version=1)
    fields.update(kw)
    return BucketRecord(**fields)


def test_schema_is_versioned_and_wal(store, path):
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_newer_schema_is_refused(path):
    SqliteStore.open(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="newer"):
        SqliteStore.open(path)


def test_foreign_database_is_refused(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="not a coordinator database"):
        SqliteStore.open(path)


def test_nodes_round_trip_and_upsert(store, path):
    n = NodeRecord("node-1", "use1-az4", "10.0.0.1", 7001, 1000, 900, 100, 5.0)
    store.put_node(n)
    store.put_node(dataclasses.replace(n, host="10.0.0.2", port=7002))
    store.close()
    again = SqliteStore.open(path)
    assert again.list_nodes() == [dataclasses.replace(n, host="10.0.0.2", port=7002)]
    again.close()


def test_bucket_round_trip_survives_reopen(store, path):
    b = bucket()
    assert store.insert_bucket(b) is None
    assert store.insert_bucket(dataclasses.replace(b, owner="someone-else")) == b  # name taken
    store.close()
    again = SqliteStore.open(path)
    assert again.get_bucket(b.name) == b
    assert again.get_bucket("nope--use1-az4--x-s3") is None
    again.close()


def test_bucket_update_is_compare_and_swap(store):
    b = bucket()
    store.insert_bucket(b)
    k2 = BucketKey(2, "arn:aws:kms:us-east-1:000000000000:key/cmk", b"\x02wrapped")
    updated = dataclasses.replace(b, keys=(*b.keys, k2), active_gen=2, sse_algorithm="aws:kms",
                                  kms_key_arn=k2.kms_key_arn, version=2)
    store.update_bucket(updated, expected_version=1)
    assert store.get_bucket(b.name) == updated
    with pytest.raises(VersionMismatch):
        store.update_bucket(dataclasses.replace(updated, version=3), expected_version=1)
    with pytest.raises(NoSuchRow):
        store.update_bucket(bucket(name="gone--use1-az4--x-s3"), expected_version=1)


def test_list_count_delete_buckets(store):
    alice, bob = "arn:aws:iam::000000000000:user/alice", "arn:aws:iam::000000000000:user/bob"
    store.insert_bucket(bucket("zz--use1-az4--x-s3", alice))
    store.insert_bucket(bucket("aa--use1-az4--x-s3", bob))
    store.insert_bucket(bucket("mm--use1-az5--x-s3", alice, zone="use1-az5"))
    assert [b.name for b in store.list_buckets()] == ["aa--use1-az4--x-s3", "mm--use1-az5--x-s3",
                                                      "zz--use1-az4--x-s3"]
    assert [b.name for b in store.list_buckets(alice)] == ["mm--use1-az5--x-s3", "zz--use1-az4--x-s3"]
    assert store.bucket_counts() == {"use1-az4": 2, "use1-az5": 1}
    store.delete_bucket("aa--use1-az4--x-s3")
    with pytest.raises(NoSuchRow):
        store.delete_bucket("aa--use1-az4--x-s3")
    assert store.bucket_counts() == {"use1-az4": 1, "use1-az5": 1}


def test_bucket_keys_go_with_their_bucket(store, path):
    b = bucket()
    store.insert_bucket(b)
    store.delete_bucket(b.name)
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM bucket_keys").fetchone()[0] == 0
    db.close()


def test_users_are_unique_without_case(store):
    alice = UserRecord("Alice", "AIDA0000000000000001", "/", 1.0)
    store.create_user(alice)
    with pytest.raises(RowExists):
        store.create_user(UserRecord("alice", "AIDA0000000000000002", "/", 2.0))
    assert store.get_user("ALICE") == alice
    assert store.list_users() == [alice]
    assert store.user_count() == 1


def test_access_keys_and_policies(store):
    store.create_user(UserRecord("alice", "AIDA0000000000000001", "/", 1.0))
    k1 = AccessKeyRecord("AKIA0000000000000001", "alice", "Active", 2.0, b"blob1")
    k2 = AccessKeyRecord("AKIA0000000000000002", "ALICE", "Active", 3.0, b"blob2")
    store.insert_access_key(k1, max_per_user=2)
    store.insert_access_key(k2, max_per_user=2)
    with pytest.raises(LimitReached):
        store.insert_access_key(AccessKeyRecord("AKIA0000000000000003", "alice", "Active", 4.0, b"x"),
                                max_per_user=2)
    with pytest.raises(NoSuchRow):
        store.insert_access_key(AccessKeyRecord("AKIA0000000000000004", "bob", "Active", 4.0, b"x"),
                                max_per_user=2)
    assert store.get_access_key(k2.access_key_id).user_name == "alice"  # canonical spelling
    assert [k.access_key_id for k in store.list_access_keys("alice")] == [k1.access_key_id, k2.access_key_id]
    store.put_user_policy("alice", "p2", '{"b": 2}', max_total_bytes=100)
    store.put_user_policy("alice", "p1", '{"a": 1}', max_total_bytes=100)
    store.put_user_policy("alice", "p1", '{"a": 11}', max_total_bytes=100)  # replace
    with pytest.raises(LimitReached):
        store.put_user_policy("alice", "p3", "x" * 90, max_total_bytes=100)
    assert store.list_user_policies("alice") == ["p1", "p2"]
    assert store.get_user_policy("alice", "p1") == '{"a": 11}'
    assert store.user_policy_documents("alice") == ['{"a": 11}', '{"b": 2}']
    with pytest.raises(HasDependents):
        store.delete_user("alice")
    store.delete_access_key("alice", k1.access_key_id)
    with pytest.raises(NoSuchRow):
        store.delete_access_key("alice", k1.access_key_id)
    store.delete_access_key("alice", k2.access_key_id)
    store.delete_user_policy("alice", "p1")
    with pytest.raises(NoSuchRow):
        store.get_user_policy("alice", "p1")
    store.delete_user_policy("alice", "p2")
    store.delete_user("alice")
    with pytest.raises(NoSuchRow):
        store.delete_user("alice")
    with pytest.raises(NoSuchRow):
        store.list_user_policies("alice")


def test_bootstrap_is_atomic_and_once(store):
    user = UserRecord("admin", "AIDA0000000000000001", "/", 1.0)
    key = AccessKeyRecord("AKIA0000000000000001", "admin", "Active", 1.0, b"blob")
    store.bootstrap(user, "AdministratorAccess", "{}", key)
    with pytest.raises(RowExists):
        store.bootstrap(user, "AdministratorAccess", "{}", key)
    assert store.list_user_policies("admin") == ["AdministratorAccess"]
    assert store.get_access_key(key.access_key_id) == key


def test_failed_transaction_changes_nothing(store):
    user = UserRecord("admin", "AIDA0000000000000001", "/", 1.0)
    bad_key = AccessKeyRecord("AKIA0000000000000001", "admin", "Active", 1.0, None)  # NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        store.bootstrap(user, "AdministratorAccess", "{}", bad_key)
    assert store.user_count() == 0
    assert store.get_user("admin") is None
