"""pgwire's authentication and TLS against a private PostgreSQL cluster of this module.

One cluster (tests/pg.py, started once for the module) gets a pg_hba.conf of its own (a role per
method: trust, password, md5, scram-sha-256, one only allowed over TLS), a CA and a server
certificate made here with ``cryptography`` (SAN DNS:localhost), and ``ssl = on``. The shared test
cluster (ssl off) answers the prefer/require cases without TLS.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pg import PgServer, make_server
from pgwire_support import keywords

from stellaops_runtime import pgwire

ROOT = Path(__file__).resolve().parents[2]
UTF_PASSWORD = "pä\u00adss\u2002wörd"  # SASLprep: the soft hyphen maps to nothing, U+2002 to a space
HBA = """\
local all all trust
hostssl all u_sslonly 127.0.0.1/32 trust
hostnossl all u_sslonly 127.0.0.1/32 reject
host all u_clear 127.0.0.1/32 password
host all u_md5 127.0.0.1/32 md5
host all u_scram 127.0.0.1/32 scram-sha-256
host all u_scram_utf 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
"""


def _certs(where: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(
        subject: str,
        key: Any,
        issuer: str,
        issuer_key: Any,
        *,
        ca: bool,
        san: list[str],
        ips: tuple[str, ...] = (),
    ) -> Any:
        b = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        names: list[Any] = [x509.DNSName(s) for s in san]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    out: dict[str, Path] = {}
    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    pem = serialization.Encoding.PEM
    for label, c in (
        ("ca", cert("test CA", ca_key, "test CA", ca_key, ca=True, san=[])),
        ("other_ca", cert("other CA", other_key, "other CA", other_key, ca=True, san=[])),
        ("server", cert("localhost", server_key, "test CA", ca_key, ca=False, san=["localhost"])),
        ("cn_only", cert("localhost", server_key, "test CA", ca_key, ca=False, san=[])),
        ("ip_cn", cert("127.0.0.1", server_key, "test CA", ca_key, ca=False, san=[])),
        ("ip_cn_dns", cert("127.0.0.1", server_key, "test CA", ca_key, ca=False, san=["localhost"])),
        (
            "ip_cn_other_ip",
            cert("127.0.0.1", server_key, "test CA", ca_key, ca=False, san=[], ips=("10.9.8.7",)),
        ),
        ("ip_san", cert("x", server_key, "test CA", ca_key, ca=False, san=[], ips=("127.0.0.1",))),
    ):
        out[label] = where / f"{label}.crt"
        out[label].write_bytes(c.public_bytes(pem))
    out["server_key"] = where / "server.key"
    out["server_key"].write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out


@pytest.fixture(scope="module")
def srv() -> Iterator[tuple[PgServer, dict[str, Path]]]:
    server = make_server()
    server.setup()
    try:
        assert server._tmp is not None
        data = server._tmp / "data"
        certs = _certs(server._tmp)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (
                certs["server"],
                certs["cn_only"],
                certs["ip_cn"],
                certs["ip_cn_dns"],
                certs["server_key"],
            ):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        certs["server_key"].chmod(0o600)
        (data / "pg_hba.conf").write_text(HBA)
        with psycopg.connect(
            host=str(server._tmp / "sock"),
            port=server.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
        ) as c:
            c.execute("SET password_encryption = 'md5'")
            c.execute("CREATE ROLE u_md5 LOGIN PASSWORD 'md5 secret'")
            c.execute("SET password_encryption = 'scram-sha-256'")
            for role, password in (
                ("u_clear", "clear secret"),
                ("u_scram", "scram secret"),
                ("u_scram_utf", UTF_PASSWORD),
            ):
                c.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
            c.execute("CREATE ROLE u_trust LOGIN")
            c.execute("CREATE ROLE u_sslonly LOGIN")
            c.execute(f"ALTER SYSTEM SET ssl_cert_file = '{certs['server']}'")
            c.execute(f"ALTER SYSTEM SET ssl_key_file = '{certs['server_key']}'")
            c.execute("ALTER SYSTEM SET ssl = on")
            c.execute("SELECT pg_reload_conf()")
        yield server, certs
    finally:
        server.teardown()


def kw(server: PgServer, user: str, **extra: Any) -> dict[str, Any]:
    base = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": user,
        "dbname": "postgres",
        "sslmode": "disable",
        "connect_timeout": 10,
    }
    base.update(extra)
    return base


def _ssl_in_use(conn: pgwire.Connection) -> bool:
    cur = conn.cursor()
    cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    row = cur.fetchone()
    assert row is not None
    return bool(row[0])


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("PG"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pgpass, no ~/.postgresql/root.crt


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("u_clear", "clear secret"),
        ("u_md5", "md5 secret"),
        ("u_scram", "scram secret"),
        ("u_scram_utf", UTF_PASSWORD),
    ],
)
def test_password_methods_right_and_wrong(srv, user: str, password: str) -> None:
    server, _ = srv
    with pgwire.connect(**kw(server, user, password=password)) as conn:
        cur = conn.cursor()
        cur.execute("SELECT current_user")
        assert cur.fetchone() == (user,)
    with pytest.raises(pgwire.OperationalError) as e:
        pgwire.connect(**kw(server, user, password=password + "x"))
    assert e.value.sqlstate == "28P01"
    assert str(e.value) == f'password authentication failed for user "{user}"'
    with pytest.raises(pgwire.OperationalError, match="no password supplied"):
        pgwire.connect(**kw(server, user))


def test_trust_over_tcp_and_the_unix_socket(srv) -> None:
    server, _ = srv
    assert server._tmp is not None
    for where in ({}, {"host": str(server._tmp / "sock")}):
        with pgwire.connect(**kw(server, "u_trust", **where)) as conn:
            cur = conn.cursor()
            cur.execute("SELECT current_user, inet_client_addr() IS NULL")
            assert cur.fetchone() == ("u_trust", bool(where))


def test_pgpass_is_read_and_ignored_with_group_or_other_permissions(
    srv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = srv
    passfile = tmp_path / ".pgpass"
    passfile.write_text(
        "# a comment\n"
        f"otherhost:{server.port}:*:u_scram:wrong\n"
        f"127.0.0.1:{server.port}:postgres:u_md5:md5 secret\n"
        "*:*:*:u_scram:scram secret\n"
    )
    passfile.chmod(0o600)
    for user in ("u_scram", "u_md5"):
        with pgwire.connect(**kw(server, user)):  # ~/.pgpass (HOME is tmp_path)
            pass
    passfile.chmod(0o640)
    with pytest.raises(pgwire.OperationalError, match="no password supplied"):
        pgwire.connect(**kw(server, "u_scram"))
    moved = tmp_path / "elsewhere"
    moved.write_text("127.0.0.1:*:*:u_scram:scram\\:not\n*:*:*:*:scram secret\n")
    moved.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(moved))
    with pytest.raises(pgwire.OperationalError) as e:  # the first matching line wins: 'scram:not'
        pgwire.connect(**kw(server, "u_scram"))
    assert e.value.sqlstate == "28P01"
    with pgwire.connect(**kw(server, "u_scram", passfile=str(moved), host="localhost", hostaddr="127.0.0.1")):
        pass  # host 'localhost' does not match the first line; the wildcard line does
    monkeypatch.setenv("PGPASSWORD", "scram secret")
    with pgwire.connect(**kw(server, "u_scram")):
        pass


def test_tls_modes(srv) -> None:
    server, certs = srv
    with pgwire.connect(**kw(server, "u_trust", sslmode="require")) as conn:
        assert _ssl_in_use(conn)
    with pgwire.connect(**kw(server, "u_trust", sslmode="prefer")) as conn:
        assert _ssl_in_use(conn)
    with pgwire.connect(**kw(server, "u_trust", sslmode="allow")) as conn:
        assert not _ssl_in_use(conn)  # allow: plain first
    with pgwire.connect(**kw(server, "u_sslonly", sslmode="allow")) as conn:
        assert _ssl_in_use(conn)  # the plain attempt was rejected: then TLS
    with pytest.raises(pgwire.OperationalError) as e:
        pgwire.connect(**kw(server, "u_sslonly", sslmode="disable"))
    assert e.value.sqlstate == "28000"
    root = str(certs["ca"])
    with pgwire.connect(**kw(server, "u_trust", sslmode="verify-ca", sslrootcert=root)) as conn:
        assert _ssl_in_use(conn)
    with pgwire.connect(
        **kw(
            server, "u_trust", sslmode="verify-full", sslrootcert=root, host="localhost", hostaddr="127.0.0.1"
        )
    ) as conn:
        assert _ssl_in_use(conn)


def test_tls_verification_refusals(srv, tmp_path: Path) -> None:
    server, certs = srv
    wrong = str(certs["other_ca"])
    with pytest.raises(pgwire.OperationalError, match="certificate verify failed"):
        pgwire.connect(**kw(server, "u_trust", sslmode="verify-ca", sslrootcert=wrong))
    with pytest.raises(pgwire.OperationalError, match="certificate verify failed"):
        pgwire.connect(**kw(server, "u_trust", sslmode="verify-full", sslrootcert=wrong, host="localhost"))
    root = str(certs["ca"])
    with pytest.raises(pgwire.OperationalError, match=r"Hostname mismatch.*'wrong\.example'"):
        pgwire.connect(
            **kw(
                server,
                "u_trust",
                sslmode="verify-full",
                sslrootcert=root,
                host="wrong.example",
                hostaddr="127.0.0.1",
            )
        )
    with pytest.raises(pgwire.OperationalError, match="does not match host address"):
        pgwire.connect(**kw(server, "u_trust", sslmode="verify-full", sslrootcert=root, host="127.0.0.1"))
    with pytest.raises(pgwire.OperationalError, match="root certificate"):
        pgwire.connect(**kw(server, "u_trust", sslmode="verify-ca", sslrootcert=str(tmp_path / "none.crt")))
    # libpq: require with a root certificate file present verifies the chain, as verify-ca
    (tmp_path / ".postgresql").mkdir()
    (tmp_path / ".postgresql" / "root.crt").write_bytes(certs["other_ca"].read_bytes())
    with pytest.raises(pgwire.OperationalError, match="certificate verify failed"):
        pgwire.connect(**kw(server, "u_trust", sslmode="require"))


def test_require_against_a_server_without_tls_is_refused(pg_url: str) -> None:
    with pytest.raises(pgwire.OperationalError, match="does not support SSL"):
        pgwire.connect(**keywords(pg_url, sslmode="require"))


def test_prefer_without_tls_and_a_query_load_no_ssl_psycopg_or_asyncio(pg_url: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from stellaops_runtime import pgwire
        kw = {keywords(pg_url, sslmode="prefer")!r}
        with pgwire.connect(**kw) as conn:
            cur = conn.cursor()
            cur.execute("SELECT %s::int + 1, now()", (1,))
            assert cur.fetchone()[0] == 2
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone() == (False,)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("ssl", "_ssl", "psycopg", "asyncio"))
        print(heavy)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _serve_cert(server: PgServer, path: Path) -> None:
    """Make the cluster serve this certificate to new connections (reload, then wait for it)."""
    assert server._tmp is not None
    sock = str(server._tmp / "sock")
    with psycopg.connect(
        host=sock, port=server.port, user="postgres", dbname="postgres", autocommit=True
    ) as c:
        c.execute(f"ALTER SYSTEM SET ssl_cert_file = '{path}'")
        c.execute("SELECT pg_reload_conf()")
    for _ in range(100):
        with psycopg.connect(host=sock, port=server.port, user="postgres", dbname="postgres") as c:
            if c.execute("SHOW ssl_cert_file").fetchone() == (str(path),):
                return
        time.sleep(0.02)
    raise AssertionError("the cluster did not take the new certificate")


def test_verify_full_takes_the_common_name_when_the_certificate_has_no_dns_name(srv) -> None:
    """libpq matches the CN when no dNSName is present; so does pgwire (OpenSSL's host check, which
    Python's ssl uses, falls back to the CN likewise)."""
    server, certs = srv
    root = str(certs["ca"])
    _serve_cert(server, certs["cn_only"])
    try:
        full = kw(
            server, "u_trust", sslmode="verify-full", sslrootcert=root, host="localhost", hostaddr="127.0.0.1"
        )
        with psycopg.connect(**full):
            pass  # libpq accepts it
        with pgwire.connect(**full) as conn:
            assert _ssl_in_use(conn)
        with pytest.raises(pgwire.OperationalError, match="Hostname mismatch"):
            pgwire.connect(**{**full, "host": "other.example"})
    finally:
        _serve_cert(server, certs["server"])


@pytest.mark.parametrize("served", ["ip_cn", "ip_cn_dns", "ip_cn_other_ip", "ip_san", "server"])
def test_verify_full_to_an_address_decides_as_libpq(srv, served: str) -> None:
    """host=127.0.0.1 against a certificate naming the address only in its CN (with and without a
    dNSName) or not at all: pgwire accepts exactly when libpq does."""
    server, certs = srv
    full = kw(server, "u_trust", sslmode="verify-full", sslrootcert=str(certs["ca"]), host="127.0.0.1")
    _serve_cert(server, certs[served])
    try:
        try:
            psycopg.connect(**full).close()
            libpq_ok = True
        except psycopg.OperationalError:
            libpq_ok = False
        try:
            pgwire.connect(**full).close()
            ours_ok = True
        except pgwire.OperationalError:
            ours_ok = False
        assert ours_ok == libpq_ok, (served, libpq_ok)
    finally:
        _serve_cert(server, certs["server"])


def test_allow_against_a_server_without_tls_reports_the_plain_attempts_refusal(pg_url: str) -> None:
    """sslmode=allow: the plain attempt failed (a wrong database here), the server has no TLS for
    the second: the error raised is the server's refusal, not 'SSL was required'. Like every
    refused connection it is an OperationalError, as psycopg raises (3D000 is otherwise a
    ProgrammingError)."""
    with pytest.raises(pgwire.OperationalError) as e:
        pgwire.connect(**keywords(pg_url, sslmode="allow", dbname="no_such_database"))
    assert type(e.value) is pgwire.OperationalError
    assert e.value.sqlstate == "3D000"
    assert "no_such_database" in str(e.value)
    with pytest.raises(pgwire.OperationalError) as e:
        pgwire.connect(**keywords(pg_url, dbname="no_such_database"))
    assert type(e.value) is pgwire.OperationalError and e.value.sqlstate == "3D000"


def test_cut_and_cancel_work_on_a_tls_connection(srv) -> None:
    """A node's store connection is TLS: shutting its socket down from another thread ends a
    blocked read at once, and cancel() (a plain CancelRequest) ends a running statement."""
    import threading

    from stellaops_runtime.store.dbconn import cut

    server, certs = srv
    full = kw(server, "u_trust", sslmode="verify-ca", sslrootcert=str(certs["ca"]))
    for action in ("cancel", "cut"):
        conn = pgwire.connect(**full)
        try:
            assert _ssl_in_use(conn)
            when: list[float] = []

            def act(conn: pgwire.Connection = conn, action: str = action, when: list[float] = when) -> None:
                when.append(time.monotonic())
                if action == "cut":
                    cut(conn, "postgresql")
                else:
                    conn.cancel()

            timer = threading.Timer(0.3, act)
            timer.start()
            with pytest.raises(pgwire.OperationalError) as e:
                conn.cursor().execute("SELECT pg_sleep(30)")
            ended = time.monotonic()
            timer.join()
            assert ended - when[0] < 1.0
            if action == "cancel":
                assert e.value.sqlstate == "57014" and not conn.broken
            else:
                assert conn.broken
        finally:
            conn.close()
