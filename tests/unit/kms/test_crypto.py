"""Tests for kms/crypto.py: blobs, encryption context, key generation, root-key wrapping."""

from __future__ import annotations

import base64
import collections
import struct
import uuid
from types import MappingProxyType

import pytest

from kms import crypto as kc
from kms.crypto import (
    BLOB_HEADER_SIZE,
    InvalidCiphertext,
    RootKeyError,
    canonical_context,
    decrypt_blob,
    encrypt_blob,
    new_data_key,
    new_master_key,
    parse_blob_header,
    parse_root_key,
    unwrap_with_root,
    wrap_with_root,
)

MASTER = bytes(range(32))
OTHER_MASTER = bytes(range(1, 33))
ROOT = bytes(range(64, 96))
KEY_ID = uuid.UUID("1234abcd-12ab-34cd-56ef-1234567890ab")
ARN = "arn:aws:s3express:us-east-1:111122223333:bucket/demo--use1-az4--x-s3"
CTX = {"aws:s3:arn": ARN}

# Golden vectors: a change to the blob or wrap layout, or to the AAD, breaks these on purpose.
GOLDEN_BLOB = (
    "4f5a4b42011234abcd12ab34cd56ef1234567890ab00000003000102030405060708090a0b"
    "2363a27ae58ea762ad2cf6ffd49b110cefbe0ae5a8437f71fe99e26ef62309d8fb"
)
GOLDEN_WRAP = (
    "4f5a524b0132333435363738393a3b3c3d7f4cf964d2e90926163c80be7a8b28d2e78103"
    "1c2a70c5e3a5d3a925e7cee5e21bbe4b0f25797b5914486be6db9a9d91"
)
WRAP_AAD = b"key:" + KEY_ID.bytes + b"/3"


def blob(plaintext: bytes = b"k" * 32, context: object = CTX, **kw: object) -> bytes:
    args: dict = dict(key_id=KEY_ID, key_version=3)
    args.update(kw)
    master = args.pop("master", MASTER)
    return encrypt_blob(master, plaintext=plaintext, context=context, **args)


# -- blobs: round trips and golden vector -------------------------------------------------


@pytest.mark.parametrize("size", [1, 16, 32, 64, 1024, 4096])
def test_blob_round_trip(size: int) -> None:
    plaintext = bytes(i % 251 for i in range(size))
    sealed = blob(plaintext)
    assert len(sealed) == BLOB_HEADER_SIZE + size + 16
    assert decrypt_blob(MASTER, sealed, CTX) == plaintext


def test_blob_round_trip_without_context() -> None:
    sealed = blob(b"payload", context=None)
    assert decrypt_blob(MASTER, sealed, None) == b"payload"
    assert decrypt_blob(MASTER, sealed, {}) == b"payload"  # None and {} are the same
    assert decrypt_blob(MASTER, sealed) == b"payload"
    assert decrypt_blob(MASTER, blob(b"payload", context={}), None) == b"payload"


def test_golden_blob_vector() -> None:
    sealed = blob(b"data key material", nonce=bytes(range(12)))
    assert sealed.hex() == GOLDEN_BLOB
    assert decrypt_blob(MASTER, bytes.fromhex(GOLDEN_BLOB), CTX) == b"data key material"


def test_blob_header_layout() -> None:
    sealed = bytes.fromhex(GOLDEN_BLOB)
    magic, version, key_id, key_version, nonce = struct.unpack(
        ">4sB16sI12s", sealed[:BLOB_HEADER_SIZE]
    )
    assert BLOB_HEADER_SIZE == 37
    assert (magic, version, key_id, key_version) == (b"OZKB", 1, KEY_ID.bytes, 3)
    assert nonce == bytes(range(12))


def test_fresh_nonce_each_encrypt() -> None:
    assert blob(b"same") != blob(b"same")


def test_parse_blob_header() -> None:
    key_id = uuid.uuid4()
    sealed = blob(key_id=key_id, key_version=2**32 - 1)
    assert parse_blob_header(sealed) == (key_id, 2**32 - 1)
    assert parse_blob_header(bytes.fromhex(GOLDEN_BLOB)) == (KEY_ID, 3)
    for _ in range(2):  # the second time from the key id cache
        assert kc.blob_key_id(sealed) == (str(key_id), 2**32 - 1)


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"OZKB",
        bytes.fromhex(GOLDEN_BLOB)[: BLOB_HEADER_SIZE + 16],  # no room for 1 plaintext byte
        b"XZKB" + bytes.fromhex(GOLDEN_BLOB)[4:],
        b"OZKB\x02" + bytes.fromhex(GOLDEN_BLOB)[5:],
        b"OZKB\x00" + bytes.fromhex(GOLDEN_BLOB)[5:],
        bytes.fromhex(GOLDEN_BLOB) + bytes(kc.MAX_BLOB_SIZE),
        "not bytes",
    ],
)
def test_parse_blob_header_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(InvalidCiphertext):
        parse_blob_header(bad)
    with pytest.raises(InvalidCiphertext):
        kc.blob_key_id(bad)
    with pytest.raises(InvalidCiphertext):
        decrypt_blob(MASTER, bad, CTX)


# -- blobs: encryption context ------------------------------------------------------------


def test_context_is_order_insensitive() -> None:
    ctx_a = {"a": "1", "b": "2", "c": "3"}
    ctx_b = collections.OrderedDict([("c", "3"), ("a", "1"), ("b", "2")])
    sealed = blob(context=ctx_a)
    assert decrypt_blob(MASTER, sealed, ctx_b) == b"k" * 32
    assert decrypt_blob(MASTER, sealed, MappingProxyType(ctx_b)) == b"k" * 32
    assert canonical_context(ctx_a) == canonical_context(ctx_b) == b'{"a":"1","b":"2","c":"3"}'


@pytest.mark.parametrize(
    "wrong",
    [
        None,
        {},
        {"aws:s3:arn": ARN + "x"},  # wrong value
        {"aws:s3:ARN": ARN},  # wrong key (case-sensitive)
        {"aws:s3:arn": ARN, "extra": "1"},  # extra key
        {"aws:s3:arn": ARN.upper()},
    ],
)
def test_wrong_missing_or_extra_context_rejected(wrong: dict | None) -> None:
    with pytest.raises(InvalidCiphertext):
        decrypt_blob(MASTER, blob(), wrong)


def test_context_given_at_decrypt_only_rejected() -> None:
    with pytest.raises(InvalidCiphertext):
        decrypt_blob(MASTER, blob(context=None), CTX)


def test_canonical_context_form() -> None:
    assert canonical_context(None) == b"{}"
    assert canonical_context({}) == b"{}"
    got = canonical_context({"b": "2", "a": "\u00fc", "c": '"q"'})
    assert got == '{"a":"\u00fc","b":"2","c":"\\"q\\""}'.encode()
    assert b"\\u" not in got  # ensure_ascii=False: raw UTF-8, not escapes


def test_context_is_not_ambiguous_across_keys_and_values() -> None:
    assert canonical_context({"a": "b,c"}) != canonical_context({"a": "b", "c": ""})
    sealed = blob(context={"a:b": "c"})
    with pytest.raises(InvalidCiphertext):
        decrypt_blob(MASTER, sealed, {"a": "b:c"})


@pytest.mark.parametrize("bad", [{"a": 1}, {1: "a"}, {"a": b"b"}, {"a": None}, [("a", "b")], "a"])
def test_canonical_context_rejects_non_strings(bad: object) -> None:
    with pytest.raises(TypeError):
        canonical_context(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        blob(context=bad)


def test_canonical_context_rejects_lone_surrogates() -> None:
    with pytest.raises(ValueError):
        canonical_context({"a": "\ud800"})


# -- blobs: tampering and wrong keys ------------------------------------------------------


def test_tamper_every_byte_rejected() -> None:
    sealed = blob(b"secret data key!")
    for i in range(len(sealed)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = bytearray(sealed)
            tampered[i] ^= mask
            with pytest.raises(InvalidCiphertext):
                decrypt_blob(MASTER, bytes(tampered), CTX)


def test_truncated_or_extended_blob_rejected() -> None:
    sealed = blob(b"secret data key!")
    for length in range(len(sealed)):
        with pytest.raises(InvalidCiphertext):
            decrypt_blob(MASTER, sealed[:length], CTX)
    with pytest.raises(InvalidCiphertext):
        decrypt_blob(MASTER, sealed + b"\x00", CTX)


def test_relabelled_key_version_rejected() -> None:
    sealed = bytearray(blob())
    sealed[21:25] = (4).to_bytes(4, "big")
    assert parse_blob_header(bytes(sealed)) == (KEY_ID, 4)
    with pytest.raises(InvalidCiphertext):
        decrypt_blob(MASTER, bytes(sealed), CTX)


def test_other_key_rejected() -> None:
    with pytest.raises(InvalidCiphertext):
        decrypt_blob(OTHER_MASTER, blob(), CTX)
    with pytest.raises(InvalidCiphertext):
        decrypt_blob(new_master_key(), blob(), CTX)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        (dict(plaintext=b""), ValueError),
        (dict(plaintext=bytes(4097)), ValueError),
        (dict(key_version=-1), ValueError),
        (dict(key_version=2**32), ValueError),
        (dict(key_version=True), TypeError),
        (dict(key_id=str(KEY_ID)), TypeError),
        (dict(nonce=bytes(8)), ValueError),
        (dict(master=bytes(16)), ValueError),
    ],
)
def test_encrypt_blob_rejects_bad_arguments(kwargs: dict, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        blob(**kwargs)


def test_decrypt_with_bad_master_key_length_is_caller_error() -> None:
    with pytest.raises(ValueError):
        decrypt_blob(bytes(31), blob(), CTX)


# -- key generation -----------------------------------------------------------------------


def test_new_master_key() -> None:
    a, b = new_master_key(), new_master_key()
    assert len(a) == len(b) == 32 and a != b
    assert new_master_key(rng=lambda n: b"\x07" * n) == b"\x07" * 32


@pytest.mark.parametrize("n", [1, 16, 32, 64, 1024])
def test_new_data_key_sizes(n: int) -> None:
    assert len(new_data_key(n)) == n
    assert new_data_key(n, rng=lambda k: bytes(k)) == bytes(n)


@pytest.mark.parametrize(("n", "exc"), [(0, ValueError), (1025, ValueError), (32.0, TypeError)])
def test_new_data_key_rejects_bad_sizes(n: object, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        new_data_key(n)  # type: ignore[arg-type]


def test_short_rng_output_rejected() -> None:
    with pytest.raises(ValueError):
        new_master_key(rng=lambda n: bytes(n - 1))


def test_data_key_round_trips_through_blob() -> None:
    key = new_data_key()
    assert decrypt_blob(MASTER, blob(key), CTX) == key


# -- root-key wrapping --------------------------------------------------------------------


def test_root_wrap_round_trip_and_golden() -> None:
    wrapped = wrap_with_root(ROOT, MASTER, aad=WRAP_AAD, nonce=bytes(range(50, 62)))
    assert wrapped.hex() == GOLDEN_WRAP
    assert unwrap_with_root(ROOT, bytes.fromhex(GOLDEN_WRAP), aad=WRAP_AAD) == MASTER
    fresh = wrap_with_root(ROOT, MASTER, aad=WRAP_AAD)
    assert fresh != wrapped and MASTER not in fresh
    assert unwrap_with_root(ROOT, fresh, aad=WRAP_AAD) == MASTER


def test_root_unwrap_wrong_root_key() -> None:
    wrapped = wrap_with_root(ROOT, MASTER, aad=WRAP_AAD)
    with pytest.raises(RootKeyError):
        unwrap_with_root(bytes(32), wrapped, aad=WRAP_AAD)


@pytest.mark.parametrize("aad", [b"", b"key:other/3", WRAP_AAD + b"x", WRAP_AAD[:-1]])
def test_root_unwrap_wrong_aad(aad: bytes) -> None:
    wrapped = wrap_with_root(ROOT, MASTER, aad=WRAP_AAD)
    with pytest.raises(RootKeyError):
        unwrap_with_root(ROOT, wrapped, aad=aad)


def test_root_unwrap_tampered_or_truncated() -> None:
    wrapped = wrap_with_root(ROOT, MASTER, aad=b"a")
    for i in range(len(wrapped)):
        tampered = bytearray(wrapped)
        tampered[i] ^= 0x01
        with pytest.raises(RootKeyError):
            unwrap_with_root(ROOT, bytes(tampered), aad=b"a")
    for length in range(len(wrapped)):
        with pytest.raises(RootKeyError):
            unwrap_with_root(ROOT, wrapped[:length], aad=b"a")


def test_root_key_error_is_not_invalid_ciphertext() -> None:
    assert not issubclass(RootKeyError, InvalidCiphertext)


def test_root_wrap_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        wrap_with_root(bytes(16), MASTER, aad=b"")
    with pytest.raises(ValueError):
        wrap_with_root(ROOT, b"", aad=b"")
    with pytest.raises(TypeError):
        wrap_with_root(ROOT, MASTER, aad="text")  # type: ignore[arg-type]


# -- root key parsing ---------------------------------------------------------------------

KEY = bytes(range(200, 232))


@pytest.mark.parametrize(
    "text",
    [
        KEY.hex(),
        KEY.hex().upper(),
        f"  {KEY.hex()}\n",
        KEY.hex()[:32] + "\n" + KEY.hex()[32:],
        KEY.hex().encode(),
        base64.b64encode(KEY).decode(),
        base64.b64encode(KEY).decode() + "\r\n",
        base64.b64encode(KEY),
        base64.b64encode(KEY).decode().rstrip("="),
        base64.urlsafe_b64encode(KEY).decode(),
    ],
)
def test_parse_root_key_accepts(text: str | bytes) -> None:
    assert parse_root_key(text) == KEY


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        KEY.hex()[:-2],  # 31 bytes of hex
        KEY.hex() + "00",  # 33 bytes of hex
        "g" * 64,
        base64.b64encode(KEY[:31]).decode(),
        base64.b64encode(KEY + b"x").decode(),
        base64.b64encode(KEY).decode()[:-2] + "!=",
        base64.b64encode(bytes([0xFB] * 32)).decode().replace("+", "-", 1),  # mixed alphabets
        b"\xff" * 32,  # raw binary is not accepted
    ],
)
def test_parse_root_key_rejects(text: str | bytes) -> None:
    with pytest.raises(ValueError, match="64 hex characters or base64 of 32 bytes"):
        parse_root_key(text)


def test_parse_root_key_error_does_not_echo_secret() -> None:
    secret = "Z" * 63
    with pytest.raises(ValueError) as info:
        parse_root_key(secret)
    assert secret not in str(info.value)


def test_parse_root_key_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        parse_root_key(12345)  # type: ignore[arg-type]
