"""Multipart uploads: Create, UploadPart, Complete, Abort, ListParts, ListMultipartUploads.

Theory of operation
-------------------
An upload's state lives in the bucket itself, as ordinary replicated objects under keys a
client can never name (``RESERVED_PREFIX``, see ``gateway.s3_lists``):

    \\x01u/<upload id>              the upload: empty body; ``meta.multipart`` holds the target
                                   key, checksum algorithm and type, owner; the other meta fields
                                   (content type, user metadata...) are the final object's
    \\x01p/<upload id>/<NNNNN>      part N: the part's bytes, its MD5 ETag and its checksum

So any gateway serves any step of an upload, parts are durable and replicated like objects,
and a bucket with uploads in progress is not empty (DeleteBucket answers BucketNotEmpty, as
AWS does). Complete checks the parts (InvalidPartOrder, InvalidPart, EntityTooSmall). When every
chosen part carries a CRC of the upload's algorithm (CRC32 - boto3's default -, CRC32C,
CRC64NVME), Complete is **zero-copy**: the node's ``CompleteMultipart`` makes the object of the
parts' stored runs and adopts the part rows in one atomic step (node/complete.py), the
full-object CRC combined from the parts'. Otherwise (SHA uploads) it
streams them in order into one ``PutObject`` of the target key whose ``meta.multipart``
carries the multipart ETag (``md5(part md5s)-N``), the part sizes and checksums and, for a
COMPOSITE checksum, ``algo(part digests)-N``; the node computes the full-object checksum over
the bytes as they pass. Memory stays bounded (one stream); the data is copied once, node to
node through the gateway, and re-sealed under the final object's id. Then the part and upload
objects are deleted. A retried Complete whose upload is gone answers success again when the
object's ``meta.multipart.upload_id`` is that upload.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import trio

from gateway import s3responses
from gateway.auth import Identity
from gateway.backend import Backend
from gateway.errors import S3Error
from gateway.http import HttpRequest, HttpResponse
from gateway.s3_buckets import check_sse_request_headers, require_bucket
from gateway.s3_lists import XML, _int_param
from gateway.s3_objects import (
    META_FIELDS,
    _checksum_plan,
    _upload_body,
    _user_meta,
    check_session_kms,
    object_sse_headers,
)
from gateway.s3listings import ListedPart, ListedUpload
from gateway.s3xml import XmlError, parse_complete_multipart
from proto import checksums
from proto import errors as rpc_errors

UPLOAD_PREFIX = "\x01u/"
PART_PREFIX = "\x01p/"
MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PARTS = 10000
MAX_SCAN_UPLOADS = 10000
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{32}\Z")
DELETE_CONCURRENCY = 16
ZERO_COPY_ALGORITHMS = frozenset({"CRC32", "CRC32C", "CRC64NVME"})


def upload_key(upload_id: str) -> str:
    return UPLOAD_PREFIX + upload_id


def part_key(upload_id: str, number: int) -> str:
    return f"{PART_PREFIX}{upload_id}/{number:05d}"


def _no_upload(upload_id: str) -> S3Error:
    return S3Error("NoSuchUpload", extra={"UploadId": upload_id[:64]})


def _base(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {"bucket": record["name"], "key": key, "bucket_version": record["version"]}


async def _head(backend: Backend, record: dict[str, Any], key: str) -> dict[str, Any] | None:
    try:
        return (await backend.node_call(record, "HeadObject", _base(record, key), any_replica=True))["meta"]
    except rpc_errors.NotFound as exc:
        if exc.kind == "NoSuchBucket":
            raise
        return None


async def load_upload(backend: Backend, record: dict[str, Any], key: str, upload_id: str) -> dict[str, Any]:
    """The upload's record (its ObjectMeta); NoSuchUpload if unknown or for another key."""
    if not _UPLOAD_ID.match(upload_id):
        raise _no_upload(upload_id)
    meta = await _head(backend, record, upload_key(upload_id))
    if meta is None or (meta.get("multipart") or {}).get("upload_key") != key:
        raise _no_upload(upload_id)
    return meta


async def _list_all(backend: Backend, record: dict[str, Any], prefix: str, *, limit: int,
                    start_after: str = "") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = start_after
    while len(out) < limit:
        r = await backend.node_call(record, "ListObjects", {"bucket": record["name"], "bucket_version": record["version"],
                                                            "prefix": prefix, "start_after": after,
                                                            "max_keys": min(1000, limit - len(out))}, any_replica=True)
        rows = r.get("objects", [])
        out.extend(rows)
        if not rows or not r.get("truncated"):
            break
        after = rows[-1]["key"]
    return out


def _algo_header(req: HttpRequest) -> str | None:
    value = req.header("x-amz-checksum-algorithm")
    if value is None:
        return None
    algo = value.strip().upper()
    if algo not in checksums.ALGORITHMS:
        raise S3Error("InvalidRequest", f"Checksum algorithm {value[:32]!r} is not supported.")
    return algo


async def create(req: HttpRequest, ident: Identity, backend: Backend, bucket: str, key: str, *,
                 now: float) -> HttpResponse:
    record = await require_bucket(backend, bucket)
    check_sse_request_headers(req, record)
    check_session_kms(req, ident, record, now)
    algo = _algo_header(req)
    ctype = (req.header("x-amz-checksum-type") or "").strip().upper() or None
    if ctype not in (None, "COMPOSITE", "FULL_OBJECT"):
        raise S3Error("InvalidRequest", "x-amz-checksum-type must be COMPOSITE or FULL_OBJECT.")
    if ctype is not None and algo is None:
        raise S3Error("InvalidRequest", "x-amz-checksum-type needs x-amz-checksum-algorithm.")
    if algo is not None and ctype is None:
        ctype = "FULL_OBJECT" if algo == "CRC64NVME" else "COMPOSITE"
    if ctype == "FULL_OBJECT" and algo in ("SHA1", "SHA256"):
        raise S3Error("InvalidRequest", f"The FULL_OBJECT checksum type is not supported for {algo}.")
    upload_id = secrets.token_urlsafe(24)
    mp: dict[str, Any] = {"upload_id": upload_id, "upload_key": key, "owner": ident.context.user_arn}
    if algo:
        mp.update(algorithm=algo, checksum_type=ctype)
    meta: dict[str, Any] = {"user_meta": _user_meta(req), "multipart": mp}
    for header, field in META_FIELDS.items():
        value = req.header(header)
        if value is not None:
            meta[field] = value
    if req.header("content-encoding"):
        meta["content_encoding"] = req.header("content-encoding")
    await backend.node_call(record, "PutObject", {**_base(record, upload_key(upload_id)), "meta": meta}, body=_empty())
    headers = [XML] + object_sse_headers({}, record)
    if algo:
        headers += [("x-amz-checksum-algorithm", algo), ("x-amz-checksum-type", ctype or "COMPOSITE")]
    return HttpResponse(200, headers, s3responses.initiate_multipart_result(bucket, key, upload_id))


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


def part_number(query: dict[str, str]) -> int:
    raw = query.get("partNumber", "")
    if not raw.isdigit() or not 1 <= int(raw[:6]) <= MAX_PARTS or len(raw) > 5:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive",
                      extra={"ArgumentName": "partNumber", "ArgumentValue": raw[:16]})
    return int(raw)


async def upload_part(req: HttpRequest, ident: Identity, backend: Backend, bucket: str, key: str,
                      query: dict[str, str], *, now: float, max_bytes: int) -> HttpResponse:
    number = part_number(query)
    if req.header("content-length") is None and "chunked" not in (req.header("transfer-encoding") or ""):
        raise S3Error("MissingContentLength")
    record = await require_bucket(backend, bucket)
    check_sse_request_headers(req, record)
    check_session_kms(req, ident, record, now)
    upload = await load_upload(backend, record, key, query.get("uploadId", ""))
    algo, _, _ = _checksum_plan(req)
    want = (upload.get("multipart") or {}).get("algorithm")
    if want and algo != want and req.header("x-amz-sdk-checksum-algorithm") is not None:
        raise S3Error("InvalidRequest", f"Checksum Type mismatch occurred, expected checksum Type: {want.lower()}, "
                      f"actual checksum Type: {algo.lower()}")
    if want and algo != want:
        algo = want  # the SDK did not say: compute the upload's algorithm over the part
    result: dict[str, Any] = {}
    body = _upload_body(req, ident, max_bytes=min(max_bytes, 5 * 1024 ** 3), result=result, algorithm=algo)
    args = {**_base(record, part_key(upload["multipart"]["upload_id"], number)),
            "meta": {"checksum_algorithm": algo}}
    stored = (await backend.node_call(record, "PutObject", args, body=body))["meta"]
    got = result.get("checksum")
    if got is None or stored.get("checksum_value") != got[1]:
        raise S3Error("InternalError", "The stored part's checksum does not match the received data.")
    headers = [("etag", f'"{stored["etag"]}"'), (checksums.header_name(algo), got[1])] + object_sse_headers(stored, record)
    return HttpResponse(200, headers)


async def _parts(backend: Backend, record: dict[str, Any], upload_id: str, *, after: int = 0,
                 limit: int = MAX_PARTS) -> list[tuple[int, dict[str, Any]]]:
    prefix = f"{PART_PREFIX}{upload_id}/"
    rows = await _list_all(backend, record, prefix, limit=limit,
                           start_after=part_key(upload_id, after) if after else "")
    return [(int(m["key"][len(prefix):]), m) for m in rows]


def composite_checksum(algo: str, part_values: list[str]) -> str:
    """S3's COMPOSITE checksum: the algorithm over the concatenated binary part checksums, ``-N``."""
    c = checksums.new_checksum(algo)
    for v in part_values:
        c.update(base64.b64decode(v))
    return f"{c.b64digest()}-{len(part_values)}"


async def complete(req: HttpRequest, ident: Identity, backend: Backend, bucket: str, key: str,
                   query: dict[str, str], body: bytes, *, now: float) -> HttpResponse:
    record = await require_bucket(backend, bucket)
    check_session_kms(req, ident, record, now)
    upload_id = query.get("uploadId", "")
    try:
        requested = parse_complete_multipart(body)
    except XmlError as exc:
        raise S3Error(exc.code, exc.message) from None
    try:
        upload = await load_upload(backend, record, key, upload_id)
    except S3Error as exc:
        done = await _head(backend, record, key) if exc.code == "NoSuchUpload" and _UPLOAD_ID.match(upload_id) else None
        if done is not None and (done.get("multipart") or {}).get("upload_id") == upload_id:
            return _complete_response(bucket, key, done, record)  # a retry of a Complete that succeeded
        raise
    done = await _head(backend, record, key)
    if done is not None and (done.get("multipart") or {}).get("upload_id") == upload_id:
        await _delete_keys(backend, record, [upload_key(upload_id)])  # completed before: the cleanup was cut short
        return _complete_response(bucket, key, done, record)
    mp = upload["multipart"]
    algo, ctype = mp.get("algorithm"), mp.get("checksum_type")
    numbers = [p.part_number for p in requested]
    if any(b <= a for a, b in zip(numbers, numbers[1:])):
        raise S3Error("InvalidPartOrder", "The list of parts was not in ascending order. The parts list must be "
                      "specified in order by part number.")
    stored = dict(await _parts(backend, record, upload_id))
    chosen: list[dict[str, Any]] = []
    for i, p in enumerate(requested):
        meta = stored.get(p.part_number)
        if meta is None or p.etag.strip().strip('"') != meta["etag"]:
            raise S3Error("InvalidPart", "One or more of the specified parts could not be found. The part may not "
                          "have been uploaded, or the specified entity tag may not match the part's entity tag.",
                          extra={"PartNumber": str(p.part_number)})
        for a, v in p.checksums.items():
            if a != meta.get("checksum_algorithm") or v != meta.get("checksum_value"):
                raise S3Error("InvalidPart", f"The {a} checksum of part {p.part_number} does not match the part.",
                              extra={"PartNumber": str(p.part_number)})
        if i < len(requested) - 1 and meta["size"] < MIN_PART_BYTES:
            raise S3Error("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.",
                          extra={"PartNumber": str(p.part_number), "ProposedSize": str(meta["size"]),
                                 "MinSizeAllowed": str(MIN_PART_BYTES)})
        chosen.append(meta)
    total = sum(m["size"] for m in chosen)
    declared = req.header("x-amz-mp-object-size")
    if declared is not None and (not declared.isdigit() or int(declared) != total):
        raise S3Error("InvalidRequest", f"The provided MpuObjectSize {declared[:20]} does not match the object size {total}.")
    md5s = b"".join(bytes.fromhex(m["etag"]) for m in chosen)
    final_mp: dict[str, Any] = {
        "etag": f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(chosen)}", "upload_id": upload_id,
        "parts": [[m["size"], m.get("checksum_value") if m.get("checksum_algorithm") == algo else None]
                  for m in chosen]}
    if algo:
        final_mp.update(algorithm=algo, checksum_type=ctype)
        if ctype == "COMPOSITE":
            if any(m.get("checksum_algorithm") != algo for m in chosen):
                raise S3Error("InvalidPart", f"Every part of this upload needs a {algo} checksum.")
            final_mp["checksum"] = composite_checksum(algo, [m["checksum_value"] for m in chosen])
    meta = {k: v for k, v in upload.items()
            if k in ("content_type", "user_meta", "cache_control", "content_disposition", "content_encoding",
                     "content_language", "expires")}
    meta.update(multipart=final_mp, checksum_algorithm=algo or "CRC32")
    args: dict[str, Any] = {**_base(record, key), "meta": meta}
    if (req.header("if-none-match") or "").strip() == "*":
        args["if_none_match"] = True
    if req.header("if-match") is not None:
        args["if_match"] = req.header("if-match").strip().strip('"')  # type: ignore[union-attr]
    sources = [part_key(upload_id, p.part_number) for p in requested]
    if meta["checksum_algorithm"] in ZERO_COPY_ALGORITHMS and all(
            m.get("checksum_algorithm") == meta["checksum_algorithm"] for m in chosen):
        # zero-copy: the object is made of the parts' stored data (node/complete.py); no byte moves
        done = (await backend.node_call(record, "CompleteMultipart", {**args, "parts": sources}))["meta"]
        leftovers = [m["key"] for m in stored.values() if m["key"] not in set(sources)]
    else:  # a SHA upload (or parts without the upload's CRC): stream the parts into one PutObject
        done = (await backend.node_call(record, "PutObject", args,
                                        body=concat_objects(backend, record, sources, total)))["meta"]
        leftovers = [m["key"] for m in stored.values()]
    await _delete_keys(backend, record, [upload_key(upload_id)] + leftovers)
    return _complete_response(bucket, key, done, record)


def _complete_response(bucket: str, key: str, meta: dict[str, Any], record: dict[str, Any]) -> HttpResponse:
    mp = meta.get("multipart") or {}
    sums: dict[str, str] = {}
    if mp.get("algorithm"):
        value = mp.get("checksum") if mp.get("checksum_type") == "COMPOSITE" else meta.get("checksum_value")
        if value:
            sums[mp["algorithm"]] = value
    body = s3responses.complete_multipart_result(f"/{bucket}/{key}", bucket, key, meta["etag"], sums or None,
                                                 checksum_type=mp.get("checksum_type") if sums else None)
    return HttpResponse(200, [XML] + object_sse_headers(meta, record), body)


async def concat_objects(backend: Backend, record: dict[str, Any], keys: list[str], total: int,
                         ranges: list[tuple[int, int] | None] | None = None,
                         src_record: dict[str, Any] | None = None) -> AsyncIterator[bytes]:
    """The plaintext of ``keys`` one after the other, streamed from the nodes; raises
    IncompleteBody (ending the upload with an error) unless exactly ``total`` bytes came."""
    src = src_record or record
    sent = 0
    for i, k in enumerate(keys):
        args = _base(src, k)
        if ranges is not None and ranges[i] is not None:
            args["range"] = list(ranges[i])  # type: ignore[arg-type]
        node = backend.node(src["replicas"][0])
        async with node.stream("GetObject", args, timeout_s=max(backend.timeout_s, 3600.0)) as reply:
            async for chunk in reply.body:
                sent += len(chunk)
                yield chunk
    if sent != total:
        raise rpc_errors.InvalidRequest("a source object changed while being read", kind="IncompleteBody")


async def _delete_keys(backend: Backend, record: dict[str, Any], keys: list[str]) -> None:
    limiter = trio.CapacityLimiter(DELETE_CONCURRENCY)

    async def one(k: str) -> None:
        async with limiter:
            await backend.node_call(record, "DeleteObject", _base(record, k))

    async with trio.open_nursery() as nursery:
        for k in keys:
            nursery.start_soon(one, k)


async def abort(backend: Backend, bucket: str, key: str, query: dict[str, str]) -> HttpResponse:
    record = await require_bucket(backend, bucket)
    upload_id = query.get("uploadId", "")
    await load_upload(backend, record, key, upload_id)
    await backend.node_call(record, "DeleteObject", _base(record, upload_key(upload_id)))
    await _delete_keys(backend, record, [m["key"] for _, m in await _parts(backend, record, upload_id)])
    return HttpResponse(204)


def _owner(arn: str | None) -> tuple[str, str | None] | None:
    return None if not arn else (arn, arn.rsplit("/", 1)[-1])


async def list_parts(backend: Backend, bucket: str, key: str, query: dict[str, str]) -> HttpResponse:
    record = await require_bucket(backend, bucket)
    upload_id = query.get("uploadId", "")
    upload = await load_upload(backend, record, key, upload_id)
    max_parts = min(_int_param(query, "max-parts", 1000), 1000)
    marker = _int_param(query, "part-number-marker", 0)
    rows = await _parts(backend, record, upload_id, after=min(marker, MAX_PARTS), limit=max_parts + 1)
    truncated = len(rows) > max_parts
    rows = rows[:max_parts]
    parts = [ListedPart(n, m["last_modified"], m["etag"], m["size"],
                        {m["checksum_algorithm"]: m["checksum_value"]} if m.get("checksum_value") else {})
             for n, m in rows]
    mp = upload["multipart"]
    owner = _owner(mp.get("owner"))
    body = s3responses.list_parts_result(
        bucket=bucket, key=key, upload_id=upload_id, parts=parts, part_number_marker=marker,
        next_part_number_marker=rows[-1][0] if rows else None, max_parts=max_parts, is_truncated=truncated,
        owner=owner, initiator=owner, checksum_algorithm=mp.get("algorithm"), checksum_type=mp.get("checksum_type"))
    return HttpResponse(200, [XML], body)


async def list_uploads(backend: Backend, bucket: str, query: dict[str, str]) -> HttpResponse:
    record = await require_bucket(backend, bucket)
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter") or None
    key_marker, id_marker = query.get("key-marker", ""), query.get("upload-id-marker", "")
    max_uploads = min(_int_param(query, "max-uploads", 1000), 1000)
    encoding = query.get("encoding-type") or None
    if encoding not in (None, "url"):
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request")
    rows = await _list_all(backend, record, UPLOAD_PREFIX, limit=MAX_SCAN_UPLOADS)
    entries = sorted(((m["multipart"]["upload_key"], m["multipart"]["upload_id"], m) for m in rows
                      if (m.get("multipart") or {}).get("upload_key", "").startswith(prefix)),
                     key=lambda e: (e[0].encode(), e[1]))
    entries = [e for e in entries if (e[0], e[1]) > (key_marker, id_marker)] if key_marker else entries
    uploads: list[ListedUpload] = []
    prefixes: list[str] = []
    last: tuple[str, str] | None = None
    truncated = False
    for k, uid, m in entries:
        if len(uploads) + len(prefixes) >= max_uploads:
            truncated = True
            break
        if delimiter and delimiter in k[len(prefix):]:
            cp = k[: k.index(delimiter, len(prefix)) + len(delimiter)]
            if cp not in prefixes:
                prefixes.append(cp)
            last = (k, uid)
            continue
        mp = m["multipart"]
        owner = _owner(mp.get("owner"))
        uploads.append(ListedUpload(k, uid, m["last_modified"], owner=owner, initiator=owner,
                                    checksum_algorithm=mp.get("algorithm"), checksum_type=mp.get("checksum_type")))
        last = (k, uid)
    body = s3responses.list_multipart_uploads_result(
        bucket=bucket, uploads=uploads, common_prefixes=prefixes, prefix=prefix or None, delimiter=delimiter,
        key_marker=key_marker, upload_id_marker=id_marker,
        next_key_marker=last[0] if truncated and last else None,
        next_upload_id_marker=last[1] if truncated and last else None, max_uploads=max_uploads,
        is_truncated=truncated, encoding_type=encoding)
    return HttpResponse(200, [XML], body)
