"""Object-level S3 operations: PutObject, GetObject, HeadObject, DeleteObject.

The upload pipeline is streamed: HTTP framing (gateway/http11) -> aws-chunked decoding (when
used) -> payload hash and flexible checksums computed on the fly -> the bucket's primary node over RPC,
which seals and replicates chunk by chunk. Verification failures (BadDigest, a wrong
x-amz-content-sha256, a short body) are only known at the end, so they end the RPC body with a
typed error: the node then commits nothing (see docs/rpc.md, PutObject).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from typing import Any

import trio

from proto import checksums
from gateway.auth import Identity, kms_permitted
from gateway.awschunked import AwsChunkedDecoder, BodyError, ChunkSignatureVerifier
from gateway.backend import Backend
from gateway.errors import S3Error
from gateway.failover import read_next, read_order
from gateway.http import HttpRequest, HttpResponse, RemoteProtocolError
from gateway.s3_buckets import check_sse_request_headers, require_bucket
from proto import errors as rpc_errors
from proto.names import is_directory_bucket_name

log = logging.getLogger(__name__)

STREAMING_SIGNED = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
STREAMING = STREAMING_SIGNED + ("STREAMING-UNSIGNED-PAYLOAD-TRAILER",)
META_FIELDS = {"content-type": "content_type", "cache-control": "cache_control",
               "content-disposition": "content_disposition", "content-language": "content_language",
               "expires": "expires"}
MAX_USER_META_BYTES = 2048
SMALL_GET_BYTES = 1024 * 1024  # GetObject reads objects up to this size in its one node call
INLINE_PUT_BYTES = 1024 * 1024  # PutObject bodies up to this size go to the node in the call's ``data``
UNSUPPORTED_PUT_HEADERS = {
    "x-amz-tagging": "Object tagging is not supported for directory buckets.",
    "x-amz-object-lock-mode": "Object Lock is not supported for directory buckets.",
    "x-amz-website-redirect-location": "Website redirects are not supported for directory buckets.",
    "x-amz-acl": "ACLs are not supported for directory buckets.",
    "x-amz-grant-full-control": "ACLs are not supported for directory buckets.",
    "x-amz-grant-read": "ACLs are not supported for directory buckets.",
    "content-md5": "Content-MD5 is not supported for directory buckets; use x-amz-checksum-*.",
}


def _fail(code: str, message: str) -> rpc_errors.InvalidRequest:
    return rpc_errors.InvalidRequest(message, kind=code)


def _user_meta(req: HttpRequest) -> dict[str, str]:
    meta = {k[len("x-amz-meta-"):]: v for k, v in req.headers if k.startswith("x-amz-meta-")}
    if sum(len(k) + len(v) for k, v in meta.items()) > MAX_USER_META_BYTES:
        raise S3Error("MetadataTooLarge")
    return meta


def _checksum_plan(req: HttpRequest) -> tuple[str, str | None, bool]:
    """(algorithm, expected value from a header or None, expected in a trailer?)"""
    for algo in checksums.ALGORITHMS:
        value = req.header(checksums.header_name(algo))
        if value is not None:
            return algo, value, False
    trailer = (req.header("x-amz-trailer") or "").strip().lower()
    if trailer:
        for algo in checksums.ALGORITHMS:
            if trailer == checksums.header_name(algo):
                return algo, None, True
        raise S3Error("InvalidRequest", f"Unsupported trailer {trailer!r}.")
    sdk = (req.header("x-amz-sdk-checksum-algorithm") or "CRC32").upper()
    if sdk not in checksums.ALGORITHMS:
        raise S3Error("InvalidRequest", f"Unsupported checksum algorithm {sdk!r}.")
    return sdk, None, False


async def _upload_body(req: HttpRequest, ident: Identity, *, max_bytes: int,
                       result: dict[str, Any], algorithm: str | None = None) -> AsyncIterator[bytes]:
    """The decoded, verified request body; fills ``result`` with the checksum once complete.

    ``algorithm`` (when the request names none) is the checksum to compute anyway."""
    payload_hash = ident.auth.payload_hash
    encodings = [e.strip() for e in (req.header("content-encoding") or "").split(",") if e.strip()]
    chunked = "aws-chunked" in encodings or payload_hash in STREAMING
    decoder = None
    if chunked:
        verifier = None
        if payload_hash in STREAMING_SIGNED:
            verifier = ChunkSignatureVerifier(ident.signing_key, ident.auth.amz_date, ident.auth.scope,
                                              ident.auth.signature)
        decoder = AwsChunkedDecoder(chunk_verifier=verifier)
    algo, expected, in_trailer = _checksum_plan(req)
    if algorithm is not None and expected is None and not in_trailer:
        algo = algorithm
    digest = checksums.new_checksum(algo)
    sha = hashlib.sha256() if len(payload_hash) == 64 else None
    content_md5 = req.header("content-md5")  # (refused earlier where S3 refuses it: directory-bucket PUTs)
    md5 = hashlib.md5(usedforsecurity=False) if content_md5 is not None else None
    if content_md5 is not None and not _valid_md5(content_md5):
        raise S3Error("InvalidDigest", "The Content-MD5 you specified is not valid.")
    decoded_len = req.header("x-amz-decoded-content-length")
    total = 0
    try:
        async for data in req.body:
            pieces = decoder.feed(data) if decoder is not None else [data]
            for piece in pieces:
                total += len(piece)
                if total > max_bytes:
                    raise _fail("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
                digest.update(piece)
                if sha is not None:
                    sha.update(piece)
                if md5 is not None:
                    md5.update(piece)
                yield piece
        if decoder is not None:
            decoder.close()
    except BodyError as exc:
        raise _fail(exc.code, exc.message) from None
    except (RemoteProtocolError, ConnectionError, trio.TooSlowError, trio.BrokenResourceError):
        raise _fail("IncompleteBody", "The request body terminated unexpectedly.") from None
    if decoded_len is not None and decoded_len.isdigit() and int(decoded_len) != total:
        raise _fail("IncompleteBody", "The decoded body length does not match X-Amz-Decoded-Content-Length.")
    if sha is not None and not hmac.compare_digest(sha.hexdigest(), payload_hash.lower()):
        raise _fail("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
    if md5 is not None and not hmac.compare_digest(base64.b64encode(md5.digest()).decode(), (content_md5 or "").strip()):
        raise _fail("BadDigest", "The Content-MD5 you specified did not match what we received.")
    if in_trailer:
        expected = decoder.trailers.get(checksums.header_name(algo)) if decoder is not None else None
        if expected is None:
            raise _fail("InvalidRequest", f"The announced trailer {checksums.header_name(algo)} is missing.")
    actual = digest.b64digest()
    if expected is not None and not hmac.compare_digest(actual, expected.strip()):
        raise _fail("BadDigest", f"The {algo} you specified did not match the calculated checksum.")
    result["checksum"] = (algo, actual)


def _valid_md5(value: str) -> bool:
    try:
        return len(base64.b64decode(value.strip(), validate=True)) == 16
    except (ValueError, binascii.Error):
        return False


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def object_headers(meta: dict[str, Any], record: dict[str, Any], *, checksum: bool) -> list[tuple[str, str]]:
    h = [("etag", f'"{meta["etag"]}"'), ("last-modified", _http_date(meta["last_modified"])),
         ("accept-ranges", "bytes"), ("content-type", meta.get("content_type") or "binary/octet-stream")]
    if record.get("type") != "GeneralPurpose":  # S3 omits the header for STANDARD objects
        h.append(("x-amz-storage-class", "EXPRESS_ONEZONE"))
    for header, field in META_FIELDS.items():
        if field != "content_type" and meta.get(field):
            h.append((header, meta[field]))
    if meta.get("content_encoding"):
        h.append(("content-encoding", meta["content_encoding"]))
    for k, v in (meta.get("user_meta") or {}).items():
        h.append(("x-amz-meta-" + k, v))
    h += object_sse_headers(meta, record)
    mp = meta.get("multipart") or {}
    if mp.get("parts") is not None:
        h.append(("x-amz-mp-parts-count", str(len(mp["parts"]))))
    if checksum and mp.get("checksum_type") == "COMPOSITE" and mp.get("checksum"):
        h.append((checksums.header_name(mp["algorithm"]), mp["checksum"]))
        h.append(("x-amz-checksum-type", "COMPOSITE"))
    elif checksum and meta.get("checksum_algorithm") and meta.get("checksum_value"):
        h.append((checksums.header_name(meta["checksum_algorithm"]), meta["checksum_value"]))
        h.append(("x-amz-checksum-type", "FULL_OBJECT"))
    return h


def object_sse_headers(meta: dict[str, Any], record: dict[str, Any]) -> list[tuple[str, str]]:
    gen = meta.get("key_gen", record.get("active_gen"))
    key_arn = next((k["kms_key_arn"] for k in record.get("keys", []) if k.get("gen") == gen), None)
    if key_arn and key_arn == record.get("kms_key_arn"):
        return [("x-amz-server-side-encryption", "aws:kms"),
                ("x-amz-server-side-encryption-aws-kms-key-id", key_arn),
                ("x-amz-server-side-encryption-bucket-key-enabled", "true")]
    return [("x-amz-server-side-encryption", "AES256")]


def check_session_kms(req: HttpRequest, ident: Identity, record: dict[str, Any], now: float) -> None:
    """A session minted before the bucket switched to SSE-KMS must not bypass the KMS rule."""
    if ident.session is None or record.get("sse_algorithm") != "aws:kms":
        return
    if ident.session.kms_key_arn == record.get("kms_key_arn"):
        return
    if not kms_permitted(ident, record["kms_key_arn"], req, now):
        raise S3Error("AccessDenied", "This bucket now uses SSE-KMS: kms:GenerateDataKey and kms:Decrypt "
                      f"on {record['kms_key_arn']} are required.")


async def put_object(req: HttpRequest, ident: Identity, backend: Backend, bucket: str, key: str, *,
                     now: float, max_bytes: int) -> HttpResponse:
    directory = is_directory_bucket_name(bucket)
    for header, message in UNSUPPORTED_PUT_HEADERS.items():
        value = req.header(header)
        if value is None or (not directory and (header == "content-md5" or (
                header == "x-amz-acl" and value in ("private", "bucket-owner-full-control")))):
            continue  # general-purpose buckets take Content-MD5 (verified) and the owner-only ACLs
        raise S3Error("NotImplemented", message)
    storage = req.header("x-amz-storage-class")
    if storage not in (None, "EXPRESS_ONEZONE" if directory else "STANDARD"):
        raise S3Error("InvalidArgument", "Directory buckets only support the EXPRESS_ONEZONE storage class."
                      if directory else "General-purpose buckets only support the STANDARD storage class.")
    if req.header("content-length") is None and "chunked" not in (req.header("transfer-encoding") or ""):
        raise S3Error("MissingContentLength")
    record = await require_bucket(backend, bucket)
    check_sse_request_headers(req, record)
    check_session_kms(req, ident, record, now)
    meta: dict[str, Any] = {"user_meta": _user_meta(req)}
    for header, field in META_FIELDS.items():
        value = req.header(header)
        if value is not None:
            meta[field] = value
    encodings = [e.strip() for e in (req.header("content-encoding") or "").split(",")
                 if e.strip() and e.strip() != "aws-chunked"]
    if encodings:
        meta["content_encoding"] = ",".join(encodings)
    args: dict[str, Any] = {"bucket": bucket, "key": key, "bucket_version": record["version"], "meta": meta}
    inm, im = req.header("if-none-match"), req.header("if-match")
    if inm is not None:
        if inm.strip() != "*":
            raise S3Error("NotImplemented", "If-None-Match on PutObject only supports '*'.")
        args["if_none_match"] = True
    if im is not None:
        args["if_match"] = im.strip().strip('"')
    result: dict[str, Any] = {}
    algo, _, _ = _checksum_plan(req)
    # The node computes the same checksum over what it stores and returns it: the gateway
    # compares it with its own (computed over what the client sent), end to end.
    meta["checksum_algorithm"] = algo
    method, value_field = append_args(req, bucket, args)
    body = _upload_body(req, ident, max_bytes=max_bytes, result=result)
    length = req.header("content-length") or ""
    if method == "PutObject" and length.isdigit() and int(length) <= INLINE_PUT_BYTES:
        # a small body is read (and verified) whole, then sent in the call itself: one message
        args["data"] = b"".join([piece async for piece in body])
        r = await backend.node_call(record, method, args)
    else:
        r = await backend.node_call(record, method, args, body=body)
    stored = r["meta"]
    algo_v = result.get("checksum")
    if algo_v is None or stored.get(value_field) != algo_v[1]:
        log.error("event=checksum_divergence bucket=%s key=%s", bucket, key)
        raise S3Error("InternalError", "The stored object's checksum does not match the received data.")
    headers = [("etag", f'"{stored["etag"]}"'), (checksums.header_name(algo), algo_v[1]),
               ("x-amz-checksum-type", "FULL_OBJECT")] + object_sse_headers(stored, record)
    if method == "AppendObject":
        headers.append(("x-amz-object-size", str(stored["size"])))
    return HttpResponse(200, headers)


def append_args(req: HttpRequest, bucket: str, args: dict[str, Any]) -> tuple[str, str]:
    """(node method, meta field holding the checksum of what was sent): ``AppendObject`` when
    ``x-amz-write-offset-bytes`` is given (directory buckets only; the node checks the offset
    and keeps the object's metadata), else ``PutObject``."""
    raw = req.header("x-amz-write-offset-bytes")
    if raw is None:
        return "PutObject", "checksum_value"
    if not is_directory_bucket_name(bucket):
        raise S3Error("NotImplemented", "Appends (x-amz-write-offset-bytes) are only supported for directory buckets.")
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 16:
        raise S3Error("InvalidArgument", "x-amz-write-offset-bytes must be a non-negative integer.")
    if "if_none_match" in args or "if_match" in args:
        raise S3Error("NotImplemented", "Conditional headers are not supported together with an append.")
    args["offset"] = int(raw)
    return "AppendObject", "append_checksum"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single byte range as (first, last) inclusive; None for no (or an ignorable) range.

    Raises:
        S3Error: InvalidRange (416) when the range cannot be satisfied.
    """
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # S3 ignores multiple ranges and other units
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first_s == "":
            n = int(last_s)
            if n <= 0:
                raise ValueError
            if size == 0:
                raise S3Error("InvalidRange", headers={"content-range": f"bytes */{size}"})
            return max(0, size - n), size - 1
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first < 0 or last < first:
        return None
    if first >= size:
        raise S3Error("InvalidRange", "The requested range is not satisfiable",
                      headers={"content-range": f"bytes */{size}"},
                      extra={"RangeRequested": header.strip(), "ActualObjectSize": str(size)})
    return first, min(last, size - 1)


def _parse_http_date(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def check_conditions(req: HttpRequest, meta: dict[str, Any]) -> int | None:
    """RFC 7232 order; returns 304 when the client's copy is current, raises 412."""
    etag = meta["etag"]
    lm = int(meta["last_modified"])
    im = req.header("if-match")
    if im is not None:
        tags = [t.strip().strip('"') for t in im.split(",")]
        if "*" not in tags and etag not in tags:
            raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                          extra={"Condition": "If-Match"})
    else:
        ius = req.header("if-unmodified-since")
        t = _parse_http_date(ius) if ius else None
        if t is not None and lm > t:
            raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                          extra={"Condition": "If-Unmodified-Since"})
    inm = req.header("if-none-match")
    if inm is not None:
        tags = [t.strip().strip('"') for t in inm.split(",")]
        if "*" in tags or etag in tags:
            return 304
    else:
        ims = req.header("if-modified-since")
        t = _parse_http_date(ims) if ims else None
        if t is not None and lm <= t:
            return 304
    return None


RESPONSE_OVERRIDES = {"response-content-type": "content-type", "response-content-language": "content-language",
                      "response-expires": "expires", "response-cache-control": "cache-control",
                      "response-content-disposition": "content-disposition",
                      "response-content-encoding": "content-encoding"}


def _apply_overrides(headers: list[tuple[str, str]], query: dict[str, str]) -> list[tuple[str, str]]:
    for param, header in RESPONSE_OVERRIDES.items():
        if param in query:
            headers = [(k, v) for k, v in headers if k != header] + [(header, query[param])]
    return headers


async def get_object(req: HttpRequest, ident: Identity, backend: Backend, bucket: str, key: str,
                     query: dict[str, str], *, now: float, head: bool) -> HttpResponse:
    record = await require_bucket(backend, bucket)
    check_session_kms(req, ident, record, now)
    base = {"bucket": bucket, "key": key, "bucket_version": record["version"]}
    resource = f"/{bucket}/{key}"
    small: bytes | None = None  # a small object's whole body, read within the one GetObject call
    replica = record["replicas"][0]
    try:
        if head:
            meta = (await backend.node_call(record, "HeadObject", base, any_replica=True))["meta"]
        else:
            meta, small, replica = await _get_small(backend, record, base)
    except rpc_errors.NotFound as exc:
        if exc.kind == "NoSuchBucket":
            raise S3Error("NoSuchBucket", resource="/" + bucket) from None
        raise S3Error("NoSuchKey", resource=resource, extra={"Key": key}) from None
    part_range = _part_range(meta, query)
    status = check_conditions(req, meta)
    checksum_mode = (req.header("x-amz-checksum-mode") or "").upper() == "ENABLED"
    size = meta["size"]
    rng = part_range if part_range is not None else parse_range(req.header("range"), size)
    if part_range is not None and (meta.get("multipart") or {}).get("parts") is None:
        rng = None  # partNumber=1 of a single-part object is the whole object
    headers = object_headers(meta, record, checksum=checksum_mode and rng is None)
    if status == 304:
        return HttpResponse(304, [(k, v) for k, v in headers if k in ("etag", "last-modified")])
    headers = _apply_overrides(headers, query)
    if rng is not None:
        headers.append(("content-range", f"bytes {rng[0]}-{rng[1]}/{size}"))
    length = size if rng is None else rng[1] - rng[0] + 1
    code = 200 if rng is None else 206
    if head or length == 0:
        return HttpResponse(code, headers, b"", content_length=length)
    if small is not None:
        return HttpResponse(code, headers, small if rng is None else small[rng[0]:rng[1] + 1], content_length=length)
    args = dict(base)
    if rng is not None:
        args["range"] = [rng[0], rng[1]]
    node = backend.node(replica)
    body = await _opened(_stream_object(node, args, meta["etag"], length, backend.timeout_s))
    return HttpResponse(code, headers, body, content_length=length)


async def _opened(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Open the node's stream and take its first chunk before the response head goes out, so a
    failure there (a KMS key revoked since the first call, a node gone) is answered as an S3
    error instead of cutting a 200 short."""
    try:
        first = await stream.__anext__()
    except StopAsyncIteration:
        first = b""
    except BaseException:
        await stream.aclose()
        raise

    async def rest() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()

    return rest()


def _part_range(meta: dict[str, Any], query: dict[str, str]) -> tuple[int, int] | None:
    """The byte range of ``?partNumber=N`` (multipart objects; 1 is the whole of any other)."""
    if "partNumber" not in query:
        return None
    raw = query["partNumber"]
    parts = (meta.get("multipart") or {}).get("parts")
    if not raw.isdigit() or len(raw) > 5 or int(raw) < 1:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
    n = int(raw)
    if parts is None:
        if n != 1:
            raise S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable")
        return (0, max(meta["size"] - 1, 0))
    if n > len(parts) or parts[n - 1][0] == 0:
        raise S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable")
    first = sum(p[0] for p in parts[: n - 1])
    return first, first + parts[n - 1][0] - 1


async def _get_small(backend: Backend, record: dict[str, Any],
                     args: dict[str, Any]) -> tuple[dict[str, Any], bytes | None, dict[str, Any]]:
    """One GetObject call (any replica that answers, complete copies first): the meta, the whole
    body if the object is at most SMALL_GET_BYTES (memory stays bounded), and the replica that
    answered; a larger one is streamed from it by a second call once the headers are known
    (``_stream_object``: it checks the ETag did not change)."""
    last: rpc_errors.RpcError | None = None
    for replica in read_order(record):
        try:
            async with backend.node(replica).stream("GetObject", args, timeout_s=backend.timeout_s) as reply:
                meta = reply.result["meta"]
                if meta["size"] > SMALL_GET_BYTES:
                    return meta, None, replica  # leaving the call early cancels the rest of its stream
                parts = [piece async for piece in reply.body]
            data = b"".join(parts)
            if len(data) != meta["size"]:
                raise rpc_errors.Unavailable("short object stream from the node")
            return meta, data, replica
        except rpc_errors.RpcError as exc:
            if not read_next(exc):
                raise
            last = exc
    raise last if last is not None else rpc_errors.Unavailable("bucket has no replicas")


async def _stream_object(node, args: dict[str, Any], etag: str, length: int, timeout_s: float) -> AsyncIterator[bytes]:
    sent = 0
    async with node.stream("GetObject", args, timeout_s=timeout_s) as reply:
        if reply.result["meta"]["etag"] != etag:
            # caught before the response head (see _opened): a 503 the client retries
            raise rpc_errors.Unavailable("the object changed while it was being read; retry")
        async for chunk in reply.body:
            sent += len(chunk)
            yield chunk
    if sent != length:
        raise ConnectionError("short object stream")


async def delete_object(req: HttpRequest, ident: Identity, backend: Backend, bucket: str, key: str,
                        *, now: float) -> HttpResponse:
    record = await require_bucket(backend, bucket)
    im = req.header("if-match")
    if im is not None:
        try:
            meta = (await backend.node_call(record, "HeadObject", {"bucket": bucket, "key": key,
                                                                   "bucket_version": record["version"]}))["meta"]
        except rpc_errors.NotFound:
            raise S3Error("NoSuchKey", resource=f"/{bucket}/{key}") from None
        if im.strip().strip('"') not in (meta["etag"], "*"):
            raise S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
    await backend.node_call(record, "DeleteObject", {"bucket": bucket, "key": key, "bucket_version": record["version"]})
    return HttpResponse(204)
