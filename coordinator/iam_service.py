"""RPC handlers for IAM managed policies, policy versions, groups and attachments.

The same conventions as ``coordinator.service`` (argument checks with ``_Args``, unknown
arguments refused with kind ``ValidationError``), delegating to ``IamEntities``. Method names
are the IAM action names; results are the AWS shapes (docs/rpc.md, "IAM: policies and groups").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coordinator.iam_entities import IamEntities
from coordinator.service import _Args
from proto.errors import InvalidRequest
from proto.names import InvalidName, validate_iam_user_name
from proto.rpc import Call, Handler

_ADMINS = ("gateway", "admin")
MAX_POLICY_TEXT = 131072
MAX_ARN = 2048

IAM_ENTITY_ACL: dict[str, tuple[str, ...]] = {m: _ADMINS for m in (
    "CreatePolicy", "GetPolicy", "ListPolicies", "DeletePolicy", "CreatePolicyVersion",
    "GetPolicyVersion", "ListPolicyVersions", "SetDefaultPolicyVersion", "DeletePolicyVersion",
    "CreateGroup", "GetGroup", "ListGroups", "DeleteGroup", "AddUserToGroup", "RemoveUserFromGroup",
    "ListGroupsForUser", "PutGroupPolicy", "GetGroupPolicy", "ListGroupPolicies", "DeleteGroupPolicy",
    "AttachUserPolicy", "DetachUserPolicy", "ListAttachedUserPolicies", "AttachGroupPolicy",
    "DetachGroupPolicy", "ListAttachedGroupPolicies")}


def _name(a: _Args, arg: str, what: str) -> str:
    value = a.str(arg, max_len=128)
    if not all(c.isascii() and (c.isalnum() or c in "+=,.@-_") for c in value):
        raise InvalidRequest(f"{arg} must be 1-128 characters of letters, digits and +=,.@-_ ({what})",
                             kind="ValidationError")
    return value


def _user(a: _Args) -> str:
    user = a.str("user_name", max_len=64)
    try:
        validate_iam_user_name(user)
    except InvalidName as exc:
        raise InvalidRequest(exc.message, kind="ValidationError") from None
    return user


def _path(a: _Args, arg: str = "path") -> str:
    path = a.str(arg, max_len=512) or "/"
    if not (path.startswith("/") and path.endswith("/") and all("\u0021" <= c <= "\u007e" for c in path)):
        raise InvalidRequest(f"{arg} must begin and end with / and contain printable ASCII only",
                             kind="ValidationError")
    return path


class IamEntityService:
    def __init__(self, entities: IamEntities) -> None:
        self._e = entities

    def handlers(self) -> Mapping[str, Handler]:
        return {method: getattr(self, method) for method in IAM_ENTITY_ACL}

    @staticmethod
    def _args(call: Call, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> _Args:
        return _Args(call, "ValidationError", required=required, optional=optional)

    def _arn(self, a: _Args) -> str:
        return a.str("policy_arn", max_len=MAX_ARN, min_len=20)

    # -- managed policies --------------------------------------------------------------------
    async def CreatePolicy(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("policy_name", "policy_document"), ("path", "description"))
        description = a.str("description", max_len=1000, min_len=0) or ""
        policy = await self._e.create_policy(_name(a, "policy_name", "policy name"),
                                             a.str("policy_document", max_len=MAX_POLICY_TEXT),
                                             _path(a), description)
        return {"Policy": policy}

    async def GetPolicy(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("policy_arn",))
        return {"Policy": await self._e.get_policy(self._arn(a))}

    async def ListPolicies(self, call: Call) -> dict[str, Any]:
        a = self._args(call, (), ("scope", "only_attached", "path_prefix"))
        scope = a.str("scope", max_len=8) or "All"
        if scope not in ("All", "AWS", "Local"):
            raise InvalidRequest("scope must be All, AWS or Local", kind="ValidationError")
        return {"Policies": await self._e.list_policies(scope=scope, only_attached=bool(a.bool("only_attached")),
                                                        path_prefix=_path(a, "path_prefix"))}

    async def DeletePolicy(self, call: Call) -> dict[str, Any]:
        await self._e.delete_policy(self._arn(self._args(call, ("policy_arn",))))
        return {}

    async def CreatePolicyVersion(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("policy_arn", "policy_document"), ("set_as_default",))
        return {"PolicyVersion": await self._e.create_policy_version(
            self._arn(a), a.str("policy_document", max_len=MAX_POLICY_TEXT), bool(a.bool("set_as_default")))}

    async def GetPolicyVersion(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("policy_arn", "version_id"))
        return {"PolicyVersion": await self._e.get_policy_version(self._arn(a), a.str("version_id", max_len=20))}

    async def ListPolicyVersions(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("policy_arn",))
        return {"Versions": await self._e.list_policy_versions(self._arn(a))}

    async def SetDefaultPolicyVersion(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("policy_arn", "version_id"))
        await self._e.set_default_policy_version(self._arn(a), a.str("version_id", max_len=20))
        return {}

    async def DeletePolicyVersion(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("policy_arn", "version_id"))
        await self._e.delete_policy_version(self._arn(a), a.str("version_id", max_len=20))
        return {}

    # -- groups ------------------------------------------------------------------------------
    async def CreateGroup(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name",), ("path",))
        return {"Group": await self._e.create_group(_name(a, "group_name", "group name"), _path(a))}

    async def GetGroup(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name",))
        return await self._e.get_group(_name(a, "group_name", "group name"))

    async def ListGroups(self, call: Call) -> dict[str, Any]:
        self._args(call)
        return {"Groups": await self._e.list_groups()}

    async def DeleteGroup(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name",))
        await self._e.delete_group(_name(a, "group_name", "group name"))
        return {}

    async def AddUserToGroup(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name", "user_name"))
        await self._e.add_user_to_group(_name(a, "group_name", "group name"), _user(a))
        return {}

    async def RemoveUserFromGroup(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name", "user_name"))
        await self._e.remove_user_from_group(_name(a, "group_name", "group name"), _user(a))
        return {}

    async def ListGroupsForUser(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("user_name",))
        return {"Groups": await self._e.list_groups_for_user(_user(a))}

    async def PutGroupPolicy(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name", "policy_name", "policy_document"))
        await self._e.put_group_policy(_name(a, "group_name", "group name"), _name(a, "policy_name", "policy name"),
                                       a.str("policy_document", max_len=MAX_POLICY_TEXT))
        return {}

    async def GetGroupPolicy(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name", "policy_name"))
        return await self._e.get_group_policy(_name(a, "group_name", "group name"),
                                              _name(a, "policy_name", "policy name"))

    async def ListGroupPolicies(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name",))
        return {"PolicyNames": await self._e.list_group_policies(_name(a, "group_name", "group name"))}

    async def DeleteGroupPolicy(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name", "policy_name"))
        await self._e.delete_group_policy(_name(a, "group_name", "group name"),
                                          _name(a, "policy_name", "policy name"))
        return {}

    # -- attachments -------------------------------------------------------------------------
    async def AttachUserPolicy(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("user_name", "policy_arn"))
        await self._e.attach("user", _user(a), self._arn(a))
        return {}

    async def DetachUserPolicy(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("user_name", "policy_arn"))
        await self._e.detach("user", _user(a), self._arn(a))
        return {}

    async def ListAttachedUserPolicies(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("user_name",))
        return {"AttachedPolicies": await self._e.list_attached("user", _user(a))}

    async def AttachGroupPolicy(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name", "policy_arn"))
        await self._e.attach("group", _name(a, "group_name", "group name"), self._arn(a))
        return {}

    async def DetachGroupPolicy(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name", "policy_arn"))
        await self._e.detach("group", _name(a, "group_name", "group name"), self._arn(a))
        return {}

    async def ListAttachedGroupPolicies(self, call: Call) -> dict[str, Any]:
        a = self._args(call, ("group_name",))
        return {"AttachedPolicies": await self._e.list_attached("group", _name(a, "group_name", "group name"))}
