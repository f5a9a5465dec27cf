"""A large GET opens the node's stream before the response head goes out (gateway/s3_objects.py
``_opened``): a failure at the start becomes an S3 error, not a 200 cut short."""

import pytest

from gateway.s3_objects import _opened
from proto import errors


async def failing_at_start():
    raise errors.InvalidRequest("key disabled", kind="DisabledException")
    yield b""  # pragma: no cover - makes this an async generator


async def chunks(closed: list):
    try:
        for piece in (b"ab", b"cd", b"ef"):
            yield piece
    finally:
        closed.append(True)


async def test_failure_at_open_raises_before_any_byte():
    with pytest.raises(errors.InvalidRequest) as ei:
        await _opened(failing_at_start())
    assert ei.value.kind == "DisabledException"


async def test_all_chunks_in_order_and_closed():
    closed: list = []
    body = await _opened(chunks(closed))
    assert [c async for c in body] == [b"ab", b"cd", b"ef"] and closed == [True]


async def test_empty_stream():
    async def empty():
        return
        yield b""  # pragma: no cover

    assert [c async for c in await _opened(empty())] == []
