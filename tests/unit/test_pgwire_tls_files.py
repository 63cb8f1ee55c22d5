"""The client certificate and key files, checked as libpq checks them before a TLS handshake."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from stellaops_runtime import pgwire
from stellaops_runtime.pgwire.params import resolve
from stellaops_runtime.pgwire.transport import _context


def _pair(where: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    crt, pem = where / "client.crt", where / "client.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pem.chmod(0o600)
    return crt, pem


def _ctx(crt: Path, key: Path):
    return _context(
        resolve(
            {
                "host": "db",
                "sslmode": "require",
                "sslcert": str(crt),
                "sslkey": str(key),
                "sslrootcert": "/nonexistent",
            },
            {},
        )
    )


def test_a_private_key_the_group_or_others_can_read_is_refused_as_libpq_refuses_it(tmp_path: Path) -> None:
    crt, key = _pair(tmp_path)
    _ctx(crt, key)  # 0600: loaded
    key.chmod(0o640)
    if os.stat(key).st_uid == 0:
        _ctx(crt, key)  # root's key may be group-readable (u=rw,g=r), as libpq allows
        key.chmod(0o644)
    with pytest.raises(pgwire.OperationalError, match=r"private key file .* has group or world access"):
        _ctx(crt, key)


def test_a_certificate_without_its_key_is_an_error_not_a_silent_anonymous_connection(tmp_path: Path) -> None:
    crt, key = _pair(tmp_path)
    key.unlink()
    with pytest.raises(pgwire.OperationalError, match="certificate present, but not private key file"):
        _ctx(crt, key)
    crt.unlink()
    _ctx(crt, key)  # neither file: no client certificate, as libpq
    (tmp_path / "dir.key").mkdir()
    crt2, _ = _pair(tmp_path)
    with pytest.raises(pgwire.OperationalError, match="not a regular file"):
        _ctx(crt2, tmp_path / "dir.key")


@pytest.mark.parametrize("mode", ["require", "verify-ca"])
def test_sslrootcert_system_needs_verify_full_as_libpq(mode: str) -> None:
    """Any publicly trusted certificate chains to the system's roots: without the host name check
    such a chain proves nothing about the server, so libpq refuses the weaker modes there."""
    with pytest.raises(pgwire.OperationalError, match='weak sslmode "' + mode + '"'):
        _context(resolve({"host": "db", "sslmode": mode, "sslrootcert": "system"}, {}))
    _context(resolve({"host": "db", "sslmode": "verify-full", "sslrootcert": "system"}, {}))
