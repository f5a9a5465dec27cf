"""Sans-I/O: combine two CRCs into the CRC of the concatenation, without the data.

``crc(A || B) = shift(crc(A), len(B)) xor crc(B)`` holds for the reflected, all-ones init and
final-xor CRCs S3 uses (CRC32, CRC32C, CRC64NVME), where ``shift`` multiplies by
``x^(8 len(B))`` modulo the polynomial in GF(2) (zlib's ``crc32_combine``, generalised to any
width). Cost: O(log len(B)) polynomial products of ``width`` steps each, microseconds. An
append uses it to keep an object's full-object CRC without re-reading the object.
"""

from __future__ import annotations

import base64

__all__ = ["COMBINABLE", "combine", "combine_b64"]

# reflected polynomials and widths (see proto.checksums)
_POLY = {"CRC32": (0xEDB88320, 32), "CRC32C": (0x82F63B78, 32), "CRC64NVME": (0x9A6C9329AC4BC9B5, 64)}
COMBINABLE = frozenset(_POLY)


def _multmodp(a: int, b: int, poly: int, width: int) -> int:
    m = 1 << (width - 1)
    p = 0
    while m:
        if a & m:
            p ^= b
        m >>= 1
        b = (b >> 1) ^ poly if b & 1 else b >> 1
    return p


def _x8nmodp(n: int, poly: int, width: int) -> int:
    """x^(8 n) modulo the polynomial (reflected)."""
    p = 1 << (width - 1)  # x^0 (reflected: the top bit is the constant term)
    sq = 1 << (width - 1 - 8)  # x^8, squared at each step: x^(8 * 2^k)
    while n:
        if n & 1:
            p = _multmodp(sq, p, poly, width)
        n >>= 1
        if n:
            sq = _multmodp(sq, sq, poly, width)
    return p


def combine(algorithm: str, crc_a: int, crc_b: int, len_b: int) -> int:
    """The CRC of A || B from crc(A), crc(B) and len(B)."""
    poly, width = _POLY[algorithm]
    if len_b <= 0:
        return crc_a
    return _multmodp(_x8nmodp(len_b, poly, width), crc_a, poly, width) ^ crc_b


def combine_b64(algorithm: str, value_a: str, value_b: str, len_b: int) -> str:
    """``combine`` over S3's base64 big-endian checksum values."""
    width = _POLY[algorithm][1] // 8
    a = int.from_bytes(base64.b64decode(value_a), "big")
    b = int.from_bytes(base64.b64decode(value_b), "big")
    return base64.b64encode(combine(algorithm, a, b, len_b).to_bytes(width, "big")).decode()
