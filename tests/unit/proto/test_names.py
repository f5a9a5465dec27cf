"""Table-driven tests for proto.names."""

from __future__ import annotations

import pytest

from proto.names import (
    InvalidName,
    KeyRef,
    KeyRefKind,
    bucket_arn,
    iam_user_arn,
    is_directory_bucket_name,
    kms_key_arn,
    object_arn,
    parse_kms_key_ref,
    validate_directory_bucket_name,
    validate_general_bucket_name,
    validate_iam_user_name,
    validate_object_key,
    validate_zone_id,
)

UUID = "1234abcd-12ab-34cd-56ef-1234567890ab"

# (name, expected (base, zone) or None, substring expected in the error)
DIRECTORY_CASES = [
    ("logs--use1-az4--x-s3", ("logs", "use1-az4"), None),
    ("a--use1-az4--x-s3", ("a", "use1-az4"), None),
    ("my-bucket-1--usw2-az1--x-s3", ("my-bucket-1", "usw2-az1"), None),
    ("two--dashes--use1-az4--x-s3", ("two--dashes", "use1-az4"), None),
    ("lz--usw2-lax1-az1--x-s3", ("lz", "usw2-lax1-az1"), None),
    ("b" * 47 + "--use1-az4--x-s3", ("b" * 47, "use1-az4"), None),  # exactly 63
    ("b" * 48 + "--use1-az4--x-s3", None, "between 3 and 63"),
    ("ab", None, "between 3 and 63"),
    ("Logs--use1-az4--x-s3", None, "may contain only"),
    ("lo.gs--use1-az4--x-s3", None, "may contain only"),
    ("lo_gs--use1-az4--x-s3", None, "may contain only"),
    ("-logs--use1-az4--x-s3", None, "begin and end"),
    ("logs-use1-az4", None, "must end with --<zone-id>--x-s3"),
    ("logs--x-s3", None, "<base-name>--<zone-id>--x-s3"),
    ("--use1-az4--x-s3", None, "begin and end"),
    ("logs---use1-az4--x-s3", None, "base name must begin and end"),
    ("logs--use1_az4--x-s3", None, "may contain only"),
    ("xn--abc--use1-az4--x-s3", None, "'xn--'"),
    ("sthree-abc--use1-az4--x-s3", None, "'sthree-'"),
    ("amzn-s3-demo-bucket--use1-az4--x-s3", None, "'amzn-s3-demo-'"),
    ("abc-s3alias--use1-az4--x-s3", None, "'-s3alias'"),
    ("abc--ol-s3--use1-az4--x-s3", None, "'--ol-s3'"),
]


@pytest.mark.parametrize("name, expected, error", DIRECTORY_CASES)
def test_directory_bucket_names(name, expected, error):
    if expected is not None:
        assert validate_directory_bucket_name(name) == expected
        assert is_directory_bucket_name(name)
    else:
        with pytest.raises(InvalidName) as info:
            validate_directory_bucket_name(name)
        assert info.value.code == "InvalidBucketName"
        assert error in str(info.value)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("logs--use1-az4--x-s3", True),
        ("logs", False),
        ("logs--x-s3-not", False),
        ("logs--X-S3", False),
    ],
)
def test_is_directory_bucket_name(name, expected):
    assert is_directory_bucket_name(name) is expected


GENERAL_CASES = [
    ("abc", None),
    ("my.bucket-name.1", None),
    ("a" * 63, None),
    ("1bucket9", None),
    ("ab", "between 3 and 63"),
    ("a" * 64, "between 3 and 63"),
    ("MyBucket", "may contain only"),
    ("my_bucket", "may contain only"),
    ("my bucket", "may contain only"),
    (".bucket", "begin and end"),
    ("bucket-", "begin and end"),
    ("my..bucket", "two adjacent periods"),
    ("192.168.5.4", "IP address"),
    ("xn--bucket", "'xn--'"),
    ("sthree-bucket", "'sthree-'"),
    ("amzn-s3-demo-bucket", "'amzn-s3-demo-'"),
    ("bucket-s3alias", "'-s3alias'"),
    ("bucket--ol-s3", "'--ol-s3'"),
    ("bucket--use1-az4--x-s3", "'--x-s3'"),
    ("bucket.mrap", "'.mrap'"),
]


@pytest.mark.parametrize("name, error", GENERAL_CASES)
def test_general_bucket_names(name, error):
    if error is None:
        validate_general_bucket_name(name)
    else:
        with pytest.raises(InvalidName) as info:
            validate_general_bucket_name(name)
        assert info.value.code == "InvalidBucketName"
        assert error in str(info.value)


KEY_CASES = [
    ("a", None),
    ("dir/sub/file.txt", None),
    ("ünïcödé/日本", None),
    ("k" * 1024, None),
    ("é" * 512, None),  # 1024 bytes exactly
    ("", "InvalidArgument"),
    ("k" * 1025, "KeyTooLongError"),
    ("é" * 513, "KeyTooLongError"),  # 513 chars but 1026 bytes
    ("a\x00b", "InvalidArgument"),
    ("\ud800", "InvalidArgument"),
]


@pytest.mark.parametrize("key, code", KEY_CASES)
def test_object_keys(key, code):
    if code is None:
        validate_object_key(key)
    else:
        with pytest.raises(InvalidName) as info:
            validate_object_key(key)
        assert info.value.code == code


ZONE_CASES = [
    ("use1-az4", True),
    ("usw2-lax1-az1", True),
    ("az1", True),
    ("", False),
    ("USE1-AZ4", False),
    ("use1--az4", False),
    ("-use1", False),
    ("use1-", False),
    ("use1_az4", False),
]


@pytest.mark.parametrize("zone, ok", ZONE_CASES)
def test_zone_ids(zone, ok):
    if ok:
        validate_zone_id(zone)
    else:
        with pytest.raises(InvalidName) as info:
            validate_zone_id(zone)
        assert info.value.code == "InvalidArgument"


IAM_USER_CASES = [
    ("alice", True),
    ("Bob_the+builder=1,2.3@example-x", True),
    ("a" * 64, True),
    ("", False),
    ("a" * 65, False),
    ("has space", False),
    ("slash/name", False),
    ("ünï", False),
    ("colon:name", False),
]


@pytest.mark.parametrize("name, ok", IAM_USER_CASES)
def test_iam_user_names(name, ok):
    if ok:
        validate_iam_user_name(name)
    else:
        with pytest.raises(InvalidName) as info:
            validate_iam_user_name(name)
        assert info.value.code == "ValidationError"


ARN_CASES = [
    (
        bucket_arn("us-east-1", "111122223333", "logs--use1-az4--x-s3"),
        "arn:aws:s3express:us-east-1:111122223333:bucket/logs--use1-az4--x-s3",
    ),
    (bucket_arn("us-east-1", "111122223333", "logs"), "arn:aws:s3:::logs"),
    (
        object_arn("us-east-1", "111122223333", "logs--use1-az4--x-s3", "a/b.txt"),
        "arn:aws:s3express:us-east-1:111122223333:bucket/logs--use1-az4--x-s3/a/b.txt",
    ),
    (object_arn("us-east-1", "111122223333", "logs", "a/b.txt"), "arn:aws:s3:::logs/a/b.txt"),
    (kms_key_arn("eu-west-1", "111122223333", UUID), f"arn:aws:kms:eu-west-1:111122223333:key/{UUID}"),
    (iam_user_arn("111122223333", "alice"), "arn:aws:iam::111122223333:user/alice"),
]


@pytest.mark.parametrize("got, expected", ARN_CASES)
def test_arn_builders(got, expected):
    assert got == expected


KEY_REF_CASES = [
    (UUID, KeyRef(KeyRefKind.KEY_ID, UUID, key_id=UUID)),
    (
        "mrk-1234abcd12ab34cd56ef1234567890ab",
        KeyRef(
            KeyRefKind.KEY_ID,
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            key_id="mrk-1234abcd12ab34cd56ef1234567890ab",
        ),
    ),
    (
        f"arn:aws:kms:us-east-1:111122223333:key/{UUID}",
        KeyRef(
            KeyRefKind.KEY_ARN,
            f"arn:aws:kms:us-east-1:111122223333:key/{UUID}",
            key_id=UUID,
            region="us-east-1",
            account="111122223333",
        ),
    ),
    ("alias/my-key", KeyRef(KeyRefKind.ALIAS_NAME, "alias/my-key", alias="alias/my-key")),
    ("alias/aws/s3", KeyRef(KeyRefKind.ALIAS_NAME, "alias/aws/s3", alias="alias/aws/s3")),
    (
        "arn:aws:kms:us-east-1:111122223333:alias/my_key",
        KeyRef(
            KeyRefKind.ALIAS_ARN,
            "arn:aws:kms:us-east-1:111122223333:alias/my_key",
            alias="alias/my_key",
            region="us-east-1",
            account="111122223333",
        ),
    ),
]


@pytest.mark.parametrize("ref, expected", KEY_REF_CASES)
def test_parse_kms_key_ref(ref, expected):
    assert parse_kms_key_ref(ref) == expected


BAD_KEY_REFS = [
    "",
    "not-a-key",
    UUID.upper(),
    UUID[:-1],
    "alias/",
    "alias/has space",
    "alias/" + "a" * 251,
    f"arn:aws:kms:us-east-1:1111:key/{UUID}",
    f"arn:aws:s3:us-east-1:111122223333:key/{UUID}",
    "arn:aws:kms:us-east-1:111122223333:key/not-a-uuid",
    "arn:aws:kms:us-east-1:111122223333:alias/",
    "arn:aws:kms:us-east-1:111122223333:grant/abc",
]


@pytest.mark.parametrize("ref", BAD_KEY_REFS)
def test_parse_kms_key_ref_rejects_garbage(ref):
    with pytest.raises(InvalidName) as info:
        parse_kms_key_ref(ref)
    assert info.value.code == "InvalidArgument"
