"""The coordinator's durable state: nodes, buckets, bucket keys and IAM, in SQLite.

Responsibility
--------------
Persist what the coordinator is the source of truth for, behind a small, synchronous,
record-oriented interface (the public methods of ``SqliteStore``) that a distributed backend
(etcd) can implement later. Callers run these methods in a worker thread
(``trio.to_thread.run_sync``); a lock serialises access to the one connection.

Invariants
----------
- Every change is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``): a bucket and its first
  key, the bootstrap user with its policy and key, appear together or not at all.
- WAL journal, ``synchronous=FULL``: a committed change survives power loss.
- The schema carries a version (``schema_version`` table); opening a database written by a
  newer version fails with a clear message, an older one is migrated by ``_MIGRATIONS``.
- IAM user names are unique without regard to case, as in AWS (``COLLATE NOCASE``).
- Bucket updates are compare-and-swap on ``version``, so a lost update cannot go unnoticed.
- Secrets are stored only as KMS ciphertext blobs (``secret_blob``); this module never sees a
  clear secret.

Failures are the exception types of ``coordinator.store_errors``; the catalog and IAM layers
turn them into the typed RPC errors of ``proto.errors``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from coordinator.store_errors import (  # noqa: F401  (re-exported: the store's interface)
    HasDependents,
    LimitReached,
    NoSuchRow,
    RowExists,
    SchemaError,
    StoreError,
    VersionMismatch,
)
from coordinator.store_iam import IAM_SCHEMA_V2, IamEntityTables
from coordinator.store_lifecycle import LIFECYCLE_SCHEMA_V2, LifecycleTables

SCHEMA_VERSION = 3

_SCHEMA_V1 = """
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    zone TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    capacity_bytes INTEGER NOT NULL,
    free_bytes INTEGER NOT NULL,
    used_bytes INTEGER NOT NULL,
    registered REAL NOT NULL
);
CREATE TABLE buckets (
    name TEXT PRIMARY KEY,
    bucket_id BLOB NOT NULL UNIQUE,
    zone TEXT NOT NULL,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    type TEXT NOT NULL,
    sse_algorithm TEXT NOT NULL,
    kms_key_arn TEXT,
    bucket_key_enabled INTEGER NOT NULL,
    active_gen INTEGER NOT NULL,
    replicas TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX buckets_by_owner ON buckets (owner, name);
CREATE TABLE bucket_keys (
    bucket_id BLOB NOT NULL REFERENCES buckets (bucket_id) ON DELETE CASCADE,
    gen INTEGER NOT NULL,
    kms_key_arn TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    PRIMARY KEY (bucket_id, gen)
);
CREATE TABLE users (
    user_name TEXT PRIMARY KEY COLLATE NOCASE,
    user_id TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE access_keys (
    access_key_id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL COLLATE NOCASE REFERENCES users (user_name),
    status TEXT NOT NULL,
    created REAL NOT NULL,
    secret_blob BLOB NOT NULL
);
CREATE INDEX access_keys_by_user ON access_keys (user_name);
CREATE TABLE user_policies (
    user_name TEXT NOT NULL COLLATE NOCASE REFERENCES users (user_name),
    policy_name TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (user_name, policy_name)
);
"""

# version -> SQL that upgrades a database from (version - 1). A new database is created at
# version 1 and migrated, so every database goes through the same statements.
_MIGRATIONS: dict[int, str] = {2: IAM_SCHEMA_V2 + LIFECYCLE_SCHEMA_V2,
                               3: "ALTER TABLE buckets ADD COLUMN policy TEXT"}  # bucket policy (JSON)


@dataclass(frozen=True, slots=True)
class NodeRecord:
    node_id: str
    zone: str
    host: str
    port: int
    capacity_bytes: int
    free_bytes: int
    used_bytes: int
    registered: float


@dataclass(frozen=True, slots=True)
class BucketKey:
    gen: int
    kms_key_arn: str
    wrapped: bytes


@dataclass(frozen=True, slots=True)
class BucketRecord:
    name: str
    bucket_id: bytes
    zone: str
    owner: str
    created: float
    type: str
    sse_algorithm: str
    kms_key_arn: str | None
    bucket_key_enabled: bool
    keys: tuple[BucketKey, ...]
    active_gen: int
    replicas: tuple[str, ...]
    epoch: int
    version: int
    syncing: tuple[str, ...] = ()  # replicas of this epoch still being copied to (not yet in sync)
    policy: str | None = None  # the bucket policy document (JSON text), if any


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_name: str
    user_id: str
    path: str
    created: float


@dataclass(frozen=True, slots=True)
class AccessKeyRecord:
    access_key_id: str
    user_name: str
    status: str
    created: float
    secret_blob: bytes


class SqliteStore(IamEntityTables, LifecycleTables):
    """See the module docstring. Open with ``SqliteStore.open(path)``; ``close()`` when done.

    Managed policies, groups and attachments live in ``IamEntityTables`` (store_iam.py), node
    administrative states and replica copies in ``LifecycleTables`` (store_lifecycle.py): the
    same transactions (``_tx``), split only to keep modules small.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> SqliteStore:
        """Open (creating or migrating) the database at ``path``.

        Raises:
            SchemaError: the file was written by a newer version, or is not a coordinator db.
            sqlite3.Error: the file cannot be opened.
        """
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            store = cls(db)
            store._init_schema(path)
        except BaseException:
            db.close()
            raise
        return store

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _init_schema(self, path: Path) -> None:
        with self._tx() as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "schema_version" not in tables:
                if tables:
                    raise SchemaError(f"{path}: not a coordinator database (no schema_version table)")
                db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                for stmt in _statements(_SCHEMA_V1):  # not executescript: it would COMMIT
                    db.execute(stmt)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (1,))
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise SchemaError(f"{path}: database schema version {version} is newer than this "
                                  f"coordinator supports ({SCHEMA_VERSION}); upgrade onezone")
            for v in range(version + 1, SCHEMA_VERSION + 1):
                if v not in _MIGRATIONS:
                    raise SchemaError(f"{path}: no migration from schema version {v - 1}")
                for stmt in _statements(_MIGRATIONS[v]):
                    db.execute(stmt)
                db.execute("UPDATE schema_version SET version = ?", (v,))

    @contextmanager
    def _tx(self) -> Iterator[_Cursorish]:
        """One transaction, serialised with every other use of the connection."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _Cursorish(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- nodes -----------------------------------------------------------------------------
    def put_node(self, node: NodeRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET "
                "zone=excluded.zone, host=excluded.host, port=excluded.port, "
                "capacity_bytes=excluded.capacity_bytes, free_bytes=excluded.free_bytes, "
                "used_bytes=excluded.used_bytes, registered=excluded.registered",
                (node.node_id, node.zone, node.host, node.port, node.capacity_bytes,
                 node.free_bytes, node.used_bytes, node.registered))

    def list_nodes(self) -> list[NodeRecord]:
        with self._tx() as db:
            return [NodeRecord(*row) for row in db.execute("SELECT * FROM nodes ORDER BY node_id")]

    # -- buckets ---------------------------------------------------------------------------
    def insert_bucket(self, bucket: BucketRecord) -> BucketRecord | None:
        """Insert ``bucket`` with its keys; if the name is taken, return the existing record."""
        with self._tx() as db:
            existing = _get_bucket(db, bucket.name)
            if existing is not None:
                return existing
            _write_bucket(db, bucket, insert=True)
            return None

    def update_bucket(self, bucket: BucketRecord, *, expected_version: int) -> None:
        """Replace the bucket's row and add its new key generations (keys are never removed).

        Raises:
            NoSuchRow: the bucket is gone.
            VersionMismatch: its stored version is not ``expected_version``.
        """
        with self._tx() as db:
            current = _get_bucket(db, bucket.name)
            if current is None or current.bucket_id != bucket.bucket_id:
                raise NoSuchRow(f"bucket {bucket.name} does not exist")
            if current.version != expected_version:
                raise VersionMismatch(f"bucket {bucket.name} is at version {current.version}, "
                                      f"expected {expected_version}")
            _write_bucket(db, bucket, insert=False)

    def get_bucket(self, name: str) -> BucketRecord | None:
        with self._tx() as db:
            return _get_bucket(db, name)

    def list_buckets(self, owner: str | None = None) -> list[BucketRecord]:
        with self._tx() as db:
            if owner is None:
                names = [r[0] for r in db.execute("SELECT name FROM buckets ORDER BY name")]
            else:
                names = [r[0] for r in db.execute(
                    "SELECT name FROM buckets WHERE owner = ? ORDER BY name", (owner,))]
            return [b for b in (_get_bucket(db, n) for n in names) if b is not None]

    def delete_bucket(self, name: str) -> None:
        """Raises NoSuchRow if there is no such bucket."""
        with self._tx() as db:
            if db.execute("DELETE FROM buckets WHERE name = ?", (name,)).rowcount == 0:
                raise NoSuchRow(f"bucket {name} does not exist")

    def bucket_counts(self) -> dict[str, int]:
        """Number of buckets per zone."""
        with self._tx() as db:
            return dict(db.execute("SELECT zone, count(*) FROM buckets GROUP BY zone").fetchall())

    # -- IAM -------------------------------------------------------------------------------
    def user_count(self) -> int:
        with self._tx() as db:
            return db.execute("SELECT count(*) FROM users").fetchone()[0]

    def create_user(self, user: UserRecord) -> None:
        """Raises RowExists if a user of that name (in any case) exists."""
        with self._tx() as db:
            _insert_user(db, user)

    def bootstrap(self, user: UserRecord, policy_name: str, document: str, key: AccessKeyRecord) -> None:
        """Create the first user with one policy and one key, atomically.

        Raises:
            RowExists: some user already exists (bootstrap already happened).
        """
        with self._tx() as db:
            if db.execute("SELECT count(*) FROM users").fetchone()[0]:
                raise RowExists("users already exist")
            _insert_user(db, user)
            db.execute("INSERT INTO user_policies VALUES (?, ?, ?)", (user.user_name, policy_name, document))
            _insert_key(db, key)

    def get_user(self, user_name: str) -> UserRecord | None:
        with self._tx() as db:
            return _get_user(db, user_name)

    def list_users(self) -> list[UserRecord]:
        with self._tx() as db:
            return [UserRecord(*r) for r in db.execute(
                "SELECT user_name, user_id, path, created FROM users ORDER BY user_name")]

    def delete_user(self, user_name: str) -> None:
        """Raises NoSuchRow, or HasDependents while the user has access keys or policies."""
        with self._tx() as db:
            _require_user(db, user_name)
            keys = db.execute("SELECT count(*) FROM access_keys WHERE user_name = ?", (user_name,)).fetchone()[0]
            pols = db.execute("SELECT count(*) FROM user_policies WHERE user_name = ?", (user_name,)).fetchone()[0]
            groups, attached = self._user_links(db, user_name)
            if keys or pols or groups or attached:
                raise HasDependents(f"user {user_name} still has {keys} access key(s), {pols} inline "
                                    f"policy(ies), {groups} group membership(s) and {attached} "
                                    "attached policy(ies); remove them first")
            db.execute("DELETE FROM users WHERE user_name = ?", (user_name,))

    def insert_access_key(self, key: AccessKeyRecord, *, max_per_user: int) -> None:
        """Raises NoSuchRow (no such user) or LimitReached (the user has ``max_per_user`` keys)."""
        with self._tx() as db:
            user = _require_user(db, key.user_name)
            n = db.execute("SELECT count(*) FROM access_keys WHERE user_name = ?", (key.user_name,)).fetchone()[0]
            if n >= max_per_user:
                raise LimitReached(f"user {key.user_name} already has {n} access keys (limit {max_per_user})")
            _insert_key(db, replace(key, user_name=user.user_name))

    def list_access_keys(self, user_name: str) -> list[AccessKeyRecord]:
        """Raises NoSuchRow if there is no such user."""
        with self._tx() as db:
            _require_user(db, user_name)
            return [AccessKeyRecord(*r) for r in db.execute(
                "SELECT access_key_id, user_name, status, created, secret_blob FROM access_keys "
                "WHERE user_name = ? ORDER BY created, access_key_id", (user_name,))]

    def get_access_key(self, access_key_id: str) -> AccessKeyRecord | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT access_key_id, user_name, status, created, secret_blob FROM access_keys "
                "WHERE access_key_id = ?", (access_key_id,)).fetchone()
            return AccessKeyRecord(*row) if row else None

    def delete_access_key(self, user_name: str, access_key_id: str) -> None:
        """Raises NoSuchRow if the user or that key of the user does not exist."""
        with self._tx() as db:
            _require_user(db, user_name)
            if db.execute("DELETE FROM access_keys WHERE user_name = ? AND access_key_id = ?",
                          (user_name, access_key_id)).rowcount == 0:
                raise NoSuchRow(f"the user {user_name} has no access key {access_key_id}")

    def put_user_policy(self, user_name: str, policy_name: str, document: str, *,
                        max_total_bytes: int) -> None:
        """Create or replace an inline policy.

        Raises:
            NoSuchRow: no such user.
            LimitReached: the user's inline policies would exceed ``max_total_bytes`` in all.
        """
        with self._tx() as db:
            user_name = _require_user(db, user_name).user_name
            others = db.execute(
                "SELECT coalesce(sum(length(CAST(document AS BLOB))), 0) FROM user_policies "
                "WHERE user_name = ? AND policy_name != ?", (user_name, policy_name)).fetchone()[0]
            total = others + len(document.encode())
            if total > max_total_bytes:
                raise LimitReached(f"inline policies of user {user_name} would take {total} bytes "
                                   f"(limit {max_total_bytes})")
            db.execute("INSERT INTO user_policies VALUES (?, ?, ?) ON CONFLICT (user_name, policy_name) "
                       "DO UPDATE SET document = excluded.document", (user_name, policy_name, document))

    def get_user_policy(self, user_name: str, policy_name: str) -> str:
        """Raises NoSuchRow if the user or the policy does not exist."""
        with self._tx() as db:
            _require_user(db, user_name)
            row = db.execute("SELECT document FROM user_policies WHERE user_name = ? AND policy_name = ?",
                             (user_name, policy_name)).fetchone()
            if row is None:
                raise NoSuchRow(f"the user {user_name} has no policy named {policy_name}")
            return row[0]

    def list_user_policies(self, user_name: str) -> list[str]:
        """Policy names in order; raises NoSuchRow if there is no such user."""
        with self._tx() as db:
            _require_user(db, user_name)
            return [r[0] for r in db.execute(
                "SELECT policy_name FROM user_policies WHERE user_name = ? ORDER BY policy_name", (user_name,))]

    def user_policy_documents(self, user_name: str) -> list[str]:
        with self._tx() as db:
            return [r[0] for r in db.execute(
                "SELECT document FROM user_policies WHERE user_name = ? ORDER BY policy_name", (user_name,))]

    def delete_user_policy(self, user_name: str, policy_name: str) -> None:
        """Raises NoSuchRow if the user or the policy does not exist."""
        with self._tx() as db:
            _require_user(db, user_name)
            if db.execute("DELETE FROM user_policies WHERE user_name = ? AND policy_name = ?",
                          (user_name, policy_name)).rowcount == 0:
                raise NoSuchRow(f"the user {user_name} has no policy named {policy_name}")


class _Cursorish:
    """The connection as seen inside a transaction (no commit/rollback of its own)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _get_bucket(db: _Cursorish, name: str) -> BucketRecord | None:
    row = db.execute(
        "SELECT name, bucket_id, zone, owner, created, type, sse_algorithm, kms_key_arn, "
        "bucket_key_enabled, active_gen, replicas, epoch, version, syncing, policy FROM buckets WHERE name = ?",
        (name,)).fetchone()
    if row is None:
        return None
    keys = tuple(BucketKey(gen, arn, bytes(wrapped)) for gen, arn, wrapped in db.execute(
        "SELECT gen, kms_key_arn, wrapped FROM bucket_keys WHERE bucket_id = ? ORDER BY gen", (row[1],)))
    (name, bucket_id, zone, owner, created, typ, sse, kms_arn, bke, active_gen, replicas, epoch,
     version, syncing, policy) = row
    return BucketRecord(name=name, bucket_id=bytes(bucket_id), zone=zone, owner=owner, created=created,
                        type=typ, sse_algorithm=sse, kms_key_arn=kms_arn, bucket_key_enabled=bool(bke),
                        keys=keys, active_gen=active_gen, replicas=tuple(json.loads(replicas)),
                        epoch=epoch, version=version, syncing=tuple(json.loads(syncing)), policy=policy)


def _write_bucket(db: _Cursorish, b: BucketRecord, *, insert: bool) -> None:
    values = (b.zone, b.owner, b.created, b.type, b.sse_algorithm, b.kms_key_arn,
              int(b.bucket_key_enabled), b.active_gen, json.dumps(list(b.replicas)), b.epoch, b.version,
              json.dumps(list(b.syncing)), b.policy)
    if insert:
        db.execute("INSERT INTO buckets (name, bucket_id, zone, owner, created, type, sse_algorithm, "
                   "kms_key_arn, bucket_key_enabled, active_gen, replicas, epoch, version, syncing, policy) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (b.name, b.bucket_id, *values))
    else:
        db.execute("UPDATE buckets SET zone=?, owner=?, created=?, type=?, sse_algorithm=?, kms_key_arn=?, "
                   "bucket_key_enabled=?, active_gen=?, replicas=?, epoch=?, version=?, syncing=?, policy=? "
                   "WHERE name = ?",
                   (*values, b.name))
    for key in b.keys:
        db.execute("INSERT INTO bucket_keys VALUES (?, ?, ?, ?) ON CONFLICT (bucket_id, gen) DO NOTHING",
                   (b.bucket_id, key.gen, key.kms_key_arn, key.wrapped))


def _get_user(db: _Cursorish, user_name: str) -> UserRecord | None:
    row = db.execute("SELECT user_name, user_id, path, created FROM users WHERE user_name = ?",
                     (user_name,)).fetchone()
    return UserRecord(*row) if row else None


def _require_user(db: _Cursorish, user_name: str) -> UserRecord:
    user = _get_user(db, user_name)
    if user is None:
        raise NoSuchRow(f"the user with name {user_name} cannot be found")
    return user


def _insert_user(db: _Cursorish, user: UserRecord) -> None:
    if _get_user(db, user.user_name) is not None:
        raise RowExists(f"user with name {user.user_name} already exists")
    db.execute("INSERT INTO users VALUES (?, ?, ?, ?)", (user.user_name, user.user_id, user.path, user.created))


def _insert_key(db: _Cursorish, key: AccessKeyRecord) -> None:
    db.execute("INSERT INTO access_keys VALUES (?, ?, ?, ?, ?)",
               (key.access_key_id, key.user_name, key.status, key.created, key.secret_blob))
