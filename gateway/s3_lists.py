"""Listing and batch operations: ListObjectsV2, ListObjects (v1) and DeleteObjects.

Listings are built at the gateway from the node's ``ListObjects`` pages (keys in UTF-8 byte
order, at most 1000 per call): the gateway rolls keys up into CommonPrefixes at the delimiter
and, once a prefix is emitted, jumps past every key under it (``start_after`` = the prefix
followed by U+10FFFF), so a directory holding a million keys costs one node call, not a
thousand. A request makes at most ``MAX_NODE_CALLS`` node calls; when that budget runs out
the page is returned truncated with a continuation token (S3 may return fewer keys than
asked for).

Directory buckets (``--x-s3``) follow AWS's rules: the only delimiter is ``/`` and a prefix
must end in ``/``. General-purpose buckets accept any delimiter and prefix.

Keys under ``RESERVED_PREFIX`` are the gateway's own (in-progress multipart uploads, see
``gateway.s3_multipart``): they never appear in a listing, a client may not name them.

Continuation tokens are the URL-safe base64 of the last key or prefix returned; they are not
secret (the same information is in the page) and a malformed one is InvalidArgument.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import trio

from gateway import s3responses
from gateway.backend import Backend, s3_error
from gateway.errors import S3Error
from gateway.http import HttpRequest, HttpResponse
from gateway.s3_buckets import require_bucket
from gateway.s3listings import ListedObject
from gateway.s3xml import XmlError, parse_delete_objects
from gateway.xmlbuild import document, format_timestamp, key_encoder, leaf, node, opt, person, quote_etag
from proto import checksums
from proto import errors as rpc_errors
from proto.names import InvalidName, is_directory_bucket_name, validate_object_key

XML = ("content-type", "application/xml")
RESERVED_PREFIX = "\x01"
"""Keys starting with this character belong to the gateway (multipart state)."""
_AFTER_RESERVED = "\x01\U0010ffff\U0010ffff"
_PAST = "\U0010ffff"
MAX_KEYS = 1000
MAX_NODE_CALLS = 50
DELETE_CONCURRENCY = 16


def check_user_key(key: str) -> None:
    """A key a client may name: valid UTF-8, 1..1024 bytes, no NUL, not in the reserved space."""
    try:
        validate_object_key(key)
    except InvalidName as exc:
        raise S3Error(exc.code, str(exc)) from None
    if key.startswith(RESERVED_PREFIX):
        raise S3Error("InvalidArgument", "Object keys starting with U+0001 are reserved by onezone.")


def _int_param(query: dict[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise S3Error("InvalidArgument", f"Provided {name} not an integer or within integer range",
                      extra={"ArgumentName": name, "ArgumentValue": raw[:64]})
    return int(raw)


def encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode("utf-8")).decode()


def decode_token(token: str) -> str:
    try:
        marker = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                      extra={"ArgumentName": "continuation-token"}) from None
    if not marker or len(marker.encode()) > 1100:
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                      extra={"ArgumentName": "continuation-token"})
    return marker


class Lister:
    """Walk a bucket's keys under ``prefix`` after ``marker``, rolled up at ``delimiter``."""

    def __init__(self, backend: Backend, record: dict[str, Any], *, prefix: str, delimiter: str | None,
                 marker: str) -> None:
        self.backend = backend
        self.record = record
        self.prefix = prefix
        self.delimiter = delimiter or None
        self.marker = marker

    async def page(self, max_keys: int) -> tuple[list[dict[str, Any]], list[str], bool, str | None]:
        """(objects, common prefixes, truncated, last key or prefix returned)."""
        objects: list[dict[str, Any]] = []
        prefixes: list[str] = []
        after = self.marker
        if self.delimiter and after.startswith(self.prefix):
            idx = after.find(self.delimiter, len(self.prefix))
            if idx >= 0:  # the marker is (under) a common prefix already returned: skip all of it
                after = after[: idx + len(self.delimiter)] + _PAST
        if after < _AFTER_RESERVED:
            after = _AFTER_RESERVED
        last: str | None = None
        calls = 0
        while len(objects) + len(prefixes) < max_keys:
            if calls >= MAX_NODE_CALLS:
                return objects, prefixes, True, last
            calls += 1
            want = MAX_KEYS if self.delimiter else min(MAX_KEYS, max_keys - len(objects) - len(prefixes))
            r = await self.backend.node_call(
                self.record, "ListObjects", {"bucket": self.record["name"], "bucket_version": self.record["version"],
                                             "prefix": self.prefix, "start_after": after, "max_keys": want},
                any_replica=True)
            rows = r.get("objects", [])
            jumped = False
            for meta in rows:
                key = meta["key"]
                if len(objects) + len(prefixes) >= max_keys:
                    return objects, prefixes, True, last
                if self.delimiter:
                    idx = key.find(self.delimiter, len(self.prefix))
                    if idx >= 0:
                        cp = key[: idx + len(self.delimiter)]
                        if cp != last:
                            prefixes.append(cp)
                            last = cp
                        after = cp + _PAST
                        jumped = True
                        break
                objects.append(meta)
                last = after = key
            if not jumped and not r.get("truncated"):
                return objects, prefixes, False, last
        more = await self._more(after)
        return objects, prefixes, more, last

    async def _more(self, after: str) -> bool:
        r = await self.backend.node_call(
            self.record, "ListObjects", {"bucket": self.record["name"], "bucket_version": self.record["version"],
                                         "prefix": self.prefix, "start_after": after, "max_keys": 1},
            any_replica=True)
        return bool(r.get("objects"))


def _listing_params(bucket: str, query: dict[str, str]) -> tuple[str, str | None, str | None, int]:
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter") or None
    encoding = query.get("encoding-type") or None
    if encoding not in (None, "url"):
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      extra={"ArgumentName": "encoding-type", "ArgumentValue": encoding[:64]})
    for name, value in (("prefix", prefix), ("delimiter", delimiter or "")):
        if len(value.encode("utf-8", "surrogatepass")) > 1024:
            raise S3Error("InvalidArgument", f"The {name} is too long.")
    if is_directory_bucket_name(bucket):
        if delimiter not in (None, "/"):
            raise S3Error("InvalidArgument", "Directory buckets support only the delimiter '/'.",
                          extra={"ArgumentName": "delimiter", "ArgumentValue": delimiter[:64]})
        if prefix and not prefix.endswith("/"):
            raise S3Error("InvalidRequest", "This bucket does not support a prefix that does not end in a "
                          "delimiter. Specify a prefix path ending with a delimiter and try again.")
    max_keys = min(_int_param(query, "max-keys", MAX_KEYS), MAX_KEYS)
    return prefix, delimiter, encoding, max_keys


def _listed(meta: dict[str, Any], owner: tuple[str, str | None] | None, storage_class: str) -> ListedObject:
    algo = meta.get("checksum_algorithm")
    return ListedObject(key=meta["key"], last_modified=meta["last_modified"], etag=meta["etag"], size=meta["size"],
                        owner=owner, storage_class=storage_class, checksum_algorithm=algo,
                        checksum_type=(meta.get("multipart") or {}).get("checksum_type", "FULL_OBJECT") if algo else None)


def _owner(record: dict[str, Any], account: str) -> tuple[str, str | None]:
    return (account, None)


async def list_objects(req: HttpRequest, backend: Backend, bucket: str, query: dict[str, str], *,
                       account: str, v2: bool) -> HttpResponse:
    record = await require_bucket(backend, bucket)
    prefix, delimiter, encoding, max_keys = _listing_params(bucket, query)
    if v2:
        token = query.get("continuation-token")
        start_after = query.get("start-after") or None
        marker = decode_token(token) if token else (start_after or "")
    else:
        token, start_after = None, None
        marker = query.get("marker", "")
    if marker and len(marker.encode("utf-8", "surrogatepass")) > 1100:
        raise S3Error("InvalidArgument", "The marker is too long.")
    lister = Lister(backend, record, prefix=prefix, delimiter=delimiter, marker=marker)
    if max_keys == 0:
        objects, prefixes, truncated, last = [], [], False, None
    else:
        objects, prefixes, truncated, last = await lister.page(max_keys)
    fetch_owner = query.get("fetch-owner", "").lower() == "true"
    if v2:
        owner = _owner(record, account) if fetch_owner else None
        body = s3responses.list_objects_v2_result(
            bucket=bucket, contents=[_listed(m, owner, "EXPRESS_ONEZONE" if is_directory_bucket_name(bucket) else "STANDARD")
                                         for m in objects], common_prefixes=prefixes, prefix=prefix,
            delimiter=delimiter, max_keys=max_keys, is_truncated=truncated, continuation_token=token,
            next_continuation_token=encode_token(last) if truncated and last else None,
            start_after=start_after, encoding_type=encoding)
    else:
        body = _list_v1(bucket, objects, prefixes, prefix=prefix, delimiter=delimiter, marker=marker,
                        max_keys=max_keys, truncated=truncated, last=last, encoding=encoding,
                        owner=_owner(record, account))
    return HttpResponse(200, [XML], body)


def _list_v1(bucket: str, objects: list[dict[str, Any]], prefixes: list[str], *, prefix: str,
             delimiter: str | None, marker: str, max_keys: int, truncated: bool, last: str | None,
             encoding: str | None, owner: tuple[str, str | None]) -> bytes:
    enc = key_encoder(encoding)
    entries = [node("Contents", leaf("Key", enc(m["key"])), leaf("LastModified", format_timestamp(m["last_modified"])),
                    leaf("ETag", quote_etag(m["etag"])), leaf("Size", m["size"]),
                    leaf("StorageClass", "EXPRESS_ONEZONE" if is_directory_bucket_name(bucket) else "STANDARD"),
                    person("Owner", owner))
               for m in objects]
    return document(
        "ListBucketResult", leaf("Name", bucket), leaf("Prefix", enc(prefix)), leaf("Marker", enc(marker)),
        opt("NextMarker", enc(last) if truncated and last else None), leaf("MaxKeys", max_keys),
        opt("Delimiter", None if delimiter is None else enc(delimiter)), leaf("IsTruncated", truncated),
        opt("EncodingType", encoding), *entries,
        *(node("CommonPrefixes", leaf("Prefix", enc(p))) for p in prefixes))


# -- DeleteObjects ---------------------------------------------------------------------------------
def verify_body_checksum(req: HttpRequest, body: bytes, *, required: bool) -> None:
    """Check the x-amz-checksum-* or Content-MD5 header against a buffered body.

    Raises:
        S3Error: InvalidRequest when a checksum is required and absent, BadDigest / InvalidDigest
            on a mismatch.
    """
    md5 = req.header("content-md5")
    if md5 is not None:
        want = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        if not hmac.compare_digest(md5.strip(), want):
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")
        return
    for algo in checksums.ALGORITHMS:
        value = req.header(checksums.header_name(algo))
        if value is not None:
            c = checksums.new_checksum(algo)
            c.update(body)
            if not hmac.compare_digest(c.b64digest(), value.strip()):
                raise S3Error("BadDigest", f"The {algo} you specified did not match the calculated checksum.")
            return
    if required:
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5 or x-amz-checksum-*.")


async def delete_objects(req: HttpRequest, backend: Backend, bucket: str, body: bytes, *,
                         may_delete: Callable[[str], bool] | None = None) -> HttpResponse:
    """``may_delete(key)`` (general-purpose buckets) refuses a key with a per-key AccessDenied."""
    record = await require_bucket(backend, bucket)
    verify_body_checksum(req, body, required=True)
    try:
        request = parse_delete_objects(body)
    except XmlError as exc:
        raise S3Error(exc.code, exc.message) from None
    results: list[tuple[str, str | None, str]] = [("", None, "")] * len(request.objects)
    limiter = trio.CapacityLimiter(DELETE_CONCURRENCY)
    base = {"bucket": bucket, "bucket_version": record["version"]}

    async def one(i: int, key: str, etag: str | None) -> None:
        async with limiter:
            try:
                check_user_key(key)
                if may_delete is not None and not may_delete(key):
                    raise S3Error("AccessDenied")
                if etag is not None:
                    try:
                        meta = (await backend.node_call(record, "HeadObject", dict(base, key=key)))["meta"]
                    except rpc_errors.NotFound:
                        raise S3Error("NoSuchKey") from None
                    if etag.strip().strip('"') not in (meta["etag"], "*"):
                        raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
                await backend.node_call(record, "DeleteObject", dict(base, key=key))
                results[i] = (key, None, "")
            except S3Error as exc:
                results[i] = (key, exc.code, exc.message)
            except rpc_errors.RpcError as exc:
                err = s3_error(exc)
                results[i] = (key, err.code, err.message)

    async with trio.open_nursery() as nursery:
        for i, obj in enumerate(request.objects):
            nursery.start_soon(one, i, obj.key, obj.etag)
    deleted = [] if request.quiet else [k for k, code, _ in results if code is None]
    errors = [(k, code, msg) for k, code, msg in results if code is not None]
    return HttpResponse(200, [XML], s3responses.delete_result(deleted, errors))
