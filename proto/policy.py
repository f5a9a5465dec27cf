"""AWS IAM policy language: parsing and evaluation (the S3, S3 Express and KMS subset).

Responsibility
--------------
Decide whether a request -- an action on a resource by a principal with a
request context -- is allowed by a set of policy documents: identity
policies attached to IAM users, bucket policies and KMS key policies.  This
module owns the document grammar (:func:`parse_policy`) and the decision
(:func:`evaluate`); condition operators, wildcards and policy variables live
in :mod:`proto.policy_conditions` and :mod:`proto.policy_match` (in proto because the gateway evaluates policies too);
the names callers need are re-exported here.

Theory of operation
-------------------
Parsing validates everything it can up front and produces frozen
:class:`Policy` / :class:`Statement` values, so evaluation never meets a
malformed document and policies can be cached and shared freely.  Errors
raise :class:`MalformedPolicy` (AWS code ``MalformedPolicyDocument``) with a
message that says where (``Statement[1].Action``) and what is wrong.

Evaluation follows the AWS single-account logic: every statement of every
policy is tested; a statement *applies* when its action, principal, resource
and all its conditions match.  An applicable Deny wins immediately; otherwise
an applicable Allow gives ALLOW; otherwise the result is IMPLICIT_DENY.
Callers combine identity and resource policies simply by passing them all.

Matching rules: actions are ``service:Action`` globs compared
case-insensitively; resources are case-sensitive globs in which ``*`` may span
``:`` and ``/``; ``NotAction``/``NotResource``/``NotPrincipal`` invert their
element.  Principals are compared only when the caller names one; an account
principal (``"111122223333"`` or ``arn:aws:iam::111122223333:root``) stands
for every principal of that account, as in AWS key and bucket policies.  A
statement that uses a policy variable that cannot be resolved does not apply.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proto.policy_conditions import Condition, condition_matches, parse_conditions
from proto.policy_match import (
    Context,
    MalformedPolicy,
    UnresolvedVariable,
    check_variables,
    glob_regex,
    normalize_context,
)

__all__ = [
    "Condition",
    "Decision",
    "MalformedPolicy",
    "Policy",
    "Statement",
    "evaluate",
    "parse_policy",
]

VERSION_2012 = "2012-10-17"
VERSION_2008 = "2008-10-17"
_TOP_LEVEL_KEYS = frozenset({"Version", "Id", "Statement"})
_STATEMENT_KEYS = frozenset(
    {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource",
     "Principal", "NotPrincipal", "Condition"}
)
_PRINCIPAL_TYPES = frozenset({"AWS", "Service", "Federated", "CanonicalUser"})

Principals = tuple[tuple[str, tuple[str, ...]], ...]


class Decision(enum.Enum):
    """Outcome of :func:`evaluate`."""

    ALLOW = "allow"
    DENY = "deny"  # an explicit Deny statement applied
    IMPLICIT_DENY = "implicit-deny"  # nothing allowed the request


@dataclass(frozen=True)
class Statement:
    """One parsed policy statement.

    Attributes:
        effect: ``"Allow"`` or ``"Deny"``.
        actions: Action patterns from Action or NotAction.
        not_action: True if they came from NotAction.
        resources: Resource patterns from Resource or NotResource.
        not_resource: True if they came from NotResource.
        principals: ``((type, (values...)), ...)`` from Principal or
            NotPrincipal, or None if the statement names no principal.
            ``"Principal": "*"`` is stored as ``(("AWS", ("*",)),)``.
        not_principal: True if they came from NotPrincipal.
        conditions: Parsed Condition entries, all of which must hold.
        sid: The optional statement id.
    """

    effect: str
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    principals: Principals | None = None
    not_principal: bool = False
    conditions: tuple[Condition, ...] = ()
    sid: str | None = None


@dataclass(frozen=True)
class Policy:
    """A parsed policy document.

    Attributes:
        version: The effective language version; AWS treats a document
            without Version as ``2008-10-17`` (no policy variables).
        statements: The statements, in document order.
        id: The optional policy Id.
    """

    version: str
    statements: tuple[Statement, ...]
    id: str | None = None


# --- parsing --------------------------------------------------------------


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last duplicate silently; for an access-control document
    # that would let a reviewer and the engine read different policies.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedPolicy(f"duplicate key {key!r} in policy document")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise MalformedPolicy(f"invalid JSON constant {name} in policy document")


def _decode(text: str | bytes | Mapping[str, Any], max_bytes: int) -> Any:
    if isinstance(text, Mapping):
        # Measure dicts in their compact serialization, the smallest they store as.
        try:
            compact = json.dumps(text, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise MalformedPolicy(f"policy document is not JSON-compatible: {exc}") from None
        size = len(compact.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise MalformedPolicy(f"policy document is {size} bytes, more than the {max_bytes} allowed")
        return text
    if isinstance(text, str):
        raw = text.encode("utf-8", "surrogatepass")
    elif isinstance(text, bytes):
        raw = text
    else:
        raise MalformedPolicy("policy document must be JSON text or an object")
    # Check size before parsing so an oversized body costs no parse work.
    if len(raw) > max_bytes:
        raise MalformedPolicy(f"policy document is {len(raw)} bytes, more than the {max_bytes} allowed")
    try:
        return json.loads(raw, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, MalformedPolicy):
            raise
        raise MalformedPolicy(f"policy document is not valid JSON: {exc}") from None


def _string_list(raw: object, where: str) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise MalformedPolicy(f"{where} must not be an empty list")
    if not all(isinstance(item, str) and item for item in items):
        raise MalformedPolicy(f"{where} must be a non-empty string or list of non-empty strings")
    return tuple(items)


def _one_of(raw: dict[str, Any], name: str, where: str) -> tuple[Any, bool] | None:
    """Return (value, negated) for at most one of ``name`` / ``Not<name>``."""
    has, has_not = name in raw, f"Not{name}" in raw
    if has and has_not:
        raise MalformedPolicy(f"{where}: use either {name} or Not{name}, not both")
    if not has and not has_not:
        return None
    return (raw[name], False) if has else (raw[f"Not{name}"], True)


def _exactly_one(raw: dict[str, Any], name: str, where: str) -> tuple[Any, bool]:
    found = _one_of(raw, name, where)
    if found is None:
        raise MalformedPolicy(f"{where}: missing required field {name} (or Not{name})")
    return found


def _parse_actions(raw: object, where: str) -> tuple[str, ...]:
    actions = _string_list(raw, where)
    for action in actions:
        service, colon, name = action.partition(":")
        if action != "*" and not (service and colon and name and ":" not in name):
            raise MalformedPolicy(f"{where}: action {action!r} must look like 'service:Action' or '*'")
    return actions


def _parse_resources(raw: object, where: str, variables: bool) -> tuple[str, ...]:
    resources = _string_list(raw, where)
    for resource in resources:
        # A wildcard may stand for the remaining ARN fields ("arn:aws:s3express:*").
        arn_like = resource.startswith("arn:") and (resource.count(":") >= 5 or "*" in resource)
        if resource != "*" and not arn_like:
            raise MalformedPolicy(f"{where}: resource {resource!r} must be '*' or an ARN")
        if variables:
            check_variables(resource)
    return resources


def _parse_principals(raw: object, where: str) -> Principals:
    if raw == "*":
        return (("AWS", ("*",)),)
    if not isinstance(raw, dict) or not raw:
        raise MalformedPolicy(f"{where} must be '*' or an object such as {{\"AWS\": arn}}")
    principals = []
    for kind, values in raw.items():
        if kind not in _PRINCIPAL_TYPES:
            raise MalformedPolicy(f"{where}: unknown principal type {kind!r}")
        principals.append((kind, _string_list(values, f"{where}.{kind}")))
    return tuple(principals)


def _parse_statement(raw: object, where: str, variables: bool, require_principal: bool) -> Statement:
    if not isinstance(raw, dict):
        raise MalformedPolicy(f"{where} must be an object")
    unknown = sorted(map(str, set(raw) - _STATEMENT_KEYS))
    if unknown:
        raise MalformedPolicy(f"{where}: unknown field(s) {', '.join(unknown)}")
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise MalformedPolicy(f"{where}.Sid must be a string")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise MalformedPolicy(f"{where}.Effect must be 'Allow' or 'Deny', got {effect!r}")
    action_raw, not_action = _exactly_one(raw, "Action", where)
    actions = _parse_actions(action_raw, f"{where}.{'NotAction' if not_action else 'Action'}")
    resource_raw, not_resource = _exactly_one(raw, "Resource", where)
    resources = _parse_resources(
        resource_raw, f"{where}.{'NotResource' if not_resource else 'Resource'}", variables
    )
    principal = _exactly_one(raw, "Principal", where) if require_principal else _one_of(raw, "Principal", where)
    principals, not_principal = None, False
    if principal is not None:
        not_principal = principal[1]
        principals = _parse_principals(principal[0], f"{where}.{'NotPrincipal' if not_principal else 'Principal'}")
    conditions: tuple[Condition, ...] = ()
    if "Condition" in raw:
        conditions = parse_conditions(raw["Condition"], where=where, variables=variables)
    return Statement(
        effect, actions, not_action, resources, not_resource,
        principals, not_principal, conditions, sid,
    )


def parse_policy(
    text: str | bytes | Mapping[str, Any],
    *,
    max_bytes: int = 20480,
    require_principal: bool = False,
) -> Policy:
    """Parse and validate a policy document.

    Args:
        text: JSON text (str or UTF-8 bytes) or an already decoded object.
        max_bytes: Size limit; text is measured as given, objects in their
            compact JSON form.  20 KiB is the S3 bucket policy limit.
        require_principal: True for resource policies (bucket and key
            policies), whose statements must name a Principal/NotPrincipal.

    Returns:
        The parsed :class:`Policy`.

    Raises:
        MalformedPolicy: if the document is too large, not JSON, or breaks
            the grammar; the message says where.
    """
    document = _decode(text, max_bytes)
    if not isinstance(document, Mapping):
        raise MalformedPolicy("policy document must be a JSON object")
    unknown = sorted(map(str, set(document) - _TOP_LEVEL_KEYS))
    if unknown:
        raise MalformedPolicy(f"unknown top-level field(s) {', '.join(unknown)}")
    version = document.get("Version", VERSION_2008)
    if version not in (VERSION_2012, VERSION_2008):
        raise MalformedPolicy(f"Version must be {VERSION_2012!r} or {VERSION_2008!r}, got {version!r}")
    policy_id = document.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise MalformedPolicy("Id must be a string")
    if "Statement" not in document:
        raise MalformedPolicy("missing required field Statement")
    raw_statements = document["Statement"]
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise MalformedPolicy("Statement must be an object or a non-empty list of objects")
    variables = version == VERSION_2012
    statements = tuple(
        _parse_statement(raw, f"Statement[{index}]", variables, require_principal)
        for index, raw in enumerate(raw_statements)
    )
    return Policy(version, statements, policy_id)


# --- evaluation -----------------------------------------------------------


def _account_of(arn: str) -> str | None:
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 and parts[0] == "arn" and parts[4] else None


def _principal_listed(principals: Principals, principal: str) -> bool:
    account = _account_of(principal)
    for kind, values in principals:
        for value in values:
            if value == "*" or value == principal:
                return True
            # An account (bare id or its root ARN) delegates to all its principals.
            if kind == "AWS" and account is not None and value in (
                account, f"arn:aws:iam::{account}:root"
            ):
                return True
    return False


def _statement_applies(
    statement: Statement, variables: bool, action: str, resource: str,
    context: Context, principal: str | None,
) -> bool:
    action_hit = any(
        glob_regex(p, {}, variables=False, ignore_case=True).fullmatch(action)
        for p in statement.actions
    )
    if action_hit == statement.not_action:
        return False
    if principal is not None and statement.principals is not None:
        if _principal_listed(statement.principals, principal) == statement.not_principal:
            return False
    try:
        resource_hit = any(
            glob_regex(p, context, variables=variables).fullmatch(resource)
            for p in statement.resources
        )
        if resource_hit == statement.not_resource:
            return False
        return all(condition_matches(c, context, variables=variables) for c in statement.conditions)
    except UnresolvedVariable:
        return False


def evaluate(
    policies: Sequence[Policy],
    *,
    action: str,
    resource: str,
    context: Mapping[str, str | Sequence[str]],
    principal: str | None = None,
) -> Decision:
    """Decide a request against a set of policies.

    Args:
        policies: All policies that govern the request (identity, bucket,
            key policies); order does not matter.
        action: The requested action, e.g. ``s3express:CreateSession``.
        resource: The resource ARN the action targets.
        context: Condition keys and values, e.g.
            ``{"s3express:SessionMode": "ReadOnly", "aws:username": "alice"}``;
            keys are case-insensitive, values a string or list of strings.
        principal: Caller ARN, used against Principal/NotPrincipal; None
            means "not checked" (statements with a Principal then match as if
            it matched).

    Returns:
        DENY if any applicable statement denies, else ALLOW if any applicable
        statement allows, else IMPLICIT_DENY.
    """
    normalized = normalize_context(context)
    allowed = False
    for policy in policies:
        variables = policy.version == VERSION_2012
        for statement in policy.statements:
            if statement.effect == "Allow" and allowed:
                continue  # already allowed; only a Deny can change the answer
            if _statement_applies(statement, variables, action, resource, normalized, principal):
                if statement.effect == "Deny":
                    return Decision.DENY
                allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY
