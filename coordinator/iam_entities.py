"""IAM managed policies (with versions), groups and policy attachments.

Responsibility
--------------
The AWS IAM operations on managed policies, groups and attachments over the store, returning
AWS-shaped maps (``Policy``, ``PolicyVersion``, ``Group``, ``AttachedPolicies``) that the
gateway renders as IAM query XML as they are. Users and access keys are ``coordinator.iam``.

Invariants
----------
- Every policy document is validated with ``proto.policy.parse_policy`` before it is stored
  (``MalformedPolicyDocument``), and stored as given.
- Limits as AWS's default quotas: 5 versions per managed policy, 10 managed policies attached
  per user or group, 10 groups per user (``LimitExceeded``); 10 KiB of inline group policy.
- ARNs: ``arn:aws:iam::<account>:policy<path><name>`` and ``...:group<path><name>``.
- Only customer-managed policies exist (``Scope=AWS`` lists nothing).
"""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio

from coordinator.store import SqliteStore
from coordinator.store_errors import HasDependents, LimitReached, NoSuchRow, RowExists
from coordinator.store_iam import GroupRecord, ManagedPolicyRecord, PolicyVersionRecord
from proto.errors import Conflict, InvalidRequest, NotFound
from proto.names import iam_user_arn
from proto.policy import MalformedPolicy, parse_policy

MAX_POLICY_BYTES = 10240
MAX_VERSIONS = 5
MAX_ATTACHED = 10
MAX_GROUPS_PER_USER = 10
MAX_GROUP_POLICY_BYTES = 10240
_ID_ALPHABET = string.ascii_uppercase + string.digits


@contextmanager
def store_errors() -> Iterator[None]:
    """Map the store's failures to IAM's typed errors."""
    try:
        yield
    except NoSuchRow as exc:
        raise NotFound(str(exc), kind="NoSuchEntity") from None
    except RowExists as exc:
        raise Conflict(str(exc), kind="EntityAlreadyExists") from None
    except HasDependents as exc:
        raise Conflict(str(exc), kind="DeleteConflict") from None
    except LimitReached as exc:
        raise InvalidRequest(str(exc), kind="LimitExceeded") from None


def check_policy_document(document: str) -> None:
    try:
        parse_policy(document, max_bytes=MAX_POLICY_BYTES)
    except MalformedPolicy as exc:
        raise InvalidRequest(f"the policy document is malformed: {exc}", kind="MalformedPolicyDocument") from None


def parse_version_id(version_id: str) -> int:
    """``v3`` -> 3; anything else is ``ValidationError``."""
    if version_id[:1] != "v" or not version_id[1:].isdigit() or len(version_id) > 20 or int(version_id[1:]) < 1:
        raise InvalidRequest(f"invalid version id {version_id!r}: expected v<number>", kind="ValidationError")
    return int(version_id[1:])


class IamEntities:
    def __init__(self, *, store: SqliteStore, account_id: str, clock: Callable[[], float],
                 rng: random.Random | None = None) -> None:
        self._store = store
        self._account = account_id
        self._clock = clock
        self._rng = rng or secrets.SystemRandom()

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        with store_errors():
            return await trio.to_thread.run_sync(fn, *args)

    def _id(self, prefix: str) -> str:
        return prefix + "".join(self._rng.choice(_ID_ALPHABET) for _ in range(17))

    def policy_arn(self, path: str, name: str) -> str:
        return f"arn:aws:iam::{self._account}:policy{path}{name}"

    def group_arn(self, group: GroupRecord) -> str:
        return f"arn:aws:iam::{self._account}:group{group.path}{group.group_name}"

    def _check_policy_arn(self, arn: str) -> None:
        prefix = f"arn:aws:iam::{self._account}:policy/"
        if arn.startswith("arn:aws:iam::aws:policy/"):
            raise NotFound(f"policy {arn} does not exist or is not attachable (onezone has no "
                           "AWS managed policies: create a customer managed one)", kind="NoSuchEntity")
        if not arn.startswith(prefix):
            raise InvalidRequest(f"invalid policy ARN {arn!r}", kind="InvalidInput")

    # -- wire shapes -------------------------------------------------------------------------
    @staticmethod
    def policy_wire(p: ManagedPolicyRecord) -> dict[str, Any]:
        out = {"PolicyName": p.policy_name, "PolicyId": p.policy_id, "Arn": p.arn, "Path": p.path,
               "DefaultVersionId": f"v{p.default_version}", "AttachmentCount": p.attachment_count,
               "PermissionsBoundaryUsageCount": 0, "IsAttachable": True,
               "CreateDate": p.created, "UpdateDate": p.updated}
        if p.description:
            out["Description"] = p.description
        return out

    @staticmethod
    def version_wire(v: PolicyVersionRecord, *, with_document: bool = True) -> dict[str, Any]:
        out = {"VersionId": f"v{v.version}", "IsDefaultVersion": v.is_default, "CreateDate": v.created}
        if with_document:
            out["Document"] = v.document
        return out

    def group_wire(self, g: GroupRecord) -> dict[str, Any]:
        return {"Path": g.path, "GroupName": g.group_name, "GroupId": g.group_id, "Arn": self.group_arn(g),
                "CreateDate": g.created}

    # -- managed policies --------------------------------------------------------------------
    async def create_policy(self, name: str, document: str, path: str, description: str) -> dict[str, Any]:
        check_policy_document(document)
        now = self._clock()
        record = ManagedPolicyRecord(self.policy_arn(path, name), name, self._id("ANPA"), path, description,
                                     1, now, now)
        await self._db(self._store.create_policy, record, document)
        return self.policy_wire(record)

    async def get_policy(self, arn: str) -> dict[str, Any]:
        self._check_policy_arn(arn)
        policy = await self._db(self._store.get_policy, arn)
        if policy is None:
            raise NotFound(f"policy {arn} was not found", kind="NoSuchEntity")
        return self.policy_wire(policy)

    async def list_policies(self, *, scope: str, only_attached: bool, path_prefix: str) -> list[dict[str, Any]]:
        if scope == "AWS":
            return []
        policies = await self._db(lambda: self._store.list_policies(only_attached=only_attached,
                                                                    path_prefix=path_prefix))
        return [self.policy_wire(p) for p in policies]

    async def delete_policy(self, arn: str) -> None:
        self._check_policy_arn(arn)
        await self._db(self._store.delete_policy, arn)

    async def create_policy_version(self, arn: str, document: str, set_default: bool) -> dict[str, Any]:
        self._check_policy_arn(arn)
        check_policy_document(document)
        version = await self._db(lambda: self._store.create_policy_version(
            arn, document, set_default=set_default, now=self._clock(), max_versions=MAX_VERSIONS))
        return self.version_wire(await self._db(self._store.get_policy_version, arn, version),
                                 with_document=False)

    async def get_policy_version(self, arn: str, version_id: str) -> dict[str, Any]:
        self._check_policy_arn(arn)
        return self.version_wire(await self._db(self._store.get_policy_version, arn, parse_version_id(version_id)))

    async def list_policy_versions(self, arn: str) -> list[dict[str, Any]]:
        self._check_policy_arn(arn)
        return [self.version_wire(v, with_document=False)
                for v in await self._db(self._store.list_policy_versions, arn)]

    async def set_default_policy_version(self, arn: str, version_id: str) -> None:
        self._check_policy_arn(arn)
        await self._db(self._store.set_default_policy_version, arn, parse_version_id(version_id), self._clock())

    async def delete_policy_version(self, arn: str, version_id: str) -> None:
        self._check_policy_arn(arn)
        await self._db(self._store.delete_policy_version, arn, parse_version_id(version_id))

    # -- groups ------------------------------------------------------------------------------
    async def create_group(self, name: str, path: str) -> dict[str, Any]:
        group = GroupRecord(name, self._id("AGPA"), path, self._clock())
        await self._db(self._store.create_group, group)
        return self.group_wire(group)

    async def get_group(self, name: str) -> dict[str, Any]:
        group, members = await self._db(self._store.group_members, name)
        names = set(members)
        users = [{"UserName": u.user_name, "UserId": u.user_id, "Arn": iam_user_arn(self._account, u.user_name),
                  "Path": u.path, "CreateDate": u.created}
                 for u in await self._db(self._store.list_users) if u.user_name in names]
        return {"Group": self.group_wire(group), "Users": users}

    async def list_groups(self) -> list[dict[str, Any]]:
        return [self.group_wire(g) for g in await self._db(self._store.list_groups)]

    async def delete_group(self, name: str) -> None:
        await self._db(self._store.delete_group, name)

    async def add_user_to_group(self, group: str, user: str) -> None:
        await self._db(lambda: self._store.add_user_to_group(group, user, max_groups=MAX_GROUPS_PER_USER))

    async def remove_user_from_group(self, group: str, user: str) -> None:
        await self._db(self._store.remove_user_from_group, group, user)

    async def list_groups_for_user(self, user: str) -> list[dict[str, Any]]:
        return [self.group_wire(g) for g in await self._db(self._store.groups_for_user, user)]

    async def put_group_policy(self, group: str, policy_name: str, document: str) -> None:
        check_policy_document(document)
        await self._db(lambda: self._store.put_group_policy(group, policy_name, document,
                                                            max_total_bytes=MAX_GROUP_POLICY_BYTES))

    async def get_group_policy(self, group: str, policy_name: str) -> dict[str, Any]:
        name, document = await self._db(self._store.get_group_policy, group, policy_name)
        return {"GroupName": name, "PolicyName": policy_name, "PolicyDocument": document}

    async def list_group_policies(self, group: str) -> list[str]:
        return await self._db(self._store.list_group_policies, group)

    async def delete_group_policy(self, group: str, policy_name: str) -> None:
        await self._db(self._store.delete_group_policy, group, policy_name)

    # -- attachments -------------------------------------------------------------------------
    async def attach(self, kind: str, entity: str, arn: str) -> None:
        self._check_policy_arn(arn)
        await self._db(lambda: self._store.attach_policy(kind, entity, arn, max_attached=MAX_ATTACHED))

    async def detach(self, kind: str, entity: str, arn: str) -> None:
        self._check_policy_arn(arn)
        await self._db(self._store.detach_policy, kind, entity, arn)

    async def list_attached(self, kind: str, entity: str) -> list[dict[str, str]]:
        return [{"PolicyName": n, "PolicyArn": a} for n, a in await self._db(self._store.list_attached, kind, entity)]
