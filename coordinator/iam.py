"""IAM: users, access keys and inline user policies; the bootstrap admin.

(Managed policies, groups and attachments: ``coordinator.iam_entities``.)

Responsibility
--------------
The AWS IAM subset of docs/rpc.md over the store, plus ``auth_context`` for the gateway (the
secret of an access key and every policy that applies to its user: inline, attached managed
policies' default versions, and those of the user's groups, to verify SigV4 and evaluate policies).

Invariants
----------
- Secret access keys exist in clear only in memory: stored as KMS ``Encrypt`` blobs under the
  managed key ``onezone/iam`` with context ``{"onezone:iam:access-key-id": <id>}`` (so a blob
  cannot be moved to another key id), returned once by ``CreateAccessKey``, decrypted for
  ``GetAuthContext`` and cached for ``secret_cache_s`` (dropped at once on DeleteAccessKey).
  Never logged.
- Policy documents are validated with ``proto.policy.parse_policy`` before they are
  stored, and stored as given (text).
- Ids: user ids ``AIDA`` + 16, access key ids ``AKIA`` + 16 upper-case letters and digits;
  secrets 40 characters of the base64 alphabet, all from a CSPRNG (injectable for tests).
- Bootstrap (first start, no users): the admin user, its ``AdministratorAccess`` policy and one
  access key are created in one transaction, after the credentials file was written (mode 0600,
  ``O_EXCL``): a crash in between leaves a file and no users, which the next start reports
  rather than silently overwriting credentials.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import string
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from coordinator.kms_client import KmsApi
from proto.policy import MalformedPolicy, parse_policy
from coordinator.store import (
    AccessKeyRecord,
    HasDependents,
    LimitReached,
    NoSuchRow,
    RowExists,
    SqliteStore,
    UserRecord,
)
from proto.errors import Conflict, InvalidRequest, NotFound, RpcError
from proto.names import iam_user_arn

log = logging.getLogger(__name__)

MANAGED_IAM_ALIAS = "onezone/iam"
CONTEXT_KEY = "onezone:iam:access-key-id"
ADMIN_USER = "admin"
ADMIN_POLICY_NAME = "AdministratorAccess"
ADMIN_POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
MAX_KEYS_PER_USER = 2              # as AWS
MAX_POLICY_BYTES = 10240           # one document
MAX_USER_POLICY_BYTES = 10240      # all inline policies of a user (AWS allows 2048)
_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"

T = TypeVar("T")


class BootstrapError(RuntimeError):
    """The bootstrap admin could not be created; the message tells the operator why."""


class SecretCache:
    """Decrypted secrets by access key id, each for ``ttl_s`` seconds, at most ``max_entries``."""

    def __init__(self, ttl_s: float, clock: Callable[[], float], max_entries: int = 10000) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._max = max_entries
        self._entries: dict[str, tuple[str, float]] = {}

    def get(self, access_key_id: str) -> str | None:
        entry = self._entries.get(access_key_id)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[access_key_id]
            return None
        return entry[0]

    def put(self, access_key_id: str, secret: str) -> None:
        if self._ttl_s <= 0:
            return
        if len(self._entries) >= self._max:
            self._entries.pop(next(iter(self._entries)))  # oldest insertion first
        self._entries[access_key_id] = (secret, self._clock() + self._ttl_s)

    def invalidate(self, access_key_id: str) -> None:
        self._entries.pop(access_key_id, None)

    def __len__(self) -> int:
        return len(self._entries)


class Iam:
    def __init__(self, *, store: SqliteStore, kms: KmsApi, account_id: str,
                 clock: Callable[[], float], secret_cache_s: float,
                 rng: random.Random | None = None) -> None:
        self._store = store
        self._kms = kms
        self._account = account_id
        self._clock = clock
        self._rng = rng or secrets.SystemRandom()
        self._cache = SecretCache(secret_cache_s, clock)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args)

    def _ids(self, prefix: str) -> str:
        return prefix + "".join(self._rng.choice(_ID_ALPHABET) for _ in range(16))

    def _new_secret(self) -> str:
        return "".join(self._rng.choice(_SECRET_ALPHABET) for _ in range(40))

    def user_wire(self, u: UserRecord) -> dict[str, Any]:
        return {"UserName": u.user_name, "UserId": u.user_id, "Arn": iam_user_arn(self._account, u.user_name),
                "Path": u.path, "CreateDate": u.created}

    # -- users -----------------------------------------------------------------------------
    async def create_user(self, user_name: str, path: str = "/") -> dict[str, Any]:
        user = UserRecord(user_name, self._ids("AIDA"), path, self._clock())
        try:
            await self._db(self._store.create_user, user)
        except RowExists as exc:
            raise Conflict(str(exc), kind="EntityAlreadyExists") from None
        log.info("event=user_created user=%s user_id=%s", user_name, user.user_id)
        return self.user_wire(user)

    async def get_user(self, user_name: str) -> dict[str, Any]:
        user = await self._db(self._store.get_user, user_name)
        if user is None:
            raise NotFound(f"the user with name {user_name} cannot be found", kind="NoSuchEntity")
        return self.user_wire(user)

    async def list_users(self) -> list[dict[str, Any]]:
        return [self.user_wire(u) for u in await self._db(self._store.list_users)]

    async def delete_user(self, user_name: str) -> None:
        try:
            await self._db(self._store.delete_user, user_name)
        except NoSuchRow as exc:
            raise NotFound(str(exc), kind="NoSuchEntity") from None
        except HasDependents as exc:
            raise Conflict(str(exc), kind="DeleteConflict") from None
        log.info("event=user_deleted user=%s", user_name)

    # -- access keys -----------------------------------------------------------------------
    async def _seal(self, access_key_id: str, secret: str) -> bytes:
        key_arn = await self._kms.managed_key_arn(MANAGED_IAM_ALIAS)
        return await self._kms.encrypt(key_arn, secret.encode(), {CONTEXT_KEY: access_key_id})

    async def create_access_key(self, user_name: str) -> dict[str, Any]:
        user = await self._db(self._store.get_user, user_name)
        if user is None:  # checked before calling the KMS
            raise NotFound(f"the user with name {user_name} cannot be found", kind="NoSuchEntity")
        access_key_id, secret = self._ids("AKIA"), self._new_secret()
        blob = await self._seal(access_key_id, secret)
        record = AccessKeyRecord(access_key_id, user.user_name, "Active", self._clock(), blob)
        try:
            await self._db(lambda: self._store.insert_access_key(record, max_per_user=MAX_KEYS_PER_USER))
        except NoSuchRow as exc:
            raise NotFound(str(exc), kind="NoSuchEntity") from None
        except LimitReached as exc:
            raise InvalidRequest(str(exc), kind="LimitExceeded") from None
        log.info("event=access_key_created user=%s access_key_id=%s", user_name, access_key_id)
        return {"UserName": user.user_name, "AccessKeyId": access_key_id, "SecretAccessKey": secret,
                "Status": record.status, "CreateDate": record.created}

    async def list_access_keys(self, user_name: str) -> list[dict[str, Any]]:
        try:
            keys = await self._db(self._store.list_access_keys, user_name)
        except NoSuchRow as exc:
            raise NotFound(str(exc), kind="NoSuchEntity") from None
        return [{"UserName": k.user_name, "AccessKeyId": k.access_key_id, "Status": k.status,
                 "CreateDate": k.created} for k in keys]

    async def delete_access_key(self, user_name: str, access_key_id: str) -> None:
        try:
            await self._db(self._store.delete_access_key, user_name, access_key_id)
        except NoSuchRow as exc:
            raise NotFound(str(exc), kind="NoSuchEntity") from None
        finally:
            self._cache.invalidate(access_key_id)
        log.info("event=access_key_deleted user=%s access_key_id=%s", user_name, access_key_id)

    # -- policies --------------------------------------------------------------------------
    async def put_user_policy(self, user_name: str, policy_name: str, document: str) -> None:
        try:
            parse_policy(document, max_bytes=MAX_POLICY_BYTES)
        except MalformedPolicy as exc:
            raise InvalidRequest(f"the policy document is malformed: {exc}",
                                 kind="MalformedPolicyDocument") from None
        try:
            await self._db(lambda: self._store.put_user_policy(
                user_name, policy_name, document, max_total_bytes=MAX_USER_POLICY_BYTES))
        except NoSuchRow as exc:
            raise NotFound(str(exc), kind="NoSuchEntity") from None
        except LimitReached as exc:
            raise InvalidRequest(str(exc), kind="LimitExceeded") from None
        log.info("event=user_policy_put user=%s policy=%s", user_name, policy_name)

    async def get_user_policy(self, user_name: str, policy_name: str) -> dict[str, Any]:
        try:
            document = await self._db(self._store.get_user_policy, user_name, policy_name)
            user = await self._db(self._store.get_user, user_name)
        except NoSuchRow as exc:
            raise NotFound(str(exc), kind="NoSuchEntity") from None
        return {"UserName": user.user_name if user else user_name, "PolicyName": policy_name,
                "PolicyDocument": document}

    async def list_user_policies(self, user_name: str) -> list[str]:
        try:
            return await self._db(self._store.list_user_policies, user_name)
        except NoSuchRow as exc:
            raise NotFound(str(exc), kind="NoSuchEntity") from None

    async def delete_user_policy(self, user_name: str, policy_name: str) -> None:
        try:
            await self._db(self._store.delete_user_policy, user_name, policy_name)
        except NoSuchRow as exc:
            raise NotFound(str(exc), kind="NoSuchEntity") from None
        log.info("event=user_policy_deleted user=%s policy=%s", user_name, policy_name)

    # -- authentication --------------------------------------------------------------------
    async def auth_context(self, access_key_id: str) -> dict[str, Any]:
        """What the gateway needs to authenticate and authorise a request signed by a key."""
        key = await self._db(self._store.get_access_key, access_key_id)
        if key is None:
            raise NotFound("the AWS access key id you provided does not exist in our records",
                           kind="InvalidAccessKeyId")
        secret = self._cache.get(access_key_id)
        if secret is None:
            plain = await self._kms.decrypt(key.secret_blob, {CONTEXT_KEY: access_key_id})
            secret = plain.decode()
            self._cache.put(access_key_id, secret)
        policies = await self._db(self._store.effective_policy_documents, key.user_name)
        return {"user_name": key.user_name, "user_arn": iam_user_arn(self._account, key.user_name),
                "account_id": self._account, "secret_access_key": secret, "status": key.status,
                "policies": policies}

    # -- bootstrap -------------------------------------------------------------------------
    async def bootstrap(self, credentials_file: Path, *, wait_s: float, kms_where: str = "the KMS") -> bool:
        """Create the admin user on first start (no users at all); see the module docstring.

        Args:
            credentials_file: where to write the admin's credentials (must not exist).
            wait_s: how long to keep retrying while the KMS cannot be reached.
            kms_where: how to name the KMS in error messages (its address).

        Returns:
            True if the admin was created now, False if users already existed.

        Raises:
            BootstrapError: the file exists, or the KMS did not answer in time, or refused.
        """
        if await self._db(self._store.user_count):
            return False
        if await trio.to_thread.run_sync(credentials_file.exists):
            raise BootstrapError(
                f"{credentials_file} exists but the database has no users: it may hold the "
                "credentials of another cluster; move it away and start again")
        access_key_id, secret = self._ids("AKIA"), self._new_secret()
        blob = await _retry_kms(lambda: self._seal(access_key_id, secret), wait_s, kms_where)
        now = self._clock()
        user = UserRecord(ADMIN_USER, self._ids("AIDA"), "/", now)
        key = AccessKeyRecord(access_key_id, ADMIN_USER, "Active", now, blob)
        doc = {"user_name": ADMIN_USER, "access_key_id": access_key_id, "secret_access_key": secret}
        try:
            await trio.to_thread.run_sync(_write_private_json, credentials_file, doc)
        except OSError as exc:
            raise BootstrapError(f"cannot write the admin credentials file {credentials_file}: "
                                 f"{exc.strerror or exc}") from None
        try:
            await self._db(self._store.bootstrap, user, ADMIN_POLICY_NAME, ADMIN_POLICY, key)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: credentials_file.unlink(missing_ok=True))
            raise
        log.info("event=bootstrap_admin_created user=%s access_key_id=%s credentials_file=%s",
                 ADMIN_USER, access_key_id, credentials_file)
        return True


async def _retry_kms(fn: Callable[[], Awaitable[T]], wait_s: float, where: str) -> T:
    """Run ``fn`` until it succeeds, retrying retryable errors with backoff for ``wait_s``."""
    deadline = trio.current_time() + wait_s
    delay = 0.1
    while True:
        try:
            with trio.fail_after(max(deadline - trio.current_time(), 0.01)):
                return await fn()
        except trio.TooSlowError:
            reason = "timed out"
        except RpcError as exc:
            if not exc.retryable:
                raise BootstrapError(f"the KMS at {where} refused to seal the bootstrap admin's "
                                     f"secret: {type(exc).__name__} {exc.kind or ''}: {exc.message}") from None
            reason = exc.message
        remaining = deadline - trio.current_time()
        if remaining <= 0:
            raise BootstrapError(f"cannot create the bootstrap admin: the KMS at {where} did not "
                                 f"answer within kms_wait_s={wait_s:g}s ({reason})") from None
        log.warning("event=kms_wait reason=%s retry_in_s=%.1f", json.dumps(reason), min(delay, remaining))
        await trio.sleep(min(delay, remaining))
        delay = min(delay * 2, 2.0)


def _write_private_json(path: Path, doc: dict[str, str]) -> None:
    """Write ``doc`` to a new file readable only by its owner, durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
