"""POST Object: browser-form uploads (``boto3 generate_presigned_post`` and HTML forms).

``POST /<bucket>`` with a multipart/form-data body. The fields before the ``file`` part carry
the authentication (``x-amz-algorithm``, ``x-amz-credential``, ``x-amz-date``,
``x-amz-signature``, optionally ``x-amz-s3session-token`` from CreateSession; or SigV2's
``AWSAccessKeyId`` and ``signature`` on general-purpose buckets) and the base64 policy document; they are buffered (at most ``MAX_PRE_DATA_BYTES``,
``MaxPostPreDataLengthExceeded``), and the request is authenticated and authorized before a byte
of the file is read:

    signature = hex(HMAC(kSigning(secret, date, region, service), policy-base64))

then the policy's conditions are checked against the fields (``gateway.post_form``) and the
file part streams to the bucket's primary node like a PutObject, with its size checked against
``content-length-range`` (EntityTooSmall / EntityTooLarge: the node then stores nothing).
The answer is 204 unless ``success_action_status`` asks for 200 or 201 (201 carries a
``PostResponse`` document) or ``success_action_redirect`` for a 303.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

import trio

from gateway import sessions, sigv2, sigv4
from gateway.auth import Identity, authorize_s3
from gateway.backend import Backend
from gateway.errors import S3Error
from gateway.http import HttpRequest, HttpResponse, RemoteProtocolError
from gateway.post_form import (
    FormEnd,
    FormError,
    FormParser,
    PartData,
    PartEnd,
    PartStart,
    boundary_of,
    check_policy,
    decode_policy,
)
from gateway.s3_buckets import require_bucket
from gateway.s3_lists import check_user_key
from gateway.s3_objects import MAX_USER_META_BYTES, META_FIELDS, check_session_kms, object_sse_headers
from gateway.xmlbuild import document, leaf, quote_etag
from proto import checksums
from proto import errors as rpc_errors

log = logging.getLogger(__name__)

MAX_PRE_DATA_BYTES = 20 * 1024  # the fields before the file (S3's limit)
MAX_TRAILING_BYTES = 64 * 1024  # fields after the file are ignored, up to this much


class _Form:
    """Pulls parser events from the request body on demand."""

    def __init__(self, req: HttpRequest, parser: FormParser) -> None:
        self._body = req.body.__aiter__()
        self._parser = parser
        self._pending: deque[Any] = deque()
        self.ended = False

    async def next(self) -> Any:
        while not self._pending:
            if self.ended:
                raise FormError("MalformedPOSTRequest", "The form ended early.")
            try:
                data = await self._body.__anext__()
            except StopAsyncIteration:
                self.ended = True
                self._pending.extend(self._parser.close())
                continue
            except (RemoteProtocolError, ConnectionError, trio.TooSlowError, trio.BrokenResourceError):
                raise FormError("IncompleteBody", "The request body terminated unexpectedly.") from None
            self._pending.extend(self._parser.feed(data))
        return self._pending.popleft()


def _form_error(exc: FormError) -> S3Error:
    return S3Error(exc.code, exc.message)


async def _read_fields(form: _Form) -> tuple[dict[str, str], str | None, str | None]:
    """The fields before the file (lower-cased names), the file's name and its Content-Type."""
    fields: dict[str, str] = {}
    size = 0
    while True:
        event = await form.next()
        if isinstance(event, FormEnd):
            raise S3Error("IncorrectNumberOfFilesInPostRequest")
        if not isinstance(event, PartStart):
            raise S3Error("MalformedPOSTRequest")
        name = event.name.lower()
        if name == "file":
            return fields, event.filename, event.content_type
        value = bytearray()
        while not isinstance(piece := await form.next(), PartEnd):
            size += len(piece.data)
            if size > MAX_PRE_DATA_BYTES:
                raise S3Error("MaxPostPreDataLengthExceeded")
            value += piece.data
        if name in fields:
            raise S3Error("InvalidArgument", f"The form field {name[:64]!r} appears more than once.")
        try:
            fields[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise S3Error("InvalidArgument", f"The form field {name[:64]!r} is not UTF-8.") from None


def _need(fields: dict[str, str], name: str) -> str:
    value = fields.get(name)
    if value is None:
        raise S3Error("InvalidArgument", f"Bucket POST must contain a field named '{name}'.",
                      extra={"ArgumentName": name})
    return value


async def _authenticate_v2(fields: dict[str, str], backend: Backend, *, now: float) -> Identity:
    """A SigV2 form (boto3's default config for a general-purpose bucket): signature =
    base64(HMAC-SHA1(secret, policy base64)); IAM keys only (refused on directory buckets)."""
    akid, policy_b64, signature = _need(fields, "awsaccesskeyid"), _need(fields, "policy"), _need(fields, "signature")
    ctx = await backend.auth_context(akid)
    if ctx is None or not ctx.active:
        raise S3Error("InvalidAccessKeyId")
    try:
        sigv2.verify(ctx.secret, policy_b64, signature)
    except sigv2.SigV2Error as exc:
        raise S3Error(exc.code, exc.message) from None
    auth = sigv4.AuthRequest(access_key_id=akid, date="", region="", service="s3", signed_headers=(),
                             signature=signature, amz_date="", presigned=True, expires_s=None, session_token=None,
                             security_token=None, payload_hash=sigv4.UNSIGNED_PAYLOAD, version=2)
    return Identity(auth, b"", ctx, None)


async def _authenticate(req: HttpRequest, fields: dict[str, str], backend: Backend, *, session_key: bytes,
                        now: float) -> Identity:
    if "policy" not in fields and "x-amz-signature" not in fields:
        raise S3Error("AccessDenied", "Anonymous uploads are not allowed.")
    if "awsaccesskeyid" in fields or "signature" in fields:
        return await _authenticate_v2(fields, backend, now=now)
    algorithm = _need(fields, "x-amz-algorithm")
    if algorithm != sigv4.ALGORITHM:
        raise S3Error("InvalidArgument", "x-amz-algorithm must be AWS4-HMAC-SHA256.",
                      extra={"ArgumentName": "x-amz-algorithm"})
    parts = _need(fields, "x-amz-credential").split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts) or not parts[1].isdigit():
        raise S3Error("InvalidArgument", "x-amz-credential must be <AKID>/YYYYMMDD/REGION/SERVICE/aws4_request.",
                      extra={"ArgumentName": "x-amz-credential"})
    akid, date, region, service, _ = parts
    amz_date = _need(fields, "x-amz-date")
    policy_b64, signature = _need(fields, "policy"), _need(fields, "x-amz-signature").lower()
    token = fields.get("x-amz-s3session-token")
    session = None
    if token is not None:
        if "x-amz-security-token" in fields:
            raise S3Error("InvalidRequest", "x-amz-security-token is not allowed with a session token.")
        try:
            session = sessions.open_token(session_key, token, now=now)
        except sessions.SessionError as exc:
            raise S3Error(exc.code, exc.message) from None
        if session.access_key_id != akid:
            raise S3Error("InvalidAccessKeyId", "The access key does not match the session token.")
        secret = sessions.session_secret(session_key, session)
        ctx = await backend.auth_context(session.iam_access_key_id)
        if ctx is None or not ctx.active:
            raise S3Error("AccessDenied", "The credentials that created this session are no longer valid.")
    else:
        ctx = await backend.auth_context(akid)
        if ctx is None or not ctx.active:
            raise S3Error("InvalidAccessKeyId")
        secret = ctx.secret
    key = sigv4.signing_key(secret, date, region, service)
    expected = hmac.new(key, policy_b64.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise S3Error("SignatureDoesNotMatch")
    auth = sigv4.AuthRequest(access_key_id=akid, date=date, region=region, service=service,
                             signed_headers=(), signature=signature, amz_date=amz_date, presigned=True,
                             expires_s=None, session_token=token, security_token=None,
                             payload_hash=sigv4.UNSIGNED_PAYLOAD)
    return Identity(auth, key, ctx, session)


async def _file_stream(form: _Form, result: dict[str, Any], *, algo: str, expected: str | None,
                       length_range: tuple[int, int] | None, max_bytes: int) -> AsyncIterator[bytes]:
    """The file part's bytes; raises a typed error at the end when a check fails (the node then
    stores nothing)."""
    lo, hi = length_range or (0, max_bytes)
    hi = min(hi, max_bytes)
    digest = checksums.new_checksum(algo)
    total = 0
    try:
        while not isinstance(event := await form.next(), PartEnd):
            total += len(event.data)
            if total > hi:
                raise rpc_errors.InvalidRequest("Your proposed upload exceeds the maximum allowed size.",
                                                kind="EntityTooLarge")
            digest.update(event.data)
            yield event.data
    except FormError as exc:
        raise rpc_errors.InvalidRequest(exc.message, kind="IncompleteBody" if exc.code == "IncompleteBody"
                                        else "InvalidRequest") from None
    if total < lo:
        raise rpc_errors.InvalidRequest("Your proposed upload is smaller than the minimum allowed size.",
                                        kind="EntityTooSmall")
    actual = digest.b64digest()
    if expected is not None and not hmac.compare_digest(actual, expected.strip()):
        raise rpc_errors.InvalidRequest(f"The {algo} you specified did not match the calculated checksum.",
                                        kind="BadDigest")
    result["checksum"] = actual


def _object_meta(fields: dict[str, str], file_type: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"user_meta": {k[len("x-amz-meta-"):]: v for k, v in fields.items()
                                          if k.startswith("x-amz-meta-")}}
    if sum(len(k) + len(v) for k, v in meta["user_meta"].items()) > MAX_USER_META_BYTES:
        raise S3Error("MetadataTooLarge")
    for header, field in META_FIELDS.items():
        if header in fields:
            meta[field] = fields[header]
    if "content_type" not in meta and file_type:
        meta["content_type"] = file_type
    if fields.get("content-encoding"):
        meta["content_encoding"] = fields["content-encoding"]
    return meta


async def _drain(form: _Form) -> None:
    """Read (and ignore) what follows the file, within a bound."""
    seen = 0
    with trio.move_on_after(5):
        while not form.ended:
            try:
                event = await form.next()
            except FormError:
                return
            if isinstance(event, FormEnd):
                return
            if isinstance(event, PartData):
                seen += len(event.data)
                if seen > MAX_TRAILING_BYTES:
                    return


async def post_object(req: HttpRequest, backend: Backend, bucket: str, *, session_key: bytes, now: float,
                      region: str, account: str, max_object_bytes: int) -> HttpResponse:
    try:
        form = _Form(req, FormParser(boundary_of(req.header("content-type"))))
        fields, filename, file_type = await _read_fields(form)
        ident = await _authenticate(req, fields, backend, session_key=session_key, now=now)
        policy = decode_policy(fields["policy"], now)
        key = _need(fields, "key")
        if "${filename}" in key:
            key = key.replace("${filename}", (filename or "").replace("\\", "/").rsplit("/", 1)[-1])
        check_user_key(key)
        length_range = check_policy(policy, {**fields, "key": key, "bucket": bucket})
    except FormError as exc:
        raise _form_error(exc) from None
    for unsupported in ("acl", "tagging", "x-amz-server-side-encryption-customer-algorithm",
                        "x-amz-website-redirect-location", "x-amz-object-lock-mode"):
        if unsupported in fields and not (unsupported == "acl" and fields["acl"] in ("private", "")):
            raise S3Error("NotImplemented", f"The form field {unsupported} is not supported by onezone.")
    record = await require_bucket(backend, bucket)
    ident = replace(ident, bucket_policy=backend.bucket_policy(record))
    authorize_s3("PostObject", bucket, ident, req, region=region, account=account, now=now, key=key)
    check_session_kms(req, ident, record, now)
    meta = _object_meta(fields, file_type)
    algo, expected = "CRC32", None
    for name in checksums.ALGORITHMS:
        if checksums.header_name(name) in fields:
            algo, expected = name, fields[checksums.header_name(name)]
            break
    meta["checksum_algorithm"] = algo
    result: dict[str, Any] = {}
    stream = _file_stream(form, result, algo=algo, expected=expected, length_range=length_range,
                          max_bytes=max_object_bytes)
    args = {"bucket": bucket, "key": key, "bucket_version": record["version"], "meta": meta}
    stored = (await backend.node_call(record, "PutObject", args, body=stream))["meta"]
    if stored.get("checksum_value") != result.get("checksum"):
        log.error("event=checksum_divergence bucket=%s key=%s", bucket, key)
        raise S3Error("InternalError", "The stored object's checksum does not match the received data.")
    await _drain(form)
    location = f"/{quote(bucket)}/{quote(key, safe='/~')}"
    headers = [("etag", quote_etag(stored["etag"])), ("location", location)] + object_sse_headers(stored, record)
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        sep = "&" if "?" in redirect else "?"
        target = redirect + sep + urlencode({"bucket": bucket, "key": key, "etag": quote_etag(stored["etag"])})
        return HttpResponse(303, [("location", target)] + headers[:1])
    status = fields.get("success_action_status", "204")
    if status == "201":
        body = document("PostResponse", leaf("Location", location), leaf("Bucket", bucket), leaf("Key", key),
                        leaf("ETag", quote_etag(stored["etag"])))
        return HttpResponse(201, headers + [("content-type", "application/xml")], body)
    return HttpResponse(200 if status == "200" else 204, headers)
