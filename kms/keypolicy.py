"""Key policies: the default document, validation, and the decision for one request.

Responsibility
--------------
Pure logic (no I/O). A key policy is an AWS resource policy (``proto.policy``, every statement
names a Principal) attached to one key; ``decide`` evaluates it for a principal, an action
``kms:<Operation>`` and the key's ARN.

Principals
----------
- A request made on behalf of an end user carries ``caller`` (the user's ARN, e.g.
  ``arn:aws:iam::000000000000:user/alice``): the key policy is evaluated for that user.
- A request a daemon makes for itself is evaluated for the service's role ARN,
  ``arn:aws:iam::<account>:role/onezone/<principal>`` (``node-1``, ``coordinator``...).
- The default key policy, like AWS's, allows ``kms:*`` to the account root
  (``arn:aws:iam::<account>:root``), i.e. to every principal of the account: end users are then
  governed by their IAM policies (checked by the gateway), services by the KMS's ACL.
- AWS-managed keys (``aws/s3``...) have a fixed policy: the default one.

The KMS's ACL (``kms.handlers.ACL``) is checked first and is never widened by a key policy: a
node may never CreateKey, PutKeyPolicy or ScheduleKeyDeletion whatever a policy says.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

from proto.policy import Decision, MalformedPolicy, Policy, evaluate, parse_policy

__all__ = ["MAX_POLICY_BYTES", "decide", "default_policy", "parse_key_policy", "service_arn"]

MAX_POLICY_BYTES = 32768  # AWS's key policy size limit


def service_arn(account_id: str, principal: str) -> str:
    """The ARN a daemon's certificate name stands for in key policies."""
    return f"arn:aws:iam::{account_id}:role/onezone/{principal}"


@functools.lru_cache(maxsize=64)
def default_policy(account_id: str) -> str:
    """AWS's default key policy: the account (and so IAM) governs the key."""
    return json.dumps({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }],
    }, indent=2)


def parse_key_policy(text: str) -> Policy:
    """Validate a key policy document.

    Raises:
        MalformedPolicy: not JSON, bad grammar, a statement without Principal, too large.
    """
    return parse_policy(text, max_bytes=MAX_POLICY_BYTES, require_principal=True)


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> Policy:
    return parse_key_policy(text)  # Policy values are frozen: safe to share


def decide(policy_text: str | None, *, account_id: str, principal: str, action: str, key_arn: str,
           context: Mapping[str, str] | None = None) -> bool:
    """Does the key policy allow ``principal`` to run ``action`` on the key?

    Args:
        policy_text: the key's policy (None = the default policy).
        principal: an end user's ARN or ``service_arn(...)``.
        action: ``kms:Decrypt`` etc.
        key_arn: the key's ARN (the resource).
        context: condition keys (e.g. ``kms:EncryptionContext:<k>``).

    Returns:
        True only when a statement allows and none denies.
    """
    if not context:
        return _decide_cached(policy_text, account_id, principal, action, key_arn)
    return _decide(policy_text, account_id, principal, action, key_arn, context)


@functools.lru_cache(maxsize=16384)
def _decide_cached(policy_text: str | None, account_id: str, principal: str, action: str, key_arn: str) -> bool:
    # Evaluation is a pure function of its inputs (no clock, no state), and the policy's text is
    # part of the key, so a changed policy can never be answered from an old entry.
    return _decide(policy_text, account_id, principal, action, key_arn, None)


def _decide(policy_text: str | None, account_id: str, principal: str, action: str, key_arn: str,
            context: Mapping[str, str] | None) -> bool:
    try:
        policy = _parsed(policy_text if policy_text is not None else default_policy(account_id))
    except MalformedPolicy:
        return False  # a stored policy that no longer parses denies everything but the ACL
    ctx = {"aws:PrincipalArn": principal, **(context or {})}
    return evaluate([policy], action=action, resource=key_arn, context=ctx,
                    principal=principal) is Decision.ALLOW
