"""gateway.sigv2 against botocore's own SigV2 query signer (HmacV1QueryAuth): what boto3's default
config produces for presigned URLs of general-purpose buckets verifies; any change does not."""

import pytest
from botocore.auth import HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway import sigv2

CREDS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def presign(method, url, headers=None, expires=3600, auth_path=None):
    req = AWSRequest(method=method, url=url, headers=headers or {})
    if auth_path:
        req.auth_path = auth_path
    HmacV1QueryAuth(CREDS, expires=expires).add_auth(req)
    return req


def target(url):
    rest = url.split("://", 1)[1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"


@pytest.mark.parametrize("method, url, headers", [
    ("GET", "http://127.0.0.1:9000/photos/2024/a%20b%2Bc.jpg", {}),
    ("GET", "http://127.0.0.1:9000/photos/k?response-content-type=text%2Fplain", {}),
    ("PUT", "http://127.0.0.1:9000/photos/up.bin", {"Content-Type": "application/x-test", "x-amz-meta-a": "1"}),
    ("PUT", "http://127.0.0.1:9000/photos/k?partNumber=2&uploadId=abc", {}),
])
def test_botocore_presigned_urls_verify(method, url, headers):
    req = presign(method, url, headers)
    t = target(req.url)
    p = sigv2.parse_presigned(t)
    assert p is not None and p.access_key_id == CREDS.access_key
    text = sigv2.string_to_sign(method, t, [])
    sigv2.verify(CREDS.secret_key, text, p.signature)
    sigv2.check_expires(p, p.expires - 10)
    with pytest.raises(sigv2.SigV2Error):
        sigv2.check_expires(p, p.expires)
    with pytest.raises(sigv2.SigV2Error) as e:
        sigv2.verify(CREDS.secret_key, sigv2.string_to_sign("DELETE", t, []), p.signature)
    assert e.value.code == "SignatureDoesNotMatch"
    with pytest.raises(sigv2.SigV2Error):
        sigv2.verify("other-secret", text, p.signature)


def test_virtual_host_resource_includes_the_bucket():
    req = presign("GET", "http://photos.localhost:9000/k.jpg", auth_path="/photos/k.jpg")
    t = target(req.url)
    p = sigv2.parse_presigned(t)
    sigv2.verify(CREDS.secret_key, sigv2.string_to_sign("GET", t, [], bucket_prefix="/photos"), p.signature)


def test_malformed_parameters():
    assert sigv2.parse_presigned("/b/k?list-type=2") is None
    for bad in ("/b/k?AWSAccessKeyId=A&Signature=s", "/b/k?AWSAccessKeyId=A&Expires=soon&Signature=s",
                "/b/k?Signature=s&Expires=5"):
        with pytest.raises(sigv2.SigV2Error):
            sigv2.parse_presigned(bad)
    with pytest.raises(sigv2.SigV2Error):
        sigv2.check_expires(sigv2.PresignedV2("A", 10**10, "s"), 0)  # more than a week ahead
