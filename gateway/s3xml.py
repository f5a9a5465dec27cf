"""Hardened XML parsing of S3 request bodies.

Responsibility: turn untrusted request bodies (CreateBucket, PutBucketEncryption,
DeleteObjects, CompleteMultipartUpload) into validated frozen dataclasses.
Shapes follow the wire reference (``s3express-wire.md`` sections 6.2, 6.5,
6.10, 6.13). Rendering lives in :mod:`gateway.xmlbuild`,
:mod:`gateway.s3responses` and :mod:`gateway.s3listings`.

Hardening: bodies are size-capped, must be UTF-8, and any DTD or entity
declaration is refused before expat sees the document (no billion-laughs, no
external entities). Namespaces are stripped so handlers match on local names.

Pure module: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.xmlbuild import CHECKSUM_ALGORITHMS

__all__ = [
    "XmlError",
    "CreateBucketConfig",
    "EncryptionConfig",
    "ObjectToDelete",
    "DeleteRequest",
    "CompletedPart",
    "parse_xml",
    "parse_create_bucket_configuration",
    "parse_encryption_configuration",
    "parse_delete_objects",
    "parse_complete_multipart",
]

_MALFORMED_MESSAGE = (
    "The XML you provided was not well-formed or did not validate against "
    "our published schema"
)
_MAX_PARTS = 10_000


class XmlError(Exception):
    """A request body was rejected.

    Attributes:
        code: S3 error code; always a key of ``gateway.errors.ERROR_TABLE``
            (``MalformedXML``, ``MaxMessageLengthExceeded``, ``InvalidRequest``,
            ``InvalidArgument``, ``InvalidLocationConstraint`` or
            ``NotImplemented``), so handlers can re-raise it as
            ``S3Error(e.code, e.message)``.
        message: Human-readable reason.
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        """Create the error.

        Args:
            code: S3 error code.
            message: Reason; defaults to AWS's MalformedXML text.
        """
        self.code = code
        self.message = message if message is not None else _MALFORMED_MESSAGE
        super().__init__(code, self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


# A DTD is the only way to declare entities, so refusing both keywords anywhere
# (even inside comments/CDATA, where they are harmless) is a cheap, sound
# guard against entity expansion and external-entity attacks.
_FORBIDDEN = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_DECL_ENCODING = re.compile(r"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([^"']*)["']""")


def _malformed(message: str | None = None) -> XmlError:
    return XmlError("MalformedXML", message)


def parse_xml(body: bytes, *, max_bytes: int = 1024 * 1024, root: str | None = None) -> ET.Element:
    """Parse an untrusted XML request body.

    Args:
        body: Raw request body.
        max_bytes: Largest accepted body.
        root: Required local name of the root element, if any.

    Returns:
        The root element with every tag (and attribute name) stripped of its
        ``{namespace}`` prefix.

    Raises:
        XmlError: ``MaxMessageLengthExceeded`` if the body is too large;
            ``MalformedXML`` if it is empty, not UTF-8, declares another
            encoding, contains ``<!DOCTYPE``/``<!ENTITY``, is not well formed
            or has the wrong root element.
    """
    if len(body) > max_bytes:
        raise XmlError("MaxMessageLengthExceeded", "Your request was too big.")
    try:
        # Decoding first means the DTD scan below sees exactly the characters
        # expat will see; a UTF-16 body cannot smuggle "<!DOCTYPE" past it.
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("The XML you provided was not valid UTF-8.") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise _malformed()
    if _FORBIDDEN.search(text):
        raise _malformed("DTDs and entity declarations are not allowed.")
    declared = _XML_DECL_ENCODING.match(text)
    if declared and declared.group(1).lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise _malformed("Only UTF-8 encoded XML is accepted.")
    try:
        elem = ET.fromstring(body)
    except ET.ParseError:
        raise _malformed() from None
    for e in elem.iter():
        e.tag = _local(e.tag)
        if e.attrib and any(k.startswith("{") for k in e.attrib):
            e.attrib = {_local(k): v for k, v in e.attrib.items()}
    if root is not None and elem.tag != root:
        raise _malformed(f"Expected root element {root}, found {elem.tag}.")
    return elem


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[1] if tag.startswith("{") else tag


def _one(parent: ET.Element, tag: str, *, required: bool = False) -> ET.Element | None:
    found = parent.findall(tag)
    if len(found) > 1:
        raise _malformed(f"Element {tag} may appear only once.")
    if not found:
        if required:
            raise _malformed(f"Missing required element {tag}.")
        return None
    return found[0]


def _raw(parent: ET.Element, tag: str, *, required: bool = False) -> str | None:
    """Text of a unique child, verbatim (object keys keep their whitespace)."""
    child = _one(parent, tag, required=required)
    if child is None:
        return None
    if len(child):
        raise _malformed(f"Element {tag} must contain only text.")
    text = child.text or ""
    if required and not text:
        raise _malformed(f"Element {tag} must not be empty.")
    return text


def _token(parent: ET.Element, tag: str, *, required: bool = False) -> str | None:
    """Text of a unique child with surrounding whitespace removed (enums etc.)."""
    text = _raw(parent, tag, required=required)
    if text is None:
        return None
    text = text.strip()
    if required and not text:
        raise _malformed(f"Element {tag} must not be empty.")
    return text


def _need(parent: ET.Element, tag: str) -> str:
    """Text of a required unique child, stripped and non-empty."""
    text = _token(parent, tag, required=True)
    if text is None:  # unreachable: required=True raises instead
        raise _malformed(f"Missing required element {tag}.")
    return text


def _enum(parent: ET.Element, tag: str, allowed: frozenset[str], *, required: bool = False) -> str | None:
    value = _token(parent, tag, required=required)
    if value is not None and value not in allowed:
        raise _malformed(f"Invalid value for {tag}: {value!r}.")
    return value


def _bool(parent: ET.Element, tag: str) -> bool | None:
    value = _token(parent, tag)
    if value is None:
        return None
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise _malformed(f"Element {tag} must be true or false.")
    return lowered == "true"


@dataclass(frozen=True)
class CreateBucketConfig:
    """Parsed ``CreateBucketConfiguration``; every field is None when absent."""

    location_type: str | None = None
    location_name: str | None = None
    data_redundancy: str | None = None
    bucket_type: str | None = None
    location_constraint: str | None = None

    @property
    def is_directory(self) -> bool:
        """True if the body asks for a directory (S3 Express) bucket."""
        return self.bucket_type == "Directory" or self.location_type is not None


_LOCATION_TYPES = frozenset({"AvailabilityZone", "LocalZone"})
_DATA_REDUNDANCY = frozenset({"SingleAvailabilityZone", "SingleLocalZone"})
_BUCKET_TYPES = frozenset({"Directory"})
# Region names are not checked against AWS's list: a self-hosted deployment
# names its own regions. Only the shape is constrained.
_REGION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}\Z")


def parse_create_bucket_configuration(body: bytes) -> CreateBucketConfig:
    """Parse a CreateBucket request body (wire reference 6.2).

    Args:
        body: Request body; empty (or whitespace) means "no configuration".

    Returns:
        The configuration. ``<Tags>`` and unknown elements are ignored.

    Raises:
        XmlError: ``MalformedXML`` for bad XML, duplicated elements, bad enum
            values or a ``Location`` without ``Type``/``Name``;
            ``InvalidLocationConstraint`` for a malformed region name;
            ``InvalidRequest`` when ``LocationConstraint`` is mixed with
            directory-bucket elements.
    """
    if not body.strip():
        return CreateBucketConfig()
    root = parse_xml(body, root="CreateBucketConfiguration")
    constraint = _token(root, "LocationConstraint")
    if constraint is not None and not _REGION_NAME.match(constraint):
        raise XmlError("InvalidLocationConstraint",
                       "The specified location-constraint is not valid")
    loc_type = loc_name = redundancy = bucket_type = None
    location = _one(root, "Location")
    if location is not None:
        loc_type = _enum(location, "Type", _LOCATION_TYPES, required=True)
        loc_name = _token(location, "Name", required=True)
    bucket = _one(root, "Bucket")
    if bucket is not None:
        redundancy = _enum(bucket, "DataRedundancy", _DATA_REDUNDANCY)
        bucket_type = _enum(bucket, "Type", _BUCKET_TYPES)
    if constraint is not None and (location is not None or bucket is not None):
        raise XmlError("InvalidRequest",
                       "LocationConstraint cannot be combined with Location or Bucket.")
    return CreateBucketConfig(loc_type, loc_name, redundancy, bucket_type, constraint)


@dataclass(frozen=True)
class EncryptionConfig:
    """Parsed ``ServerSideEncryptionConfiguration`` (single rule).

    ``bucket_key_enabled`` is None when the element was absent, so the caller
    can apply its own default (always on for directory buckets).
    """

    sse_algorithm: str
    kms_key_id: str | None = None
    bucket_key_enabled: bool | None = None


_SSE_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})


def parse_encryption_configuration(body: bytes) -> EncryptionConfig:
    """Parse a PutBucketEncryption request body (wire reference 6.5).

    Args:
        body: Request body.

    Returns:
        The single default-encryption rule.

    Raises:
        XmlError: ``MalformedXML`` for bad XML, zero or several ``Rule``s, a
            missing ``ApplyServerSideEncryptionByDefault``/``SSEAlgorithm``,
            an unknown algorithm or a non-boolean ``BucketKeyEnabled``;
            ``InvalidArgument`` for a ``KMSMasterKeyID`` with a non-``aws:kms``
            algorithm.
    """
    root = parse_xml(body, root="ServerSideEncryptionConfiguration")
    rules = root.findall("Rule")
    if len(rules) != 1:
        raise _malformed("Exactly one Rule is required.")
    rule = rules[0]
    default = _one(rule, "ApplyServerSideEncryptionByDefault")
    if default is None:
        raise _malformed("Missing required element ApplyServerSideEncryptionByDefault.")
    algorithm = _need(default, "SSEAlgorithm")
    if algorithm not in _SSE_ALGORITHMS:
        raise _malformed(f"Invalid value for SSEAlgorithm: {algorithm!r}.")
    key_id = _token(default, "KMSMasterKeyID")
    if key_id == "":
        key_id = None
    if key_id is not None and algorithm != "aws:kms":
        raise XmlError("InvalidArgument",
                       "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms")
    return EncryptionConfig(algorithm, key_id, _bool(rule, "BucketKeyEnabled"))


class ObjectToDelete(NamedTuple):
    """One ``<Object>`` of a DeleteObjects request."""

    key: str
    version_id: str | None
    etag: str | None


@dataclass(frozen=True)
class DeleteRequest:
    """Parsed DeleteObjects body: objects in request order, and Quiet."""

    objects: tuple[ObjectToDelete, ...]
    quiet: bool = False


def parse_delete_objects(body: bytes, max_keys: int = 1000) -> DeleteRequest:
    """Parse a DeleteObjects request body (wire reference 6.10).

    Args:
        body: Request body.
        max_keys: Most objects accepted in one request.

    Returns:
        The objects (keys verbatim, whitespace preserved) and the Quiet flag.

    Raises:
        XmlError: ``MalformedXML`` for bad XML, no objects, more than
            ``max_keys`` objects (AWS's code for this case), a missing
            ``Key`` or non-boolean ``Quiet``; ``InvalidArgument`` for an empty
            key; ``NotImplemented`` for ``LastModifiedTime``/``Size``
            conditions, which must not be silently ignored.
    """
    root = parse_xml(body, root="Delete")
    elems = root.findall("Object")
    if not elems:
        raise _malformed("The request must name at least one object.")
    if len(elems) > max_keys:
        raise _malformed(f"The request may name at most {max_keys} objects.")
    objects = []
    for obj in elems:
        key = _raw(obj, "Key")
        if key is None:
            raise _malformed("Missing required element Key.")
        if not key:
            raise XmlError("InvalidArgument", "The object key must not be empty.")
        for unsupported in ("LastModifiedTime", "Size"):
            if obj.find(unsupported) is not None:
                raise XmlError("NotImplemented",
                               f"Conditional delete on {unsupported} is not implemented.")
        objects.append(ObjectToDelete(key, _token(obj, "VersionId"), _raw(obj, "ETag")))
    return DeleteRequest(tuple(objects), bool(_bool(root, "Quiet")))


@dataclass(frozen=True)
class CompletedPart:
    """One ``<Part>`` of a CompleteMultipartUpload request.

    ``checksums`` maps algorithm (``"CRC32"``, ...) to the base64 value.
    """

    part_number: int
    etag: str
    checksums: dict[str, str] = field(default_factory=dict)


_PART_NUMBER = re.compile(r"[0-9]{1,6}\Z")


def parse_complete_multipart(body: bytes) -> tuple[CompletedPart, ...]:
    """Parse a CompleteMultipartUpload request body (wire reference 6.13).

    Child order inside ``<Part>`` is irrelevant (boto3 and s3transfer differ).
    Part order is returned as sent: checking ascending order
    (``InvalidPartOrder``) and part existence is the caller's job.

    Args:
        body: Request body.

    Returns:
        The parts in document order.

    Raises:
        XmlError: ``MalformedXML`` for bad XML, no parts, more than 10000
            parts, or a missing/duplicated ``PartNumber``/``ETag``;
            ``InvalidArgument`` for a part number outside 1..10000 or an
            unknown ``Checksum*`` algorithm.
    """
    root = parse_xml(body, root="CompleteMultipartUpload")
    elems = root.findall("Part")
    if not elems:
        raise _malformed("The request must list at least one part.")
    if len(elems) > _MAX_PARTS:
        raise _malformed(f"The request may list at most {_MAX_PARTS} parts.")
    parts = []
    for elem in elems:
        number_text = _need(elem, "PartNumber")
        number = int(number_text) if _PART_NUMBER.match(number_text) else 0
        if not 1 <= number <= _MAX_PARTS:
            raise XmlError("InvalidArgument",
                           "Part number must be an integer between 1 and 10000, inclusive")
        etag = _need(elem, "ETag")
        checksums: dict[str, str] = {}
        for child in elem:
            if child.tag.startswith("Checksum") and child.tag != "ChecksumType":
                algorithm = child.tag[len("Checksum"):]
                if algorithm not in CHECKSUM_ALGORITHMS:
                    raise XmlError("InvalidArgument", f"Unknown checksum element {child.tag}.")
                checksums[algorithm] = _need(elem, child.tag)
        parts.append(CompletedPart(number, etag, checksums))
    return tuple(parts)
