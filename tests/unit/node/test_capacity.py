"""node/capacity.py: free space (capacity, disk, reserve), the full threshold shared with the
coordinator's placement, refusals with a clear kind, ENOSPC recognised."""

import errno
from pathlib import Path

import pytest

from coordinator.placement import DEFAULT_MIN_FREE_RATIO, is_full
from node.capacity import FULL_RATIO, SpaceGuard, disk_free, is_no_space
from proto.errors import Unavailable


def guard(used, disk, capacity=1000, reserve=0):
    return SpaceGuard(Path("."), capacity_bytes=capacity, reserve_bytes=reserve, used=lambda: used,
                      node_id="node-7", disk=lambda p: disk)


def test_free_is_bounded_by_capacity_and_by_the_disk_minus_the_reserve():
    assert guard(used=100, disk=10_000).free() == 900
    assert guard(used=100, disk=500, reserve=200).free() == 300
    assert guard(used=2000, disk=10_000).free() == 0
    assert guard(used=0, disk=100, reserve=1000).free() == 0


def test_the_node_and_the_coordinator_agree_on_full():
    assert FULL_RATIO == DEFAULT_MIN_FREE_RATIO
    for used in (0, 500, 980, 989, 990, 991, 1000):
        g = guard(used=used, disk=10**9)
        assert g.full() == is_full(1000, g.free()), used


def test_a_full_node_refuses_with_a_clear_error():
    g = guard(used=995, disk=10**9)
    with pytest.raises(Unavailable) as e:
        g.check()
    assert e.value.kind == "InsufficientStorage"
    assert "node-7" in e.value.message and "out of disk space" in e.value.message
    assert g.refusals == 1
    guard(used=10, disk=10**9).check()  # room: no error


def test_enospc_is_recognised():
    assert is_no_space(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_no_space(OSError(errno.EIO, "I/O error"))
    assert disk_free(Path("/nonexistent/dir")) == 0
