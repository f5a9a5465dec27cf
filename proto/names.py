"""Naming rules and ARN construction shared by the gateway and the coordinator.

Responsibility
--------------
One place that decides whether a bucket name, object key, zone id, IAM user
name or KMS key reference is acceptable, and how the ARNs that policies are
evaluated against are spelled.  The gateway uses it to reject bad requests
early with the right S3/KMS/IAM error code; the coordinator uses it again as
the authority when it commits metadata, so both must agree byte for byte --
hence this module lives in the shared ``proto`` package.

Theory of operation
-------------------
Every validator is a pure function that either returns (possibly a parsed
form of its input) or raises :class:`InvalidName`, whose ``code`` is the AWS
error code the HTTP layer should put on the wire and whose message names the
one rule that failed.  Checks run from the cheapest and most general (type,
length, alphabet) to the most specific (reserved prefixes and suffixes), so
the message describes the first rule a human would notice being broken.

ARN builders do no validation: they are fed names that already passed the
validators, and keeping them trivial keeps the policy engine's view of
resources predictable.  Only the ``aws`` partition is produced, because
clients (boto3, the CLI) and copied-in policies expect it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = [
    "InvalidName",
    "KeyRef",
    "KeyRefKind",
    "PARTITION",
    "DIRECTORY_BUCKET_SUFFIX",
    "bucket_arn",
    "iam_user_arn",
    "is_directory_bucket_name",
    "kms_key_arn",
    "object_arn",
    "parse_kms_key_ref",
    "validate_directory_bucket_name",
    "validate_general_bucket_name",
    "validate_iam_user_name",
    "validate_object_key",
    "validate_zone_id",
]

PARTITION = "aws"
DIRECTORY_BUCKET_SUFFIX = "--x-s3"
MAX_KEY_BYTES = 1024

# Prefixes and suffixes AWS reserves; a name using them could collide with
# access points, aliases, demo names or other bucket flavours.
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_GENERAL_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", "--x-s3", ".mrap")
_DIRECTORY_BASE_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3")

_GENERAL_CHARS = re.compile(r"[a-z0-9.-]+")
_DIRECTORY_CHARS = re.compile(r"[a-z0-9-]+")
_IP_LIKE = re.compile(r"\d+\.\d+\.\d+\.\d+")
# Hyphen-separated lowercase alphanumeric segments: use1-az4, usw2-lax1-az1.
_ZONE_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_IAM_USER = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Multi-Region keys use "mrk-" + 32 hex digits instead of a UUID.
_KEY_ID = re.compile(rf"(?:{_UUID}|mrk-[0-9a-f]{{32}})")
_ALIAS_NAME = re.compile(r"alias/[a-zA-Z0-9/_-]{1,250}")
_KMS_ARN = re.compile(
    r"arn:(?P<partition>aws(?:-[a-z]+)*):kms:(?P<region>[a-z0-9-]+):"
    r"(?P<account>\d{12}):(?P<resource>.+)"
)


class InvalidName(ValueError):
    """A name or reference broke a naming rule.

    Attributes:
        code: The AWS error code to report (``InvalidBucketName``,
            ``KeyTooLongError``, ``InvalidArgument``, ``ValidationError``).
        message: Human-readable description of the rule that failed.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class KeyRefKind(enum.Enum):
    """The four spellings KMS accepts for a ``KeyId`` parameter."""

    KEY_ID = "key-id"
    KEY_ARN = "key-arn"
    ALIAS_NAME = "alias-name"
    ALIAS_ARN = "alias-arn"


@dataclass(frozen=True)
class KeyRef:
    """A classified KMS key reference.

    Attributes:
        kind: Which spelling was used.
        raw: The reference exactly as given.
        key_id: The key id for KEY_ID / KEY_ARN, else None.
        alias: The alias name (``alias/...``) for ALIAS_NAME / ALIAS_ARN.
        region: Region from an ARN, else None (caller's region applies).
        account: Account from an ARN, else None (caller's account applies).
    """

    kind: KeyRefKind
    raw: str
    key_id: str | None = None
    alias: str | None = None
    region: str | None = None
    account: str | None = None


def _bucket_error(name: str, rule: str) -> InvalidName:
    return InvalidName("InvalidBucketName", f"Invalid bucket name {name!r}: {rule}")


def _zone_problem(zone: object) -> str | None:
    """Return why ``zone`` is not a zone id, or None if it is one."""
    if not isinstance(zone, str) or not zone:
        return "zone id must be a non-empty string"
    if not _ZONE_ID.fullmatch(zone):
        return (
            f"zone id {zone!r} must be lowercase letters, digits and single "
            "hyphens, starting and ending with a letter or digit"
        )
    return None


def validate_zone_id(zone: str) -> None:
    """Check that ``zone`` looks like an AWS zone id such as ``use1-az4``.

    Args:
        zone: The zone id to check.

    Raises:
        InvalidName: code ``InvalidArgument`` if the zone id is malformed.
    """
    problem = _zone_problem(zone)
    if problem is not None:
        raise InvalidName("InvalidArgument", problem)


def is_directory_bucket_name(name: str) -> bool:
    """Tell whether ``name`` is spelled as a directory bucket name.

    This only looks at the ``--x-s3`` suffix, which is how S3 itself routes
    requests; full validation is :func:`validate_directory_bucket_name`.

    Args:
        name: A bucket name.

    Returns:
        True if the name ends with ``--x-s3``.
    """
    return isinstance(name, str) and name.endswith(DIRECTORY_BUCKET_SUFFIX)


def _check_common_bucket_shape(name: object, chars: re.Pattern[str], alphabet: str) -> str:
    if not isinstance(name, str):
        raise InvalidName("InvalidBucketName", "bucket name must be a string")
    if not 3 <= len(name) <= 63:
        raise _bucket_error(name, "must be between 3 and 63 characters long")
    if not chars.fullmatch(name):
        raise _bucket_error(name, f"may contain only {alphabet}")
    if not (name[0].isalnum() and name[-1].isalnum()):
        raise _bucket_error(name, "must begin and end with a letter or digit")
    return name


def validate_directory_bucket_name(name: str) -> tuple[str, str]:
    """Validate a directory bucket name ``<base>--<zone-id>--x-s3``.

    Args:
        name: The full bucket name, including the suffix.

    Returns:
        ``(base, zone_id)``, e.g. ``("logs", "use1-az4")``.

    Raises:
        InvalidName: code ``InvalidBucketName``, message naming the rule.
    """
    _check_common_bucket_shape(name, _DIRECTORY_CHARS, "lowercase letters, digits and hyphens")
    if not name.endswith(DIRECTORY_BUCKET_SUFFIX):
        raise _bucket_error(name, "directory bucket names must end with --<zone-id>--x-s3")
    stem = name[: -len(DIRECTORY_BUCKET_SUFFIX)]
    # Zone ids never contain "--", so the last "--" separates base and zone.
    base, sep, zone = stem.rpartition("--")
    if not sep or not base:
        raise _bucket_error(name, "must have the form <base-name>--<zone-id>--x-s3")
    problem = _zone_problem(zone)
    if problem is not None:
        raise _bucket_error(name, problem)
    if not (base[0].isalnum() and base[-1].isalnum()):
        raise _bucket_error(name, "base name must begin and end with a letter or digit")
    for prefix in _RESERVED_PREFIXES:
        if base.startswith(prefix):
            raise _bucket_error(name, f"must not start with the reserved prefix {prefix!r}")
    for suffix in _DIRECTORY_BASE_RESERVED_SUFFIXES:
        if base.endswith(suffix):
            raise _bucket_error(name, f"base name must not end with the reserved suffix {suffix!r}")
    return base, zone


def validate_general_bucket_name(name: str) -> None:
    """Validate a general-purpose bucket name per the S3 naming rules.

    Args:
        name: The bucket name.

    Raises:
        InvalidName: code ``InvalidBucketName``, message naming the rule.
    """
    _check_common_bucket_shape(
        name, _GENERAL_CHARS, "lowercase letters, digits, dots and hyphens"
    )
    if ".." in name:
        raise _bucket_error(name, "must not contain two adjacent periods")
    if _IP_LIKE.fullmatch(name):
        raise _bucket_error(name, "must not be formatted as an IP address")
    for prefix in _RESERVED_PREFIXES:
        if name.startswith(prefix):
            raise _bucket_error(name, f"must not start with the reserved prefix {prefix!r}")
    for suffix in _GENERAL_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            raise _bucket_error(name, f"must not end with the reserved suffix {suffix!r}")


def validate_object_key(key: str) -> None:
    """Validate an object key: 1..1024 bytes of UTF-8 without NUL.

    Args:
        key: The object key as decoded from the request.

    Raises:
        InvalidName: ``KeyTooLongError`` when longer than 1024 UTF-8 bytes,
            ``InvalidArgument`` when empty, not encodable, or containing NUL.
    """
    if not isinstance(key, str):
        raise InvalidName("InvalidArgument", "object key must be a string")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        # Lone surrogates cannot be stored or listed back faithfully.
        raise InvalidName("InvalidArgument", "object key is not valid UTF-8") from None
    if size == 0:
        raise InvalidName("InvalidArgument", "object key must not be empty")
    if size > MAX_KEY_BYTES:
        raise InvalidName(
            "KeyTooLongError",
            f"Your key is too long: {size} bytes, the maximum is {MAX_KEY_BYTES}",
        )
    if "\x00" in key:
        raise InvalidName("InvalidArgument", "object key must not contain NUL characters")


def validate_iam_user_name(name: str) -> None:
    """Validate an IAM user name: 1-64 characters of ``[A-Za-z0-9_+=,.@-]``.

    Args:
        name: The user name.

    Raises:
        InvalidName: code ``ValidationError`` (IAM's code) if invalid.
    """
    if not isinstance(name, str) or not _IAM_USER.fullmatch(name):
        raise InvalidName(
            "ValidationError",
            f"Invalid user name {name!r}: must be 1-64 characters of "
            "letters, digits and _+=,.@-",
        )


def bucket_arn(region: str, account: str, bucket: str) -> str:
    """Build the ARN policies see for a bucket.

    Args:
        region: Region name (used for directory buckets only).
        account: Owning account id (used for directory buckets only).
        bucket: A validated bucket name.

    Returns:
        ``arn:aws:s3express:<region>:<account>:bucket/<bucket>`` for directory
        buckets, ``arn:aws:s3:::<bucket>`` for general-purpose buckets.
    """
    if is_directory_bucket_name(bucket):
        return f"arn:{PARTITION}:s3express:{region}:{account}:bucket/{bucket}"
    return f"arn:{PARTITION}:s3:::{bucket}"


def object_arn(region: str, account: str, bucket: str, key: str) -> str:
    """Build the ARN policies see for an object.

    Args:
        region: Region name (used for directory buckets only).
        account: Owning account id (used for directory buckets only).
        bucket: A validated bucket name.
        key: A validated object key, appended verbatim.

    Returns:
        The bucket ARN from :func:`bucket_arn` followed by ``/<key>``.
    """
    return f"{bucket_arn(region, account, bucket)}/{key}"


def kms_key_arn(region: str, account: str, key_id: str) -> str:
    """Build a KMS key ARN.

    Args:
        region: Region name.
        account: Owning account id.
        key_id: The key id (UUID or ``mrk-`` id).

    Returns:
        ``arn:aws:kms:<region>:<account>:key/<key_id>``.
    """
    return f"arn:{PARTITION}:kms:{region}:{account}:key/{key_id}"


def iam_user_arn(account: str, user: str) -> str:
    """Build an IAM user ARN.

    Args:
        account: Account id owning the user.
        user: A validated user name.

    Returns:
        ``arn:aws:iam::<account>:user/<user>``.
    """
    return f"arn:{PARTITION}:iam::{account}:user/{user}"


def parse_kms_key_ref(ref: str) -> KeyRef:
    """Classify a KMS ``KeyId`` parameter.

    Whether the key or alias exists is the KMS's business; this only decides
    which of the four spellings was used so lookup knows where to look.

    Args:
        ref: A key id, key ARN, alias name (``alias/...``) or alias ARN.

    Returns:
        The classified :class:`KeyRef`.

    Raises:
        InvalidName: code ``InvalidArgument`` if ``ref`` is none of these.
    """
    if not isinstance(ref, str) or not ref:
        raise InvalidName("InvalidArgument", "KeyId must be a non-empty string")
    if _KEY_ID.fullmatch(ref):
        return KeyRef(KeyRefKind.KEY_ID, ref, key_id=ref)
    if ref.startswith("alias/"):
        if _ALIAS_NAME.fullmatch(ref):
            return KeyRef(KeyRefKind.ALIAS_NAME, ref, alias=ref)
        raise InvalidName("InvalidArgument", f"Invalid alias name {ref!r}")
    match = _KMS_ARN.fullmatch(ref)
    if match is None:
        raise InvalidName(
            "InvalidArgument",
            f"Invalid KeyId {ref!r}: expected a key id, key ARN, alias name or alias ARN",
        )
    resource = match["resource"]
    region, account = match["region"], match["account"]
    if resource.startswith("key/") and _KEY_ID.fullmatch(resource[4:]):
        return KeyRef(KeyRefKind.KEY_ARN, ref, key_id=resource[4:], region=region, account=account)
    if _ALIAS_NAME.fullmatch(resource):
        return KeyRef(KeyRefKind.ALIAS_ARN, ref, alias=resource, region=region, account=account)
    raise InvalidName("InvalidArgument", f"Invalid KMS ARN {ref!r}: resource must be key/<id> or alias/<name>")
