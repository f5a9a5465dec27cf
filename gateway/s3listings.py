"""S3 listing documents: ListObjectsV2, ListParts, ListMultipartUploads.

Responsibility: render paginated listing results in the shapes boto3/botocore
accept (wire reference ``s3express-wire.md`` sections 6.11 and 6.13),
including ``encoding-type=url`` key encoding. The entry dataclasses describe
one listed item each; conventions (timestamps, ETags, checksums, owners) are
those of :mod:`gateway.s3responses`, which re-exports everything here.

Pure module: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.xmlbuild import (
    Owner,
    Timestamp,
    checksum_elements,
    document,
    format_timestamp,
    key_encoder,
    leaf,
    node,
    opt,
    person,
    quote_etag,
)

__all__ = [
    "ListedObject",
    "ListedPart",
    "ListedUpload",
    "list_objects_v2_result",
    "list_parts_result",
    "list_multipart_uploads_result",
]

_EXPRESS = "EXPRESS_ONEZONE"


@dataclass(frozen=True)
class ListedObject:
    """One ``<Contents>`` entry of ListObjectsV2."""

    key: str
    last_modified: Timestamp
    etag: str
    size: int
    storage_class: str = _EXPRESS
    owner: Owner | None = None
    checksum_algorithm: str | None = None
    checksum_type: str | None = None


@dataclass(frozen=True)
class ListedPart:
    """One ``<Part>`` entry of ListParts."""

    part_number: int
    last_modified: Timestamp
    etag: str
    size: int
    checksums: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ListedUpload:
    """One ``<Upload>`` entry of ListMultipartUploads."""

    key: str
    upload_id: str
    initiated: Timestamp
    storage_class: str = _EXPRESS
    owner: Owner | None = None
    initiator: Owner | None = None
    checksum_algorithm: str | None = None
    checksum_type: str | None = None


def list_objects_v2_result(
    *,
    bucket: str,
    contents: Sequence[ListedObject],
    common_prefixes: Sequence[str] = (),
    prefix: str = "",
    delimiter: str | None = None,
    max_keys: int = 1000,
    is_truncated: bool = False,
    continuation_token: str | None = None,
    next_continuation_token: str | None = None,
    start_after: str | None = None,
    encoding_type: str | None = None,
    key_count: int | None = None,
) -> bytes:
    """Render ListObjectsV2's result (wire reference 6.11).

    Args:
        bucket: Bucket name.
        contents: Objects on this page.
        common_prefixes: Rolled-up prefixes on this page.
        prefix: Request prefix (always echoed, possibly empty).
        delimiter: Request delimiter, if any.
        max_keys: Effective max-keys.
        is_truncated: Whether more results follow.
        continuation_token: Echo of the request's token.
        next_continuation_token: Token for the next page when truncated.
        start_after: Echo of the request's start-after.
        encoding_type: None or ``"url"``; with ``"url"`` keys, prefixes,
            delimiter and start-after are percent-encoded and
            ``<EncodingType>url</EncodingType>`` is emitted so botocore
            decodes them (it decodes only when that element is present).
        key_count: Defaults to ``len(contents) + len(common_prefixes)``.

    Returns:
        The ``ListBucketResult`` document.

    Raises:
        ValueError: unsupported ``encoding_type`` or checksum algorithm.
    """
    enc = key_encoder(encoding_type)
    if key_count is None:
        key_count = len(contents) + len(common_prefixes)
    entries = [
        node(
            "Contents",
            leaf("Key", enc(obj.key)),
            leaf("LastModified", format_timestamp(obj.last_modified)),
            leaf("ETag", quote_etag(obj.etag)),
            opt("ChecksumAlgorithm", obj.checksum_algorithm),
            opt("ChecksumType", obj.checksum_type),
            leaf("Size", obj.size),
            leaf("StorageClass", obj.storage_class),
            person("Owner", obj.owner),
        )
        for obj in contents
    ]
    return document(
        "ListBucketResult",
        leaf("Name", bucket),
        leaf("Prefix", enc(prefix)),
        opt("EncodingType", encoding_type),
        opt("Delimiter", None if delimiter is None else enc(delimiter)),
        leaf("MaxKeys", max_keys),
        leaf("KeyCount", key_count),
        leaf("IsTruncated", is_truncated),
        opt("ContinuationToken", continuation_token),
        opt("StartAfter", None if start_after is None else enc(start_after)),
        *entries,
        *(node("CommonPrefixes", leaf("Prefix", enc(p))) for p in common_prefixes),
        opt("NextContinuationToken", next_continuation_token),
    )


def list_parts_result(
    *,
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[ListedPart],
    part_number_marker: int = 0,
    next_part_number_marker: int | None = None,
    max_parts: int = 1000,
    is_truncated: bool = False,
    storage_class: str = _EXPRESS,
    owner: Owner | None = None,
    initiator: Owner | None = None,
    checksum_algorithm: str | None = None,
    checksum_type: str | None = None,
) -> bytes:
    """Render ListParts' result (wire reference 6.13).

    Args:
        bucket: Bucket name.
        key: Object key.
        upload_id: Upload id.
        parts: Parts on this page, ascending.
        part_number_marker: Echo of the request's marker.
        next_part_number_marker: Marker for the next page (the paginator
            follows it while ``is_truncated``); None to omit.
        max_parts: Effective max-parts.
        is_truncated: Whether more parts follow.
        storage_class: Upload's storage class.
        owner: Upload owner.
        initiator: Upload initiator.
        checksum_algorithm: Upload's checksum algorithm, if any.
        checksum_type: Upload's checksum type, if any.

    Returns:
        The ``ListPartsResult`` document.

    Raises:
        ValueError: unknown checksum algorithm.
    """
    entries = [
        node(
            "Part",
            leaf("PartNumber", p.part_number),
            leaf("LastModified", format_timestamp(p.last_modified)),
            leaf("ETag", quote_etag(p.etag)),
            leaf("Size", p.size),
            checksum_elements(p.checksums),
        )
        for p in parts
    ]
    return document(
        "ListPartsResult",
        leaf("Bucket", bucket), leaf("Key", key), leaf("UploadId", upload_id),
        leaf("PartNumberMarker", part_number_marker),
        opt("NextPartNumberMarker", next_part_number_marker),
        leaf("MaxParts", max_parts),
        leaf("IsTruncated", is_truncated),
        *entries,
        person("Initiator", initiator),
        person("Owner", owner),
        leaf("StorageClass", storage_class),
        opt("ChecksumAlgorithm", checksum_algorithm),
        opt("ChecksumType", checksum_type),
    )


def list_multipart_uploads_result(
    *,
    bucket: str,
    uploads: Sequence[ListedUpload],
    common_prefixes: Sequence[str] = (),
    prefix: str | None = None,
    delimiter: str | None = None,
    key_marker: str = "",
    upload_id_marker: str = "",
    next_key_marker: str | None = None,
    next_upload_id_marker: str | None = None,
    max_uploads: int = 1000,
    is_truncated: bool = False,
    encoding_type: str | None = None,
) -> bytes:
    """Render ListMultipartUploads' result (wire reference 6.13).

    Args:
        bucket: Bucket name.
        uploads: Uploads on this page.
        common_prefixes: Rolled-up prefixes on this page.
        prefix: Echo of the request's prefix, if any.
        delimiter: Echo of the request's delimiter, if any.
        key_marker: Echo of the request's key-marker.
        upload_id_marker: Echo of the request's upload-id-marker.
        next_key_marker: Key marker for the next page, if truncated.
        next_upload_id_marker: Upload-id marker for the next page, if truncated.
        max_uploads: Effective max-uploads.
        is_truncated: Whether more uploads follow.
        encoding_type: None or ``"url"``; ``"url"`` percent-encodes Key,
            Prefix, Delimiter, KeyMarker, NextKeyMarker and CommonPrefixes
            (botocore does not decode these for this operation; the client
            asked for it explicitly).

    Returns:
        The ``ListMultipartUploadsResult`` document.

    Raises:
        ValueError: unsupported ``encoding_type``.
    """
    enc = key_encoder(encoding_type)
    entries = [
        node(
            "Upload",
            leaf("Key", enc(u.key)), leaf("UploadId", u.upload_id),
            leaf("Initiated", format_timestamp(u.initiated)),
            leaf("StorageClass", u.storage_class),
            person("Owner", u.owner), person("Initiator", u.initiator),
            opt("ChecksumAlgorithm", u.checksum_algorithm),
            opt("ChecksumType", u.checksum_type),
        )
        for u in uploads
    ]
    return document(
        "ListMultipartUploadsResult",
        leaf("Bucket", bucket),
        leaf("KeyMarker", enc(key_marker)),
        leaf("UploadIdMarker", upload_id_marker),
        opt("NextKeyMarker", None if next_key_marker is None else enc(next_key_marker)),
        opt("NextUploadIdMarker", next_upload_id_marker),
        opt("Prefix", None if prefix is None else enc(prefix)),
        opt("Delimiter", None if delimiter is None else enc(delimiter)),
        opt("EncodingType", encoding_type),
        leaf("MaxUploads", max_uploads),
        leaf("IsTruncated", is_truncated),
        *entries,
        *(node("CommonPrefixes", leaf("Prefix", enc(p))) for p in common_prefixes),
    )
