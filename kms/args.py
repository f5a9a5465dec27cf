"""Argument checking of every KMS RPC method: names, types and sizes, before any work.

Pure. ``ARGS`` maps each operation to ``{arg: (required, checker)}``; ``parse_args`` returns
the clean arguments or raises ``ValidationException`` (InvalidRequest). ``caller`` (the end
user's ARN) is accepted by every method. Unknown argument names are refused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from kms.crypto import MAX_BLOB_SIZE, MAX_PLAINTEXT, canonical_context
from kms.service import validation_error

__all__ = ["ARGS", "MAX_CONTEXT_BYTES", "MAX_CONTEXT_PAIRS", "parse_args"]

MAX_CONTEXT_PAIRS = 64
MAX_CONTEXT_BYTES = 8192
MAX_DESCRIPTION = 8192
MAX_TAGS = 50
MAX_REF = 2048
MAX_POLICY = 32768


def _str_arg(name: str, v: Any, *, min_len: int = 1, max_len: int = MAX_REF) -> str:
    if not isinstance(v, str) or not min_len <= len(v) <= max_len:
        raise validation_error(f"{name} must be a string of {min_len}..{max_len} characters")
    return v


def _int_arg(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise validation_error(f"{name} must be an integer in {lo}..{hi}")
    return v


def _bool_arg(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise validation_error(f"{name} must be a boolean")
    return v


def _bytes_arg(name: str, v: Any, lo: int, hi: int) -> bytes:
    if not isinstance(v, bytes) or not lo <= len(v) <= hi:
        raise validation_error(f"{name} must be binary of {lo}..{hi} bytes")
    return v


def _context_arg(v: Any, name: str = "encryption_context") -> dict[str, str]:
    if not isinstance(v, dict) or len(v) > MAX_CONTEXT_PAIRS:
        raise validation_error(f"{name} must be a map of at most {MAX_CONTEXT_PAIRS} pairs")
    if not all(isinstance(k, str) and k and isinstance(x, str) for k, x in v.items()):
        raise validation_error(f"{name} keys must be non-empty strings and values strings")
    chars = sum(len(k) + len(x) for k, x in v.items())
    if (chars + 6 * len(v)) * 6 + 2 <= MAX_CONTEXT_BYTES:
        # surely small enough (a character takes at most 6 bytes in the canonical JSON): only
        # check that it encodes, without building the JSON
        try:
            for k, x in v.items():
                k.encode(), x.encode()
        except UnicodeEncodeError:
            raise validation_error(f"{name} is not valid Unicode") from None
        return dict(v)
    try:
        size = len(canonical_context(v))
    except (TypeError, ValueError):
        raise validation_error(f"{name} is not valid Unicode") from None
    if size > MAX_CONTEXT_BYTES:
        raise validation_error(f"{name} exceeds {MAX_CONTEXT_BYTES} bytes")
    return dict(v)


def _tags_arg(v: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(v, list) or len(v) > MAX_TAGS:
        raise validation_error(f"tags must be a list of at most {MAX_TAGS} {{TagKey, TagValue}} maps")
    out: dict[str, str] = {}
    for tag in v:
        if not isinstance(tag, dict) or set(tag) != {"TagKey", "TagValue"}:
            raise validation_error("each tag must be a map with exactly TagKey and TagValue")
        key = _str_arg("TagKey", tag["TagKey"], max_len=128)
        if key in out:
            raise validation_error(f"duplicate TagKey {key!r}")
        out[key] = _str_arg("TagValue", tag["TagValue"], min_len=0, max_len=256)
    return tuple(out.items())


def _tag_keys_arg(v: Any) -> list[str]:
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_TAGS:
        raise validation_error(f"tag_keys must be a list of 1..{MAX_TAGS} strings")
    return [_str_arg("TagKey", k, max_len=128) for k in v]


_ArgSpec = dict[str, tuple[bool, Callable[[Any], Any]]]
_p = functools.partial
_KEY: _ArgSpec = {"key_id": (True, _p(_str_arg, "key_id"))}
_CONTEXT: _ArgSpec = {"encryption_context": (False, _context_arg)}
_PAGE: _ArgSpec = {"limit": (False, _p(_int_arg, "limit", lo=1, hi=1000)),
                   "marker": (False, _p(_str_arg, "marker", max_len=1024))}
_ALIAS: _ArgSpec = {"alias_name": (True, _p(_str_arg, "alias_name", max_len=256))}
_BLOB = _p(_bytes_arg, "ciphertext_blob", lo=1, hi=max(MAX_BLOB_SIZE, 6144))
_POLICY = _p(_str_arg, "policy", max_len=MAX_POLICY)
_GDK: _ArgSpec = {**_KEY, **_CONTEXT,
                  "number_of_bytes": (False, _p(_int_arg, "number_of_bytes", lo=1, hi=1024))}

ARGS: dict[str, _ArgSpec] = {
    "CreateKey": {"description": (False, _p(_str_arg, "description", min_len=0, max_len=MAX_DESCRIPTION)),
                  "tags": (False, _tags_arg), "policy": (False, _POLICY),
                  "bypass_policy_lockout_safety_check": (False, _p(_bool_arg, "bypass_policy_lockout_safety_check"))},
    "DescribeKey": dict(_KEY),
    "ListKeys": dict(_PAGE),
    "GetManagedKey": {"alias": (True, _p(_str_arg, "alias", max_len=256))},
    "GenerateDataKey": _GDK,
    "GenerateDataKeyWithoutPlaintext": _GDK,
    "Encrypt": {**_KEY, **_CONTEXT, "plaintext": (True, _p(_bytes_arg, "plaintext", lo=1, hi=MAX_PLAINTEXT))},
    "Decrypt": {"key_id": (False, _p(_str_arg, "key_id")), **_CONTEXT, "ciphertext_blob": (True, _BLOB)},
    "ReEncrypt": {"ciphertext_blob": (True, _BLOB), "source_key_id": (False, _p(_str_arg, "source_key_id")),
                  "destination_key_id": (True, _p(_str_arg, "destination_key_id")),
                  "source_encryption_context": (False, _p(_context_arg, name="source_encryption_context")),
                  "destination_encryption_context": (False, _p(_context_arg,
                                                               name="destination_encryption_context"))},
    "GenerateRandom": {"number_of_bytes": (False, _p(_int_arg, "number_of_bytes", lo=1, hi=1024))},
    "EnableKey": dict(_KEY),
    "DisableKey": dict(_KEY),
    "ScheduleKeyDeletion": {**_KEY, "pending_window_in_days": (False, _p(_int_arg, "pending_window_in_days",
                                                                         lo=1, hi=365))},
    "CancelKeyDeletion": dict(_KEY),
    "EnableKeyRotation": {**_KEY, "rotation_period_in_days": (False, _p(_int_arg, "rotation_period_in_days",
                                                                        lo=1, hi=100_000))},
    "DisableKeyRotation": dict(_KEY),
    "GetKeyRotationStatus": dict(_KEY),
    "RotateKeyOnDemand": dict(_KEY),
    "ListKeyRotations": {**_KEY, **_PAGE},
    "GetKeyPolicy": {**_KEY, "policy_name": (False, _p(_str_arg, "policy_name", max_len=128))},
    "PutKeyPolicy": {**_KEY, "policy": (True, _POLICY), "policy_name": (False, _p(_str_arg, "policy_name",
                                                                                  max_len=128)),
                     "bypass_policy_lockout_safety_check": (False, _p(_bool_arg,
                                                                      "bypass_policy_lockout_safety_check"))},
    "TagResource": {**_KEY, "tags": (True, _tags_arg)},
    "UntagResource": {**_KEY, "tag_keys": (True, _tag_keys_arg)},
    "ListResourceTags": {**_KEY, **_PAGE},
    "CreateAlias": {**_ALIAS, "target_key_id": (True, _p(_str_arg, "target_key_id"))},
    "UpdateAlias": {**_ALIAS, "target_key_id": (True, _p(_str_arg, "target_key_id"))},
    "DeleteAlias": dict(_ALIAS),
    "ListAliases": {"key_id": (False, _p(_str_arg, "key_id")), **_PAGE},
    "KeyStateChanges": {"epoch": (False, _p(_str_arg, "epoch", max_len=64)),
                        "version": (False, _p(_int_arg, "version", lo=0, hi=2**62))},
}


def parse_args(operation: str, args: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Check a call's arguments.

    Returns:
        (the clean arguments without ``caller``, the caller ARN or None).

    Raises:
        InvalidRequest (ValidationException): unknown, missing or ill-typed argument.
    """
    spec = ARGS[operation]
    unknown = sorted(set(args) - set(spec) - {"caller"})
    if unknown:
        raise validation_error(f"unknown argument(s) for {operation}: {', '.join(map(str, unknown))}")
    caller = _str_arg("caller", args["caller"]) if args.get("caller") is not None else None
    clean: dict[str, Any] = {}
    for name, (required, check) in spec.items():
        if args.get(name) is None:
            if required:
                raise validation_error(f"{operation} requires {name}")
            continue
        clean[name] = check(args[name])
    return clean, caller
