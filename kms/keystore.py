"""The KMS keystore: every customer master key, its state and its material versions, on disk.

Responsibility
--------------
Hold the CMKs (metadata, state, material versions) and the managed-key aliases
(``aws/s3`` -> key id) in one JSON document, ``data_dir/keys.json``, and keep the plaintext
master key material in memory only. Also load the operator's root key (``load_root_key``)
with the checks an operator needs to hear about at start: missing, unreadable, malformed,
or readable by group/others.

Invariants
----------
- Material is stored only wrapped under the root key (``kms.crypto.wrap_with_root``) with
  AAD ``onezone-kms:<key id>:<version>``, so records cannot be swapped between keys or
  versions. The document also holds ``root_check``, a wrapped constant: a daemon started
  with another root key is refused at open ("root key does not match the keystore"), even
  before any key exists.
- Every change rewrites the whole document atomically (``atomic_write``: temp file in the
  same directory, fsync, rename, fsync of the directory), so a crash leaves either the old
  or the new document, never a torn one. The in-memory state is swapped only after the
  write succeeded (copy-on-write), so a failed write changes nothing, and readers in other
  threads always see a consistent snapshot without locking.
- Versions are a list per key (version 1 at creation); old versions stay for decrypt after
  rotation. ``KeyStore`` is synchronous and blocking: the daemon calls mutations from a
  worker thread (``trio.to_thread``) and serializes them; a ``threading.Lock`` makes
  concurrent mutations safe anyway.

On-disk format (``FORMAT_VERSION`` = 1)::

    {"format": 1, "root_check": "<b64>",
     "keys": {"<uuid>": {"created": 1700000000.0, "description": "", "key_manager": "CUSTOMER",
                         "state": "Enabled", "deletion_date": null,
                         "tags": [["TagKey", "TagValue"]],
                         "versions": [{"version": 1, "created": 1700000000.0,
                                       "material": "<b64 of the wrapped material>"}]}},
     "managed_aliases": {"aws/s3": "<uuid>"}}
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kms.crypto import RootKeyError, parse_root_key, unwrap_with_root, wrap_with_root

__all__ = [
    "FORMAT_VERSION", "KEY_STATES", "KeyRecord", "KeyStore", "KeyVersion", "KeystoreError",
    "atomic_write", "load_root_key",
]  # fmt: skip

FORMAT_VERSION = 1
KEYS_FILE = "keys.json"
KEY_STATES = ("Enabled", "Disabled", "PendingDeletion")
KEY_MANAGERS = ("CUSTOMER", "AWS")
_ROOT_CHECK_PLAIN = b"onezone-kms root key check v1"
_ROOT_CHECK_AAD = b"onezone-kms:root-check"
_TMP_PREFIX = ".keys.json.tmp-"


class KeystoreError(Exception):
    """The keystore or the root key cannot be used; the message is for the operator."""


@dataclass(frozen=True, slots=True)
class KeyVersion:
    version: int
    created: float
    wrapped: bytes


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    created: float
    description: str
    key_manager: str
    state: str
    deletion_date: float | None
    tags: tuple[tuple[str, str], ...]
    versions: tuple[KeyVersion, ...]

    @property
    def current_version(self) -> int:
        return self.versions[-1].version


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
    tmp = directory / f"{_TMP_PREFIX}{os.urandom(6).hex()}"
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


# -- the store ----------------------------------------------------------------------------


def _version_aad(key_id: str, version: int) -> bytes:
    return f"onezone-kms:{key_id}:{version}".encode()


class KeyStore:
    """Keys and managed aliases of one ``keys.json``; material unwrapped in memory."""

    def __init__(self, path: Path, root_key: bytes, root_check: bytes,
                 records: dict[str, KeyRecord], aliases: dict[str, str],
                 materials: dict[tuple[str, int], bytes],
                 writer: Callable[[Path, bytes], None] = atomic_write) -> None:
        """Private: use ``KeyStore.open``."""
        self.path = path
        self._writer = writer
        self._root_key = root_key
        self._root_check = root_check
        self._records = records
        self._aliases = aliases
        self._materials = materials
        self._mutate = threading.Lock()

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, data_dir: Path, root_key: bytes, *,
             writer: Callable[[Path, bytes], None] = atomic_write) -> KeyStore:
        """Open (or create) ``data_dir/keys.json`` and unwrap every key version.

        Blocking. Creates ``data_dir`` (0700) and an empty keystore bound to ``root_key``
        if there is none; removes temp files a crash may have left. ``writer`` replaces
        the file on every change (tests inject failures).

        Raises:
            KeystoreError: unreadable or damaged document, unknown format, or a root key
                that does not match the keystore.
        """
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            for leftover in data_dir.glob(_TMP_PREFIX + "*"):
                leftover.unlink()
        except OSError as exc:
            raise KeystoreError(f"data_dir {data_dir}: {exc.strerror or exc}") from None
        path = data_dir / KEYS_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            check = wrap_with_root(root_key, _ROOT_CHECK_PLAIN, aad=_ROOT_CHECK_AAD)
            store = cls(path, root_key, check, {}, {}, {}, writer)
            try:
                store._write(store._records, store._aliases)
            except OSError as exc:
                raise KeystoreError(f"keystore {path}: cannot create: {exc.strerror or exc}") from None
            return store
        except OSError as exc:
            raise KeystoreError(f"keystore {path}: cannot read: {exc.strerror or exc}") from None
        return cls._load(path, raw, root_key, writer)

    @classmethod
    def _load(cls, path: Path, raw: bytes, root_key: bytes,
              writer: Callable[[Path, bytes], None]) -> KeyStore:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise KeystoreError(f"keystore {path} is damaged: not valid JSON") from None
        if not isinstance(doc, dict) or "format" not in doc:
            raise KeystoreError(f"keystore {path} is damaged: not a keystore document")
        if doc["format"] != FORMAT_VERSION:
            raise KeystoreError(f"keystore {path}: unsupported format {doc['format']!r} "
                                f"(this version reads format {FORMAT_VERSION})")
        try:
            root_check = _b64(doc["root_check"])
            records = {kid: _record_from_doc(kid, body) for kid, body in _dict(doc["keys"]).items()}
            aliases = {_str(a): _str(k) for a, k in _dict(doc["managed_aliases"]).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise KeystoreError(f"keystore {path} is damaged: {exc}") from None
        for alias, key_id in aliases.items():
            if key_id not in records:
                raise KeystoreError(f"keystore {path} is damaged: alias {alias} names a missing key")
        try:
            check = unwrap_with_root(root_key, root_check, aad=_ROOT_CHECK_AAD)
        except RootKeyError:
            check = b""
        if check != _ROOT_CHECK_PLAIN:
            raise KeystoreError(
                f"the root key does not match the keystore {path}: it was created with another "
                "root key (check root_key_file / root_key_env)")
        materials: dict[tuple[str, int], bytes] = {}
        for rec in records.values():
            for ver in rec.versions:
                try:
                    materials[(rec.key_id, ver.version)] = unwrap_with_root(
                        root_key, ver.wrapped, aad=_version_aad(rec.key_id, ver.version))
                except RootKeyError:
                    raise KeystoreError(
                        f"keystore {path}: cannot unwrap key {rec.key_id} version {ver.version}: "
                        "the record is damaged or the root key does not match the keystore") from None
        return cls(path, root_key, root_check, records, aliases, materials, writer)

    # -- reading (lock-free: snapshots are replaced, never mutated) --------------------------
    def get(self, key_id: str) -> KeyRecord | None:
        return self._records.get(key_id)

    def records(self) -> list[KeyRecord]:
        """All keys, sorted by key id."""
        records = self._records
        return [records[k] for k in sorted(records)]

    def material(self, key_id: str, version: int) -> bytes | None:
        return self._materials.get((key_id, version))

    def managed_key_id(self, alias: str) -> str | None:
        return self._aliases.get(alias)

    def count_by_state(self) -> dict[str, int]:
        counts = dict.fromkeys(KEY_STATES, 0)
        for rec in self._records.values():
            counts[rec.state] += 1
        return counts

    # -- changing (blocking: one atomic rewrite each) -----------------------------------------
    def add_key(self, *, key_id: str, created: float, description: str, key_manager: str,
                tags: tuple[tuple[str, str], ...], material: bytes,
                managed_alias: str | None = None) -> KeyRecord:
        """Create a key with version 1 = ``material`` (and bind ``managed_alias`` to it).

        Raises:
            ValueError: the id or alias is already used, or a bad key_manager.
            OSError: the write failed; nothing changed.
        """
        if key_manager not in KEY_MANAGERS:
            raise ValueError(f"bad key_manager {key_manager!r}")
        with self._mutate:
            if key_id in self._records:
                raise ValueError(f"key {key_id} already exists")
            if managed_alias is not None and managed_alias in self._aliases:
                raise ValueError(f"managed alias {managed_alias} already exists")
            wrapped = wrap_with_root(self._root_key, material, aad=_version_aad(key_id, 1))
            rec = KeyRecord(key_id=key_id, created=created, description=description,
                            key_manager=key_manager, state="Enabled", deletion_date=None,
                            tags=tuple(tags), versions=(KeyVersion(1, created, wrapped),))
            records = {**self._records, key_id: rec}
            aliases = dict(self._aliases)
            if managed_alias is not None:
                aliases[managed_alias] = key_id
            self._write(records, aliases)
            self._materials = {**self._materials, (key_id, 1): bytes(material)}
            self._aliases = aliases
            self._records = records
            return rec

    def add_version(self, key_id: str, *, created: float, material: bytes) -> KeyRecord:
        """Rotation: append a new material version, which becomes the current one.

        Raises:
            KeyError: unknown key.  OSError: the write failed; nothing changed.
        """
        with self._mutate:
            rec = self._records[key_id]
            version = rec.current_version + 1
            wrapped = wrap_with_root(self._root_key, material, aad=_version_aad(key_id, version))
            new = replace(rec, versions=rec.versions + (KeyVersion(version, created, wrapped),))
            records = {**self._records, key_id: new}
            self._write(records, self._aliases)
            self._materials = {**self._materials, (key_id, version): bytes(material)}
            self._records = records
            return new

    def set_state(self, key_id: str, state: str, *, deletion_date: float | None = None) -> KeyRecord:
        """Change a key's state (Enable/Disable/ScheduleKeyDeletion/CancelKeyDeletion).

        Raises:
            KeyError: unknown key.  ValueError: unknown state.  OSError: write failed.
        """
        if state not in KEY_STATES:
            raise ValueError(f"bad key state {state!r}")
        with self._mutate:
            rec = self._records[key_id]
            new = replace(rec, state=state,
                          deletion_date=deletion_date if state == "PendingDeletion" else None)
            records = {**self._records, key_id: new}
            self._write(records, self._aliases)
            self._records = records
            return new

    def _write(self, records: Mapping[str, KeyRecord], aliases: Mapping[str, str]) -> None:
        doc = {
            "format": FORMAT_VERSION,
            "root_check": base64.b64encode(self._root_check).decode(),
            "keys": {kid: _record_to_doc(records[kid]) for kid in sorted(records)},
            "managed_aliases": dict(sorted(aliases.items())),
        }
        self._writer(self.path, (json.dumps(doc, indent=1) + "\n").encode())


# -- document <-> records -----------------------------------------------------------------


def _record_to_doc(rec: KeyRecord) -> dict[str, Any]:
    return {
        "created": rec.created,
        "description": rec.description,
        "key_manager": rec.key_manager,
        "state": rec.state,
        "deletion_date": rec.deletion_date,
        "tags": [list(t) for t in rec.tags],
        "versions": [{"version": v.version, "created": v.created,
                      "material": base64.b64encode(v.wrapped).decode()} for v in rec.versions],
    }


def _record_from_doc(key_id: Any, body: Any) -> KeyRecord:
    key_id = _str(key_id)
    body = _dict(body)
    versions = tuple(
        KeyVersion(_int(v["version"]), _num(v["created"]), _b64(v["material"]))
        for v in (_dict(x) for x in _list(body["versions"]))
    )
    if not versions or [v.version for v in versions] != sorted({v.version for v in versions}):
        raise ValueError(f"key {key_id}: versions must be a non-empty increasing list")
    state = _str(body["state"])
    manager = _str(body["key_manager"])
    if state not in KEY_STATES or manager not in KEY_MANAGERS:
        raise ValueError(f"key {key_id}: bad state or key_manager")
    deletion = body.get("deletion_date")
    tags = tuple(_tag(x) for x in _list(body["tags"]))
    return KeyRecord(key_id=key_id, created=_num(body["created"]), description=_str(body["description"]),
                     key_manager=manager, state=state,
                     deletion_date=None if deletion is None else _num(deletion),
                     tags=tags, versions=versions)


def _tag(v: Any) -> tuple[str, str]:
    pair = _list(v)
    if len(pair) != 2:
        raise ValueError("a tag must be [key, value]")
    return _str(pair[0]), _str(pair[1])


def _dict(v: Any) -> dict[Any, Any]:
    if not isinstance(v, dict):
        raise TypeError("expected an object")
    return v


def _list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise TypeError("expected a list")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError("expected a string")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise TypeError("expected a positive integer")
    return v


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError("expected a number")
    return float(v)


def _b64(v: Any) -> bytes:
    try:
        return base64.b64decode(_str(v), validate=True)
    except binascii.Error:
        raise ValueError("bad base64") from None
