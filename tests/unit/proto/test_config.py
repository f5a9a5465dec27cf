"""Tests for proto.config: typed conversion, error messages, dump/load round trip."""

from __future__ import annotations

import enum
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from proto.config import (
    ConfigError,
    Endpoint,
    config_from_mapping,
    config_from_toml,
    dump_toml,
    load_config_file,
)


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = "safe"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True, kw_only=True)
class Tls:
    cert: Path
    key: Path
    verify: bool = True


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_frame_bytes: int = 1024
    tls: Tls | None = None


@dataclass(frozen=True, kw_only=True)
class NodeCfg:
    node_id: str
    data_dir: Path
    listen: Endpoint = Endpoint("127.0.0.1", 0)
    kms: Endpoint | None = None
    rpc_timeout_s: float = 5.0
    replicas: int = 3
    debug: bool = False
    seeds: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    peers: tuple[Endpoint, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    mode: Mode = Mode.SAFE
    level: Level = Level.LOW
    codec: Literal["zstd", "none"] = "zstd"
    comment: Optional[str] = None
    limits: Limits = Limits()
    tls: Tls | None = None

    def validate(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")


BASE = 'node_id = "n1"\ndata_dir = "/var/lib/oz"\n'


def load(body: str) -> NodeCfg:
    """Load ``[node]`` + body; keys in body override the required ones in BASE."""
    table = tomllib.loads("[node]\n" + body)["node"]
    return config_from_mapping(NodeCfg, {**tomllib.loads(BASE), **table}, where="node")


# (extra TOML under [node], attribute, expected value)
GOOD = [
    ("", "listen", Endpoint("127.0.0.1", 0)),
    ("", "limits", Limits()),
    ('listen = "0.0.0.0:9000"', "listen", Endpoint("0.0.0.0", 9000)),
    ('listen = "[::1]:65535"', "listen", Endpoint("::1", 65535)),
    ('listen = "node-1.local:0"', "listen", Endpoint("node-1.local", 0)),
    ('kms = "kms:7000"', "kms", Endpoint("kms", 7000)),
    ("rpc_timeout_s = 2", "rpc_timeout_s", 2.0),
    ("rpc_timeout_s = 0.25", "rpc_timeout_s", 0.25),
    ("replicas = 5", "replicas", 5),
    ("debug = true", "debug", True),
    ('seeds = ["a", "b"]', "seeds", ["a", "b"]),
    ("seeds = []", "seeds", []),
    ("ports = [1, 2]", "ports", [1, 2]),
    ('peers = ["a:1", "[::1]:2"]', "peers", (Endpoint("a", 1), Endpoint("::1", 2))),
    ('labels = { zone = "z1", "rack id" = "r2" }', "labels", {"zone": "z1", "rack id": "r2"}),
    ('mode = "fast"', "mode", Mode.FAST),
    ("level = 2", "level", Level.HIGH),
    ('codec = "none"', "codec", "none"),
    ('comment = "hi"', "comment", "hi"),
    ("[node.limits]\nmax_frame_bytes = 7", "limits", Limits(max_frame_bytes=7)),
    ('[node.tls]\ncert = "/c.pem"\nkey = "/c.key"', "tls", Tls(cert=Path("/c.pem"), key=Path("/c.key"))),
]


@pytest.mark.parametrize(("body", "attr", "expected"), GOOD)
def test_good(body: str, attr: str, expected: object) -> None:
    cfg = load(body)
    assert getattr(cfg, attr) == expected
    assert type(getattr(cfg, attr)) is type(expected)


# (extra TOML under [node] or a full document, regex the message must match)
BAD = [
    ('lisen = "a:1"', r'^unknown key "lisen" in \[node\] \(known: node_id, data_dir, listen, .*\); '
                      r'did you mean "listen"\?$'),
    ("listen = 12", r'^node\.listen: expected "host:port", got 12$'),
    ('listen = "localhost"', r'^node\.listen: expected "host:port", got "localhost" \(missing :port\)$'),
    ('listen = "h:65536"', r"^node\.listen: .*port must be an integer in 0\.\.65535"),
    ('listen = "h:-1"', r"^node\.listen: .*is not a number"),
    ('listen = "::1:9000"', r"^node\.listen: .*must be bracketed"),
    ('listen = "[host]:1"', r"^node\.listen: .*only for IPv6"),
    ('listen = "[::zz]:1"', r"^node\.listen: .*invalid IPv6"),
    ('listen = "bad host:1"', r"^node\.listen: .*invalid host"),
    ('listen = ":1"', r"^node\.listen: .*host must be a non-empty"),
    ("replicas = true", r"^node\.replicas: expected an integer, got true$"),
    ('replicas = "3"', r'^node\.replicas: expected an integer, got "3"$'),
    ("replicas = 1.5", r"^node\.replicas: expected an integer, got 1\.5$"),
    ("rpc_timeout_s = false", r"^node\.rpc_timeout_s: expected a number, got false$"),
    ('rpc_timeout_s = "5s"', r'^node\.rpc_timeout_s: expected a number, got "5s"$'),
    ("debug = 1", r"^node\.debug: expected a boolean \(true or false\), got 1$"),
    ('debug = "yes"', r'^node\.debug: expected a boolean'),
    ("node_id = 7", r"^node\.node_id: expected a string, got 7$"),
    ('data_dir = ""', r'^node\.data_dir: expected a path string, got ""$'),
    ("data_dir = 3", r"^node\.data_dir: expected a path string, got 3$"),
    ('seeds = "a"', r'^node\.seeds: expected an array, got "a"$'),
    ('seeds = ["a", 2]', r"^node\.seeds\[1\]: expected a string, got 2$"),
    ("ports = [1, true]", r"^node\.ports\[1\]: expected an integer, got true$"),
    ('peers = ["a:1", "b"]', r'^node\.peers\[1\]: expected "host:port", got "b"'),
    ('labels = ["a"]', r"^node\.labels: expected a table, got \['a'\]$"),
    ("labels = { zone = 1 }", r"^node\.labels\.zone: expected a string, got 1$"),
    ('labels = { "a b" = 1 }', r'^node\.labels\."a b": expected a string, got 1$'),
    ('mode = "slow"', r'^node\.mode: expected one of "fast", "safe", got "slow"$'),
    ('level = "2"', r'^node\.level: expected one of 1, 2, got "2"$'),
    ("level = true", r"^node\.level: expected one of 1, 2, got true$"),
    ('codec = "lz4"', r'^node\.codec: expected one of "zstd", "none", got "lz4"$'),
    ("comment = 1", r"^node\.comment: expected a string, got 1$"),
    ("limits = 3", r"^node\.limits: expected a table, got 3$"),
    ("replicas = 0", r"^node: replicas must be >= 1, got 0$"),
    ("[node.limits]\nmax_frame_bytes = true",
     r"^node\.limits\.max_frame_bytes: expected an integer, got true$"),
    ("[node.limits]\nmax_frame = 1",
     r'^unknown key "max_frame" in \[node\.limits\] \(known: max_frame_bytes, tls\); '
     r'did you mean "max_frame_bytes"\?$'),
    ('[node.limits.tls]\ncert = "/c"', r"^node\.limits\.tls\.key: missing required key$"),
    ('[node.limits.tls]\ncert = "/c"\nkey = "/k"\nverify = "no"',
     r'^node\.limits\.tls\.verify: expected a boolean \(true or false\), got "no"$'),
    ('[node.tls]\ncert = "/c"\nkey = "/k"\nzzz = 1', r'^unknown key "zzz" in \[node\.tls\] \(known: cert, key, verify\)$'),
]


@pytest.mark.parametrize(("body", "pattern"), BAD)
def test_bad(body: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load(body)


@pytest.mark.parametrize(("doc", "pattern"), [
    ('[node]\nnode_id = "n1"', r"^node\.data_dir: missing required key$"),
    ('[node]\nnode_id = "n1"\nnode_id = "n2"', r"^invalid TOML: "),
    ('[other]\nx = 1', r"^missing table \[node\]$"),
    ('node = 3', r"^node: expected a table, got 3$"),
])
def test_bad_documents(doc: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        config_from_toml(NodeCfg, doc, section="node")


def test_top_level_messages() -> None:
    with pytest.raises(ConfigError, match=r'^unknown key "x" in top level \(known: node_id'):
        config_from_toml(NodeCfg, BASE + "x = 1")
    with pytest.raises(ConfigError, match=r"^config: replicas must be >= 1"):
        config_from_toml(NodeCfg, BASE + "replicas = -1")
    with pytest.raises(ConfigError, match=r"^node_id: missing required key$"):
        config_from_toml(NodeCfg, 'data_dir = "/x"')


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_dotted_section_and_other_tables_ignored() -> None:
    doc = '[kms]\nwhatever = 1\n[cluster.node]\n' + BASE
    cfg = config_from_toml(NodeCfg, doc, section="cluster.node")
    assert cfg.node_id == "n1"
    with pytest.raises(ConfigError, match=r"^cluster\.node\.replicas: expected an integer"):
        config_from_toml(NodeCfg, doc + "replicas = true", section="cluster.node")


def test_mapping_accepts_typed_values_and_where_prefix() -> None:
    tls = Tls(cert=Path("/c"), key=Path("/k"))
    cfg = config_from_mapping(NodeCfg, {
        "node_id": "n", "data_dir": Path("/d"), "listen": Endpoint("h", 1),
        "mode": Mode.FAST, "tls": tls, "kms": None,
    })
    assert (cfg.data_dir, cfg.listen, cfg.mode, cfg.tls, cfg.kms) == (Path("/d"), Endpoint("h", 1),
                                                                      Mode.FAST, tls, None)
    with pytest.raises(ConfigError, match=r"^svc\.node\.replicas: expected an integer, got None$"):
        config_from_mapping(NodeCfg, {"node_id": "n", "data_dir": "/d", "replicas": None},
                            where="svc.node")
    with pytest.raises(ConfigError, match=r"^config: expected a table, got \[\]$"):
        config_from_mapping(NodeCfg, [])  # type: ignore[arg-type]


def test_not_a_dataclass_and_unsupported_types() -> None:
    with pytest.raises(TypeError):
        config_from_mapping(dict, {})

    @dataclass(frozen=True)
    class Weird:
        x: int | str

    with pytest.raises(TypeError, match="only `X | None`"):
        config_from_mapping(Weird, {"x": 1})


def test_relative_paths_resolve_against_config_file_dir(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = conf_dir / "node.toml"
    path.write_text('[node]\nnode_id = "n"\ndata_dir = "data"\n'
                    '[node.tls]\ncert = "../certs/n.pem"\nkey = "/abs/n.key"\n')
    cfg = load_config_file(NodeCfg, path, section="node")
    assert cfg.data_dir == conf_dir.resolve() / "data"
    assert cfg.tls == Tls(cert=conf_dir.resolve() / "../certs/n.pem", key=Path("/abs/n.key"))
    # without a file (and no base_dir) relative paths stay relative
    assert config_from_toml(NodeCfg, 'node_id = "n"\ndata_dir = "x"').data_dir == Path("x")
    assert config_from_toml(NodeCfg, 'node_id = "n"\ndata_dir = "x"',
                            base_dir=tmp_path).data_dir == tmp_path / "x"


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(NodeCfg, tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("x = ")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config_file(NodeCfg, bad)


FULL = NodeCfg(
    node_id='n"1\\\t\n\x01\x7fé',
    data_dir=Path("/var/lib/onezone data"),
    listen=Endpoint("::1", 9000),
    kms=Endpoint("kms.local", 7000),
    rpc_timeout_s=1e-05,
    replicas=2,
    debug=True,
    seeds=["a", 'b"'],
    ports=[0, 65535],
    peers=(Endpoint("a", 1), Endpoint("fe80::1", 2)),
    labels={"zone": "z1", "rack id": "r=2", "": "empty"},
    mode=Mode.FAST,
    level=Level.HIGH,
    codec="none",
    limits=Limits(max_frame_bytes=10, tls=Tls(cert=Path("/c"), key=Path("/k"), verify=False)),
    tls=Tls(cert=Path("/tc"), key=Path("/tk")),
)


@pytest.mark.parametrize("obj", [FULL, NodeCfg(node_id="n", data_dir=Path("/d"))])
@pytest.mark.parametrize("section", [None, "node", "cluster.node"])
def test_dump_round_trip(obj: NodeCfg, section: str | None) -> None:
    text = dump_toml(obj, section=section)
    assert config_from_toml(NodeCfg, text, section=section) == obj


def test_dump_shape() -> None:
    text = dump_toml(FULL, section="node")
    assert text.startswith("[node]\n")
    assert "comment" not in text  # None omitted
    assert 'listen = "[::1]:9000"' in text
    assert "mode = \"fast\"" in text and "level = 2" in text
    assert re.search(r"^\[node\.limits\.tls\]$", text, re.M)
    assert "\n[node.tls]\n" in text


def test_dump_special_floats_and_errors() -> None:
    @dataclass(frozen=True)
    class F:
        x: float

    for v in (float("inf"), float("-inf")):
        assert config_from_toml(F, dump_toml(F(x=v))) == F(x=v)
    assert "x = nan" in dump_toml(F(x=float("nan")))
    with pytest.raises(TypeError):
        dump_toml(F)
    with pytest.raises(TypeError):
        dump_toml(F(x=object()))  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "host", "port", "shown"), [
    ("127.0.0.1:0", "127.0.0.1", 0, "127.0.0.1:0"),
    ("[::1]:9000", "::1", 9000, "[::1]:9000"),
    ("example.com:443", "example.com", 443, "example.com:443"),
    ("h:007", "h", 7, "h:7"),
])
def test_endpoint_parse(text: str, host: str, port: int, shown: str) -> None:
    ep = Endpoint.parse(text)
    assert (ep.host, ep.port, str(ep)) == (host, port, shown)
    assert Endpoint.parse(str(ep)) == ep


@pytest.mark.parametrize("text", ["", "h", "h:", ":1", "h:x", "h:1.5", "h: 1", "h:٣",
                                  "h:65536", "::1:1", "[h]:1", "[::1:1", "a b:1"])
def test_endpoint_parse_bad(text: str) -> None:
    with pytest.raises(ValueError):
        Endpoint.parse(text)


def test_endpoint_constructor_validates() -> None:
    with pytest.raises(ValueError):
        Endpoint("h", True)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Endpoint("", 1)
    with pytest.raises(ValueError):
        Endpoint.parse(12)  # type: ignore[arg-type]
