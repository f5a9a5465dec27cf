#!/usr/bin/env python3
"""The two set-up commands of the README, with nothing but Python 3.11+ needed beforehand.

    python3 dev.py up [onezone up options]   install into .venv, then start a local cluster
    python3 dev.py test [pytest options]     install into .venv (+ test tools), then run the tests

The virtual environment is (re)installed when pyproject.toml changes. Before the tests, the
Debian packages the tests use (``prometheus`` for the real-Prometheus tests; ``buildah``,
``podman`` and ``debootstrap`` for the container-image test) are installed with apt-get when
they are missing and this runs as root; otherwise those tests skip and say why. pytest's exit status 5
("no tests ran") is turned into a failure: a run that tested nothing must not pass.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def ensure_venv(extra: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"onezone needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extra or 'base'}"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    target = f"{ROOT}[{extra}]" if extra else str(ROOT)
    print(f"installing onezone{'[' + extra + ']' if extra else ''} into {VENV}", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", target], check=True)
    stamp.write_text(want)


# Debian package -> a binary it provides
SYSTEM_PACKAGES = {"prometheus": "prometheus", "buildah": "buildah", "podman": "podman",
                   "debootstrap": "debootstrap"}


def ensure_system_packages() -> None:
    missing = [pkg for pkg, exe in SYSTEM_PACKAGES.items() if shutil.which(exe) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"dev.py: {', '.join(missing)} missing and cannot be installed here (needs root and apt-get); "
              "the tests that need them will skip", file=sys.stderr)
        return
    print(f"installing Debian packages: {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    if subprocess.run(["apt-get", "update", "-q"], **quiet).returncode != 0 or subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], **quiet).returncode != 0:
        print("dev.py: apt-get could not install them; the tests that need them will skip", file=sys.stderr)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("up", "test"):
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "up":
        ensure_venv("")
        os.execv(str(PY), [str(PY), "-m", "onezone", "up", *rest])
    ensure_venv("test")
    ensure_system_packages()
    code = subprocess.run([str(PY), "-m", "pytest", *rest], cwd=ROOT).returncode
    if code == 5:
        print("dev.py: pytest ran no tests; that is a failure", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
