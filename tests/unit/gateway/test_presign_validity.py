"""A presigned URL is valid until min(X-Amz-Date + X-Amz-Expires, its session's expiry): the
gateway's clock logic, judged at injected instants (no waiting)."""

import datetime

import pytest

from gateway import sessions, sigv4
from gateway.auth import check_presigned_expiry, presigned_valid_until
from gateway.errors import S3Error

T0 = datetime.datetime(2026, 11, 27, 1, 0, 0, tzinfo=datetime.timezone.utc).timestamp()
KEY = bytes(range(32))


def auth(amz_date_ts: float, expires_s: int, token: str | None) -> sigv4.AuthRequest:
    amz = datetime.datetime.fromtimestamp(amz_date_ts, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return sigv4.AuthRequest(access_key_id="ASIAX", date=amz[:8], region="us-east-1", service="s3express",
                             signed_headers=("host",), signature="0" * 64, amz_date=amz, presigned=True,
                             expires_s=expires_s, session_token=token, security_token=None,
                             payload_hash=sigv4.UNSIGNED_PAYLOAD)


def session(expires: float) -> sessions.Session:
    return sessions.Session(b"s" * 16, "b--use1-az4--x-s3", "AKIA", "arn:aws:iam::0:user/u", "ReadWrite",
                            int(expires), "AES256", None)


@pytest.mark.parametrize("ttl, expires_s, valid_for", [
    (60, 3600, 60),      # boto3's default hour, a one-minute session: the session wins
    (300, 120, 120),     # a short URL on a longer session: X-Amz-Expires wins
    (300, 300, 300),
])
def test_validity_is_the_lesser(ttl, expires_s, valid_for):
    s = session(T0 + ttl)
    a = auth(T0, expires_s, "tok")
    assert presigned_valid_until(a, s) == T0 + valid_for
    check_presigned_expiry(a, s, T0)
    check_presigned_expiry(a, s, T0 + valid_for - 0.001)
    with pytest.raises(S3Error) as e:
        check_presigned_expiry(a, s, T0 + valid_for)
    assert e.value.code == "AccessDenied" and e.value.status == 403 and "expired" in e.value.message


def test_session_expiry_is_named_when_it_decides():
    with pytest.raises(S3Error) as e:
        check_presigned_expiry(auth(T0, 3600, "tok"), session(T0 + 60), T0 + 61)
    assert "session" in e.value.message
    with pytest.raises(S3Error) as e:
        check_presigned_expiry(auth(T0, 30, "tok"), session(T0 + 60), T0 + 31)
    assert "X-Amz-Expires" in e.value.message


def test_iam_presigned_url_has_no_session_bound():
    a = auth(T0, 7 * 86400, None)
    assert presigned_valid_until(a, None) == T0 + 7 * 86400
    check_presigned_expiry(a, None, T0 + 7 * 86400 - 1)


def test_token_claims_are_checked_even_when_expiry_is_judged_by_the_caller():
    token, _ = sessions.mint(KEY, session(T0 - 10))
    assert sessions.open_token(KEY, token, now=None).expires == int(T0 - 10)
    with pytest.raises(sessions.SessionError):
        sessions.open_token(KEY, token, now=T0)
    with pytest.raises(sessions.SessionError):
        sessions.open_token(bytes(32), token, now=None)
