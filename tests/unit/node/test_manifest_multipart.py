"""The ``multipart`` meta field: validated at the edge, its ETag replaces the MD5."""

import pytest

from node.manifest import finish_manifest, parse_user_fields, start_manifest
from proto.errors import InvalidRequest


def test_multipart_field_sets_the_etag():
    user = parse_user_fields({"multipart": {"etag": "ab" * 16 + "-2", "parts": [[5, "AAAA"], [1, None]],
                                            "upload_id": "u"}})
    start = start_manifest(key="k", user=user, object_id=b"\x00" * 16, key_gen=1, chunk_bytes=1024,
                           last_modified=1.0, sse_algorithm="AES256", kms_key_arn=None)
    m = finish_manifest(start, size=6, etag="md5", chunks=1, checksum_value=None)
    assert m["etag"] == "ab" * 16 + "-2" and m["multipart"]["parts"] == [[5, "AAAA"], [1, None]]
    plain = finish_manifest(start_manifest(key="k", user=parse_user_fields({}), object_id=b"\x00" * 16, key_gen=1,
                                           chunk_bytes=1024, last_modified=1.0, sse_algorithm="AES256",
                                           kms_key_arn=None), size=0, etag="md5", chunks=1, checksum_value=None)
    assert plain["etag"] == "md5"


@pytest.mark.parametrize("bad", [
    "x", {"nope": "x"}, {"etag": 5}, {"etag": "x" * 65}, {"parts": [[1]]}, {"parts": [[-1, None]]},
    {"parts": [[True, None]]}, {"parts": [[1, None]] * 10001}, {"upload_key": "k" * 1025},
])
def test_multipart_field_rejects_junk(bad):
    with pytest.raises(InvalidRequest):
        parse_user_fields({"multipart": bad})
