"""Tests for gateway.sigv4.

The positive tests verify signatures produced by real botocore, mostly by
driving real boto3/botocore clients whose ``before-send`` hook captures the
prepared request and answers with a canned response (no network). A few AWS
published test vectors pin the algorithm independently of botocore.
"""

from __future__ import annotations

import datetime
import hashlib
import io
from dataclasses import dataclass, replace
from urllib.parse import quote, urlsplit

import botocore.session
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import sigv4
from gateway.sigv4 import SigV4Error

UTC = datetime.timezone.utc
REGION = "us-west-2"
BUCKET = "mybucket--usw2-az1--x-s3"
IAM_AKID, IAM_SECRET = "AKIDEXAMPLEROOT0001", "iam/Secret+Key=0123456789abcdefghijklm"
SESSION_AKID, SESSION_SECRET = "ASIASESSIONKEY000001", "sess/Secret+Key=9876543210zyxwvutsrqpo"
SESSION_TOKEN = "v1.dG9rZW4+/w==.sig+/="
SECRETS = {IAM_AKID: IAM_SECRET, SESSION_AKID: SESSION_SECRET}
AWKWARD_KEYS = ["dir/hello world+ü.txt", "a&b=c", "plain.txt", "sp ace/~t*i'l(d)e!%2F;:@$,"]


# --------------------------------------------------------------------------
# capturing real boto3 traffic


@dataclass
class Captured:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


def _to_str(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _captured(method: str, url: str, header_items, body) -> Captured:
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    headers = [(k.lower(), _to_str(v)) for k, v in header_items]
    if not any(k == "host" for k, _ in headers):
        # urllib3 adds Host after signing; botocore signed this value.
        headers.append(("host", parts.netloc))
    if hasattr(body, "read"):
        body = body.read()
    return Captured(method, target, headers, body or b"")


class _FakeRaw:
    def __init__(self, body: bytes) -> None:
        self._io = io.BytesIO(body)

    def read(self, amt=None, **_kw):
        return self._io.read(amt)

    def stream(self, amt=65536, **_kw):
        while chunk := self._io.read(amt):
            yield chunk


def _create_session_xml() -> bytes:
    expiry = (datetime.datetime.now(UTC) + datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<?xml version="1.0" encoding="UTF-8"?><CreateSessionResult '
        'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Credentials>'
        f"<SessionToken>{SESSION_TOKEN}</SessionToken><SecretAccessKey>{SESSION_SECRET}</SecretAccessKey>"
        f"<AccessKeyId>{SESSION_AKID}</AccessKeyId><Expiration>{expiry}</Expiration>"
        "</Credentials></CreateSessionResult>"
    ).encode()


class Recorder:
    """``before-send`` hook: records the request, returns a canned 200."""

    def __init__(self) -> None:
        self.requests: list[Captured] = []

    def __call__(self, request, **_kwargs):
        self.requests.append(_captured(request.method, request.url, request.headers.items(), request.body))
        query = urlsplit(request.url).query
        if query == "session":
            body = _create_session_xml()
        elif "list-type=2" in query:
            body = b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>'
        elif request.method == "POST" and "delete" in query:
            body = b'<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>'
        elif request.method == "PUT" and "x-amz-copy-source" in {k.lower() for k in request.headers}:
            body = b"<CopyObjectResult><ETag>&quot;e&quot;</ETag></CopyObjectResult>"
        else:
            body = b""
        return AWSResponse(request.url, 200, {"Content-Type": "application/xml"}, _FakeRaw(body))


@pytest.fixture(autouse=True)
def _isolated_aws_env(monkeypatch, tmp_path):
    for var in ("AWS_PROFILE", "AWS_S3_DISABLE_EXPRESS_SESSION_AUTH", "AWS_REQUEST_CHECKSUM_CALCULATION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


def make_client(endpoint: str = "http://127.0.0.1:18080", **config):
    session = botocore.session.Session()
    session.set_credentials(IAM_AKID, IAM_SECRET)
    recorder = Recorder()
    session.register("before-send", recorder)
    client = session.create_client(
        "s3", region_name=REGION, endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}, **config)
    )
    return client, recorder


def check(cap: Captured, *, now: datetime.datetime | None = None) -> sigv4.AuthRequest:
    """What the gateway does: parse, verify with the key's secret, check time."""
    auth = sigv4.parse_request_auth(cap.method, cap.target, cap.headers)
    assert auth is not None
    key = sigv4.verify(auth, SECRETS[auth.access_key_id], cap.method, cap.target, cap.headers)
    assert key == sigv4.signing_key(SECRETS[auth.access_key_id], auth.date, auth.region, auth.service)
    sigv4.check_request_time(auth, now or datetime.datetime.now(UTC))
    if len(auth.payload_hash) == 64:
        assert auth.payload_hash == hashlib.sha256(cap.body).hexdigest()
    return auth


# --------------------------------------------------------------------------
# real boto3 clients


def test_s3express_session_flow_with_awkward_keys():
    client, rec = make_client()
    for key in AWKWARD_KEYS:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"hello express", ContentType="text/plain")
        client.get_object(Bucket=BUCKET, Key=key, Range="bytes=0-4")
        client.head_object(Bucket=BUCKET, Key=key)
    client.list_objects_v2(
        Bucket=BUCKET, Prefix="dir/hello world+ü", Delimiter="/", ContinuationToken="ct+/=&x", StartAfter="a&b=c"
    )
    client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "a&b<c>.txt"}], "Quiet": True})
    client.delete_object(Bucket=BUCKET, Key=AWKWARD_KEYS[0])

    create, *data = rec.requests
    assert create.target == f"/{BUCKET}?session"
    auth = check(create)
    assert (auth.access_key_id, auth.service, auth.region) == (IAM_AKID, "s3express", REGION)
    assert auth.session_token is None and auth.payload_hash == sigv4.EMPTY_SHA256
    assert len(data) == 3 * len(AWKWARD_KEYS) + 3
    for cap in data:
        auth = check(cap)
        assert auth.access_key_id == SESSION_AKID and auth.service == "s3express"
        assert auth.session_token == SESSION_TOKEN and "x-amz-s3session-token" in auth.signed_headers
        assert not auth.presigned and auth.expires_s is None and auth.security_token is None
    # The awkward key really travelled percent-encoded and was verified raw.
    assert data[0].target == f"/{BUCKET}/dir/hello%20world%2B%C3%BC.txt"
    assert any("x-amz-checksum-crc32" in dict(c.headers) for c in data)


def test_copy_object_is_iam_signed_and_verifies():
    client, rec = make_client()
    client.copy_object(Bucket=BUCKET, Key="dst key+1", CopySource={"Bucket": BUCKET, "Key": "dir/hello world+ü.txt"})
    copy = rec.requests[-1]
    auth = check(copy)
    assert auth.access_key_id == IAM_AKID and auth.session_token is None
    assert "x-amz-copy-source" in auth.signed_headers


def test_s3v4_signature_version_uses_service_s3_without_session():
    client, rec = make_client(signature_version="s3v4")
    client.put_object(Bucket=BUCKET, Key="dir/hello world+ü.txt", Body=b"x")
    client.get_object(Bucket="plain-bucket", Key="a&b=c")
    client.list_buckets()
    assert len(rec.requests) == 3
    for cap in rec.requests:
        auth = check(cap)
        assert auth.service == "s3" and auth.access_key_id == IAM_AKID


def test_list_buckets_is_service_s3():
    client, rec = make_client()
    client.list_buckets()
    assert check(rec.requests[-1]).service == "s3"


def test_virtual_host_addressing_verifies():
    client, rec = make_client("http://localhost:18080")
    client.put_object(Bucket=BUCKET, Key="k 1.txt", Body=b"abc")
    cap = rec.requests[-1]
    assert dict(cap.headers)["host"] == f"{BUCKET}.localhost:18080"
    assert cap.target == "/k%201.txt"
    check(cap)


def test_https_streaming_put_verifies():
    client, rec = make_client("https://127.0.0.1:18443")
    client.put_object(Bucket=BUCKET, Key="k1.txt", Body=b"hello express")
    auth = check(rec.requests[-1])
    assert auth.payload_hash == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert "content-encoding" in auth.signed_headers and "x-amz-trailer" in auth.signed_headers


@pytest.mark.parametrize("method", ["get_object", "put_object"])
def test_presigned_session_url(method):
    client, rec = make_client()
    url = client.generate_presigned_url(method, Params={"Bucket": BUCKET, "Key": "dir/hello world+ü.txt"}, ExpiresIn=300)
    assert len(rec.requests) == 1  # the CreateSession the presign triggered
    cap = _captured("GET" if method == "get_object" else "PUT", url, [], b"")
    auth = check(cap)
    assert auth.presigned and auth.expires_s == 300
    assert auth.access_key_id == SESSION_AKID and auth.session_token == SESSION_TOKEN
    assert auth.payload_hash == sigv4.UNSIGNED_PAYLOAD and auth.signed_headers == ("host",)
    # Unsigned ordinary headers (urllib adds Content-Type on PUT) are fine.
    check(replace(cap, headers=cap.headers + [("content-type", "application/x-www-form-urlencoded")]))


def test_presigned_s3v4_url_with_query_params():
    client, _ = make_client(signature_version="s3v4")
    url = client.generate_presigned_url(
        "get_object",
        Params={"Bucket": "plain-bucket", "Key": "a&b=c", "ResponseContentDisposition": 'attachment; filename="x y+z"'},
        ExpiresIn=60,
    )
    auth = check(_captured("GET", url, [], b""))
    assert auth.service == "s3" and auth.access_key_id == IAM_AKID and auth.session_token is None


def _presigned_capture() -> Captured:
    client, _ = make_client()
    url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "k"}, ExpiresIn=300)
    return _captured("GET", url, [], b"")


def _put_capture() -> Captured:
    client, rec = make_client()
    client.put_object(Bucket=BUCKET, Key="dir/hello world+ü.txt", Body=b"data", ContentType="text/plain")
    return rec.requests[-1]


# --------------------------------------------------------------------------
# botocore signers used directly


def _sign(method, url, headers, body=b"", *, service="s3express", query=False, expires=3600):
    request = AWSRequest(method=method, url=url, headers=headers, data=body)
    creds = Credentials(IAM_AKID, IAM_SECRET)
    if query:
        S3SigV4QueryAuth(creds, service, REGION, expires=expires).add_auth(request)
    else:
        S3SigV4Auth(creds, service, REGION).add_auth(request)
    prepared = request.prepare()
    return _captured(method, prepared.url, prepared.headers.items(), body)


def test_botocore_repeated_and_spaced_headers():
    request = AWSRequest(method="PUT", url=f"http://127.0.0.1:9000/{BUCKET}/k", data=b"x")
    request.headers["x-amz-meta-a"] = "  one   two  "
    request.headers["x-amz-meta-a"] = "three"  # HTTPHeaders appends a second value
    request.headers["Content-Type"] = "text/plain"
    S3SigV4Auth(Credentials(IAM_AKID, IAM_SECRET), "s3", REGION).add_auth(request)
    # request.prepare() would fold the repeats into a dict; use the signed set.
    cap = _captured("PUT", request.url, request.headers.items(), b"x")
    assert [v for k, v in cap.headers if k == "x-amz-meta-a"] == ["  one   two  ", "three"]
    auth = check(cap)
    creq = sigv4.canonical_request("PUT", cap.target, cap.headers, auth.signed_headers, auth.payload_hash, presigned=False)
    assert "\nx-amz-meta-a:one two,three\n" in creq


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(key=_text.filter(bool), params=st.lists(st.tuples(_text.filter(bool), _text), max_size=5))
def test_property_botocore_header_and_query_signatures_verify(key, params):
    path = f"/{BUCKET}/" + quote(key, safe="/~")
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in params)
    url = "http://127.0.0.1:9000" + path + ("?" + query if query else "")
    check(_sign("GET", url, {}))
    check(_sign("GET", url, {}, query=True))


# --------------------------------------------------------------------------
# AWS published vectors

AWS_DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_aws_sigv4_suite_get_vanilla():
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    headers = [
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
    ]
    auth = sigv4.parse_request_auth("GET", "/", headers)
    assert auth is not None and auth.payload_hash == ""  # non-S3 service: body hash is the caller's
    creq = sigv4.canonical_request("GET", "/", headers, auth.signed_headers, sigv4.EMPTY_SHA256, presigned=False)
    assert creq == (
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
        + sigv4.EMPTY_SHA256
    )
    sts = sigv4.string_to_sign(auth.amz_date, auth.scope, creq)
    assert sts == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    )
    key = sigv4.signing_key(secret, "20150830", "us-east-1", "service")
    assert sigv4.compute_signature(key, sts) == auth.signature
    assert sigv4.verify(auth, secret, "GET", "/", headers, body_sha256=sigv4.EMPTY_SHA256) == key
    with pytest.raises(ValueError):
        sigv4.verify(auth, secret, "GET", "/", headers)


def test_aws_s3_doc_example_get_object_with_range():
    headers = [
        ("host", "examplebucket.s3.amazonaws.com"),
        ("range", "bytes=0-9"),
        ("x-amz-content-sha256", sigv4.EMPTY_SHA256),
        ("x-amz-date", "20130524T000000Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ),
    ]
    auth = sigv4.parse_request_auth("GET", "/test.txt", headers)
    sigv4.verify(auth, AWS_DOC_SECRET, "GET", "/test.txt", headers)


def test_aws_s3_doc_example_presigned_url():
    target = (
        "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    headers = [("host", "examplebucket.s3.amazonaws.com")]
    auth = sigv4.parse_request_auth("GET", target, headers)
    assert auth.presigned and auth.expires_s == 86400 and auth.access_key_id == "AKIAIOSFODNN7EXAMPLE"
    sigv4.verify(auth, AWS_DOC_SECRET, "GET", target, headers)
    sigv4.check_request_time(auth, datetime.datetime(2013, 5, 25, 0, 0, 0, tzinfo=UTC))
    with pytest.raises(SigV4Error) as exc:
        sigv4.check_request_time(auth, datetime.datetime(2013, 5, 25, 0, 0, 1, tzinfo=UTC))
    assert exc.value.code == "AccessDenied"


def test_aws_s3_doc_example_streaming_seed_signature():
    headers = [
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("content-length", "66824"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class,"
            "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        ),
    ]
    target = "/examplebucket/chunkObject.txt"
    auth = sigv4.parse_request_auth("PUT", target, headers)
    key = sigv4.verify(auth, AWS_DOC_SECRET, "PUT", target, headers)
    assert key == sigv4.signing_key(AWS_DOC_SECRET, "20130524", "us-east-1", "s3")


# --------------------------------------------------------------------------
# canonical request details


def _creq_query(target: str, *, presigned: bool = False) -> str:
    return sigv4.canonical_request("GET", target, [], (), "-", presigned=presigned).split("\n")[2]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/b?session", "session="),
        ("/b?", ""),
        ("/b", ""),
        ("/b?b=2&a=2&a=1", "a=1&a=2&b=2"),
        ("/b?a=%41b+c&b", "a=Ab%2Bc&b="),
        ("/b?k=a%2fb%20c~d*e", "k=a%2Fb%20c~d%2Ae"),
        ("/b?x=1&&y=", "x=1&y="),
        ("/b?uploads&prefix=a%2F", "prefix=a%2F&uploads="),
        ("/b?q=a=b", "q=a%3Db"),
        ("/b?k=%C3%BC%FF", "k=%C3%BC%FF"),
    ],
)
def test_canonical_query(target, expected):
    assert _creq_query(target) == expected


def test_canonical_query_presigned_drops_only_signature():
    target = "/k?X-Amz-Signature=ab&X-Amz-Date=d&a=1"
    assert _creq_query(target, presigned=True) == "X-Amz-Date=d&a=1"
    assert _creq_query(target) == "X-Amz-Date=d&X-Amz-Signature=ab&a=1"


def test_canonical_path_is_raw():
    creq = sigv4.canonical_request("GET", "/b//./../x%2f%7e?a", [], (), "-", presigned=False)
    assert creq.split("\n")[1] == "/b//./../x%2f%7e"


def test_canonical_headers_order_trim_and_missing():
    headers = [("b", " 1  2\t3 "), ("a", "x"), ("b", "4")]
    creq = sigv4.canonical_request("get", "/", headers, ("b", "a", "c"), "PH", presigned=False)
    assert creq == "GET\n/\n\nb:1 2 3,4\na:x\nc:\n\nb;a;c\nPH"


# --------------------------------------------------------------------------
# negative: tampering


def _expect(code: str, fn, *args, **kwargs) -> SigV4Error:
    with pytest.raises(SigV4Error) as exc:
        fn(*args, **kwargs)
    assert exc.value.code == code, exc.value.message
    return exc.value


def _set_header(cap: Captured, name: str, value: str) -> Captured:
    return replace(cap, headers=[(k, value if k == name else v) for k, v in cap.headers])


def test_tampered_signed_header():
    cap = _put_capture()
    _expect("SignatureDoesNotMatch", check, _set_header(cap, "content-type", "text/html"))
    _expect("SignatureDoesNotMatch", check, _set_header(cap, "x-amz-s3session-token", "other"))


def test_unsigned_header_changes_are_ignored():
    cap = _put_capture()
    check(_set_header(cap, "user-agent", "evil/1.0"))
    check(replace(cap, headers=cap.headers + [("x-forwarded-for", "1.2.3.4")]))


def test_unsigned_amz_header_is_rejected():
    cap = _put_capture()
    err = _expect("AccessDenied", check, replace(cap, headers=cap.headers + [("x-amz-meta-evil", "1")]))
    assert "x-amz-meta-evil" in err.message
    presigned = _presigned_capture()
    _expect("AccessDenied", check, replace(presigned, headers=presigned.headers + [("x-amz-copy-source", "b/k")]))


def test_tampered_path_and_query():
    cap = _put_capture()
    _expect("SignatureDoesNotMatch", check, replace(cap, target=cap.target.replace("hello", "hellO")))
    _expect("SignatureDoesNotMatch", check, replace(cap, target=cap.target + "?acl"))
    # Decoded-equivalent but differently encoded path is a different path.
    _expect("SignatureDoesNotMatch", check, replace(cap, target=cap.target.replace("%20", "%2520")))


def test_query_order_on_wire_does_not_matter():
    client, rec = make_client()
    client.list_objects_v2(Bucket=BUCKET, Prefix="dir/", Delimiter="/")
    cap = rec.requests[-1]
    path, query = cap.target.split("?")
    check(replace(cap, target=path + "?" + "&".join(reversed(query.split("&")))))


def test_wrong_secret():
    cap = _put_capture()
    auth = sigv4.parse_request_auth(cap.method, cap.target, cap.headers)
    _expect("SignatureDoesNotMatch", sigv4.verify, auth, IAM_SECRET, cap.method, cap.target, cap.headers)
    _expect("SignatureDoesNotMatch", sigv4.verify, auth, SESSION_SECRET, "POST", cap.target, cap.headers)


def test_tampered_presigned_url():
    cap = _presigned_capture()
    _expect("SignatureDoesNotMatch", check, replace(cap, target=cap.target.replace("X-Amz-Expires=300", "X-Amz-Expires=3000")))
    sig = cap.target.rsplit("X-Amz-Signature=", 1)[1]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    _expect("SignatureDoesNotMatch", check, replace(cap, target=cap.target.replace(sig, flipped)))
    _expect("SignatureDoesNotMatch", check, replace(cap, target=cap.target + "&response-content-type=text%2Fhtml"))
    _expect("SignatureDoesNotMatch", check, _set_header(cap, "host", "evil.example:18080"))


# --------------------------------------------------------------------------
# negative: time


def test_header_auth_clock_skew():
    cap = _put_capture()
    auth = sigv4.parse_request_auth(cap.method, cap.target, cap.headers)
    signed_at = datetime.datetime.strptime(auth.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    for minutes in (-14, 0, 14, 15):
        sigv4.check_request_time(auth, signed_at + datetime.timedelta(minutes=minutes))
    sigv4.check_request_time(auth, (signed_at + datetime.timedelta(minutes=5)).replace(tzinfo=None))  # naive = UTC
    for delta in (datetime.timedelta(minutes=15, seconds=1), datetime.timedelta(minutes=-16)):
        _expect("RequestTimeTooSkewed", sigv4.check_request_time, auth, signed_at + delta)
    _expect("RequestTimeTooSkewed", sigv4.check_request_time, auth, signed_at + datetime.timedelta(seconds=61), max_skew_s=60)


def test_presigned_expiry_and_future_date():
    cap = _presigned_capture()
    auth = sigv4.parse_request_auth(cap.method, cap.target, cap.headers)
    signed_at = datetime.datetime.strptime(auth.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    sigv4.check_request_time(auth, signed_at + datetime.timedelta(seconds=300))
    sigv4.check_request_time(auth, signed_at - datetime.timedelta(minutes=15))
    err = _expect("AccessDenied", sigv4.check_request_time, auth, signed_at + datetime.timedelta(seconds=301))
    assert err.message == "Request has expired"
    _expect("AccessDenied", sigv4.check_request_time, auth, signed_at - datetime.timedelta(minutes=16))


# --------------------------------------------------------------------------
# negative: malformed authentication

GOOD_CRED = f"{IAM_AKID}/20261127/us-west-2/s3express/aws4_request"
GOOD_SIG = "ab" * 32


def _headers(authz: str, **extra: str) -> list[tuple[str, str]]:
    base = {
        "host": "127.0.0.1:18080",
        "x-amz-date": "20261127T005451Z",
        "x-amz-content-sha256": sigv4.EMPTY_SHA256,
        "authorization": authz,
    }
    base.update({k.replace("_", "-"): v for k, v in extra.items()})
    return [(k, v) for k, v in base.items() if v is not None]


def _authz(cred=GOOD_CRED, signed="host;x-amz-content-sha256;x-amz-date", sig=GOOD_SIG, sep=", "):
    return f"AWS4-HMAC-SHA256 Credential={cred}{sep}SignedHeaders={signed}{sep}Signature={sig}"


@pytest.mark.parametrize(
    "authz",
    [
        _authz(sep=","),
        _authz(sep=" ,  "),
        _authz() + ",",
        "  " + _authz().replace(" ", "\t", 1),
        _authz(sig=GOOD_SIG.upper()),
        _authz(signed="Host;X-Amz-Content-Sha256;X-Amz-Date"),
    ],
)
def test_tolerated_authorization_variants(authz):
    auth = sigv4.parse_request_auth("GET", "/", _headers(authz))
    assert auth.access_key_id == IAM_AKID and auth.signature == GOOD_SIG
    assert auth.signed_headers == ("host", "x-amz-content-sha256", "x-amz-date")
    assert auth.scope == "20261127/us-west-2/s3express/aws4_request"


@pytest.mark.parametrize(
    ("authz", "code"),
    [
        ("", "AuthorizationHeaderMalformed"),
        ("AWS4-HMAC-SHA256", "AuthorizationHeaderMalformed"),
        ("AWS4-HMAC-SHA256Credential=x", "AuthorizationHeaderMalformed"),
        ("AWS AKID:c2lnbmF0dXJl", "InvalidRequest"),
        ("AWS4-ECDSA-P256-SHA256 " + _authz().split(" ", 1)[1], "InvalidRequest"),
        ("Bearer abc", "InvalidRequest"),
        (f"AWS4-HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host", "AuthorizationHeaderMalformed"),
        (_authz() + ", Foo=bar", "AuthorizationHeaderMalformed"),
        (_authz() + f", Signature={GOOD_SIG}", "AuthorizationHeaderMalformed"),
        (_authz().replace("Credential=", "Credential "), "AuthorizationHeaderMalformed"),
        (_authz(cred=f"{IAM_AKID}/20261127/us-west-2/aws4_request"), "AuthorizationHeaderMalformed"),
        (_authz(cred=f"{IAM_AKID}/20261127/us-west-2/s3express/aws5_request"), "AuthorizationHeaderMalformed"),
        (_authz(cred=f"/20261127/us-west-2/s3express/aws4_request"), "AuthorizationHeaderMalformed"),
        (_authz(cred=f"{IAM_AKID}/2026112x/us-west-2/s3express/aws4_request"), "AuthorizationHeaderMalformed"),
        (_authz(cred=f"{IAM_AKID}/20261128/us-west-2/s3express/aws4_request"), "AuthorizationHeaderMalformed"),
        (_authz(sig="ab" * 31), "AuthorizationHeaderMalformed"),
        (_authz(sig="zz" * 32), "AuthorizationHeaderMalformed"),
        (_authz(signed="x-amz-content-sha256;x-amz-date"), "AuthorizationHeaderMalformed"),
        (_authz(signed="host;;x-amz-date"), "AuthorizationHeaderMalformed"),
        (_authz(signed="host;host;x-amz-date"), "AuthorizationHeaderMalformed"),
    ],
)
def test_malformed_authorization(authz, code):
    _expect(code, sigv4.parse_request_auth, "GET", "/", _headers(authz))


def test_missing_or_bad_date_and_payload_hash():
    _expect("AccessDenied", sigv4.parse_request_auth, "GET", "/", _headers(_authz(), x_amz_date=None))
    _expect("AccessDenied", sigv4.parse_request_auth, "GET", "/", _headers(_authz(), x_amz_date="2026-11-27T00:54:51Z"))
    _expect("AccessDenied", sigv4.parse_request_auth, "GET", "/", _headers(_authz(), x_amz_date="20261327T005451Z"))
    err = _expect("InvalidRequest", sigv4.parse_request_auth, "GET", "/", _headers(_authz(), x_amz_content_sha256=None))
    assert "x-amz-content-sha256" in err.message
    _expect("InvalidArgument", sigv4.parse_request_auth, "GET", "/", _headers(_authz(), x_amz_content_sha256="abc"))
    _expect(
        "InvalidArgument",
        sigv4.parse_request_auth,
        "GET",
        "/",
        _headers(_authz(), x_amz_content_sha256="STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"),
    )
    # Non-S3 services (KMS/IAM) may omit it.
    kms = _authz(cred=f"{IAM_AKID}/20261127/us-west-2/kms/aws4_request", signed="host;x-amz-date")
    assert sigv4.parse_request_auth("POST", "/", _headers(kms, x_amz_content_sha256=None)).payload_hash == ""


def test_duplicate_authorization_or_date_headers():
    headers = _headers(_authz())
    _expect("AuthorizationHeaderMalformed", sigv4.parse_request_auth, "GET", "/", headers + [("authorization", _authz())])
    _expect("AuthorizationHeaderMalformed", sigv4.parse_request_auth, "GET", "/", headers + [("x-amz-date", "20261127T005452Z")])


def test_anonymous_and_unsupported_mechanisms():
    assert sigv4.parse_request_auth("GET", "/b?list-type=2&prefix=x", [("host", "h")]) is None
    assert sigv4.parse_request_auth("GET", "/", []) is None
    _expect("InvalidRequest", sigv4.parse_request_auth, "GET", "/b/k?AWSAccessKeyId=A&Expires=1&Signature=x", [("host", "h")])
    cap = _presigned_capture()
    _expect("InvalidRequest", sigv4.parse_request_auth, "GET", cap.target, _headers(_authz()))


def _presign_target(**overrides: str | None) -> str:
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": quote(GOOD_CRED, safe=""),
        "X-Amz-Date": "20261127T005451Z",
        "X-Amz-Expires": "300",
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": GOOD_SIG,
    }
    params.update(overrides)
    return "/b/k?" + "&".join(f"{k}={v}" for k, v in params.items() if v is not None)


@pytest.mark.parametrize(
    "overrides",
    [
        {"X-Amz-Expires": None},
        {"X-Amz-Signature": None},
        {"X-Amz-Algorithm": None},
        {"X-Amz-Algorithm": "AWS4-HMAC-SHA1"},
        {"X-Amz-Expires": "0"},
        {"X-Amz-Expires": "604801"},
        {"X-Amz-Expires": "-1"},
        {"X-Amz-Expires": "abc"},
        {"X-Amz-Date": "20261127"},
        {"X-Amz-Date": "20261128T005451Z"},
        {"X-Amz-Credential": "AKID%2F20261127%2Fus-west-2%2Fs3"},
        {"X-Amz-SignedHeaders": "x-amz-date"},
        {"X-Amz-Signature": "xyz"},
        {"X-Amz-Signature": GOOD_SIG + "&X-Amz-Signature=" + GOOD_SIG},
    ],
)
def test_malformed_presigned_query(overrides):
    _expect("AuthorizationQueryParametersError", sigv4.parse_request_auth, "GET", _presign_target(**overrides), [("host", "h")])


def test_presigned_query_parsing():
    auth = sigv4.parse_request_auth(
        "GET",
        _presign_target(**{"X-Amz-Expires": "604800", "X-Amz-S3session-Token": "a%2Bb%2F%3D", "X-Amz-Security-Token": "sts"}),
        [("host", "h")],
    )
    assert auth.presigned and auth.expires_s == 604800 and auth.session_token == "a+b/="
    assert auth.security_token == "sts" and auth.payload_hash == "UNSIGNED-PAYLOAD"
    assert sigv4.parse_request_auth("GET", _presign_target(**{"X-Amz-Expires": "1"}), [("host", "h")]).expires_s == 1


def test_sigv4error_attributes():
    err = SigV4Error("AccessDenied", "nope")
    assert (err.code, err.message) == ("AccessDenied", "nope")
    assert "AccessDenied" in str(err)


@settings(max_examples=300, deadline=None)
@given(st.text("0123456789", min_size=8, max_size=8), st.text("0123456789", min_size=6, max_size=6),
       st.sampled_from(["T", "X"]), st.sampled_from(["Z", "", "ZZ"]))
def test_amz_date_parses_as_strptime_does(day, time_of_day, sep, zone):
    value = day + sep + time_of_day + zone
    try:
        expected = datetime.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        expected = None
    assert sigv4._parse_amz_date(value) == expected
