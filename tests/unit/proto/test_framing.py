"""Framing: round trips in any split, and truncated, oversized and garbage input."""

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from proto.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError
from proto.framing import HEADER, FrameDecoder, encode_frame

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=50) | st.binary(max_size=200),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


@given(st.lists(values, min_size=1, max_size=10), st.data())
@settings(max_examples=200, deadline=None)
def test_round_trip_any_split(objs, data):
    wire = b"".join(encode_frame(o) for o in objs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    dec = FrameDecoder()
    out, prev = [], 0
    for c in cuts + [len(wire)]:
        out += dec.feed(wire[prev:c])
        prev = c
    assert out == objs
    assert dec.buffered == 0


@given(values, st.data())
@settings(max_examples=100, deadline=None)
def test_truncated_frames_yield_nothing(obj, data):
    wire = encode_frame(obj)
    cut = data.draw(st.integers(0, len(wire) - 1))
    assert FrameDecoder().feed(wire[:cut]) == []


def test_oversized_header_rejected_before_buffering():
    dec = FrameDecoder(max_frame_bytes=1000)
    with pytest.raises(FrameTooLarge):
        dec.feed(HEADER.pack(1001))
    with pytest.raises(RemoteProtocolError):
        dec.feed(b"more")  # unusable after an error


def test_encode_refuses_oversized():
    with pytest.raises(LocalProtocolError):
        encode_frame(b"x" * 2000, max_frame_bytes=1000)
    with pytest.raises(LocalProtocolError):
        encode_frame(object())


def test_empty_frame_rejected():
    with pytest.raises(RemoteProtocolError):
        FrameDecoder().feed(HEADER.pack(0))


@pytest.mark.parametrize("payload", [b"\xc1", b"\x92\x01", b"\x01\x02", b"\xdb\xff\xff\xff\xff"])
def test_garbage_payload(payload):
    with pytest.raises(RemoteProtocolError):
        FrameDecoder().feed(HEADER.pack(len(payload)) + payload)


@given(st.binary(min_size=1, max_size=300))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_crash(blob):
    dec = FrameDecoder(max_frame_bytes=256)
    try:
        for obj in dec.feed(blob):
            msgpack.packb(obj)  # whatever came out is a real msgpack value
    except RemoteProtocolError:
        pass


@given(st.lists(values, min_size=1, max_size=6), st.data())
@settings(max_examples=200, deadline=None)
def test_bytes_bytearray_and_memoryview_input_decode_alike(objs, data):
    """feed() decodes whole frames of a bytes input in place and buffers other inputs: both
    paths, switching in any order, give the same objects."""
    wire = b"".join(encode_frame(o) for o in objs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    dec = FrameDecoder()
    out, prev = [], 0
    for c in cuts + [len(wire)]:
        piece = wire[prev:c]
        kind = data.draw(st.sampled_from([bytes, bytearray, memoryview]))
        out += dec.feed(kind(piece))
        prev = c
    assert out == objs
    assert dec.buffered == 0


def test_oversized_or_empty_header_after_whole_frames_in_one_read():
    ok = encode_frame({"a": 1})
    dec = FrameDecoder(max_frame_bytes=1000)
    with pytest.raises(FrameTooLarge):
        dec.feed(ok + HEADER.pack(1001))  # rejected before its payload arrives
    with pytest.raises(RemoteProtocolError):
        dec.feed(ok)
    with pytest.raises(RemoteProtocolError):
        FrameDecoder().feed(ok + HEADER.pack(0) + ok)
    with pytest.raises(RemoteProtocolError):
        FrameDecoder().feed(ok + HEADER.pack(2) + b"\x01\x02")  # two objects in one frame


def test_incomplete_tail_is_all_that_stays_buffered():
    a, b = encode_frame(b"x" * 100), encode_frame(b"y" * 100)
    dec = FrameDecoder()
    assert dec.feed(a + b[:50]) == [b"x" * 100]
    assert dec.buffered <= 50
    assert dec.feed(b[50:]) == [b"y" * 100]
    assert dec.buffered == 0
