"""Session tokens: round trip, forgery, expiry, binding of the access key id and secret."""

import pytest

from gateway import sessions

KEY = bytes(range(32))
S = sessions.Session(b"\x01" * 16, "b--use1-az4--x-s3", "AKIAEXAMPLE", "arn:aws:iam::000000000000:user/u",
                     "ReadWrite", 1_000_300, "aws:kms", "arn:aws:kms:us-east-1:000000000000:key/k")


def test_round_trip():
    token, secret = sessions.mint(KEY, S)
    got = sessions.open_token(KEY, token, now=1_000_000)
    assert got == S
    assert sessions.session_secret(KEY, got) == secret
    assert got.access_key_id.startswith("ASIA") and len(got.access_key_id) == 20


def test_expired():
    token, _ = sessions.mint(KEY, S)
    with pytest.raises(sessions.SessionError) as ei:
        sessions.open_token(KEY, token, now=1_000_300)
    assert ei.value.code == "ExpiredToken"


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],
    lambda t: t.replace("oz1.", "oz2."),
    lambda t: t + ".x",
    lambda t: "garbage",
    lambda t: "oz1.!!!.???",
    lambda t: "oz1." + "A" * 3000,
])
def test_forged_or_malformed(mutate):
    token, _ = sessions.mint(KEY, S)
    with pytest.raises(sessions.SessionError) as ei:
        sessions.open_token(KEY, mutate(token), now=1_000_000)
    assert ei.value.code == "InvalidToken"


def test_other_key_rejects_and_payload_swap_rejected():
    token, _ = sessions.mint(KEY, S)
    with pytest.raises(sessions.SessionError):
        sessions.open_token(bytes(32), token, now=1_000_000)
    other, _ = sessions.mint(KEY, sessions.Session(b"\x02" * 16, "other--use1-az4--x-s3", "AKIA2", "arn", "ReadOnly",
                                                   1_000_300, "AES256", None))
    p1, p2 = token.split("."), other.split(".")
    with pytest.raises(sessions.SessionError):
        sessions.open_token(KEY, ".".join([p1[0], p2[1], p1[2]]), now=1_000_000)


def test_distinct_sessions_have_distinct_secrets():
    s2 = sessions.Session(b"\x02" * 16, *[getattr(S, f) for f in ("bucket", "iam_access_key_id", "user_arn", "mode",
                                                                    "expires", "sse_algorithm", "kms_key_arn")])
    assert sessions.mint(KEY, S)[1] != sessions.mint(KEY, s2)[1]
