"""AWS Signature Version 4 verification for S3 / S3 Express requests.

Responsibility: turn the authentication material of one HTTP request (the
``Authorization`` header or the presigned ``X-Amz-*`` query parameters) into
an :class:`AuthRequest`, recompute the signature from the request exactly as
it was received, and judge the request time. Looking up the secret for an
access key id, session-token validation and authorisation are the caller's
business. Pure: no I/O, no clock (the caller passes ``now``).

Theory of operation (wire reference section 4.1)::

    CanonicalRequest = METHOD \\n raw-path \\n canonical-query \\n
                       canonical-headers \\n signed-headers \\n payload-hash
    StringToSign     = "AWS4-HMAC-SHA256" \\n X-Amz-Date \\n scope \\n
                       hex(sha256(CanonicalRequest))
    kSigning         = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region),
                                      service), "aws4_request")
    Signature        = hex(HMAC(kSigning, StringToSign))

The path is used byte-for-byte as received: S3 signers do not normalise it,
and re-encoding a decoded path can only introduce disagreements. The query is
decoded and re-encoded because its canonical form is sorted and
RFC 3986-encoded while the wire form is neither. Non-S3 services (KMS, IAM)
normally normalise the path, but they are only ever called on ``/``, where
both forms agree.

Security rules enforced while parsing, beyond the signature itself: ``host``
must be signed, every ``x-amz-*`` request header must be signed (S3's
"headers present in the request which were not signed" rule - otherwise a
captured request could be replayed with e.g. a different
``x-amz-copy-source``), and ``x-amz-content-sha256`` is mandatory for header
auth to S3 so the payload is always covered by the signature.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, unquote_to_bytes

__all__ = [
    "ALGORITHM", "EMPTY_SHA256", "UNSIGNED_PAYLOAD", "STREAMING_PAYLOAD_HASHES", "AuthRequest", "SigV4Error",
    "canonical_request", "check_request_time", "compute_signature", "parse_request_auth", "signing_key",
    "string_to_sign", "verify",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# Literal x-amz-content-sha256 values besides a hex digest (section 4.2).
# The ECDSA (SigV4a) variants are absent on purpose: SigV4a is unsupported.
STREAMING_PAYLOAD_HASHES = frozenset({
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
})
_MAX_EXPIRES_S = 604800  # one week, the SigV4 presign maximum
_S3_SERVICES = frozenset({"s3", "s3express"})
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z\Z", re.ASCII)
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}\Z")
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+\Z")
_UNSUPPORTED = "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
_QUERY_REQUIRED = ("Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
                   "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.")


class SigV4Error(Exception):
    """An authentication failure, carrying the S3 error code to answer with.

    Attributes:
        code: S3 error code, e.g. ``"SignatureDoesNotMatch"``.
        message: Human readable explanation (safe to send to the client).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AuthRequest:
    """The parsed, syntactically validated SigV4 material of one request.

    ``payload_hash`` is the declared ``x-amz-content-sha256`` value,
    ``UNSIGNED-PAYLOAD`` for presigned requests, or ``""`` when a non-S3
    request declared none (then the caller must hash the body, see
    :func:`verify`).
    """

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    presigned: bool
    expires_s: int | None
    session_token: str | None
    security_token: str | None
    payload_hash: str
    version: int = 4  # 2: a SigV2 presigned URL (gateway.sigv2), ``expires_s`` then unused

    @property
    def scope(self) -> str:
        """Credential scope ``date/region/service/aws4_request``."""
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


# -- parsing ---------------------------------------------------------------


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


def _single_header(headers: list[tuple[str, str]], name: str, code: str) -> str | None:
    found = _values(headers, name)
    if len(found) > 1:
        # Two differing copies would make "which one was signed" ambiguous.
        raise SigV4Error(code, f"Multiple {name} headers are not allowed.")
    return found[0] if found else None


def _query_params(query: str) -> dict[str, list[str]]:
    """Decoded query parameter values keyed by lower-cased name.

    Auth parameter names are matched case-insensitively (botocore itself
    sends the odd ``X-Amz-S3session-Token``); repeats are kept so they can be
    rejected rather than silently picking one.
    """
    params: dict[str, list[str]] = {}
    for piece in query.split("&"):
        if piece:
            key, _, value = piece.partition("=")
            params.setdefault(unquote(key).lower(), []).append(unquote(value))
    return params


def _parse_amz_date(value: str) -> datetime.datetime | None:
    if not _AMZ_DATE_RE.match(value):
        return None
    try:  # the fields by position (the regex fixed them): strptime costs ~10 us a call
        return datetime.datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]),
                                 int(value[11:13]), int(value[13:15]), tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def _parse_credential(value: str, code: str) -> tuple[str, str, str, str]:
    parts = value.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts):
        raise SigV4Error(code, 'The Credential is mal-formed; expecting "<AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    akid, date, region, service, _ = parts
    if not (len(date) == 8 and date.isascii() and date.isdigit()):
        raise SigV4Error(code, f"Invalid credential date {date!r}.")
    return akid, date, region, service


def _parse_signed_headers(value: str, code: str) -> tuple[str, ...]:
    names = tuple(n.lower() for n in value.split(";"))
    if not all(_HEADER_NAME_RE.match(n) for n in names) or len(set(names)) != len(names):
        raise SigV4Error(code, f"Invalid SignedHeaders {value!r}.")
    if "host" not in names:
        raise SigV4Error(code, "The host header must be signed.")
    return names


def _parse_authorization(value: str) -> tuple[str, str, str]:
    """Split an ``Authorization`` header into credential, headers, signature."""
    malformed = "AuthorizationHeaderMalformed"
    parts = value.strip().split(None, 1)
    if not parts:
        raise SigV4Error(malformed, "The authorization header is empty.")
    if parts[0] != ALGORITHM:
        if parts[0].startswith(ALGORITHM):
            raise SigV4Error(malformed, "The authorization header is malformed.")
        raise SigV4Error("InvalidRequest", _UNSUPPORTED)
    fields: dict[str, str] = {}
    # Values never contain commas or whitespace, so both separators (and any
    # run of them) split components; this tolerates "a=1,b=2" and "a=1, b=2".
    for component in re.split(r"[,\s]+", parts[1] if len(parts) > 1 else ""):
        if not component:
            continue
        name, eq, val = component.partition("=")
        if not eq or name not in ("Credential", "SignedHeaders", "Signature"):
            raise SigV4Error(malformed, f"Unexpected component {name!r} in the Authorization header.")
        if name in fields:
            raise SigV4Error(malformed, f"Duplicate {name} in the authorization header.")
        fields[name] = val
    if len(fields) != 3:
        raise SigV4Error(malformed, "The Authorization header requires Credential, SignedHeaders and Signature.")
    return fields["Credential"], fields["SignedHeaders"], fields["Signature"]


def _check_signature_hex(value: str, code: str) -> str:
    if not _HEX64_RE.match(value):
        raise SigV4Error(code, "The signature must be 64 hexadecimal digits.")
    return value.lower()


def _check_unsigned_amz_headers(headers: list[tuple[str, str]], signed: tuple[str, ...]) -> None:
    unsigned = sorted({k.lower() for k, _ in headers if k.lower().startswith("x-amz-")} - set(signed))
    if unsigned:
        raise SigV4Error("AccessDenied", "There were headers present in the request which were not signed: "
                         + ", ".join(unsigned))


def parse_request_auth(method: str, target: str, headers: list[tuple[str, str]]) -> AuthRequest | None:
    """Extract and syntactically validate the SigV4 material of a request.

    Args:
        method: HTTP method (unused today; kept so the signature mirrors
            :func:`verify` and future checks need no API change).
        target: Raw HTTP request-target (``/path?query``) as received.
        headers: ``(lower-case name, value)`` pairs, repeats allowed.

    Returns:
        The parsed :class:`AuthRequest`, or ``None`` when the request carries
        no authentication at all (anonymous).

    Raises:
        SigV4Error: malformed or unsupported authentication, e.g.
            ``AuthorizationHeaderMalformed``, ``AuthorizationQueryParametersError``,
            ``InvalidRequest`` (SigV2, both header and query auth, missing
            ``x-amz-content-sha256``), ``InvalidArgument`` (bad payload hash
            value), ``AccessDenied`` (missing/invalid ``x-amz-date`` or an
            unsigned ``x-amz-*`` header).
    """
    del method
    params = _query_params(target.partition("?")[2])
    authz = _values(headers, "authorization")
    is_presigned = any(k in params for k in ("x-amz-algorithm", "x-amz-credential", "x-amz-signature"))
    if authz and is_presigned:
        raise SigV4Error("InvalidRequest", "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                                           "parameter or the Authorization header should be specified.")
    if authz:
        return _parse_header_auth(authz, headers)
    if is_presigned:
        return _parse_query_auth(params, headers)
    if "awsaccesskeyid" in params or "signature" in params:
        # A SigV2 presigned URL (section 3.5): refuse clearly instead of
        # silently treating the request as anonymous.
        raise SigV4Error("InvalidRequest", _UNSUPPORTED)
    return None


def _parse_header_auth(authz: list[str], headers: list[tuple[str, str]]) -> AuthRequest:
    malformed = "AuthorizationHeaderMalformed"
    if len(authz) > 1:
        raise SigV4Error(malformed, "Multiple Authorization headers are not allowed.")
    credential, signed_value, signature = _parse_authorization(authz[0])
    akid, date, region, service = _parse_credential(credential, malformed)
    signed = _parse_signed_headers(signed_value, malformed)
    signature = _check_signature_hex(signature, malformed)
    amz_date = (_single_header(headers, "x-amz-date", malformed) or "").strip()
    if _parse_amz_date(amz_date) is None:
        raise SigV4Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    if amz_date[:8] != date:
        raise SigV4Error(malformed, "Invalid credential date. Date is not the same as X-Amz-Date.")

    payload = _single_header(headers, "x-amz-content-sha256", "InvalidRequest")
    if payload is None:
        if service in _S3_SERVICES:
            raise SigV4Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
        payload = ""
    else:
        payload = payload.strip()
        if not (payload == UNSIGNED_PAYLOAD or payload in STREAMING_PAYLOAD_HASHES or _HEX64_RE.match(payload)):
            raise SigV4Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                             "STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
                             "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.")
    _check_unsigned_amz_headers(headers, signed)
    return AuthRequest(
        access_key_id=akid, date=date, region=region, service=service, signed_headers=signed,
        signature=signature, amz_date=amz_date, presigned=False, expires_s=None,
        session_token=_single_header(headers, "x-amz-s3session-token", "InvalidRequest"),
        security_token=_single_header(headers, "x-amz-security-token", "InvalidRequest"),
        payload_hash=payload,
    )


def _parse_query_auth(params: dict[str, list[str]], headers: list[tuple[str, str]]) -> AuthRequest:
    code = "AuthorizationQueryParametersError"

    def one(name: str, required: bool = True) -> str | None:
        found = params.get(name.lower(), [])
        if len(found) > 1:
            raise SigV4Error(code, f"Query parameter {name} must not be repeated.")
        if not found:
            if required:
                raise SigV4Error(code, _QUERY_REQUIRED)
            return None
        return found[0]

    algorithm, credential, amz_date, expires, signed_value, signature = (
        one(n) or "" for n in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
                                "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"))
    if algorithm != ALGORITHM:
        raise SigV4Error(code, 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    akid, date, region, service = _parse_credential(credential, code)
    if _parse_amz_date(amz_date) is None:
        raise SigV4Error(code, "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    if amz_date[:8] != date:
        raise SigV4Error(code, "Invalid credential date. Date is not the same as X-Amz-Date.")
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 7:
        raise SigV4Error(code, "X-Amz-Expires should be a number")
    expires_s = int(expires)
    if not 1 <= expires_s <= _MAX_EXPIRES_S:
        raise SigV4Error(code, "X-Amz-Expires must be between 1 and 604800 seconds (one week).")
    signed = _parse_signed_headers(signed_value, code)
    signature = _check_signature_hex(signature, code)
    _check_unsigned_amz_headers(headers, signed)
    return AuthRequest(
        access_key_id=akid, date=date, region=region, service=service, signed_headers=signed,
        signature=signature, amz_date=amz_date, presigned=True, expires_s=expires_s,
        session_token=one("X-Amz-S3session-Token", required=False),
        security_token=one("X-Amz-Security-Token", required=False),
        payload_hash=UNSIGNED_PAYLOAD,
    )


# -- signing ---------------------------------------------------------------


def _canonical_query(query: str, *, presigned: bool) -> str:
    pairs: list[tuple[str, str]] = []
    for piece in filter(None, query.split("&")):  # "a=1&&b=2": empty components sign nothing
        key, _, value = piece.partition("=")
        # Decode to bytes (not str) so invalid UTF-8 survives the round trip,
        # and use unquote_to_bytes rather than unquote_plus: "+" is literal
        # in S3 query strings and botocore encodes a real plus as %2B.
        key_enc = quote(unquote_to_bytes(key), safe="-_.~")
        if presigned and key_enc.lower() == "x-amz-signature":
            continue
        pairs.append((key_enc, quote(unquote_to_bytes(value), safe="-_.~")))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def _canonical_header_value(values: list[str]) -> str:
    # str.split() with no argument trims and collapses every whitespace run,
    # exactly what botocore does before signing.
    return ",".join(" ".join(v.split()) for v in values)


def canonical_request(method: str, target: str, headers: list[tuple[str, str]],
                      signed_headers: tuple[str, ...] | list[str], payload_hash: str, *, presigned: bool) -> str:
    """Build the SigV4 canonical request (wire reference section 4.1).

    Args:
        method: HTTP method, e.g. ``"GET"`` (upper-cased here).
        target: Raw request-target as received; non-ASCII characters are
            signed as their UTF-8 encoding.
        headers: ``(name, value)`` pairs; repeated names are joined by ``,``.
            A signed header absent from the request contributes an empty value.
            Values are hashed as UTF-8 (botocore only sends ASCII values).
        signed_headers: Lower-case header names, in the order given.
        payload_hash: Value for the last line (hex digest or literal).
        presigned: Drop ``X-Amz-Signature`` from the canonical query.

    Returns:
        The canonical request text.
    """
    path, _, query = target.partition("?")
    lines = [method.upper(), path or "/", _canonical_query(query, presigned=presigned)]
    lines += [f"{name}:{_canonical_header_value(_values(headers, name))}" for name in signed_headers]
    lines += ["", ";".join(signed_headers), payload_hash]
    return "\n".join(lines)


@functools.lru_cache(maxsize=4096)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """Derive kSigning for one credential scope (memoized: it changes once a day per key and
    scope, and four HMACs per request are measurable on the hot path).

    Args:
        secret: Secret access key; date (``yyyymmdd``), region, service: the credential scope.

    Returns:
        The 32-byte signing key.
    """
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    """Build the SigV4 string to sign.

    Args:
        amz_date: ``yyyymmddTHHMMSSZ``; scope: ``date/region/service/aws4_request``;
        canonical_request: output of :func:`canonical_request`.

    Returns:
        The string to sign.
    """
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def compute_signature(key: bytes, to_sign: str) -> str:
    """HMAC-SHA256 ``to_sign`` (from :func:`string_to_sign`) with ``key`` (from :func:`signing_key`).

    Returns:
        Lower-case hex signature.
    """
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def verify(auth: AuthRequest, secret: str, method: str, target: str, headers: list[tuple[str, str]], *,
           body_sha256: str | None = None) -> bytes:
    """Recompute the request signature and compare it in constant time.

    Args:
        auth: Result of :func:`parse_request_auth` for this request.
        secret: Secret key belonging to ``auth.access_key_id``.
        method, target, headers: The request, as passed to :func:`parse_request_auth`.
        body_sha256: Hex SHA-256 of the body; used only when the request
            declared no payload hash (non-S3 services such as KMS).

    Returns:
        The signing key, needed to verify aws-chunked chunk signatures.

    Raises:
        SigV4Error: ``SignatureDoesNotMatch`` when the signatures differ.
        ValueError: no payload hash declared and ``body_sha256`` not given.
    """
    payload_hash = auth.payload_hash or body_sha256
    if not payload_hash:
        raise ValueError("request declares no payload hash; pass body_sha256")
    creq = canonical_request(method, target, headers, auth.signed_headers, payload_hash, presigned=auth.presigned)
    key = signing_key(secret, auth.date, auth.region, auth.service)
    expected = compute_signature(key, string_to_sign(auth.amz_date, auth.scope, creq))
    if not hmac.compare_digest(expected.encode("ascii"), auth.signature.encode("ascii")):
        raise SigV4Error("SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                  "signature you provided. Check your key and signing method.")
    return key


def check_request_time(auth: AuthRequest, now: datetime.datetime, *, max_skew_s: int = 900) -> None:
    """Reject stale, future-dated or expired requests.

    Args:
        auth: Parsed request authentication.
        now: Current time; a naive datetime is taken to be UTC.
        max_skew_s: Tolerated clock difference (AWS: 15 minutes).

    Raises:
        SigV4Error: ``RequestTimeTooSkewed`` for header auth outside the skew
            window; ``AccessDenied`` for a presigned request that has expired
            or whose X-Amz-Date lies more than ``max_skew_s`` in the future.
    """
    when = _parse_amz_date(auth.amz_date)
    if when is None:  # only reachable with a hand-built AuthRequest
        raise SigV4Error("AccessDenied", "Invalid X-Amz-Date.")
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)
    skew = datetime.timedelta(seconds=max_skew_s)
    if auth.presigned:
        if when - now > skew:
            raise SigV4Error("AccessDenied", "Request is not valid yet")
        if now > when + datetime.timedelta(seconds=auth.expires_s or 0):
            raise SigV4Error("AccessDenied", "Request has expired")
    elif abs(now - when) > skew:
        raise SigV4Error("RequestTimeTooSkewed",
                         "The difference between the request time and the current time is too large.")
