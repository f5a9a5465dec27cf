"""Tiny XML element builder and shared rendering helpers for S3 documents.

Responsibility: the only place that turns Python values into XML text for the
gateway's response bodies: escaping, timestamp formats, ETag quoting,
checksum/owner sub-elements, ``encoding-type=url`` key encoding, and the
``leaf``/``opt``/``node``/``document`` builder. Tags are trusted constants
chosen by the gateway; every text value is escaped.

Pure module: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from urllib.parse import quote

__all__ = [
    "S3_NAMESPACE",
    "CHECKSUM_ALGORITHMS",
    "Timestamp",
    "Owner",
    "escape_text",
    "format_timestamp",
    "format_expiration",
    "quote_etag",
    "key_encoder",
    "leaf",
    "opt",
    "node",
    "person",
    "checksum_elements",
    "document",
]

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"

#: Checksum algorithms known to the S3 model; ``Checksum<ALG>`` elements.
CHECKSUM_ALGORITHMS = frozenset(
    {"CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256", "SHA512", "MD5",
     "XXHASH64", "XXHASH3", "XXHASH128"}
)

#: A point in time: an aware datetime or epoch seconds.
Timestamp = datetime | int | float
#: An owner/initiator: ``(id, display_name or None)``.
Owner = tuple[str, str | None]

# Characters XML 1.0 cannot carry literally become numeric references. For
# C0 controls the result is still not parseable XML 1.0 - AWS documents that
# clients need encoding-type=url for such keys (boto3 always asks for it on
# listings) - but the document at least stays unambiguous. "\r" is included
# because parsers fold a literal CR into LF and the key would change.
_NEEDS_REF = re.compile(r"[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ufffe\uffff]")
def escape_text(value: str) -> str:
    """Escape text for XML character data.

    Args:
        value: Arbitrary text.

    Returns:
        ``value`` with ``& < >`` escaped and XML-hostile control characters
        written as ``&#xN;`` references.
    """
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _NEEDS_REF.sub(lambda m: f"&#x{ord(m.group()):X};", value)


def _utc(value: Timestamp) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            # Guessing local time vs UTC silently shifts timestamps; refuse.
            raise ValueError("naive datetime; pass an aware datetime or epoch seconds")
        return value.astimezone(timezone.utc)
    return datetime.fromtimestamp(value, timezone.utc)


def format_timestamp(value: Timestamp) -> str:
    """Format a listing timestamp as ``YYYY-MM-DDTHH:MM:SS.000Z`` (AWS style).

    Args:
        value: Aware datetime, or epoch seconds.

    Returns:
        The ISO-8601 UTC string with a literal ``.000`` millisecond field.

    Raises:
        ValueError: ``value`` is a naive datetime.
    """
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def format_expiration(value: Timestamp) -> str:
    """Format a session expiration as ``YYYY-MM-DDTHH:MM:SSZ``.

    Args:
        value: Aware datetime, or epoch seconds.

    Returns:
        The ISO-8601 UTC string without fractional seconds.

    Raises:
        ValueError: ``value`` is a naive datetime.
    """
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _value_text(value: str | int | bool | datetime) -> str:
    # bool before int: bool is an int subclass and S3 wants "true"/"false".
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"cannot render {type(value).__name__} as XML text")


def leaf(tag: str, value: str | int | bool | datetime) -> str:
    """Render ``<tag>value</tag>``.

    Args:
        tag: Element name (a trusted constant; not escaped).
        value: Text; bools become ``true``/``false``, datetimes listing
            timestamps, ints decimal.

    Returns:
        The escaped element.

    Raises:
        TypeError: ``value`` has an unsupported type.
    """
    return f"<{tag}>{escape_text(_value_text(value))}</{tag}>"


def opt(tag: str, value: str | int | bool | datetime | None) -> str:
    """Like :func:`leaf`, but render nothing when ``value`` is None.

    Args:
        tag: Element name.
        value: Text or None.

    Returns:
        The element, or ``""``.
    """
    return "" if value is None else leaf(tag, value)


def node(tag: str, *children: str) -> str:
    """Render ``<tag>children...</tag>`` from already-rendered children.

    Args:
        tag: Element name.
        *children: Rendered XML fragments.

    Returns:
        The element.
    """
    return f"<{tag}>{''.join(children)}</{tag}>"


def quote_etag(etag: str) -> str:
    """Return ``etag`` wrapped in double quotes, unless it already is.

    Storage layers disagree on whether the quotes belong to the ETag;
    normalising at render time means no caller can double- or un-quote it.

    Args:
        etag: Entity tag with or without quotes.

    Returns:
        The quoted entity tag.
    """
    if len(etag) >= 2 and etag.startswith('"') and etag.endswith('"'):
        return etag
    return f'"{etag}"'


def key_encoder(encoding_type: str | None) -> Callable[[str], str]:
    """Return the key encoder for a listing's ``encoding-type``.

    Args:
        encoding_type: None (keys verbatim) or ``"url"``.

    Returns:
        Identity, or ``quote(s, safe="/")``: what AWS sends. botocore undoes
        it with ``unquote_plus``, which is why ``+`` must be escaped (quote
        does) and a space must become ``%20``.

    Raises:
        ValueError: any other encoding type (callers validate the request
            parameter and answer InvalidArgument first).
    """
    if encoding_type is None:
        return lambda s: s
    if encoding_type != "url":
        raise ValueError(f"unsupported encoding type {encoding_type!r}")
    return lambda s: quote(s, safe="/")


def person(tag: str, who: Owner | None) -> str:
    """Render an ``<Owner>``/``<Initiator>`` element.

    Args:
        tag: Element name.
        who: ``(id, display_name)``, or None to render nothing.

    Returns:
        The element, or ``""``.
    """
    if who is None:
        return ""
    ident, display = who
    return node(tag, leaf("ID", ident), opt("DisplayName", display))


def checksum_elements(checksums: Mapping[str, str] | None, checksum_type: str | None = None) -> str:
    """Render ``<ChecksumALG>`` elements and an optional ``<ChecksumType>``.

    Args:
        checksums: Algorithm name (``"CRC32"``, ...) -> base64 value.
        checksum_type: ``FULL_OBJECT``/``COMPOSITE`` or None.

    Returns:
        The concatenated elements (possibly ``""``).

    Raises:
        ValueError: an algorithm outside :data:`CHECKSUM_ALGORITHMS`.
    """
    parts = []
    for algorithm, value in (checksums or {}).items():
        if algorithm not in CHECKSUM_ALGORITHMS:
            raise ValueError(f"unknown checksum algorithm {algorithm!r}")
        parts.append(leaf(f"Checksum{algorithm}", value))
    parts.append(opt("ChecksumType", checksum_type))
    return "".join(parts)


def document(root: str, *children: str, namespace: str | None = S3_NAMESPACE) -> bytes:
    """Render a complete XML document.

    Args:
        root: Root element name.
        *children: Rendered XML fragments.
        namespace: Default namespace for the root (None for none).

    Returns:
        UTF-8 bytes starting with the XML declaration.
    """
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}{xmlns}>{"".join(children)}</{root}>'
    ).encode("utf-8")
