"""Sans-I/O framing: length-prefixed msgpack frames with a hard size limit.

Theory of operation: a frame is a 4-byte big-endian unsigned length followed by that many bytes
of one msgpack object. ``encode_frame`` refuses to build a frame above ``max_frame_bytes``
(LocalProtocolError: our bug); ``FrameDecoder.feed`` accepts bytes in any split, returns every
complete object, and raises ``FrameTooLarge`` as soon as a header announces more than the limit
(before buffering the payload), or ``RemoteProtocolError`` for a payload that is not exactly one
valid msgpack object. The decoder never holds more than one frame plus one header of input, so a
peer cannot make it buffer without bound. When nothing is buffered and ``feed`` gets ``bytes``
(a receive that ends on a frame boundary, the usual case), the complete frames are decoded in
place, without copying their payloads, and only an incomplete tail is buffered. After an error
the decoder is unusable: the connection must be closed.

msgpack is packed with ``use_bin_type=True`` so ``bytes`` and ``str`` stay distinct, and
unpacked with ``raw=False`` and ``strict_map_key=False`` (maps keyed by ints are allowed).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from proto.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError

HEADER = struct.Struct(">I")
MiB = 1024 * 1024
DEFAULT_MAX_FRAME_BYTES = 4 * MiB


def encode_frame(obj: Any, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    """Encode one object as a frame.

    Raises:
        LocalProtocolError: the object cannot be packed or its frame exceeds the limit.
    """
    try:
        payload = msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode frame: {exc}") from None
    if len(payload) > max_frame_bytes:
        raise LocalProtocolError(
            f"frame of {len(payload)} bytes exceeds the limit of {max_frame_bytes}"
        )
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder; see the module docstring."""

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes <= 0:
            raise ValueError("max_frame_bytes must be positive")
        self._max = max_frame_bytes
        self._buf = bytearray()
        self._need: int | None = None  # payload length of the frame being read
        self._broken = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Any]:
        """Add received bytes; return the objects of all frames now complete.

        Raises:
            FrameTooLarge: a header announced more than max_frame_bytes.
            RemoteProtocolError: a payload was not one valid msgpack object.
        """
        if self._broken:
            raise RemoteProtocolError("decoder used after a protocol error")
        if self._need is None and not self._buf and isinstance(data, bytes):
            # Nothing buffered (the usual case: a receive ends on a frame boundary): decode the
            # frames in place from ``data``, and buffer only an incomplete tail.
            out, data = self._decode_in_place(data)
            if not data:
                return out
        else:
            out = []
        self._buf += data
        while True:
            if self._need is None:
                if len(self._buf) < HEADER.size:
                    return out
                self._need = self._check_header(self._buf, 0)
                del self._buf[: HEADER.size]
            if len(self._buf) < self._need:
                return out
            payload = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            self._need = None
            out.append(self._unpack(payload))

    def _decode_in_place(self, data: bytes) -> tuple[list[Any], bytes]:
        """The objects of the complete frames at the start of ``data`` (decoded without copying
        their payloads), and the incomplete rest of ``data``."""
        out: list[Any] = []
        pos, end = 0, len(data)
        view = memoryview(data)
        while end - pos >= HEADER.size:
            need = self._check_header(data, pos)
            start = pos + HEADER.size
            if end - start < need:
                break
            out.append(self._unpack(view[start:start + need]))
            pos = start + need
        return out, (data[pos:] if pos else data)

    def _check_header(self, buf: bytes | bytearray, pos: int) -> int:
        (need,) = HEADER.unpack_from(buf, pos)
        if need > self._max:
            self._broken = True
            raise FrameTooLarge(f"peer announced a frame of {need} bytes; the limit is {self._max}")
        if need == 0:
            self._broken = True
            raise RemoteProtocolError("empty frame")
        return need

    def _unpack(self, payload: bytes | memoryview) -> Any:
        try:
            return msgpack.unpackb(
                payload,
                raw=False,
                strict_map_key=False,
                use_list=True,
            )
        except Exception as exc:  # msgpack raises many types for junk input
            self._broken = True
            raise RemoteProtocolError(f"undecodable frame: {type(exc).__name__}") from None
