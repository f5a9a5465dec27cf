"""Authentication and authorization of gateway requests.

Authentication: SigV4 (header or presigned query) with either an IAM access key (secret from
the coordinator, cached) or an S3 Express session (secret derived from the self-contained token,
``gateway.sessions``). A session-signed request must sign ``x-amz-s3session-token`` and may not
carry ``x-amz-security-token``; the session is bound to one bucket and expires when it says.

Authorization: IAM policies of the user together with the bucket's policy, in the AWS policy
language (``proto.policy``): an explicit Deny in either wins, an Allow in either allows (the
callers are principals of the cluster's one account, as AWS treats same-account principals).
On a directory bucket, data operations signed with IAM credentials need
``s3express:CreateSession`` with the matching ``s3express:SessionMode``, as the zonal endpoint
does; session-signed data operations are authorized by the session (ReadOnly sessions may only
read), whose CreateSession was checked against both. On a general-purpose bucket every
operation needs its ``s3:`` action (``GP_ACTIONS``) on the bucket or object ARN
(``arn:aws:s3:::bucket/key``). Put/Get/DeleteBucketPolicy are decided by the IAM policies
alone, so a bucket policy can never lock its administrators out (AWS keeps the account root
for that).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway import sessions, sigv2, sigv4
from gateway.backend import AuthContext, Backend
from gateway.errors import S3Error
from gateway.http import HttpRequest
from gateway.routing import bucket_from_host
from proto.names import bucket_arn, is_directory_bucket_name, object_arn
from proto.policy import Decision, Policy, evaluate

READ_ONLY_OPS = frozenset({"GetObject", "HeadObject", "ListObjectsV2", "ListObjects", "GetObjectAttributes",
                           "ListParts", "ListMultipartUploads", "HeadBucket"})
# control-plane operations, authorized against the user's policies even when session-signed
CONTROL_ACTIONS = {
    "CreateBucket": "s3express:CreateBucket",
    "DeleteBucket": "s3express:DeleteBucket",
    "PutBucketEncryption": "s3express:PutEncryptionConfiguration",
    "GetBucketEncryption": "s3express:GetEncryptionConfiguration",
    "DeleteBucketEncryption": "s3express:PutEncryptionConfiguration",
    "PutBucketPolicy": "s3express:PutBucketPolicy",
    "GetBucketPolicy": "s3express:GetBucketPolicy",
    "DeleteBucketPolicy": "s3express:DeleteBucketPolicy",
}
POLICY_OPS = frozenset({"PutBucketPolicy", "GetBucketPolicy", "DeleteBucketPolicy"})
# general-purpose buckets: operation -> (s3 action, on the object ARN?)
GP_ACTIONS: dict[str, tuple[str, bool]] = {
    "GetObject": ("s3:GetObject", True), "HeadObject": ("s3:GetObject", True),
    "GetObjectAttributes": ("s3:GetObjectAttributes", True),
    "PutObject": ("s3:PutObject", True), "PostObject": ("s3:PutObject", True),
    "CreateMultipartUpload": ("s3:PutObject", True), "UploadPart": ("s3:PutObject", True),
    "CompleteMultipartUpload": ("s3:PutObject", True),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", True),
    "ListParts": ("s3:ListMultipartUploadParts", True),
    "DeleteObject": ("s3:DeleteObject", True), "RenameObject": ("s3:PutObject", True),
    "ListObjects": ("s3:ListBucket", False), "ListObjectsV2": ("s3:ListBucket", False),
    "HeadBucket": ("s3:ListBucket", False), "DeleteObjects": ("s3:DeleteObject", False),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads", False),
    "GetBucketLocation": ("s3:GetBucketLocation", False),
    "CreateBucket": ("s3:CreateBucket", False), "DeleteBucket": ("s3:DeleteBucket", False),
    "PutBucketEncryption": ("s3:PutEncryptionConfiguration", False),
    "DeleteBucketEncryption": ("s3:PutEncryptionConfiguration", False),
    "GetBucketEncryption": ("s3:GetEncryptionConfiguration", False),
    "PutBucketPolicy": ("s3:PutBucketPolicy", False), "GetBucketPolicy": ("s3:GetBucketPolicy", False),
    "DeleteBucketPolicy": ("s3:DeleteBucketPolicy", False),
}


@dataclass(frozen=True, slots=True)
class Identity:
    auth: sigv4.AuthRequest
    signing_key: bytes
    context: AuthContext  # the IAM user (for a session: the user who created it)
    session: sessions.Session | None
    observe_eval: Callable[[float], None] | None = None  # IAM evaluation latency (seconds)
    bucket_policy: Policy | None = None  # of the request's bucket, evaluated with the IAM policies


def _now_dt(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, datetime.timezone.utc)


def parse_auth(req: HttpRequest) -> sigv4.AuthRequest | None:
    try:
        if req.header("authorization") is None:
            v2 = sigv2.parse_presigned(req.target)
            if v2 is not None:
                expires = datetime.datetime.fromtimestamp(min(v2.expires, 253402300799), datetime.timezone.utc)
                stamp = expires.strftime("%Y%m%dT%H%M%SZ")
                return sigv4.AuthRequest(
                    access_key_id=v2.access_key_id, date=stamp[:8], region="", service="s3", signed_headers=(),
                    signature=v2.signature, amz_date=stamp, presigned=True, expires_s=v2.expires,
                    session_token=None, security_token=None, payload_hash=sigv4.UNSIGNED_PAYLOAD, version=2)
        return sigv4.parse_request_auth(req.method, req.target, req.headers)
    except (sigv4.SigV4Error, sigv2.SigV2Error) as exc:
        raise S3Error(exc.code, exc.message) from None


async def _authenticate_v2(req: HttpRequest, auth: sigv4.AuthRequest, backend: Backend, *, now: float,
                           own_hosts: frozenset[str]) -> Identity:
    """A SigV2 presigned URL (general-purpose buckets; IAM keys only)."""
    try:
        sigv2.check_expires(sigv2.PresignedV2(auth.access_key_id, auth.expires_s or 0, auth.signature), now)
    except sigv2.SigV2Error as exc:
        raise S3Error(exc.code, exc.message) from None
    ctx = await backend.auth_context(auth.access_key_id)
    if ctx is None or not ctx.active:
        raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    vhost = bucket_from_host(req.header("host") or "", own_hosts)
    text = sigv2.string_to_sign(req.method, req.target, req.headers, bucket_prefix=f"/{vhost}" if vhost else "")
    try:
        sigv2.verify(ctx.secret, text, auth.signature)
    except sigv2.SigV2Error as exc:
        raise S3Error(exc.code, exc.message) from None
    return Identity(auth, b"", ctx, None)


def presigned_valid_until(auth: sigv4.AuthRequest, session: sessions.Session | None) -> float:
    """When a presigned URL stops working: X-Amz-Date + X-Amz-Expires, and never after the
    expiry of the session whose token it carries (boto3 presigns for an hour by default with
    5-minute session credentials: the URL dies with its session)."""
    when = datetime.datetime.strptime(auth.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    until = when.timestamp() + (auth.expires_s or 0)
    return min(until, session.expires) if session is not None else until


def check_presigned_expiry(auth: sigv4.AuthRequest, session: sessions.Session | None, now: float) -> None:
    """Raises AccessDenied ("Request has expired", as S3) once ``presigned_valid_until`` is past."""
    until = presigned_valid_until(auth, session)
    if now >= until:
        why = "its session expired" if session is not None and session.expires <= until else "X-Amz-Expires passed"
        raise S3Error("AccessDenied", f"Request has expired ({why}).")


async def authenticate(req: HttpRequest, auth: sigv4.AuthRequest | None, backend: Backend, *,
                       session_key: bytes, now: float, max_skew_s: int,
                       body_sha256: str | None = None,
                       observe_eval: Callable[[float], None] | None = None,
                       own_hosts: frozenset[str] = frozenset()) -> Identity:
    """Verify the request's signature; raise S3Error with the AWS code otherwise."""
    if auth is None:
        raise S3Error("AccessDenied", "Anonymous requests are not allowed.")
    if auth.version == 2:
        return await _authenticate_v2(req, auth, backend, now=now, own_hosts=own_hosts)
    try:
        sigv4.check_request_time(auth, _now_dt(now), max_skew_s=max_skew_s)
    except sigv4.SigV4Error as exc:
        raise S3Error(exc.code, exc.message) from None

    session = None
    if auth.session_token is not None:
        if auth.security_token is not None:
            raise S3Error("InvalidRequest", "x-amz-security-token is not allowed with a session token.")
        if not auth.presigned and "x-amz-s3session-token" not in auth.signed_headers:
            raise S3Error("AccessDenied", "The x-amz-s3session-token header must be signed.")
        try:
            # a presigned URL's expiry is judged as a whole below (presigned_valid_until)
            session = sessions.open_token(session_key, auth.session_token, now=None if auth.presigned else now)
        except sessions.SessionError as exc:
            raise S3Error(exc.code, exc.message) from None
        if auth.presigned:
            check_presigned_expiry(auth, session, now)
        if session.access_key_id != auth.access_key_id:
            raise S3Error("InvalidAccessKeyId", "The access key does not match the session token.")
        secret = sessions.session_secret(session_key, session)
        ctx = await backend.auth_context(session.iam_access_key_id)
        if ctx is None or not ctx.active:
            raise S3Error("AccessDenied", "The credentials that created this session are no longer valid.")
    else:
        ctx = await backend.auth_context(auth.access_key_id)
        if ctx is None or not ctx.active:
            raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        secret = ctx.secret
    try:
        key = sigv4.verify(auth, secret, req.method, req.target, req.headers, body_sha256=body_sha256)
    except sigv4.SigV4Error as exc:
        raise S3Error(exc.code, exc.message) from None
    return Identity(auth, key, ctx, session, observe_eval)


def request_context(req: HttpRequest, ident: Identity, now: float, extra: dict[str, str] | None = None) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "aws:username": ident.context.user_name,
        "aws:userid": ident.context.user_name,
        "aws:PrincipalArn": ident.context.user_arn,
        "aws:SourceIp": req.remote.rsplit(":", 1)[0],
        "aws:CurrentTime": _now_dt(now).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aws:EpochTime": str(int(now)),
        "aws:SecureTransport": "true" if req.scheme == "https" else "false",
    }
    if extra:
        ctx.update(extra)
    return ctx


def allowed(ident: Identity, action: str, resource: str, context: dict[str, Any], *,
            with_bucket_policy: bool = True) -> bool:
    start = time.perf_counter()
    policies = ident.context.policies
    if with_bucket_policy and ident.bucket_policy is not None:
        policies = (*policies, ident.bucket_policy)
    decision = evaluate(policies, action=action, resource=resource, context=context,
                        principal=ident.context.user_arn)
    if ident.observe_eval is not None:
        ident.observe_eval(time.perf_counter() - start)
    return decision is Decision.ALLOW


def require(ident: Identity, action: str, resource: str, context: dict[str, Any], *,
            with_bucket_policy: bool = True) -> None:
    if not allowed(ident, action, resource, context, with_bucket_policy=with_bucket_policy):
        raise S3Error("AccessDenied", f"User {ident.context.user_arn} is not authorized to perform {action} on {resource}.")


def authorize_s3(op: str, bucket: str | None, ident: Identity, req: HttpRequest, *, region: str,
                 account: str, now: float, key: str | None = None) -> None:
    """Check an S3 operation (bucket-level or object-level) for this identity."""
    if bucket is None:
        action = "s3express:ListAllMyDirectoryBuckets" if op == "ListDirectoryBuckets" else "s3:ListAllMyBuckets"
        require(ident, action, "*", request_context(req, ident, now))
        return
    arn = bucket_arn(region, account, bucket)
    mode = "ReadOnly" if op in READ_ONLY_OPS else "ReadWrite"
    if ident.session is not None:
        if ident.session.bucket != bucket:
            raise S3Error("AccessDenied", "The session token is for another bucket.")
        if ident.session.mode == "ReadOnly" and op not in READ_ONLY_OPS:
            raise S3Error("AccessDenied", f"{op} is not allowed in a ReadOnly session.")
    if ident.auth.version == 2 and is_directory_bucket_name(bucket):
        raise S3Error("InvalidRequest", "Directory buckets require AWS4-HMAC-SHA256 (Signature Version 4).")
    if not is_directory_bucket_name(bucket):
        if op == "CreateSession":
            raise S3Error("InvalidRequest", "CreateSession is only for directory buckets (<base>--<zone-id>--x-s3).")
        if ident.session is not None:
            raise S3Error("AccessDenied", "Session credentials are only for directory buckets.")
        action, on_object = GP_ACTIONS.get(op, ("s3:" + op, False))
        resource = object_arn(region, account, bucket, key) if on_object and key is not None else arn
        require(ident, action, resource, request_context(req, ident, now),
                with_bucket_policy=op not in POLICY_OPS)
        return
    if op in CONTROL_ACTIONS:
        require(ident, CONTROL_ACTIONS[op], arn, request_context(req, ident, now),
                with_bucket_policy=op not in POLICY_OPS)
        return
    if ident.session is None and op != "CreateSession":
        require(ident, "s3express:CreateSession", arn,
                request_context(req, ident, now, {"s3express:SessionMode": mode}))


def object_allowed(ident: Identity, action: str, bucket: str, key: str, req: HttpRequest, *, region: str,
                   account: str, now: float) -> bool:
    """A per-object check on a general-purpose bucket (e.g. each key of DeleteObjects)."""
    return allowed(ident, action, object_arn(region, account, bucket, key), request_context(req, ident, now))


def kms_permitted(ident: Identity, key_arn: str, req: HttpRequest, now: float) -> bool:
    """The SSE-KMS rule of S3 Express: using a bucket whose key is ``key_arn`` needs
    kms:GenerateDataKey and kms:Decrypt on it."""
    ctx = request_context(req, ident, now)
    return allowed(ident, "kms:GenerateDataKey", key_arn, ctx) and allowed(ident, "kms:Decrypt", key_arn, ctx)
