"""Bucket-level S3 operations: CreateSession, CreateBucket, HeadBucket, DeleteBucket,
ListDirectoryBuckets/ListBuckets and the bucket encryption configuration.

Each handler gets the parsed request context and returns an ``HttpResponse``; the coordinator
owns the catalog, so these are thin: validate, call, render. Wire shapes follow the wire
reference §3 and §6.1–6.5.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

from gateway import s3responses, sessions
from gateway.auth import Identity, kms_permitted, require, request_context
from gateway.backend import Backend
from gateway.errors import S3Error
from gateway.http import HttpRequest, HttpResponse
from gateway.routing import parse_query
from gateway.s3xml import XmlError, parse_create_bucket_configuration, parse_encryption_configuration
from proto.names import (
    InvalidName,
    bucket_arn,
    is_directory_bucket_name,
    validate_directory_bucket_name,
    validate_general_bucket_name,
)

XML = ("content-type", "application/xml")


@dataclass(frozen=True, slots=True)
class BucketCtx:
    req: HttpRequest
    ident: Identity
    bucket: str
    now: float
    region: str
    account: str
    session_key: bytes
    session_ttl_s: int
    body: bytes = b""


def sse_headers(record: dict[str, Any]) -> list[tuple[str, str]]:
    if record.get("sse_algorithm") == "aws:kms" and record.get("kms_key_arn"):
        return [("x-amz-server-side-encryption", "aws:kms"),
                ("x-amz-server-side-encryption-aws-kms-key-id", record["kms_key_arn"]),
                ("x-amz-server-side-encryption-bucket-key-enabled", "true")]
    return [("x-amz-server-side-encryption", "AES256")]


def _key_matches(given: str, key_arn: str) -> bool:
    return given == key_arn or given == key_arn.rsplit("/", 1)[-1]


def check_sse_request_headers(req: HttpRequest, record: dict[str, Any] | None) -> None:
    """Encryption headers on zonal calls must match the bucket's default (wire reference §6.16)."""
    algo = req.header("x-amz-server-side-encryption")
    key = req.header("x-amz-server-side-encryption-aws-kms-key-id")
    if req.header("x-amz-server-side-encryption-customer-algorithm"):
        raise S3Error("NotImplemented", "SSE-C is not supported for directory buckets.")
    if algo is None and key is None:
        return
    if algo not in (None, "AES256", "aws:kms"):
        raise S3Error("InvalidArgument", f"Unsupported x-amz-server-side-encryption {algo!r}.")
    if record is None:
        return
    bucket_algo = record.get("sse_algorithm", "AES256")
    if algo is not None and algo != bucket_algo:
        raise S3Error("InvalidArgument", f"The encryption type {algo} does not match the bucket's default encryption ({bucket_algo}).")
    if key is not None:
        if bucket_algo != "aws:kms" or not _key_matches(key, record.get("kms_key_arn") or ""):
            raise S3Error("InvalidArgument", "The KMS key in the request does not match the bucket's default KMS key.")


async def create_session(ctx: BucketCtx, backend: Backend) -> HttpResponse:
    mode = ctx.req.header("x-amz-create-session-mode") or "ReadWrite"
    if mode not in sessions.MODES:
        raise S3Error("InvalidArgument", "x-amz-create-session-mode must be ReadWrite or ReadOnly.")
    if not is_directory_bucket_name(ctx.bucket):
        raise S3Error("InvalidRequest", "CreateSession is only for directory buckets.")
    try:
        validate_directory_bucket_name(ctx.bucket)
    except InvalidName as exc:
        raise S3Error(exc.code, exc.message) from None
    arn = bucket_arn(ctx.region, ctx.account, ctx.bucket)
    require(ctx.ident, "s3express:CreateSession", arn,
            request_context(ctx.req, ctx.ident, ctx.now, {"s3express:SessionMode": mode}))
    # A session may be issued for a bucket that does not exist yet: boto3 creates a session
    # before CreateBucket (wire reference §3.4). Existence is enforced on the data operation.
    record = await backend.bucket(ctx.bucket, fresh=True)
    check_sse_request_headers(ctx.req, record)
    sse, kms_arn = "AES256", None
    if record is not None and record.get("sse_algorithm") == "aws:kms":
        sse, kms_arn = "aws:kms", record.get("kms_key_arn")
        if not kms_permitted(ctx.ident, kms_arn, ctx.req, ctx.now):
            raise S3Error("AccessDenied", f"User {ctx.ident.context.user_arn} is not authorized to perform "
                          f"kms:GenerateDataKey and kms:Decrypt on {kms_arn}, which CreateSession on an "
                          "SSE-KMS bucket requires.")
    expires = int(ctx.now) + ctx.session_ttl_s
    session = sessions.Session(secrets.token_bytes(16), ctx.bucket, ctx.ident.context.access_key_id,
                               ctx.ident.context.user_arn, mode, expires, sse, kms_arn)
    token, secret = sessions.mint(ctx.session_key, session)
    body = s3responses.create_session_result(session.access_key_id, secret, token, float(expires))
    headers = [XML] + (sse_headers(record) if record else [])
    return HttpResponse(200, headers, body)


async def create_bucket(ctx: BucketCtx, backend: Backend) -> HttpResponse:
    try:
        cfg = parse_create_bucket_configuration(ctx.body)
    except XmlError as exc:
        raise S3Error(exc.code, exc.message) from None
    if not is_directory_bucket_name(ctx.bucket):
        return await _create_general_bucket(ctx, backend, cfg)
    try:
        _, zone = validate_directory_bucket_name(ctx.bucket)
    except InvalidName as exc:
        raise S3Error(exc.code, exc.message) from None
    if cfg.location_name is not None and cfg.location_name != zone:
        raise S3Error("InvalidRequest",
                      f"The zone in the bucket name ({zone}) does not match the configured location ({cfg.location_name}).")
    if cfg.bucket_type not in (None, "Directory"):
        raise S3Error("InvalidRequest", "Bucket type must be Directory.")
    r = await backend.coord("CreateBucket", {"name": ctx.bucket, "owner": ctx.ident.context.user_arn,
                                             "zone": cfg.location_name or zone})
    backend.remember_bucket(r["bucket"])
    return HttpResponse(200, [("location", "/" + ctx.bucket),
                              ("x-amz-bucket-arn", r["bucket"]["arn"])])


async def _create_general_bucket(ctx: BucketCtx, backend: Backend, cfg: Any) -> HttpResponse:
    """A general-purpose bucket, in the cluster's default zone (chosen by the coordinator)."""
    try:
        validate_general_bucket_name(ctx.bucket)
    except InvalidName as exc:
        raise S3Error(exc.code, exc.message) from None
    if cfg.location_name is not None or cfg.bucket_type is not None or cfg.data_redundancy is not None:
        raise S3Error("InvalidArgument", "Location and Bucket configuration are only for directory buckets "
                      "(<base>--<zone-id>--x-s3); a general-purpose bucket takes a LocationConstraint.")
    # S3: no constraint means us-east-1; a constraint must name the region this endpoint serves
    if (cfg.location_constraint or "us-east-1") != ctx.region:
        raise S3Error("IllegalLocationConstraintException",
                      f"The {cfg.location_constraint or 'unspecified'} location constraint is incompatible "
                      f"for the region specific endpoint this request was sent to ({ctx.region}).")
    r = await backend.coord("CreateBucket", {"name": ctx.bucket, "owner": ctx.ident.context.user_arn})
    backend.remember_bucket(r["bucket"])
    return HttpResponse(200, [("location", "/" + ctx.bucket)])


async def require_bucket(backend: Backend, name: str) -> dict[str, Any]:
    record = await backend.bucket(name)
    if record is None:
        raise S3Error("NoSuchBucket", resource="/" + name, extra={"BucketName": name})
    return record


async def head_bucket(ctx: BucketCtx, backend: Backend) -> HttpResponse:
    record = await require_bucket(backend, ctx.bucket)
    return HttpResponse(200, [("x-amz-bucket-location-type", "AvailabilityZone"),
                              ("x-amz-bucket-location-name", record["zone"]),
                              ("x-amz-bucket-region", ctx.region),
                              ("x-amz-bucket-arn", record["arn"])])


async def delete_bucket(ctx: BucketCtx, backend: Backend) -> HttpResponse:
    record = await require_bucket(backend, ctx.bucket)
    listing = await backend.node_call(record, "ListObjects", {"bucket": ctx.bucket, "bucket_version": record["version"],
                                                              "max_keys": 1}, any_replica=True)
    if listing.get("objects"):
        raise S3Error("BucketNotEmpty", resource="/" + ctx.bucket, extra={"BucketName": ctx.bucket})
    await backend.coord("DeleteBucket", {"name": ctx.bucket})
    backend.forget_bucket(ctx.bucket)
    return HttpResponse(204)


async def put_bucket_encryption(ctx: BucketCtx, backend: Backend) -> HttpResponse:
    try:
        cfg = parse_encryption_configuration(ctx.body)
    except XmlError as exc:
        raise S3Error(exc.code, exc.message) from None
    if cfg.sse_algorithm not in ("AES256", "aws:kms"):
        raise S3Error("InvalidArgument", "Directory buckets support only AES256 and aws:kms.")
    if cfg.sse_algorithm == "aws:kms" and not cfg.kms_key_id:
        raise S3Error("InvalidArgument", "aws:kms requires a KMSMasterKeyID (a key id or key ARN).")
    if cfg.kms_key_id and (cfg.kms_key_id.startswith("alias/") or ":alias/" in cfg.kms_key_id):
        raise S3Error("InvalidArgument", "Directory buckets need a KMS key id or key ARN, not an alias.")
    if cfg.bucket_key_enabled is False:
        raise S3Error("InvalidArgument", "S3 Bucket Keys are always enabled for directory buckets.")
    await require_bucket(backend, ctx.bucket)
    args: dict[str, Any] = {"name": ctx.bucket, "sse_algorithm": cfg.sse_algorithm, "bucket_key_enabled": True}
    if cfg.kms_key_id:
        args["kms_key_id"] = cfg.kms_key_id
    r = await backend.coord("PutBucketEncryption", args)
    backend.remember_bucket(r["bucket"])
    return HttpResponse(200)


async def get_bucket_encryption(ctx: BucketCtx, backend: Backend) -> HttpResponse:
    record = await require_bucket(backend, ctx.bucket)
    body = s3responses.encryption_configuration(record.get("sse_algorithm", "AES256"),
                                                record.get("kms_key_arn"), True)
    return HttpResponse(200, [XML], body)


async def list_buckets(req: HttpRequest, ident: Identity, backend: Backend, *, directory: bool,
                       region: str, account: str) -> HttpResponse:
    r = await backend.coord("ListBuckets", {})
    buckets = [b for b in r["buckets"] if is_directory_bucket_name(b["name"]) == directory]
    query = parse_query(req.target.partition("?")[2])
    if directory:
        try:
            limit = max(1, min(1000, int(query.get("max-directory-buckets", "1000"))))
        except ValueError:
            raise S3Error("InvalidArgument", "max-directory-buckets must be an integer.") from None
        start = query.get("continuation-token")
        if start:
            try:
                start_name = base64.urlsafe_b64decode(start.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                raise S3Error("InvalidArgument", "Invalid continuation token.") from None
            buckets = [b for b in buckets if b["name"] > start_name]
        page, more = buckets[:limit], len(buckets) > limit
        token = base64.urlsafe_b64encode(page[-1]["name"].encode()).decode() if more else None
        body = s3responses.list_directory_buckets_result(
            [(b["name"], b["created"], region, b["arn"]) for b in page], token)
    else:
        body = s3responses.list_buckets_result(account, ident.context.user_name,
                                               [(b["name"], b["created"]) for b in buckets], region=region)
    return HttpResponse(200, [XML], body)
