"""The coordinator's RPC surface: argument checks at the edge, the ACL, and the handlers.

Handlers are thin: they check every argument's presence, type and size (``_Args``), refuse
unknown arguments (a typo in a caller must fail loudly, not fall back to a default), enforce
the ``node_id == principal`` rule for node calls, and delegate to ``NodeRegistry``,
``Catalog`` and ``Iam``. The methods, arguments, results and error kinds are those of the
Coordinator section of docs/rpc.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coordinator.catalog import Catalog
from coordinator.iam import Iam
from coordinator.nodes import NodeRegistry
from coordinator.replica_sets import ReplicaSets
from proto.config import Endpoint
from proto.errors import AccessDenied, InvalidRequest
from proto.names import InvalidName, validate_iam_user_name, validate_zone_id
from proto.rpc import Call, Handler

_NODES = "node-*"
_ADMINS = ("gateway", "admin")

ACL: dict[str, tuple[str, ...]] = {
    "RegisterNode": (_NODES,),
    "Heartbeat": (_NODES,),
    "ListNodes": ("gateway", "admin", _NODES),
    "CreateBucket": _ADMINS,
    "GetBucket": ("gateway", _NODES, "admin"),
    "ListBuckets": _ADMINS,
    "DeleteBucket": _ADMINS,
    "PutBucketEncryption": _ADMINS,
    "ReportReplicaFailure": (_NODES,),
    "AddReplica": ("admin",),
    "PutBucketPolicy": _ADMINS,
    "DeleteBucketPolicy": _ADMINS,
    "CreateUser": _ADMINS,
    "GetUser": _ADMINS,
    "ListUsers": _ADMINS,
    "DeleteUser": _ADMINS,
    "CreateAccessKey": _ADMINS,
    "ListAccessKeys": _ADMINS,
    "DeleteAccessKey": _ADMINS,
    "PutUserPolicy": _ADMINS,
    "GetUserPolicy": _ADMINS,
    "ListUserPolicies": _ADMINS,
    "DeleteUserPolicy": _ADMINS,
    "GetAuthContext": ("gateway",),
}

MAX_INT64 = 2**63 - 1
MAX_ARN_CHARS = 2048
MAX_POLICY_TEXT = 131072  # refused before parsing; the policy module enforces the real limit


class _Args:
    """Typed access to a call's arguments; failures are InvalidRequest with ``kind``."""

    def __init__(self, call: Call, kind: str, *, required: tuple[str, ...] = (),
                 optional: tuple[str, ...] = ()) -> None:
        self._args = call.args
        self._kind = kind
        unknown = sorted(set(self._args) - set(required) - set(optional))
        if unknown:
            raise InvalidRequest(f"{call.method}: unexpected argument(s) {', '.join(map(str, unknown))}",
                                 kind=kind)
        missing = [name for name in required if self._args.get(name) is None]
        if missing:
            raise InvalidRequest(f"{call.method}: missing argument(s) {', '.join(missing)}", kind=kind)

    def _bad(self, name: str, what: str) -> InvalidRequest:
        return InvalidRequest(f"argument {name} must be {what}", kind=self._kind)

    def str(self, name: str, *, max_len: int, min_len: int = 1) -> str | None:
        value = self._args.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not min_len <= len(value) <= max_len:
            raise self._bad(name, f"a string of {min_len} to {max_len} characters")
        return value

    def int(self, name: str, *, lo: int = 0, hi: int = MAX_INT64) -> int | None:
        value = self._args.get(name)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise self._bad(name, f"an integer in {lo}..{hi}")
        return value

    def bool(self, name: str) -> bool | None:
        value = self._args.get(name)
        if value is not None and not isinstance(value, bool):
            raise self._bad(name, "a boolean")
        return value


class CoordinatorService:
    def __init__(self, *, nodes: NodeRegistry, catalog: Catalog, iam: Iam,
                 heartbeat_interval_s: float, replica_sets: ReplicaSets | None = None) -> None:
        self._replica_sets = replica_sets
        self._nodes = nodes
        self._catalog = catalog
        self._iam = iam
        self._heartbeat_interval_s = heartbeat_interval_s

    def handlers(self) -> Mapping[str, Handler]:
        return {method: getattr(self, method) for method in ACL}

    # -- membership ------------------------------------------------------------------------
    @staticmethod
    def _own_node(call: Call, node_id: str) -> None:
        if node_id != call.principal:
            raise AccessDenied(f"principal {call.principal!r} may not act for node {node_id!r}",
                               kind="AccessDeniedException")

    async def RegisterNode(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument",
                  required=("node_id", "zone", "host", "port", "capacity_bytes", "free_bytes"))
        node_id = a.str("node_id", max_len=64)
        self._own_node(call, node_id)
        zone = a.str("zone", max_len=64)
        try:
            validate_zone_id(zone)
            addr = Endpoint(a.str("host", max_len=253), a.int("port", lo=1, hi=65535))
        except (InvalidName, ValueError) as exc:
            raise InvalidRequest(str(exc), kind="InvalidArgument") from None
        capacity = a.int("capacity_bytes")
        free = min(a.int("free_bytes"), capacity)
        await self._nodes.register(node_id=node_id, zone=zone, host=addr.host, port=addr.port,
                                   capacity_bytes=capacity, free_bytes=free)
        return {"heartbeat_interval_s": self._heartbeat_interval_s}

    async def Heartbeat(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", required=("node_id", "free_bytes", "used_bytes"))
        node_id = a.str("node_id", max_len=64)
        self._own_node(call, node_id)
        self._nodes.heartbeat(node_id, free_bytes=a.int("free_bytes"), used_bytes=a.int("used_bytes"))
        return {}

    async def ListNodes(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", optional=("zone",))
        return {"nodes": self._nodes.list_nodes(a.str("zone", max_len=64))}

    # -- buckets ---------------------------------------------------------------------------
    async def CreateBucket(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", required=("name", "owner"), optional=("zone",))
        name = a.str("name", max_len=255)
        owner = a.str("owner", max_len=MAX_ARN_CHARS)
        zone = a.str("zone", max_len=64)
        record = await self._catalog.create_bucket(name, owner, zone)
        return {"bucket": self._catalog.to_wire(record)}

    async def GetBucket(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", required=("name",))
        record = await self._catalog.get_bucket(a.str("name", max_len=255))
        return {"bucket": self._catalog.to_wire(record)}

    async def ListBuckets(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", optional=("owner",))
        records = await self._catalog.list_buckets(a.str("owner", max_len=MAX_ARN_CHARS))
        return {"buckets": [self._catalog.to_wire(r) for r in records]}

    async def DeleteBucket(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", required=("name",))
        await self._catalog.delete_bucket(a.str("name", max_len=255))
        return {}

    async def PutBucketEncryption(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", required=("name", "sse_algorithm"),
                  optional=("kms_key_id", "bucket_key_enabled"))
        name = a.str("name", max_len=255)
        algorithm = a.str("sse_algorithm", max_len=64)
        kms_key_id = a.str("kms_key_id", max_len=2048)
        a.bool("bucket_key_enabled")  # bucket keys are always on for directory buckets
        record = await self._catalog.put_bucket_encryption(name, algorithm, kms_key_id)
        return {"bucket": self._catalog.to_wire(record)}

    # -- replica sets (coordinator/replica_sets.py) ----------------------------------------
    def _sets(self) -> ReplicaSets:
        if self._replica_sets is None:
            raise InvalidRequest("replica-set changes are not enabled", kind="InvalidArgument")
        return self._replica_sets

    async def ReportReplicaFailure(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", required=("name", "epoch", "node_id"))
        record = await self._sets().report_failure(reporter=call.principal, name=a.str("name", max_len=255),
                                                   epoch=a.int("epoch"), node_id=a.str("node_id", max_len=128))
        return {"bucket": record}

    async def AddReplica(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", required=("name",), optional=("node_id",))
        record = await self._sets().add_replica(name=a.str("name", max_len=255), node_id=a.str("node_id", max_len=128))
        return {"bucket": record}

    async def PutBucketPolicy(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", required=("name", "policy"))
        name = a.str("name", max_len=255)
        document = a.str("policy", max_len=MAX_POLICY_TEXT)
        record = await self._catalog.put_bucket_policy(name, document)
        return {"bucket": self._catalog.to_wire(record)}

    async def DeleteBucketPolicy(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "InvalidArgument", required=("name",))
        record = await self._catalog.delete_bucket_policy(a.str("name", max_len=255))
        return {"bucket": self._catalog.to_wire(record)}

    # -- IAM -------------------------------------------------------------------------------
    def _user(self, a: _Args, name: str = "user_name") -> str:
        user_name = a.str(name, max_len=128)
        try:
            validate_iam_user_name(user_name)
        except InvalidName as exc:
            raise InvalidRequest(exc.message, kind="ValidationError") from None
        return user_name

    @staticmethod
    def _policy_name(a: _Args) -> str:
        name = a.str("policy_name", max_len=128)
        if not all(c.isascii() and (c.isalnum() or c in "+=,.@-_") for c in name):
            raise InvalidRequest("policy_name must be 1-128 characters of letters, digits and +=,.@-_",
                                 kind="ValidationError")
        return name

    async def CreateUser(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "ValidationError", required=("user_name",), optional=("path",))
        user_name = self._user(a)
        path = a.str("path", max_len=512) or "/"
        if not (path.startswith("/") and path.endswith("/")
                and all("\u0021" <= c <= "\u007e" for c in path)):
            raise InvalidRequest("path must begin and end with / and contain printable ASCII only",
                                 kind="ValidationError")
        return {"User": await self._iam.create_user(user_name, path)}

    async def GetUser(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "ValidationError", required=("user_name",))
        return {"User": await self._iam.get_user(self._user(a))}

    async def ListUsers(self, call: Call) -> dict[str, Any]:
        _Args(call, "ValidationError")
        return {"Users": await self._iam.list_users()}

    async def DeleteUser(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "ValidationError", required=("user_name",))
        await self._iam.delete_user(self._user(a))
        return {}

    async def CreateAccessKey(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "ValidationError", required=("user_name",))
        return {"AccessKey": await self._iam.create_access_key(self._user(a))}

    async def ListAccessKeys(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "ValidationError", required=("user_name",))
        return {"AccessKeyMetadata": await self._iam.list_access_keys(self._user(a))}

    async def DeleteAccessKey(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "ValidationError", required=("user_name", "access_key_id"))
        user_name = self._user(a)
        await self._iam.delete_access_key(user_name, a.str("access_key_id", max_len=128, min_len=16))
        return {}

    async def PutUserPolicy(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "ValidationError", required=("user_name", "policy_name", "policy_document"))
        user_name, policy_name = self._user(a), self._policy_name(a)
        document = a.str("policy_document", max_len=MAX_POLICY_TEXT)
        await self._iam.put_user_policy(user_name, policy_name, document)
        return {}

    async def GetUserPolicy(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "ValidationError", required=("user_name", "policy_name"))
        return await self._iam.get_user_policy(self._user(a), self._policy_name(a))

    async def ListUserPolicies(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "ValidationError", required=("user_name",))
        return {"PolicyNames": await self._iam.list_user_policies(self._user(a))}

    async def DeleteUserPolicy(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "ValidationError", required=("user_name", "policy_name"))
        await self._iam.delete_user_policy(self._user(a), self._policy_name(a))
        return {}

    async def GetAuthContext(self, call: Call) -> dict[str, Any]:
        a = _Args(call, "ValidationError", required=("access_key_id",))
        return await self._iam.auth_context(a.str("access_key_id", max_len=128))
