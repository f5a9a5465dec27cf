"""``onezone audit``: filter the KMS audit log by key, event name, time and outcome.

    onezone audit [--data-dir onezone-data] [--file PATH] [--key-id ID|ARN|alias-free]
                  [--event-name Decrypt ...] [--since 2025-01-01T00:00:00Z] [--until ...]
                  [--errors-only] [--user ARN]

Reads the JSON-lines file the KMS daemon writes (``kms/audit.py``; default
``<data-dir>/kms/audit.jsonl``, as ``onezone up`` lays it out) as a stream, so memory stays
bounded whatever its size, and prints the matching records, one JSON object a line. A key
matches by id or ARN (the record's ``resources`` or ``requestParameters.keyId``). Malformed
lines are skipped and counted on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["main", "matches", "parse_time"]


def parse_time(text: str) -> str:
    """Normalize an ISO time to CloudTrail's ``YYYY-MM-DDTHH:MM:SSZ`` (string order = time order)."""
    import datetime

    try:
        dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def matches(rec: dict[str, Any], *, key: str | None = None, events: Iterable[str] = (),
            since: str | None = None, until: str | None = None, errors_only: bool = False,
            user: str | None = None) -> bool:
    """Does one audit record pass the filters (pure)?"""
    events = set(events)
    if events and rec.get("eventName") not in events:
        return False
    t = rec.get("eventTime", "")
    if (since is not None and t < since) or (until is not None and t > until):
        return False
    if errors_only and not rec.get("errorCode"):
        return False
    if user is not None and rec.get("userIdentity", {}).get("arn") != user:
        return False
    if key is not None:
        arns = [r.get("ARN", "") for r in rec.get("resources") or [] if isinstance(r, dict)]
        ref = (rec.get("requestParameters") or {}).get("keyId", "")
        names = [*arns, ref]
        if not any(n == key or n.endswith("/" + key) for n in names if isinstance(n, str)):
            return False
    return True


def _records(lines: Iterable[str], bad: list[int]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            bad[0] += 1
            continue
        if isinstance(rec, dict):
            yield rec
        else:
            bad[0] += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="onezone audit", description=(
        "Print the KMS audit records (CloudTrail-shaped JSON lines) that match the filters."))
    ap.add_argument("--data-dir", type=Path, default=Path("onezone-data"),
                    help="the cluster's data directory (default ./onezone-data); the log is <dir>/kms/audit.jsonl")
    ap.add_argument("--file", type=Path, help="the audit log itself (instead of --data-dir)")
    ap.add_argument("--key-id", help="a key id or key ARN")
    ap.add_argument("--event-name", action="append", default=[], help="e.g. Decrypt (repeatable)")
    ap.add_argument("--since", type=parse_time, help="ISO 8601 time, inclusive")
    ap.add_argument("--until", type=parse_time, help="ISO 8601 time, inclusive")
    ap.add_argument("--errors-only", action="store_true", help="only refused or failed requests")
    ap.add_argument("--user", help="only requests made on behalf of this IAM user ARN")
    args = ap.parse_args(argv)
    path = args.file or args.data_dir / "kms" / "audit.jsonl"
    try:
        fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as exc:
        print(f"onezone audit: {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    bad = [0]
    with fh:
        for rec in _records(fh, bad):
            if matches(rec, key=args.key_id, events=args.event_name, since=args.since, until=args.until,
                       errors_only=args.errors_only, user=args.user):
                sys.stdout.write(json.dumps(rec, separators=(",", ":")) + "\n")
    if bad[0]:
        print(f"onezone audit: skipped {bad[0]} malformed line(s)", file=sys.stderr)
    return 0
