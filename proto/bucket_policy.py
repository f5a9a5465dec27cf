"""Bucket policies: the rules a bucket policy document must follow to be stored.

Responsibility
--------------
One pure check, shared by the coordinator (the authority, when it stores a policy) and the
gateway (which parses the stored text it gets with the bucket record, and refuses a bad
document early with the same message): a bucket policy is an AWS policy document
(``proto.policy``) of at most 20 KiB in which

- every statement names a ``Principal`` (or ``NotPrincipal``), as in AWS resource policies;
- every action belongs to ``s3`` or ``s3express`` (or is ``*``);
- every ``Resource`` is the bucket's own ARN or an object ARN under it (``<bucket ARN>/...``,
  wildcards allowed after the ``/``); ``NotResource`` is taken as written.

Failures raise ``MalformedPolicy`` (the S3 error code ``MalformedPolicy``) naming the statement.
Evaluation is ``proto.policy.evaluate`` with the identity policies and the bucket policy
together, and the caller's ARN as the principal: an explicit Deny in either wins, an Allow in
either allows (a same-account principal, as in AWS).
"""

from __future__ import annotations

from proto.policy import MalformedPolicy, Policy, parse_policy

MAX_BUCKET_POLICY_BYTES = 20 * 1024
_SERVICES = ("s3", "s3express")


def validate_bucket_policy(text: str | bytes, bucket_arn: str) -> Policy:
    """Parse ``text`` as the bucket policy of the bucket whose ARN is ``bucket_arn``.

    Returns:
        The parsed policy.

    Raises:
        MalformedPolicy: the message says which rule failed and where.
    """
    policy = parse_policy(text, max_bytes=MAX_BUCKET_POLICY_BYTES, require_principal=True)
    for i, st in enumerate(policy.statements):
        where = f"Statement[{i}]"
        for action in st.actions:
            service = action.partition(":")[0].lower()
            if action != "*" and service not in _SERVICES:
                raise MalformedPolicy(f"{where}: Policy has invalid action {action!r} "
                                      "(a bucket policy covers s3: and s3express: actions)")
        if st.not_resource:
            continue
        for resource in st.resources:
            if resource != bucket_arn and not resource.startswith(bucket_arn + "/"):
                raise MalformedPolicy(f"{where}: Policy has invalid resource {resource!r}: it must be "
                                      f"{bucket_arn} or {bucket_arn}/<key pattern>")
    return policy
