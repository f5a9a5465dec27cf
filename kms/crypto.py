"""KMS envelope crypto: key generation, ciphertext blobs, and root-key wrapping at rest.

Responsibility
--------------
Every cryptographic operation the KMS daemon performs, as pure functions over bytes: make
master keys and data keys, seal and open the ciphertext blobs that Encrypt /
GenerateDataKey / Decrypt / ReEncrypt exchange with callers, and wrap master key material
under the operator's root key before the keystore writes it to disk. Sans-I/O: no files,
sockets, clocks or loggers; randomness and nonces come in as arguments (defaulting to the
OS CSPRNG via ``secrets``). Together with ``node/chunk_codec.py`` it is the only module
allowed to import ``cryptography``. Errors never carry key material or plaintext.

Theory of operation
-------------------
Ciphertext blob (``encrypt_blob`` / ``decrypt_blob``), all integers big-endian::

    offset size field
         0    4 magic        b"OZKB"
         4    1 version      u8, BLOB_VERSION (= 1)
         5   16 key id      the CMK's UUID, 16 raw bytes (uuid.UUID.bytes)
        21    4 key version  u32, which version of the CMK's material sealed it
        25   12 nonce        fresh random AES-GCM nonce
        37    n ciphertext   AES-256-GCM(master key material, nonce, plaintext, aad) || tag,
                             n = len(plaintext) + 16, plaintext 1..4096 bytes

``aad = header (bytes 0..36) || canonical_context(context)``. The header is fixed-size, so
the concatenation is unambiguous. Because the key id and version are in the clear, the
daemon calls ``parse_blob_header`` to pick the right CMK and version (old versions stay
available for decrypt after rotation), and because they are also in the AAD, a blob cannot
be relabelled to another key or version. Any failure while opening (bad magic, version or
length, tampering, wrong key, wrong or missing or extra encryption context) is a single
``InvalidCiphertext``, as AWS reports ``InvalidCiphertextException`` without detail.

Encryption context canonical form (``canonical_context``): JSON with sorted keys,
separators ``(",", ":")``, ``ensure_ascii=False``, UTF-8. ``None`` and ``{}`` both give
``b"{}"``. Matching is exact and order-insensitive, as in AWS KMS.

Root-key wrapping (``wrap_with_root`` / ``unwrap_with_root``) of master key material at
rest::

    offset size field
         0    4 magic       b"OZRK"
         4    1 version     u8, ROOT_WRAP_VERSION (= 1)
         5   12 nonce       fresh random AES-GCM nonce
        17    n ciphertext  AES-256-GCM(root key, nonce, key material, b"OZRK\\x01" || aad)

The caller's ``aad`` should name what is wrapped (e.g. key id and version) so that wrapped
records cannot be swapped between keystore entries. Failures raise ``RootKeyError``: a
different type from ``InvalidCiphertext`` because it means the operator's root key or the
keystore is wrong, not that a client sent a bad blob.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import secrets
import struct
import uuid
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "BLOB_HEADER_SIZE", "BLOB_MAGIC", "BLOB_VERSION", "KEY_SIZE", "MAX_BLOB_SIZE", "MAX_PLAINTEXT",
    "InvalidCiphertext", "RootKeyError", "blob_key_id", "canonical_context", "decrypt_blob", "encrypt_blob",
    "new_data_key", "new_master_key", "parse_blob_header", "parse_root_key", "unwrap_with_root",
    "wrap_with_root",
]  # fmt: skip

Rng = Callable[[int], bytes]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_KEY_VERSION = 2**32 - 1

BLOB_MAGIC = b"OZKB"
BLOB_VERSION = 1
_BLOB_HEADER = struct.Struct(">4sB16sI12s")
BLOB_HEADER_SIZE = _BLOB_HEADER.size  # 37
MIN_PLAINTEXT = 1
MAX_PLAINTEXT = 4096  # AWS Encrypt's limit
MIN_BLOB_SIZE = BLOB_HEADER_SIZE + MIN_PLAINTEXT + TAG_SIZE
MAX_BLOB_SIZE = BLOB_HEADER_SIZE + MAX_PLAINTEXT + TAG_SIZE

MIN_DATA_KEY_BYTES = 1
MAX_DATA_KEY_BYTES = 1024  # AWS GenerateDataKey NumberOfBytes range

ROOT_MAGIC = b"OZRK"
ROOT_WRAP_VERSION = 1
_ROOT_PREFIX = ROOT_MAGIC + bytes([ROOT_WRAP_VERSION])
_ROOT_HEADER_SIZE = len(_ROOT_PREFIX) + NONCE_SIZE
MAX_WRAPPED_MATERIAL = 64 * 1024


class InvalidCiphertext(Exception):
    """A ciphertext blob cannot be opened (AWS ``InvalidCiphertextException``).

    Deliberately uninformative: malformed, tampered, wrong key, wrong context all look alike.
    """


class RootKeyError(Exception):
    """Wrapped master key material cannot be unwrapped: wrong root key, wrong aad, or a
    damaged keystore record."""


# -- key generation -----------------------------------------------------------------------


def new_master_key(rng: Rng = secrets.token_bytes) -> bytes:
    """Generate the material for a new CMK version.

    Args:
        rng: callable returning n random bytes (default: the OS CSPRNG).

    Returns:
        32 random bytes (an AES-256 key).

    Raises:
        ValueError: rng returned the wrong number of bytes.
    """
    return _draw(rng, KEY_SIZE)


def new_data_key(number_of_bytes: int = 32, rng: Rng = secrets.token_bytes) -> bytes:
    """Generate a data key for GenerateDataKey / GenerateDataKeyWithoutPlaintext.

    Args:
        number_of_bytes: key length, 1..1024 (AWS NumberOfBytes range); 32 = AES_256.
        rng: callable returning n random bytes (default: the OS CSPRNG).

    Returns:
        number_of_bytes random bytes.

    Raises:
        ValueError: number_of_bytes is out of range, or rng returned the wrong length.
        TypeError: number_of_bytes is not an int.
    """
    if isinstance(number_of_bytes, bool) or not isinstance(number_of_bytes, int):
        raise TypeError("number_of_bytes must be an int")
    if not MIN_DATA_KEY_BYTES <= number_of_bytes <= MAX_DATA_KEY_BYTES:
        raise ValueError(f"number_of_bytes must be 1..{MAX_DATA_KEY_BYTES}, got {number_of_bytes}")
    return _draw(rng, number_of_bytes)


# -- encryption context -------------------------------------------------------------------


def canonical_context(ctx: Mapping[str, str] | None) -> bytes:
    """Encode an encryption context into its canonical AAD bytes.

    Args:
        ctx: string-to-string mapping, or None (same as empty).

    Returns:
        UTF-8 JSON with sorted keys and no whitespace, e.g. ``b'{"a":"1","b":"2"}'``.

    Raises:
        TypeError: ctx is not a mapping, or a key or value is not a str.
        ValueError: a key or value cannot be encoded as UTF-8 (lone surrogates).
    """
    if ctx is None:
        return b"{}"
    if type(ctx) is dict and len(ctx) <= 8:
        items = tuple(ctx.items())
        try:  # small contexts only, so the cache stays small (<= 1024 entries of <= 1 KiB)
            if sum(len(k) + len(v) for k, v in items) <= 1024:
                return _canonical_cached(items)
        except TypeError:  # not strings (refused below)
            pass
    return _canonical(ctx)


# json.dumps builds a new encoder per call when given options: keep one (it is stateless)
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


@functools.lru_cache(maxsize=1024)
def _canonical_cached(items: tuple[tuple[object, object], ...]) -> bytes:
    # the few contexts a deployment uses (bucket ARNs) repeat: keyed by the exact items, so
    # the answer (or the error) is the one _canonical gives
    return _canonical(dict(items))


def _canonical(ctx: Mapping[str, str]) -> bytes:
    if not isinstance(ctx, Mapping):
        raise TypeError("encryption context must be a mapping of str to str")
    items: dict[str, str] = {}
    for key, value in ctx.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("encryption context keys and values must be str")
        items[key] = value
    text = _CANONICAL_JSON(items)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("encryption context is not valid Unicode (lone surrogate)") from None


# -- ciphertext blobs ---------------------------------------------------------------------


def encrypt_blob(
    master_key: bytes,
    *,
    key_id: uuid.UUID,
    key_version: int,
    plaintext: bytes,
    context: Mapping[str, str] | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """Seal plaintext (a data key or an Encrypt payload) under one CMK version.

    Args:
        master_key: the 32-byte material of CMK ``key_id`` version ``key_version``.
        key_id: the CMK's id, recorded in the blob.
        key_version: the material version, 0 <= key_version < 2**32, recorded in the blob.
        plaintext: 1..4096 bytes.
        context: encryption context, bound as AAD; must be repeated exactly to decrypt.
        nonce: 12-byte nonce for tests; None (the only safe choice otherwise) draws one.

    Returns:
        The ciphertext blob (BLOB_HEADER_SIZE + len(plaintext) + 16 bytes).

    Raises:
        ValueError: bad key, version, nonce or plaintext length; bad context encoding.
        TypeError: wrong argument types, including a non-string context.
    """
    _check_bytes("master_key", master_key, KEY_SIZE)
    if not isinstance(key_id, uuid.UUID):
        raise TypeError("key_id must be a uuid.UUID")
    if isinstance(key_version, bool) or not isinstance(key_version, int):
        raise TypeError("key_version must be an int")
    if not 0 <= key_version <= MAX_KEY_VERSION:
        raise ValueError(f"key_version must be 0..{MAX_KEY_VERSION}")
    _check_bytes("plaintext", plaintext)
    if not MIN_PLAINTEXT <= len(plaintext) <= MAX_PLAINTEXT:
        raise ValueError(f"plaintext must be {MIN_PLAINTEXT}..{MAX_PLAINTEXT} bytes")
    aad_context = canonical_context(context)
    if nonce is None:
        nonce = secrets.token_bytes(NONCE_SIZE)
    _check_bytes("nonce", nonce, NONCE_SIZE)
    header = _BLOB_HEADER.pack(BLOB_MAGIC, BLOB_VERSION, key_id.bytes, key_version, bytes(nonce))
    aad = header + aad_context
    return header + AESGCM(bytes(master_key)).encrypt(bytes(nonce), bytes(plaintext), aad)


def parse_blob_header(blob: bytes) -> tuple[uuid.UUID, int]:
    """Read which CMK and version sealed a blob, without decrypting it.

    The result is unauthenticated until ``decrypt_blob`` succeeds; use it only to look up
    the key (and to report the key id, as AWS Decrypt does, after success).

    Args:
        blob: a ciphertext blob as produced by ``encrypt_blob``.

    Returns:
        (key_id, key_version).

    Raises:
        InvalidCiphertext: not bytes, wrong length, bad magic or unknown version.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise InvalidCiphertext("ciphertext blob must be bytes")
    if not MIN_BLOB_SIZE <= len(blob) <= MAX_BLOB_SIZE:
        raise InvalidCiphertext("ciphertext blob has an invalid length")
    magic, version, key_id, key_version, _nonce = _BLOB_HEADER.unpack_from(blob, 0)
    if magic != BLOB_MAGIC:
        raise InvalidCiphertext("not an onezone ciphertext blob")
    if version != BLOB_VERSION:
        raise InvalidCiphertext("unsupported ciphertext blob version")
    return uuid.UUID(bytes=key_id), key_version


def blob_key_id(blob: bytes) -> tuple[str, int]:
    """``parse_blob_header`` with the key id as its string form (what the keystore is keyed
    by); the id's text is cached, as the same few keys open most blobs.

    Raises:
        InvalidCiphertext: as ``parse_blob_header``.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise InvalidCiphertext("ciphertext blob must be bytes")
    if not MIN_BLOB_SIZE <= len(blob) <= MAX_BLOB_SIZE:
        raise InvalidCiphertext("ciphertext blob has an invalid length")
    magic, version, key_id, key_version, _nonce = _BLOB_HEADER.unpack_from(blob, 0)
    if magic != BLOB_MAGIC:
        raise InvalidCiphertext("not an onezone ciphertext blob")
    if version != BLOB_VERSION:
        raise InvalidCiphertext("unsupported ciphertext blob version")
    return _key_id_text(key_id), key_version


@functools.lru_cache(maxsize=4096)
def _key_id_text(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw))


def decrypt_blob(master_key: bytes, blob: bytes, context: Mapping[str, str] | None = None) -> bytes:
    """Open a ciphertext blob with the material of the CMK version named in its header.

    Args:
        master_key: 32-byte material of the key and version ``parse_blob_header`` returned.
        blob: the ciphertext blob.
        context: the encryption context given at encryption time (None == {}).

    Returns:
        The plaintext.

    Raises:
        InvalidCiphertext: malformed or tampered blob, wrong key, or context mismatch.
        ValueError: master_key is not 32 bytes; context cannot be encoded.
        TypeError: context is not a str-to-str mapping.
    """
    _check_bytes("master_key", master_key, KEY_SIZE)
    aad_context = canonical_context(context)
    parse_blob_header(blob)
    blob = bytes(blob)
    header, sealed = blob[:BLOB_HEADER_SIZE], blob[BLOB_HEADER_SIZE:]
    nonce = header[-NONCE_SIZE:]
    try:
        return AESGCM(bytes(master_key)).decrypt(nonce, sealed, header + aad_context)
    except InvalidTag:
        raise InvalidCiphertext("ciphertext blob failed authentication") from None


# -- root-key wrapping --------------------------------------------------------------------


def wrap_with_root(
    root_key: bytes, key_material: bytes, *, aad: bytes, nonce: bytes | None = None
) -> bytes:
    """Encrypt master key material under the root key for storage at rest.

    Args:
        root_key: the 32-byte root key (see ``parse_root_key``).
        key_material: the secret to wrap, 1..65536 bytes.
        aad: bytes naming what is wrapped (e.g. key id and version); required to unwrap.
        nonce: 12-byte nonce for tests; None draws a fresh random one.

    Returns:
        b"OZRK" || version || nonce || ciphertext || tag.

    Raises:
        ValueError: bad root key, nonce or material length.
        TypeError: arguments are not bytes.
    """
    _check_bytes("root_key", root_key, KEY_SIZE)
    _check_bytes("key_material", key_material)
    if not 1 <= len(key_material) <= MAX_WRAPPED_MATERIAL:
        raise ValueError(f"key_material must be 1..{MAX_WRAPPED_MATERIAL} bytes")
    _check_bytes("aad", aad)
    if nonce is None:
        nonce = secrets.token_bytes(NONCE_SIZE)
    _check_bytes("nonce", nonce, NONCE_SIZE)
    sealed = AESGCM(bytes(root_key)).encrypt(
        bytes(nonce), bytes(key_material), _ROOT_PREFIX + bytes(aad)
    )
    return _ROOT_PREFIX + bytes(nonce) + sealed


def unwrap_with_root(root_key: bytes, wrapped: bytes, *, aad: bytes) -> bytes:
    """Decrypt master key material written by ``wrap_with_root``.

    Args:
        root_key: the 32-byte root key.
        wrapped: the stored record.
        aad: the same bytes given to ``wrap_with_root``.

    Returns:
        The key material.

    Raises:
        RootKeyError: wrong root key, wrong aad, or a malformed or damaged record.
        ValueError: root_key is not 32 bytes.
    """
    _check_bytes("root_key", root_key, KEY_SIZE)
    _check_bytes("aad", aad)
    if not isinstance(wrapped, (bytes, bytearray, memoryview)):
        raise RootKeyError("wrapped key material must be bytes")
    wrapped = bytes(wrapped)
    if len(wrapped) < _ROOT_HEADER_SIZE + TAG_SIZE + 1:
        raise RootKeyError("wrapped key material is truncated")
    if wrapped[: len(ROOT_MAGIC)] != ROOT_MAGIC:
        raise RootKeyError("not an onezone wrapped key record")
    if wrapped[len(ROOT_MAGIC)] != ROOT_WRAP_VERSION:
        raise RootKeyError("unsupported wrapped key record version")
    nonce = wrapped[len(_ROOT_PREFIX) : _ROOT_HEADER_SIZE]
    try:
        return AESGCM(bytes(root_key)).decrypt(
            nonce, wrapped[_ROOT_HEADER_SIZE:], _ROOT_PREFIX + bytes(aad)
        )
    except InvalidTag:
        raise RootKeyError(
            "cannot unwrap key material: wrong root key, or the record is damaged"
        ) from None


def parse_root_key(value: str | bytes) -> bytes:
    """Decode a root key given as 64 hex characters or as base64 of 32 bytes.

    All whitespace (including newlines from a key file) is ignored. Standard and URL-safe
    base64 are accepted, with or without padding. Error messages never echo the input.

    Args:
        value: the key text, as read from a file or an environment variable.

    Returns:
        The 32-byte root key.

    Raises:
        ValueError: the text is neither form, or does not decode to 32 bytes.
        TypeError: value is not str or bytes.
    """
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(_ROOT_KEY_HELP + " (got non-ASCII data)") from None
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError("root key must be given as str or bytes")
    text = "".join(text.split())
    if not text:
        raise ValueError(_ROOT_KEY_HELP + " (got an empty value)")
    if len(text) == 2 * KEY_SIZE and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    if len(text) in (43, 44) and text.isascii():
        urlsafe = "-" in text or "_" in text
        if not (urlsafe and ("+" in text or "/" in text)):  # never mix the two alphabets
            padded = text + "=" * (-len(text) % 4)
            try:
                key = base64.b64decode(padded, altchars=b"-_" if urlsafe else None, validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) == KEY_SIZE:
                return key
    raise ValueError(_ROOT_KEY_HELP + f" (got {len(text)} characters that are neither)")


_ROOT_KEY_HELP = (
    "root key must be 64 hex characters or base64 of 32 bytes "
    "(e.g. the output of `openssl rand -hex 32` or `openssl rand -base64 32`)"
)


# -- helpers ------------------------------------------------------------------------------


def _draw(rng: Rng, n: int) -> bytes:
    out = rng(n)
    if not isinstance(out, (bytes, bytearray)) or len(out) != n:
        raise ValueError(f"rng must return exactly {n} bytes")
    return bytes(out)


def _check_bytes(name: str, value: object, size: int | None = None) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes")
    if size is not None and len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
