"""Pure parts of listings and multipart: tokens, listing parameters, composite checksums, keys."""

import base64
import zlib

import pytest

from gateway.errors import S3Error
from gateway.s3_lists import _listing_params, check_user_key, decode_token, encode_token
from gateway.s3_multipart import composite_checksum, part_key, upload_key


def test_tokens_round_trip_and_reject_junk():
    for marker in ["a", "dir/sub dir/", "ü/+%2F", "x" * 1024]:
        assert decode_token(encode_token(marker)) == marker
    for junk in ["!!!", "", base64.urlsafe_b64encode(b"\xff\xfe").decode()]:
        with pytest.raises(S3Error) as e:
            decode_token(junk)
        assert e.value.code == "InvalidArgument"


@pytest.mark.parametrize("query,code", [
    ({"prefix": "dir"}, "InvalidRequest"), ({"delimiter": "*"}, "InvalidArgument"),
    ({"encoding-type": "base64"}, "InvalidArgument"), ({"max-keys": "-1"}, "InvalidArgument"),
    ({"max-keys": "ten"}, "InvalidArgument"), ({"prefix": "x" * 1025 + "/"}, "InvalidArgument"),
])
def test_directory_listing_rules(query, code):
    with pytest.raises(S3Error) as e:
        _listing_params("b--use1-az4--x-s3", query)
    assert e.value.code == code


def test_general_purpose_listing_takes_any_delimiter_and_caps_max_keys():
    assert _listing_params("plain-bucket", {"prefix": "a", "delimiter": "-", "max-keys": "5000"}) == ("a", "-", None, 1000)


def test_composite_checksum_is_crc_of_part_crcs():
    parts = [b"one", b"two", b"three"]
    values = [base64.b64encode(zlib.crc32(p).to_bytes(4, "big")).decode() for p in parts]
    raw = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)
    assert composite_checksum("CRC32", values) == base64.b64encode(zlib.crc32(raw).to_bytes(4, "big")).decode() + "-3"


def test_reserved_keys():
    for key in (upload_key("u" * 32), part_key("u" * 32, 7)):
        with pytest.raises(S3Error):
            check_user_key(key)
    for bad, code in (("", "InvalidArgument"), ("a\x00b", "InvalidArgument"), ("k" * 1025, "KeyTooLongError")):
        with pytest.raises(S3Error) as e:
            check_user_key(bad)
        assert e.value.code == code
    check_user_key("ok/\x02key")
