"""The bucket catalog: create, look up, list and delete buckets; their encryption and policy.

Responsibility
--------------
Apply the bucket rules of docs/rpc.md over the store, the membership and the KMS:

- names: AWS directory-bucket names ``<base>--<zone>--x-s3`` (type ``Directory``), or AWS
  general-purpose names (type ``GeneralPurpose``), anything else is ``InvalidBucketName``;
- zones: a zone exists when it is configured or a node registered in it; a directory bucket's
  zone is the one in its name, which must exist and equal the ``zone`` argument if one is given
  (``InvalidLocationConstraint``); a general-purpose bucket goes to the cluster's default zone
  (``default_zone``, the first configured zone unless set);
- policy: an optional bucket policy (``proto.bucket_policy`` rules, ``MalformedPolicy``), stored
  with the record and shipped with it, so the gateways evaluate it from their bucket cache;
- placement: ``replicas`` distinct live nodes of the zone (``coordinator.placement``), or
  ``InsufficientCapacity``;
- keys: every bucket starts with SSE-S3 (``AES256``) and a bucket key wrapped under the managed
  ``aws/s3`` key; the first customer-managed key (CMK) set by ``PutBucketEncryption`` adds a new
  key generation wrapped under that CMK, and the CMK is then fixed for the bucket's life. Old
  generations are kept so objects written under them stay readable.

Every change bumps the record's ``version``; mutations are serialised by one lock (held across
the KMS calls they need) and written with a compare-and-swap on the version. Records leave
this module as wire dicts (``to_wire``) with the replicas' current addresses.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import trio

from coordinator import placement
from coordinator.kms_client import KmsApi
from coordinator.membership import Membership
from coordinator.store import BucketKey, BucketRecord, NoSuchRow, SqliteStore, VersionMismatch
from proto.bucket_policy import validate_bucket_policy
from proto.policy import MalformedPolicy
from proto.errors import Conflict, InvalidRequest, NotFound, Unavailable
from proto.names import (
    InvalidName,
    KeyRefKind,
    bucket_arn,
    is_directory_bucket_name,
    parse_kms_key_ref,
    validate_directory_bucket_name,
    validate_general_bucket_name,
)

log = logging.getLogger(__name__)

SSE_S3 = "AES256"
SSE_KMS = "aws:kms"
MANAGED_S3_ALIAS = "aws/s3"
BUCKET_KEY_BYTES = 32
CONTEXT_KEY = "aws:s3:arn"


class Catalog:
    def __init__(
        self,
        *,
        store: SqliteStore,
        membership: Membership,
        kms: KmsApi,
        region: str,
        account_id: str,
        zones: Iterable[str],
        replicas: int,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        observe_placement: Callable[[str], None] | None = None,
        observe_bucket_counts: Callable[[Mapping[str, int]], None] | None = None,
        default_zone: str | None = None,
    ) -> None:
        self._store = store
        self._membership = membership
        self._kms = kms
        self._region = region
        self._account = account_id
        zones = list(zones)
        self._configured_zones = frozenset(zones)
        self._default_zone = default_zone or (zones[0] if zones else None)
        self._replicas = replicas
        self._clock = clock
        self._rng = rng or secrets.SystemRandom()
        self._observe_placement = observe_placement or (lambda outcome: None)
        self._observe_counts = observe_bucket_counts or (lambda counts: None)
        self._lock = trio.Lock()

    # -- queries ---------------------------------------------------------------------------
    def zones(self) -> set[str]:
        """Configured zones and zones some node registered in."""
        return set(self._configured_zones) | self._membership.zones()

    def arn(self, name: str) -> str:
        return bucket_arn(self._region, self._account, name)

    def to_wire(self, b: BucketRecord) -> dict[str, Any]:
        replicas = []
        for node_id in b.replicas:
            node = self._membership.get(node_id)
            replicas.append({"node_id": node_id, "host": node.host if node else "",
                             "port": node.port if node else 0})
        return {
            "name": b.name, "bucket_id": b.bucket_id, "arn": self.arn(b.name), "zone": b.zone,
            "owner": b.owner, "created": b.created, "type": b.type,
            "sse_algorithm": b.sse_algorithm, "kms_key_arn": b.kms_key_arn,
            "bucket_key_enabled": b.bucket_key_enabled,
            "keys": [{"gen": k.gen, "kms_key_arn": k.kms_key_arn, "wrapped": k.wrapped} for k in b.keys],
            "active_gen": b.active_gen, "replicas": replicas, "epoch": b.epoch, "version": b.version,
            "syncing": list(b.syncing), "policy": b.policy,
        }

    async def get_bucket(self, name: str) -> BucketRecord:
        record = await trio.to_thread.run_sync(self._store.get_bucket, name)
        if record is None:
            raise NotFound(f"the bucket {name} does not exist", kind="NoSuchBucket")
        return record

    async def list_buckets(self, owner: str | None = None) -> list[BucketRecord]:
        return await trio.to_thread.run_sync(self._store.list_buckets, owner)

    async def refresh_counts(self) -> None:
        counts = await trio.to_thread.run_sync(self._store.bucket_counts)
        self._observe_counts({zone: counts.get(zone, 0) for zone in self.zones() | set(counts)})

    # -- changes ---------------------------------------------------------------------------
    async def create_bucket(self, name: str, owner: str, zone: str | None = None) -> BucketRecord:
        """Create a directory or general-purpose bucket; see the module docstring for the rules.

        Raises:
            InvalidRequest: ``InvalidBucketName``, ``InvalidLocationConstraint``.
            Conflict: ``BucketAlreadyOwnedByYou`` / ``BucketAlreadyExists``.
            Unavailable: ``InsufficientCapacity``; or the KMS cannot be reached.
            RpcError: KMS errors, passed through.
        """
        name_zone = _directory_zone(name)
        kind = "Directory"
        if name_zone is None:  # general-purpose: the cluster's default zone
            kind = "GeneralPurpose"
            if self._default_zone is None:
                raise InvalidRequest("this cluster has no default zone for general-purpose buckets "
                                     "(set default_zone or zones in the coordinator's config)",
                                     kind="InvalidLocationConstraint")
            name_zone = self._default_zone
        if zone is not None and zone != name_zone:
            raise InvalidRequest(f"the location {zone!r} does not match the zone {name_zone!r} "
                                 f"of the bucket name", kind="InvalidLocationConstraint")
        if name_zone not in self.zones():
            raise InvalidRequest(f"{name_zone!r} is not a zone of this cluster",
                                 kind="InvalidLocationConstraint")
        async with self._lock:
            existing = await trio.to_thread.run_sync(self._store.get_bucket, name)
            if existing is not None:
                raise _exists(existing, owner)
            nodes = self._place(name, name_zone)
            arn = self.arn(name)
            managed = await self._kms.managed_key_arn(MANAGED_S3_ALIAS)
            key_arn, wrapped = await self._kms.generate_wrapped_key(
                managed, {CONTEXT_KEY: arn}, BUCKET_KEY_BYTES)
            record = BucketRecord(
                name=name, bucket_id=self._rng.randbytes(16), zone=name_zone, owner=owner,
                created=self._clock(), type=kind, sse_algorithm=SSE_S3, kms_key_arn=None,
                bucket_key_enabled=True, keys=(BucketKey(1, key_arn, wrapped),), active_gen=1,
                replicas=nodes, epoch=1, version=1)
            existing = await trio.to_thread.run_sync(self._store.insert_bucket, record)
            if existing is not None:
                raise _exists(existing, owner)
        self._observe_placement("placed")
        log.info("event=bucket_created bucket=%s zone=%s owner=%s replicas=%s",
                 name, name_zone, owner, ",".join(nodes))
        await self.refresh_counts()
        return record

    def _place(self, name: str, zone: str) -> tuple[str, ...]:
        views = self._membership.view(self._clock(), zone=zone)
        try:
            return placement.place(name, placement.candidates(views, zone), self._replicas)
        except placement.InsufficientNodes as exc:
            self._observe_placement("insufficient_capacity")
            log.warning("event=placement_failed bucket=%s zone=%s live_nodes=%d replicas=%d",
                        name, zone, exc.have, exc.need)
            raise Unavailable(f"zone {zone} has {exc.have} live node(s) with free space; "
                              f"{exc.need} are needed", kind="InsufficientCapacity") from None

    async def change_bucket(self, name: str,
                            change: Callable[[BucketRecord], BucketRecord | None]) -> tuple[BucketRecord, bool]:
        """Apply ``change`` (pure: the record -> the new record, or None for no change) under the
        catalog lock and store the result with a version compare-and-swap (``version`` is bumped
        here). Returns (the current record, whether it changed). Used by
        ``coordinator.replica_sets`` for epochs."""
        async with self._lock:
            record = await self.get_bucket(name)
            updated = change(record)
            if updated is None:
                return record, False
            updated = replace(updated, version=record.version + 1)
            try:
                await trio.to_thread.run_sync(
                    lambda: self._store.update_bucket(updated, expected_version=record.version))
            except NoSuchRow:
                raise NotFound(f"the bucket {name} does not exist", kind="NoSuchBucket") from None
            except VersionMismatch as exc:
                raise Conflict(f"concurrent update of bucket {name}: {exc}",
                               kind="OperationAborted", retryable=True) from None
        return updated, True

    def place_extra(self, name: str, zone: str, exclude: tuple[str, ...]) -> str | None:
        """A live node of ``zone`` with free space, not in ``exclude``, by rendezvous order; or None."""
        views = self._membership.view(self._clock(), zone=zone)
        spare = [c for c in placement.candidates(views, zone) if c.node_id not in exclude]
        if not spare:
            return None
        return placement.place(name, spare, 1)[0]

    def placeable(self, zone: str, node_id: str) -> bool:
        """Whether ``node_id`` is a live node of ``zone`` with free space."""
        views = self._membership.view(self._clock(), zone=zone)
        return any(c.node_id == node_id for c in placement.candidates(views, zone))

    async def delete_bucket(self, name: str) -> None:
        async with self._lock:
            try:
                await trio.to_thread.run_sync(self._store.delete_bucket, name)
            except NoSuchRow:
                raise NotFound(f"the bucket {name} does not exist", kind="NoSuchBucket") from None
        log.info("event=bucket_deleted bucket=%s", name)
        await self.refresh_counts()

    async def put_bucket_encryption(self, name: str, sse_algorithm: str,
                                    kms_key_id: str | None = None) -> BucketRecord:
        """Set the bucket's default encryption (SSE-S3, or SSE-KMS with one CMK for life).

        Raises:
            NotFound: ``NoSuchBucket``; ``NotFoundException`` from the KMS.
            InvalidRequest: ``InvalidArgument``; ``DisabledException`` /
                ``KMSInvalidStateException`` when the CMK is not enabled.
        """
        if sse_algorithm not in (SSE_S3, SSE_KMS):
            raise InvalidRequest(f"unsupported server-side encryption algorithm {sse_algorithm!r}; "
                                 f"use {SSE_S3} or {SSE_KMS}", kind="InvalidArgument")
        if sse_algorithm == SSE_S3:
            if kms_key_id is not None:
                raise InvalidRequest("a KMS key id may be given only with aws:kms", kind="InvalidArgument")
            async with self._lock:
                record = await self.get_bucket(name)
                if record.kms_key_arn is not None:
                    raise InvalidRequest(
                        f"the bucket {name} uses the customer-managed key {record.kms_key_arn}: "
                        "the bucket's KMS key cannot be changed", kind="InvalidArgument")
                return record  # already SSE-S3: nothing to change
        if kms_key_id is None:
            raise InvalidRequest("aws:kms needs a customer-managed key (key id or key ARN) for a "
                                 "directory bucket", kind="InvalidArgument")
        _check_key_ref(kms_key_id)
        async with self._lock:
            record = await self.get_bucket(name)
            cmk_arn = _usable_cmk_arn(await self._kms.describe_key(kms_key_id), kms_key_id)
            if record.kms_key_arn == cmk_arn:
                return record
            if record.kms_key_arn is not None:
                raise InvalidRequest(
                    f"the bucket {name} is encrypted with {record.kms_key_arn}: the bucket's KMS "
                    "key cannot be changed", kind="InvalidArgument")
            key_arn, wrapped = await self._kms.generate_wrapped_key(
                cmk_arn, {CONTEXT_KEY: self.arn(name)}, BUCKET_KEY_BYTES)
            gen = max(k.gen for k in record.keys) + 1
            updated = replace(record, sse_algorithm=SSE_KMS, kms_key_arn=cmk_arn,
                              keys=(*record.keys, BucketKey(gen, key_arn, wrapped)),
                              active_gen=gen, version=record.version + 1)
            try:
                await trio.to_thread.run_sync(
                    lambda: self._store.update_bucket(updated, expected_version=record.version))
            except NoSuchRow:
                raise NotFound(f"the bucket {name} does not exist", kind="NoSuchBucket") from None
            except VersionMismatch as exc:
                raise Conflict(f"concurrent update of bucket {name}: {exc}",
                               kind="OperationAborted", retryable=True) from None
        log.info("event=bucket_encryption_set bucket=%s sse=%s kms_key_arn=%s gen=%d",
                 name, SSE_KMS, cmk_arn, gen)
        return updated

    async def put_bucket_policy(self, name: str, document: str) -> BucketRecord:
        """Store the bucket's policy (replacing any).

        Raises:
            NotFound: ``NoSuchBucket``.  InvalidRequest: ``MalformedPolicy``.
        """
        await self.get_bucket(name)  # NoSuchBucket before MalformedPolicy, as S3 answers
        try:
            validate_bucket_policy(document, self.arn(name))
        except MalformedPolicy as exc:
            raise InvalidRequest(str(exc), kind="MalformedPolicy") from None
        return await self._set_policy(name, document)

    async def delete_bucket_policy(self, name: str) -> BucketRecord:
        """Remove the bucket's policy (no error when it has none, as S3). Raises NotFound."""
        return await self._set_policy(name, None)

    async def _set_policy(self, name: str, document: str | None) -> BucketRecord:
        async with self._lock:
            record = await self.get_bucket(name)
            if record.policy == document:
                return record
            updated = replace(record, policy=document, version=record.version + 1)
            try:
                await trio.to_thread.run_sync(
                    lambda: self._store.update_bucket(updated, expected_version=record.version))
            except NoSuchRow:
                raise NotFound(f"the bucket {name} does not exist", kind="NoSuchBucket") from None
            except VersionMismatch as exc:
                raise Conflict(f"concurrent update of bucket {name}: {exc}",
                               kind="OperationAborted", retryable=True) from None
        log.info("event=bucket_policy_%s bucket=%s", "set" if document else "deleted", name)
        return updated


def _directory_zone(name: str) -> str | None:
    """The zone of a valid directory-bucket name, None for a valid general-purpose name, or
    InvalidBucketName."""
    try:
        if not is_directory_bucket_name(name):
            validate_general_bucket_name(name)
            return None
        _, zone = validate_directory_bucket_name(name)
    except InvalidName as exc:
        raise InvalidRequest(exc.message, kind="InvalidBucketName") from None
    return zone


def _exists(existing: BucketRecord, owner: str) -> Conflict:
    if existing.owner == owner:
        return Conflict(f"you already own the bucket {existing.name}", kind="BucketAlreadyOwnedByYou")
    return Conflict(f"the bucket name {existing.name} is not available", kind="BucketAlreadyExists")


def _check_key_ref(kms_key_id: str) -> None:
    try:
        ref = parse_kms_key_ref(kms_key_id)
    except InvalidName as exc:
        raise InvalidRequest(exc.message, kind="InvalidArgument") from None
    if ref.kind in (KeyRefKind.ALIAS_NAME, KeyRefKind.ALIAS_ARN):
        raise InvalidRequest("a directory bucket's KMS key must be given by key id or key ARN, "
                             "not by alias", kind="InvalidArgument")


def _usable_cmk_arn(meta: Mapping[str, Any], kms_key_id: str) -> str:
    state = meta.get("KeyState")
    if state == "Disabled":
        raise InvalidRequest(f"the KMS key {kms_key_id} is disabled", kind="DisabledException")
    if state != "Enabled":
        raise InvalidRequest(f"the KMS key {kms_key_id} is in state {state}",
                             kind="KMSInvalidStateException")
    if meta.get("KeyManager") == "AWS":
        raise InvalidRequest("AWS managed keys cannot be used for SSE-KMS on a directory bucket; "
                             "use a customer-managed key", kind="InvalidArgument")
    if meta.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT" or \
            meta.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT":
        raise InvalidRequest(f"the KMS key {kms_key_id} is not a symmetric encryption key",
                             kind="InvalidArgument")
    return meta["Arn"]
