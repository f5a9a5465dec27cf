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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": record.created, "level": record.levelname.lower(), "daemon": record.daemon,
            "instance": record.instance, "request_id": record.request_id, "logger": record.name,
            "msg": record.getMessage(),
        }
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
