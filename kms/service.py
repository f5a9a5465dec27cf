"""KMS business logic: AWS KMS operations over the keystore, without sockets or trio.

Responsibility
--------------
``KmsService`` implements CreateKey, DescribeKey, ListKeys, GetManagedKey, GenerateDataKey
(with or without plaintext), Encrypt and Decrypt with AWS KMS semantics, on arguments that
the RPC edge (``kms.handlers``) has already type- and size-checked. It raises the typed
errors of ``proto.errors`` with the AWS exception name as ``kind``.

Semantics
---------
- Key ids are UUID4 strings; ARNs ``arn:aws:kms:<region>:<account>:key/<id>``. A ``key_id``
  argument is a key id or a key ARN; an ARN of another region or account, an unknown id, a
  malformed reference or an alias (aliases are a later issue) is ``NotFoundException``.
- Every cryptographic operation requires the key to be ``Enabled``: ``Disabled`` gives
  ``DisabledException``, ``PendingDeletion`` gives ``KMSInvalidStateException``.
- Blobs carry key id and version (``kms.crypto``). Any failure to open one (malformed,
  tampered, encryption context not exactly the one used to encrypt, unknown key or version)
  is ``InvalidCiphertextException``; a ``key_id`` given to Decrypt that is not the blob's key
  is ``IncorrectKeyException``.
- Methods are synchronous; ``create_key`` and ``get_managed_key`` block on the keystore
  write, and the caller serializes them. Reads work on keystore snapshots, so they may run
  in worker threads concurrently with a mutation.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from kms.crypto import (
    InvalidCiphertext,
    decrypt_blob,
    encrypt_blob,
    new_data_key,
    new_master_key,
    parse_blob_header,
)
from kms.keystore import KeyRecord, KeyStore
from proto.errors import InvalidRequest, NotFound
from proto.names import InvalidName, KeyRefKind, kms_key_arn, parse_kms_key_ref

__all__ = ["KmsService", "MANAGED_ALIAS_RE", "invalid_ciphertext", "validation_error"]

MANAGED_ALIAS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/_-]{0,249}")
_MANAGED_DESCRIPTIONS = {
    "aws/s3": "Default key that protects my S3 objects when no other key is defined",
}

Rng = Callable[[int], bytes]


def validation_error(message: str) -> InvalidRequest:
    return InvalidRequest(message, kind="ValidationException")


def invalid_ciphertext() -> InvalidRequest:
    return InvalidRequest("The ciphertext is invalid, or the encryption context does not match.",
                          kind="InvalidCiphertextException")


def _not_found(message: str) -> NotFound:
    return NotFound(message, kind="NotFoundException")


class KmsService:
    def __init__(self, store: KeyStore, *, region: str, account_id: str,
                 clock: Callable[[], float] = time.time, rng: Rng = secrets.token_bytes) -> None:
        self.store = store
        self.region = region
        self.account_id = account_id
        self._clock = clock
        self._rng = rng

    # -- naming ----------------------------------------------------------------------------
    def arn(self, key_id: str) -> str:
        return kms_key_arn(self.region, self.account_id, key_id)

    def key_arn_of(self, ref: Any) -> str | None:
        """The ARN a key reference designates in this region/account, if it is one (no lookup)."""
        try:
            parsed = parse_kms_key_ref(ref)
        except InvalidName:
            return None
        if parsed.kind is KeyRefKind.KEY_ID:
            return self.arn(parsed.raw)
        if parsed.kind is KeyRefKind.KEY_ARN and (parsed.region, parsed.account) == (self.region, self.account_id):
            return parsed.raw
        return None

    def metadata(self, rec: KeyRecord) -> dict[str, Any]:
        """The AWS ``KeyMetadata`` of a key."""
        meta: dict[str, Any] = {
            "KeyId": rec.key_id,
            "Arn": self.arn(rec.key_id),
            "AWSAccountId": self.account_id,
            "CreationDate": rec.created,
            "Enabled": rec.state == "Enabled",
            "Description": rec.description,
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": rec.state,
            "KeySpec": "SYMMETRIC_DEFAULT",
            "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
            "KeyManager": rec.key_manager,
            "Origin": "AWS_KMS",
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
            "MultiRegion": False,
        }
        if rec.state == "PendingDeletion" and rec.deletion_date is not None:
            meta["DeletionDate"] = rec.deletion_date
        return meta

    def resolve(self, ref: str) -> KeyRecord:
        """Find the key a ``key_id`` argument names.

        Raises:
            NotFound (NotFoundException): malformed, alias, foreign ARN or unknown key.
        """
        try:
            parsed = parse_kms_key_ref(ref)
        except InvalidName:
            raise _not_found(f"Invalid keyId {ref!r}") from None
        if parsed.kind in (KeyRefKind.ALIAS_NAME, KeyRefKind.ALIAS_ARN):
            raise _not_found(f"Alias {parsed.raw} is not found.")
        if parsed.kind is KeyRefKind.KEY_ARN and (parsed.region, parsed.account) != (self.region, self.account_id):
            raise _not_found(f"Key '{parsed.raw}' does not exist")
        assert parsed.key_id is not None
        rec = self.store.get(parsed.key_id)
        if rec is None:
            raise _not_found(f"Key '{self.arn(parsed.key_id)}' does not exist")
        return rec

    def _usable(self, rec: KeyRecord) -> KeyRecord:
        if rec.state == "Disabled":
            raise InvalidRequest(f"{self.arn(rec.key_id)} is disabled.", kind="DisabledException")
        if rec.state != "Enabled":
            raise InvalidRequest(f"{self.arn(rec.key_id)} is pending deletion.",
                                 kind="KMSInvalidStateException")
        return rec

    # -- key management ----------------------------------------------------------------------
    def create_key(self, *, description: str = "", tags: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
        """CreateKey (customer managed, symmetric). Blocking (keystore write)."""
        rec = self._new_key(description=description, tags=tags, key_manager="CUSTOMER")
        return {"KeyMetadata": self.metadata(rec)}

    def get_managed_key(self, alias: str) -> dict[str, Any]:
        """The AWS-managed key of ``alias`` (``aws/s3``), created on first use. Blocking."""
        if alias.startswith("alias/"):
            alias = alias[len("alias/"):]
        if not MANAGED_ALIAS_RE.fullmatch(alias):
            raise validation_error(f"invalid managed key alias {alias!r}")
        key_id = self.store.managed_key_id(alias)
        if key_id is None:
            description = _MANAGED_DESCRIPTIONS.get(alias, f"Default key that protects my {alias} data")
            try:
                rec = self._new_key(description=description, tags=(), key_manager="AWS", managed_alias=alias)
            except ValueError:  # created concurrently by another caller
                key_id = self.store.managed_key_id(alias)
                assert key_id is not None
            else:
                return {"KeyMetadata": self.metadata(rec)}
        rec = self.store.get(key_id)
        assert rec is not None
        return {"KeyMetadata": self.metadata(rec)}

    def _new_key(self, *, description: str, tags: tuple[tuple[str, str], ...], key_manager: str,
                 managed_alias: str | None = None) -> KeyRecord:
        key_id = str(uuid.UUID(bytes=self._rng(16), version=4))
        return self.store.add_key(key_id=key_id, created=self._clock(), description=description,
                                  key_manager=key_manager, tags=tags,
                                  material=new_master_key(self._rng), managed_alias=managed_alias)

    def describe_key(self, key_id: str) -> dict[str, Any]:
        return {"KeyMetadata": self.metadata(self.resolve(key_id))}

    def list_keys(self, *, limit: int = 100, marker: str | None = None) -> dict[str, Any]:
        """ListKeys in key-id order; ``marker`` is the last key id of the previous page."""
        records = [r for r in self.store.records() if marker is None or r.key_id > marker]
        page = records[:limit]
        out: dict[str, Any] = {
            "Keys": [{"KeyId": r.key_id, "KeyArn": self.arn(r.key_id)} for r in page],
            "Truncated": len(records) > limit,
        }
        if out["Truncated"]:
            out["NextMarker"] = page[-1].key_id
        return out

    # -- cryptographic operations --------------------------------------------------------------
    def _seal(self, rec: KeyRecord, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        version = rec.current_version
        material = self.store.material(rec.key_id, version)
        assert material is not None, "keystore lost material of a current version"
        return encrypt_blob(material, key_id=uuid.UUID(rec.key_id), key_version=version,
                            plaintext=plaintext, context=context)

    def generate_data_key(self, key_id: str, *, encryption_context: Mapping[str, str],
                          number_of_bytes: int = 32, include_plaintext: bool = True) -> dict[str, Any]:
        """GenerateDataKey / GenerateDataKeyWithoutPlaintext."""
        rec = self._usable(self.resolve(key_id))
        data_key = new_data_key(number_of_bytes, self._rng)
        out: dict[str, Any] = {
            "KeyId": self.arn(rec.key_id),
            "CiphertextBlob": self._seal(rec, data_key, encryption_context),
        }
        if include_plaintext:
            out["Plaintext"] = data_key
        return out

    def encrypt(self, key_id: str, *, plaintext: bytes, encryption_context: Mapping[str, str]) -> dict[str, Any]:
        rec = self._usable(self.resolve(key_id))
        return {"KeyId": self.arn(rec.key_id),
                "CiphertextBlob": self._seal(rec, plaintext, encryption_context),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}

    def decrypt(self, ciphertext_blob: bytes, *, encryption_context: Mapping[str, str],
                key_id: str | None = None) -> dict[str, Any]:
        try:
            blob_key, version = parse_blob_header(ciphertext_blob)
        except InvalidCiphertext:
            raise invalid_ciphertext() from None
        blob_key_id = str(blob_key)
        if key_id is not None and self.resolve(key_id).key_id != blob_key_id:
            raise InvalidRequest("The key ID in the request does not identify the key that "
                                 "encrypted the ciphertext.", kind="IncorrectKeyException")
        rec = self.store.get(blob_key_id)
        if rec is None:
            raise invalid_ciphertext()
        self._usable(rec)
        material = self.store.material(blob_key_id, version)
        if material is None:
            raise invalid_ciphertext()
        try:
            plaintext = decrypt_blob(material, ciphertext_blob, encryption_context)
        except InvalidCiphertext:
            raise invalid_ciphertext() from None
        return {"KeyId": self.arn(blob_key_id), "Plaintext": plaintext,
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
