"""The two non-S3 AWS protocols the gateway speaks: KMS (JSON 1.1) and IAM (query).

So ``aws --endpoint-url $EP kms create-key`` and ``boto3.client("iam", endpoint_url=EP)`` work
against a local cluster. Both are thin translations: parse the AWS request, authorize it
against the caller's IAM policies, forward over RPC (KMS daemon / coordinator), and render the
reply in the AWS shape. Errors keep the AWS codes (``NotFoundException``, ``NoSuchEntity``...).
The KMS protocol lives in ``gateway.kms_api`` (re-exported here); this module holds IAM.
"""

from __future__ import annotations

import datetime
import json
from typing import Any
from urllib.parse import parse_qsl, quote

from gateway.auth import Identity, allowed, request_context
from gateway.backend import Backend
from gateway.errors import iam_error_xml
from gateway.kms_api import KMS_JSON, kms_json
from gateway.http import HttpRequest, HttpResponse
from gateway.xmlbuild import escape_text
from proto import errors as rpc_errors
from proto.names import iam_user_arn

__all__ = ["KMS_JSON", "iam_query", "kms_json"]
IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _rpc_to_api(exc: rpc_errors.RpcError, default: str) -> ApiError:
    status = 500 if isinstance(exc, rpc_errors.Internal) else 503 if isinstance(exc, rpc_errors.Unavailable) else 400
    if isinstance(exc, rpc_errors.NotFound) and default == "NoSuchEntity":
        status = 404
    if isinstance(exc, rpc_errors.Conflict) and default == "NoSuchEntity":
        status = 409
    code = exc.kind or ("AccessDeniedException" if isinstance(exc, rpc_errors.AccessDenied) else default)
    if isinstance(exc, rpc_errors.Unavailable):
        code = "KMSInternalException" if default != "NoSuchEntity" else "ServiceFailure"
    return ApiError(code, exc.message, status)


# -- IAM -----------------------------------------------------------------------------------
def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _el(tag: str, value: Any) -> str:
    if isinstance(value, float) and tag.endswith("Date"):
        value = _iso(value)
    return f"<{tag}>{escape_text(str(value))}</{tag}>"


def _user_xml(u: dict[str, Any]) -> str:
    return "".join(_el(k, u[k]) for k in ("Path", "UserName", "UserId", "Arn", "CreateDate") if k in u)


def _key_xml(k: dict[str, Any]) -> str:
    return "".join(_el(n, k[n]) for n in ("UserName", "AccessKeyId", "Status", "SecretAccessKey", "CreateDate") if n in k)


IAM_OPS: dict[str, tuple[str, bool]] = {  # action -> (rpc method, needs a user name)
    "CreateUser": ("CreateUser", True), "GetUser": ("GetUser", True), "ListUsers": ("ListUsers", False),
    "DeleteUser": ("DeleteUser", True), "CreateAccessKey": ("CreateAccessKey", True),
    "ListAccessKeys": ("ListAccessKeys", True), "DeleteAccessKey": ("DeleteAccessKey", True),
    "PutUserPolicy": ("PutUserPolicy", True), "GetUserPolicy": ("GetUserPolicy", True),
    "ListUserPolicies": ("ListUserPolicies", True), "DeleteUserPolicy": ("DeleteUserPolicy", True),
}


def _iam_result(action: str, r: dict[str, Any]) -> str:
    if action in ("CreateUser", "GetUser"):
        return f"<User>{_user_xml(r['User'])}</User>"
    if action == "ListUsers":
        members = "".join(f"<member>{_user_xml(u)}</member>" for u in r["Users"])
        return f"<Users>{members}</Users><IsTruncated>false</IsTruncated>"
    if action == "CreateAccessKey":
        return f"<AccessKey>{_key_xml(r['AccessKey'])}</AccessKey>"
    if action == "ListAccessKeys":
        members = "".join(f"<member>{_key_xml(k)}</member>" for k in r["AccessKeyMetadata"])
        return f"<AccessKeyMetadata>{members}</AccessKeyMetadata><IsTruncated>false</IsTruncated>"
    if action == "GetUserPolicy":
        # IAM returns the document URL-encoded; botocore decodes it
        return (_el("UserName", r["UserName"]) + _el("PolicyName", r["PolicyName"])
                + _el("PolicyDocument", quote(r["PolicyDocument"], safe="")))
    if action == "ListUserPolicies":
        members = "".join(f"<member>{escape_text(n)}</member>" for n in r["PolicyNames"])
        return f"<PolicyNames>{members}</PolicyNames><IsTruncated>false</IsTruncated>"
    return ""


async def iam_query(req: HttpRequest, ident: Identity, body: bytes, backend: Backend, *, account: str,
                    now: float, request_id: str) -> HttpResponse:
    xml = ("content-type", "text/xml")
    try:
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return HttpResponse(400, [xml], iam_error_xml("MalformedInput", "Body is not UTF-8.", request_id))
    action = params.get("Action", "")
    if action not in IAM_OPS:
        return HttpResponse(400, [xml], iam_error_xml("InvalidAction", f"Could not find operation {action}.", request_id))
    method, needs_user = IAM_OPS[action]
    user = params.get("UserName") or (ident.context.user_name if action in ("ListAccessKeys", "CreateAccessKey", "GetUser") else "")
    if needs_user and not user:
        return HttpResponse(400, [xml], iam_error_xml("ValidationError", "UserName is required.", request_id))
    resource = iam_user_arn(account, user) if user else f"arn:aws:iam::{account}:user/*"
    if not allowed(ident, "iam:" + action, resource, request_context(req, ident, now)):
        msg = f"User: {ident.context.user_arn} is not authorized to perform: iam:{action} on resource: {resource}"
        return HttpResponse(403, [xml], iam_error_xml("AccessDenied", msg, request_id))
    args: dict[str, Any] = {}
    if user:
        args["user_name"] = user
    for param, arg in (("Path", "path"), ("PolicyName", "policy_name"), ("PolicyDocument", "policy_document"),
                       ("AccessKeyId", "access_key_id")):
        if param in params:
            args[arg] = params[param]
    try:
        r = await backend.coord(method, args)
    except rpc_errors.RpcError as exc:
        err = _rpc_to_api(exc, "NoSuchEntity")
        if err.code == "InvalidAccessKeyId":
            err.code = "NoSuchEntity"
        return HttpResponse(err.status, [xml], iam_error_xml(err.code, err.message, request_id,
                                                             sender=err.status < 500))
    inner = _iam_result(action, r)
    result = f"<{action}Result>{inner}</{action}Result>" if inner else ""
    doc = (f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{IAM_NS}">{result}'
           f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>")
    return HttpResponse(200, [xml], doc.encode())
