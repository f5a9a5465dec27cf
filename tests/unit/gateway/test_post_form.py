"""gateway.post_form: the streaming multipart/form-data parser (fed in every split, truncated,
oversized) and the POST policy conditions."""

import base64
import json

import pytest
from urllib3 import encode_multipart_formdata

from gateway.post_form import (
    FormEnd,
    FormError,
    FormParser,
    PartData,
    PartEnd,
    PartStart,
    boundary_of,
    check_policy,
    decode_policy,
)

NOW = 1_700_000_000.0  # 2023-11-14


def form(fields, file_bytes=b"hello\r\n--not-the-boundary\r\nworld", filename="a.txt"):
    body, ctype = encode_multipart_formdata([*fields.items(), ("file", (filename, file_bytes, "text/plain"))])
    return body, ctype


def parse(body, ctype, step):
    parser = FormParser(boundary_of(ctype))
    events = []
    for i in range(0, len(body), step):
        events += parser.feed(body[i:i + step])
    events += parser.close()
    return events


def collapse(events):
    out, cur = [], None
    for e in events:
        if isinstance(e, PartStart):
            cur = [e.name, e.filename, e.content_type, b""]
        elif isinstance(e, PartData):
            cur[3] += e.data
        elif isinstance(e, PartEnd):
            out.append(tuple(cur))
        else:
            assert isinstance(e, FormEnd)
            out.append("end")
    return out


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 10_000])
def test_parser_any_split(step):
    body, ctype = form({"key": "uploads/${filename}", "x-amz-meta-a": "b;c=\"d\""})
    assert collapse(parse(body, ctype, step)) == [
        ("key", None, None, b"uploads/${filename}"), ("x-amz-meta-a", None, None, b'b;c="d"'),
        ("file", "a.txt", "text/plain", b"hello\r\n--not-the-boundary\r\nworld"), "end"]


def test_large_file_streams_in_pieces():
    data = bytes(range(256)) * 4096  # 1 MiB
    body, ctype = form({"key": "k"}, data)
    events = parse(body, ctype, 65536)
    pieces = [e.data for e in events if isinstance(e, PartData)]
    assert b"".join(pieces[1:]) == data and max(map(len, pieces)) <= 65536 + 100


def test_malformed_forms():
    body, ctype = form({"key": "k"})
    with pytest.raises(FormError):
        parse(body[:-10], ctype, 100)  # truncated: no closing boundary
    with pytest.raises(FormError):
        boundary_of("application/x-www-form-urlencoded")
    with pytest.raises(FormError):
        boundary_of("multipart/form-data")
    boundary = boundary_of(ctype)
    with pytest.raises(FormError):
        FormParser(boundary).feed(f"--{boundary}\r\n".encode() + b"X-Header: " + b"a" * 10_000)
    with pytest.raises(FormError):
        FormParser(boundary).feed(f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nv".encode())
    many = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=f{i}\r\n\r\nv\r\n".encode()
                    for i in range(100))
    with pytest.raises(FormError):
        FormParser(boundary).feed(many)


def policy(conditions, expiration="2027-01-15T08:00:00Z"):
    return base64.b64encode(json.dumps({"expiration": expiration, "conditions": conditions}).encode()).decode()


def test_policy_conditions():
    doc = decode_policy(policy([{"bucket": "b"}, ["starts-with", "$key", "uploads/"],
                                ["content-length-range", 1, 100], {"x-amz-date": "d"}, ["eq", "$Content-Type", "t"]]),
                        NOW)
    fields = {"bucket": "b", "key": "uploads/x", "x-amz-date": "d", "content-type": "t", "policy": "p",
              "x-amz-signature": "s", "x-ignore-me": "1"}
    assert check_policy(doc, fields) == (1, 100)
    for change in ({"key": "other/x"}, {"bucket": "c"}, {"content-type": "u"}, {"x-amz-meta-extra": "1"}):
        with pytest.raises(FormError) as e:
            check_policy(doc, {**fields, **change})
        assert e.value.code == "AccessDenied"


def test_bad_policies():
    with pytest.raises(FormError) as e:
        decode_policy(policy([], expiration="2020-01-01T00:00:00Z"), NOW)
    assert e.value.code == "AccessDenied" and "expired" in e.value.message
    for bad in ("%%%", base64.b64encode(b"[1]").decode(), base64.b64encode(b'{"expiration": 5}').decode(),
                policy([], expiration="soon")):
        with pytest.raises(FormError) as e:
            decode_policy(bad, NOW)
        assert e.value.code == "InvalidPolicyDocument"
    for cond in (["content-length-range", 5, 1], ["gt", "$key", "x"], [1, 2], {"a": 1, "b": 2}, {"key": 5}):
        with pytest.raises(FormError) as e:
            check_policy(decode_policy(policy([cond]), NOW), {"key": "k"})
        assert e.value.code == "InvalidPolicyDocument", cond
