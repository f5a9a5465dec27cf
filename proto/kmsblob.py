"""The public part of the KMS ciphertext blob format: which key sealed a blob.

The blob format belongs to ``kms/crypto.py`` (documented there); its first 25 bytes are
``b"OZKB" | version u8 (1) | key id (16 raw UUID bytes) | key version u32 big-endian``, in
the clear. Other daemons read them to know which key a blob names without asking the KMS:
the gateway authorizes ``Decrypt`` (``kms:Decrypt`` on that key) before forwarding it, and
the node files each cached bucket key under its KMS key so a revocation drops exactly the
entries of that key. Unauthenticated: only the KMS's decrypt proves the header genuine.
"""

from __future__ import annotations

import uuid

__all__ = ["blob_key"]

_MAGIC = b"OZKB"
_VERSION = 1
_HEADER = 25


def blob_key(blob: bytes) -> tuple[str, int] | None:
    """``(key id, key version)`` from a blob's header, or None if it is not a blob of ours."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < _HEADER:
        return None
    if blob[:4] != _MAGIC or blob[4] != _VERSION:
        return None
    return str(uuid.UUID(bytes=bytes(blob[5:21]))), int.from_bytes(blob[21:25], "big")
