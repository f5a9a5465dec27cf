"""The coordinator's view of the KMS: the five calls it makes, with their replies checked.

Errors the KMS sends (``NotFoundException``, ``DisabledException``, ``Unavailable`` when it
cannot be reached...) propagate unchanged as ``proto.errors`` types, so callers pass the KMS
kinds through to their own callers. A reply of the wrong shape becomes ``Internal``.

Managed-key ARNs (``aws/s3``, ``onezone/iam``) never change once created, so they are cached
for the life of the process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from proto.errors import Internal, RpcError


class RpcCaller(Protocol):
    async def call(self, method: str, args: dict[str, Any] | None = None) -> Any: ...


class KmsApi:
    def __init__(self, client: RpcCaller, *,
                 observe: Callable[[str, str], None] | None = None) -> None:
        """Args:
            client: an ``RpcClient`` for the KMS (or anything with the same ``call``).
            observe: ``observe(operation, outcome)`` after each call, for metrics.
        """
        self._client = client
        self._observe = observe
        self._managed: dict[str, str] = {}

    async def _call(self, method: str, args: dict[str, Any]) -> Mapping[str, Any]:
        try:
            reply = await self._client.call(method, args)
        except RpcError as exc:
            self._note(method, exc.kind or exc.code.value)
            raise
        if not isinstance(reply, Mapping):
            self._note(method, "malformed")
            raise Internal(f"malformed KMS reply to {method}")
        self._note(method, "ok")
        return reply

    def _note(self, method: str, outcome: str) -> None:
        if self._observe is not None:
            self._observe(method, outcome)

    async def managed_key_arn(self, alias: str) -> str:
        """The ARN of the AWS-managed key of ``alias`` (created by the KMS on first use)."""
        arn = self._managed.get(alias)
        if arn is None:
            meta = _metadata(await self._call("GetManagedKey", {"alias": alias}), "GetManagedKey")
            arn = self._managed[alias] = meta["Arn"]
        return arn

    async def describe_key(self, key_id: str) -> Mapping[str, Any]:
        """The key's ``KeyMetadata``."""
        return _metadata(await self._call("DescribeKey", {"key_id": key_id}), "DescribeKey")

    async def generate_wrapped_key(self, key_id: str, context: dict[str, str],
                                   number_of_bytes: int = 32) -> tuple[str, bytes]:
        """A new data key, wrapped only: ``(key ARN, CiphertextBlob)``."""
        reply = await self._call("GenerateDataKeyWithoutPlaintext", {
            "key_id": key_id, "encryption_context": context, "number_of_bytes": number_of_bytes})
        return _str(reply, "KeyId", "GenerateDataKeyWithoutPlaintext"), _bytes(
            reply, "CiphertextBlob", "GenerateDataKeyWithoutPlaintext")

    async def encrypt(self, key_id: str, plaintext: bytes, context: dict[str, str]) -> bytes:
        reply = await self._call("Encrypt", {"key_id": key_id, "plaintext": plaintext,
                                             "encryption_context": context})
        return _bytes(reply, "CiphertextBlob", "Encrypt")

    async def decrypt(self, blob: bytes, context: dict[str, str]) -> bytes:
        reply = await self._call("Decrypt", {"ciphertext_blob": blob, "encryption_context": context})
        return _bytes(reply, "Plaintext", "Decrypt")


def _metadata(reply: Mapping[str, Any], method: str) -> Mapping[str, Any]:
    meta = reply.get("KeyMetadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("Arn"), str):
        raise Internal(f"malformed KMS reply to {method}: no KeyMetadata.Arn")
    return meta


def _str(reply: Mapping[str, Any], key: str, method: str) -> str:
    value = reply.get(key)
    if not isinstance(value, str) or not value:
        raise Internal(f"malformed KMS reply to {method}: no {key}")
    return value


def _bytes(reply: Mapping[str, Any], key: str, method: str) -> bytes:
    value = reply.get(key)
    if not isinstance(value, bytes) or not value:
        raise Internal(f"malformed KMS reply to {method}: no {key}")
    return value
