"""Sans-I/O request routing: (method, host, target, headers, signing service) -> an operation.

Addressing (wire reference §1): a Host whose first label ends with ``--x-s3`` (or any Host that
is not the gateway's own name when virtual-host addressing is configured) names the bucket and
the whole path is the key; otherwise the first path segment is the bucket. Keys are
percent-decoded from the raw path (never ``+`` -> space).

``POST /bucket`` (no subresource) is a browser-form upload (``PostObject``, ``gateway.s3_post``).
``GET /`` is ListDirectoryBuckets when signed for ``s3express`` and ListBuckets when signed for
``s3``. ``POST /`` is the AWS KMS JSON protocol (``X-Amz-Target: TrentService.*``) or the IAM
query protocol (signing service ``iam``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from gateway.errors import S3Error

MAX_KEY_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Route:
    operation: str
    bucket: str | None = None
    key: str | None = None
    query: dict[str, str] = field(default_factory=dict)


def parse_query(raw: str) -> dict[str, str]:
    """Decode a query string; repeated parameters keep the first value."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = unquote(name.replace("+", "%20"))
        if name not in out:
            out[name] = unquote(value.replace("+", "%20"))
    return out


def split_target(target: str) -> tuple[str, str]:
    path, _, query = target.partition("?")
    return path, query


def bucket_from_host(host: str, own_hosts: frozenset[str]) -> str | None:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower()
    if name in own_hosts or not name:
        return None
    first, _, rest = name.partition(".")
    if first.endswith("--x-s3") and rest:
        return first
    for own in own_hosts:
        if name.endswith("." + own):
            return name[: -len(own) - 1]
    return None


_BUCKET_SUBRESOURCES = [
    ("session", {"GET": "CreateSession"}),
    ("encryption", {"PUT": "PutBucketEncryption", "GET": "GetBucketEncryption",
                    "DELETE": "DeleteBucketEncryption"}),
    ("policy", {"PUT": "PutBucketPolicy", "GET": "GetBucketPolicy", "DELETE": "DeleteBucketPolicy"}),
    ("delete", {"POST": "DeleteObjects"}),
    ("uploads", {"GET": "ListMultipartUploads"}),
    ("location", {"GET": "GetBucketLocation"}),
]
_UNSUPPORTED_SUBRESOURCES = ("acl", "tagging", "versioning", "lifecycle", "website", "cors",
                             "logging", "notification", "replication", "object-lock", "versions",
                             "requestPayment", "accelerate", "analytics", "inventory", "metrics",
                             "ownershipControls", "publicAccessBlock", "intelligent-tiering",
                             "legal-hold", "retention", "torrent", "restore", "select",
                             "policyStatus", "abac", "annotation", "metadataConfiguration", "metadataTable",
                             "metadataAnnotationTable", "metadataInventoryTable", "metadataJournalTable",
                             "encryption")


def route(method: str, host: str, target: str, *, service: str | None, x_amz_target: str | None,
          own_hosts: frozenset[str]) -> Route:
    """Classify a request.

    Raises:
        S3Error: MethodNotAllowed, NotImplemented, InvalidRequest or KeyTooLongError.
    """
    path, raw_query = split_target(target)
    query = parse_query(raw_query)
    if not path.startswith("/"):
        raise S3Error("InvalidRequest", "The request target must be an absolute path.")
    bucket = bucket_from_host(host, own_hosts)
    rest = path[1:]
    if bucket is None:
        seg, _, rest = rest.partition("/")
        bucket = unquote(seg) or None
        if bucket is None and rest:
            raise S3Error("InvalidRequest", "Missing bucket name.")
    key = unquote(rest) if rest else None
    if key is not None and len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError")

    if bucket is None:
        if method == "POST":
            if x_amz_target and x_amz_target.startswith("TrentService."):
                return Route("KmsJson", query=query)
            if service == "iam":
                return Route("IamQuery", query=query)
            raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")
        if method in ("GET", "HEAD"):
            op = "ListBuckets" if service == "s3" else "ListDirectoryBuckets"
            return Route(op, query=query)
        raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")

    if key is None:
        for sub, ops in _BUCKET_SUBRESOURCES:
            if sub in query:
                if method not in ops:
                    raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")
                return Route(ops[method], bucket, None, query)
        for sub in _UNSUPPORTED_SUBRESOURCES:
            if sub in query:
                raise S3Error("NotImplemented", f"The ?{sub} subresource is not supported by onezone.")
        ops = {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket", "POST": "PostObject",
               "GET": "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"}
        if method not in ops:
            raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")
        return Route(ops[method], bucket, None, query)

    for sub in _UNSUPPORTED_SUBRESOURCES:
        if sub in query:
            raise S3Error("NotImplemented", f"The ?{sub} subresource is not supported by onezone.")
    if "uploadId" in query:
        ops = {"PUT": "UploadPart", "POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload",
               "GET": "ListParts"}
    elif "uploads" in query:
        ops = {"POST": "CreateMultipartUpload"}
    elif "renameObject" in query:
        ops = {"PUT": "RenameObject"}
    elif "attributes" in query:
        ops = {"GET": "GetObjectAttributes"}
    else:
        ops = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
    if method not in ops:
        raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")
    return Route(ops[method], bucket, key, query)
