"""The KMS audit log: one CloudTrail-shaped JSON line per request.

Responsibility
--------------
Describe every KMS request, allowed or refused, as a CloudTrail record (``format_record``,
pure: the caller supplies time and ids) and append it to the audit file (``AuditLog``:
records are queued in memory and group-committed by a committer thread, one ``write`` and one
``fsync`` for every record queued since its last group;
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

    ``write`` encodes a record and queues it (no I/O on the event loop). A committer thread
    (started by ``run``) loops: it takes every record queued so far, appends them with one
    ``write``, makes them durable with one ``fsync``, reports that to trio, and goes straight on
    with whatever was queued meanwhile; it sleeps only when the queue is empty (then ``write``
    wakes it). ``durable(seq)`` waits until the group that carried record ``seq`` is on disk.
    Records reach the file in ``write`` order. A failed write or fsync fails ``durable`` for the
    records it carried (their callers must not report success); the unwritten rest is retried
    after a pause.
    """

    RETRY_PAUSE_S = 0.1

    def __init__(self, path: Path, file: BinaryIO, *, fsync_interval_s: float = 0.0,
                 observe: Callable[[float], None] | None = None) -> None:
        """Private: use ``AuditLog.open``. ``fsync_interval_s``: minimum pause between fsyncs;
        ``observe``: called with the duration of each group's write + fsync."""
        self.path = path
        self._file = file
        self._fd = file.fileno()
        self._interval = fsync_interval_s
        self._observe = observe
        self._synced = trio.Event()
        # shared with the committer thread, under _mutex:
        self._mutex = threading.Lock()
        self._queue: list[bytes] = []  # encoded records not yet handed to the OS
        self._written = 0  # sequence number of the last record queued
        self._idle = False  # the committer waits for a kick
        self._stop = False
        self._kick = threading.Lock()
        self._kick.acquire()
        # committer thread only:
        self._unwritten = b""  # the part of a group a failed write left behind
        # trio side only:
        self._durable = 0  # sequence number of the last record known to be on disk
        self._failed_upto = 0  # records up to here were in a group whose write or fsync failed
        self._failure: OSError | None = None
        self._thread: threading.Thread | None = None
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
        """Queue one record (a dict, or its line from ``encode_event``) for the next group commit.

        Returns:
            The record's sequence number, for ``durable``.
        """
        line = record if isinstance(record, bytes) else encode_record(record)
        with self._mutex:
            self._queue.append(line)
            self._written += 1
            seq = self._written
            kick, self._idle = self._idle, False
        if kick:
            self._kick.release()
        return seq

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
        """Append ``data`` (all of it) and fsync. Blocking; raises OSError."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        finally:
            self._unwritten = bytes(view)
        os.fsync(self._fd)

    def _committer(self, token: trio.lowlevel.TrioToken) -> None:
        """The committer thread's loop (see the class docstring)."""
        while True:
            with self._mutex:
                if self._stop:
                    return
                if not self._queue and not self._unwritten:
                    self._idle = True
                    data = None
                else:
                    data = self._unwritten + b"".join(self._queue)
                    self._queue = []
                    target = self._written
            if data is None:
                self._kick.acquire()  # write() or stop() releases it
                continue
            begin = time.perf_counter()
            error: OSError | None = None
            try:
                self._commit(data)
            except OSError as exc:
                error = exc
            try:
                token.run_sync_soon(self._group_done, target, error, time.perf_counter() - begin)
            except trio.RunFinishedError:
                return
            if error is not None:
                time.sleep(self.RETRY_PAUSE_S)  # a full or failing disk: do not spin
            elif self._interval:
                time.sleep(self._interval)

    def _group_done(self, target: int, error: OSError | None, seconds: float) -> None:
        """In trio: records up to ``target`` are durable, or their group failed."""
        if error is not None:
            log.error("event=audit_write_failed path=%s error=%s", self.path, error.strerror or error)
            self._failure = error
            self._failed_upto = target
        else:
            self._failure = None
            self._durable = target
            self.groups += 1
            if self._observe is not None:
                self._observe(seconds)
        synced, self._synced = self._synced, trio.Event()
        synced.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the committer thread until cancelled; then wait for the group it is writing."""
        self._thread = threading.Thread(target=self._committer, args=(trio.lowlevel.current_trio_token(),),
                                        name="audit-commit", daemon=True)
        self._thread.start()
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with self._mutex:
                self._stop = True
                kick, self._idle = self._idle, False
            if kick:
                self._kick.release()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._thread.join)

    def close(self) -> None:
        """Write what is queued, fsync and close (after ``run`` ended). Blocking; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            with self._mutex:
                data = self._unwritten + b"".join(self._queue)
                self._queue = []
            self._commit(data)
        except OSError as exc:
            log.error("event=audit_write_failed path=%s error=%s", self.path, exc.strerror or exc)
        finally:
            self._file.close()
