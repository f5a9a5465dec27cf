"""Typed errors that cross the RPC wire.

Every failure a daemon reports to another travels as ``{code, kind, msg, retryable}``:

- ``code`` is a small stable category (``ErrorCode``) that decides the Python class on the
  receiving side and the generic handling (retry, 4xx vs 5xx);
- ``kind`` is an optional precise name understood by the caller's domain, e.g. ``NoSuchBucket``,
  ``InvalidBucketName`` or an AWS KMS exception name (``DisabledException``); the gateway maps it
  to the S3 or KMS error code it answers with;
- ``msg`` is a human message, never a secret;
- ``retryable`` tells the caller whether the same request may succeed later.

Inner layers raise these; only the gateway turns them into HTTP. ``ProtocolError`` follows h11:
``LocalProtocolError`` means we misused the protocol, ``RemoteProtocolError`` means the peer sent
junk (and the connection is closed).
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.StrEnum):
    INTERNAL = "internal"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    ACCESS_DENIED = "access_denied"
    INVALID = "invalid"
    PRECONDITION = "precondition"
    UNAVAILABLE = "unavailable"
    INTEGRITY = "integrity"
    DEADLINE = "deadline"
    PROTOCOL = "protocol"


class RpcError(Exception):
    """Base of every error that may cross the wire."""

    code: ErrorCode = ErrorCode.INTERNAL
    retryable: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        kind: str | None = None,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        if retryable is not None:
            self.retryable = retryable
        self.details = details or {}

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "code": str(self.code),
            "msg": self.message[:2000],
            "retryable": bool(self.retryable),
        }
        if self.kind:
            wire["kind"] = self.kind
        if self.details:
            wire["details"] = self.details
        return wire

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, kind={self.kind!r})"


class Internal(RpcError):
    code = ErrorCode.INTERNAL


class NotFound(RpcError):
    code = ErrorCode.NOT_FOUND


class Conflict(RpcError):
    code = ErrorCode.CONFLICT


class AccessDenied(RpcError):
    code = ErrorCode.ACCESS_DENIED


class InvalidRequest(RpcError):
    code = ErrorCode.INVALID


class PreconditionFailed(RpcError):
    code = ErrorCode.PRECONDITION


class Unavailable(RpcError):
    code = ErrorCode.UNAVAILABLE
    retryable = True


class IntegrityError(RpcError):
    code = ErrorCode.INTEGRITY


class DeadlineExceeded(RpcError):
    code = ErrorCode.DEADLINE
    retryable = True


class ProtocolError(RpcError):
    """Not raised directly: see the two subclasses."""

    code = ErrorCode.PROTOCOL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError")
        super().__init__(*args, **kwargs)


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow (a programming error)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed; the connection cannot continue."""


class FrameTooLarge(RemoteProtocolError):
    """A frame announced a length above the configured maximum."""


_BY_CODE: dict[str, type[RpcError]] = {
    ErrorCode.INTERNAL: Internal,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.CONFLICT: Conflict,
    ErrorCode.ACCESS_DENIED: AccessDenied,
    ErrorCode.INVALID: InvalidRequest,
    ErrorCode.PRECONDITION: PreconditionFailed,
    ErrorCode.UNAVAILABLE: Unavailable,
    ErrorCode.INTEGRITY: IntegrityError,
    ErrorCode.DEADLINE: DeadlineExceeded,
    ErrorCode.PROTOCOL: RemoteProtocolError,
}


def from_wire(wire: Any, *, peer: str = "") -> RpcError:
    """Rebuild the typed error a peer sent; junk becomes a RemoteProtocolError."""
    if not isinstance(wire, dict) or not isinstance(wire.get("code"), str):
        return RemoteProtocolError(f"malformed error from {peer or 'peer'}")
    cls = _BY_CODE.get(wire["code"], Internal)
    msg = wire.get("msg")
    kind = wire.get("kind")
    details = wire.get("details")
    err = cls(
        msg if isinstance(msg, str) else "",
        kind=kind if isinstance(kind, str) else None,
        retryable=bool(wire.get("retryable", cls.retryable)),
        details=details if isinstance(details, dict) else None,
    )
    err.peer = peer  # type: ignore[attr-defined]
    return err
