"""The ``Condition`` element of IAM policies: parsing and evaluation.

Responsibility
--------------
Parse a statement's ``Condition`` element into frozen :class:`Condition`
values and decide whether each holds for a request context.  It is split out
of :mod:`proto.policy` only to keep modules small; callers should import
from ``proto.policy``.  Wildcards and policy variables come from
:mod:`proto.policy_match`.

Theory of operation
-------------------
At parse time every ``{operator: {key: values}}`` entry becomes one frozen
:class:`Condition` (one per key, because keys in an operator block are ANDed
anyway).  The operator name is decomposed into an optional set qualifier
(``ForAnyValue:``/``ForAllValues:``), a base operator and an ``IfExists``
flag; typed operands (numbers, dates, CIDRs, booleans) are parsed then, so a
bad policy fails when it is stored rather than silently never matching.

At evaluation time the context is a mapping of lower-cased keys to tuples of
strings.  For one context value ``v`` the *positive* test is "v matches any of
the policy values" (values are ORed); a negated operator (``StringNotEquals``,
``NotIpAddress``, ...) is the negation of that, i.e. a NOR.  Then:

* ``Null``: true when key absence equals the policy value (``"true"`` means
  "must be absent").  An empty multi-value counts as absent.
* ``ForAllValues:``: true when the key is absent/empty, else every context
  value must pass.
* ``ForAnyValue:``: false when absent (true with ``IfExists``), else at least
  one context value must pass.
* plain operators: when absent, true for ``IfExists`` and for negated
  operators (AWS: "the key is not matched"), false otherwise.  When present,
  the positive test is taken over all context values (any pair matching), and
  negated operators negate that.

Policy variables are honoured (for Version ``2012-10-17``) only in the string
and ARN operators, as AWS documents; typed operators take their values
literally, which lets them be validated at parse time.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from proto.policy_match import (
    Context,
    MalformedPolicy,
    check_variables,
    glob_regex,
    stringify,
    substitute,
)

__all__ = ["Condition", "condition_matches", "parse_conditions"]


class _OpSpec(NamedTuple):
    kind: str  # eq, eq_ic, like, arn, num, date, bool, ip, null
    negated: bool
    compare: Callable[[Any, Any], bool] = operator.eq


def _typed(kind: str) -> dict[str, _OpSpec]:
    prefix = "Numeric" if kind == "num" else "Date"
    return {
        f"{prefix}Equals": _OpSpec(kind, False, operator.eq),
        f"{prefix}NotEquals": _OpSpec(kind, True, operator.eq),
        f"{prefix}LessThan": _OpSpec(kind, False, operator.lt),
        f"{prefix}LessThanEquals": _OpSpec(kind, False, operator.le),
        f"{prefix}GreaterThan": _OpSpec(kind, False, operator.gt),
        f"{prefix}GreaterThanEquals": _OpSpec(kind, False, operator.ge),
    }


_OPERATORS: dict[str, _OpSpec] = {
    "StringEquals": _OpSpec("eq", False),
    "StringNotEquals": _OpSpec("eq", True),
    "StringEqualsIgnoreCase": _OpSpec("eq_ic", False),
    "StringNotEqualsIgnoreCase": _OpSpec("eq_ic", True),
    "StringLike": _OpSpec("like", False),
    "StringNotLike": _OpSpec("like", True),
    # AWS documents ArnEquals and ArnLike identically: both take wildcards.
    "ArnEquals": _OpSpec("arn", False),
    "ArnLike": _OpSpec("arn", False),
    "ArnNotEquals": _OpSpec("arn", True),
    "ArnNotLike": _OpSpec("arn", True),
    **_typed("num"),
    **_typed("date"),
    "Bool": _OpSpec("bool", False),
    "IpAddress": _OpSpec("ip", False),
    "NotIpAddress": _OpSpec("ip", True),
    "Null": _OpSpec("null", False),
}
_QUALIFIERS = ("ForAnyValue", "ForAllValues")
_STRINGY = frozenset({"eq", "eq_ic", "like", "arn"})


@dataclass(frozen=True)
class Condition:
    """One ``operator: {key: values}`` entry of a Condition element.

    Attributes:
        operator: The operator as written, e.g. ``ForAnyValue:StringLikeIfExists``.
        key: The condition key, lower-cased (keys are case-insensitive).
        values: The policy values as strings.
        base: The operator without qualifier or ``IfExists`` (``StringLike``).
        qualifier: ``ForAnyValue``, ``ForAllValues`` or None.
        if_exists: Whether the ``IfExists`` suffix was present.
        operands: ``values`` pre-parsed for typed operators (Decimal,
            datetime, ip_network, lower-cased bool); equal to ``values`` else.
    """

    operator: str
    key: str
    values: tuple[str, ...]
    base: str
    qualifier: str | None
    if_exists: bool
    operands: tuple[Any, ...]


_EPOCH = re.compile(r"-?\d+(?:\.\d+)?")


def _parse_number(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _parse_date(text: str) -> datetime | None:
    text = text.strip()
    try:
        if _EPOCH.fullmatch(text):
            return datetime.fromtimestamp(float(text), tz=timezone.utc)
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    # AWS dates without an offset are UTC; comparing naive and aware fails.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _parse_operand(kind: str, value: str, where: str) -> Any:
    if kind == "num":
        parsed: Any = _parse_number(value)
    elif kind == "date":
        parsed = _parse_date(value)
    elif kind in ("bool", "null"):
        parsed = value.lower() if value.lower() in ("true", "false") else None
    elif kind == "ip":
        try:
            parsed = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            parsed = None
    else:
        return value
    if parsed is None:
        raise MalformedPolicy(f"{where}: invalid value {value!r} for this operator")
    return parsed


# --- parsing --------------------------------------------------------------


def _condition_values(raw: object, where: str) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise MalformedPolicy(f"{where}: condition value list must not be empty")
    for item in items:
        if not isinstance(item, (str, bool, int, float)):
            raise MalformedPolicy(f"{where}: condition values must be strings, numbers or booleans")
    return tuple(stringify(item) for item in items)


def _split_operator(name: str, where: str) -> tuple[str | None, str, bool, _OpSpec]:
    qualifier, colon, base = name.rpartition(":")
    if colon and qualifier not in _QUALIFIERS:
        raise MalformedPolicy(f"{where}: unknown set qualifier {qualifier!r}")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base[: -len("IfExists")]
    spec = _OPERATORS.get(base)
    if spec is None:
        raise MalformedPolicy(f"{where}: unknown condition operator {name!r}")
    # AWS: Null is itself an existence test; it takes neither IfExists nor a set qualifier.
    if spec.kind == "null" and (if_exists or qualifier):
        raise MalformedPolicy(f"{where}: operator {name!r} is not allowed")
    return qualifier or None, base, if_exists, spec


def parse_conditions(raw: object, *, where: str, variables: bool) -> tuple[Condition, ...]:
    """Parse a statement's Condition element.

    Args:
        raw: The decoded JSON value of ``Condition``.
        where: Location prefix for error messages (``Statement[0]``).
        variables: Whether policy variables are honoured (Version 2012-10-17).

    Returns:
        One :class:`Condition` per (operator, key) pair.

    Raises:
        MalformedPolicy: on structural errors, unknown operators or bad values.
    """
    if not isinstance(raw, dict):
        raise MalformedPolicy(f"{where}: Condition must be an object")
    conditions = []
    for op_name, block in raw.items():
        here = f"{where}.Condition.{op_name}"
        qualifier, base, if_exists, spec = _split_operator(op_name, here)
        if not isinstance(block, dict) or not block:
            raise MalformedPolicy(f"{here}: must be a non-empty object of key: value(s)")
        for key, raw_values in block.items():
            if not isinstance(key, str) or not key:
                raise MalformedPolicy(f"{here}: condition keys must be non-empty strings")
            values = _condition_values(raw_values, f"{here}.{key}")
            if variables and spec.kind in _STRINGY:
                for value in values:
                    check_variables(value)
            operands = tuple(_parse_operand(spec.kind, v, f"{here}.{key}") for v in values)
            conditions.append(
                Condition(op_name, key.lower(), values, base, qualifier, if_exists, operands)
            )
    return tuple(conditions)


# --- evaluation -----------------------------------------------------------


def _positive_matcher(cond: Condition, spec: _OpSpec, ctx: Context, variables: bool) -> Callable[[str], bool]:
    """Build "does this context value match any policy value?"."""
    kind = spec.kind
    if kind == "eq":
        wanted = {substitute(v, ctx, variables=variables) for v in cond.operands}
        return lambda value: value in wanted
    if kind == "eq_ic":
        folded = {substitute(v, ctx, variables=variables).casefold() for v in cond.operands}
        return lambda value: value.casefold() in folded
    if kind in ("like", "arn"):
        regexes = [glob_regex(v, ctx, variables=variables, arn=kind == "arn") for v in cond.operands]
        return lambda value: any(r.fullmatch(value) for r in regexes)
    if kind == "bool":
        return lambda value: value.lower() in cond.operands
    if kind == "ip":

        def in_network(value: str) -> bool:
            try:
                address = ipaddress.ip_address(value.strip())
            except ValueError:
                return False
            return any(address in network for network in cond.operands)

        return in_network
    parse = _parse_number if kind == "num" else _parse_date

    def compare(value: str) -> bool:
        parsed = parse(value)
        # An unparseable context value matches nothing (negated ops then hold).
        return parsed is not None and any(spec.compare(parsed, p) for p in cond.operands)

    return compare


def condition_matches(cond: Condition, context: Context, *, variables: bool) -> bool:
    """Evaluate one condition against a normalized context.

    Args:
        cond: A parsed condition.
        context: Normalized request context (see :func:`normalize_context`).
        variables: Whether policy variables are honoured.

    Returns:
        True if the condition holds.

    Raises:
        UnresolvedVariable: a policy variable in the values cannot be resolved.
    """
    spec = _OPERATORS[cond.base]
    present_values = context.get(cond.key) or ()
    present = bool(present_values)
    if spec.kind == "null":
        return any((value == "true") != present for value in cond.operands)
    if not present:
        if cond.qualifier == "ForAllValues":
            return True
        if cond.qualifier == "ForAnyValue":
            return cond.if_exists
        return cond.if_exists or spec.negated
    matches = _positive_matcher(cond, spec, context, variables)
    if cond.qualifier == "ForAllValues":
        return all(matches(v) != spec.negated for v in present_values)
    if cond.qualifier == "ForAnyValue":
        return any(matches(v) != spec.negated for v in present_values)
    return any(matches(v) for v in present_values) != spec.negated
