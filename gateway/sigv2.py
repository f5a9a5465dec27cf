"""AWS Signature Version 2 for presigned URLs and POST forms (general-purpose buckets only).

boto3's default configuration presigns URLs (``generate_presigned_url``) and POST forms
(``generate_presigned_post``) for a general-purpose bucket behind a custom endpoint with SigV2
(wire reference §3.5), so tools that know nothing of directory buckets need it. Header-signed
SigV2 (``Authorization: AWS ...``) is not accepted: no current SDK sends it to S3.

Theory of operation (the S3 "REST authentication" of 2006)::

    StringToSign = METHOD \\n Content-MD5 \\n Content-Type \\n Expires \\n
                   CanonicalizedAmzHeaders CanonicalizedResource
    Signature    = base64(HMAC-SHA1(secret, StringToSign))

``Expires`` is the query parameter (epoch seconds); Content-MD5, Content-Type and ``x-amz-*``
come from the query string when the signer put them there (botocore does), else from the
headers. CanonicalizedResource is ``/bucket`` + the raw path (``/bucket/key`` as sent for path
style) + the sub-resources of interest, sorted, values decoded. A POST form's signature is
base64(HMAC-SHA1(secret, policy-base64)). Pure: no clock, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import unquote

SUBRESOURCES = frozenset({
    "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy",
    "requestPayment", "torrent", "versioning", "versionId", "versions", "website", "uploads", "uploadId",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "delete", "lifecycle", "tagging", "restore",
    "storageClass", "notification", "replication", "analytics", "metrics", "inventory", "select",
    "select-type", "object-lock",
})
MAX_EXPIRES_AHEAD_S = 7 * 86400


class SigV2Error(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class PresignedV2:
    access_key_id: str
    expires: int  # epoch seconds
    signature: str


def _params(query: str) -> list[tuple[str, str]]:
    out = []
    for piece in filter(None, query.split("&")):
        name, _, value = piece.partition("=")
        out.append((unquote(name), unquote(value)))
    return out


def parse_presigned(target: str) -> PresignedV2 | None:
    """The SigV2 query parameters of a request, or None when it has none.

    Raises:
        SigV2Error: ``AccessDenied`` / ``InvalidArgument`` for incomplete or malformed ones.
    """
    params = dict(_params(target.partition("?")[2]))
    if "AWSAccessKeyId" not in params and "Signature" not in params:
        return None
    akid, expires, signature = params.get("AWSAccessKeyId"), params.get("Expires"), params.get("Signature")
    if not akid or not signature or expires is None:
        raise SigV2Error("AccessDenied", "Query-string authentication requires the Signature, Expires and "
                                         "AWSAccessKeyId parameters")
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        raise SigV2Error("AccessDenied", "Invalid date (should be seconds since epoch): " + expires[:32])
    return PresignedV2(akid, int(expires), signature)


def string_to_sign(method: str, target: str, headers: list[tuple[str, str]], *, bucket_prefix: str = "") -> str:
    """The SigV2 string to sign of a presigned request.

    Args:
        bucket_prefix: ``/bucket`` for virtual-host addressing (the path then lacks it), else "".
    """
    path, _, query = target.partition("?")
    params = _params(query)
    qdict = {k.lower(): v for k, v in params}

    def value(name: str) -> str:
        if name in qdict:
            return qdict[name]
        return next((v for k, v in headers if k == name), "")

    amz = {k.lower(): v for k, v in headers if k.lower().startswith("x-amz-")}
    amz.update({k: v for k, v in qdict.items() if k.startswith("x-amz-")})
    amz_lines = "".join(f"{k}:{' '.join(v.split())}\n" for k, v in sorted(amz.items()))
    sub = sorted((k, v) for k, v in params if k in SUBRESOURCES)
    resource = bucket_prefix + path
    if sub:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in sub)
    return "\n".join([method.upper(), value("content-md5"), value("content-type"), qdict.get("expires", "")]) + \
        "\n" + amz_lines + resource


def sign(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()).decode()


def verify(secret: str, text: str, signature: str) -> None:
    """Raises SigV2Error SignatureDoesNotMatch unless ``signature`` signs ``text``."""
    if not hmac.compare_digest(sign(secret, text).encode(), signature.strip().encode("utf-8", "replace")):
        raise SigV2Error("SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                  "signature you provided. Check your key and signing method.")


def check_expires(p: PresignedV2, now: float) -> None:
    if now >= p.expires:
        raise SigV2Error("AccessDenied", "Request has expired")
    if p.expires - now > MAX_EXPIRES_AHEAD_S:
        raise SigV2Error("AccessDenied", "Signature Version 2 URLs may be valid for at most 7 days")
