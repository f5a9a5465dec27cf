"""Tests for gateway.awschunked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import zlib

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import awschunked
from gateway.awschunked import AwsChunkedDecoder, BodyError, ChunkSignatureVerifier
from proto import checksums

WIRE_52 = b"d\r\nhello express\r\n0\r\nx-amz-checksum-crc32:hdX/xQ==\r\n\r\n"
MIB = 1024 * 1024

KEY = hashlib.sha256(b"test signing key").digest()
AMZ_DATE = "20261127T010025Z"
SCOPE = "20261127/us-west-2/s3express/aws4_request"
SEED = "f" * 64


def _hmac_hex(to_sign: str) -> str:
    return hmac.new(KEY, to_sign.encode(), hashlib.sha256).hexdigest()


def encode(
    payload: bytes,
    chunk_size: int = MIB,
    trailers: dict[str, str] | None = None,
    *,
    signed: bool = False,
    seed: str = SEED,
) -> bytes:
    """A small reference encoder (botocore never emits the signed variant)."""
    out = bytearray()
    prev = seed
    empty = hashlib.sha256(b"").hexdigest()
    chunks = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    for chunk in chunks:
        ext = ""
        if signed:
            prev = _hmac_hex(
                "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", AMZ_DATE, SCOPE, prev, empty, hashlib.sha256(chunk).hexdigest()])
            )
            ext = ";chunk-signature=" + prev
        out += f"{len(chunk):x}{ext}\r\n".encode()
        if chunk:
            out += chunk + b"\r\n"
    canonical = "".join(f"{k}:{v}\n" for k, v in (trailers or {}).items())
    out += canonical.replace("\n", "\r\n").encode()
    if signed and trailers:
        sig = _hmac_hex(
            "\n".join(["AWS4-HMAC-SHA256-TRAILER", AMZ_DATE, SCOPE, prev, hashlib.sha256(canonical.encode()).hexdigest()])
        )
        out += f"x-amz-trailer-signature:{sig}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def decode(encoded: bytes, pieces: list[int] | None = None, **kwargs) -> tuple[bytes, AwsChunkedDecoder]:
    dec = AwsChunkedDecoder(**kwargs)
    out = bytearray()
    if pieces is None:
        pieces = [len(encoded)]
    pos = 0
    for n in pieces:
        for part in dec.feed(encoded[pos : pos + n]):
            out += part
        pos += n
    assert pos >= len(encoded)
    dec.close()
    return bytes(out), dec


def verifier(seed: str = SEED) -> ChunkSignatureVerifier:
    return ChunkSignatureVerifier(KEY, AMZ_DATE, SCOPE, seed)


def _expect(code: str, fn, *args, **kwargs) -> BodyError:
    with pytest.raises(BodyError) as exc:
        fn(*args, **kwargs)
    assert exc.value.code == code, exc.value.message
    return exc.value


def _feed_all(encoded: bytes, step: int = 0, **kwargs) -> AwsChunkedDecoder:
    dec = AwsChunkedDecoder(**kwargs)
    step = step or len(encoded) or 1
    for i in range(0, len(encoded), step):
        dec.feed(encoded[i : i + step])
    dec.close()
    return dec


# --------------------------------------------------------------------------
# happy paths


def test_reference_wire_bytes_whole():
    payload, dec = decode(WIRE_52)
    assert payload == b"hello express"
    assert dec.done and dec.trailers == {"x-amz-checksum-crc32": "hdX/xQ=="}
    assert dec.decoded_bytes == 13
    crc = checksums.new_checksum("crc32")
    crc.update(payload)
    assert crc.b64digest() == dec.trailers["x-amz-checksum-crc32"]


def test_reference_wire_bytes_one_at_a_time():
    payload, dec = decode(WIRE_52, [1] * len(WIRE_52))
    assert payload == b"hello express" and dec.trailers == {"x-amz-checksum-crc32": "hdX/xQ=="}


def test_encoder_reproduces_reference_bytes():
    assert encode(b"hello express", trailers={"x-amz-checksum-crc32": "hdX/xQ=="}) == WIRE_52


def test_empty_body_and_no_trailers():
    payload, dec = decode(b"0\r\n\r\n")
    assert payload == b"" and dec.trailers == {} and dec.done


def test_multi_chunk_mib_body_in_http_sized_pieces():
    payload = os.urandom(3 * MIB + 0x700)
    encoded = encode(payload, trailers={"x-amz-checksum-crc32": "x"})
    assert encoded.startswith(b"100000\r\n")
    dec = AwsChunkedDecoder()
    out = bytearray()
    step = 128 * 1024
    for i in range(0, len(encoded), step):
        pieces = dec.feed(encoded[i : i + step])
        assert all(len(p) <= step for p in pieces)
        for p in pieces:
            out += p
        assert len(dec._line) <= 256  # only a line is ever buffered
    dec.close()
    assert bytes(out) == payload and dec.decoded_bytes == len(payload)


def test_partial_chunk_is_streamed_immediately():
    dec = AwsChunkedDecoder()
    head = b"100000\r\n" + b"a" * 1000
    assert dec.feed(head) == [b"a" * 1000]
    assert dec.feed(b"b" * 5) == [b"b" * 5]
    assert not dec.done


def test_accepts_bytearray_and_memoryview():
    dec = AwsChunkedDecoder()
    assert b"".join(dec.feed(bytearray(WIRE_52[:10])) + dec.feed(memoryview(WIRE_52)[10:])) == b"hello express"
    dec.close()


def test_uppercase_hex_and_leading_zeros():
    payload, _ = decode(b"000A\r\n0123456789\r\n0\r\n\r\n")
    assert payload == b"0123456789"


def test_trailer_names_lowercased_and_values_trimmed():
    _, dec = decode(b"0\r\nX-Amz-Checksum-SHA256: abc= \r\nx-amz-checksum-crc32:q==\r\n\r\n")
    assert dec.trailers == {"x-amz-checksum-sha256": "abc=", "x-amz-checksum-crc32": "q=="}


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=3000),
    chunk_size=st.integers(min_value=1, max_value=700),
    crc=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
    signed=st.booleans(),
)
def test_property_random_chunking_round_trip(payload, chunk_size, crc, cuts, signed):
    trailers = {}
    if crc:
        trailers["x-amz-checksum-crc32"] = base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
    encoded = encode(payload, chunk_size, trailers, signed=signed)
    bounds = sorted({c for c in cuts if c < len(encoded)} | {0, len(encoded)})
    pieces = [b - a for a, b in zip(bounds, bounds[1:])]
    out, dec = decode(encoded, pieces, chunk_verifier=verifier() if signed else None)
    assert out == payload and dec.trailers == trailers


# --------------------------------------------------------------------------
# truncation and malformed framing


@pytest.mark.parametrize(
    "encoded",
    [WIRE_52, encode(b"abcdefghijk", 4, {"x-amz-checksum-crc32": "AAAAAA=="}), encode(b"xyz" * 10, 7, signed=True)],
)
def test_truncation_at_every_position(encoded):
    signed = b"chunk-signature" in encoded
    full, _ = decode(encoded, chunk_verifier=verifier() if signed else None)
    for cut in range(len(encoded)):
        dec = AwsChunkedDecoder(chunk_verifier=verifier() if signed else None)
        got = b"".join(dec.feed(encoded[:cut]))
        assert full.startswith(got)  # never wrong data, only less of it
        assert not dec.done
        _expect("IncompleteBody", dec.close)
        _expect("IncompleteBody", dec.close)  # sticky


@pytest.mark.parametrize(
    "encoded",
    [
        b"zz\r\n",
        b"0x10\r\n",
        b" d\r\n",
        b"d \r\n",
        b"-1\r\n",
        b"+d\r\n",
        b"1_0\r\n",
        b"\r\n",
        b";chunk-signature=" + b"a" * 64 + b"\r\n",
        b"d;foo=bar\r\n",
        b"d;chunk-signature=abc\r\n",
        b"d\n",
        b"d\rx\r\n",
        b"\xff\r\n",
        b"1" * 17 + b"\r\n",
        b"3\r\nhello express\r\n0\r\n\r\n",  # size shorter than the data
        b"f\r\nhello express\r\n0\r\n\r\n",  # size longer than the data
        b"d\r\nhello express\n0\r\n\r\n",
        b"0\r\nno-colon-here\r\n\r\n",
        b"0\r\n:empty-name\r\n\r\n",
        b"0\r\nbad name:v\r\n\r\n",
        b"0\r\na:1\r\na:2\r\n\r\n",
        b"0\r\nx-amz-trailer-signature:" + b"a" * 64 + b"\r\n\r\n",  # trailer signature, unsigned stream
        b"d;chunk-signature=" + b"a" * 64 + b"\r\nhello express\r\n",  # chunk signature, unsigned stream
        WIRE_52 + b"x",
        WIRE_52 + b"0\r\n\r\n",
    ],
)
@pytest.mark.parametrize("step", [0, 1])
def test_malformed_framing(encoded, step):
    _expect("InvalidRequest", _feed_all, encoded, step)


def test_oversized_size_line():
    for step in (0, 1, 7):
        _expect("InvalidRequest", _feed_all, b"0" * 300 + b"1\r\n", step)
    # Without a newline in sight the decoder must not keep buffering.
    dec = AwsChunkedDecoder()
    with pytest.raises(BodyError):
        for _ in range(100):
            dec.feed(b"0" * 64)


def test_oversized_chunk():
    _expect("InvalidRequest", _feed_all, b"1000001\r\n", max_chunk_bytes=16 * MIB)
    _expect("InvalidRequest", _feed_all, b"401\r\n", max_chunk_bytes=1024)
    out, _ = decode(encode(b"a" * 1024, 1024), max_chunk_bytes=1024)
    assert out == b"a" * 1024
    _expect("InvalidRequest", _feed_all, b"ffffffffffffffff\r\n")


def test_oversized_trailers():
    trailers = {f"x-amz-meta-{i}": "v" * 50 for i in range(20)}
    encoded = encode(b"abc", trailers=trailers)
    trailer_len = len(encoded) - len(encode(b"abc"))
    for step in (0, 1):
        _expect("InvalidRequest", _feed_all, encoded, step, max_trailer_bytes=trailer_len)
    _, dec = decode(encoded, max_trailer_bytes=trailer_len + 2)  # + the final empty line
    assert dec.trailers == trailers


def test_error_is_sticky():
    dec = AwsChunkedDecoder()
    _expect("InvalidRequest", dec.feed, b"zz\r\n")
    _expect("InvalidRequest", dec.feed, b"0\r\n\r\n")
    _expect("InvalidRequest", dec.close)


# --------------------------------------------------------------------------
# signed streams


def test_signed_round_trip_with_and_without_trailer():
    payload = os.urandom(200_000)
    for trailers in ({}, {"x-amz-checksum-crc32c": "sOO8/Q=="}):
        encoded = encode(payload, 64 * 1024, trailers, signed=True)
        out, dec = decode(encoded, [1000] * (len(encoded) // 1000 + 1), chunk_verifier=verifier())
        assert out == payload and dec.trailers == trailers


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


def test_signed_tampered_data_rejected():
    encoded = encode(b"0123456789" * 100, 300, signed=True)
    at = encoded.index(b"\r\n") + 2 + 150
    _expect("SignatureDoesNotMatch", _feed_all, _flip(encoded, at), chunk_verifier=verifier())


def test_signed_wrong_seed_or_key_rejected():
    encoded = encode(b"abc", signed=True)
    _expect("SignatureDoesNotMatch", _feed_all, encoded, chunk_verifier=verifier("e" * 64))
    wrong_key = ChunkSignatureVerifier(b"k" * 32, AMZ_DATE, SCOPE, SEED)
    _expect("SignatureDoesNotMatch", _feed_all, encoded, chunk_verifier=wrong_key)


def test_signed_reordered_or_dropped_chunks_rejected():
    encoded = encode(b"aaaabbbbcccc", 4, signed=True)
    records = encoded.split(b"\r\n")
    chunks = [records[i] + b"\r\n" + records[i + 1] + b"\r\n" for i in (0, 2, 4)]
    tail = encoded[sum(len(c) for c in chunks) :]
    swapped = chunks[1] + chunks[0] + chunks[2] + tail
    dropped = chunks[0] + chunks[2] + tail
    for bad in (swapped, dropped):
        _expect("SignatureDoesNotMatch", _feed_all, bad, chunk_verifier=verifier())


def test_signed_final_chunk_signature_checked():
    encoded = encode(b"abc", signed=True)
    last = encoded.rindex(b"0;chunk-signature=") + len(b"0;chunk-signature=")
    _expect("SignatureDoesNotMatch", _feed_all, encoded[:last] + b"0" * 64 + encoded[last + 64 :], chunk_verifier=verifier())


def test_signed_trailer_tampered_missing_or_misplaced():
    trailers = {"x-amz-checksum-crc32": "hdX/xQ=="}
    encoded = encode(b"hello express", trailers=trailers, signed=True)
    _expect(
        "SignatureDoesNotMatch",
        _feed_all,
        encoded.replace(b"hdX/xQ==", b"AAAAAA=="),
        chunk_verifier=verifier(),
    )
    no_sig = encoded[: encoded.index(b"x-amz-trailer-signature")] + b"\r\n"
    _expect("SignatureDoesNotMatch", _feed_all, no_sig, chunk_verifier=verifier())
    extra_after = encoded[:-2] + b"x-amz-meta-x:1\r\n\r\n"
    _expect("InvalidRequest", _feed_all, extra_after, chunk_verifier=verifier())


def test_signed_decoder_rejects_unsigned_stream():
    _expect("SignatureDoesNotMatch", _feed_all, WIRE_52, chunk_verifier=verifier())


def test_verifier_chain_matches_aws_documented_example():
    # "Signature Calculations ... Transferring Payload in Multiple Chunks"
    # (AWS S3 API docs): 64 KiB + 1 KiB of 'a', seed from the header example.
    key = hmac.new(b"AWS4wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", b"20130524", hashlib.sha256).digest()
    for part in ("us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    sigs = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ]
    body = (
        f"10000;chunk-signature={sigs[0]}\r\n".encode() + b"a" * 65536 + b"\r\n"
        + f"400;chunk-signature={sigs[1]}\r\n".encode() + b"a" * 1024 + b"\r\n"
        + f"0;chunk-signature={sigs[2]}\r\n\r\n".encode()
    )
    v = ChunkSignatureVerifier(key, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", seed)
    out, dec = decode(body, [4096] * 17, chunk_verifier=v)
    assert out == b"a" * 66560 and dec.done
    assert v.previous_signature == sigs[2]


def test_verifier_direct_api():
    v = verifier()
    chunk = hashlib.sha256(b"data").hexdigest()
    good = _hmac_hex("\n".join(["AWS4-HMAC-SHA256-PAYLOAD", AMZ_DATE, SCOPE, SEED, hashlib.sha256(b"").hexdigest(), chunk]))
    _expect("SignatureDoesNotMatch", v.verify_chunk, "0" * 64, chunk)
    assert v.previous_signature == SEED  # a failed check does not advance the chain
    v.verify_chunk(good.upper(), chunk)
    assert v.previous_signature == good
    _expect("SignatureDoesNotMatch", v.verify_trailer, "ü" * 64, b"a:b\n")


# --------------------------------------------------------------------------
# real botocore aws-chunked body (HTTPS PutObject, section 5.2)


class _FakeRaw:
    def stream(self, amt=65536, **_kw):
        return iter(())

    def read(self, amt=None, **_kw):
        return b""


@pytest.mark.parametrize("size", [13, 70000, 2 * MIB + 0x700])
def test_decodes_real_botocore_streaming_put(monkeypatch, tmp_path, size):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "c"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "k"))
    monkeypatch.delenv("AWS_REQUEST_CHECKSUM_CALCULATION", raising=False)
    captured = {}

    def hook(request, **_kwargs):
        body = request.body
        captured["headers"] = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        captured["body"] = body.read() if hasattr(body, "read") else body
        return AWSResponse(request.url, 200, {}, _FakeRaw())

    session = botocore.session.Session()
    session.set_credentials("AKIDEXAMPLE", "secret")
    session.register("before-send", hook)
    client = session.create_client(
        "s3",
        region_name="us-west-2",
        endpoint_url="https://127.0.0.1:18443",
        config=Config(s3={"disable_s3_express_session_auth": True}),
    )
    payload = os.urandom(size)
    client.put_object(Bucket="mybucket--usw2-az1--x-s3", Key="k1.txt", Body=io.BytesIO(payload))
    headers = captured["headers"]
    assert headers["content-encoding"] == "aws-chunked"
    assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    out, dec = decode(captured["body"], [128 * 1024] * (len(captured["body"]) // (128 * 1024) + 1))
    assert out == payload and int(headers["x-amz-decoded-content-length"]) == dec.decoded_bytes
    crc = checksums.new_checksum("CRC32")
    crc.update(out)
    assert dec.trailers == {"x-amz-checksum-crc32": crc.b64digest()}


def test_module_exports():
    assert set(awschunked.__all__) == {"AwsChunkedDecoder", "BodyError", "ChunkSignatureVerifier"}
    err = BodyError("IncompleteBody", "short")
    assert (err.code, err.message) == ("IncompleteBody", "short")
