"""The KMS audit log: one CloudTrail-shaped JSON line per request.

Responsibility
--------------
Describe every KMS request, allowed or refused, as a CloudTrail record (``format_record``,
pure: the caller supplies time and ids; ``encode_event`` is its fast JSON line). The file
itself, written by group commit, is ``kms.auditlog.AuditLog``.

Invariants
----------
- No secret ever reaches a record: ``request_parameters`` copies an allow-list of argument
  names per operation (key id, encryption context, byte counts, description, tags, paging)
  and never ``plaintext`` or ``ciphertext_blob``; ``responseElements`` carries only the key
  id. Encryption context is logged, as AWS CloudTrail does: it is not secret by contract.
- Values from the request are logged only when they have the expected type, and strings are
  truncated, so a hostile caller cannot bloat or corrupt the log.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


EVENT_VERSION = "1.08"
EVENT_SOURCE = "kms.amazonaws.com"
MAX_STRING = 2048
MAX_CONTEXT_PAIRS = 64
# Operations that change nothing, as CloudTrail marks them.
READ_ONLY = frozenset({"DescribeKey", "ListKeys", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                       "Encrypt", "Decrypt", "ReEncrypt", "GenerateRandom", "ListAliases", "GetKeyPolicy",
                       "GetKeyRotationStatus", "ListKeyRotations", "ListResourceTags", "KeyStateChanges"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """What happened in one request, as the handler layer knows it."""

    operation: str
    principal: str
    region: str
    account_id: str
    time: float
    request_id: str
    event_id: str
    source: str = ""
    caller: str | None = None
    request_parameters: Mapping[str, Any] | None = None
    key_arn: str | None = None
    error_code: str | None = None
    error_message: str | None = None


def _trunc(value: str) -> str:
    return value if len(value) <= MAX_STRING else value[:MAX_STRING] + "..."


def _context(value: Any) -> dict[str, str] | None:
    if not isinstance(value, Mapping) or len(value) > MAX_CONTEXT_PAIRS:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return {_trunc(k): _trunc(v) for k, v in value.items()}


def _tags(value: Any) -> list[dict[str, str]] | None:
    if not isinstance(value, list) or len(value) > 50:
        return None
    out = []
    for tag in value:
        if not isinstance(tag, Mapping):
            return None
        k, v = tag.get("TagKey"), tag.get("TagValue")
        if not isinstance(k, str) or not isinstance(v, str):
            return None
        out.append({"tagKey": _trunc(k), "tagValue": _trunc(v)})
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _string(value: Any) -> str | None:
    return _trunc(value) if isinstance(value, str) else None


# arg name -> (CloudTrail name, sanitizer). Anything not listed is never logged.
_PARAMS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "key_id": ("keyId", _string),
    "encryption_context": ("encryptionContext", _context),
    "number_of_bytes": ("numberOfBytes", _int),
    "description": ("description", _string),
    "tags": ("tags", _tags),
    "limit": ("limit", _int),
    "marker": ("marker", _string),
    "alias": ("alias", _string),
    "alias_name": ("aliasName", _string),
    "target_key_id": ("targetKeyId", _string),
    "source_key_id": ("sourceKeyId", _string),
    "destination_key_id": ("destinationKeyId", _string),
    "source_encryption_context": ("sourceEncryptionContext", _context),
    "destination_encryption_context": ("destinationEncryptionContext", _context),
    "pending_window_in_days": ("pendingWindowInDays", _int),
    "rotation_period_in_days": ("rotationPeriodInDays", _int),
    "policy_name": ("policyName", _string),
    "policy": ("policy", _string),
    "bypass_policy_lockout_safety_check": ("bypassPolicyLockoutSafetyCheck",
                                           lambda v: v if isinstance(v, bool) else None),
    "tag_keys": ("tagKeys", lambda v: [_trunc(k) for k in v[:50] if isinstance(k, str)]
                 if isinstance(v, list) else None),
}
_FIXED: dict[str, dict[str, str]] = {
    "CreateKey": {"keyUsage": "ENCRYPT_DECRYPT", "keySpec": "SYMMETRIC_DEFAULT"},
    "Encrypt": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
    "Decrypt": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
    "ReEncrypt": {"sourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                  "destinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT"},
}


def request_parameters(operation: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The loggable part of a request's arguments (never plaintext or blobs).

    Args:
        operation: the KMS operation name.
        args: the raw RPC arguments, possibly invalid.

    Returns:
        CloudTrail ``requestParameters``: known, well-typed, truncated values only.
    """
    out: dict[str, Any] = dict(_FIXED.get(operation, {}))
    if not isinstance(args, Mapping):
        return out
    for name, (trail_name, clean) in _PARAMS.items():
        if name in args:
            value = clean(args[name])
            if value is not None:
                out[trail_name] = value
    return out


_last_time: tuple[int, str] = (-1, "")


def format_time(epoch: float) -> str:
    """ISO 8601 UTC with a ``Z`` suffix, second precision, as CloudTrail writes it."""
    global _last_time
    second = int(epoch // 1)
    if _last_time[0] != second:  # one strftime per second, not per record
        _last_time = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _last_time[1]


class EventIds:
    """Unique, UUID-shaped CloudTrail ``eventID``s: a random (version 4) prefix drawn once, then a
    counter; unique within a process run and across runs (the prefix), and ~10x cheaper than a
    ``uuid4()`` per record."""

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:19]  # xxxxxxxx-xxxx-4xxx-
        self._next = 0

    def __call__(self) -> str:
        self._next += 1
        n = self._next
        return f"{self._prefix}{0x8000 | (n >> 48) & 0x3fff:04x}-{n & 0xffffffffffff:012x}"


def format_record(ev: AuditEvent) -> dict[str, Any]:
    """Build the CloudTrail record of one request.

    Args:
        ev: the request's facts.

    Returns:
        A JSON-serializable dict in the CloudTrail ``AwsApiCall`` shape.
    """
    identity: dict[str, Any] = {
        "type": "IAMUser" if ev.caller else "AWSService",
        "principalId": ev.principal,
        "accountId": ev.account_id,
    }
    if ev.caller:
        identity["arn"] = _trunc(ev.caller)
        identity["invokedBy"] = ev.principal
    record: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": identity,
        "eventTime": format_time(ev.time),
        "eventSource": EVENT_SOURCE,
        "eventName": ev.operation,
        "awsRegion": ev.region,
        "sourceIPAddress": ev.source or ev.principal,
        "userAgent": f"onezone/{ev.principal}",
        "requestParameters": dict(ev.request_parameters or {}),
        "responseElements": None,
        "requestID": ev.request_id,
        "eventID": ev.event_id,
        "readOnly": ev.operation in READ_ONLY,
        "resources": [],
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ev.account_id,
        "eventCategory": "Management",
    }
    if ev.key_arn:
        record["resources"] = [{"accountId": ev.account_id, "type": "AWS::KMS::Key", "ARN": ev.key_arn}]
    if ev.error_code:
        record["errorCode"] = ev.error_code
        record["errorMessage"] = _trunc(ev.error_message or "")
    elif ev.key_arn:
        record["responseElements"] = {"keyId": ev.key_arn}
    return record


# json.dumps builds a new encoder per call when given options: keep one (it is stateless)
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One JSON line (UTF-8, ending in a newline, no embedded newline)."""
    return _JSON(record).encode() + b"\n"


_str = json.encoder.encode_basestring  # the encoder json.dumps(ensure_ascii=False) uses (C)


def encode_event(ev: AuditEvent) -> bytes:
    """``encode_record(format_record(ev))``, byte for byte, without building the dict: the static
    parts of the record are literal text and only the request's values are encoded (this runs
    once per KMS request; tests check the two agree)."""
    principal, account = _str(ev.principal), _str(ev.account_id)
    if ev.caller:
        identity = (f'{{"type":"IAMUser","principalId":{principal},"accountId":{account},'
                    f'"arn":{_str(_trunc(ev.caller))},"invokedBy":{principal}}}')
    else:
        identity = f'{{"type":"AWSService","principalId":{principal},"accountId":{account}}}'
    params = _JSON(dict(ev.request_parameters or {}))
    arn = _str(ev.key_arn) if ev.key_arn else None
    resources = f'[{{"accountId":{account},"type":"AWS::KMS::Key","ARN":{arn}}}]' if arn else "[]"
    response = f'{{"keyId":{arn}}}' if arn and not ev.error_code else "null"
    line = (f'{{"eventVersion":"{EVENT_VERSION}","userIdentity":{identity},'
            f'"eventTime":"{format_time(ev.time)}","eventSource":"{EVENT_SOURCE}",'
            f'"eventName":{_str(ev.operation)},"awsRegion":{_str(ev.region)},'
            f'"sourceIPAddress":{_str(ev.source or ev.principal)},"userAgent":{_str("onezone/" + ev.principal)},'
            f'"requestParameters":{params},"responseElements":{response},"requestID":{_str(ev.request_id)},'
            f'"eventID":{_str(ev.event_id)},"readOnly":{"true" if ev.operation in READ_ONLY else "false"},'
            f'"resources":{resources},"eventType":"AwsApiCall","managementEvent":true,'
            f'"recipientAccountId":{account},"eventCategory":"Management"')
    if ev.error_code:
        line += f',"errorCode":{_str(ev.error_code)},"errorMessage":{_str(_trunc(ev.error_message or ""))}'
    return (line + "}\n").encode()
