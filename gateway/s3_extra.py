"""Dispatch of the S3 operations beyond the basic object calls, and the copy operations.

``bucket_op`` and ``object_op`` are what ``gateway.app`` calls for operations it does not
handle itself: listings and DeleteObjects (``gateway.s3_lists``), multipart
(``gateway.s3_multipart``), CopyObject / UploadPartCopy (here) and GetObjectAttributes (here).
Anything else answers NotImplemented with a clear message (docs/s3-api.md lists them all).

Copies stream the source's plaintext from its bucket's nodes into a ``PutObject`` on the
destination's primary, which seals it under the destination's key: a copy across buckets
re-encrypts under the destination bucket's key, and memory stays bounded.
"""

from __future__ import annotations

import email.utils
from typing import Any
from urllib.parse import unquote

from gateway import s3_lists, s3_multipart, s3_rename, s3responses
from gateway.auth import Identity, kms_permitted, object_allowed, request_context, require
from gateway.backend import Backend
from gateway.errors import S3Error
from gateway.http import HttpRequest, HttpResponse
from gateway.s3_buckets import check_sse_request_headers, require_bucket
from gateway.s3_objects import (
    META_FIELDS,
    _parse_http_date,
    _user_meta,
    check_session_kms,
    object_sse_headers,
)
from gateway.xmlbuild import document, leaf, node, opt
from proto import checksums
from proto import errors as rpc_errors
from proto.names import bucket_arn, is_directory_bucket_name

OBJECT_OPS = frozenset({"UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload", "ListParts",
                        "CreateMultipartUpload", "GetObjectAttributes", "RenameObject"})
XML = ("content-type", "application/xml")
MAX_COPY_BYTES = 5 * 1024 ** 3
_COPIED_FIELDS = ("content_type", "user_meta", "cache_control", "content_disposition", "content_encoding",
                  "content_language", "expires")


async def bucket_op(op: str, ctx: Any, backend: Backend, query: dict[str, str], cfg: Any) -> HttpResponse:
    if op in ("ListObjectsV2", "ListObjects"):
        return await s3_lists.list_objects(ctx.req, backend, ctx.bucket, query, account=ctx.account,
                                           v2=op == "ListObjectsV2")
    if op == "DeleteObjects":
        may_delete = None
        if not is_directory_bucket_name(ctx.bucket):  # each key needs s3:DeleteObject on its ARN
            def may_delete(key: str) -> bool:
                return object_allowed(ctx.ident, "s3:DeleteObject", ctx.bucket, key, ctx.req, region=ctx.region,
                                      account=ctx.account, now=ctx.now)
        return await s3_lists.delete_objects(ctx.req, backend, ctx.bucket, ctx.body, may_delete=may_delete)
    if op == "ListMultipartUploads":
        return await s3_multipart.list_uploads(backend, ctx.bucket, query)
    raise S3Error("NotImplemented", f"{op} is not supported by onezone yet.")


async def object_op(op: str, req: HttpRequest, ident: Identity, backend: Backend, bucket: str, key: str,
                    query: dict[str, str], *, now: float, cfg: Any, body: bytes) -> HttpResponse:
    copy_source = req.header("x-amz-copy-source")
    if op == "PutObject":
        return await copy_object(req, ident, backend, bucket, key, copy_source or "", now=now, cfg=cfg)
    if op == "UploadPart":
        if copy_source is not None:
            return await upload_part_copy(req, ident, backend, bucket, key, query, copy_source, now=now, cfg=cfg)
        return await s3_multipart.upload_part(req, ident, backend, bucket, key, query, now=now,
                                              max_bytes=cfg.max_object_bytes)
    if op == "CreateMultipartUpload":
        return await s3_multipart.create(req, ident, backend, bucket, key, now=now)
    if op == "CompleteMultipartUpload":
        return await s3_multipart.complete(req, ident, backend, bucket, key, query, body, now=now)
    if op == "AbortMultipartUpload":
        return await s3_multipart.abort(backend, bucket, key, query)
    if op == "ListParts":
        return await s3_multipart.list_parts(backend, bucket, key, query)
    if op == "GetObjectAttributes":
        return await get_object_attributes(req, ident, backend, bucket, key, now=now)
    if op == "RenameObject":
        return await s3_rename.rename_object(req, backend, bucket, key)
    raise S3Error("NotImplemented", f"{op} is not supported by onezone yet.")


# -- copy sources ----------------------------------------------------------------------------------
def parse_copy_source(value: str) -> tuple[str, str]:
    raw, _, version = value.partition("?")
    if version and version not in ("versionId=null",):
        raise S3Error("NotImplemented", "Object versions are not supported for directory buckets.")
    path = unquote(raw).lstrip("/")
    bucket, _, key = path.partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
                      extra={"ArgumentName": "x-amz-copy-source"})
    s3_lists.check_user_key(key)
    return bucket, key


def authorize_source(req: HttpRequest, ident: Identity, bucket: str, key: str, *, region: str, account: str,
                     now: float) -> None:
    """Reading the copy source needs the same rights as reading it directly."""
    if ident.session is not None:
        if ident.session.bucket != bucket:
            raise S3Error("AccessDenied", "A session token only covers its own bucket; sign copies across "
                          "buckets with IAM credentials.")
        return
    arn = bucket_arn(region, account, bucket)
    # (the request's bucket policy is the destination's: the source is judged by IAM alone)
    if is_directory_bucket_name(bucket):
        require(ident, "s3express:CreateSession", arn,
                request_context(req, ident, now, {"s3express:SessionMode": "ReadOnly"}), with_bucket_policy=False)
    else:
        require(ident, "s3:GetObject", f"{arn}/{key}", request_context(req, ident, now), with_bucket_policy=False)


def check_copy_conditions(req: HttpRequest, meta: dict[str, Any]) -> None:
    """x-amz-copy-source-if-*: every failure is 412 (S3's rule for copies)."""
    etag, lm = meta["etag"], int(meta["last_modified"])
    fail = S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
    im = req.header("x-amz-copy-source-if-match")
    if im is not None and etag not in [t.strip().strip('"') for t in im.split(",")] and im.strip() != "*":
        raise fail
    inm = req.header("x-amz-copy-source-if-none-match")
    if inm is not None and (inm.strip() == "*" or etag in [t.strip().strip('"') for t in inm.split(",")]):
        raise fail
    ius = req.header("x-amz-copy-source-if-unmodified-since")
    t = _parse_http_date(ius) if ius else None
    if im is None and t is not None and lm > t:
        raise fail
    ims = req.header("x-amz-copy-source-if-modified-since")
    t = _parse_http_date(ims) if ims else None
    if inm is None and t is not None and lm <= t:
        raise fail


async def _source(req: HttpRequest, ident: Identity, backend: Backend, copy_source: str, *, now: float,
                  cfg: Any) -> tuple[dict[str, Any], str, dict[str, Any]]:
    src_bucket, src_key = parse_copy_source(copy_source)
    authorize_source(req, ident, src_bucket, src_key, region=cfg.region, account=cfg.account_id, now=now)
    src_record = await require_bucket(backend, src_bucket)
    if ident.session is None and src_record.get("sse_algorithm") == "aws:kms" and src_record.get("kms_key_arn") \
            and not kms_permitted(ident, src_record["kms_key_arn"], req, now):
        raise S3Error("AccessDenied", f"kms:Decrypt on {src_record['kms_key_arn']} is required to read the source.")
    check_session_kms(req, ident, src_record, now)
    try:
        meta = (await backend.node_call(src_record, "HeadObject", {"bucket": src_bucket, "key": src_key,
                                                                   "bucket_version": src_record["version"]},
                                        any_replica=True))["meta"]
    except rpc_errors.NotFound as exc:
        if exc.kind == "NoSuchBucket":
            raise S3Error("NoSuchBucket", resource="/" + src_bucket) from None
        raise S3Error("NoSuchKey", resource=f"/{src_bucket}/{src_key}", extra={"Key": src_key}) from None
    check_copy_conditions(req, meta)
    return src_record, src_key, meta


def _algo(req: HttpRequest, fallback: str | None) -> str:
    value = (req.header("x-amz-checksum-algorithm") or fallback or "CRC32").upper()
    if value not in checksums.ALGORITHMS:
        raise S3Error("InvalidRequest", f"Checksum algorithm {value[:32]!r} is not supported.")
    return value


async def copy_object(req: HttpRequest, ident: Identity, backend: Backend, bucket: str, key: str,
                      copy_source: str, *, now: float, cfg: Any) -> HttpResponse:
    for header in ("x-amz-tagging", "x-amz-acl", "x-amz-website-redirect-location", "x-amz-object-lock-mode"):
        if req.header(header) is not None:
            raise S3Error("NotImplemented", f"{header} is not supported for directory buckets.")
    directive = (req.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.", extra={"ArgumentName": "x-amz-metadata-directive"})
    src_record, src_key, src_meta = await _source(req, ident, backend, copy_source, now=now, cfg=cfg)
    if src_meta["size"] > MAX_COPY_BYTES:
        raise S3Error("InvalidRequest", "The specified copy source is larger than the maximum allowable size for "
                      "a copy source: 5368709120")
    record = await require_bucket(backend, bucket)
    check_sse_request_headers(req, record)
    check_session_kms(req, ident, record, now)
    if src_record["name"] == bucket and src_key == key and directive == "COPY" \
            and req.header("x-amz-checksum-algorithm") is None:
        raise S3Error("InvalidRequest", "This copy request is illegal because it is trying to copy an object to "
                      "itself without changing the object's metadata, storage class, website redirect location or "
                      "encryption attributes.")
    if directive == "COPY":
        meta = {k: src_meta[k] for k in _COPIED_FIELDS if src_meta.get(k) is not None}
    else:
        meta = {"user_meta": _user_meta(req)}
        for header, field in META_FIELDS.items():
            if req.header(header) is not None:
                meta[field] = req.header(header)
        if req.header("content-encoding"):
            meta["content_encoding"] = req.header("content-encoding")
    algo = _algo(req, src_meta.get("checksum_algorithm"))
    meta["checksum_algorithm"] = algo
    args: dict[str, Any] = {"bucket": bucket, "key": key, "bucket_version": record["version"], "meta": meta}
    if (req.header("if-none-match") or "").strip() == "*":
        args["if_none_match"] = True
    if req.header("if-match") is not None:
        args["if_match"] = (req.header("if-match") or "").strip().strip('"')
    stream = s3_multipart.concat_objects(backend, record, [src_key], src_meta["size"], src_record=src_record)
    done = (await backend.node_call(record, "PutObject", args, body=stream))["meta"]
    body = s3responses.copy_object_result(done["etag"], done["last_modified"],
                                          {algo: done["checksum_value"]} if done.get("checksum_value") else None,
                                          checksum_type="FULL_OBJECT" if done.get("checksum_value") else None)
    return HttpResponse(200, [XML] + object_sse_headers(done, record), body)


def _copy_range(header: str | None, size: int) -> tuple[int, int] | None:
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    first_s, dash, last_s = spec.partition("-")
    if unit != "bytes" or not dash or not first_s.isdigit() or not last_s.isdigit():
        raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last "
                      "where first and last are the zero-based offsets of the first and last bytes to copy",
                      extra={"ArgumentName": "x-amz-copy-source-range"})
    first, last = int(first_s), int(last_s)
    if first > last or last >= size:
        raise S3Error("InvalidRange", "The requested range is not satisfiable",
                      headers={"content-range": f"bytes */{size}"})
    return first, last


async def upload_part_copy(req: HttpRequest, ident: Identity, backend: Backend, bucket: str, key: str,
                           query: dict[str, str], copy_source: str, *, now: float, cfg: Any) -> HttpResponse:
    number = s3_multipart.part_number(query)
    record = await require_bucket(backend, bucket)
    check_sse_request_headers(req, record)
    upload = await s3_multipart.load_upload(backend, record, key, query.get("uploadId", ""))
    src_record, src_key, src_meta = await _source(req, ident, backend, copy_source, now=now, cfg=cfg)
    rng = _copy_range(req.header("x-amz-copy-source-range"), src_meta["size"])
    length = src_meta["size"] if rng is None else rng[1] - rng[0] + 1
    if length > MAX_COPY_BYTES:
        raise S3Error("InvalidRequest", "A copied part may be at most 5 GiB.")
    algo = (upload.get("multipart") or {}).get("algorithm") or "CRC32"
    args = {"bucket": bucket, "key": s3_multipart.part_key(upload["multipart"]["upload_id"], number),
            "bucket_version": record["version"], "meta": {"checksum_algorithm": algo}}
    stream = s3_multipart.concat_objects(backend, record, [src_key], length, ranges=[rng] if rng else None,
                                         src_record=src_record)
    done = (await backend.node_call(record, "PutObject", args, body=stream))["meta"]
    body = s3responses.copy_part_result(done["etag"], done["last_modified"],
                                        {algo: done["checksum_value"]} if done.get("checksum_value") else None)
    return HttpResponse(200, [XML] + object_sse_headers(done, record), body)


# -- GetObjectAttributes ---------------------------------------------------------------------------
ATTRIBUTES = frozenset({"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"})


async def get_object_attributes(req: HttpRequest, ident: Identity, backend: Backend, bucket: str, key: str, *,
                                now: float) -> HttpResponse:
    wanted = {a.strip() for a in (req.header("x-amz-object-attributes") or "").split(",") if a.strip()}
    if not wanted or not wanted <= ATTRIBUTES:
        raise S3Error("InvalidArgument", "x-amz-object-attributes must list some of ETag, Checksum, ObjectParts, "
                      "StorageClass, ObjectSize.", extra={"ArgumentName": "x-amz-object-attributes"})
    record = await require_bucket(backend, bucket)
    check_session_kms(req, ident, record, now)
    try:
        meta = (await backend.node_call(record, "HeadObject", {"bucket": bucket, "key": key,
                                                               "bucket_version": record["version"]},
                                        any_replica=True))["meta"]
    except rpc_errors.NotFound:
        raise S3Error("NoSuchKey", resource=f"/{bucket}/{key}", extra={"Key": key}) from None
    mp = meta.get("multipart") or {}
    parts = mp.get("parts")
    children = []
    if "ETag" in wanted:
        children.append(leaf("ETag", meta["etag"]))
    if "Checksum" in wanted and meta.get("checksum_algorithm"):
        algo = meta["checksum_algorithm"]
        if mp.get("checksum_type") == "COMPOSITE" and mp.get("checksum"):
            children.append(node("Checksum", leaf("Checksum" + mp["algorithm"], mp["checksum"]),
                                 leaf("ChecksumType", "COMPOSITE")))
        elif meta.get("checksum_value"):
            children.append(node("Checksum", leaf("Checksum" + algo, meta["checksum_value"]),
                                 leaf("ChecksumType", "FULL_OBJECT")))
    if "ObjectParts" in wanted and parts is not None:
        hdrs = {"max-parts": req.header("x-amz-max-parts") or "",
                "part-number-marker": req.header("x-amz-part-number-marker") or ""}
        max_parts = min(s3_lists._int_param(hdrs, "max-parts", 1000), 1000)
        marker = s3_lists._int_param(hdrs, "part-number-marker", 0)
        page = [(i + 1, p) for i, p in enumerate(parts)][marker: marker + max_parts]
        algo = mp.get("algorithm")
        children.append(node(
            "ObjectParts", leaf("PartsCount", len(parts)), leaf("PartNumberMarker", marker),
            opt("NextPartNumberMarker", page[-1][0] if page else None), leaf("MaxParts", max_parts),
            leaf("IsTruncated", marker + max_parts < len(parts)),
            *(node("Part", leaf("PartNumber", n), leaf("Size", p[0]),
                   opt("Checksum" + algo, p[1]) if algo else "") for n, p in page)))
    if "StorageClass" in wanted:
        children.append(leaf("StorageClass", "STANDARD" if record.get("type") == "GeneralPurpose"
                             else "EXPRESS_ONEZONE"))
    if "ObjectSize" in wanted:
        children.append(leaf("ObjectSize", meta["size"]))
    headers = [XML, ("last-modified", email.utils.formatdate(meta["last_modified"], usegmt=True))]
    return HttpResponse(200, headers + object_sse_headers(meta, record),
                        document("GetObjectAttributesResponse", *children))

