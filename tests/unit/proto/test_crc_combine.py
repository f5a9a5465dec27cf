"""proto/crc_combine.py: crc(A||B) from crc(A), crc(B), len(B), against the full computation."""

import random

import pytest

from proto.checksums import new_checksum
from proto.crc_combine import combine_b64


def _v(algo: str, data: bytes) -> str:
    c = new_checksum(algo)
    c.update(data)
    return c.b64digest()


@pytest.mark.parametrize("algo", ["CRC32", "CRC32C", "CRC64NVME"])
@pytest.mark.parametrize("la,lb", [(0, 5), (5, 0), (1, 1), (100, 3), (7, 1000), (3000, 257)])
def test_combine_matches(algo, la, lb):
    rnd = random.Random(la * 7919 + lb)
    a, b = rnd.randbytes(la), rnd.randbytes(lb)
    assert combine_b64(algo, _v(algo, a), _v(algo, b), lb) == _v(algo, a + b)
