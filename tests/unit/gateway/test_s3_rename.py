"""gateway/s3_rename.py: x-amz-rename-source parsing (botocore sends it unencoded)."""

import pytest

from gateway.errors import S3Error
from gateway.s3_rename import parse_rename_source

B = "b--use1-az4--x-s3"


@pytest.mark.parametrize("value,key", [
    (f"{B}/a b+c.txt", "a b+c.txt"),
    (f"{B}/a%20b%2Bc.txt", "a b+c.txt"),
    (f"/{B}/dir/k", "dir/k"),
    (f"{B}%2Fdir%2Fk", "dir/k"),
])
def test_sources(value, key):
    assert parse_rename_source(value, B) == key


@pytest.mark.parametrize("value,code", [
    (None, "InvalidArgument"), ("", "InvalidArgument"), (B, "InvalidArgument"), (f"{B}/", "InvalidArgument"),
    (f"other--use1-az4--x-s3/k", "InvalidRequest"),
])
def test_bad_sources(value, code):
    with pytest.raises(S3Error) as e:
        parse_rename_source(value, B)
    assert e.value.code == code
