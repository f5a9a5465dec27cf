"""RenameObject: ``PUT /{bucket}/{destination}?renameObject`` with ``x-amz-rename-source``.

The gateway parses and checks the request; the bucket's primary node does the rest (a
metadata-only, atomic move of the index entry on every replica: ``node.rename``; no data is
read or rewritten and no KMS call is made).

Wire details (../shared/reference/s3express-wire.md, 6.14): botocore sends
``x-amz-rename-source`` exactly as the caller typed it (``bucket/key``, not URL-encoded) although
AWS documents it as URL-encoded, so the value is ``unquote``d (never ``unquote_plus``: a ``+`` is
a plus) and both forms work; a leading ``/`` is accepted. The source must be in the same
bucket (a directory-bucket rule). ``x-amz-client-token`` makes the call idempotent.
Destination conditions: ``If-Match``, ``If-None-Match``, ``If-Modified-Since``,
``If-Unmodified-Since``; source conditions: the same names prefixed ``x-amz-rename-source-``.
Keys ending in ``/`` cannot be renamed (as on AWS).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from gateway.backend import Backend
from gateway.errors import S3Error
from gateway.http import HttpRequest, HttpResponse
from gateway.s3_buckets import require_bucket
from gateway.s3_lists import check_user_key
from gateway.s3_objects import _parse_http_date
from proto.names import is_directory_bucket_name

MAX_TOKEN_CHARS = 128
_ETAG_CONDITIONS = ("if-match", "if-none-match")
_DATE_CONDITIONS = ("if-modified-since", "if-unmodified-since")


def parse_rename_source(value: str | None, bucket: str) -> str:
    """The source key of ``x-amz-rename-source`` (``bucket/key``, URL-encoded or not).

    Raises:
        S3Error: InvalidArgument (missing or malformed header), InvalidRequest (another bucket).
    """
    if value is None or not value.strip():
        raise S3Error("InvalidArgument", "RenameObject needs the x-amz-rename-source header.")
    text = unquote(value.strip())
    src_bucket, slash, key = text.lstrip("/").partition("/")
    if not slash or not src_bucket or not key:
        raise S3Error("InvalidArgument", "x-amz-rename-source must be <bucket>/<key>.")
    if src_bucket != bucket:
        raise S3Error("InvalidRequest", "RenameObject renames within one directory bucket: the source "
                      "must be in the destination's bucket.")
    return key


def _conditions(req: HttpRequest, prefix: str, side: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _ETAG_CONDITIONS:
        value = req.header(prefix + name)
        if value is not None:
            tag = value.strip().strip('"')
            if not tag or len(tag) > 256 or "," in tag:
                raise S3Error("InvalidArgument", f"{prefix + name} takes one ETag or '*'.")
            out[f"{side}_{name.replace('-', '_')}"] = tag
    for name in _DATE_CONDITIONS:
        value = req.header(prefix + name)
        t = _parse_http_date(value) if value else None
        if t is not None:  # an unparseable date is ignored, as for GET
            out[f"{side}_{name.replace('-', '_')}"] = t
    return out


async def rename_object(req: HttpRequest, backend: Backend, bucket: str, key: str) -> HttpResponse:
    if not is_directory_bucket_name(bucket):
        raise S3Error("NotImplemented", "RenameObject is only supported for directory buckets.")
    source = parse_rename_source(req.header("x-amz-rename-source"), bucket)
    check_user_key(source)
    for k in (source, key):
        if k.endswith("/"):
            raise S3Error("InvalidRequest", "RenameObject does not rename keys that end with '/'.")
    token = req.header("x-amz-client-token")
    if token is not None and not 1 <= len(token) <= MAX_TOKEN_CHARS:
        raise S3Error("InvalidArgument", f"x-amz-client-token must be 1..{MAX_TOKEN_CHARS} characters.")
    record = await require_bucket(backend, bucket)
    args: dict[str, Any] = {"bucket": bucket, "key": key, "source_key": source, "bucket_version": record["version"],
                            **_conditions(req, "", "dest"), **_conditions(req, "x-amz-rename-source-", "source")}
    if token is not None:
        args["client_token"] = token
    await backend.node_call(record, "RenameObject", args)
    return HttpResponse(200, [])
