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


def test_a_real_enospc_makes_the_node_full_until_that_much_space_is_freed():
    state = {"disk": 50_000, "enospc": 0}
    g = SpaceGuard(Path("."), capacity_bytes=1_000_000, reserve_bytes=1000, used=lambda: 10_000, node_id="node-7",
                   disk=lambda p: state["disk"], no_space=lambda: state["enospc"])
    assert g.free() == 49_000 and not g.full()
    state["enospc"] += 1  # the OS said "full" with 50 000 bytes still shown free
    assert g.free() == 0 and g.full() and g.learned_reserve == 49_000
    with pytest.raises(Unavailable) as e:
        g.check()
    assert e.value.kind == "InsufficientStorage" and "node-7" in e.value.message
    state["disk"] = 70_000  # 20 000 bytes freed: the node has room again (above the 1% threshold)
    assert g.free() == 20_000 and not g.full()
    state["disk"], state["enospc"] = 60_000, 2  # full again, now at 60 000 shown free
    assert g.free() == 0 and g.learned_reserve == 59_000


def test_a_handler_that_meets_a_full_disk_answers_insufficient_storage():
    import trio

    from node.capacity import no_space_as_error

    async def full(call):
        raise OSError(errno.ENOSPC, "No space left on device")

    async def broken(call):
        raise OSError(errno.EIO, "I/O error")

    async def fine(call):
        return {"ok": call}

    with pytest.raises(Unavailable) as e:
        trio.run(no_space_as_error(full, "node-7"), None)
    assert e.value.kind == "InsufficientStorage" and "node-7" in e.value.message
    with pytest.raises(OSError):  # other disk errors are not disguised
        trio.run(no_space_as_error(broken, "node-7"), None)
    assert trio.run(no_space_as_error(fine, "node-7"), 1) == {"ok": 1}
