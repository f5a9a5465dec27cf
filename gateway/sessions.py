"""Self-contained S3 Express session credentials (CreateSession), minted and checked without state.

Theory of operation. Any gateway holding the cluster's session key (a 32-byte secret from a
file) can mint and verify sessions, so sessions survive gateway restarts and work on every
gateway until their advertised Expiration (clients never refresh early: wire reference §3.3).

    token   = "oz1." + b64url(payload) + "." + b64url(HMAC-SHA256(K, "token" || payload))
    payload = msgpack [sid(16 bytes), bucket, iam_access_key_id, user_arn, mode, expires(int s),
                       sse_algorithm, kms_key_arn]
    session access key id = "ASIA" + base32(sid)[:16]
    session secret        = b64(HMAC-SHA256(K, "secret" || sid))[:40]

The request is signed with the session secret, so the signature check proves possession of
the secret; the token MAC proves the claims were issued by us. Nothing here reads a clock or a
random source: ``now`` and ``sid`` are arguments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import msgpack

TOKEN_PREFIX = "oz1"
MAX_TOKEN_LEN = 2048
MODES = ("ReadWrite", "ReadOnly")


class SessionError(Exception):
    """``code`` is the S3 error code: InvalidToken or ExpiredToken."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Session:
    sid: bytes
    bucket: str
    iam_access_key_id: str
    user_arn: str
    mode: str
    expires: int
    sse_algorithm: str
    kms_key_arn: str | None

    @property
    def access_key_id(self) -> str:
        return "ASIA" + base64.b32encode(self.sid).decode()[:16]


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, label: bytes, data: bytes) -> bytes:
    return hmac.new(key, label + data, hashlib.sha256).digest()


def session_secret(key: bytes, session: Session) -> str:
    return base64.b64encode(_mac(key, b"secret", session.sid)).decode()[:40]


def mint(key: bytes, session: Session) -> tuple[str, str]:
    """Return (token, secret) for a session."""
    if session.mode not in MODES or len(session.sid) != 16:
        raise ValueError("bad session")
    payload = msgpack.packb([session.sid, session.bucket, session.iam_access_key_id,
                             session.user_arn, session.mode, session.expires,
                             session.sse_algorithm, session.kms_key_arn], use_bin_type=True)
    token = f"{TOKEN_PREFIX}.{_b64u(payload)}.{_b64u(_mac(key, b'token', payload))}"
    return token, session_secret(key, session)


def open_token(key: bytes, token: str, *, now: float | None) -> Session:
    """Verify a token's MAC and expiry (unless ``now`` is None: the caller judges the expiry)
    and return its claims.

    Raises:
        SessionError: InvalidToken for anything malformed or forged, ExpiredToken after expiry.
    """
    if len(token) > MAX_TOKEN_LEN:
        raise SessionError("InvalidToken", "The provided token is malformed or otherwise invalid.")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise SessionError("InvalidToken", "The provided token is malformed or otherwise invalid.")
    try:
        payload, mac = _unb64u(parts[1]), _unb64u(parts[2])
    except (ValueError, TypeError):
        raise SessionError("InvalidToken", "The provided token is malformed or otherwise invalid.") from None
    if not hmac.compare_digest(mac, _mac(key, b"token", payload)):
        raise SessionError("InvalidToken", "The provided token is malformed or otherwise invalid.")
    try:
        sid, bucket, akid, user_arn, mode, expires, sse, kms_arn = msgpack.unpackb(payload, raw=False)
        session = Session(sid, bucket, akid, user_arn, mode, int(expires), sse, kms_arn)
    except (ValueError, TypeError):
        raise SessionError("InvalidToken", "The provided token is malformed or otherwise invalid.") from None
    if now is not None and now >= session.expires:
        raise SessionError("ExpiredToken", "The provided token has expired.")
    return session
