"""Key management with AWS KMS semantics: states, deletion, rotation, policies, tags, aliases.

Responsibility
--------------
``KeyAdmin`` implements the management operations over a ``KmsService`` (which owns naming,
resolution and the crypto operations) and ``run_due``, the work of the background task:
keys whose deletion window ended are deleted for good, keys due for automatic rotation get
a new version. Synchronous and blocking (keystore writes); the daemon serializes calls.
Time comes from the service's injectable clock, so deletion and rotation are tested with a
fake clock.

State machine (as AWS)::

    Enabled  --DisableKey-->           Disabled      --EnableKey--> Enabled
    Enabled|Disabled --ScheduleKeyDeletion(7..30 days)--> PendingDeletion
    PendingDeletion  --CancelKeyDeletion--> Disabled   (the key must then be enabled again)
    PendingDeletion  --window ends (run_due)--> deleted: material, versions, aliases gone

Enable/Disable of a PendingDeletion key is ``KMSInvalidStateException``; so is scheduling a
key already pending and cancelling one that is not. Every state change is noted in the
service's ``StateFeed`` so nodes drop cached bucket keys within a second.

AWS-managed keys (``alias/aws/...``) cannot be managed (``UnsupportedOperationException``).
"""

from __future__ import annotations

import re
from typing import Any

from kms.crypto import new_master_key
from kms.keypolicy import decide, default_policy, parse_key_policy
from kms.keystore import KeyRecord
from kms.service import DAY_S, KmsService, validation_error
from proto.errors import Conflict, InvalidRequest, NotFound
from proto.policy import MalformedPolicy

__all__ = ["KeyAdmin", "check_policy"]

MIN_WINDOW_DAYS, MAX_WINDOW_DAYS, DEFAULT_WINDOW_DAYS = 7, 30, 30
MIN_PERIOD_DAYS, MAX_PERIOD_DAYS, DEFAULT_PERIOD_DAYS = 90, 2560, 365
MAX_ON_DEMAND_ROTATIONS = 10
MAX_TAGS = 50
MAX_ALIASES = 10_000
ALIAS_RE = re.compile(r"alias/[A-Za-z0-9/_-]{1,250}")


def _invalid_state(message: str) -> InvalidRequest:
    return InvalidRequest(message, kind="KMSInvalidStateException")


def check_policy(text: str, *, account_id: str, principal: str, key_arn: str, bypass: bool) -> str:
    """Validate a key policy for CreateKey/PutKeyPolicy, with AWS's lockout safety check.

    Raises:
        InvalidRequest (MalformedPolicyDocumentException): bad document, or one that would
            not let ``principal`` change the policy again (unless ``bypass``).
    """
    try:
        parse_key_policy(text)
    except MalformedPolicy as exc:
        raise InvalidRequest(f"The key policy is malformed: {exc}", kind="MalformedPolicyDocumentException") from None
    if not bypass and not decide(text, account_id=account_id, principal=principal,
                                 action="kms:PutKeyPolicy", key_arn=key_arn):
        raise InvalidRequest(
            "The new key policy will not allow you to update the key policy in the future "
            f"({principal} would lose kms:PutKeyPolicy); set BypassPolicyLockoutSafetyCheck to insist.",
            kind="MalformedPolicyDocumentException")
    return text


class KeyAdmin:
    def __init__(self, service: KmsService) -> None:
        self.svc = service
        self.store = service.store

    # -- helpers -------------------------------------------------------------------------------
    def _customer(self, key_id: str) -> KeyRecord:
        rec = self.svc.resolve(key_id)
        if rec.key_manager != "CUSTOMER":
            raise InvalidRequest(f"{self.svc.arn(rec.key_id)} is an AWS managed key: it cannot be "
                                 "managed by customers.", kind="UnsupportedOperationException")
        return rec

    def _set_state(self, rec: KeyRecord, state: str, **changes: Any) -> KeyRecord:
        new = self.store.update(rec.key_id, state=state, **changes)
        self.svc.feed.note(rec.key_id, state)
        return new

    # -- states ----------------------------------------------------------------------------------
    def enable_key(self, key_id: str) -> dict[str, Any]:
        rec = self._customer(key_id)
        if rec.state == "PendingDeletion":
            raise _invalid_state(f"{self.svc.arn(rec.key_id)} is pending deletion.")
        if rec.state != "Enabled":
            self._set_state(rec, "Enabled")
        return {}

    def disable_key(self, key_id: str) -> dict[str, Any]:
        rec = self._customer(key_id)
        if rec.state == "PendingDeletion":
            raise _invalid_state(f"{self.svc.arn(rec.key_id)} is pending deletion.")
        if rec.state != "Disabled":
            self._set_state(rec, "Disabled")
        return {}

    def schedule_key_deletion(self, key_id: str, *, pending_window_in_days: int = DEFAULT_WINDOW_DAYS) -> dict[str, Any]:
        if not MIN_WINDOW_DAYS <= pending_window_in_days <= MAX_WINDOW_DAYS:
            raise validation_error(f"PendingWindowInDays must be between {MIN_WINDOW_DAYS} and {MAX_WINDOW_DAYS}")
        rec = self._customer(key_id)
        if rec.state == "PendingDeletion":
            raise _invalid_state(f"{self.svc.arn(rec.key_id)} is pending deletion.")
        when = self.svc.clock() + pending_window_in_days * DAY_S
        self._set_state(rec, "PendingDeletion", deletion_date=when, pending_window_days=pending_window_in_days)
        return {"KeyId": self.svc.arn(rec.key_id), "DeletionDate": when, "KeyState": "PendingDeletion",
                "PendingWindowInDays": pending_window_in_days}

    def cancel_key_deletion(self, key_id: str) -> dict[str, Any]:
        rec = self._customer(key_id)
        if rec.state != "PendingDeletion":
            raise _invalid_state(f"{self.svc.arn(rec.key_id)} is not pending deletion.")
        self._set_state(rec, "Disabled", deletion_date=None, pending_window_days=None)
        return {"KeyId": self.svc.arn(rec.key_id)}

    # -- rotation --------------------------------------------------------------------------------
    def enable_key_rotation(self, key_id: str, *, rotation_period_in_days: int | None = None) -> dict[str, Any]:
        period = DEFAULT_PERIOD_DAYS if rotation_period_in_days is None else rotation_period_in_days
        if not MIN_PERIOD_DAYS <= period <= MAX_PERIOD_DAYS:
            raise validation_error(f"RotationPeriodInDays must be between {MIN_PERIOD_DAYS} and {MAX_PERIOD_DAYS}")
        rec = self.svc.usable(self._customer(key_id))
        self.store.update(rec.key_id, rotation_enabled=True, rotation_period_days=period,
                          next_rotation=self.svc.clock() + period * DAY_S)
        return {}

    def disable_key_rotation(self, key_id: str) -> dict[str, Any]:
        rec = self.svc.usable(self._customer(key_id))
        self.store.update(rec.key_id, rotation_enabled=False, next_rotation=None)
        return {}

    def get_key_rotation_status(self, key_id: str) -> dict[str, Any]:
        rec = self.svc.resolve(key_id)
        if rec.state == "PendingDeletion":
            raise _invalid_state(f"{self.svc.arn(rec.key_id)} is pending deletion.")
        out: dict[str, Any] = {"KeyRotationEnabled": rec.rotation_enabled, "KeyId": self.svc.arn(rec.key_id)}
        if rec.rotation_enabled:
            out["RotationPeriodInDays"] = rec.rotation_period_days
            if rec.next_rotation is not None:
                out["NextRotationDate"] = rec.next_rotation
        return out

    def rotate_key_on_demand(self, key_id: str) -> dict[str, Any]:
        rec = self.svc.usable(self._customer(key_id))
        if sum(v.rotation_type == "ON_DEMAND" for v in rec.versions) >= MAX_ON_DEMAND_ROTATIONS:
            raise InvalidRequest(f"A key may be rotated on demand at most {MAX_ON_DEMAND_ROTATIONS} times.",
                                 kind="LimitExceededException")
        self.store.add_version(rec.key_id, created=self.svc.clock(), material=new_master_key(self.svc.rng),
                               rotation_type="ON_DEMAND")
        return {"KeyId": self.svc.arn(rec.key_id)}

    def list_key_rotations(self, key_id: str, *, limit: int = 100, marker: str | None = None) -> dict[str, Any]:
        rec = self.svc.resolve(key_id)
        after = _int_marker(marker)
        rotations = [v for v in rec.versions if v.rotation_type != "INITIAL" and v.version > after]
        page = rotations[:limit]
        out: dict[str, Any] = {
            "Rotations": [{"KeyId": self.svc.arn(rec.key_id), "RotationDate": v.created,
                           "RotationType": v.rotation_type} for v in page],
            "Truncated": len(rotations) > limit}
        if out["Truncated"]:
            out["NextMarker"] = str(page[-1].version)
        return out

    # -- policies ----------------------------------------------------------------------------------
    def get_key_policy(self, key_id: str, *, policy_name: str = "default") -> dict[str, Any]:
        rec = self.svc.resolve(key_id)
        if policy_name != "default":
            raise NotFound(f"No such policy {policy_name!r}: a key has one policy, 'default'.",
                           kind="NotFoundException")
        return {"Policy": rec.policy or default_policy(self.svc.account_id), "PolicyName": "default"}

    def put_key_policy(self, key_id: str, *, policy: str, principal: str, policy_name: str = "default",
                       bypass_policy_lockout_safety_check: bool = False) -> dict[str, Any]:
        if policy_name != "default":
            raise validation_error("PolicyName must be 'default'")
        rec = self._customer(key_id)
        if rec.state == "PendingDeletion":
            raise _invalid_state(f"{self.svc.arn(rec.key_id)} is pending deletion.")
        check_policy(policy, account_id=self.svc.account_id, principal=principal,
                     key_arn=self.svc.arn(rec.key_id), bypass=bypass_policy_lockout_safety_check)
        self.store.update(rec.key_id, policy=policy)
        return {}

    # -- tags ----------------------------------------------------------------------------------------
    def tag_resource(self, key_id: str, *, tags: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        rec = self._customer(key_id)
        merged = dict(rec.tags)
        merged.update(tags)
        if len(merged) > MAX_TAGS:
            raise InvalidRequest(f"A key may have at most {MAX_TAGS} tags.", kind="TagException")
        self.store.update(rec.key_id, tags=tuple(merged.items()))
        return {}

    def untag_resource(self, key_id: str, *, tag_keys: list[str]) -> dict[str, Any]:
        rec = self._customer(key_id)
        self.store.update(rec.key_id, tags=tuple((k, v) for k, v in rec.tags if k not in set(tag_keys)))
        return {}

    def list_resource_tags(self, key_id: str, *, limit: int = 50, marker: str | None = None) -> dict[str, Any]:
        rec = self.svc.resolve(key_id)
        start = _int_marker(marker)
        tags = rec.tags[start:start + limit]
        out: dict[str, Any] = {"Tags": [{"TagKey": k, "TagValue": v} for k, v in tags],
                               "Truncated": start + limit < len(rec.tags)}
        if out["Truncated"]:
            out["NextMarker"] = str(start + limit)
        return out

    # -- aliases ---------------------------------------------------------------------------------------
    def _alias_name(self, name: str) -> str:
        if not ALIAS_RE.fullmatch(name):
            raise InvalidRequest(f"Invalid alias name {name!r}: must match alias/[A-Za-z0-9/_-]+ "
                                 "(at most 256 characters).", kind="InvalidAliasNameException")
        if name.startswith("alias/aws/") or name == "alias/aws":
            raise InvalidRequest(f"Alias {name} is reserved: alias/aws/ names AWS managed keys.",
                                 kind="NotAuthorizedException")
        return name

    def _alias_target(self, target_key_id: str) -> KeyRecord:
        if target_key_id.startswith("alias/") or ":alias/" in target_key_id:
            raise validation_error("TargetKeyId must be a key id or key ARN, not an alias.")
        rec = self._customer(target_key_id)
        if rec.state == "PendingDeletion":
            raise _invalid_state(f"{self.svc.arn(rec.key_id)} is pending deletion.")
        return rec

    def create_alias(self, *, alias_name: str, target_key_id: str) -> dict[str, Any]:
        name = self._alias_name(alias_name)
        rec = self._alias_target(target_key_id)
        if self.store.alias(name) is not None:
            raise Conflict(f"An alias with the name {self.svc.alias_arn(name)} already exists",
                           kind="AlreadyExistsException")
        if len(self.store.aliases()) >= MAX_ALIASES:
            raise InvalidRequest(f"At most {MAX_ALIASES} aliases.", kind="LimitExceededException")
        self.store.put_alias(name, rec.key_id, now=self.svc.clock(), create=True)
        return {}

    def update_alias(self, *, alias_name: str, target_key_id: str) -> dict[str, Any]:
        name = self._alias_name(alias_name)
        if self.store.alias(name) is None:
            raise NotFound(f"Alias {self.svc.alias_arn(name)} is not found.", kind="NotFoundException")
        rec = self._alias_target(target_key_id)
        self.store.put_alias(name, rec.key_id, now=self.svc.clock(), create=False)
        return {}

    def delete_alias(self, *, alias_name: str) -> dict[str, Any]:
        name = self._alias_name(alias_name)
        try:
            self.store.delete_alias(name)
        except KeyError:
            raise NotFound(f"Alias {self.svc.alias_arn(name)} is not found.", kind="NotFoundException") from None
        return {}

    def list_aliases(self, *, key_id: str | None = None, limit: int = 100,
                     marker: str | None = None) -> dict[str, Any]:
        only = self.svc.resolve(key_id).key_id if key_id is not None else None
        entries: list[dict[str, Any]] = []
        for a in self.store.aliases():
            entries.append({"AliasName": a.name, "AliasArn": self.svc.alias_arn(a.name), "TargetKeyId": a.key_id,
                            "CreationDate": a.created, "LastUpdatedDate": a.updated})
        for alias, kid in self.store.managed_aliases().items():
            rec = self.store.get(kid)
            entries.append({"AliasName": f"alias/{alias}", "AliasArn": self.svc.alias_arn(f"alias/{alias}"),
                            "TargetKeyId": kid, "CreationDate": rec.created if rec else 0.0,
                            "LastUpdatedDate": rec.created if rec else 0.0})
        entries = sorted((e for e in entries if only is None or e["TargetKeyId"] == only),
                         key=lambda e: e["AliasName"])
        if marker is not None:
            entries = [e for e in entries if e["AliasName"] > marker]
        page = entries[:limit]
        out: dict[str, Any] = {"Aliases": page, "Truncated": len(entries) > limit}
        if out["Truncated"]:
            out["NextMarker"] = page[-1]["AliasName"]
        return out

    # -- the background task's work --------------------------------------------------------------
    def run_due(self) -> list[tuple[str, str]]:
        """Delete keys whose window ended, rotate keys whose rotation is due (Enabled ones).

        Returns:
            ``[(key_id, "Deleted" | "Rotated")]`` for what was done (for logs and audit).
        """
        now = self.svc.clock()
        done: list[tuple[str, str]] = []
        for rec in self.store.records():
            if rec.state == "PendingDeletion" and rec.deletion_date is not None and rec.deletion_date <= now:
                self.store.delete_key(rec.key_id)
                self.svc.feed.note(rec.key_id, "Deleted")
                done.append((rec.key_id, "Deleted"))
            elif (rec.state == "Enabled" and rec.rotation_enabled and rec.next_rotation is not None
                  and rec.next_rotation <= now):
                self.store.add_version(rec.key_id, created=now, material=new_master_key(self.svc.rng),
                                       rotation_type="AUTOMATIC",
                                       next_rotation=now + rec.rotation_period_days * DAY_S)
                done.append((rec.key_id, "Rotated"))
        return done


def _int_marker(marker: str | None) -> int:
    if marker is None:
        return 0
    if not marker.isdigit() or len(marker) > 9:
        raise validation_error("invalid Marker")
    return int(marker)

