"""The KMS JSON 1.1 protocol at the gateway (the IAM query protocol is ``gateway.iam_api``).

So ``aws --endpoint-url $EP kms create-key`` works against a local cluster: a thin
translation that parses the AWS request, authorizes it against the caller's IAM policies,
forwards it over RPC to the KMS daemon, and renders the reply in the AWS shape. Errors keep the
AWS codes (``NotFoundException``...).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.auth import Identity, allowed, request_context
from gateway.backend import Backend
from gateway.errors import kms_error_json
from gateway.http import HttpRequest, HttpResponse
from proto import errors as rpc_errors
from proto.names import InvalidName, kms_key_arn, parse_kms_key_ref

KMS_JSON = ("content-type", "application/x-amz-json-1.1")


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


# -- KMS -----------------------------------------------------------------------------------
def _kms_resource(key_id: Any, region: str, account: str) -> str:
    if not isinstance(key_id, str) or not key_id:
        raise ApiError("ValidationException", "KeyId is required.")
    try:
        ref = parse_kms_key_ref(key_id)
    except InvalidName as exc:
        raise ApiError("NotFoundException", exc.message) from None
    if ref.kind.name == "KEY_ID":
        return kms_key_arn(region, account, ref.key_id)
    if ref.kind.name == "KEY_ARN":
        return key_id
    raise ApiError("NotFoundException", "Aliases are not supported yet by onezone's KMS.")


async def kms_json(req: HttpRequest, ident: Identity, body: bytes, backend: Backend, *, region: str,
                   account: str, now: float) -> HttpResponse:
    op = (req.header("x-amz-target") or "").partition(".")[2]
    try:
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            raise ApiError("SerializationException", "The request body is not valid JSON.") from None
        if not isinstance(doc, dict):
            raise ApiError("SerializationException", "The request body must be a JSON object.")
        ctx = request_context(req, ident, now)
        if op == "CreateKey":
            _kms_authorize(ident, "kms:CreateKey", "*", ctx)
            args = {"description": doc.get("Description", ""), "tags": doc.get("Tags", []),
                    "caller": ident.context.user_arn}
            for unsupported in ("KeySpec", "CustomerMasterKeySpec"):
                if doc.get(unsupported, "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
                    raise ApiError("UnsupportedOperationException", "Only SYMMETRIC_DEFAULT keys are supported.")
            if doc.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT":
                raise ApiError("UnsupportedOperationException", "Only ENCRYPT_DECRYPT keys are supported.")
            result = await backend.kms.call("CreateKey", args)
        elif op == "DescribeKey":
            arn = _kms_resource(doc.get("KeyId"), region, account)
            _kms_authorize(ident, "kms:DescribeKey", arn, ctx)
            result = await backend.kms.call("DescribeKey", {"key_id": doc["KeyId"]})
        elif op == "ListKeys":
            _kms_authorize(ident, "kms:ListKeys", "*", ctx)
            args = {}
            if "Limit" in doc:
                args["limit"] = doc["Limit"]
            if "Marker" in doc:
                args["marker"] = doc["Marker"]
            result = await backend.kms.call("ListKeys", args)
        else:
            raise ApiError("UnsupportedOperationException", f"onezone's KMS does not support {op or 'this operation'} yet.")
    except ApiError as exc:
        return HttpResponse(exc.status, [KMS_JSON], kms_error_json(exc.code, exc.message))
    except rpc_errors.RpcError as exc:
        err = _rpc_to_api(exc, "KMSInternalException")
        return HttpResponse(err.status, [KMS_JSON], kms_error_json(err.code, err.message))
    return HttpResponse(200, [KMS_JSON], json.dumps(result, separators=(",", ":")).encode())


def _kms_authorize(ident: Identity, action: str, resource: str, ctx: dict[str, Any]) -> None:
    if not allowed(ident, action, resource, ctx):
        raise ApiError("AccessDeniedException",
                       f"User: {ident.context.user_arn} is not authorized to perform: {action} on resource: {resource}")
