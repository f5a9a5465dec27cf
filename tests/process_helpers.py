"""Helpers for tests that run a daemon as a real process (`python -m <daemon> --config FILE`)."""

from __future__ import annotations

import json
import subprocess
import threading


def read_ready(proc: subprocess.Popen, deadline_s: float = 15.0) -> dict:
    """Read stdout lines until ``READY {json}``, in a thread so the deadline holds even if
    nothing comes; return the announced addresses."""
    found: dict = {}

    def reader() -> None:
        for line in proc.stdout:
            if line.startswith(b"READY "):
                found.update(json.loads(line[6:]))
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(deadline_s)
    assert found, f"no READY line within {deadline_s}s (exit code {proc.poll()})"
    return found
