"""Store tables for IAM entities beyond users and keys: managed policies with versions, groups
with members and inline policies, and policy attachments to users and groups.

A mixin of ``coordinator.store.SqliteStore``: every method is one transaction of the store's
``_tx`` (same lock, same connection), so the store's interface stays one object.

Invariants
----------
- Group names and policy names are unique without regard to case (``COLLATE NOCASE``), as in
  AWS; a managed policy is addressed by its ARN.
- A managed policy always has a default version (``default_version`` names a row of
  ``policy_versions``); the default version cannot be deleted, and a policy attached to any
  user or group cannot be deleted (``HasDependents``).
- ``effective_policy_documents(user)`` is the union AWS evaluates for an IAM user: the user's
  inline policies, the default versions of the managed policies attached to the user, and, for
  every group the user is in, the group's inline and attached policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coordinator.store_errors import HasDependents, LimitReached, NoSuchRow, RowExists

IAM_SCHEMA_V2 = """
CREATE TABLE managed_policies (
    arn TEXT PRIMARY KEY,
    policy_name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    policy_id TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    description TEXT NOT NULL,
    default_version INTEGER NOT NULL,
    next_version INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE policy_versions (
    arn TEXT NOT NULL REFERENCES managed_policies (arn) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    document TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (arn, version)
);
CREATE TABLE iam_groups (
    group_name TEXT PRIMARY KEY COLLATE NOCASE,
    group_id TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE group_members (
    group_name TEXT NOT NULL COLLATE NOCASE REFERENCES iam_groups (group_name),
    user_name TEXT NOT NULL COLLATE NOCASE REFERENCES users (user_name),
    PRIMARY KEY (group_name, user_name)
);
CREATE INDEX group_members_by_user ON group_members (user_name);
CREATE TABLE group_policies (
    group_name TEXT NOT NULL COLLATE NOCASE REFERENCES iam_groups (group_name),
    policy_name TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (group_name, policy_name)
);
CREATE TABLE policy_attachments (
    kind TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    entity TEXT NOT NULL COLLATE NOCASE,
    policy_arn TEXT NOT NULL REFERENCES managed_policies (arn),
    PRIMARY KEY (kind, entity, policy_arn)
);
CREATE INDEX policy_attachments_by_arn ON policy_attachments (policy_arn);
"""


@dataclass(frozen=True, slots=True)
class ManagedPolicyRecord:
    arn: str
    policy_name: str
    policy_id: str
    path: str
    description: str
    default_version: int
    created: float
    updated: float
    attachment_count: int = 0


@dataclass(frozen=True, slots=True)
class PolicyVersionRecord:
    version: int
    document: str
    created: float
    is_default: bool


@dataclass(frozen=True, slots=True)
class GroupRecord:
    group_name: str
    group_id: str
    path: str
    created: float


_POLICY_COLS = ("arn, policy_name, policy_id, path, description, default_version, created, updated, "
                "(SELECT count(*) FROM policy_attachments a WHERE a.policy_arn = p.arn)")


class IamEntityTables:
    """Managed policies, groups and attachments (see the module docstring)."""

    _tx: Any  # provided by SqliteStore

    # -- managed policies --------------------------------------------------------------------
    def create_policy(self, policy: ManagedPolicyRecord, document: str) -> None:
        """Raises RowExists if a policy of that name (any case) or ARN exists."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM managed_policies WHERE policy_name = ? OR arn = ?",
                          (policy.policy_name, policy.arn)).fetchone():
                raise RowExists(f"a policy called {policy.policy_name} already exists")
            db.execute("INSERT INTO managed_policies VALUES (?, ?, ?, ?, ?, 1, 2, ?, ?)",
                       (policy.arn, policy.policy_name, policy.policy_id, policy.path,
                        policy.description, policy.created, policy.updated))
            db.execute("INSERT INTO policy_versions VALUES (?, 1, ?, ?)", (policy.arn, document, policy.created))

    def get_policy(self, arn: str) -> ManagedPolicyRecord | None:
        with self._tx() as db:
            return _get_policy(db, arn)

    def list_policies(self, *, only_attached: bool = False, path_prefix: str = "/") -> list[ManagedPolicyRecord]:
        with self._tx() as db:
            rows = db.execute(f"SELECT {_POLICY_COLS} FROM managed_policies p ORDER BY policy_name").fetchall()
        out = [ManagedPolicyRecord(*r) for r in rows]
        return [p for p in out if p.path.startswith(path_prefix) and (p.attachment_count or not only_attached)]

    def delete_policy(self, arn: str) -> None:
        """Raises NoSuchRow, or HasDependents while the policy is attached."""
        with self._tx() as db:
            policy = _require_policy(db, arn)
            if policy.attachment_count:
                raise HasDependents(f"the policy {arn} is attached to {policy.attachment_count} "
                                    "entity(ies); detach it first")
            db.execute("DELETE FROM managed_policies WHERE arn = ?", (arn,))

    def create_policy_version(self, arn: str, document: str, *, set_default: bool, now: float,
                              max_versions: int) -> int:
        """Add a version; returns its number. Raises NoSuchRow or LimitReached."""
        with self._tx() as db:
            _require_policy(db, arn)
            n = db.execute("SELECT count(*) FROM policy_versions WHERE arn = ?", (arn,)).fetchone()[0]
            if n >= max_versions:
                raise LimitReached(f"the policy {arn} already has {n} versions (limit {max_versions}); "
                                   "delete one first")
            version = db.execute("SELECT next_version FROM managed_policies WHERE arn = ?", (arn,)).fetchone()[0]
            db.execute("INSERT INTO policy_versions VALUES (?, ?, ?, ?)", (arn, version, document, now))
            db.execute("UPDATE managed_policies SET next_version = ?, updated = ?"
                       + (", default_version = ?" if set_default else "") + " WHERE arn = ?",
                       (version + 1, now, *((version,) if set_default else ()), arn))
            return version

    def get_policy_version(self, arn: str, version: int) -> PolicyVersionRecord:
        """Raises NoSuchRow if the policy or the version does not exist."""
        with self._tx() as db:
            policy = _require_policy(db, arn)
            row = db.execute("SELECT version, document, created FROM policy_versions WHERE arn = ? AND version = ?",
                             (arn, version)).fetchone()
            if row is None:
                raise NoSuchRow(f"the policy {arn} has no version v{version}")
            return PolicyVersionRecord(row[0], row[1], row[2], row[0] == policy.default_version)

    def list_policy_versions(self, arn: str) -> list[PolicyVersionRecord]:
        with self._tx() as db:
            policy = _require_policy(db, arn)
            return [PolicyVersionRecord(v, d, c, v == policy.default_version) for v, d, c in db.execute(
                "SELECT version, document, created FROM policy_versions WHERE arn = ? ORDER BY version DESC",
                (arn,))]

    def set_default_policy_version(self, arn: str, version: int, now: float) -> None:
        with self._tx() as db:
            _require_policy(db, arn)
            if not db.execute("SELECT 1 FROM policy_versions WHERE arn = ? AND version = ?", (arn, version)).fetchone():
                raise NoSuchRow(f"the policy {arn} has no version v{version}")
            db.execute("UPDATE managed_policies SET default_version = ?, updated = ? WHERE arn = ?",
                       (version, now, arn))

    def delete_policy_version(self, arn: str, version: int) -> None:
        """Raises NoSuchRow, or HasDependents for the default version."""
        with self._tx() as db:
            policy = _require_policy(db, arn)
            if version == policy.default_version:
                raise HasDependents(f"v{version} is the default version of {arn}: it cannot be deleted")
            if db.execute("DELETE FROM policy_versions WHERE arn = ? AND version = ?",
                          (arn, version)).rowcount == 0:
                raise NoSuchRow(f"the policy {arn} has no version v{version}")

    # -- groups ------------------------------------------------------------------------------
    def create_group(self, group: GroupRecord) -> None:
        with self._tx() as db:
            if _get_group(db, group.group_name) is not None:
                raise RowExists(f"group with name {group.group_name} already exists")
            db.execute("INSERT INTO iam_groups VALUES (?, ?, ?, ?)",
                       (group.group_name, group.group_id, group.path, group.created))

    def get_group(self, group_name: str) -> GroupRecord | None:
        with self._tx() as db:
            return _get_group(db, group_name)

    def list_groups(self) -> list[GroupRecord]:
        with self._tx() as db:
            return [GroupRecord(*r) for r in db.execute(
                "SELECT group_name, group_id, path, created FROM iam_groups ORDER BY group_name")]

    def delete_group(self, group_name: str) -> None:
        """Raises NoSuchRow, or HasDependents while the group has members or policies."""
        with self._tx() as db:
            group_name = _require_group(db, group_name).group_name
            members = _count(db, "SELECT count(*) FROM group_members WHERE group_name = ?", group_name)
            pols = _count(db, "SELECT count(*) FROM group_policies WHERE group_name = ?", group_name)
            attached = _count(db, "SELECT count(*) FROM policy_attachments WHERE kind = 'group' AND entity = ?",
                              group_name)
            if members or pols or attached:
                raise HasDependents(f"group {group_name} still has {members} member(s), {pols} inline "
                                    f"policy(ies) and {attached} attached policy(ies); remove them first")
            db.execute("DELETE FROM iam_groups WHERE group_name = ?", (group_name,))

    def group_members(self, group_name: str) -> tuple[GroupRecord, list[str]]:
        """The group and its members' user names; raises NoSuchRow."""
        with self._tx() as db:
            group = _require_group(db, group_name)
            return group, [r[0] for r in db.execute(
                "SELECT u.user_name FROM group_members m JOIN users u ON u.user_name = m.user_name "
                "WHERE m.group_name = ? ORDER BY u.user_name", (group.group_name,))]

    def add_user_to_group(self, group_name: str, user_name: str, *, max_groups: int) -> None:
        with self._tx() as db:
            group = _require_group(db, group_name)
            user = _require_user(db, user_name)
            if db.execute("SELECT 1 FROM group_members WHERE group_name = ? AND user_name = ?",
                          (group.group_name, user)).fetchone():
                return  # as AWS: adding a member twice is not an error
            n = _count(db, "SELECT count(*) FROM group_members WHERE user_name = ?", user)
            if n >= max_groups:
                raise LimitReached(f"user {user} is already in {n} groups (limit {max_groups})")
            db.execute("INSERT INTO group_members VALUES (?, ?)", (group.group_name, user))

    def remove_user_from_group(self, group_name: str, user_name: str) -> None:
        with self._tx() as db:
            group = _require_group(db, group_name)
            user = _require_user(db, user_name)
            if db.execute("DELETE FROM group_members WHERE group_name = ? AND user_name = ?",
                          (group.group_name, user)).rowcount == 0:
                raise NoSuchRow(f"the user {user} is not in the group {group.group_name}")

    def groups_for_user(self, user_name: str) -> list[GroupRecord]:
        with self._tx() as db:
            user = _require_user(db, user_name)
            return [GroupRecord(*r) for r in db.execute(
                "SELECT g.group_name, g.group_id, g.path, g.created FROM group_members m "
                "JOIN iam_groups g ON g.group_name = m.group_name WHERE m.user_name = ? "
                "ORDER BY g.group_name", (user,))]

    def put_group_policy(self, group_name: str, policy_name: str, document: str, *, max_total_bytes: int) -> None:
        with self._tx() as db:
            group = _require_group(db, group_name).group_name
            others = _count(db, "SELECT coalesce(sum(length(CAST(document AS BLOB))), 0) FROM group_policies "
                                "WHERE group_name = ? AND policy_name != ?", group, policy_name)
            if others + len(document.encode()) > max_total_bytes:
                raise LimitReached(f"inline policies of group {group} would exceed {max_total_bytes} bytes")
            db.execute("INSERT INTO group_policies VALUES (?, ?, ?) ON CONFLICT (group_name, policy_name) "
                       "DO UPDATE SET document = excluded.document", (group, policy_name, document))

    def get_group_policy(self, group_name: str, policy_name: str) -> tuple[str, str]:
        """(group name as stored, document); raises NoSuchRow."""
        with self._tx() as db:
            group = _require_group(db, group_name).group_name
            row = db.execute("SELECT document FROM group_policies WHERE group_name = ? AND policy_name = ?",
                             (group, policy_name)).fetchone()
            if row is None:
                raise NoSuchRow(f"the group {group} has no policy named {policy_name}")
            return group, row[0]

    def list_group_policies(self, group_name: str) -> list[str]:
        with self._tx() as db:
            group = _require_group(db, group_name).group_name
            return [r[0] for r in db.execute(
                "SELECT policy_name FROM group_policies WHERE group_name = ? ORDER BY policy_name", (group,))]

    def delete_group_policy(self, group_name: str, policy_name: str) -> None:
        with self._tx() as db:
            group = _require_group(db, group_name).group_name
            if db.execute("DELETE FROM group_policies WHERE group_name = ? AND policy_name = ?",
                          (group, policy_name)).rowcount == 0:
                raise NoSuchRow(f"the group {group} has no policy named {policy_name}")

    # -- attachments -------------------------------------------------------------------------
    def attach_policy(self, kind: str, entity: str, arn: str, *, max_attached: int) -> None:
        """Attach a managed policy to a user or group (idempotent); NoSuchRow, LimitReached."""
        with self._tx() as db:
            name = _require_entity(db, kind, entity)
            _require_policy(db, arn)
            if db.execute("SELECT 1 FROM policy_attachments WHERE kind = ? AND entity = ? AND policy_arn = ?",
                          (kind, name, arn)).fetchone():
                return
            n = _count(db, "SELECT count(*) FROM policy_attachments WHERE kind = ? AND entity = ?", kind, name)
            if n >= max_attached:
                raise LimitReached(f"{kind} {name} already has {n} attached policies (limit {max_attached})")
            db.execute("INSERT INTO policy_attachments VALUES (?, ?, ?)", (kind, name, arn))

    def detach_policy(self, kind: str, entity: str, arn: str) -> None:
        with self._tx() as db:
            name = _require_entity(db, kind, entity)
            _require_policy(db, arn)
            if db.execute("DELETE FROM policy_attachments WHERE kind = ? AND entity = ? AND policy_arn = ?",
                          (kind, name, arn)).rowcount == 0:
                raise NoSuchRow(f"the policy {arn} is not attached to {kind} {name}")

    def list_attached(self, kind: str, entity: str) -> list[tuple[str, str]]:
        """[(policy name, policy ARN)] attached to the user or group; raises NoSuchRow."""
        with self._tx() as db:
            name = _require_entity(db, kind, entity)
            return [(r[0], r[1]) for r in db.execute(
                "SELECT p.policy_name, p.arn FROM policy_attachments a JOIN managed_policies p "
                "ON p.arn = a.policy_arn WHERE a.kind = ? AND a.entity = ? ORDER BY p.policy_name",
                (kind, name))]

    def effective_policy_documents(self, user_name: str) -> list[str]:
        """Every policy document that applies to the user (see the module docstring)."""
        with self._tx() as db:
            docs = [r[0] for r in db.execute(
                "SELECT document FROM user_policies WHERE user_name = ? ORDER BY policy_name", (user_name,))]
            groups = [r[0] for r in db.execute(
                "SELECT group_name FROM group_members WHERE user_name = ? ORDER BY group_name", (user_name,))]
            attached = [("user", user_name)] + [("group", g) for g in groups]
            for g in groups:
                docs += [r[0] for r in db.execute(
                    "SELECT document FROM group_policies WHERE group_name = ? ORDER BY policy_name", (g,))]
            for kind, name in attached:
                docs += [r[0] for r in db.execute(
                    "SELECT v.document FROM policy_attachments a JOIN managed_policies p ON p.arn = a.policy_arn "
                    "JOIN policy_versions v ON v.arn = p.arn AND v.version = p.default_version "
                    "WHERE a.kind = ? AND a.entity = ? ORDER BY p.arn", (kind, name))]
            return docs

    @staticmethod
    def _user_links(db: Any, user_name: str) -> tuple[int, int]:
        """(group memberships, attached policies) of a user, inside a transaction."""
        return (_count(db, "SELECT count(*) FROM group_members WHERE user_name = ?", user_name),
                _count(db, "SELECT count(*) FROM policy_attachments WHERE kind = 'user' AND entity = ?", user_name))


def _count(db: Any, sql: str, *params: Any) -> int:
    return db.execute(sql, params).fetchone()[0]


def _get_policy(db: Any, arn: str) -> ManagedPolicyRecord | None:
    row = db.execute(f"SELECT {_POLICY_COLS} FROM managed_policies p WHERE arn = ?", (arn,)).fetchone()
    return ManagedPolicyRecord(*row) if row else None


def _require_policy(db: Any, arn: str) -> ManagedPolicyRecord:
    policy = _get_policy(db, arn)
    if policy is None:
        raise NoSuchRow(f"policy {arn} does not exist or is not attachable")
    return policy


def _get_group(db: Any, group_name: str) -> GroupRecord | None:
    row = db.execute("SELECT group_name, group_id, path, created FROM iam_groups WHERE group_name = ?",
                     (group_name,)).fetchone()
    return GroupRecord(*row) if row else None


def _require_group(db: Any, group_name: str) -> GroupRecord:
    group = _get_group(db, group_name)
    if group is None:
        raise NoSuchRow(f"the group with name {group_name} cannot be found")
    return group


def _require_user(db: Any, user_name: str) -> str:
    row = db.execute("SELECT user_name FROM users WHERE user_name = ?", (user_name,)).fetchone()
    if row is None:
        raise NoSuchRow(f"the user with name {user_name} cannot be found")
    return row[0]


def _require_entity(db: Any, kind: str, name: str) -> str:
    if kind == "user":
        return _require_user(db, name)
    if kind == "group":
        return _require_group(db, name).group_name
    raise ValueError(f"unknown entity kind {kind!r}")
