"""File-level primitives of the KMS keystore: the operator's root key and atomic replacement.

Responsibility
--------------
``load_root_key`` reads the root key from a file (refused when group or others may access it)
or an environment variable, with a message that says exactly what is wrong; ``atomic_write``
replaces a file so that a crash leaves the old or the new content, never a torn one
(temp file in the same directory, fsync, rename, fsync of the directory).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from kms.crypto import parse_root_key

__all__ = ["KeystoreError", "TMP_PREFIX", "atomic_write", "load_root_key"]

TMP_PREFIX = ".keys.json.tmp-"


class KeystoreError(Exception):
    """The keystore or the root key cannot be used; the message is for the operator."""


# -- root key -----------------------------------------------------------------------------


def load_root_key(
    *, root_key_file: Path | None, root_key_env: str | None, environ: Mapping[str, str]
) -> bytes:
    """Read and check the root key from a file or an environment variable.

    Args:
        root_key_file: path of a regular file, mode without group/other bits.
        root_key_env: name of an environment variable (used when root_key_file is None).
        environ: the environment to read ``root_key_env`` from.

    Returns:
        The 32-byte root key.

    Raises:
        KeystoreError: missing, unreadable, malformed, or group/world accessible.
    """
    if root_key_file is not None:
        try:
            fd = os.open(root_key_file, os.O_RDONLY)
        except FileNotFoundError:
            raise KeystoreError(f"root_key_file {root_key_file}: no such file") from None
        except OSError as exc:
            raise KeystoreError(f"root_key_file {root_key_file}: cannot open: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KeystoreError(f"root_key_file {root_key_file}: not a regular file")
            if st.st_mode & 0o077:
                raise KeystoreError(
                    f"root_key_file {root_key_file}: mode {stat.S_IMODE(st.st_mode):04o} lets group or "
                    f"others access the root key; run `chmod 600 {root_key_file}`")
            try:
                raw = os.read(fd, 4096)
            except OSError as exc:
                raise KeystoreError(f"root_key_file {root_key_file}: cannot read: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        where = f"root_key_file {root_key_file}"
    elif root_key_env is not None:
        raw = environ.get(root_key_env, "")
        if not raw:
            raise KeystoreError(f"root_key_env: environment variable {root_key_env} is not set or empty")
        where = f"root_key_env {root_key_env}"
    else:
        raise KeystoreError("no root key configured: set root_key_file or root_key_env")
    try:
        return parse_root_key(raw)
    except ValueError as exc:
        raise KeystoreError(f"{where}: {exc}") from None


# -- atomic file replacement --------------------------------------------------------------


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600,
                 fsync: Callable[[int], None] = os.fsync) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content.

    Writes a temp file in the same directory, fsyncs it, renames it over ``path`` and fsyncs
    the directory. On any failure the temp file is removed and ``path`` is untouched.

    Args:
        path: the file to replace.
        data: its new content.
        mode: permission bits of the new file.
        fsync: injectable for tests (simulate an I/O error).

    Raises:
        OSError: the write failed; ``path`` still holds the old content.
    """
    directory = path.parent
    tmp = directory / f"{TMP_PREFIX}{os.urandom(6).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        fsync(dfd)
    finally:
        os.close(dfd)
