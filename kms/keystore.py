"""The KMS keystore: every customer master key, its state, versions, policy and aliases, on disk.

Responsibility
--------------
Hold the CMKs (metadata, state, material versions, key policy, rotation settings, tags), the
customer aliases (``alias/name`` -> key id) and the managed-key aliases (``aws/s3`` -> key id)
in one JSON document, ``data_dir/keys.json``, and keep the plaintext master key material in
memory only. The root key checks live in ``kms.files`` (re-exported here).

Invariants
----------
- Material is stored only wrapped under the root key (``kms.crypto.wrap_with_root``) with
  AAD ``onezone-kms:<key id>:<version>``, so records cannot be swapped between keys or
  versions. The document also holds ``root_check``, a wrapped constant: a daemon started
  with another root key is refused at open ("root key does not match the keystore"), even
  before any key exists.
- Every change rewrites the whole document atomically (``atomic_write``), so a crash (kill -9)
  leaves either the old or the new document. The in-memory state is swapped only after the
  write succeeded (copy-on-write), so a failed write changes nothing, and readers in other
  threads always see a consistent snapshot without locking.
- Versions are a list per key (version 1 at creation); old versions stay for decrypt after
  rotation until the key itself is deleted. ``KeyStore`` is synchronous and blocking: the
  daemon calls mutations from a worker thread and serializes them; a ``threading.Lock``
  makes concurrent mutations safe anyway.

On-disk format (``FORMAT_VERSION`` = 2; format 1 documents are read and upgraded on the next
write: they had no policy, rotation, rotation type or customer aliases)::

    {"format": 2, "root_check": "<b64>",
     "keys": {"<uuid>": {"created": 1700000000.0, "description": "", "key_manager": "CUSTOMER",
                         "state": "Enabled", "deletion_date": null, "pending_window_days": null,
                         "tags": [["TagKey", "TagValue"]], "policy": null | "<json text>",
                         "rotation_enabled": false, "rotation_period_days": 365,
                         "next_rotation": null | 1731536000.0,
                         "versions": [{"version": 1, "created": 1700000000.0, "type": "INITIAL",
                                       "material": "<b64 of the wrapped material>"}]}},
     "aliases": {"alias/name": {"key_id": "<uuid>", "created": 1700000000.0, "updated": ...}},
     "managed_aliases": {"aws/s3": "<uuid>"}}
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kms.crypto import RootKeyError, unwrap_with_root, wrap_with_root
from kms.files import TMP_PREFIX, KeystoreError, atomic_write, load_root_key

__all__ = [
    "FORMAT_VERSION", "KEY_STATES", "AliasRecord", "KeyRecord", "KeyStore", "KeyVersion", "KeystoreError",
    "atomic_write", "load_root_key",
]  # fmt: skip

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
KEYS_FILE = "keys.json"
KEY_STATES = ("Enabled", "Disabled", "PendingDeletion")
KEY_MANAGERS = ("CUSTOMER", "AWS")
ROTATION_TYPES = ("INITIAL", "AUTOMATIC", "ON_DEMAND")
_ROOT_CHECK_PLAIN = b"onezone-kms root key check v1"
_ROOT_CHECK_AAD = b"onezone-kms:root-check"


@dataclass(frozen=True, slots=True)
class KeyVersion:
    version: int
    created: float
    wrapped: bytes
    rotation_type: str = "INITIAL"


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
    policy: str | None = None
    """The key policy as given to PutKeyPolicy; None = the default key policy."""
    rotation_enabled: bool = False
    rotation_period_days: int = 365
    next_rotation: float | None = None
    pending_window_days: int | None = None

    @property
    def current_version(self) -> int:
        return self.versions[-1].version


@dataclass(frozen=True, slots=True)
class AliasRecord:
    name: str  # "alias/..."
    key_id: str
    created: float
    updated: float


def _version_aad(key_id: str, version: int) -> bytes:
    return f"onezone-kms:{key_id}:{version}".encode()


class KeyStore:
    """Keys and aliases of one ``keys.json``; material unwrapped in memory."""

    def __init__(self, path: Path, root_key: bytes, root_check: bytes,
                 records: dict[str, KeyRecord], managed: dict[str, str],
                 materials: dict[tuple[str, int], bytes],
                 writer: Callable[[Path, bytes], None] = atomic_write,
                 aliases: dict[str, AliasRecord] | None = None) -> None:
        """Private: use ``KeyStore.open``."""
        self.path = path
        self._writer = writer
        self._root_key = root_key
        self._root_check = root_check
        self._records = records
        self._managed = managed
        self._aliases: dict[str, AliasRecord] = aliases or {}
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
            for leftover in data_dir.glob(TMP_PREFIX + "*"):
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
                store._write(store._records, store._managed, store._aliases)
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
        if doc["format"] not in READABLE_FORMATS:
            raise KeystoreError(f"keystore {path}: unsupported format {doc['format']!r} "
                                f"(this version reads formats {', '.join(map(str, READABLE_FORMATS))})")
        try:
            root_check = _b64(doc["root_check"])
            records = {kid: _record_from_doc(kid, body) for kid, body in _dict(doc["keys"]).items()}
            managed = {_str(a): _str(k) for a, k in _dict(doc["managed_aliases"]).items()}
            aliases = {name: _alias_from_doc(name, body) for name, body in _dict(doc.get("aliases", {})).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise KeystoreError(f"keystore {path} is damaged: {exc}") from None
        for alias, key_id in [*managed.items(), *((a.name, a.key_id) for a in aliases.values())]:
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
        return cls(path, root_key, root_check, records, managed, materials, writer, aliases)

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
        return self._managed.get(alias)

    def managed_aliases(self) -> dict[str, str]:
        return dict(self._managed)

    def alias(self, name: str) -> AliasRecord | None:
        return self._aliases.get(name)

    def aliases(self) -> list[AliasRecord]:
        """Customer aliases, sorted by name."""
        aliases = self._aliases
        return [aliases[n] for n in sorted(aliases)]

    def count_by_state(self) -> dict[str, int]:
        counts = dict.fromkeys(KEY_STATES, 0)
        for rec in self._records.values():
            counts[rec.state] += 1
        return counts

    # -- changing (blocking: one atomic rewrite each) -----------------------------------------
    def add_key(self, *, key_id: str, created: float, description: str, key_manager: str,
                tags: tuple[tuple[str, str], ...], material: bytes,
                managed_alias: str | None = None, policy: str | None = None,
                rotation_enabled: bool = False, next_rotation: float | None = None) -> KeyRecord:
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
            if managed_alias is not None and managed_alias in self._managed:
                raise ValueError(f"managed alias {managed_alias} already exists")
            wrapped = wrap_with_root(self._root_key, material, aad=_version_aad(key_id, 1))
            rec = KeyRecord(key_id=key_id, created=created, description=description,
                            key_manager=key_manager, state="Enabled", deletion_date=None,
                            tags=tuple(tags), versions=(KeyVersion(1, created, wrapped),),
                            policy=policy, rotation_enabled=rotation_enabled, next_rotation=next_rotation)
            records = {**self._records, key_id: rec}
            managed = dict(self._managed)
            if managed_alias is not None:
                managed[managed_alias] = key_id
            self._write(records, managed, self._aliases)
            self._materials = {**self._materials, (key_id, 1): bytes(material)}
            self._managed = managed
            self._records = records
            return rec

    def add_version(self, key_id: str, *, created: float, material: bytes,
                    rotation_type: str = "AUTOMATIC", **changes: Any) -> KeyRecord:
        """Rotation: append a new material version, which becomes the current one.

        ``changes`` are other fields to set in the same write (e.g. ``next_rotation``).

        Raises:
            KeyError: unknown key.  OSError: the write failed; nothing changed.
        """
        if rotation_type not in ROTATION_TYPES:
            raise ValueError(f"bad rotation type {rotation_type!r}")
        with self._mutate:
            rec = self._records[key_id]
            version = rec.current_version + 1
            wrapped = wrap_with_root(self._root_key, material, aad=_version_aad(key_id, version))
            new = replace(rec, versions=rec.versions + (KeyVersion(version, created, wrapped, rotation_type),),
                          **changes)
            records = {**self._records, key_id: new}
            self._write(records, self._managed, self._aliases)
            self._materials = {**self._materials, (key_id, version): bytes(material)}
            self._records = records
            return new

    def update(self, key_id: str, **changes: Any) -> KeyRecord:
        """Change fields of a key (state, deletion_date, policy, tags, rotation settings...).

        Raises:
            KeyError: unknown key.  ValueError: unknown state.  OSError: write failed.
        """
        if "state" in changes and changes["state"] not in KEY_STATES:
            raise ValueError(f"bad key state {changes['state']!r}")
        with self._mutate:
            new = replace(self._records[key_id], **changes)
            records = {**self._records, key_id: new}
            self._write(records, self._managed, self._aliases)
            self._records = records
            return new

    def set_state(self, key_id: str, state: str, *, deletion_date: float | None = None) -> KeyRecord:
        """Change a key's state (kept for callers of format 1's API)."""
        return self.update(key_id, state=state,
                           deletion_date=deletion_date if state == "PendingDeletion" else None)

    def delete_key(self, key_id: str) -> list[str]:
        """Delete a key for good: its record, every version's material, every alias naming it.

        Returns:
            The names of the aliases that were removed with it.

        Raises:
            KeyError: unknown key.  OSError: the write failed; nothing changed.
        """
        with self._mutate:
            if key_id not in self._records:
                raise KeyError(key_id)
            records = {k: v for k, v in self._records.items() if k != key_id}
            managed = {a: k for a, k in self._managed.items() if k != key_id}
            aliases = {n: a for n, a in self._aliases.items() if a.key_id != key_id}
            self._write(records, managed, aliases)
            self._materials = {k: v for k, v in self._materials.items() if k[0] != key_id}
            self._records, self._managed = records, managed
            gone = sorted(set(self._aliases) - set(aliases))
            self._aliases = aliases
            return gone

    def put_alias(self, name: str, key_id: str, *, now: float, create: bool) -> AliasRecord:
        """Create (``create=True``, the name must be free) or retarget an alias.

        Raises:
            ValueError: the alias exists (create) or does not (update); unknown key.
            OSError: the write failed; nothing changed.
        """
        with self._mutate:
            if key_id not in self._records:
                raise ValueError(f"key {key_id} does not exist")
            old = self._aliases.get(name)
            if create and old is not None:
                raise ValueError(f"alias {name} already exists")
            if not create and old is None:
                raise ValueError(f"alias {name} does not exist")
            rec = AliasRecord(name, key_id, now if old is None else old.created, now)
            aliases = {**self._aliases, name: rec}
            self._write(self._records, self._managed, aliases)
            self._aliases = aliases
            return rec

    def delete_alias(self, name: str) -> None:
        """Raises: KeyError: no such alias.  OSError: the write failed; nothing changed."""
        with self._mutate:
            if name not in self._aliases:
                raise KeyError(name)
            aliases = {n: a for n, a in self._aliases.items() if n != name}
            self._write(self._records, self._managed, aliases)
            self._aliases = aliases

    def _write(self, records: Mapping[str, KeyRecord], managed: Mapping[str, str],
               aliases: Mapping[str, AliasRecord]) -> None:
        doc = {
            "format": FORMAT_VERSION,
            "root_check": base64.b64encode(self._root_check).decode(),
            "keys": {kid: _record_to_doc(records[kid]) for kid in sorted(records)},
            "aliases": {n: {"key_id": a.key_id, "created": a.created, "updated": a.updated}
                        for n, a in sorted(aliases.items())},
            "managed_aliases": dict(sorted(managed.items())),
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
        "pending_window_days": rec.pending_window_days,
        "tags": [list(t) for t in rec.tags],
        "policy": rec.policy,
        "rotation_enabled": rec.rotation_enabled,
        "rotation_period_days": rec.rotation_period_days,
        "next_rotation": rec.next_rotation,
        "versions": [{"version": v.version, "created": v.created, "type": v.rotation_type,
                      "material": base64.b64encode(v.wrapped).decode()} for v in rec.versions],
    }


def _record_from_doc(key_id: Any, body: Any) -> KeyRecord:
    key_id = _str(key_id)
    body = _dict(body)
    versions = tuple(
        KeyVersion(_int(v["version"]), _num(v["created"]), _b64(v["material"]), _str(v.get("type", "INITIAL")))
        for v in (_dict(x) for x in _list(body["versions"]))
    )
    if not versions or [v.version for v in versions] != sorted({v.version for v in versions}):
        raise ValueError(f"key {key_id}: versions must be a non-empty increasing list")
    if any(v.rotation_type not in ROTATION_TYPES for v in versions):
        raise ValueError(f"key {key_id}: bad rotation type")
    state = _str(body["state"])
    manager = _str(body["key_manager"])
    if state not in KEY_STATES or manager not in KEY_MANAGERS:
        raise ValueError(f"key {key_id}: bad state or key_manager")
    deletion = body.get("deletion_date")
    policy = body.get("policy")
    nxt = body.get("next_rotation")
    window = body.get("pending_window_days")
    rotation_enabled = body.get("rotation_enabled", False)
    if not isinstance(rotation_enabled, bool):
        raise TypeError(f"key {key_id}: rotation_enabled must be a boolean")
    tags = tuple(_tag(x) for x in _list(body["tags"]))
    return KeyRecord(key_id=key_id, created=_num(body["created"]), description=_str(body["description"]),
                     key_manager=manager, state=state,
                     deletion_date=None if deletion is None else _num(deletion),
                     tags=tags, versions=versions, policy=None if policy is None else _str(policy),
                     rotation_enabled=rotation_enabled,
                     rotation_period_days=_int(body.get("rotation_period_days", 365)),
                     next_rotation=None if nxt is None else _num(nxt),
                     pending_window_days=None if window is None else _int(window))


def _alias_from_doc(name: Any, body: Any) -> AliasRecord:
    body = _dict(body)
    return AliasRecord(_str(name), _str(body["key_id"]), _num(body["created"]), _num(body["updated"]))


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
