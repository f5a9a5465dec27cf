"""The ``onezone`` command: one entry point for every daemon and for the local cluster.

    onezone up [--data-dir DIR] [--nodes N] [--zone Z] [--port P]   a whole local cluster
    onezone kms|coordinator|node|gateway --config FILE               one daemon
    onezone certs --dir DIR NAME...                                  cluster CA + certificates
    onezone admin nodes [--data-dir DIR]                             the coordinator's view of the nodes
    onezone audit [--key-id K] [--event-name N] [--since T] ...      filter the KMS audit log
"""

from __future__ import annotations

import sys

USAGE = __doc__ or ""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE.strip())
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "up":
        from onezone.up import main as up

        return up(rest)
    if cmd == "certs":
        from proto.certs import main_certs

        return main_certs(rest)
    if cmd == "admin":
        from onezone.admin import main as admin

        return admin(rest)
    if cmd == "audit":
        from kms.audit_query import main as audit

        return audit(rest)
    if cmd in ("kms", "coordinator", "node", "gateway"):
        import importlib

        return importlib.import_module(f"{cmd}.main").main(rest)
    print(f"onezone: unknown command {cmd!r}\n\n{USAGE.strip()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
