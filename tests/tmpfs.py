"""A small real tmpfs for full-disk tests: ``mounted_tmpfs(path, size)`` mounts one (root only)
and always unmounts it; ``pytest.skip`` with the reason when this machine cannot mount (not
root, or the kernel/container refuses). ``fill(path)`` takes every byte still free."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("a real ENOSPC needs a small tmpfs, and mounting one needs root (CI runs as root)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs refused here: {done.stderr.strip() or done.returncode}")


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def remount(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    _mount(path, size)
    try:
        yield path
    finally:
        unmount(path)


def fill(path: Path, *, leave: int = 0) -> Path:
    """Write a filler file until the disk is full (another process filling the disk), then
    give ``leave`` bytes back; the filler's path."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"\0" * 65536
        while True:
            try:
                n = os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    break
                block = block[:len(block) // 2]
                continue
            if n < len(block):
                block = block[:max(1, len(block) // 2)]
        if leave:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler
