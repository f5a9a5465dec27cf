"""The KMS audit log: one CloudTrail-shaped JSON line per request.

Responsibility
--------------
Describe every KMS request, allowed or refused, as a CloudTrail record (``format_record``,
pure: the caller supplies time and ids) and append it to the audit file (``AuditLog``:
records are queued in memory and group-committed by a background task, one ``write`` and one
``fsync`` in one hop to a committer thread for every record queued since the last group;
``durable(seq)`` waits until the group that carried record ``seq`` is on disk).

Invariants
----------
- No secret ever reaches a record: ``request_parameters`` copies an allow-list of argument
  names per operation (key id, encryption context, byte counts, description, tags, paging)
  and never ``plaintext`` or ``ciphertext_blob``; ``responseElements`` carries only the key
  id. Encryption context is logged, as AWS CloudTrail does: it is not secret by contract.
- Values from the request are logged only when they have the expected type, and strings are
  truncated, so a hostile caller cannot bloat or corrupt the log.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import trio

log = logging.getLogger(__name__)

EVENT_VERSION = "1.08"
EVENT_SOURCE = "kms.amazonaws.com"
MAX_STRING = 2048
MAX_CONTEXT_PAIRS = 64
# Operations that change nothing, as CloudTrail marks them.
READ_ONLY = frozenset({"DescribeKey", "ListKeys", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                       "Encrypt", "Decrypt", "ReEncrypt", "GenerateRandom", "ListAliases", "GetKeyPolicy",
                       "GetKeyRotationStatus", "ListKeyRotations", "ListResourceTags", "KeyStateChanges"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """What happened in one request, as the handler layer knows it."""

    operation: str
    principal: str
    region: str
    account_id: str
    time: float
    request_id: str
    event_id: str
    source: str = ""
    caller: str | None = None
    request_parameters: Mapping[str, Any] | None = None
    key_arn: str | None = None
    error_code: str | None = None
    error_message: str | None = None


def _trunc(value: str) -> str:
    return value if len(value) <= MAX_STRING else value[:MAX_STRING] + "..."


def _context(value: Any) -> dict[str, str] | None:
    if not isinstance(value, Mapping) or len(value) > MAX_CONTEXT_PAIRS:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return {_trunc(k): _trunc(v) for k, v in value.items()}


def _tags(value: Any) -> list[dict[str, str]] | None:
    if not isinstance(value, list) or len(value) > 50:
        return None
    out = []
    for tag in value:
        if not isinstance(tag, Mapping):
            return None
        k, v = tag.get("TagKey"), tag.get("TagValue")
        if not isinstance(k, str) or not isinstance(v, str):
            return None
        out.append({"tagKey": _trunc(k), "tagValue": _trunc(v)})
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _string(value: Any) -> str | None:
    return _trunc(value) if isinstance(value, str) else None


# arg name -> (CloudTrail name, sanitizer). Anything not listed is never logged.
_PARAMS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "key_id": ("keyId", _string),
    "encryption_context": ("encryptionContext", _context),
    "number_of_bytes": ("numberOfBytes", _int),
    "description": ("description", _string),
    "tags": ("tags", _tags),
    "limit": ("limit", _int),
    "marker": ("marker", _string),
    "alias": ("alias", _string),
    "alias_name": ("aliasName", _string),
    "target_key_id": ("targetKeyId", _string),
    "source_key_id": ("sourceKeyId", _string),
    "destination_key_id": ("destinationKeyId", _string),
    "source_encryption_context": ("sourceEncryptionContext", _context),
    "destination_encryption_context": ("destinationEncryptionContext", _context),
    "pending_window_in_days": ("pendingWindowInDays", _int),
    "rotation_period_in_days": ("rotationPeriodInDays", _int),
    "policy_name": ("policyName", _string),
    "policy": ("policy", _string),
    "bypass_policy_lockout_safety_check": ("bypassPolicyLockoutSafetyCheck",
                                           lambda v: v if isinstance(v, bool) else None),
    "tag_keys": ("tagKeys", lambda v: [_trunc(k) for k in v[:50] if isinstance(k, str)]
                 if isinstance(v, list) else None),
}
_FIXED: dict[str, dict[str, str]] = {
    "CreateKey": {"keyUsage": "ENCRYPT_DECRYPT", "keySpec": "SYMMETRIC_DEFAULT"},
    "Encrypt": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
    "Decrypt": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
    "ReEncrypt": {"sourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                  "destinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT"},
}


def request_parameters(operation: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The loggable part of a request's arguments (never plaintext or blobs).

    Args:
        operation: the KMS operation name.
        args: the raw RPC arguments, possibly invalid.

    Returns:
        CloudTrail ``requestParameters``: known, well-typed, truncated values only.
    """
    out: dict[str, Any] = dict(_FIXED.get(operation, {}))
    if not isinstance(args, Mapping):
        return out
    for name, (trail_name, clean) in _PARAMS.items():
        if name in args:
            value = clean(args[name])
            if value is not None:
                out[trail_name] = value
    return out


_last_time: tuple[int, str] = (-1, "")


def format_time(epoch: float) -> str:
    """ISO 8601 UTC with a ``Z`` suffix, second precision, as CloudTrail writes it."""
    global _last_time
    second = int(epoch // 1)
    if _last_time[0] != second:  # one strftime per second, not per record
        _last_time = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _last_time[1]


class EventIds:
    """Unique, UUID-shaped CloudTrail ``eventID``s: a random (version 4) prefix drawn once, then a
    counter; unique within a process run and across runs (the prefix), and ~10x cheaper than a
    ``uuid4()`` per record."""

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:19]  # xxxxxxxx-xxxx-4xxx-
        self._next = 0

    def __call__(self) -> str:
        self._next += 1
        n = self._next
        return f"{self._prefix}{0x8000 | (n >> 48) & 0x3fff:04x}-{n & 0xffffffffffff:012x}"


def format_record(ev: AuditEvent) -> dict[str, Any]:
    """Build the CloudTrail record of one request.

    Args:
        ev: the request's facts.

    Returns:
        A JSON-serializable dict in the CloudTrail ``AwsApiCall`` shape.
    """
    identity: dict[str, Any] = {
        "type": "IAMUser" if ev.caller else "AWSService",
        "principalId": ev.principal,
        "accountId": ev.account_id,
    }
    if ev.caller:
        identity["arn"] = _trunc(ev.caller)
        identity["invokedBy"] = ev.principal
    record: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": identity,
        "eventTime": format_time(ev.time),
        "eventSource": EVENT_SOURCE,
        "eventName": ev.operation,
        "awsRegion": ev.region,
        "sourceIPAddress": ev.source or ev.principal,
        "userAgent": f"onezone/{ev.principal}",
        "requestParameters": dict(ev.request_parameters or {}),
        "responseElements": None,
        "requestID": ev.request_id,
        "eventID": ev.event_id,
        "readOnly": ev.operation in READ_ONLY,
        "resources": [],
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ev.account_id,
        "eventCategory": "Management",
    }
    if ev.key_arn:
        record["resources"] = [{"accountId": ev.account_id, "type": "AWS::KMS::Key", "ARN": ev.key_arn}]
    if ev.error_code:
        record["errorCode"] = ev.error_code
        record["errorMessage"] = _trunc(ev.error_message or "")
    elif ev.key_arn:
        record["responseElements"] = {"keyId": ev.key_arn}
    return record


# json.dumps builds a new encoder per call when given options: keep one (it is stateless)
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One JSON line (UTF-8, ending in a newline, no embedded newline)."""
    return _JSON(record).encode() + b"\n"


_str = json.encoder.encode_basestring  # the encoder json.dumps(ensure_ascii=False) uses (C)


def encode_event(ev: AuditEvent) -> bytes:
    """``encode_record(format_record(ev))``, byte for byte, without building the dict: the static
    parts of the record are literal text and only the request's values are encoded (this runs
    once per KMS request; tests check the two agree)."""
    principal, account = _str(ev.principal), _str(ev.account_id)
    if ev.caller:
        identity = (f'{{"type":"IAMUser","principalId":{principal},"accountId":{account},'
                    f'"arn":{_str(_trunc(ev.caller))},"invokedBy":{principal}}}')
    else:
        identity = f'{{"type":"AWSService","principalId":{principal},"accountId":{account}}}'
    params = _JSON(dict(ev.request_parameters or {}))
    arn = _str(ev.key_arn) if ev.key_arn else None
    resources = f'[{{"accountId":{account},"type":"AWS::KMS::Key","ARN":{arn}}}]' if arn else "[]"
    response = f'{{"keyId":{arn}}}' if arn and not ev.error_code else "null"
    line = (f'{{"eventVersion":"{EVENT_VERSION}","userIdentity":{identity},'
            f'"eventTime":"{format_time(ev.time)}","eventSource":"{EVENT_SOURCE}",'
            f'"eventName":{_str(ev.operation)},"awsRegion":{_str(ev.region)},'
            f'"sourceIPAddress":{_str(ev.source or ev.principal)},"userAgent":{_str("onezone/" + ev.principal)},'
            f'"requestParameters":{params},"responseElements":{response},"requestID":{_str(ev.request_id)},'
            f'"eventID":{_str(ev.event_id)},"readOnly":{"true" if ev.operation in READ_ONLY else "false"},'
            f'"resources":{resources},"eventType":"AwsApiCall","managementEvent":true,'
            f'"recipientAccountId":{account},"eventCategory":"Management"')
    if ev.error_code:
        line += f',"errorCode":{_str(ev.error_code)},"errorMessage":{_str(_trunc(ev.error_message or ""))}'
    return (line + "}\n").encode()


class AuditLog:
    """Append-only audit file written by group commit.

    ``write`` encodes a record and queues it (no I/O on the event loop); ``run`` takes every
    queued record, and in one hop to its committer thread appends them with one ``write`` and makes them
    durable with one ``fsync``; ``durable(seq)`` waits for that. Records reach the file in
    ``write`` order. A failed write or fsync fails ``durable`` for the records it carried (their
    callers must not report success) and is retried with the next group.
    """

    def __init__(self, path: Path, file: BinaryIO, *, fsync_interval_s: float = 0.0,
                 observe: Callable[[float], None] | None = None) -> None:
        """Private: use ``AuditLog.open``. ``fsync_interval_s``: minimum pause between fsyncs;
        ``observe``: called with the duration of each group's write + fsync."""
        self.path = path
        self._file = file
        self._fd = file.fileno()
        self._interval = fsync_interval_s
        self._observe = observe
        self._dirty = trio.Event()
        self._synced = trio.Event()
        self._queue: list[bytes] = []  # encoded records not yet handed to the OS
        self._unwritten = b""  # the part of a group a failed write left behind
        self._written = 0  # sequence number of the last record queued
        self._durable = 0  # ... of the last record known to be on disk
        self._failed_upto = 0  # records up to here were in a group whose write or fsync failed
        self._failure: OSError | None = None
        self._closed = False
        self.groups = 0  # group commits done (records / groups = batching)

    @classmethod
    def open(cls, path: Path, *, fsync_interval_s: float = 0.0,
             observe: Callable[[float], None] | None = None) -> AuditLog:
        """Open (create, mode 0600) the audit file for appending. Blocking.

        Raises:
            OSError: the file cannot be opened.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return cls(path, os.fdopen(fd, "ab", buffering=0), fsync_interval_s=fsync_interval_s,
                   observe=observe)

    def write(self, record: Mapping[str, Any] | bytes) -> int:
        """Queue one record (a dict, or its line from ``encode_event``) for the next group commit
        (``run`` writes and fsyncs it).

        Returns:
            The record's sequence number, for ``durable``.
        """
        self._queue.append(record if isinstance(record, bytes) else encode_record(record))
        self._written += 1
        self._dirty.set()
        return self._written

    async def durable(self, seq: int) -> None:
        """Wait until record ``seq`` is on disk (needs ``run`` running).

        Raises:
            OSError: the write or fsync of the group that carried it failed.
        """
        while self._durable < seq:
            if self._failure is not None and seq <= self._failed_upto:
                raise self._failure
            await self._synced.wait()

    def _commit(self, data: bytes) -> None:
        """Worker thread: append ``data`` (all of it) and fsync. Raises OSError."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        finally:
            self._unwritten = bytes(view)
        os.fsync(self._fd)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Group commit until cancelled: whenever records were queued, one write and one fsync
        (in one hop to the committer thread) cover them all."""
        committer = _Committer(self._commit, trio.lowlevel.current_trio_token())
        task_status.started()
        try:
            while True:
                await self._dirty.wait()
                self._dirty = trio.Event()
                target = self._written
                data = self._unwritten + b"".join(self._queue)
                self._queue = []
                begin = time.perf_counter()
                failure = await committer.run(data)
                if failure is not None:
                    log.error("event=audit_write_failed path=%s error=%s", self.path,
                              failure.strerror or failure)
                    self._failure = failure
                    self._failed_upto = target
                    if self._unwritten:
                        self._dirty.set()  # retry what was not written with the next group
                else:
                    self._failure = None
                    self._durable = target
                    self.groups += 1
                    if self._observe is not None:
                        self._observe(time.perf_counter() - begin)
                synced, self._synced = self._synced, trio.Event()
                synced.set()
                if self._interval:
                    await trio.sleep(self._interval)
        finally:
            committer.stop()

    def close(self) -> None:
        """Write what is queued, fsync and close. Blocking; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._commit(self._unwritten + b"".join(self._queue))
            self._queue = []
        except OSError as exc:
            log.error("event=audit_write_failed path=%s error=%s", self.path, exc.strerror or exc)
        finally:
            self._file.close()


class _Committer:
    """One long-lived thread that runs the group commit's blocking write + fsync.

    The commit is strictly serial, so one thread suffices; handing it a group costs a lock
    release and a ``run_sync_soon`` back, about a third of the CPU of a ``trio.to_thread`` hop
    (thread cache, capacity limiter, context copy, thread naming), measured per group.
    """

    def __init__(self, fn: Callable[[bytes], None], token: trio.lowlevel.TrioToken) -> None:
        self._fn = fn
        self._token = token
        self._go = threading.Lock()
        self._go.acquire()
        self._job: tuple[bytes, Callable[[BaseException | None], None]] | None = None
        self._thread = threading.Thread(target=self._loop, name="audit-commit", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            job = self._job
            if job is None:
                return  # stop
            data, done = job
            error: BaseException | None = None
            try:
                self._fn(data)
            except BaseException as exc:  # handed to the trio side
                error = exc
            try:
                self._token.run_sync_soon(done, error)
            except trio.RunFinishedError:
                return

    async def run(self, data: bytes) -> OSError | None:
        """Write and fsync ``data`` in the thread; the OSError it raised, if any. Not
        cancellable: records handed over are written (like ``trio.to_thread.run_sync``)."""
        outcome: list[BaseException | None] = []
        finished = trio.Event()

        def done(error: BaseException | None) -> None:
            outcome.append(error)
            finished.set()

        self._job = (data, done)
        self._go.release()
        with trio.CancelScope(shield=True):
            await finished.wait()
        error = outcome[0]
        if error is not None and not isinstance(error, OSError):
            raise error
        return error

    def stop(self) -> None:
        self._job = None
        self._go.release()
