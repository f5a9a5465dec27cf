"""Tests for gateway.s3xml (request parsing) and the result-document renderers.

Renderers are checked by feeding their output to botocore's real response
parser, which is what boto3 runs on the wire (s3express-wire.md 3.2, 6, 7).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import botocore.handlers
import botocore.parsers
import botocore.serialize
import botocore.session
import pytest

from gateway import s3responses as R
from gateway.errors import ERROR_TABLE
from gateway.s3xml import (
    CompletedPart,
    CreateBucketConfig,
    EncryptionConfig,
    ObjectToDelete,
    XmlError,
    parse_complete_multipart,
    parse_create_bucket_configuration,
    parse_delete_objects,
    parse_encryption_configuration,
    parse_xml,
)
from gateway.xmlbuild import escape_text, format_expiration, format_timestamp, quote_etag

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
S3 = botocore.session.get_session().get_service_model("s3")
T0 = datetime(2026, 11, 27, 0, 55, 17, tzinfo=timezone.utc)


def boto_parse(op: str, body: bytes, status: int = 200) -> dict:
    """Parse ``body`` exactly as boto3 would for operation ``op``."""
    shape = S3.operation_model(op).output_shape
    response = {"status_code": status, "headers": {}, "body": body}
    return botocore.parsers.RestXMLParser().parse(response, shape)


def boto_serialize(op: str, params: dict) -> bytes:
    """Build a request body with botocore's real serializer."""
    request = botocore.serialize.create_serializer("rest-xml").serialize_to_request(
        params, S3.operation_model(op)
    )
    return request["body"]


def code_of(body: bytes, **kw) -> str:
    with pytest.raises(XmlError) as info:
        parse_xml(body, **kw)
    return info.value.code


# ------------------------------------------------------------------ parse_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<Delete><Object><Key>&lol3;</Key></Object></Delete>"""

XXE = b"""<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&x;</Key></Object></Delete>"""


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        XXE,
        b"<!doctype Delete><Delete/>",
        b"<Delete><!-- <!EnTiTy x 'y'> --></Delete>",
        b"<Delete><![CDATA[<!DOCTYPE]]></Delete>",
    ],
)
def test_parse_xml_rejects_dtd_and_entities(body):
    assert code_of(body) == "MalformedXML"


def test_parse_xml_strips_namespaces_and_checks_root():
    root = parse_xml(f"<Delete {NS}><Object><Key>k</Key></Object></Delete>".encode(), root="Delete")
    assert [e.tag for e in root.iter()] == ["Delete", "Object", "Key"]
    assert code_of(b"<Delete/>", root="CompleteMultipartUpload") == "MalformedXML"


def test_parse_xml_strips_namespaced_attributes():
    body = b'<a xmlns:x="urn:x"><b x:type="t"/></a>'
    assert parse_xml(body).find("b").attrib == {"type": "t"}


def test_parse_xml_size_limit():
    body = b"<a>" + b"x" * 100 + b"</a>"
    assert code_of(body, max_bytes=50) == "MaxMessageLengthExceeded"
    assert parse_xml(body, max_bytes=len(body)).tag == "a"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \n",
        b"<a>",
        b"not xml",
        b"<a>\xff</a>",
        "<a>é</a>".encode("utf-16"),
        b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xc3\xa9</a>',
        b"<a>\x01</a>",
        b"<a/><b/>",
    ],
)
def test_parse_xml_rejects_malformed(body):
    assert code_of(body) == "MalformedXML"


def test_parse_xml_accepts_bom_and_utf8_declaration():
    body = '\ufeff<?xml version="1.0" encoding="utf-8"?><a>é</a>'.encode()
    assert parse_xml(body).text == "é"


# ------------------------------------------------------------- CreateBucket

WIRE_CREATE_BUCKET = (
    f"<CreateBucketConfiguration {NS}><Location><Type>AvailabilityZone</Type>"
    "<Name>usw2-az1</Name></Location><Bucket><DataRedundancy>SingleAvailabilityZone"
    "</DataRedundancy><Type>Directory</Type></Bucket></CreateBucketConfiguration>"
).encode()


def test_create_bucket_wire_body():
    assert len(WIRE_CREATE_BUCKET) == 268  # Content-Length in the wire capture
    cfg = parse_create_bucket_configuration(WIRE_CREATE_BUCKET)
    assert cfg == CreateBucketConfig("AvailabilityZone", "usw2-az1", "SingleAvailabilityZone", "Directory", None)
    assert cfg.is_directory


def test_create_bucket_botocore_serialized_body_matches_wire():
    params = {
        "Bucket": "mybucket--usw2-az1--x-s3",
        "CreateBucketConfiguration": {
            "Location": {"Type": "AvailabilityZone", "Name": "usw2-az1"},
            "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"},
        },
    }
    assert boto_serialize("CreateBucket", params) == WIRE_CREATE_BUCKET


def test_create_bucket_empty_and_general():
    assert parse_create_bucket_configuration(b"") == CreateBucketConfig()
    assert not CreateBucketConfig().is_directory
    body = (
        f"<CreateBucketConfiguration {NS}><LocationConstraint>us-west-2"
        "</LocationConstraint></CreateBucketConfiguration>"
    )
    cfg = parse_create_bucket_configuration(body.encode())
    assert cfg.location_constraint == "us-west-2" and not cfg.is_directory


def test_create_bucket_tags_are_ignored():
    body = WIRE_CREATE_BUCKET.replace(
        b"</CreateBucketConfiguration>",
        b"<Tags><Tag><Key>a</Key><Value>b</Value></Tag></Tags></CreateBucketConfiguration>",
    )
    assert parse_create_bucket_configuration(body).bucket_type == "Directory"


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        (b"AvailabilityZone", b"Region", "MalformedXML"),
        (b"SingleAvailabilityZone", b"MultiAZ", "MalformedXML"),
        (b"<Type>Directory", b"<Type>General", "MalformedXML"),
        (b"<Name>usw2-az1</Name>", b"", "MalformedXML"),
        (b"<Name>usw2-az1</Name>", b"<Name>a</Name><Name>b</Name>", "MalformedXML"),
        (b"<CreateBucketConfiguration ", b"<CreateBucket ", "MalformedXML"),
        (b"<Bucket>", b"<LocationConstraint>us-west-2</LocationConstraint><Bucket>", "InvalidRequest"),
        (b"<Bucket>", b"<LocationConstraint>bad region!</LocationConstraint><Bucket>", "InvalidLocationConstraint"),
    ],
)
def test_create_bucket_rejects(old, new, code):
    body = WIRE_CREATE_BUCKET.replace(old, new)
    if old == b"<CreateBucketConfiguration ":
        body = body.replace(b"</CreateBucketConfiguration>", b"</CreateBucket>")
    with pytest.raises(XmlError) as info:
        parse_create_bucket_configuration(body)
    assert info.value.code == code


# ---------------------------------------------------------- BucketEncryption

KEY_ARN = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
WIRE_ENCRYPTION = (
    f"<ServerSideEncryptionConfiguration {NS}><Rule><ApplyServerSideEncryptionByDefault>"
    f"<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>{KEY_ARN}</KMSMasterKeyID>"
    "</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled></Rule>"
    "</ServerSideEncryptionConfiguration>"
).encode()


def test_encryption_wire_body():
    assert parse_encryption_configuration(WIRE_ENCRYPTION) == EncryptionConfig("aws:kms", KEY_ARN, True)
    params = {
        "Bucket": "b",
        "ServerSideEncryptionConfiguration": {
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}
            ]
        },
    }
    body = boto_serialize("PutBucketEncryption", params)
    assert parse_encryption_configuration(body) == EncryptionConfig("AES256", None, False)


def test_encryption_bucket_key_optional():
    body = WIRE_ENCRYPTION.replace(b"<BucketKeyEnabled>true</BucketKeyEnabled>", b"")
    assert parse_encryption_configuration(body).bucket_key_enabled is None


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        (b"aws:kms<", b"aws:fsx<", "MalformedXML"),
        (b"aws:kms<", b"AES256<", "InvalidArgument"),
        (b"<BucketKeyEnabled>true", b"<BucketKeyEnabled>yes", "MalformedXML"),
        (b"</Rule>", b"</Rule><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256"
                    b"</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>", "MalformedXML"),
        (b"<SSEAlgorithm>aws:kms</SSEAlgorithm>", b"", "MalformedXML"),
        (b"<Rule>", b"<Rules>", "MalformedXML"),
    ],
)
def test_encryption_rejects(old, new, code):
    body = WIRE_ENCRYPTION.replace(old, new)
    if new == b"<Rules>":
        body = body.replace(b"</Rule>", b"</Rules>")
    with pytest.raises(XmlError) as info:
        parse_encryption_configuration(body)
    assert info.value.code == code


# ------------------------------------------------------------ DeleteObjects

WIRE_DELETE = f"<Delete {NS}><Object><Key>a&amp;b&lt;c&gt;.txt</Key></Object><Quiet>true</Quiet></Delete>".encode()


def test_delete_wire_body():
    req = parse_delete_objects(WIRE_DELETE)
    assert req.objects == (ObjectToDelete("a&b<c>.txt", None, None),) and req.quiet
    params = {"Bucket": "b", "Delete": {"Objects": [{"Key": "a&b<c>.txt"}], "Quiet": True}}
    assert boto_serialize("DeleteObjects", params) == WIRE_DELETE


def test_delete_keeps_key_whitespace_and_options():
    body = boto_serialize(
        "DeleteObjects",
        {
            "Bucket": "b",
            "Delete": {"Objects": [{"Key": " sp ace "}, {"Key": "v", "VersionId": "null", "ETag": '"e"'}]},
        },
    )
    req = parse_delete_objects(body)
    assert req.objects == (ObjectToDelete(" sp ace ", None, None), ObjectToDelete("v", "null", '"e"'))
    assert req.quiet is False
    key, version_id, etag = req.objects[1]
    assert (key, version_id, etag) == ("v", "null", '"e"')


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (f"<Delete {NS}><Quiet>true</Quiet></Delete>", "MalformedXML"),
        (f"<Delete {NS}><Object><VersionId>x</VersionId></Object></Delete>", "MalformedXML"),
        (f"<Delete {NS}><Object><Key></Key></Object></Delete>", "InvalidArgument"),
        (f"<Delete {NS}><Object><Key>a</Key></Object><Quiet>maybe</Quiet></Delete>", "MalformedXML"),
        (f"<Delete {NS}><Object><Key>a</Key><Size>3</Size></Object></Delete>", "NotImplemented"),
        (f"<Remove {NS}><Object><Key>a</Key></Object></Remove>", "MalformedXML"),
    ],
)
def test_delete_rejects(body, code):
    with pytest.raises(XmlError) as info:
        parse_delete_objects(body.encode())
    assert info.value.code == code


def test_delete_max_keys():
    body = ("<Delete>" + "<Object><Key>k</Key></Object>" * 3 + "</Delete>").encode()
    assert len(parse_delete_objects(body, max_keys=3).objects) == 3
    with pytest.raises(XmlError) as info:
        parse_delete_objects(body, max_keys=2)
    assert info.value.code == "MalformedXML"


# -------------------------------------------------- CompleteMultipartUpload


def test_complete_multipart_child_order_independent():
    # boto3 sends PartNumber first, s3transfer/CLI send ETag first (wire 6.13).
    body = (
        f"<CompleteMultipartUpload {NS}>"
        '<Part><ETag>"e1"</ETag><PartNumber>1</PartNumber><ChecksumCRC32>DrYKnw==</ChecksumCRC32></Part>'
        '<Part><PartNumber>2</PartNumber><ChecksumCRC32>AAAAAA==</ChecksumCRC32><ETag>"e2"</ETag></Part>'
        "</CompleteMultipartUpload>"
    ).encode()
    assert parse_complete_multipart(body) == (
        CompletedPart(1, '"e1"', {"CRC32": "DrYKnw=="}),
        CompletedPart(2, '"e2"', {"CRC32": "AAAAAA=="}),
    )


def test_complete_multipart_botocore_body():
    parts = [{"PartNumber": 2, "ETag": '"b"', "ChecksumSHA256": "x="}, {"ETag": '"a"', "PartNumber": 1}]
    params = {"Bucket": "b", "Key": "k", "UploadId": "u", "MultipartUpload": {"Parts": parts}}
    body = boto_serialize("CompleteMultipartUpload", params)
    # Document order is preserved; ordering checks belong to the caller.
    assert parse_complete_multipart(body) == (CompletedPart(2, '"b"', {"SHA256": "x="}), CompletedPart(1, '"a"'))


@pytest.mark.parametrize(
    ("part", "code"),
    [
        ("", "MalformedXML"),
        ('<Part><ETag>"e"</ETag></Part>', "MalformedXML"),
        ("<Part><PartNumber>1</PartNumber></Part>", "MalformedXML"),
        ('<Part><PartNumber>0</PartNumber><ETag>"e"</ETag></Part>', "InvalidArgument"),
        ('<Part><PartNumber>10001</PartNumber><ETag>"e"</ETag></Part>', "InvalidArgument"),
        ('<Part><PartNumber>-1</PartNumber><ETag>"e"</ETag></Part>', "InvalidArgument"),
        ('<Part><PartNumber>x</PartNumber><ETag>"e"</ETag></Part>', "InvalidArgument"),
        ('<Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber><ETag>"e"</ETag></Part>', "MalformedXML"),
        ('<Part><PartNumber>1</PartNumber><ETag>"e"</ETag><ChecksumFOO>x</ChecksumFOO></Part>', "InvalidArgument"),
    ],
)
def test_complete_multipart_rejects(part, code):
    body = f"<CompleteMultipartUpload {NS}>{part}</CompleteMultipartUpload>".encode()
    with pytest.raises(XmlError) as info:
        parse_complete_multipart(body)
    assert info.value.code == code


def test_xml_error_codes_are_s3_error_codes():
    bodies = [BILLION_LAUGHS, b"<a>" * 10, b"<Delete><Object><Key/></Object></Delete>"]
    for body in bodies:
        with pytest.raises(XmlError) as info:
            parse_delete_objects(body, max_keys=1)
        assert info.value.code in ERROR_TABLE
    for code in ("MalformedXML", "MaxMessageLengthExceeded", "InvalidRequest", "InvalidArgument",
                 "InvalidLocationConstraint", "NotImplemented"):
        assert code in ERROR_TABLE


# ------------------------------------------------------------ builder bits


def test_escape_and_formats():
    assert escape_text("a&b<c>d\re\x01") == "a&amp;b&lt;c&gt;d&#xD;e&#x1;"
    assert format_timestamp(T0) == "2026-11-27T00:55:17.000Z"
    assert format_timestamp(T0.timestamp()) == "2026-11-27T00:55:17.000Z"
    est = T0.astimezone(timezone(timedelta(hours=-5)))
    assert format_expiration(est) == "2026-11-27T00:55:17Z"
    with pytest.raises(ValueError):
        format_timestamp(datetime(2026, 1, 1))
    assert quote_etag("abc") == quote_etag('"abc"') == '"abc"'


# ------------------------------------------------ renderers through botocore


def test_create_session_result():
    expiry = datetime(2026, 11, 27, 0, 59, 51, tzinfo=timezone.utc)
    body = R.create_session_result("ASIAEXAMPLE", "s/e+cret=", "tok+/=&<", expiry)
    assert body.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<CreateSessionResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    )
    assert b"<Expiration>2026-11-27T00:59:51Z</Expiration>" in body
    creds = boto_parse("CreateSession", body)["Credentials"]
    assert creds == {
        "AccessKeyId": "ASIAEXAMPLE",
        "SecretAccessKey": "s/e+cret=",
        "SessionToken": "tok+/=&<",
        "Expiration": expiry,
    }


def test_list_directory_buckets_result():
    arn = "arn:aws:s3express:us-west-2:123456789012:bucket/mybucket--usw2-az1--x-s3"
    buckets = [("mybucket--usw2-az1--x-s3", T0, "us-west-2", arn), ("b2--usw2-az1--x-s3", T0, None, None)]
    parsed = boto_parse("ListDirectoryBuckets", R.list_directory_buckets_result(buckets, "tok/+="))
    assert parsed["Buckets"][0] == {
        "Name": buckets[0][0], "CreationDate": T0, "BucketRegion": "us-west-2", "BucketArn": arn
    }
    assert parsed["Buckets"][1] == {"Name": buckets[1][0], "CreationDate": T0}
    assert parsed["ContinuationToken"] == "tok/+="
    last = boto_parse("ListDirectoryBuckets", R.list_directory_buckets_result([], None))
    assert last["Buckets"] == [] and "ContinuationToken" not in last


def test_list_buckets_result():
    body = R.list_buckets_result("owner-id", "owner", [("gp-bucket", T0)], region="us-west-2", prefix="gp")
    parsed = boto_parse("ListBuckets", body)
    assert parsed["Owner"] == {"ID": "owner-id", "DisplayName": "owner"}
    assert parsed["Buckets"] == [{"Name": "gp-bucket", "CreationDate": T0, "BucketRegion": "us-west-2"}]
    assert parsed["Prefix"] == "gp" and "ContinuationToken" not in parsed


def test_encryption_configuration_roundtrip():
    body = R.encryption_configuration("aws:kms", KEY_ARN, True)
    parsed = boto_parse("GetBucketEncryption", body)
    assert parsed["ServerSideEncryptionConfiguration"] == {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN},
                "BucketKeyEnabled": True,
            }
        ]
    }
    # What we render, we also accept back (GET output == PUT input shape).
    assert parse_encryption_configuration(body) == EncryptionConfig("aws:kms", KEY_ARN, True)
    aes = boto_parse("GetBucketEncryption", R.encryption_configuration("AES256", None, False))
    assert aes["ServerSideEncryptionConfiguration"]["Rules"][0] == {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}


def test_delete_result():
    body = R.delete_result(["dir/sub/a.bin", "x&y"], [("err-x", "AccessDenied", "Access Denied")])
    parsed = boto_parse("DeleteObjects", body)
    assert parsed["Deleted"] == [{"Key": "dir/sub/a.bin"}, {"Key": "x&y"}]
    assert parsed["Errors"] == [{"Key": "err-x", "Code": "AccessDenied", "Message": "Access Denied"}]
    quiet = boto_parse("DeleteObjects", R.delete_result([], []))
    assert "Deleted" not in quiet and "Errors" not in quiet


def _listing(encoding_type):
    contents = [
        R.ListedObject("dir/a%2F b.txt", T0, "abc", 1),
        R.ListedObject("dir/hello world+ü.txt", T0.timestamp(), '"def"', 13, owner=("oid", None),
                       checksum_algorithm="CRC32", checksum_type="FULL_OBJECT"),
    ]
    return R.list_objects_v2_result(
        bucket="mybucket--usw2-az1--x-s3", contents=contents, common_prefixes=["dir/sub dir/"],
        prefix="dir/", delimiter="/", max_keys=2, is_truncated=True, continuation_token="ct+/=",
        next_continuation_token="next+/=", start_after="dir/0 +", encoding_type=encoding_type,
    )


@pytest.mark.parametrize("encoding_type", ["url", None])
def test_list_objects_v2_roundtrip(encoding_type):
    body = _listing(encoding_type)
    parsed = boto_parse("ListObjectsV2", body)
    # boto3 sets encoding-type=url itself and then decodes (wire section 0.8).
    botocore.handlers.decode_list_object_v2(parsed, context={"encoding_type_auto_set": True})
    assert [c["Key"] for c in parsed["Contents"]] == ["dir/a%2F b.txt", "dir/hello world+ü.txt"]
    assert parsed["CommonPrefixes"] == [{"Prefix": "dir/sub dir/"}]
    assert (parsed["Prefix"], parsed["Delimiter"], parsed["StartAfter"]) == ("dir/", "/", "dir/0 +")
    assert parsed["KeyCount"] == 3 and parsed["MaxKeys"] == 2 and parsed["IsTruncated"] is True
    assert parsed["ContinuationToken"] == "ct+/=" and parsed["NextContinuationToken"] == "next+/="
    first, second = parsed["Contents"]
    assert first == {
        "Key": "dir/a%2F b.txt", "LastModified": T0, "ETag": '"abc"', "Size": 1, "StorageClass": "EXPRESS_ONEZONE"
    }
    assert second["ETag"] == '"def"' and second["Owner"] == {"ID": "oid"}
    assert second["ChecksumAlgorithm"] == ["CRC32"] and second["ChecksumType"] == "FULL_OBJECT"
    assert ("EncodingType" in parsed) == (encoding_type == "url")


def test_list_objects_v2_url_encoding_on_the_wire():
    body = _listing("url")
    assert b"<Key>dir/a%252F%20b.txt</Key>" in body
    assert b"<Key>dir/hello%20world%2B%C3%BC.txt</Key>" in body
    assert b"<Prefix>dir/sub%20dir/</Prefix>" in body and b"<EncodingType>url</EncodingType>" in body
    with pytest.raises(ValueError):
        R.list_objects_v2_result(bucket="b", contents=[], encoding_type="base64")


def test_copy_results():
    body = R.copy_object_result("e", T0, {"CRC32": "hdX/xQ=="}, checksum_type="FULL_OBJECT")
    parsed = boto_parse("CopyObject", body)["CopyObjectResult"]
    assert parsed == {"ETag": '"e"', "LastModified": T0, "ChecksumCRC32": "hdX/xQ==", "ChecksumType": "FULL_OBJECT"}
    part = boto_parse("UploadPartCopy", R.copy_part_result('"p"', T0))["CopyPartResult"]
    assert part == {"ETag": '"p"', "LastModified": T0}
    with pytest.raises(ValueError):
        R.copy_object_result("e", T0, {"ADLER": "x"})


def test_multipart_initiate_and_complete():
    parsed = boto_parse("CreateMultipartUpload", R.initiate_multipart_result("bkt", "mp/big & .bin", "up+/="))
    assert (parsed["Bucket"], parsed["Key"], parsed["UploadId"]) == ("bkt", "mp/big & .bin", "up+/=")
    body = R.complete_multipart_result(
        "http://h/bkt/k", "bkt", "k", "abc-3", {"CRC32": "AAAA-3"}, checksum_type="COMPOSITE"
    )
    parsed = boto_parse("CompleteMultipartUpload", body)
    assert {k: parsed[k] for k in ("Location", "Bucket", "Key", "ETag", "ChecksumCRC32", "ChecksumType")} == {
        "Location": "http://h/bkt/k", "Bucket": "bkt", "Key": "k", "ETag": '"abc-3"',
        "ChecksumCRC32": "AAAA-3", "ChecksumType": "COMPOSITE"}


def test_list_parts_result():
    parts = [R.ListedPart(1, T0, "e1", 5242880, {"CRC32": "DrYKnw=="}), R.ListedPart(2, T0, '"e2"', 7)]
    body = R.list_parts_result(
        bucket="bkt", key="k", upload_id="u", parts=parts, part_number_marker=0, next_part_number_marker=2,
        max_parts=2, is_truncated=True, owner=("oid", "me"), initiator=("iid", None), checksum_algorithm="CRC32",
        checksum_type="COMPOSITE",
    )
    parsed = boto_parse("ListParts", body)
    assert parsed["Parts"] == [
        {"PartNumber": 1, "LastModified": T0, "ETag": '"e1"', "Size": 5242880, "ChecksumCRC32": "DrYKnw=="},
        {"PartNumber": 2, "LastModified": T0, "ETag": '"e2"', "Size": 7},
    ]
    assert (parsed["PartNumberMarker"], parsed["NextPartNumberMarker"], parsed["MaxParts"]) == (0, 2, 2)
    assert parsed["IsTruncated"] is True and parsed["StorageClass"] == "EXPRESS_ONEZONE"
    assert parsed["Owner"] == {"ID": "oid", "DisplayName": "me"} and parsed["Initiator"] == {"ID": "iid"}
    assert (parsed["ChecksumAlgorithm"], parsed["ChecksumType"]) == ("CRC32", "COMPOSITE")


@pytest.mark.parametrize("encoding_type", ["url", None])
def test_list_multipart_uploads_result(encoding_type):
    uploads = [R.ListedUpload("p/a b+.bin", "u1", T0, owner=("oid", None), checksum_algorithm="CRC32")]
    body = R.list_multipart_uploads_result(
        bucket="bkt", uploads=uploads, common_prefixes=["p/sub dir/"], prefix="p/", delimiter="/",
        key_marker="km", upload_id_marker="um", next_key_marker="p/a b+.bin", next_upload_id_marker="u1",
        max_uploads=1, is_truncated=True, encoding_type=encoding_type,
    )
    parsed = boto_parse("ListMultipartUploads", body)
    enc = (lambda s: s.replace(" ", "%20").replace("+", "%2B")) if encoding_type else (lambda s: s)
    assert parsed["Uploads"] == [
        {
            "Key": enc("p/a b+.bin"), "UploadId": "u1", "Initiated": T0, "StorageClass": "EXPRESS_ONEZONE",
            "Owner": {"ID": "oid"}, "ChecksumAlgorithm": "CRC32",
        }
    ]
    assert parsed["CommonPrefixes"] == [{"Prefix": enc("p/sub dir/")}]
    assert (parsed["KeyMarker"], parsed["UploadIdMarker"], parsed["NextKeyMarker"]) == ("km", "um", enc("p/a b+.bin"))
    assert (parsed["NextUploadIdMarker"], parsed["MaxUploads"], parsed["IsTruncated"]) == ("u1", 1, True)
    assert (parsed["Prefix"], parsed["Delimiter"]) == ("p/", "/")
    assert parsed.get("EncodingType") == encoding_type
