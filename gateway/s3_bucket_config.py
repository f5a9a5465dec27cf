"""Bucket configuration operations beyond creation: the bucket policy, DeleteBucketEncryption
and GetBucketLocation.

- Put/Get/DeleteBucketPolicy: the policy is stored in the coordinator's bucket record
  (``PutBucketPolicy`` / ``DeleteBucketPolicy`` RPCs, which validate it: ``MalformedPolicy``)
  and travels with the record to every gateway, which evaluates it together with the caller's
  IAM policies (``gateway.auth``). GetBucketPolicy answers the stored JSON text, or 404
  ``NoSuchBucketPolicy``.
- DeleteBucketEncryption: AWS resets a bucket to SSE-S3. onezone keeps "one customer-managed
  key per bucket for life": on an SSE-S3 bucket it is a no-op (204); on a bucket that has a
  customer-managed key it is refused (400 ``InvalidArgument``), exactly as PutBucketEncryption
  with AES256 is, because resetting would change the bucket's key.
- GetBucketLocation: the gateway's region (``LocationConstraint`` empty for us-east-1, as S3).
"""

from __future__ import annotations

from typing import Any

from gateway.backend import Backend
from gateway.errors import S3Error
from gateway.http import HttpResponse
from gateway.s3_buckets import BucketCtx, require_bucket
from gateway.s3_lists import verify_body_checksum
from gateway.xmlbuild import document, escape_text
from proto.bucket_policy import MAX_BUCKET_POLICY_BYTES


async def put_bucket_policy(ctx: BucketCtx, backend: Backend) -> HttpResponse:
    verify_body_checksum(ctx.req, ctx.body, required=False)
    if len(ctx.body) > MAX_BUCKET_POLICY_BYTES:
        raise S3Error("MalformedPolicy", f"Policies may be at most {MAX_BUCKET_POLICY_BYTES} bytes.")
    try:
        text = ctx.body.decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("MalformedPolicy", "Policies must be valid JSON (UTF-8).") from None
    if not text.strip().startswith("{"):
        raise S3Error("MalformedPolicy", "Policies must be valid JSON and the first byte must be '{'")
    await require_bucket(backend, ctx.bucket)
    r = await backend.coord("PutBucketPolicy", {"name": ctx.bucket, "policy": text})
    backend.remember_bucket(r["bucket"])
    return HttpResponse(204)


async def get_bucket_policy(ctx: BucketCtx, backend: Backend) -> HttpResponse:
    record = await require_bucket(backend, ctx.bucket)
    if not record.get("policy"):
        raise S3Error("NoSuchBucketPolicy", resource="/" + ctx.bucket, extra={"BucketName": ctx.bucket})
    return HttpResponse(200, [("content-type", "application/json")], record["policy"].encode("utf-8"))


async def delete_bucket_policy(ctx: BucketCtx, backend: Backend) -> HttpResponse:
    await require_bucket(backend, ctx.bucket)
    r = await backend.coord("DeleteBucketPolicy", {"name": ctx.bucket})
    backend.remember_bucket(r["bucket"])
    return HttpResponse(204)


async def delete_bucket_encryption(ctx: BucketCtx, backend: Backend) -> HttpResponse:
    record: dict[str, Any] = await require_bucket(backend, ctx.bucket)
    if record.get("kms_key_arn"):
        raise S3Error("InvalidArgument", f"The bucket {ctx.bucket} is encrypted with the customer-managed key "
                      f"{record['kms_key_arn']}, which cannot be changed for the bucket's lifetime, so its "
                      "encryption configuration cannot be deleted (reset to SSE-S3).")
    r = await backend.coord("PutBucketEncryption", {"name": ctx.bucket, "sse_algorithm": "AES256"})
    backend.remember_bucket(r["bucket"])
    return HttpResponse(204)


async def get_bucket_location(ctx: BucketCtx, backend: Backend) -> HttpResponse:
    await require_bucket(backend, ctx.bucket)
    region = "" if ctx.region == "us-east-1" else ctx.region
    return HttpResponse(200, [("content-type", "application/xml")], document("LocationConstraint", escape_text(region)))
