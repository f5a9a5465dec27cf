"""Routing table: path and virtual-host addressing, subresources, service-dependent GET /."""

import pytest

from gateway.errors import S3Error
from gateway.routing import parse_query, route

OWN = frozenset({"127.0.0.1", "localhost"})
B = "mybucket--usw2-az1--x-s3"

CASES = [
    ("GET", "127.0.0.1:9000", "/", "s3express", None, ("ListDirectoryBuckets", None, None)),
    ("GET", "127.0.0.1:9000", "/", "s3", None, ("ListBuckets", None, None)),
    ("GET", "127.0.0.1:9000", f"/{B}?session", "s3express", None, ("CreateSession", B, None)),
    ("GET", f"{B}.localhost:9000", "/?session", "s3express", None, ("CreateSession", B, None)),
    ("PUT", "127.0.0.1:9000", f"/{B}", "s3express", None, ("CreateBucket", B, None)),
    ("PUT", "127.0.0.1:9000", f"/{B}?encryption", "s3express", None, ("PutBucketEncryption", B, None)),
    ("PUT", "127.0.0.1:9000", f"/{B}/dir/hello%20world%2B%C3%BC.txt", "s3express", None,
     ("PutObject", B, "dir/hello world+ü.txt")),
    ("PUT", f"{B}.localhost:9000", "/dir/k.txt", "s3express", None, ("PutObject", B, "dir/k.txt")),
    ("GET", "127.0.0.1:9000", f"/{B}/a//b", "s3express", None, ("GetObject", B, "a//b")),
    ("HEAD", "127.0.0.1:9000", f"/{B}/k", "s3express", None, ("HeadObject", B, "k")),
    ("DELETE", "127.0.0.1:9000", f"/{B}/k", "s3express", None, ("DeleteObject", B, "k")),
    ("GET", "127.0.0.1:9000", f"/{B}?list-type=2&prefix=dir%2F", "s3express", None, ("ListObjectsV2", B, None)),
    ("POST", "127.0.0.1:9000", f"/{B}?delete", "s3express", None, ("DeleteObjects", B, None)),
    ("POST", "127.0.0.1:9000", f"/{B}/k?uploads", "s3express", None, ("CreateMultipartUpload", B, "k")),
    ("PUT", "127.0.0.1:9000", f"/{B}/k?partNumber=1&uploadId=u", "s3express", None, ("UploadPart", B, "k")),
    ("PUT", "127.0.0.1:9000", f"/{B}/k?renameObject", "s3express", None, ("RenameObject", B, "k")),
    ("POST", "127.0.0.1:9000", "/", "kms", "TrentService.CreateKey", ("KmsJson", None, None)),
    ("POST", "127.0.0.1:9000", "/", "iam", None, ("IamQuery", None, None)),
]


@pytest.mark.parametrize("method,host,target,service,xtarget,expected", CASES)
def test_routes(method, host, target, service, xtarget, expected):
    r = route(method, host, target, service=service, x_amz_target=xtarget, own_hosts=OWN)
    assert (r.operation, r.bucket, r.key) == expected


@pytest.mark.parametrize("method,target,code", [
    ("PATCH", f"/{B}/k", "MethodNotAllowed"),
    ("POST", "/", "MethodNotAllowed"),
    ("PUT", f"/{B}/k?tagging", "NotImplemented"),
    ("PUT", f"/{B}?acl", "NotImplemented"),
    ("GET", f"/{B}/" + "k" * 1025, "KeyTooLongError"),
    ("GET", "no-slash", "InvalidRequest"),
])
def test_errors(method, target, code):
    with pytest.raises(S3Error) as ei:
        route(method, "127.0.0.1", target, service="s3express", x_amz_target=None, own_hosts=OWN)
    assert ei.value.code == code


def test_query_decoding_keeps_plus_literal_in_percent_form():
    assert parse_query("prefix=a%2Bb&x=a+b&flag") == {"prefix": "a+b", "x": "a b", "flag": ""}
