"""The IAM query protocol at the gateway (``boto3.client("iam")``, ``aws iam ...``).

Table-driven: ``OPS`` maps each IAM action to the coordinator RPC method (same name), the
query parameters it takes (and their RPC argument names), and the resource the caller's
policies are evaluated against (``iam:<Action>`` on a user, group or policy ARN). Results come
back from the coordinator in the AWS shapes and are rendered generically (``_xml``): lists as
``<member>`` items, times as ISO 8601, policy documents URL-encoded as IAM does (botocore
decodes them). Pagination parameters are accepted; every list is returned whole
(``IsTruncated`` false).

Any successful change invalidates this gateway's cached auth contexts, so a policy change made
here applies to the next request; other gateways see it within ``auth_cache_s``.
A coordinator that cannot be reached is ``ServiceFailure`` (503).
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from gateway.auth import Identity, allowed, request_context
from gateway.backend import Backend
from gateway.errors import iam_error_xml
from gateway.http import HttpRequest, HttpResponse
from gateway.xmlbuild import escape_text
from proto import errors as rpc_errors
from proto.names import iam_user_arn

IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
XML = ("content-type", "text/xml")
MAX_PARAMS = 64

# query parameter -> (rpc argument, type)
_P = {
    "UserName": ("user_name", str), "Path": ("path", str), "PolicyName": ("policy_name", str),
    "PolicyDocument": ("policy_document", str), "AccessKeyId": ("access_key_id", str),
    "GroupName": ("group_name", str), "PolicyArn": ("policy_arn", str), "VersionId": ("version_id", str),
    "SetAsDefault": ("set_as_default", bool), "Description": ("description", str),
    "Scope": ("scope", str), "OnlyAttached": ("only_attached", bool), "PathPrefix": ("path_prefix", str),
}
_PAGING = ("Marker", "MaxItems", "PolicyUsageFilter")

# action -> (parameters, resource kind, mutates)
OPS: dict[str, tuple[tuple[str, ...], str, bool]] = {
    "CreateUser": (("UserName", "Path"), "user", True),
    "GetUser": (("UserName",), "user", False),
    "ListUsers": ((), "users", False),
    "DeleteUser": (("UserName",), "user", True),
    "CreateAccessKey": (("UserName",), "user", True),
    "ListAccessKeys": (("UserName",), "user", False),
    "DeleteAccessKey": (("UserName", "AccessKeyId"), "user", True),
    "PutUserPolicy": (("UserName", "PolicyName", "PolicyDocument"), "user", True),
    "GetUserPolicy": (("UserName", "PolicyName"), "user", False),
    "ListUserPolicies": (("UserName",), "user", False),
    "DeleteUserPolicy": (("UserName", "PolicyName"), "user", True),
    "CreatePolicy": (("PolicyName", "PolicyDocument", "Path", "Description"), "new-policy", True),
    "GetPolicy": (("PolicyArn",), "policy", False),
    "ListPolicies": (("Scope", "OnlyAttached", "PathPrefix"), "policies", False),
    "DeletePolicy": (("PolicyArn",), "policy", True),
    "CreatePolicyVersion": (("PolicyArn", "PolicyDocument", "SetAsDefault"), "policy", True),
    "GetPolicyVersion": (("PolicyArn", "VersionId"), "policy", False),
    "ListPolicyVersions": (("PolicyArn",), "policy", False),
    "SetDefaultPolicyVersion": (("PolicyArn", "VersionId"), "policy", True),
    "DeletePolicyVersion": (("PolicyArn", "VersionId"), "policy", True),
    "CreateGroup": (("GroupName", "Path"), "group", True),
    "GetGroup": (("GroupName",), "group", False),
    "ListGroups": ((), "groups", False),
    "DeleteGroup": (("GroupName",), "group", True),
    "AddUserToGroup": (("GroupName", "UserName"), "group", True),
    "RemoveUserFromGroup": (("GroupName", "UserName"), "group", True),
    "ListGroupsForUser": (("UserName",), "user", False),
    "PutGroupPolicy": (("GroupName", "PolicyName", "PolicyDocument"), "group", True),
    "GetGroupPolicy": (("GroupName", "PolicyName"), "group", False),
    "ListGroupPolicies": (("GroupName",), "group", False),
    "DeleteGroupPolicy": (("GroupName", "PolicyName"), "group", True),
    "AttachUserPolicy": (("UserName", "PolicyArn"), "user", True),
    "DetachUserPolicy": (("UserName", "PolicyArn"), "user", True),
    "ListAttachedUserPolicies": (("UserName",), "user", False),
    "AttachGroupPolicy": (("GroupName", "PolicyArn"), "group", True),
    "DetachGroupPolicy": (("GroupName", "PolicyArn"), "group", True),
    "ListAttachedGroupPolicies": (("GroupName",), "group", False),
}
# actions that default UserName to the caller, as AWS does
_SELF_DEFAULT = {"GetUser", "ListAccessKeys", "CreateAccessKey"}
_STATUS = {"NoSuchEntity": 404, "EntityAlreadyExists": 409, "DeleteConflict": 409, "LimitExceeded": 409}
_DOCUMENTS = {"PolicyDocument", "Document"}


class _ParamError(Exception):
    pass


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _xml(key: str, value: Any) -> str:
    """One result field as IAM query XML."""
    if isinstance(value, list):
        inner = "".join(f"<member>{_inner(key, v)}</member>" for v in value)
    else:
        inner = _inner(key, value)
    return f"<{key}>{inner}</{key}>"


def _inner(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return "".join(_xml(k, v) for k, v in value.items() if v is not None)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and key.endswith("Date"):
        return _iso(value)
    if key in _DOCUMENTS:
        return escape_text(quote(str(value), safe=""))
    return escape_text(str(value))


def _resource(kind: str, params: dict[str, str], account: str) -> str:
    base = f"arn:aws:iam::{account}:"
    if kind == "user":
        return iam_user_arn(account, params["UserName"])
    if kind == "group":
        return f"{base}group/{params['GroupName']}"
    if kind == "policy":
        return params["PolicyArn"]
    if kind == "new-policy":
        return f"{base}policy{params.get('Path') or '/'}{params['PolicyName']}"
    return {"users": f"{base}user/*", "groups": f"{base}group/*", "policies": f"{base}policy/*"}[kind]


def _args(action: str, names: tuple[str, ...], params: dict[str, str]) -> dict[str, Any]:
    allowed_names = set(names) | set(_PAGING) | {"Action", "Version"}
    unknown = sorted(set(params) - allowed_names)
    if unknown:
        raise _ParamError(f"{action} does not take the parameter(s) {', '.join(unknown)}.")
    for p in ("MaxItems",):
        if p in params and not (params[p].isdigit() and 1 <= int(params[p]) <= 1000):
            raise _ParamError(f"{p} must be an integer between 1 and 1000.")
    out: dict[str, Any] = {}
    for name in names:
        if name not in params:
            continue
        arg, typ = _P[name]
        value = params[name]
        if typ is bool:
            if value not in ("true", "false"):
                raise _ParamError(f"{name} must be true or false.")
            out[arg] = value == "true"
        else:
            out[arg] = value
    return out


def _error(code: str, message: str, status: int, request_id: str) -> HttpResponse:
    return HttpResponse(status, [XML], iam_error_xml(code, message, request_id, sender=status < 500))


def _from_rpc(exc: rpc_errors.RpcError, request_id: str) -> HttpResponse:
    if isinstance(exc, (rpc_errors.Unavailable, rpc_errors.DeadlineExceeded)):
        return _error("ServiceFailure", "The IAM control plane (coordinator) is unavailable; "
                      f"retry later. ({exc.message})", 503, request_id)
    if isinstance(exc, rpc_errors.Internal):
        return _error("ServiceFailure", "The request failed because of an internal error.", 500, request_id)
    code = exc.kind or "ValidationError"
    if code == "InvalidAccessKeyId":
        code = "NoSuchEntity"
    if isinstance(exc, rpc_errors.AccessDenied):
        code, status = "AccessDenied", 403
    else:
        status = _STATUS.get(code, 404 if isinstance(exc, rpc_errors.NotFound) else 400)
    return _error(code, exc.message, status, request_id)


async def iam_query(req: HttpRequest, ident: Identity, body: bytes, backend: Backend, *, account: str,
                    now: float, request_id: str) -> HttpResponse:
    """Serve one IAM query-protocol request (already authenticated)."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_PARAMS)
    except (UnicodeDecodeError, ValueError):
        return _error("MalformedInput", "The body is not a valid form-encoded query.", 400, request_id)
    params = dict(pairs)
    if len(params) != len(pairs):
        return _error("MalformedInput", "A query parameter is repeated.", 400, request_id)
    action = params.get("Action", "")
    if action not in OPS:
        return _error("InvalidAction", f"Could not find operation {action}.", 400, request_id)
    names, kind, mutates = OPS[action]
    if action in _SELF_DEFAULT and not params.get("UserName"):
        params["UserName"] = ident.context.user_name
    for required in {"user": ("UserName",), "group": ("GroupName",), "policy": ("PolicyArn",),
                     "new-policy": ("PolicyName",)}.get(kind, ()):
        if not params.get(required):
            return _error("ValidationError", f"{required} is required.", 400, request_id)
    try:
        args = _args(action, names, params)
    except _ParamError as exc:
        return _error("ValidationError", str(exc), 400, request_id)
    resource = _resource(kind, params, account)
    if not allowed(ident, "iam:" + action, resource, request_context(req, ident, now)):
        return _error("AccessDenied", f"User: {ident.context.user_arn} is not authorized to perform: "
                      f"iam:{action} on resource: {resource}", 403, request_id)
    try:
        result = await backend.coord(action, args)
    except rpc_errors.RpcError as exc:
        return _from_rpc(exc, request_id)
    if mutates:
        backend.forget_auth_contexts()
    inner = "".join(_xml(k, v) for k, v in result.items() if v is not None)
    if action.startswith("List") or action == "GetGroup":
        inner += "<IsTruncated>false</IsTruncated>"
    doc = (f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{IAM_NS}">'
           f"{f'<{action}Result>{inner}</{action}Result>' if inner else ''}"
           f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>")
    return HttpResponse(200, [XML], doc.encode())
