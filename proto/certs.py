"""Cluster CA, per-daemon certificates and ssl contexts for mutual TLS.

Responsibility: issue the X.509 material every daemon uses to prove who it is,
and build the ``ssl.SSLContext`` objects for both ends of an RPC connection.

Theory of operation:

- One self-signed cluster CA (EC P-256) signs one certificate per *principal*.
  A principal is a daemon identity such as ``kms``, ``coordinator``,
  ``node-1`` or ``gateway``: the certificate's subject CN and its first DNS SAN
  are both the principal name.
- Servers require a client certificate from the cluster CA and learn the
  caller's principal with ``principal_from_peercert`` (authorization is the
  caller's job). Clients verify the server against the same CA and pass
  ``server_hostname=<expected principal>``, so connecting to the wrong daemon,
  or to one whose certificate came from another CA, fails the handshake.
- Only the cluster CA is trusted: the contexts never load the system store.

Invariants: key files are created with ``O_CREAT | O_EXCL`` and mode 0600,
written and fsync'd; the certificate directory is 0700; existing files are never
overwritten (``write_cluster_certs`` only adds missing principals).

This is the only proto module that imports ``cryptography``; everything else
sees PEM bytes and ``ssl.SSLContext``. STYLE.md confines ``cryptography`` to
``kms/crypto.py`` and ``node/chunk_codec.py`` for *data* encryption; X.509
issuance is a separate concern, kept in this one wrapper (tahoe's
``crypto/aes.py`` shape).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["client_context", "create_ca", "issue_cert", "main_certs", "principal_from_peercert",
           "server_context", "validate_principal", "write_cluster_certs"]

_PRINCIPAL_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")
_DNS_RE = re.compile(r"[A-Za-z0-9*_.-]{1,253}")
_CLOCK_SKEW = datetime.timedelta(minutes=5)
_RESERVED = frozenset({"ca"})  # would collide with ca.pem / ca.key


def validate_principal(name: str) -> str:
    """Check that ``name`` is a valid principal: ``[a-z0-9][a-z0-9.-]{0,62}``.

    Args:
        name: candidate principal name.

    Returns:
        ``name`` unchanged.

    Raises:
        ValueError: not a valid principal name.
    """
    if not isinstance(name, str) or not _PRINCIPAL_RE.fullmatch(name):
        raise ValueError(f"invalid principal name {name!r}: expected lowercase letters, "
                         "digits, '.' or '-', starting with a letter or digit, at most 63 chars")
    return name


def create_ca(common_name: str = "onezone cluster CA", *, days: int = 3650) -> tuple[bytes, bytes]:
    """Create a self-signed cluster CA.

    Args:
        common_name: subject CN of the CA.
        days: validity period.

    Returns:
        ``(cert_pem, key_pem)``; the key is unencrypted PKCS#8.

    Raises:
        ValueError: ``days`` is not positive.
    """
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    key = ec.generate_private_key(ec.SECP256R1())
    name = _cn(common_name)
    cert = _builder(name, name, key, days, None, ca=True).sign(key, hashes.SHA256())
    return _cert_pem(cert), _key_pem(key)


def issue_cert(ca_cert_pem: bytes, ca_key_pem: bytes, name: str, *, days: int = 825,
               extra_dns: Sequence[str] = (), ip_addresses: Sequence[str] = ()) -> tuple[bytes, bytes]:
    """Issue a TLS client+server certificate for principal ``name``.

    Args:
        ca_cert_pem: the CA certificate (PEM).
        ca_key_pem: the CA private key (unencrypted PEM).
        name: the principal; becomes the subject CN and the first DNS SAN.
        days: validity period (capped at the CA's expiry).
        extra_dns: additional DNS SANs (e.g. a hostname the daemon runs on).
        ip_addresses: IP address SANs, e.g. ``["127.0.0.1", "::1"]``.

    Returns:
        ``(cert_pem, key_pem)`` with a fresh EC P-256 key.

    Raises:
        ValueError: invalid name, DNS name, IP address or ``days``; the CA
            certificate is not a CA or does not match the CA key.
    """
    validate_principal(name)
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    for dns in extra_dns:
        if not isinstance(dns, str) or not _DNS_RE.fullmatch(dns):
            raise ValueError(f"invalid DNS name {dns!r}")
    ips = [ipaddress.ip_address(ip) for ip in ip_addresses]
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("CA key must be an EC private key")
    if ca_key.public_key() != ca_cert.public_key():
        raise ValueError("CA key does not match CA certificate")
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ValueError("CA certificate lacks BasicConstraints(ca=True)")

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    sans += [x509.DNSName(d) for d in extra_dns if d != name]
    sans += [x509.IPAddress(ip) for ip in ips]
    cert = (
        _builder(_cn(name), ca_cert.subject, key, days, ca_cert.not_valid_after_utc, ca=False)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _cert_pem(cert), _key_pem(key)


def write_cluster_certs(dir: Path, names: Sequence[str]) -> list[Path]:
    """Create the CA and a certificate per principal in ``dir``, idempotently.

    Writes ``ca.pem``, ``ca.key`` and ``<name>.pem`` + ``<name>.key`` for each
    name. Existing pairs are kept untouched; only missing ones are created
    (reusing the existing CA). ``dir`` is created if needed and set to 0700.

    Args:
        dir: the certificate directory.
        names: principal names; all are validated before anything is written.

    Returns:
        The paths created by this call, in creation order (empty if none).

    Raises:
        ValueError: an invalid or reserved name, or a half-written pair (a
            ``.key`` without its ``.pem`` or vice versa) that must be removed.
        OSError: the files cannot be written.
    """
    dir = Path(dir)
    for name in names:
        validate_principal(name)
        if name in _RESERVED:
            raise ValueError(f"principal name {name!r} is reserved")
    dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    dir.chmod(0o700)  # mkdir's mode is masked by umask, and the dir may predate us
    created: list[Path] = []
    if _pair_exists(dir, "ca"):
        ca_cert = (dir / "ca.pem").read_bytes()
        ca_key = (dir / "ca.key").read_bytes()
    else:
        ca_cert, ca_key = create_ca()
        created += _write_pair(dir, "ca", ca_cert, ca_key)
    for name in dict.fromkeys(names):  # de-duplicate, keep order
        if not _pair_exists(dir, name):
            created += _write_pair(dir, name, *issue_cert(ca_cert, ca_key, name))
    if created:
        _fsync_dir(dir)
    return created


def server_context(cert_path: Path | str, key_path: Path | str, ca_path: Path | str) -> ssl.SSLContext:
    """Build a TLS 1.2+ server context that requires a client cert from the CA.

    Args:
        cert_path: this daemon's certificate (PEM).
        key_path: this daemon's private key (PEM).
        ca_path: the cluster CA certificate; the only trust anchor.

    Returns:
        A context with ``verify_mode == CERT_REQUIRED``.

    Raises:
        OSError, ssl.SSLError: unreadable or mismatched files.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx, cert_path, key_path, ca_path)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(cert_path: Path | str, key_path: Path | str, ca_path: Path | str) -> ssl.SSLContext:
    """Build a TLS 1.2+ client context that presents a cert and checks the server.

    The caller must wrap with ``server_hostname=<expected principal>``; it is
    matched against the server certificate's DNS SANs (``check_hostname``).

    Args:
        cert_path: this daemon's certificate (PEM).
        key_path: this daemon's private key (PEM).
        ca_path: the cluster CA certificate; the only trust anchor.

    Returns:
        A context with ``check_hostname`` and ``CERT_REQUIRED``.

    Raises:
        OSError, ssl.SSLError: unreadable or mismatched files.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname + CERT_REQUIRED
    _harden(ctx, cert_path, key_path, ca_path)
    return ctx


def principal_from_peercert(peercert: dict[str, Any] | None) -> str:
    """Return the principal (subject CN) of a verified peer certificate.

    Args:
        peercert: ``SSLSocket.getpeercert()`` / ``SSLObject.getpeercert()`` output.

    Returns:
        The principal name.

    Raises:
        ValueError: no certificate, no CN, several CNs, or an invalid name.
    """
    cns = [value for rdn in (peercert or {}).get("subject", ())
           for key, value in rdn if key == "commonName"]
    if len(cns) != 1:
        raise ValueError(f"peer certificate must have exactly one commonName, found {len(cns)}")
    return validate_principal(cns[0])


def main_certs(argv: Sequence[str]) -> int:
    """``onezone certs --dir DIR NAME [NAME ...]``: write the cluster's certificates.

    Args:
        argv: arguments after ``certs``.

    Returns:
        Process exit status: 0 on success (and for ``--help``), 1 on failure,
        2 on a usage error.
    """
    parser = argparse.ArgumentParser(
        prog="onezone certs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Create the cluster CA and one mutual-TLS certificate per principal.",
        epilog=(
            "A principal is the identity a daemon proves with its certificate, e.g.\n"
            "kms, coordinator, node-1, gateway. It is the certificate's CN and DNS SAN:\n"
            "servers read the caller's principal from its client certificate, and\n"
            "clients connect with server_hostname=<principal> of the daemon they expect.\n"
            "Names: lowercase letters, digits, '.' and '-', starting with a letter or\n"
            "digit, at most 63 characters ('ca' is reserved).\n\n"
            "Writes DIR/ca.pem, DIR/ca.key and DIR/NAME.pem, DIR/NAME.key. Existing\n"
            "files are kept; only missing principals are added. Keys are mode 0600,\n"
            "DIR is 0700."
        ),
    )
    parser.add_argument("--dir", required=True, type=Path, help="certificate directory")
    parser.add_argument("names", nargs="+", metavar="NAME", help="principal name")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as e:  # --help or usage error; the caller decides whether to exit
        return e.code if isinstance(e.code, int) else 2
    try:
        created = write_cluster_certs(args.dir, args.names)
    except (ValueError, OSError) as e:
        print(f"onezone certs: error: {e}", file=sys.stderr)
        return 1
    for path in created:
        print(f"created {path}")
    if not created:
        print(f"nothing to do: all certificates already exist in {args.dir}")
    return 0


def _harden(ctx: ssl.SSLContext, cert: Path | str, key: Path | str, ca: Path | str) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_cert_chain(certfile=os.fspath(cert), keyfile=os.fspath(key))
    ctx.load_verify_locations(cafile=os.fspath(ca))


def _cn(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int,
             cap: datetime.datetime | None, *, ca: bool) -> x509.CertificateBuilder:
    """The fields shared by CA and leaf certificates; validity starts 5 min back for skew."""
    now = datetime.datetime.now(datetime.timezone.utc)
    not_after = now + datetime.timedelta(days=days)
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW).not_valid_after(min(not_after, cap or not_after))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=not ca, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pair_exists(dir: Path, name: str) -> bool:
    pem, key = (dir / f"{name}.pem").exists(), (dir / f"{name}.key").exists()
    if pem != key:
        have, missing = (f"{name}.pem", f"{name}.key") if pem else (f"{name}.key", f"{name}.pem")
        raise ValueError(f"{dir}: {have} exists without {missing}; remove it and retry")
    return pem


def _write_pair(dir: Path, name: str, cert_pem: bytes, key_pem: bytes) -> list[Path]:
    key_path, cert_path = dir / f"{name}.key", dir / f"{name}.pem"
    _write_new(key_path, key_pem, 0o600)  # key first: a crash leaves a detectable half pair
    _write_new(cert_path, cert_pem, 0o644)
    return [cert_path, key_path]


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the open mode is masked by umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(dir: Path) -> None:
    fd = os.open(dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
