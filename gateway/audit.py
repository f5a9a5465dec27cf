"""The gateway's S3 audit log: CloudTrail-shaped data events, one JSON line per request.

Responsibility
--------------
``format_event`` (pure: time, ids and facts come in as arguments) describes one S3 request as
a CloudTrail ``AwsApiCall`` record: ``eventSource`` ``s3express.amazonaws.com``, object
operations and ``CreateSession`` as data events (``eventCategory: Data``), bucket operations as
management events, and every refused request (``errorCode``) whatever its kind.
``should_record`` says which requests get a record. ``AuditFile`` appends the records to a
JSON-lines file: one ``write`` + ``flush`` per record (the OS has it before the response's last
byte is counted), ``fsync`` batched by a background task at most every ``fsync_interval_s``
(and on close), and rotation by size: when the file would pass ``max_bytes`` it is fsynced and
renamed ``<name>.1`` (older ones shift to ``.2`` .. ``.keep``; the oldest is removed).

Invariants
----------
- No secret reaches a record: no ``Authorization`` header, signature, session token, secret
  key or presigned query string; only the access key id (as CloudTrail logs it), the bucket,
  the object key, the session mode, byte counts and the error code.
- Values from the request are truncated (``MAX_STRING``) and JSON-escaped, so a hostile client
  can neither bloat a record nor forge a line.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import trio

log = logging.getLogger(__name__)

EVENT_VERSION = "1.10"
EVENT_SOURCE = "s3express.amazonaws.com"
MAX_STRING = 1024
# forwarded protocols audited elsewhere (the KMS and the coordinator keep their own records),
# unless the gateway itself refused the request
NOT_RECORDED = frozenset({"KmsJson", "IamQuery"})
READ_ONLY = frozenset({"GetObject", "HeadObject", "HeadBucket", "ListObjectsV2", "ListObjects",
                       "GetObjectAttributes", "ListParts", "ListMultipartUploads", "GetBucketEncryption",
                       "GetBucketPolicy", "ListDirectoryBuckets", "ListBuckets"})
BUCKET_MANAGEMENT = frozenset({"CreateBucket", "DeleteBucket", "HeadBucket", "PutBucketEncryption",
                               "GetBucketEncryption", "DeleteBucketEncryption", "PutBucketPolicy",
                               "GetBucketPolicy", "DeleteBucketPolicy", "ListDirectoryBuckets", "ListBuckets"})


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Event:
    """The facts of one S3 request, as the gateway knows them when the response is sent."""

    operation: str
    time: float
    request_id: str
    event_id: str
    region: str
    account_id: str
    status: int
    source_ip: str = ""
    user_agent: str = ""
    host: str = ""
    bucket: str | None = None
    key: str | None = None
    access_key_id: str | None = None
    user_arn: str | None = None
    user_name: str | None = None
    session_mode: str | None = None  # the session that signed the request, if any
    create_session_mode: str | None = None  # CreateSession's x-amz-create-session-mode
    presigned: bool = False
    bytes_in: int = 0
    bytes_out: int = 0
    error_code: str | None = None
    error_message: str | None = None


def should_record(operation: str, status: int) -> bool:
    """Every S3 request; forwarded KMS/IAM calls only when refused (401/403)."""
    return operation not in NOT_RECORDED or status in (401, 403)


def _trunc(value: str | None) -> str | None:
    if value is None:
        return None
    return value if len(value) <= MAX_STRING else value[:MAX_STRING] + "..."


def format_time(epoch: float) -> str:
    """ISO 8601 UTC with a ``Z`` suffix, second precision, as CloudTrail writes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _identity(ev: S3Event) -> dict[str, Any]:
    if ev.user_arn is None:
        ident: dict[str, Any] = {"type": "Unknown", "accountId": ev.account_id}
        if ev.access_key_id:
            ident["accessKeyId"] = _trunc(ev.access_key_id)
        return ident
    ident = {"type": "IAMUser", "principalId": _trunc(ev.user_name or ev.user_arn), "arn": _trunc(ev.user_arn),
             "accountId": ev.account_id, "accessKeyId": _trunc(ev.access_key_id or ""),
             "userName": _trunc(ev.user_name or "")}
    if ev.session_mode:
        ident["sessionContext"] = {"attributes": {"sessionMode": ev.session_mode}}
    return ident


def _resources(ev: S3Event) -> list[dict[str, str]]:
    if not ev.bucket:
        return []
    bucket_arn = f"arn:aws:s3express:{ev.region}:{ev.account_id}:bucket/{_trunc(ev.bucket)}"
    out = []
    if ev.key is not None:
        out.append({"type": "AWS::S3Express::Object", "ARN": f"{bucket_arn}/{_trunc(ev.key)}"})
    out.append({"accountId": ev.account_id, "type": "AWS::S3Express::DirectoryBucket", "ARN": bucket_arn})
    return out


def format_event(ev: S3Event) -> dict[str, Any]:
    """The CloudTrail record of one S3 request (JSON-serializable)."""
    params: dict[str, Any] = {}
    if ev.bucket:
        params["bucketName"] = _trunc(ev.bucket)
    if ev.host:
        params["Host"] = _trunc(ev.host)
    if ev.key is not None:
        params["key"] = _trunc(ev.key)
    if ev.create_session_mode is not None:
        params["x-amz-create-session-mode"] = _trunc(ev.create_session_mode)
    management = ev.operation in BUCKET_MANAGEMENT
    record: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": _identity(ev),
        "eventTime": format_time(ev.time),
        "eventSource": EVENT_SOURCE,
        "eventName": ev.operation,
        "awsRegion": ev.region,
        "sourceIPAddress": ev.source_ip,
        "userAgent": _trunc(ev.user_agent) or "",
        "requestParameters": params or None,
        "responseElements": None,
        "additionalEventData": {
            "SignatureVersion": "SigV4",
            "AuthenticationMethod": "QueryString" if ev.presigned else "AuthHeader",
            "bytesTransferredIn": ev.bytes_in,
            "bytesTransferredOut": ev.bytes_out,
            "httpStatusCode": ev.status,
            "x-amz-id-2": ev.request_id,
        },
        "requestID": ev.request_id,
        "eventID": ev.event_id,
        "readOnly": ev.operation in READ_ONLY,
        "resources": _resources(ev),
        "eventType": "AwsApiCall",
        "managementEvent": management,
        "recipientAccountId": ev.account_id,
        "eventCategory": "Management" if management else "Data",
    }
    if ev.error_code:
        record["errorCode"] = _trunc(ev.error_code)
        record["errorMessage"] = _trunc(ev.error_message or "")
    return record


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One JSON line (UTF-8, ending in a newline; JSON escapes any newline inside a value)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class AuditFile:
    """Append-only JSON-lines file with batched fsync and rotation by size."""

    def __init__(self, path: Path, *, max_bytes: int, keep: int, fsync_interval_s: float = 0.1) -> None:
        """Open (create, mode 0600) ``path`` for appending. Blocking.

        Raises:
            OSError: the file cannot be opened.
            ValueError: ``max_bytes`` < 4096 or ``keep`` < 1.
        """
        if max_bytes < 4096 or keep < 1:
            raise ValueError("audit max_bytes must be >= 4096 and keep >= 1")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._interval = fsync_interval_s
        self._dirty = trio.Event()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._file = self._open()
        self._size = os.fstat(self._file.fileno()).st_size
        self.closed = False

    def _open(self) -> BinaryIO:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return os.fdopen(fd, "ab")

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record, rotating first when it would pass ``max_bytes``.

        Raises:
            OSError: the write failed.
        """
        line = encode_record(record)
        if self._size and self._size + len(line) > self.max_bytes:
            self._rotate()
        self._file.write(line)
        self._file.flush()
        self._size += len(line)
        self._dirty.set()

    def _rotate(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = self._open()
        self._size = 0
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        log.info("event=audit_rotated path=%s keep=%d", self.path, self.keep)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fsync whenever records were written, at most once per interval, until cancelled."""
        task_status.started()
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            try:
                await trio.to_thread.run_sync(os.fsync, self._file.fileno())
            except (OSError, ValueError) as exc:  # ValueError: closed by a rotation meanwhile
                log.warning("event=audit_fsync_failed path=%s error=%s", self.path, exc)
                self._dirty.set()
            await trio.sleep(self._interval)

    def close(self) -> None:
        """Final fsync and close. Blocking; idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            log.error("event=audit_fsync_failed path=%s error=%s", self.path, exc.strerror or exc)
        finally:
            self._file.close()
