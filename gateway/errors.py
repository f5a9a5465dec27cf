"""S3 error vocabulary and wire rendering for the onezone gateway.

Responsibility: hold the single declarative table mapping every S3 error
code the gateway may emit to its HTTP status and AWS's default message,
carry errors through the request pipeline as :class:`S3Error`, and render
them in the three wire protocols the gateway speaks:

* S3 REST-XML (``<Error>`` documents, see wire reference section 7),
* AWS JSON 1.1 for the KMS API (``{"__type": ..., "message": ...}``),
* AWS query protocol for IAM (``<ErrorResponse>`` documents).

This module is pure: no I/O, no clock, no randomness. Request ids are
supplied by the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType

from gateway.xmlbuild import document, leaf, node, opt

__all__ = [
    "ERROR_TABLE",
    "IAM_NAMESPACE",
    "S3Error",
    "error_xml",
    "iam_error_xml",
    "kms_error_json",
]

# One table, code -> (HTTP status, AWS default message). Everything else in
# the gateway derives status codes from here so that an error code can never
# be sent with two different statuses from two call sites.
_TABLE: dict[str, tuple[int, str]] = {
    # --- authentication / authorisation -----------------------------------
    "AccessDenied": (403, "Access Denied"),
    "AccountProblem": (
        403,
        "There is a problem with your AWS account that prevents the action "
        "from completing successfully.",
    ),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you "
        "provided. Check your key and signing method.",
    ),
    "InvalidAccessKeyId": (
        403,
        "The AWS Access Key Id you provided does not exist in our records.",
    ),
    "RequestTimeTooSkewed": (
        403,
        "The difference between the request time and the current time is too large.",
    ),
    "ExpiredToken": (400, "The provided token has expired."),
    "InvalidToken": (400, "The provided token is malformed or otherwise invalid."),
    "AuthorizationHeaderMalformed": (
        400,
        "The authorization header that you provided is not valid.",
    ),
    "AuthorizationQueryParametersError": (
        400,
        "Query-string authentication version 4 requires the X-Amz-Algorithm, "
        "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
        "and X-Amz-Expires parameters.",
    ),
    "MissingSecurityHeader": (400, "Your request is missing a required header."),
    # --- browser-based uploads (POST Object) -----------------------------------
    "InvalidPolicyDocument": (
        400,
        "The content of the form does not meet the conditions specified in the policy document.",
    ),
    "MaxPostPreDataLengthExceeded": (
        400,
        "Your POST request fields preceding the upload file were too large.",
    ),
    "IncorrectNumberOfFilesInPostRequest": (
        400,
        "POST requires exactly one file upload per request.",
    ),
    "MalformedPOSTRequest": (
        400,
        "The body of your POST request is not well-formed multipart/form-data.",
    ),
    # --- missing resources -------------------------------------------------
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchUpload": (
        404,
        "The specified upload does not exist. The upload ID may be invalid, "
        "or the upload may have been aborted or completed.",
    ),
    "NoSuchBucketPolicy": (404, "The bucket policy does not exist"),
    "MalformedPolicy": (400, "Policy has invalid resource"),
    "ServerSideEncryptionConfigurationNotFoundError": (
        404,
        "The server side encryption configuration was not found",
    ),
    # --- bucket lifecycle ----------------------------------------------------
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "BucketAlreadyExists": (
        409,
        "The requested bucket name is not available. The bucket namespace is "
        "shared by all users of the system. Please select a different name "
        "and try again.",
    ),
    "BucketAlreadyOwnedByYou": (
        409,
        "Your previous request to create the named bucket succeeded and you "
        "already own it.",
    ),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty"),
    "InvalidLocationConstraint": (
        400,
        "The specified location-constraint is not valid",
    ),
    "IllegalLocationConstraintException": (
        400,
        "The location constraint is incompatible for the region specific endpoint this request was sent to.",
    ),
    "OperationAborted": (
        409,
        "A conflicting conditional operation is currently in progress against "
        "this resource. Please try again.",
    ),
    "InvalidBucketState": (
        409,
        "The request is not valid with the current state of the bucket.",
    ),
    # --- generic request validation -----------------------------------------
    "InvalidRequest": (400, "Invalid Request"),
    "InvalidArgument": (400, "Invalid Argument"),
    "PreconditionFailed": (
        412,
        "At least one of the pre-conditions you specified did not hold",
    ),
    # 304 is modelled as an error so handlers can abort uniformly; the HTTP
    # layer must send it without a body (RFC 9110 forbids one).
    "NotModified": (304, "Not Modified"),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    # --- objects, appends and multipart --------------------------------------
    "EntityTooSmall": (
        400,
        "Your proposed upload is smaller than the minimum allowed object size.",
    ),
    "EntityTooLarge": (
        400,
        "Your proposed upload exceeds the maximum allowed object size.",
    ),
    "InvalidPart": (
        400,
        "One or more of the specified parts could not be found. The part may "
        "not have been uploaded, or the specified entity tag may not match "
        "the part's entity tag.",
    ),
    "InvalidPartOrder": (
        400,
        "The list of parts was not in ascending order. The parts list must be "
        "specified in order by part number.",
    ),
    "InvalidPartNumber": (416, "The requested partnumber is not satisfiable"),
    "InvalidWriteOffset": (
        400,
        "The write offset value that you specified does not match the current "
        "object size.",
    ),
    "TooManyParts": (
        400,
        "You have attempted to upload more parts than the maximum allowed.",
    ),
    "EncryptionTypeMismatch": (
        400,
        "The existing object was created with a different encryption type. "
        "Subsequent write requests must include the appropriate encryption "
        "parameters in the request or while creating the session.",
    ),
    "IdempotencyParameterMismatch": (
        400,
        "The parameters of this request do not match a previous request made "
        "with the same client token.",
    ),
    # --- body integrity and framing ---------------------------------------
    "BadDigest": (
        400,
        "The Content-MD5 or checksum value that you specified did not match "
        "what the server received.",
    ),
    "InvalidDigest": (
        400,
        "The Content-MD5 or checksum value that you specified is not valid.",
    ),
    "XAmzContentSHA256Mismatch": (
        400,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    ),
    "IncompleteBody": (
        400,
        "You did not provide the number of bytes specified by the "
        "Content-Length HTTP header.",
    ),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "MalformedXML": (
        400,
        "The XML you provided was not well-formed or did not validate against "
        "our published schema",
    ),
    "KeyTooLongError": (400, "Your key is too long"),
    "MetadataTooLarge": (
        400,
        "Your metadata headers exceed the maximum allowed metadata size",
    ),
    "RequestHeaderSectionTooLarge": (
        400,
        "Your request header section exceeds the maximum allowed size.",
    ),
    "MaxMessageLengthExceeded": (400, "Your request was too big."),
    # --- server side -----------------------------------------------------
    "NotImplemented": (
        501,
        "A header you provided implies functionality that is not implemented",
    ),
    "MethodNotAllowed": (
        405,
        "The specified method is not allowed against this resource.",
    ),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "SlowDown": (503, "Please reduce your request rate."),
    "ServiceUnavailable": (503, "Service is unable to handle request."),
    # S3 reports an idle upload socket as 400 RequestTimeout; botocore retries it.
    "RequestTimeout": (
        400,
        "Your socket connection to the server was not read from or written to "
        "within the timeout period.",
    ),
    # --- KMS failures surfaced through S3 (S3 prefixes the KMS code) --------
    "KMS.DisabledException": (400, "The specified KMS key is disabled."),
    "KMS.KMSInvalidStateException": (
        400,
        "The specified KMS key is not in a valid state for this request.",
    ),
    "KMS.NotFoundException": (400, "The specified KMS key does not exist."),
    "KMS.InvalidCiphertextException": (
        400,
        "The ciphertext could not be decrypted by the specified KMS key.",
    ),
    "KMS.AccessDeniedException": (403, "Access to the specified KMS key was denied."),
    "KMS.KMSInternalException": (500, "KMS encountered an internal error."),
    "KMS.UnavailableException": (503, "KMS is temporarily unavailable."),
}

#: Read-only view of the table: code -> (HTTP status, default message).
ERROR_TABLE: Mapping[str, tuple[int, str]] = MappingProxyType(_TABLE)

#: Namespace of IAM query-protocol documents.
IAM_NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"

# Extra child elements are named by gateway code, never by clients, so a bad
# name is a programming error; checking it keeps the document well formed.
_ELEMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_RESERVED = frozenset({"Code", "Message", "Resource", "RequestId", "HostId"})


class S3Error(Exception):
    """An S3-protocol error that aborts the current request.

    Attributes:
        code: S3 error code, e.g. ``"NoSuchKey"``.
        message: Human-readable message for the ``<Message>`` element.
        status: HTTP status to send.
        resource: Optional value for ``<Resource>`` (usually the request path).
        extra: Additional child elements (name -> text), rendered in order
            after ``<Resource>``, e.g. ``{"Key": "missing.txt"}``.
        headers: Extra response headers, e.g. ``{"Allow": "GET, PUT"}``.
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        status: int | None = None,
        resource: str | None = None,
        extra: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Create an error, defaulting status and message from the table.

        Args:
            code: S3 error code.
            message: Message text; defaults to the table's message (or the
                code itself for codes outside the table).
            status: HTTP status; defaults to the table's status.
            resource: Optional ``<Resource>`` text.
            extra: Optional extra elements for the XML body.
            headers: Optional extra HTTP response headers.

        Raises:
            ValueError: ``code`` is not in the table and no ``status`` was
                given, ``status`` is not an HTTP status, or an ``extra`` key
                is not a usable element name. All are programming errors, so
                they fail loudly at construction instead of at render time.
        """
        entry = _TABLE.get(code)
        if status is None:
            if entry is None:
                raise ValueError(f"unknown S3 error code {code!r} needs an explicit status")
            status = entry[0]
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"invalid HTTP status {status!r}")
        if message is None:
            message = entry[1] if entry is not None else code
        extra_items = dict(extra or {})
        for name in extra_items:
            if name in _RESERVED or not _ELEMENT_NAME.match(name):
                raise ValueError(f"invalid extra element name {name!r}")
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.status = status
        self.resource = resource
        self.extra: dict[str, str] = extra_items
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"

    def __repr__(self) -> str:
        return f"S3Error({self.code!r}, {self.message!r}, status={self.status})"


def error_xml(err: S3Error, *, request_id: str, host_id: str = "") -> bytes:
    """Render the S3 REST-XML error document for ``err``.

    Args:
        err: The error to render.
        request_id: Value for ``<RequestId>`` (also sent as x-amz-request-id).
        host_id: Value for ``<HostId>`` (also sent as x-amz-id-2).

    Returns:
        UTF-8 bytes of ``<?xml ...?>\\n<Error>...</Error>``. S3 error
        documents carry no namespace; botocore keys on the ``Error`` root.
    """
    return document(
        "Error",
        leaf("Code", err.code),
        leaf("Message", err.message),
        opt("Resource", err.resource),
        *(leaf(name, value) for name, value in err.extra.items()),
        leaf("RequestId", request_id),
        leaf("HostId", host_id),
        namespace=None,
    )


def kms_error_json(code: str, message: str) -> bytes:
    """Render an AWS JSON 1.1 error body for the KMS API.

    Args:
        code: KMS exception name, e.g. ``"NotFoundException"`` (no ``KMS.``
            prefix: that prefix is only used when S3 relays a KMS failure).
        message: Human-readable message.

    Returns:
        UTF-8 bytes of ``{"__type": code, "message": message}``; send with
        ``Content-Type: application/x-amz-json-1.1``.
    """
    return json.dumps({"__type": code, "message": message}, separators=(",", ":")).encode(
        "utf-8"
    )


def iam_error_xml(code: str, message: str, request_id: str, *, sender: bool = True) -> bytes:
    """Render an AWS query-protocol error document for the IAM API.

    Args:
        code: IAM error code, e.g. ``"NoSuchEntity"``.
        message: Human-readable message.
        request_id: Value for ``<RequestId>``.
        sender: True if the caller is at fault (``<Type>Sender</Type>``),
            False for server faults (``Receiver``).

    Returns:
        UTF-8 bytes of the ``<ErrorResponse>`` document.
    """
    return document(
        "ErrorResponse",
        node(
            "Error",
            leaf("Type", "Sender" if sender else "Receiver"),
            leaf("Code", code),
            leaf("Message", message),
        ),
        leaf("RequestId", request_id),
        namespace=IAM_NAMESPACE,
    )
