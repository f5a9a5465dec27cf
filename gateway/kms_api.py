"""The AWS KMS JSON 1.1 protocol at the gateway: every operation the KMS daemon serves.

So ``aws --endpoint-url $EP kms ...`` and ``boto3.client("kms", endpoint_url=EP)`` work. For
each request: parse the JSON body (fields checked against the operation's list), authorize it
against the caller's IAM policies (action ``kms:<Operation>``, resource the key's ARN, after
resolving an alias through the KMS; ``*`` for CreateKey, ListKeys, ListAliases,
GenerateRandom), then forward it over RPC with ``caller`` = the user's ARN, so the KMS checks
the key policy for that user and audits the call in the user's name. Both must allow.
Binary fields (Plaintext, CiphertextBlob) are base64 in JSON and bytes over RPC. Errors keep
AWS's exception names (``NotFoundException``, ``DisabledException``...).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from gateway.auth import Identity, allowed, request_context
from gateway.backend import Backend
from gateway.errors import kms_error_json
from gateway.http import HttpRequest, HttpResponse
from proto import errors as rpc_errors
from proto.kmsblob import blob_key
from proto.names import InvalidName, KeyRefKind, kms_key_arn, parse_kms_key_ref

__all__ = ["KMS_JSON", "OPERATIONS", "kms_json"]

KMS_JSON = ("content-type", "application/x-amz-json-1.1")

# JSON field -> RPC argument; "b64" fields are base64 text in JSON.
_FIELDS = {
    "KeyId": "key_id", "Description": "description", "Tags": "tags", "Policy": "policy",
    "BypassPolicyLockoutSafetyCheck": "bypass_policy_lockout_safety_check", "Limit": "limit",
    "Marker": "marker", "EncryptionContext": "encryption_context", "NumberOfBytes": "number_of_bytes",
    "Plaintext": "plaintext", "CiphertextBlob": "ciphertext_blob",
    "SourceEncryptionContext": "source_encryption_context", "SourceKeyId": "source_key_id",
    "DestinationKeyId": "destination_key_id", "DestinationEncryptionContext": "destination_encryption_context",
    "AliasName": "alias_name", "TargetKeyId": "target_key_id", "PendingWindowInDays": "pending_window_in_days",
    "RotationPeriodInDays": "rotation_period_in_days", "PolicyName": "policy_name", "TagKeys": "tag_keys",
}
_B64 = {"Plaintext", "CiphertextBlob"}
# Accepted with their only supported value (or ignored: GrantTokens).
_FIXED = {"KeySpec": ("SYMMETRIC_DEFAULT", "AES_256", "AES_128"), "CustomerMasterKeySpec": ("SYMMETRIC_DEFAULT",),
          "KeyUsage": ("ENCRYPT_DECRYPT",), "Origin": ("AWS_KMS",), "MultiRegion": (False,),
          "EncryptionAlgorithm": ("SYMMETRIC_DEFAULT",), "SourceEncryptionAlgorithm": ("SYMMETRIC_DEFAULT",),
          "DestinationEncryptionAlgorithm": ("SYMMETRIC_DEFAULT",), "DryRun": (False,)}

_KEY = ("KeyId",)
_PAGE = ("Limit", "Marker")
_CTX = ("EncryptionContext", "GrantTokens")
# operation -> (accepted JSON fields, the field naming the key the IAM check is on, or None for "*")
OPERATIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "CreateKey": (("Description", "Tags", "Policy", "BypassPolicyLockoutSafetyCheck", "KeySpec",
                   "CustomerMasterKeySpec", "KeyUsage", "Origin", "MultiRegion"), None),
    "DescribeKey": ((*_KEY, "GrantTokens"), "KeyId"),
    "ListKeys": (_PAGE, None),
    "EnableKey": (_KEY, "KeyId"), "DisableKey": (_KEY, "KeyId"),
    "ScheduleKeyDeletion": ((*_KEY, "PendingWindowInDays"), "KeyId"),
    "CancelKeyDeletion": (_KEY, "KeyId"),
    "EnableKeyRotation": ((*_KEY, "RotationPeriodInDays"), "KeyId"),
    "DisableKeyRotation": (_KEY, "KeyId"), "GetKeyRotationStatus": (_KEY, "KeyId"),
    "RotateKeyOnDemand": (_KEY, "KeyId"), "ListKeyRotations": ((*_KEY, *_PAGE), "KeyId"),
    "GenerateDataKey": ((*_KEY, *_CTX, "NumberOfBytes", "KeySpec", "DryRun"), "KeyId"),
    "GenerateDataKeyWithoutPlaintext": ((*_KEY, *_CTX, "NumberOfBytes", "KeySpec", "DryRun"), "KeyId"),
    "Encrypt": ((*_KEY, *_CTX, "Plaintext", "EncryptionAlgorithm", "DryRun"), "KeyId"),
    "Decrypt": ((*_KEY, *_CTX, "CiphertextBlob", "EncryptionAlgorithm", "DryRun"), "CiphertextBlob"),
    "ReEncrypt": (("CiphertextBlob", "SourceEncryptionContext", "SourceKeyId", "DestinationKeyId",
                   "DestinationEncryptionContext", "SourceEncryptionAlgorithm", "DestinationEncryptionAlgorithm",
                   "GrantTokens", "DryRun"), "DestinationKeyId"),
    "GenerateRandom": (("NumberOfBytes",), None),
    "GetKeyPolicy": ((*_KEY, "PolicyName"), "KeyId"),
    "PutKeyPolicy": ((*_KEY, "PolicyName", "Policy", "BypassPolicyLockoutSafetyCheck"), "KeyId"),
    "TagResource": ((*_KEY, "Tags"), "KeyId"), "UntagResource": ((*_KEY, "TagKeys"), "KeyId"),
    "ListResourceTags": ((*_KEY, *_PAGE), "KeyId"),
    "CreateAlias": (("AliasName", "TargetKeyId"), "TargetKeyId"),
    "UpdateAlias": (("AliasName", "TargetKeyId"), "TargetKeyId"),
    "DeleteAlias": (("AliasName",), "AliasName"),
    "ListAliases": ((*_KEY, *_PAGE), None),
}
_OP_RE = re.compile(r"TrentService\.([A-Za-z]{1,64})")


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _from_rpc(exc: rpc_errors.RpcError) -> ApiError:
    if isinstance(exc, (rpc_errors.Unavailable, rpc_errors.DeadlineExceeded)):
        return ApiError("KMSInternalException", f"The KMS is unavailable, retry later: {exc.message}", 503)
    if isinstance(exc, rpc_errors.Internal) or not exc.kind:
        code = "AccessDeniedException" if isinstance(exc, rpc_errors.AccessDenied) else "KMSInternalException"
        return ApiError(code, exc.message, 400 if code == "AccessDeniedException" else 500)
    return ApiError(exc.kind, exc.message, 400)


def _args(op: str, doc: dict[str, Any], caller: str) -> dict[str, Any]:
    fields, _ = OPERATIONS[op]
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise ApiError("ValidationException", f"{op} does not take {', '.join(unknown)}.")
    args: dict[str, Any] = {"caller": caller}
    for name, value in doc.items():
        if name == "GrantTokens" or value is None:
            continue
        if name in _FIXED and not (name == "KeySpec" and op.startswith("GenerateDataKey")):
            if value not in _FIXED[name] or (name == "KeySpec" and value != "SYMMETRIC_DEFAULT"):
                raise ApiError("UnsupportedOperationException",
                               f"{name}={value!r} is not supported: onezone keys are SYMMETRIC_DEFAULT.")
            continue
        if name == "KeySpec":
            if "NumberOfBytes" in doc:
                raise ApiError("ValidationException", "Give KeySpec or NumberOfBytes, not both.")
            if value not in ("AES_256", "AES_128"):
                raise ApiError("ValidationException", "KeySpec must be AES_256 or AES_128.")
            args["number_of_bytes"] = 32 if value == "AES_256" else 16
            continue
        if name in _B64:
            if not isinstance(value, str):
                raise ApiError("ValidationException", f"{name} must be base64 text.")
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError("ValidationException", f"{name} is not valid base64.") from None
        args[_FIELDS[name]] = value
    return args


async def _key_arn(ref: Any, backend: Backend, caller: str, region: str, account: str) -> str:
    """The ARN an IAM check is on: a key id or ARN directly, an alias through the KMS."""
    if not isinstance(ref, str) or not ref:
        raise ApiError("ValidationException", "A key id is required.")
    try:
        parsed = parse_kms_key_ref(ref)
    except InvalidName as exc:
        raise ApiError("NotFoundException", exc.message) from None
    if parsed.kind is KeyRefKind.KEY_ID:
        return kms_key_arn(region, account, ref)
    if parsed.kind is KeyRefKind.KEY_ARN:
        return ref
    meta = await backend.kms.call("DescribeKey", {"key_id": ref, "caller": caller}, timeout_s=backend.timeout_s)
    return str(meta["KeyMetadata"]["Arn"])


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


async def _authorize(op: str, doc: dict[str, Any], args: dict[str, Any], ident: Identity, backend: Backend,
                     ctx: dict[str, Any], region: str, account: str) -> None:
    caller = ident.context.user_arn
    checks: list[tuple[str, str]] = []
    _, key_field = OPERATIONS[op]
    if key_field is None:
        checks.append((f"kms:{op}", "*"))
    elif op == "Decrypt" and "KeyId" not in doc:
        found = blob_key(args.get("ciphertext_blob", b""))
        if found is None:
            raise ApiError("InvalidCiphertextException", "The ciphertext is invalid.")
        checks.append(("kms:Decrypt", kms_key_arn(region, account, found[0])))
    elif op == "ReEncrypt":
        src = doc.get("SourceKeyId")
        found = blob_key(args.get("ciphertext_blob", b""))
        if src is None and found is None:
            raise ApiError("InvalidCiphertextException", "The ciphertext is invalid.")
        src_arn = (await _key_arn(src, backend, caller, region, account) if src is not None
                   else kms_key_arn(region, account, found[0]))  # type: ignore[index]
        checks += [("kms:ReEncryptFrom", src_arn),
                   ("kms:ReEncryptTo", await _key_arn(doc.get(key_field), backend, caller, region, account))]
    else:
        ref = doc.get("KeyId") if op == "Decrypt" else doc.get(key_field)
        checks.append((f"kms:{op}", await _key_arn(ref, backend, caller, region, account)))
        if op in ("CreateAlias", "UpdateAlias") and isinstance(doc.get("AliasName"), str):
            checks.append((f"kms:{op}", f"arn:aws:kms:{region}:{account}:{doc['AliasName']}"))
    for action, resource in checks:
        if not allowed(ident, action, resource, ctx):
            raise ApiError("AccessDeniedException",
                           f"User: {caller} is not authorized to perform: {action} on resource: {resource}")


async def kms_json(req: HttpRequest, ident: Identity, body: bytes, backend: Backend, *, region: str,
                   account: str, now: float) -> HttpResponse:
    """Serve one KMS JSON request (``X-Amz-Target: TrentService.<Operation>``)."""
    match = _OP_RE.fullmatch(req.header("x-amz-target") or "")
    op = match.group(1) if match else ""
    try:
        if op not in OPERATIONS:
            raise ApiError("UnsupportedOperationException", f"onezone's KMS does not support {op or 'this operation'}.")
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            raise ApiError("SerializationException", "The request body is not valid JSON.") from None
        if not isinstance(doc, dict):
            raise ApiError("SerializationException", "The request body must be a JSON object.")
        args = _args(op, doc, ident.context.user_arn)
        await _authorize(op, doc, args, ident, backend, request_context(req, ident, now), region, account)
        result = await backend.kms.call(op, args, timeout_s=backend.timeout_s)
    except ApiError as exc:
        return HttpResponse(exc.status, [KMS_JSON], kms_error_json(exc.code, exc.message))
    except rpc_errors.RpcError as exc:
        err = _from_rpc(exc)
        return HttpResponse(err.status, [KMS_JSON], kms_error_json(err.code, err.message))
    return HttpResponse(200, [KMS_JSON], json.dumps(_encode(result), separators=(",", ":")).encode())
