"""Logging for every daemon: one line per event, key=value or JSON, never a secret.

``configure_logging`` is called once from a daemon's ``main``. Every record gets ``daemon`` and
``instance`` fields and the current request id (a contextvar the RPC server and the gateway
set). ``RedactingFilter`` is the last line of defence: it masks values of keys that look like
secrets (``secret``, ``signature``, ``token``, ``authorization``, ``password``, ``plaintext``,
``key_material``) in the formatted message, so a careless log call cannot leak them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_SECRET_RE = re.compile(
    r"(?i)\b([\w-]*(?:secret|signature|token|authorization|password|plaintext|key_material)[\w-]*)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;]+)"
)


def redact(text: str) -> str:
    return _SECRET_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", text)


class RedactingFilter(logging.Filter):
    def __init__(self, daemon: str, instance: str) -> None:
        super().__init__()
        self.daemon = daemon
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        record.msg = redact(msg)
        record.args = None
        record.daemon = self.daemon
        record.instance = self.instance
        record.request_id = request_id_var.get()
        return True


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        line = (f"ts={ts} level={record.levelname.lower()} daemon={record.daemon} "
                f"instance={record.instance} request_id={record.request_id} logger={record.name} "
                f"{record.getMessage()}")
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


_KV_RE = re.compile(r'([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_RESERVED = frozenset({"ts", "level", "daemon", "instance", "request_id", "logger", "msg", "exc"})


def parse_fields(message: str) -> dict[str, object] | None:
    """The ``key=value`` pairs of a message written in that style, or None when it is prose.

    Quoted values are JSON strings; integers and floats become numbers.
    """
    fields: dict[str, object] = {}
    pos = 0
    for m in _KV_RE.finditer(message):
        if message[pos:m.start()].strip():
            return None
        key, raw = m.group(1), m.group(2)
        value: object = raw
        if raw.startswith('"'):
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        else:
            try:
                value = int(raw) if raw.lstrip("-").isdigit() else float(raw) if _is_float(raw) else raw
            except ValueError:
                value = raw
        fields[key if key not in _RESERVED else f"field_{key}"] = value
        pos = m.end()
    if message[pos:].strip() or not fields:
        return None
    return fields


def _is_float(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return raw.lower() not in ("nan", "inf", "-inf", "infinity", "-infinity")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a ``key=value`` message's pairs become top-level fields."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        doc: dict[str, object] = {
            "ts": record.created, "level": record.levelname.lower(), "daemon": record.daemon,
            "instance": record.instance, "request_id": record.request_id, "logger": record.name,
        }
        fields = parse_fields(msg)
        if fields is None:
            doc["msg"] = msg
        else:
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def configure_logging(*, daemon: str, instance: str, json_format: bool = False, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(daemon, instance))
    handler.setFormatter(JsonFormatter() if json_format else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
