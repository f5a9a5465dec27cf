"""S3 result documents for sessions, buckets, deletes, copies and multipart.

Responsibility: render the XML bodies of successful S3 responses in exactly
the shapes boto3/botocore accept (wire reference ``s3express-wire.md``
sections 3.2 and 6). This is the single import point for result documents:
the listing renderers live in :mod:`gateway.s3listings` and are re-exported
here. Every document carries the XML declaration and the S3 namespace; text
is escaped by :mod:`gateway.xmlbuild`.

Conventions shared by all renderers:

* timestamps are aware datetimes or epoch seconds, rendered
  ``YYYY-MM-DDTHH:MM:SS.000Z`` (CreateSession's Expiration has no millis);
* ETags may be passed with or without surrounding quotes and are always
  rendered quoted;
* ``checksums`` map an algorithm name (``"CRC32"``, ``"SHA256"``, ...) to its
  base64 value and become ``<ChecksumCRC32>`` etc.;
* owners/initiators are ``(id, display_name | None)`` tuples.

Pure module: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.s3listings import (
    ListedObject,
    ListedPart,
    ListedUpload,
    list_multipart_uploads_result,
    list_objects_v2_result,
    list_parts_result,
)
from gateway.xmlbuild import (
    Timestamp,
    checksum_elements,
    document,
    format_expiration,
    format_timestamp,
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
    "create_session_result",
    "list_directory_buckets_result",
    "list_buckets_result",
    "encryption_configuration",
    "delete_result",
    "list_objects_v2_result",
    "copy_object_result",
    "copy_part_result",
    "initiate_multipart_result",
    "complete_multipart_result",
    "list_parts_result",
    "list_multipart_uploads_result",
]


def create_session_result(
    access_key_id: str, secret: str, session_token: str, expiration: Timestamp
) -> bytes:
    """Render CreateSession's result (wire reference 3.2).

    Args:
        access_key_id: Session access key id.
        secret: Session secret access key.
        session_token: Opaque session token.
        expiration: When the session expires (aware datetime or epoch seconds).

    Returns:
        The ``CreateSessionResult`` document.

    Raises:
        ValueError: ``expiration`` is a naive datetime.
    """
    return document(
        "CreateSessionResult",
        node(
            "Credentials",
            leaf("SessionToken", session_token),
            leaf("SecretAccessKey", secret),
            leaf("AccessKeyId", access_key_id),
            leaf("Expiration", format_expiration(expiration)),
        ),
    )


def list_directory_buckets_result(
    buckets: Iterable[tuple[str, Timestamp, str | None, str | None]],
    continuation_token: str | None = None,
) -> bytes:
    """Render ListDirectoryBuckets' result (wire reference 6.1).

    Args:
        buckets: ``(name, creation_date, region, arn)``; region/arn may be None.
        continuation_token: Token for the next page; None on the last page
            (the paginator stops only when it is absent).

    Returns:
        The ``ListAllMyDirectoryBucketsResult`` document.
    """
    entries = [
        node("Bucket", leaf("Name", name), leaf("CreationDate", format_timestamp(created)),
             opt("BucketRegion", region), opt("BucketArn", arn))
        for name, created, region, arn in buckets
    ]
    return document(
        "ListAllMyDirectoryBucketsResult",
        node("Buckets", *entries),
        opt("ContinuationToken", continuation_token),
    )


def list_buckets_result(
    owner_id: str,
    owner_name: str | None,
    buckets: Iterable[tuple[str, Timestamp]],
    *,
    region: str | None = None,
    continuation_token: str | None = None,
    prefix: str | None = None,
) -> bytes:
    """Render ListBuckets' result.

    Args:
        owner_id: Canonical id of the requester.
        owner_name: Display name, or None to omit it.
        buckets: ``(name, creation_date)`` pairs.
        region: If given, emitted as every bucket's ``BucketRegion``.
        continuation_token: Token for the next page, None on the last page.
        prefix: Echo of the request's prefix filter, if any.

    Returns:
        The ``ListAllMyBucketsResult`` document.
    """
    entries = [
        node("Bucket", leaf("Name", name), leaf("CreationDate", format_timestamp(created)),
             opt("BucketRegion", region))
        for name, created in buckets
    ]
    return document(
        "ListAllMyBucketsResult",
        person("Owner", (owner_id, owner_name)),
        node("Buckets", *entries),
        opt("ContinuationToken", continuation_token),
        opt("Prefix", prefix),
    )


def encryption_configuration(
    sse_algorithm: str, kms_key_id: str | None = None, bucket_key_enabled: bool = True
) -> bytes:
    """Render GetBucketEncryption's result (wire reference 6.5).

    Args:
        sse_algorithm: ``AES256``, ``aws:kms`` or ``aws:kms:dsse``.
        kms_key_id: KMS key id/ARN for aws:kms, else None.
        bucket_key_enabled: Whether S3 Bucket Keys are on.

    Returns:
        The ``ServerSideEncryptionConfiguration`` document (one flattened Rule).
    """
    return document(
        "ServerSideEncryptionConfiguration",
        node(
            "Rule",
            node("ApplyServerSideEncryptionByDefault", leaf("SSEAlgorithm", sse_algorithm),
                 opt("KMSMasterKeyID", kms_key_id)),
            leaf("BucketKeyEnabled", bucket_key_enabled),
        ),
    )


def delete_result(deleted: Iterable[str], errors: Iterable[tuple[str, str, str]]) -> bytes:
    """Render DeleteObjects' result (wire reference 6.10).

    Args:
        deleted: Keys deleted; pass an empty list for Quiet requests.
        errors: ``(key, code, message)`` for each failed key.

    Returns:
        The ``DeleteResult`` document.
    """
    return document(
        "DeleteResult",
        *(node("Deleted", leaf("Key", key)) for key in deleted),
        *(node("Error", leaf("Key", key), leaf("Code", code), leaf("Message", message))
          for key, code, message in errors),
    )


def _copy_result(root: str, etag: str, last_modified: Timestamp,
                 checksums: Mapping[str, str] | None, checksum_type: str | None) -> bytes:
    return document(
        root,
        leaf("LastModified", format_timestamp(last_modified)),
        leaf("ETag", quote_etag(etag)),
        checksum_elements(checksums, checksum_type),
    )


def copy_object_result(
    etag: str,
    last_modified: Timestamp,
    checksums: Mapping[str, str] | None = None,
    *,
    checksum_type: str | None = None,
) -> bytes:
    """Render CopyObject's result (wire reference 6.12).

    Args:
        etag: ETag of the new object.
        last_modified: Its modification time.
        checksums: Full-object checksums, algorithm -> base64.
        checksum_type: ``FULL_OBJECT``/``COMPOSITE``, if known.

    Returns:
        The ``CopyObjectResult`` document.

    Raises:
        ValueError: unknown checksum algorithm.
    """
    return _copy_result("CopyObjectResult", etag, last_modified, checksums, checksum_type)


def copy_part_result(
    etag: str,
    last_modified: Timestamp,
    checksums: Mapping[str, str] | None = None,
) -> bytes:
    """Render UploadPartCopy's result (wire reference 6.13).

    Args:
        etag: ETag of the new part.
        last_modified: Its modification time.
        checksums: Part checksums, algorithm -> base64.

    Returns:
        The ``CopyPartResult`` document.

    Raises:
        ValueError: unknown checksum algorithm.
    """
    return _copy_result("CopyPartResult", etag, last_modified, checksums, None)


def initiate_multipart_result(bucket: str, key: str, upload_id: str) -> bytes:
    """Render CreateMultipartUpload's result (wire reference 6.13).

    Args:
        bucket: Bucket name.
        key: Object key.
        upload_id: New upload id.

    Returns:
        The ``InitiateMultipartUploadResult`` document.
    """
    return document(
        "InitiateMultipartUploadResult",
        leaf("Bucket", bucket), leaf("Key", key), leaf("UploadId", upload_id),
    )


def complete_multipart_result(
    location: str,
    bucket: str,
    key: str,
    etag: str,
    checksums: Mapping[str, str] | None = None,
    *,
    checksum_type: str | None = None,
) -> bytes:
    """Render CompleteMultipartUpload's result (wire reference 6.13).

    Args:
        location: URL of the new object.
        bucket: Bucket name.
        key: Object key.
        etag: Multipart ETag (``"...-N"``).
        checksums: Object checksums, algorithm -> base64.
        checksum_type: ``COMPOSITE``/``FULL_OBJECT``, if any.

    Returns:
        The ``CompleteMultipartUploadResult`` document.

    Raises:
        ValueError: unknown checksum algorithm.
    """
    return document(
        "CompleteMultipartUploadResult",
        leaf("Location", location), leaf("Bucket", bucket), leaf("Key", key),
        leaf("ETag", quote_etag(etag)),
        checksum_elements(checksums, checksum_type),
    )


