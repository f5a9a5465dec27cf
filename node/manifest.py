"""Object manifests: what the index stores per object version, and the metadata callers see.

Sans-I/O: validation, construction and (versioned) encoding of manifests; no files, clocks or
randomness (they come in as arguments).

A manifest is the ``ObjectMeta`` map of docs/rpc.md plus the format version ``v``:

    {v, key, size, etag, last_modified, content_type, user_meta, cache_control?,
     content_disposition?, content_encoding?, content_language?, expires?,
     checksum_algorithm?, checksum_value?, sse_algorithm, kms_key_arn?, key_gen,
     object_id (16 bytes), chunk_bytes, chunks}

It is built in two steps because a write streams: ``start_manifest`` holds what is known before
the body (sent to replicas as ``ReplicaPut``'s ``meta``), ``finish_manifest`` adds what only the
end of the body tells (``size``, ``etag``, ``chunks``, ``checksum_value``: the trailer of the
replica stream). ``public_meta`` is what the gateway gets: the manifest without ``v``, ``object_id`` (internal:
it names the data file and keys the object's encryption), ``runs`` and ``part_count`` (an
object made of several runs of chunks - appends, zero-copy multipart - see ``node.runs``).
"""

from __future__ import annotations

from typing import Any

import msgpack

from proto.checksums import ALGORITHMS
from proto.errors import Internal, InvalidRequest
from proto.names import InvalidName, validate_object_key

MANIFEST_VERSION = 1
MAX_USER_META_BYTES = 2048
MAX_FIELD_CHARS = 2048
MAX_CHUNK_BYTES = 64 * 1024 * 1024
OBJECT_ID_BYTES = 16
DEFAULT_CONTENT_TYPE = "binary/octet-stream"

_STR_FIELDS = ("content_type", "cache_control", "content_disposition", "content_encoding",
               "content_language")
USER_FIELDS = frozenset(_STR_FIELDS + ("user_meta", "expires", "checksum_algorithm", "checksum_value",
                                       "multipart"))
"""The fields a gateway may set in PutObject's ``meta``."""
_START_FIELDS = frozenset(USER_FIELDS - {"checksum_value"}
                          | {"key", "last_modified", "sse_algorithm", "kms_key_arn", "key_gen",
                             "object_id", "chunk_bytes"})


def _invalid(message: str, kind: str = "InvalidArgument") -> InvalidRequest:
    return InvalidRequest(message, kind=kind)


def check_key(key: Any) -> str:
    """Validate an object key (1..1024 UTF-8 bytes, no NUL); InvalidRequest with S3's kind."""
    try:
        validate_object_key(key)
    except InvalidName as exc:
        raise _invalid(str(exc), exc.code) from None
    return key


def parse_user_fields(meta: Any) -> dict[str, Any]:
    """Validate PutObject's ``meta`` (the user-facing fields) and return a clean copy.

    Raises:
        InvalidRequest: kind ``InvalidArgument`` (unknown field, wrong type, too long, unknown
            checksum algorithm) or ``MetadataTooLarge`` (user metadata over 2 KiB).
    """
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise _invalid("meta must be a map")
    unknown = sorted(str(k) for k in meta if k not in USER_FIELDS)
    if unknown:
        raise _invalid(f"unknown meta field(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name in _STR_FIELDS + ("checksum_value",):
        value = meta.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > MAX_FIELD_CHARS:
            raise _invalid(f"meta.{name} must be a string of at most {MAX_FIELD_CHARS} characters")
        out[name] = value
    expires = meta.get("expires")
    if expires is not None:
        if isinstance(expires, bool) or not isinstance(expires, (str, int, float)):
            raise _invalid("meta.expires must be a string or a number")
        if isinstance(expires, str) and len(expires) > MAX_FIELD_CHARS:
            raise _invalid("meta.expires is too long")
        out["expires"] = expires
    algo = meta.get("checksum_algorithm")
    if algo is not None:
        if algo not in ALGORITHMS:
            raise _invalid(f"meta.checksum_algorithm must be one of {', '.join(ALGORITHMS)}")
        out["checksum_algorithm"] = algo
    elif "checksum_value" in out:
        raise _invalid("meta.checksum_value needs meta.checksum_algorithm")
    user_meta = meta.get("user_meta") or {}
    if not isinstance(user_meta, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in user_meta.items()):
        raise _invalid("meta.user_meta must map non-empty strings to strings")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in user_meta.items())
    if size > MAX_USER_META_BYTES:
        raise _invalid(f"user metadata is {size} bytes; the limit is {MAX_USER_META_BYTES}", "MetadataTooLarge")
    out["user_meta"] = dict(user_meta)
    if meta.get("multipart") is not None:
        out["multipart"] = parse_multipart(meta["multipart"])
    out.setdefault("content_type", DEFAULT_CONTENT_TYPE)
    return out


_MP_STR_FIELDS = {"etag": 64, "upload_id": 128, "upload_key": 1024, "checksum_type": 32, "checksum": 256,
                  "algorithm": 16, "owner": 2048}
MAX_PARTS = 10000


def parse_multipart(value: Any) -> dict[str, Any]:
    """Validate the ``multipart`` meta field: what the gateway records about a multipart object
    (its ``etag`` ``<hex>-N``, which the node then uses as the object's ETag, and ``parts``:
    ``[[size, checksum or None], ...]``) or about an upload in progress. The node checks types
    and sizes only; the meaning is the gateway's (gateway/s3_multipart.py).
    """
    if not isinstance(value, dict):
        raise _invalid("meta.multipart must be a map")
    out: dict[str, Any] = {}
    for name, item in value.items():
        if name in _MP_STR_FIELDS:
            if not isinstance(item, str) or len(item.encode("utf-8", "surrogatepass")) > _MP_STR_FIELDS[name]:
                raise _invalid(f"meta.multipart.{name} must be a string of at most {_MP_STR_FIELDS[name]} bytes")
        elif name == "parts":
            if not isinstance(item, list) or len(item) > MAX_PARTS or not all(
                    isinstance(p, list) and len(p) == 2 and isinstance(p[0], int) and not isinstance(p[0], bool)
                    and p[0] >= 0 and (p[1] is None or (isinstance(p[1], str) and len(p[1]) <= 128)) for p in item):
                raise _invalid(f"meta.multipart.parts must be at most {MAX_PARTS} [size, checksum] pairs")
        else:
            raise _invalid(f"unknown meta.multipart field {str(name)[:64]!r}")
        out[name] = item
    return out


def start_manifest(*, key: str, user: dict[str, Any], object_id: bytes, key_gen: int, chunk_bytes: int,
                   last_modified: float, sse_algorithm: str, kms_key_arn: str | None) -> dict[str, Any]:
    """What is known before the body: ``user`` comes from ``parse_user_fields``.

    A caller-given ``checksum_value`` is not part of it (it is checked, then replaced by the
    value computed over the stored bytes, in ``finish_manifest``).
    """
    m = {k: v for k, v in user.items() if k != "checksum_value"}
    m.update(key=key, object_id=object_id, key_gen=key_gen, chunk_bytes=chunk_bytes,
             last_modified=float(last_modified), sse_algorithm=sse_algorithm)
    if kms_key_arn is not None:
        m["kms_key_arn"] = kms_key_arn
    return m


def finish_manifest(start: dict[str, Any], *, size: int, etag: str, chunks: int,
                    checksum_value: str | None) -> dict[str, Any]:
    etag = (start.get("multipart") or {}).get("etag") or etag  # a multipart object's ETag is <hex>-N
    m = dict(start, v=MANIFEST_VERSION, size=size, etag=etag, chunks=chunks)
    if checksum_value is not None:
        m["checksum_value"] = checksum_value
    return m


def parse_replica_meta(meta: Any) -> dict[str, Any]:
    """Validate ``ReplicaPut``'s ``meta`` (a ``start_manifest`` from the primary).

    Raises:
        InvalidRequest: kind ``InvalidArgument`` for anything malformed or unknown.
    """
    if not isinstance(meta, dict):
        raise _invalid("meta must be a map")
    unknown = sorted(str(k) for k in meta if k not in _START_FIELDS)
    if unknown:
        raise _invalid(f"unknown meta field(s): {', '.join(unknown)}")
    user = parse_user_fields({k: v for k, v in meta.items() if k in USER_FIELDS})
    key = check_key(meta.get("key"))
    object_id = meta.get("object_id")
    if not isinstance(object_id, bytes) or len(object_id) != OBJECT_ID_BYTES:
        raise _invalid("meta.object_id must be 16 bytes")
    for name in ("key_gen", "chunk_bytes"):
        value = meta.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _invalid(f"meta.{name} must be a non-negative integer")
    if not 1 <= meta["chunk_bytes"] <= MAX_CHUNK_BYTES:
        raise _invalid("meta.chunk_bytes is out of range")
    last_modified = meta.get("last_modified")
    if isinstance(last_modified, bool) or not isinstance(last_modified, (int, float)):
        raise _invalid("meta.last_modified must be a number")
    sse = meta.get("sse_algorithm")
    arn = meta.get("kms_key_arn")
    if not isinstance(sse, str) or not (arn is None or isinstance(arn, str)):
        raise _invalid("meta.sse_algorithm / meta.kms_key_arn must be strings")
    return start_manifest(key=key, user=user, object_id=object_id, key_gen=meta["key_gen"],
                          chunk_bytes=meta["chunk_bytes"], last_modified=last_modified,
                          sse_algorithm=sse, kms_key_arn=arn)


def public_meta(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ObjectMeta a gateway gets: no format version, no object id."""
    return {k: v for k, v in manifest.items() if k not in ("v", "object_id", "runs", "part_count")}


def encode_manifest(manifest: dict[str, Any]) -> bytes:
    return msgpack.packb(manifest, use_bin_type=True)


def decode_manifest(data: bytes) -> dict[str, Any]:
    """Decode a stored manifest, dispatching on its format version."""
    try:
        m = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.ExtraData) as exc:
        raise Internal(f"corrupt manifest in the index: {exc}") from None
    if not isinstance(m, dict) or m.get("v") != MANIFEST_VERSION:
        raise Internal("manifest of an unknown format version in the index")
    return m
