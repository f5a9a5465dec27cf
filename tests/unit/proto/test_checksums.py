"""Tests for proto.checksums."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto import checksums

CHECK = b"123456789"


def _b64(value: int, size: int) -> str:
    return base64.b64encode(value.to_bytes(size, "big")).decode()


def _digest(algorithm: str, data: bytes) -> str:
    c = checksums.new_checksum(algorithm)
    c.update(data)
    return c.b64digest()


def test_crc32_wire_example_from_reference():
    assert _digest("CRC32", b"hello express") == "hdX/xQ=="


def test_crc32c_check_value():
    assert _digest("CRC32C", CHECK) == _b64(0xE3069283, 4)


def test_crc64nvme_check_value():
    assert _digest("CRC64NVME", CHECK) == _b64(0xAE8B14860A799888, 8)


def test_crc32c_known_vectors():
    # RFC 3720 (iSCSI) appendix B.4 test vectors, stored little-endian there.
    assert _digest("crc32c", bytes(32)) == _b64(0x8A9136AA, 4)
    assert _digest("crc32c", b"\xff" * 32) == _b64(0x62A8AB43, 4)
    assert _digest("crc32c", bytes(range(32))) == _b64(0x46DD794E, 4)


@pytest.mark.parametrize("algorithm", ["CRC32C", "CRC64NVME"])
def test_empty_input_is_zero(algorithm):
    # init == xorout == all ones, so the CRC of nothing is 0.
    c = checksums.new_checksum(algorithm)
    assert c.digest() == bytes(len(c.digest()))


@pytest.mark.parametrize(
    ("algorithm", "reference"),
    [
        ("CRC32", lambda d: (zlib.crc32(d) & 0xFFFFFFFF).to_bytes(4, "big")),
        ("SHA1", lambda d: hashlib.sha1(d).digest()),
        ("SHA256", lambda d: hashlib.sha256(d).digest()),
    ],
)
def test_against_stdlib(algorithm, reference):
    data = os.urandom(100_000)
    c = checksums.new_checksum(algorithm)
    for i in range(0, len(data), 777):
        c.update(data[i : i + 777])
    assert c.digest() == reference(data)
    assert c.b64digest() == base64.b64encode(reference(data)).decode()


@settings(max_examples=50, deadline=None)
@given(
    algorithm=st.sampled_from(checksums.ALGORITHMS),
    data=st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
)
def test_incremental_equals_one_shot(algorithm, data, cuts):
    one = checksums.new_checksum(algorithm)
    one.update(data)
    inc = checksums.new_checksum(algorithm)
    prev = 0
    for cut in sorted(c for c in cuts if c <= len(data)) + [len(data)]:
        inc.update(data[prev:cut])
        prev = cut
    assert inc.b64digest() == one.b64digest()


def test_case_insensitive_names_and_canonical_attribute():
    for name in ("crc32", "Crc32C", "crc64nvme", "sha1", " sha256 "):
        assert checksums.new_checksum(name).algorithm == name.strip().upper()


def test_digest_sizes():
    sizes = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}
    for name, size in sizes.items():
        assert len(checksums.new_checksum(name).digest()) == size


def test_digest_does_not_finalise():
    c = checksums.new_checksum("CRC64NVME")
    c.update(b"1234")
    c.digest()
    c.update(b"56789")
    assert c.b64digest() == _b64(0xAE8B14860A799888, 8)


@pytest.mark.parametrize("bad", ["MD5", "crc16", "", "sha-256"])
def test_unknown_algorithm(bad):
    with pytest.raises(ValueError):
        checksums.new_checksum(bad)
    with pytest.raises(ValueError):
        checksums.header_name(bad)


def test_header_names():
    assert checksums.header_name("crc32") == "x-amz-checksum-crc32"
    assert [checksums.header_name(a) for a in checksums.ALGORITHMS] == [
        "x-amz-checksum-crc32",
        "x-amz-checksum-crc32c",
        "x-amz-checksum-crc64nvme",
        "x-amz-checksum-sha1",
        "x-amz-checksum-sha256",
    ]
