"""Tests for proto.certs: issuance, on-disk layout, and real mutual-TLS handshakes.

The handshake tests run both ends over a ``socket.socketpair()`` in two threads
(stdlib ssl, blocking, with a socket timeout) so no port is ever bound.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proto.certs import (
    client_context,
    create_ca,
    issue_cert,
    main_certs,
    principal_from_peercert,
    server_context,
    validate_principal,
    write_cluster_certs,
)

NAMES = ["kms", "node-1"]


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    d = tmp_path / "certs"
    write_cluster_certs(d, NAMES)
    return d


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """A second, unrelated cluster with the same principal names and CA CN."""
    d = tmp_path / "foreign"
    write_cluster_certs(d, NAMES)
    return d


def server_ctx(d: Path, name: str) -> ssl.SSLContext:
    return server_context(d / f"{name}.pem", d / f"{name}.key", d / "ca.pem")


def client_ctx(d: Path, name: str) -> ssl.SSLContext:
    return client_context(d / f"{name}.pem", d / f"{name}.key", d / "ca.pem")


def handshake(server: ssl.SSLContext, client: ssl.SSLContext,
              server_hostname: str) -> tuple[Future[str], Future[bytes]]:
    """Run a TLS handshake plus one ping/pong; return (server principal, client reply) futures.

    The ping/pong matters: with TLS 1.3 the client finishes its handshake before
    the server has checked the client certificate, so a rejection only shows
    up on the client's first read.
    """
    s_sock, c_sock = socket.socketpair()
    for s in (s_sock, c_sock):
        s.settimeout(10)

    def serve() -> str:
        try:
            with server.wrap_socket(s_sock, server_side=True) as tls:
                principal = principal_from_peercert(tls.getpeercert())
                assert tls.recv(4) == b"ping"
                tls.sendall(b"pong")
                return principal
        finally:
            s_sock.close()

    def call() -> bytes:
        try:
            with client.wrap_socket(c_sock, server_hostname=server_hostname) as tls:
                tls.sendall(b"ping")
                reply = tls.recv(4)
                if reply != b"pong":
                    raise ConnectionError(f"connection closed by server: {reply!r}")
                return reply
        finally:
            c_sock.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        fs, fc = pool.submit(serve), pool.submit(call)
    return fs, fc


def assert_refused(fut: Future[object]) -> BaseException:
    exc = fut.exception()
    assert isinstance(exc, OSError) and not isinstance(exc, TimeoutError), exc
    return exc


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_files_and_modes(certs: Path) -> None:
    assert sorted(p.name for p in certs.iterdir()) == [
        "ca.key", "ca.pem", "kms.key", "kms.pem", "node-1.key", "node-1.pem"]
    assert stat.S_IMODE(certs.stat().st_mode) == 0o700
    for key in certs.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for pem in certs.glob("*.pem"):
        assert stat.S_IMODE(pem.stat().st_mode) == 0o644


def test_existing_dir_is_tightened(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    write_cluster_certs(tmp_path, ["kms"])
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700


def test_idempotent_only_adds_missing(certs: Path) -> None:
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in certs.iterdir()}
    assert write_cluster_certs(certs, NAMES) == []
    created = write_cluster_certs(certs, ["kms", "coordinator", "coordinator"])
    assert created == [certs / "coordinator.pem", certs / "coordinator.key"]
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in certs.iterdir()}
    assert {k: v for k, v in after.items() if not k.startswith("coordinator")} == before
    # the new certificate comes from the existing CA
    load_cert(certs / "coordinator.pem").verify_directly_issued_by(load_cert(certs / "ca.pem"))


@pytest.mark.parametrize("remove", ["node-1.pem", "node-1.key", "ca.pem"])
def test_half_written_pair_is_refused(certs: Path, remove: str) -> None:
    (certs / remove).unlink()
    with pytest.raises(ValueError, match="exists without"):
        write_cluster_certs(certs, NAMES)


@pytest.mark.parametrize("bad", ["", "Node", "-kms", ".kms", "a" * 64, "node_1", "a/b", "ca", "nöde"])
def test_invalid_names_write_nothing(tmp_path: Path, bad: str) -> None:
    d = tmp_path / "c"
    with pytest.raises(ValueError):
        write_cluster_certs(d, ["kms", bad])
    assert not d.exists()


@pytest.mark.parametrize("good", ["kms", "node-1", "0", "a" * 63, "eu-1.node-7"])
def test_valid_principals(good: str) -> None:
    assert validate_principal(good) == good


def test_ca_contents() -> None:
    cert_pem, key_pem = create_ca("test CA", days=10)
    ca = x509.load_pem_x509_certificate(cert_pem)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test CA"
    assert ca.issuer == ca.subject
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days == 10
    assert b"PRIVATE KEY" in key_pem and b"ENCRYPTED" not in key_pem
    ca.verify_directly_issued_by(ca)
    with pytest.raises(ValueError):
        create_ca(days=0)


def test_leaf_contents(certs: Path) -> None:
    ca = load_cert(certs / "ca.pem")
    for name in NAMES:
        cert = load_cert(certs / f"{name}.pem")
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [name]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and not bc.value.ca
        assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
        assert cert.not_valid_after_utc <= ca.not_valid_after_utc


def test_issue_cert_extra_sans_and_errors() -> None:
    ca_pem, ca_key = create_ca()
    cert_pem, _ = issue_cert(ca_pem, ca_key, "node-2", days=1, extra_dns=["host7.example", "node-2"],
                             ip_addresses=["127.0.0.1", "::1"])
    san = x509.load_pem_x509_certificate(cert_pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node-2", "host7.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                        ipaddress.ip_address("::1")]
    with pytest.raises(ValueError):
        issue_cert(ca_pem, ca_key, "Bad_Name")
    with pytest.raises(ValueError):
        issue_cert(ca_pem, ca_key, "ok", ip_addresses=["999.1.1.1"])
    with pytest.raises(ValueError):
        issue_cert(ca_pem, ca_key, "ok", extra_dns=["has space"])
    with pytest.raises(ValueError):
        issue_cert(ca_pem, ca_key, "ok", days=0)
    other_pem, other_key = create_ca()
    with pytest.raises(ValueError, match="does not match"):
        issue_cert(ca_pem, other_key, "ok")
    leaf_pem, leaf_key = issue_cert(ca_pem, ca_key, "leaf")
    with pytest.raises(ValueError, match="lacks BasicConstraints"):
        issue_cert(leaf_pem, leaf_key, "ok")


def test_foreign_ca_fails_verification(certs: Path, foreign: Path) -> None:
    ca = load_cert(certs / "ca.pem")
    alien = load_cert(foreign / "node-1.pem")
    assert alien.issuer == ca.subject  # same CA name, so only the signature tells them apart
    with pytest.raises(InvalidSignature):
        alien.verify_directly_issued_by(ca)


def test_context_settings(certs: Path) -> None:
    s, c = server_ctx(certs, "kms"), client_ctx(certs, "node-1")
    for ctx in (s, c):
        assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert len(ctx.get_ca_certs()) == 1  # only the cluster CA, no system store
    assert c.check_hostname and not s.check_hostname


def test_handshake_ok_yields_client_principal(certs: Path) -> None:
    fs, fc = handshake(server_ctx(certs, "kms"), client_ctx(certs, "node-1"), "kms")
    assert fc.result() == b"pong"
    assert fs.result() == "node-1"


def test_handshake_wrong_server_name(certs: Path) -> None:
    fs, fc = handshake(server_ctx(certs, "kms"), client_ctx(certs, "node-1"), "coordinator")
    exc = assert_refused(fc)
    assert isinstance(exc, ssl.SSLCertVerificationError) and "mismatch" in exc.verify_message
    assert_refused(fs)


def test_handshake_client_cert_from_foreign_ca(certs: Path, foreign: Path) -> None:
    # the client trusts our CA (so it accepts the server) but presents a foreign cert
    client = client_context(foreign / "node-1.pem", foreign / "node-1.key", certs / "ca.pem")
    fs, fc = handshake(server_ctx(certs, "kms"), client, "kms")
    exc = assert_refused(fs)
    assert isinstance(exc, ssl.SSLError) and "certificate verify failed" in str(exc)
    assert_refused(fc)


def test_handshake_server_cert_from_foreign_ca(certs: Path, foreign: Path) -> None:
    server = server_context(foreign / "kms.pem", foreign / "kms.key", certs / "ca.pem")
    fs, fc = handshake(server, client_ctx(certs, "node-1"), "kms")
    exc = assert_refused(fc)
    assert isinstance(exc, ssl.SSLCertVerificationError)
    assert_refused(fs)


def test_handshake_without_client_cert(certs: Path) -> None:
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.load_verify_locations(certs / "ca.pem")
    fs, fc = handshake(server_ctx(certs, "kms"), bare, "kms")
    assert_refused(fs)
    assert_refused(fc)


@pytest.mark.parametrize(("peercert", "expected"), [
    ({"subject": ((("commonName", "node-1"),),)}, "node-1"),
    ({"subject": ((("organizationName", "x"),), (("commonName", "kms"),))}, "kms"),
])
def test_principal_from_peercert(peercert: dict, expected: str) -> None:
    assert principal_from_peercert(peercert) == expected


@pytest.mark.parametrize("peercert", [
    None, {}, {"subject": ()}, {"subject": ((("organizationName", "x"),),)},
    {"subject": ((("commonName", "a"),), (("commonName", "b"),))},
    {"subject": ((("commonName", "Not A Principal"),),)},
])
def test_principal_from_peercert_rejects(peercert: dict | None) -> None:
    with pytest.raises(ValueError):
        principal_from_peercert(peercert)


def test_main_certs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "c"
    assert main_certs(["--dir", str(d), "kms", "node-1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"created {d / n}" for n in
                   ("ca.pem", "ca.key", "kms.pem", "kms.key", "node-1.pem", "node-1.key")]
    assert main_certs(["--dir", str(d), "kms"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main_certs(["--dir", str(d), "kms", "gateway"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"created {d / 'gateway.pem'}",
                                                    f"created {d / 'gateway.key'}"]


def test_main_certs_help_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_certs(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "principal" in help_text and "--dir" in help_text and "0600" in help_text
    assert main_certs(["kms"]) == 2  # --dir missing
    assert main_certs(["--dir", str(tmp_path)]) == 2  # no names
    capsys.readouterr()
    assert main_certs(["--dir", str(tmp_path / "c"), "Bad_Name"]) == 1
    assert "invalid principal name 'Bad_Name'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
