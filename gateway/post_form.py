"""Browser-form uploads (S3 POST Object), the pure parts: a streaming multipart/form-data parser
and the POST policy document check.

Theory of operation (parser). ``FormParser(boundary)`` is fed bytes and returns events:
``PartStart(name, filename, content_type)``, ``PartData(bytes)``, ``PartEnd()``, and finally
``FormEnd()``. It keeps only a tail of ``len(delimiter)`` bytes between feeds, so a file part
of any size streams through in bounded memory; part headers are limited to
``MAX_PART_HEADER_BYTES`` and the number of parts to ``MAX_PARTS``. The body starts with a
delimiter ``--boundary``; each later delimiter is ``CRLF--boundary``; ``--`` after a delimiter
ends the form. Anything malformed raises ``FormError`` (S3 code ``MalformedPOSTRequest``).

Theory of operation (policy). The ``policy`` field is base64 JSON ``{"expiration": ISO8601,
"conditions": [...]}``. A condition is ``{"field": "value"}`` (exact match), ``["eq", "$field",
"value"]``, ``["starts-with", "$field", "prefix"]`` (``""`` matches anything) or
``["content-length-range", min, max]``. Field names compare case-insensitively. Every form field
except ``policy``, ``x-amz-signature``, ``file``, ``x-ignore-*`` (and SigV2's
``AWSAccessKeyId``, ``signature``) must be covered by a
condition (S3's rule), and every condition must hold. ``check_policy`` returns the
content-length range, which can only be checked once the file has streamed through.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from dataclasses import dataclass
from typing import Any

MAX_PART_HEADER_BYTES = 8 * 1024
MAX_PARTS = 64
_EXEMPT = frozenset({"policy", "x-amz-signature", "file", "awsaccesskeyid", "signature"})  # (the last two: SigV2)


class FormError(Exception):
    """``code`` is the S3 error code to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class PartStart:
    name: str
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    pass


@dataclass(frozen=True, slots=True)
class FormEnd:
    pass


Event = PartStart | PartData | PartEnd | FormEnd


def boundary_of(content_type: str | None) -> str:
    """The boundary parameter of a ``multipart/form-data`` Content-Type."""
    mime, _, params = (content_type or "").partition(";")
    if mime.strip().lower() != "multipart/form-data":
        raise FormError("MalformedPOSTRequest", "A POST upload must be multipart/form-data.")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip().strip('"')
            if 1 <= len(value) <= 70:
                return value
    raise FormError("MalformedPOSTRequest", "The multipart/form-data Content-Type has no valid boundary.")


def _disposition(value: str) -> tuple[str, str | None]:
    kind, _, rest = value.partition(";")
    if kind.strip().lower() != "form-data":
        raise FormError("MalformedPOSTRequest", "Each part must be Content-Disposition: form-data.")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:  # name="value" pairs; quoted values may contain ';'
        while i < n and rest[i] in " ;\t":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            end = rest.find('"', i + 1)
            if end < 0:
                raise FormError("MalformedPOSTRequest", "Unterminated quoted string in Content-Disposition.")
            params[key], i = rest[i + 1:end], end + 1
        else:
            end = rest.find(";", i)
            end = n if end < 0 else end
            params[key], i = rest[i:end].strip(), end
    if "name" not in params:
        raise FormError("MalformedPOSTRequest", "A form part has no name.")
    return params["name"], params.get("filename")


class FormParser:
    def __init__(self, boundary: str) -> None:
        self._delim = b"\r\n--" + boundary.encode("ascii", "replace")
        self._buf = b"\r\n"  # so the first delimiter has the same shape as the others
        self._state = "preamble"  # preamble | after_delim | headers | body | done
        self._parts = 0

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while True:
            before = (self._state, len(self._buf))
            self._step(events)
            if self._state == "done" or (self._state, len(self._buf)) == before:
                return events

    def close(self) -> list[Event]:
        if self._state != "done":
            raise FormError("MalformedPOSTRequest", "The multipart/form-data body ended before its closing boundary.")
        return []

    def _step(self, events: list[Event]) -> None:
        if self._state in ("preamble", "body"):
            at = self._buf.find(self._delim)
            if at < 0:
                keep = len(self._delim) - 1
                if self._state == "body" and len(self._buf) > keep:
                    events.append(PartData(self._buf[:-keep]))
                if len(self._buf) > keep:
                    self._buf = self._buf[-keep:]
                return
            if self._state == "body":
                if at:
                    events.append(PartData(self._buf[:at]))
                events.append(PartEnd())
            elif at > 64 * 1024:
                raise FormError("MalformedPOSTRequest", "Too much data before the first boundary.")
            self._buf = self._buf[at + len(self._delim):]
            self._state = "after_delim"
        elif self._state == "after_delim":
            if len(self._buf) < 2:
                return
            if self._buf.startswith(b"--"):
                self._state, self._buf = "done", b""
                events.append(FormEnd())
                return
            end = self._buf.find(b"\r\n")
            if end < 0:
                if len(self._buf) > 256:
                    raise FormError("MalformedPOSTRequest", "Garbage after a multipart boundary.")
                return
            if self._buf[:end].strip(b" \t"):
                raise FormError("MalformedPOSTRequest", "Garbage after a multipart boundary.")
            self._buf = self._buf[end + 2:]
            self._state = "headers"
        elif self._state == "headers":
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_PART_HEADER_BYTES:
                    raise FormError("MalformedPOSTRequest", "A form part's headers are too large.")
                return
            if end > MAX_PART_HEADER_BYTES:
                raise FormError("MalformedPOSTRequest", "A form part's headers are too large.")
            self._parts += 1
            if self._parts > MAX_PARTS:
                raise FormError("MalformedPOSTRequest", f"A POST form may have at most {MAX_PARTS} fields.")
            head, self._buf = self._buf[:end].decode("utf-8", "replace"), self._buf[end + 4:]
            name = filename = ctype = None
            for line in head.split("\r\n"):
                key, colon, value = line.partition(":")
                if not colon:
                    raise FormError("MalformedPOSTRequest", "Malformed form part header.")
                key = key.strip().lower()
                if key == "content-disposition":
                    name, filename = _disposition(value)
                elif key == "content-type":
                    ctype = value.strip()
            if name is None:
                raise FormError("MalformedPOSTRequest", "A form part has no Content-Disposition.")
            events.append(PartStart(name, filename, ctype))
            self._state = "body"


# -- the policy document ---------------------------------------------------------------------------
def decode_policy(policy_b64: str, now: float) -> dict[str, Any]:
    """Decode and sanity-check the policy; an expired policy is AccessDenied."""
    try:
        doc = json.loads(base64.b64decode(policy_b64.strip(), validate=True))
    except (ValueError, binascii.Error, RecursionError):
        raise FormError("InvalidPolicyDocument", "The policy is not base64-encoded JSON.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("conditions"), list) \
            or not isinstance(doc.get("expiration"), str):
        raise FormError("InvalidPolicyDocument", "The policy must have an expiration and a conditions list.")
    try:
        expires = datetime.datetime.fromisoformat(doc["expiration"].replace("Z", "+00:00"))
    except ValueError:
        raise FormError("InvalidPolicyDocument", "Invalid Policy: Invalid 'expiration' value.") from None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=datetime.timezone.utc)
    if expires.timestamp() <= now:
        raise FormError("AccessDenied", "Invalid according to Policy: Policy expired.")
    return doc


def check_policy(doc: dict[str, Any], fields: dict[str, str]) -> tuple[int, int] | None:
    """Check ``fields`` (lower-cased names, incl. ``bucket`` and the final ``key``) against the
    policy's conditions; return the content-length range, if any.

    Raises:
        FormError: ``InvalidPolicyDocument`` for a malformed condition, ``AccessDenied`` for a
            condition that does not hold or a field no condition covers.
    """
    covered: set[str] = set()
    length_range = None
    for cond in doc["conditions"]:
        if isinstance(cond, dict) and len(cond) == 1:
            (name, want), = cond.items()
            op, name = "eq", str(name).lower()
        elif isinstance(cond, list) and len(cond) == 3 and cond[0] == "content-length-range":
            lo, hi = cond[1], cond[2]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (lo, hi)) or lo > hi:
                raise FormError("InvalidPolicyDocument", "Invalid Policy: content-length-range needs 0 <= min <= max.")
            length_range = (lo, hi)
            continue
        elif isinstance(cond, list) and len(cond) == 3 and str(cond[0]).lower() in ("eq", "starts-with") \
                and isinstance(cond[1], str) and cond[1].startswith("$"):
            op, name, want = str(cond[0]).lower(), cond[1][1:].lower(), cond[2]
        else:
            raise FormError("InvalidPolicyDocument", f"Invalid Policy: Invalid condition {json.dumps(cond)[:200]}.")
        if not isinstance(want, str):
            raise FormError("InvalidPolicyDocument", f"Invalid Policy: the value for {name} must be a string.")
        covered.add(name)
        have = fields.get(name)
        ok = have is not None and (have == want if op == "eq" else have.startswith(want))
        if op == "starts-with" and want == "" and have is None:
            ok = False
        if not ok:
            raise FormError("AccessDenied", f"Invalid according to Policy: Policy Condition failed: "
                            f"[\"{op}\", \"${name}\", {json.dumps(want)}]")
    for name in fields:
        if name not in covered and name not in _EXEMPT and name != "bucket" and not name.startswith("x-ignore-"):
            raise FormError("AccessDenied", f"Invalid according to Policy: Extra input fields: {name}")
    return length_range
