"""Wildcards, policy variables and request context for the IAM policy engine.

Responsibility
--------------
The string-matching layer under :mod:`proto.policy` and
:mod:`proto.policy_conditions`: compiling AWS ``*``/``?`` wildcard
patterns, substituting ``${...}`` policy variables, and normalizing the
request context.  It also defines the exceptions shared by the policy
modules, because it is the one they all import (no cycles).

Theory of operation
-------------------
A pattern is split into literal runs, wildcards and ``${...}`` tokens and
rebuilt as a regular expression: literals and substituted variable values are
``re.escape``d, so text that comes from the request (a user name containing
``*``) is always matched literally and cannot widen a pattern.  Patterns
without variables do not depend on the request, so their compiled form is
cached.  For ARN condition operators wildcards are confined to one
colon-separated ARN field until the sixth (resource) field, as AWS compares
ARNs field by field; for the Resource element ``*`` spans anything.

Policy variables are only honoured for Version ``2012-10-17`` (as in AWS).
``${*}``, ``${?}`` and ``${$}`` are literal escapes and ``${key, 'default'}``
supplies a fallback.  A variable whose key is missing or multi-valued and has
no default raises :class:`UnresolvedVariable`; the statement evaluator turns
that into "this statement does not match".

The context is normalized once per evaluation: keys lower-cased (condition
keys are case-insensitive) and every value a tuple of strings.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

__all__ = [
    "Context", "MalformedPolicy", "UnresolvedVariable", "check_variables",
    "glob_regex", "normalize_context", "stringify", "substitute",
]

Context = dict[str, tuple[str, ...]]


class MalformedPolicy(ValueError):
    """The policy document is invalid (AWS error code MalformedPolicyDocument)."""

    code = "MalformedPolicyDocument"


class UnresolvedVariable(Exception):
    """A ``${...}`` variable had no single value in the context and no default."""


# --- policy variables and globs -------------------------------------------

_VARIABLE = re.compile(r"\$\{[^}]*\}")
_TOKENS_WITH_VARIABLES = re.compile(r"(\$\{[^}]*\}|\*|\?)")
_TOKENS_PLAIN = re.compile(r"(\*|\?)")
_VARIABLE_KEY = re.compile(r"[A-Za-z0-9:/_.@+=,-]+")


def _split_variable(token: str) -> tuple[str | None, str | None]:
    """Split ``${key, 'default'}`` into (key, default); key None for escapes."""
    inner = token[2:-1].strip()
    if inner in ("*", "?", "$"):
        # ${*}, ${?} and ${$} are AWS's escapes for literal special characters.
        return None, inner
    key, comma, default = inner.partition(",")
    key = key.strip()
    if not _VARIABLE_KEY.fullmatch(key):
        raise MalformedPolicy(f"invalid policy variable {token!r}")
    if not comma:
        return key.lower(), None
    default = default.strip()
    if len(default) < 2 or default[0] != "'" or default[-1] != "'":
        raise MalformedPolicy(f"policy variable default must be single-quoted in {token!r}")
    return key.lower(), default[1:-1]


def check_variables(text: str) -> None:
    """Validate the ``${...}`` variables in ``text`` at parse time.

    Args:
        text: A resource pattern or condition value.

    Raises:
        MalformedPolicy: a variable is badly formed.
    """
    for token in _VARIABLE.findall(text):
        _split_variable(token)


def _resolve(token: str, context: Context) -> str:
    key, default = _split_variable(token)
    if key is None:
        return default  # type: ignore[return-value]
    values = context.get(key)
    if values is not None and len(values) == 1:
        return values[0]
    if default is not None:
        return default
    raise UnresolvedVariable(token)


def substitute(text: str, context: Context, *, variables: bool) -> str:
    """Replace policy variables in ``text`` by their context values.

    Args:
        text: A policy string, possibly containing ``${key}``.
        context: Normalized request context.
        variables: False for 2008-10-17 policies, where ``${`` is literal.

    Returns:
        The substituted string.

    Raises:
        UnresolvedVariable: a variable has no single value and no default.
    """
    if not variables or "${" not in text:
        return text
    return _VARIABLE.sub(lambda m: _resolve(m.group(0), context), text)


@functools.lru_cache(maxsize=4096)
def _compile_plain(pattern: str, ignore_case: bool, arn: bool) -> re.Pattern[str]:
    return _compile(_TOKENS_PLAIN.split(pattern), {}, ignore_case, arn)


def _compile(tokens: list[str], context: Context, ignore_case: bool, arn: bool) -> re.Pattern[str]:
    parts: list[str] = []
    colons = 0
    for index, token in enumerate(tokens):
        if index % 2 == 0:
            parts.append(re.escape(token))
            colons += token.count(":")
        elif token in ("*", "?"):
            # ARN operators compare the six colon-separated fields one by one,
            # so wildcards may not cross a colon until the resource field.
            confined = arn and colons < 5
            any_char = "[^:]" if confined else "."
            parts.append(any_char + "*" if token == "*" else any_char)
        else:
            parts.append(re.escape(_resolve(token, context)))
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


def glob_regex(
    pattern: str,
    context: Context,
    *,
    variables: bool,
    ignore_case: bool = False,
    arn: bool = False,
) -> re.Pattern[str]:
    """Compile an AWS wildcard pattern (``*``, ``?``) to a regex for fullmatch.

    Args:
        pattern: The policy pattern.
        context: Normalized request context, for policy variables.
        variables: Whether ``${...}`` variables are substituted.
        ignore_case: Match case-insensitively (actions).
        arn: Confine wildcards to a single ARN field (ArnLike semantics).

    Returns:
        A compiled pattern; use ``fullmatch``.

    Raises:
        UnresolvedVariable: a variable has no single value and no default.
    """
    if not variables or "${" not in pattern:
        return _compile_plain(pattern, ignore_case, arn)
    return _compile(_TOKENS_WITH_VARIABLES.split(pattern), context, ignore_case, arn)


# --- request context ------------------------------------------------------


def stringify(value: object) -> str:
    """Render a JSON scalar as IAM sees it (booleans as ``true``/``false``).

    Args:
        value: A string, boolean or number.

    Returns:
        The string form.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def normalize_context(context: Mapping[str, str | Sequence[str]]) -> Context:
    """Lower-case keys and turn every value into a tuple of strings.

    Args:
        context: Request context, e.g. ``{"aws:SourceIp": "10.0.0.1"}``.

    Returns:
        The normalized context.
    """
    normalized: Context = {}
    for key, value in context.items():
        if isinstance(value, (str, bool, int, float)):
            values: tuple[str, ...] = (stringify(value),)
        else:
            values = tuple(stringify(v) for v in value)
        normalized[key.lower()] = normalized.get(key.lower(), ()) + values
    return normalized
