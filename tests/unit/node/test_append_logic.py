"""node/append.py and node/runs.py pure parts: offsets and limits, the appended manifest, range plans."""

import pytest

from node.append import appended_manifest, check_append, next_index, owned_runs
from node.runs import Run, part_count, plan, runs_of
from proto.errors import InvalidRequest

OID = b"o" * 16
BASE = {"v": 1, "key": "k", "object_id": OID, "size": 10, "chunks": 1, "chunk_bytes": 4, "key_gen": 1,
        "etag": "e0", "checksum_algorithm": "CRC32", "checksum_value": "AAAAAA==", "last_modified": 1.0,
        "multipart": {"etag": "x-2", "parts": [[5, None], [5, None]]}}


def test_check_append():
    check_append(BASE, 10)
    for bad in (0, 9, 11):
        with pytest.raises(InvalidRequest) as e:
            check_append(BASE, bad)
        assert e.value.kind == "InvalidWriteOffset"
    with pytest.raises(InvalidRequest) as e:
        check_append(dict(BASE, part_count=10000), 10)
    assert e.value.kind == "TooManyParts"
    assert part_count(BASE) == 2  # a multipart object's parts count


def test_appended_manifest():
    run = Run(b"x" * 16, OID, 3, 2, 6, 4, 1)
    m = appended_manifest(BASE, run, etag="e1", checksum_value="BBBBBB==", last_modified=5)
    assert m["size"] == 16 and m["chunks"] == 3 and m["etag"] == "e1" and m["part_count"] == 3
    assert "multipart" not in m and m["checksum_value"] == "BBBBBB=="
    assert runs_of(m) == [Run(OID, OID, 0, 1, 10, 4, 1), run]
    assert next_index(m) == 5 and owned_runs(m) == [b"x" * 16]
    m2 = appended_manifest(m, Run(b"y" * 16, OID, 5, 1, 1, 4, 1), etag="e2", checksum_value=None, last_modified=6)
    assert "checksum_algorithm" not in m2 and "checksum_value" not in m2 and m2["part_count"] == 4


def test_plan():
    runs = [Run(b"a" * 16, OID, 0, 1, 10, 4, 1), Run(b"b" * 16, OID, 3, 1, 0, 4, 1), Run(b"c" * 16, OID, 3, 2, 6, 4, 1)]
    assert plan(runs, 0, 15) == [(0, 0, 9), (2, 0, 5)]
    assert plan(runs, 9, 10) == [(0, 9, 9), (2, 0, 0)]
    assert plan(runs, 12, 13) == [(2, 2, 3)]
    assert plan(runs, 3, 4) == [(0, 3, 4)]
