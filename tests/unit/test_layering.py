"""The package rules, checked on the import statements of every module (ast, no execution):
the four daemons import proto, never each other; pure (sans-I/O) modules import no I/O; only the
two crypto modules (and proto.certs, for X.509) import `cryptography`."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAEMONS = ("gateway", "node", "coordinator", "kms")
PURE = ["proto/framing.py", "proto/names.py", "proto/policy.py", "proto/policy_conditions.py",
        "proto/policy_match.py", "proto/checksums.py", "gateway/sigv4.py", "gateway/awschunked.py",
        "gateway/s3xml.py", "gateway/errors.py", "gateway/routing.py", "gateway/sessions.py",
        "node/chunk_codec.py", "kms/crypto.py", "coordinator/placement.py", "coordinator/membership.py",
        "coordinator/reconcile.py"]
IO_MODULES = {"trio", "socket", "time", "random", "logging", "subprocess", "sqlite3", "asyncio"}
CRYPTO_ALLOWED = {"kms/crypto.py", "node/chunk_codec.py", "proto/certs.py"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out.add(n.module)
    return out


def modules(pkg: str):
    return sorted((ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("pkg", DAEMONS)
def test_daemons_do_not_import_each_other(pkg):
    for path in modules(pkg):
        for name in imports(path):
            top = name.split(".")[0]
            assert top not in set(DAEMONS) - {pkg}, f"{path.relative_to(ROOT)} imports {name}"


def test_proto_imports_no_daemon():
    for path in modules("proto"):
        for name in imports(path):
            assert name.split(".")[0] not in DAEMONS, f"{path.relative_to(ROOT)} imports {name}"


@pytest.mark.parametrize("rel", PURE)
def test_pure_modules_do_no_io(rel):
    bad = {n for n in imports(ROOT / rel) if n.split(".")[0] in IO_MODULES}
    assert not bad, f"{rel} imports {bad}"


def test_only_crypto_modules_import_cryptography():
    for pkg in (*DAEMONS, "proto", "onezone"):
        for path in modules(pkg):
            rel = str(path.relative_to(ROOT))
            if rel in CRYPTO_ALLOWED:
                continue
            assert not any(n.split(".")[0] == "cryptography" for n in imports(path)), rel
