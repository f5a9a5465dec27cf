"""Strict, typed TOML configuration: load into frozen dataclasses, dump back.

Responsibility: turn a TOML document (file, string or parsed mapping) into an
instance of a daemon's frozen, keyword-only config dataclass, and write one back
as TOML (``dump_toml``) so ``onezone up`` can generate config files.

Invariants:
- Every failure is a ``ConfigError`` whose message starts with the key path
  (``node.listen: expected "host:port", got 12``) or names the table
  (``unknown key "lisen" in [node] (known: ...)``).
- Unknown keys are errors (hypercorn ignores them, so a typo means a default).
- Conversion follows the field annotations (``typing.get_type_hints``). The only
  coercions are int -> float and str -> Path/Endpoint/enum; bool is never an int.
- Relative paths in a file resolve against the file's directory, not the cwd.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``Path``,
``Endpoint``, enums (by value), ``Literal[...]``, ``X | None``, ``list[X]``,
``tuple[X, ...]``, ``dict[str, X]`` and nested dataclasses (TOML tables).
A dataclass may define ``validate(self) -> None`` raising ``ValueError`` for
cross-field checks; it (or one from ``__post_init__``) becomes a ``ConfigError``
prefixed with the table's path. Loading is split into ``load_config_file`` /
``config_from_toml`` / ``config_from_mapping`` because a ``str`` source would be
ambiguous between a path and TOML text.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import ipaddress
import json
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

__all__ = ["ConfigError", "Endpoint", "config_from_mapping", "config_from_toml", "dump_toml",
           "load_config_file"]

T = TypeVar("T")

_HOST_RE = re.compile(r"[A-Za-z0-9_.-]{1,253}")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(ValueError):
    """A config value is missing, unknown, of the wrong type or invalid.

    The message always names the key path or the table concerned.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """A network address: hostname, IPv4 or (unbracketed) IPv6 host plus a port.

    Port 0 means "let the kernel pick"; the daemon announces the real port.

    Raises:
        ValueError: empty or malformed host, or port not an int in 0..65535.
    """

    host: str
    port: int

    def __post_init__(self) -> None:
        port = self.port
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be a non-empty string, got {self.host!r}")
        if ":" in self.host:
            try:
                ipaddress.IPv6Address(self.host)
            except ValueError:
                raise ValueError(f"invalid IPv6 address {self.host!r}") from None
        elif not _HOST_RE.fullmatch(self.host):
            raise ValueError(f"invalid host {self.host!r}")

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``"host:port"`` or ``"[v6addr]:port"``.

        Args:
            text: e.g. ``"127.0.0.1:0"``, ``"node-1:9000"``, ``"[::1]:9000"``.

        Returns:
            The endpoint; an IPv6 host is stored without brackets.

        Raises:
            ValueError: not a string, no port, unbracketed IPv6, bad host or port.
        """
        if not isinstance(text, str):
            raise ValueError(f'expected "host:port", got {text!r}')
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError("missing :port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            if ":" not in host:
                raise ValueError("brackets are only for IPv6 addresses")
        elif ":" in host:
            raise ValueError("IPv6 addresses must be bracketed, e.g. [::1]:9000")
        if not (port.isascii() and port.isdigit()):
            raise ValueError(f"port {port!r} is not a number")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def load_config_file(cls: type[T], path: Path | str, *, section: str | None = None) -> T:
    """Read a TOML file into ``cls``, resolving relative paths against its directory.

    Args:
        cls: a (frozen, kw_only) dataclass type.
        path: the TOML file.
        section: dotted table name to load (e.g. ``"node"``); other top-level
            tables are then ignored, so one file can hold every daemon's config.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: unreadable file, invalid TOML or any invalid value.
        TypeError: ``cls`` is not a dataclass or has an unsupported field type.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    return _from_document(cls, doc, section, path.resolve().parent)


def config_from_toml(cls: type[T], text: str, *, section: str | None = None,
                     base_dir: Path | None = None) -> T:
    """Parse TOML text into ``cls``.

    Args:
        cls, section: as for ``load_config_file``.
        text: the TOML document.
        base_dir: directory for relative paths; ``None`` leaves them relative.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError, TypeError: as for ``load_config_file``.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML: {e}") from e
    return _from_document(cls, doc, section, base_dir)


def config_from_mapping(cls: type[T], mapping: Mapping[str, Any], *, where: str = "",
                        base_dir: Path | None = None) -> T:
    """Build ``cls`` from an already-parsed mapping (e.g. a TOML table).

    Values that already have the target type (Path, Endpoint, enum member,
    dataclass instance) are accepted as they are.

    Args:
        cls: a dataclass type.
        mapping: keys are field names.
        where: key path of ``mapping``, prefixed to messages (``"node"``).
        base_dir: directory for relative paths; ``None`` leaves them relative.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError, TypeError: as for ``load_config_file``.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass type")
    if not isinstance(mapping, Mapping):
        raise _wrong(where or "config", "a table", mapping)
    return _build(cls, mapping, where, base_dir)


def dump_toml(obj: Any, *, section: str | None = None) -> str:
    """Write a dataclass instance as TOML that ``config_from_toml`` reads back equal.

    None fields are omitted (so they must default to None), nested dataclasses
    become ``[a.b]`` tables, Paths and Endpoints become strings, enums their value.

    Args:
        obj: a dataclass instance.
        section: put everything under this (dotted) table, e.g. ``"node"``.

    Returns:
        The TOML document, ending in a newline.

    Raises:
        TypeError: ``obj`` is not a dataclass instance or holds an unsupported value.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"expected a dataclass instance, got {type(obj).__name__}")
    out: list[str] = []
    _dump_table(obj, section or "", out, header=bool(section))
    return "\n".join(out).lstrip("\n") + "\n"


def _from_document(cls: type[T], doc: Mapping[str, Any], section: str | None,
                   base_dir: Path | None) -> T:
    table: Any = doc
    where = ""
    for part in section.split(".") if section else ():
        where = _join(where, part)
        table = table.get(part)
        if table is None:
            raise ConfigError(f"missing table [{where}]")
        if not isinstance(table, Mapping):
            raise _wrong(where, "a table", table)
    return config_from_mapping(cls, table, where=where, base_dir=base_dir)


def _build(cls: type[T], mapping: Mapping[Any, Any], where: str, base_dir: Path | None) -> T:
    hints = get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    known = [f.name for f in fields]
    for key in mapping:
        if key not in known:
            table = f"[{where}]" if where else "top level"
            hint = difflib.get_close_matches(str(key), known, n=1)
            did_you_mean = f'; did you mean "{hint[0]}"?' if hint else ""
            raise ConfigError(f"unknown key {json.dumps(str(key))} in {table} "
                              f"(known: {', '.join(known)}){did_you_mean}")
    kwargs: dict[str, Any] = {}
    for f in fields:
        path = _join(where, f.name)
        if f.name in mapping:
            kwargs[f.name] = _convert(hints[f.name], mapping[f.name], path, base_dir)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}: missing required key")
    try:
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{where or 'config'}: {e}") from e
    return obj


def _convert(tp: Any, value: Any, path: str, base_dir: Path | None) -> Any:
    """Convert one value to annotation ``tp``; ``path`` names it in errors."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Union or origin is types.UnionType:
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1 or len(args) != 2:
            raise TypeError(f"{path}: only `X | None` unions are supported, not {tp!r}")
        return None if value is None else _convert(inner[0], value, path, base_dir)
    if origin is Literal:
        for choice in args:
            if type(choice) is type(value) and choice == value:
                return choice
        raise _wrong(path, "one of " + ", ".join(_show(a) for a in args), value)
    if origin in (list, tuple):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(f"{path}: only tuple[X, ...] is supported, not {tp!r}")
        if not isinstance(value, (list, tuple)):
            raise _wrong(path, "an array", value)
        items = [_convert(args[0], v, f"{path}[{i}]", base_dir) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if args[0] is not str:
            raise TypeError(f"{path}: only dict[str, X] is supported, not {tp!r}")
        if not isinstance(value, Mapping):
            raise _wrong(path, "a table", value)
        for k in value:
            if not isinstance(k, str):
                raise _wrong(path, "a table with string keys", value)
        return {k: _convert(args[1], v, _join(path, k), base_dir) for k, v in value.items()}
    if origin is not None:
        raise TypeError(f"{path}: unsupported field type {tp!r}")
    scalars = {bool: ("a boolean (true or false)", bool), int: ("an integer", int),
               float: ("a number", (int, float)), str: ("a string", str)}
    if tp in scalars:
        what, ok = scalars[tp]
        if isinstance(value, ok) and (tp is bool or not isinstance(value, bool)):
            return float(value) if tp is float else value
        raise _wrong(path, what, value)
    if tp is Path:
        if not (isinstance(value, PurePath) or (isinstance(value, str) and value)):
            raise _wrong(path, "a path string", value)
        p = Path(value)
        return p if p.is_absolute() or base_dir is None else base_dir / p
    if tp is Endpoint:  # before the dataclass case: Endpoint is a dataclass too
        if isinstance(value, Endpoint):
            return value
        if not isinstance(value, str):
            raise _wrong(path, '"host:port"', value)
        try:
            return Endpoint.parse(value)
        except ValueError as e:
            raise ConfigError(f'{path}: expected "host:port", got {_show(value)} ({e})') from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp:
            if type(member.value) is type(value) and member.value == value:
                return member
        raise _wrong(path, "one of " + ", ".join(_show(m.value) for m in tp), value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _wrong(path, "a table", value)
        return _build(tp, value, path, base_dir)
    raise TypeError(f"{path}: unsupported field type {tp!r}")


def _join(prefix: str, key: str) -> str:
    key = key if _BARE_KEY_RE.fullmatch(key) else _toml_str(key)
    return f"{prefix}.{key}" if prefix else key


def _show(value: Any) -> str:
    """Render a got-value for an error message (TOML-ish, truncated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _wrong(path: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{path}: expected {expected}, got {_show(value)}")


def _dump_table(obj: Any, prefix: str, out: list[str], *, header: bool) -> None:
    if header:
        out.append("")
        out.append(f"[{prefix}]")
    tables: list[tuple[str, Any]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not f.init or value is None:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, Endpoint):
            tables.append((f.name, value))
        else:
            out.append(f"{_join('', f.name)} = {_toml_value(value)}")
    for name, value in tables:
        _dump_table(value, _join(prefix, name), out, header=True)


def _toml_value(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return _toml_value(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):  # repr spells inf, -inf, nan and 1e-05 as TOML does
        return repr(value)
    if isinstance(value, (str, PurePath, Endpoint)):
        return _toml_str(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_join('', k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} value {value!r} as TOML")


def _toml_str(s: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes; TOML also
    # forbids a raw DEL, which JSON leaves alone.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")
