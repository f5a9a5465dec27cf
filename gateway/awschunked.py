"""Sans-I/O incremental decoder for ``Content-Encoding: aws-chunked`` bodies.

Responsibility: strip aws-chunked framing (wire reference sections 5.2-5.3)
from a request body that arrives in arbitrary pieces, hand the payload bytes
on as they arrive, collect the trailers, and - for the signed
``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` variants - verify the chained
chunk signatures and the trailer signature. HTTP ``Transfer-Encoding:
chunked`` must already have been removed by the caller.

Wire grammar::

    body    = *chunk last-chunk trailer* CRLF
    chunk   = hex-size [";chunk-signature=" 64HEX] CRLF data CRLF
    last    = "0" [";chunk-signature=" 64HEX] CRLF
    trailer = name ":" value CRLF        (x-amz-trailer-signature, if any, last)

Theory of operation: a small state machine (size line -> data -> CRLF ->
size line ... -> trailers -> done). Only lines are buffered, and each line
has a hard limit (size lines 256 bytes, all trailers together
``max_trailer_bytes``); chunk data is never buffered - every ``feed`` returns
slices of its own input, so memory stays bounded whatever the chunk size.

Signed streams: chunk *n*'s signature is
``HMAC(kSigning, "AWS4-HMAC-SHA256-PAYLOAD\\n" + amz_date + "\\n" + scope +
"\\n" + sig(n-1) + "\\n" + sha256("") + "\\n" + sha256(chunk n))`` with sig(-1)
the request's header signature; the trailer signature covers the trailer
lines as ``name:value\\n`` (LF, as AWS SDKs sign them) chained from the final
0-chunk signature. Each chunk's signature can only be checked once the chunk
is complete, so payload bytes are emitted *before* they are authenticated:
callers must not commit anything until :attr:`AwsChunkedDecoder.done` is true
(or :meth:`AwsChunkedDecoder.close` returned) without an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["AwsChunkedDecoder", "BodyError", "ChunkSignatureVerifier"]

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_MAX_SIZE_LINE = 256  # "ffffffff;chunk-signature=<64 hex>\r\n" is ~100 bytes
_SIG_PREFIX = b"chunk-signature="
_HEX_SIZE_RE = re.compile(rb"[0-9a-fA-F]{1,16}\Z")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}\Z")
_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+\Z")
_TRAILER_SIGNATURE = "x-amz-trailer-signature"

_SIZE, _DATA, _DATA_CRLF, _TRAILER, _DONE, _FAILED = range(6)


class BodyError(Exception):
    """A malformed, truncated or forged request body.

    Attributes:
        code: S3 error code (``IncompleteBody``, ``InvalidRequest`` or
            ``SignatureDoesNotMatch``).
        message: Human readable explanation.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _mismatch(what: str) -> BodyError:
    return BodyError(
        "SignatureDoesNotMatch",
        f"The {what} signature we calculated does not match the signature you provided.",
    )


class ChunkSignatureVerifier:
    """Checks the chained chunk and trailer signatures of a signed stream."""

    def __init__(self, signing_key: bytes, amz_date: str, scope: str, seed_signature: str) -> None:
        """Start a chain.

        Args:
            signing_key: kSigning of the request (``sigv4.verify`` returns it).
            amz_date: The request's ``x-amz-date``.
            scope: ``date/region/service/aws4_request``.
            seed_signature: The verified signature of the request headers.
        """
        self._key = signing_key
        self._prefix = f"{amz_date}\n{scope}\n"
        self._previous = seed_signature.lower()

    @property
    def previous_signature(self) -> str:
        """The last signature accepted (the seed before any chunk)."""
        return self._previous

    def _check(self, kind: str, tail: str, signature_hex: str, what: str) -> str:
        to_sign = f"{kind}\n{self._prefix}{self._previous}\n{tail}"
        expected = hmac.new(self._key, to_sign.encode("ascii"), hashlib.sha256).hexdigest()
        # Encode before comparing: compare_digest on str rejects non-ASCII
        # with TypeError, and a forged line may carry anything.
        given = signature_hex.lower().encode("utf-8", "replace")
        if not hmac.compare_digest(expected.encode("ascii"), given):
            raise _mismatch(what)
        return expected

    def verify_chunk(self, signature_hex: str, chunk_sha256_hex: str) -> None:
        """Verify one chunk's signature and advance the chain.

        Args:
            signature_hex: The ``chunk-signature`` value.
            chunk_sha256_hex: Hex SHA-256 of the chunk data (of ``b""`` for
                the final 0-chunk).

        Raises:
            BodyError: ``SignatureDoesNotMatch``.
        """
        tail = f"{_EMPTY_SHA256}\n{chunk_sha256_hex}"
        self._previous = self._check("AWS4-HMAC-SHA256-PAYLOAD", tail, signature_hex, "chunk")

    def verify_trailer(self, signature_hex: str, trailer_bytes: bytes) -> None:
        """Verify the ``x-amz-trailer-signature`` (chained from the last chunk).

        Args:
            signature_hex: The trailer signature value.
            trailer_bytes: The trailer lines as ``name:value\\n`` each.

        Raises:
            BodyError: ``SignatureDoesNotMatch``.
        """
        tail = hashlib.sha256(trailer_bytes).hexdigest()
        self._previous = self._check("AWS4-HMAC-SHA256-TRAILER", tail, signature_hex, "trailer")


class AwsChunkedDecoder:
    """Incremental aws-chunked decoder; see the module docstring."""

    def __init__(
        self,
        *,
        max_chunk_bytes: int = 16 * 1024 * 1024,
        max_trailer_bytes: int = 16 * 1024,
        chunk_verifier: ChunkSignatureVerifier | None = None,
    ) -> None:
        """Create a decoder.

        Args:
            max_chunk_bytes: Largest declared chunk size accepted.
            max_trailer_bytes: Budget for all trailer lines incl. CRLFs.
            chunk_verifier: Set for signed streams: every chunk then must
                carry a valid ``chunk-signature``, and trailers (if any) a
                valid ``x-amz-trailer-signature``. Without it, signatures in
                the stream are rejected rather than silently ignored.
        """
        self._max_chunk = max_chunk_bytes
        self._max_trailer = max_trailer_bytes
        self._verifier = chunk_verifier
        self._state = _SIZE
        self._error: BodyError | None = None
        self._line = bytearray()
        self._remaining = 0
        self._crlf_pos = 0
        self._chunk_sig: str | None = None
        self._chunk_hash: hashlib._Hash | None = None
        self._trailers: dict[str, str] = {}
        self._trailer_used = 0
        self._trailer_canonical = bytearray()
        self._trailer_sig: str | None = None
        self._decoded = 0

    @property
    def done(self) -> bool:
        """True once the terminating empty line after the trailers was read."""
        return self._state == _DONE

    @property
    def trailers(self) -> dict[str, str]:
        """Trailers by lower-case name (``x-amz-trailer-signature`` excluded)."""
        return dict(self._trailers)

    @property
    def decoded_bytes(self) -> int:
        """Payload bytes emitted so far (compare with X-Amz-Decoded-Content-Length)."""
        return self._decoded

    def feed(self, data: bytes) -> list[bytes]:
        """Consume the next piece of the encoded body.

        Args:
            data: Any number of bytes, split anywhere.

        Returns:
            Payload pieces decoded from ``data`` (possibly empty).

        Raises:
            BodyError: ``InvalidRequest`` for bad framing, oversize lines or
                chunks, or data after the end; ``SignatureDoesNotMatch`` for a
                missing or wrong signature. The decoder stays failed.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._feed(bytes(data))
        except BodyError as exc:
            self._state, self._error = _FAILED, exc
            raise

    def close(self) -> None:
        """Declare the end of the encoded body.

        Raises:
            BodyError: ``IncompleteBody`` unless the final 0-chunk and the
                trailer terminator were read; the stored error if failed.
        """
        if self._error is not None:
            raise self._error
        if self._state != _DONE:
            self._state = _FAILED
            self._error = BodyError("IncompleteBody", "The request body terminated unexpectedly.")
            raise self._error

    # ------------------------------------------------------------------

    def _feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                n = min(self._remaining, end - pos)
                piece = data[pos : pos + n]
                if self._chunk_hash is not None:
                    self._chunk_hash.update(piece)
                out.append(piece)
                self._decoded += n
                self._remaining -= n
                pos += n
                if self._remaining == 0:
                    self._state, self._crlf_pos = _DATA_CRLF, 0
            elif state == _DATA_CRLF:
                # Checked byte by byte so a CRLF split across feeds works; a
                # mismatch here means the size line lied about the length.
                if data[pos] != b"\r\n"[self._crlf_pos]:
                    raise BodyError("InvalidRequest", "Chunk data is not followed by CRLF.")
                pos += 1
                self._crlf_pos += 1
                if self._crlf_pos == 2:
                    self._finish_chunk()
                    self._state = _SIZE
            elif state == _SIZE:
                line, pos = self._take_line(data, pos, _MAX_SIZE_LINE, "Chunk size")
                if line is not None:
                    self._start_chunk(line)
            elif state == _TRAILER:
                budget = self._max_trailer - self._trailer_used
                line, pos = self._take_line(data, pos, budget, "Trailer")
                if line is not None:
                    self._trailer_used += len(line) + 2
                    self._trailer_line(line)
            else:  # _DONE
                raise BodyError("InvalidRequest", "Unexpected data after the end of the body.")
        return out

    def _take_line(self, data: bytes, pos: int, limit: int, what: str) -> tuple[bytes | None, int]:
        """Accumulate one CRLF-terminated line of at most ``limit`` bytes.

        Returns the line without CRLF (None if incomplete) and the new offset.
        """
        room = limit - len(self._line)
        if room <= 0:
            raise BodyError("InvalidRequest", f"{what} line too long.")
        nl = data.find(b"\n", pos, pos + room)
        if nl < 0:
            stop = min(len(data), pos + room)
            self._line += data[pos:stop]
            if len(self._line) >= limit:
                raise BodyError("InvalidRequest", f"{what} line too long.")
            return None, stop
        self._line += data[pos : nl + 1]
        line = bytes(self._line)
        self._line.clear()
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise BodyError("InvalidRequest", f"{what} line is not CRLF-terminated.")
        return line[:-2], nl + 1

    def _start_chunk(self, line: bytes) -> None:
        size_part, sep, ext = line.partition(b";")
        if not _HEX_SIZE_RE.match(size_part):
            raise BodyError("InvalidRequest", "Invalid aws-chunked chunk size.")
        size = int(size_part, 16)
        if size > self._max_chunk:
            raise BodyError("InvalidRequest", f"Chunk size {size} exceeds the limit.")
        signature: str | None = None
        if sep:
            sig = ext[len(_SIG_PREFIX) :].decode("latin-1")
            if not ext.startswith(_SIG_PREFIX) or not _HEX64_RE.match(sig):
                raise BodyError("InvalidRequest", "Invalid aws-chunked chunk extension.")
            signature = sig
        if self._verifier is None and signature is not None:
            raise BodyError("InvalidRequest", "Chunk signature in an unsigned stream.")
        if self._verifier is not None and signature is None:
            raise BodyError("SignatureDoesNotMatch", "Chunk signature missing in a signed stream.")
        self._chunk_sig = signature
        if size == 0:
            if self._verifier is not None and signature is not None:
                self._verifier.verify_chunk(signature, _EMPTY_SHA256)
            self._state = _TRAILER
            return
        self._chunk_hash = hashlib.sha256() if self._verifier is not None else None
        self._remaining = size
        self._state = _DATA

    def _finish_chunk(self) -> None:
        if self._verifier is not None:
            assert self._chunk_hash is not None and self._chunk_sig is not None
            self._verifier.verify_chunk(self._chunk_sig, self._chunk_hash.hexdigest())
        self._chunk_hash = None
        self._chunk_sig = None

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self._finish_trailers()
            return
        if self._trailer_sig is not None:
            raise BodyError("InvalidRequest", "x-amz-trailer-signature must be the last trailer.")
        raw_name, colon, raw_value = line.partition(b":")
        name = raw_name.decode("latin-1").strip().lower()
        if not colon or not _NAME_RE.match(name):
            raise BodyError("InvalidRequest", "Malformed trailer line.")
        value = raw_value.decode("latin-1").strip()
        if name == _TRAILER_SIGNATURE:
            if self._verifier is None:
                raise BodyError("InvalidRequest", "Trailer signature in an unsigned stream.")
            self._trailer_sig = value
            return
        if name in self._trailers:
            raise BodyError("InvalidRequest", f"Duplicate trailer {name}.")
        self._trailers[name] = value
        # Signed as sent, with LF instead of CRLF (what AWS SDKs hash).
        self._trailer_canonical += line + b"\n"

    def _finish_trailers(self) -> None:
        if self._verifier is not None and (self._trailers or self._trailer_sig is not None):
            if self._trailer_sig is None:
                raise BodyError("SignatureDoesNotMatch", "Trailer signature missing in a signed stream.")
            self._verifier.verify_trailer(self._trailer_sig, bytes(self._trailer_canonical))
        self._state = _DONE
