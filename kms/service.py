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
  argument is a key id, a key ARN, an alias name (``alias/name``, ``alias/aws/s3`` for managed
  keys) or an alias ARN; an ARN of another region or account, an unknown id or alias, or a
  malformed reference is ``NotFoundException``.
- Every cryptographic operation requires the key to be ``Enabled``: ``Disabled`` gives
  ``DisabledException``, ``PendingDeletion`` gives ``KMSInvalidStateException``.
- Blobs carry key id and version (``kms.crypto``); every version of a key stays usable for
  Decrypt until the key is deleted. Any failure to open one (malformed, tampered, encryption
  context not exactly the one used to encrypt, unknown key or version) is
  ``InvalidCiphertextException``; a ``key_id`` given to Decrypt that is not the blob's key is
  ``IncorrectKeyException``. ReEncrypt opens a blob and seals its plaintext under the newest
  version of the destination key without the plaintext leaving the daemon.
- Methods are synchronous; mutations block on the keystore write and the caller serializes
  them. Reads work on keystore snapshots, so they may run in worker threads concurrently
  with a mutation. Key management (states, rotation, policies, tags, aliases) is in
  ``kms.lifecycle``.
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
    blob_key_id,
    decrypt_blob,
    encrypt_blob,
    new_data_key,
    new_master_key,
)
from kms.keystore import KeyRecord, KeyStore
from kms.statefeed import StateFeed
from proto.errors import InvalidRequest, NotFound
from proto.names import InvalidName, KeyRefKind, kms_key_arn, parse_kms_key_ref

__all__ = ["DAY_S", "KmsService", "MANAGED_ALIAS_RE", "invalid_ciphertext", "validation_error"]

DAY_S = 86400.0

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
        self.clock = self._clock = clock
        self.rng = self._rng = rng
        self.feed = StateFeed(secrets.token_hex(8), lambda: [(r.key_id, r.state) for r in store.records()])

    # -- naming ----------------------------------------------------------------------------
    def arn(self, key_id: str) -> str:
        return kms_key_arn(self.region, self.account_id, key_id)

    def alias_arn(self, alias: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account_id}:{alias}"

    def alias_target(self, alias: str) -> str | None:
        """The key id ``alias/...`` names (customer or managed ``alias/aws/...``), if any."""
        if alias.startswith("alias/aws/"):
            return self.store.managed_key_id(alias[len("alias/"):])
        rec = self.store.alias(alias)
        return None if rec is None else rec.key_id

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
        if parsed.kind in (KeyRefKind.ALIAS_NAME, KeyRefKind.ALIAS_ARN) and parsed.alias is not None:
            key_id = self.alias_target(parsed.alias)
            return None if key_id is None else self.arn(key_id)
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
            if rec.pending_window_days is not None:
                meta["PendingDeletionWindowInDays"] = rec.pending_window_days
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
        foreign = (parsed.region, parsed.account) != (self.region, self.account_id)
        if parsed.kind in (KeyRefKind.ALIAS_NAME, KeyRefKind.ALIAS_ARN):
            assert parsed.alias is not None
            key_id = None if parsed.kind is KeyRefKind.ALIAS_ARN and foreign else self.alias_target(parsed.alias)
            if key_id is None:
                raise _not_found(f"Alias {self.alias_arn(parsed.alias)} is not found.")
            rec = self.store.get(key_id)
            if rec is None:
                raise _not_found(f"Alias {self.alias_arn(parsed.alias)} is not found.")
            return rec
        if parsed.kind is KeyRefKind.KEY_ARN and foreign:
            raise _not_found(f"Key '{parsed.raw}' does not exist")
        assert parsed.key_id is not None
        rec = self.store.get(parsed.key_id)
        if rec is None:
            raise _not_found(f"Key '{self.arn(parsed.key_id)}' does not exist")
        return rec

    def usable(self, rec: KeyRecord) -> KeyRecord:
        """``rec`` if Enabled; else DisabledException / KMSInvalidStateException."""
        if rec.state == "Disabled":
            raise InvalidRequest(f"{self.arn(rec.key_id)} is disabled.", kind="DisabledException")
        if rec.state != "Enabled":
            raise InvalidRequest(f"{self.arn(rec.key_id)} is pending deletion.",
                                 kind="KMSInvalidStateException")
        return rec

    # -- key management ----------------------------------------------------------------------
    def create_key(self, *, description: str = "", tags: tuple[tuple[str, str], ...] = (),
                   policy: str | None = None) -> dict[str, Any]:
        """CreateKey (customer managed, symmetric). Blocking (keystore write).

        ``policy`` has been validated by the caller (``kms.lifecycle.check_policy``); None
        gives the default key policy."""
        rec = self._new_key(description=description, tags=tags, key_manager="CUSTOMER", policy=policy)
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
                 managed_alias: str | None = None, policy: str | None = None) -> KeyRecord:
        key_id = str(uuid.UUID(bytes=self._rng(16), version=4))
        now = self._clock()
        managed = key_manager == "AWS"  # AWS-managed keys rotate every year, as on AWS
        rec = self.store.add_key(key_id=key_id, created=now, description=description,
                                 key_manager=key_manager, tags=tags,
                                 material=new_master_key(self._rng), managed_alias=managed_alias,
                                 policy=policy, rotation_enabled=managed,
                                 next_rotation=now + 365 * DAY_S if managed else None)
        self.feed.note(key_id, rec.state)
        return rec

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
        rec = self.usable(self.resolve(key_id))
        data_key = new_data_key(number_of_bytes, self._rng)
        out: dict[str, Any] = {
            "KeyId": self.arn(rec.key_id),
            "CiphertextBlob": self._seal(rec, data_key, encryption_context),
        }
        if include_plaintext:
            out["Plaintext"] = data_key
        return out

    def encrypt(self, key_id: str, *, plaintext: bytes, encryption_context: Mapping[str, str]) -> dict[str, Any]:
        rec = self.usable(self.resolve(key_id))
        return {"KeyId": self.arn(rec.key_id),
                "CiphertextBlob": self._seal(rec, plaintext, encryption_context),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}

    def blob_key(self, ciphertext_blob: bytes) -> KeyRecord | None:
        """The key a blob names in its header, if this KMS holds it (unauthenticated: for
        authorization before the decrypt, which authenticates)."""
        try:
            key_id, _version = blob_key_id(ciphertext_blob)
        except InvalidCiphertext:
            return None
        return self.store.get(key_id)

    def _open(self, ciphertext_blob: bytes, encryption_context: Mapping[str, str],
              key_id: str | None) -> tuple[KeyRecord, bytes]:
        try:
            blob_kid, version = blob_key_id(ciphertext_blob)
        except InvalidCiphertext:
            raise invalid_ciphertext() from None
        if key_id is not None and self.resolve(key_id).key_id != blob_kid:
            raise InvalidRequest("The key ID in the request does not identify the key that "
                                 "encrypted the ciphertext.", kind="IncorrectKeyException")
        rec = self.store.get(blob_kid)
        if rec is None:
            raise invalid_ciphertext()
        self.usable(rec)
        material = self.store.material(blob_kid, version)
        if material is None:
            raise invalid_ciphertext()
        try:
            return rec, decrypt_blob(material, ciphertext_blob, encryption_context)
        except InvalidCiphertext:
            raise invalid_ciphertext() from None

    def decrypt(self, ciphertext_blob: bytes, *, encryption_context: Mapping[str, str],
                key_id: str | None = None) -> dict[str, Any]:
        rec, plaintext = self._open(ciphertext_blob, encryption_context, key_id)
        return {"KeyId": self.arn(rec.key_id), "Plaintext": plaintext,
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}

    def re_encrypt(self, ciphertext_blob: bytes, *, destination_key_id: str,
                   source_encryption_context: Mapping[str, str],
                   destination_encryption_context: Mapping[str, str],
                   source_key_id: str | None = None) -> dict[str, Any]:
        """ReEncrypt: open under the blob's key/version, seal under the destination's newest version."""
        source, plaintext = self._open(ciphertext_blob, source_encryption_context, source_key_id)
        dest = self.usable(self.resolve(destination_key_id))
        return {"CiphertextBlob": self._seal(dest, plaintext, destination_encryption_context),
                "SourceKeyId": self.arn(source.key_id), "KeyId": self.arn(dest.key_id),
                "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT"}

    def generate_random(self, *, number_of_bytes: int = 32) -> dict[str, Any]:
        return {"Plaintext": new_data_key(number_of_bytes, self._rng)}
