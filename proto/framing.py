"""Sans-I/O framing: length-prefixed msgpack frames with a hard size limit.

Theory of operation: a frame is a 4-byte big-endian unsigned length followed by that many bytes
of one msgpack object. ``encode_frame`` refuses to build a frame above ``max_frame_bytes``
(LocalProtocolError: our bug); ``FrameDecoder.feed`` accepts bytes in any split, returns every
complete object, and raises ``FrameTooLarge`` as soon as a header announces more than the limit
(before buffering the payload), or ``RemoteProtocolError`` for a payload that is not exactly one
valid msgpack object. The decoder never holds more than one frame plus one header of input, so a
peer cannot make it buffer without bound. After an error the decoder is unusable: the connection
must be closed.

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
        self._buf += data
        out: list[Any] = []
        while True:
            if self._need is None:
                if len(self._buf) < HEADER.size:
                    return out
                (need,) = HEADER.unpack_from(self._buf)
                if need > self._max:
                    self._broken = True
                    raise FrameTooLarge(
                        f"peer announced a frame of {need} bytes; the limit is {self._max}"
                    )
                if need == 0:
                    self._broken = True
                    raise RemoteProtocolError("empty frame")
                del self._buf[: HEADER.size]
                self._need = need
            if len(self._buf) < self._need:
                return out
            payload = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            self._need = None
            out.append(self._unpack(payload))

    def _unpack(self, payload: bytes) -> Any:
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
