"""Tests for gateway.errors: the error table, S3Error, and the three wire formats.

Every rendered body is parsed by botocore's real parser for the protocol in
question (rest-xml for S3, json for KMS, query for IAM), so these tests show
that boto3 surfaces the intended ``Error.Code``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import botocore.parsers
import botocore.session
import pytest

from gateway.errors import ERROR_TABLE, IAM_NAMESPACE, S3Error, error_xml, iam_error_xml, kms_error_json

SESSION = botocore.session.get_session()

# The statuses the gateway contract pins down (brief + wire reference 7).
EXPECTED_STATUS = {
    "AccessDenied": 403, "AccountProblem": 403, "SignatureDoesNotMatch": 403, "InvalidAccessKeyId": 403,
    "RequestTimeTooSkewed": 403, "ExpiredToken": 400, "InvalidToken": 400, "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400, "MissingSecurityHeader": 400, "NoSuchBucket": 404,
    "NoSuchKey": 404, "NoSuchUpload": 404, "NoSuchBucketPolicy": 404,
    "ServerSideEncryptionConfigurationNotFoundError": 404, "InvalidBucketName": 400,
    "BucketAlreadyExists": 409, "BucketAlreadyOwnedByYou": 409, "BucketNotEmpty": 409, "InvalidRequest": 400,
    "InvalidArgument": 400, "InvalidLocationConstraint": 400, "InvalidBucketState": 409,
    "PreconditionFailed": 412, "NotModified": 304, "InvalidRange": 416, "EntityTooSmall": 400,
    "EntityTooLarge": 400, "InvalidPart": 400, "InvalidPartOrder": 400, "InvalidPartNumber": 416, "InvalidWriteOffset": 400,
    "TooManyParts": 400, "EncryptionTypeMismatch": 400, "IdempotencyParameterMismatch": 400, "BadDigest": 400,
    "InvalidDigest": 400, "XAmzContentSHA256Mismatch": 400, "IncompleteBody": 400, "MissingContentLength": 411,
    "MalformedXML": 400, "KeyTooLongError": 400, "MetadataTooLarge": 400, "RequestHeaderSectionTooLarge": 400,
    "MaxMessageLengthExceeded": 400, "NotImplemented": 501, "MethodNotAllowed": 405, "InternalError": 500,
    "SlowDown": 503, "ServiceUnavailable": 503, "RequestTimeout": 400, "KMS.DisabledException": 400,
    "KMS.KMSInvalidStateException": 400, "KMS.NotFoundException": 400, "KMS.InvalidCiphertextException": 400,
    "KMS.AccessDeniedException": 403, "KMS.KMSInternalException": 500, "KMS.UnavailableException": 503,
    # bucket policies, general-purpose buckets, browser-form (POST) uploads
    "MalformedPolicy": 400, "OperationAborted": 409, "IllegalLocationConstraintException": 400,
    "InvalidPolicyDocument": 400, "MaxPostPreDataLengthExceeded": 400, "IncorrectNumberOfFilesInPostRequest": 400,
    "MalformedPOSTRequest": 400,
}


def s3_parse_error(body: bytes, status: int) -> dict:
    shape = SESSION.get_service_model("s3").operation_model("GetObject").output_shape
    return botocore.parsers.RestXMLParser().parse({"status_code": status, "headers": {}, "body": body}, shape)


def test_table_matches_contract_exactly():
    assert {code: status for code, (status, _) in ERROR_TABLE.items()} == EXPECTED_STATUS
    assert all(message for _, message in ERROR_TABLE.values())
    with pytest.raises(TypeError):
        ERROR_TABLE["Foo"] = (400, "x")  # type: ignore[index]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("NoSuchKey", "The specified key does not exist."),
        ("NoSuchBucket", "The specified bucket does not exist"),
        ("AccessDenied", "Access Denied"),
        ("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you "
                                  "provided. Check your key and signing method."),
        ("InvalidRange", "The requested range is not satisfiable"),
    ],
)
def test_aws_messages(code, message):
    assert S3Error(code).message == message


def test_s3error_defaults_and_overrides():
    err = S3Error("NoSuchKey", resource="/b/k", extra={"Key": "k"}, headers={"x-amz-bucket-region": "us-west-2"})
    assert (err.code, err.status, err.resource) == ("NoSuchKey", 404, "/b/k")
    assert err.extra == {"Key": "k"} and err.headers == {"x-amz-bucket-region": "us-west-2"}
    assert isinstance(err, Exception) and "NoSuchKey" in str(err)
    custom = S3Error("InvalidRequest", "prefix must end in /", status=400)
    assert custom.message == "prefix must end in /"
    assert S3Error("AccessDenied", status=401).status == 401


def test_s3error_unknown_code():
    with pytest.raises(ValueError):
        S3Error("NoSuchThing")
    err = S3Error("NoSuchThing", status=404)
    assert (err.status, err.message) == (404, "NoSuchThing")


@pytest.mark.parametrize(
    "kwargs",
    [{"status": 99}, {"status": 600}, {"extra": {"Bad Name": "x"}}, {"extra": {"Code": "x"}}, {"extra": {"1a": "x"}}],
)
def test_s3error_programming_errors(kwargs):
    with pytest.raises(ValueError):
        S3Error("InternalError", **kwargs)


def test_error_xml_exact_shape():
    err = S3Error("NoSuchKey", resource="/mybucket--usw2-az1--x-s3/missing.txt", extra={"Key": "missing.txt"})
    body = error_xml(err, request_id="REQ1", host_id="HOST1")
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
        b"<Message>The specified key does not exist.</Message>"
        b"<Resource>/mybucket--usw2-az1--x-s3/missing.txt</Resource><Key>missing.txt</Key>"
        b"<RequestId>REQ1</RequestId><HostId>HOST1</HostId></Error>"
    )
    minimal = error_xml(S3Error("AccessDenied"), request_id="r")
    assert b"<Resource>" not in minimal and minimal.endswith(b"<RequestId>r</RequestId><HostId></HostId></Error>")


def test_error_xml_escapes_everything():
    err = S3Error("InvalidArgument", "bad <value> & \"more\"", resource="/b/a&b<c>",
                  extra={"ArgumentName": "x-amz-<h>", "ArgumentValue": "1&2"})
    body = error_xml(err, request_id="<r&>", host_id="h>")
    root = ET.fromstring(body)
    assert root.findtext("Message") == 'bad <value> & "more"'
    assert root.findtext("Resource") == "/b/a&b<c>"
    assert root.findtext("ArgumentName") == "x-amz-<h>" and root.findtext("ArgumentValue") == "1&2"
    assert root.findtext("RequestId") == "<r&>" and root.findtext("HostId") == "h>"


@pytest.mark.parametrize("code", sorted(c for c in EXPECTED_STATUS if c != "NotModified"))
def test_botocore_parses_every_s3_error(code):
    err = S3Error(code, resource="/b/k", extra={"BucketName": "b"})
    parsed = s3_parse_error(error_xml(err, request_id="REQ", host_id="HID"), err.status)
    assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"] == ERROR_TABLE[code][1]
    assert parsed["Error"]["BucketName"] == "b" and parsed["Error"]["Resource"] == "/b/k"


def test_botocore_request_id_from_error_body():
    body = error_xml(S3Error("NoSuchBucket"), request_id="REQ", host_id="HID")
    parsed = s3_parse_error(body, 404)
    assert "RequestId" not in parsed["Error"]  # moved to metadata / dropped, as botocore does for S3
    assert parsed["Error"]["Code"] == "NoSuchBucket"


def test_kms_error_json():
    body = kms_error_json("NotFoundException", 'Key "arn:x" does not exist')
    assert json.loads(body) == {"__type": "NotFoundException", "message": 'Key "arn:x" does not exist'}
    shape = SESSION.get_service_model("kms").operation_model("Decrypt").output_shape
    parsed = botocore.parsers.JSONParser().parse({"status_code": 400, "headers": {}, "body": body}, shape)
    assert parsed["Error"] == {"Code": "NotFoundException", "Message": 'Key "arn:x" does not exist'}


@pytest.mark.parametrize("sender", [True, False])
def test_iam_error_xml(sender):
    body = iam_error_xml("NoSuchEntity", "The user <x> & y cannot be found.", "req-1", sender=sender)
    root = ET.fromstring(body)
    assert root.tag == f"{{{IAM_NAMESPACE}}}ErrorResponse"
    kind = "Sender" if sender else "Receiver"
    assert f"<Error><Type>{kind}</Type><Code>NoSuchEntity</Code>".encode() in body
    shape = SESSION.get_service_model("iam").operation_model("GetUser").output_shape
    parsed = botocore.parsers.QueryParser().parse({"status_code": 404, "headers": {}, "body": body}, shape)
    assert parsed["Error"]["Code"] == "NoSuchEntity"
    assert parsed["Error"]["Message"] == "The user <x> & y cannot be found."
    assert parsed["Error"]["Type"] == kind
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"
