"""pgwire's connection settings (libpq's keywords, environment, defaults), placeholders and framing."""

from __future__ import annotations

import os
import pwd

import pytest

from stellaops_runtime import pgwire
from stellaops_runtime.pgwire import messages
from stellaops_runtime.pgwire.cursor import convert
from stellaops_runtime.pgwire.params import pgpass_lookup, resolve

DBCONN_KW = {  # what store/dbconn.py gives psycopg for postgresql://stella:pw@db:5432/stella
    "host": "db",
    "dbname": "stella",
    "user": "stella",
    "password": "pw",
    "port": 5432,
    "connect_timeout": 10,
    "application_name": "stellaops-runtime",
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
    "options": "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000",
    "sslmode": "verify-full",
    "sslrootcert": "/etc/ssl/ca.crt",
}


def test_the_agents_own_configuration_is_supported() -> None:
    assert pgwire.unsupported(DBCONN_KW, {}) is None
    assert (
        pgwire.unsupported({"host": "/run/postgresql"}, {"PGSSLMODE": "require", "PGGSSENCMODE": "disable"})
        is None
    )


@pytest.mark.parametrize(
    ("kw", "env", "named"),
    [
        ({"host": "a,b"}, {}, "host list"),
        ({}, {"PGHOST": "a,b"}, "PGHOST"),
        ({"port": "5432,5433"}, {}, "port list"),
        ({"target_session_attrs": "read-write"}, {}, "target_session_attrs"),
        ({"gssencmode": "require"}, {}, "gssencmode"),
        ({"channel_binding": "require"}, {}, "channel_binding"),
        ({"sslnegotiation": "direct"}, {}, "sslnegotiation"),
        ({"service": "mydb"}, {}, "service"),
        ({}, {"PGSERVICE": "mydb"}, "PGSERVICE"),
        ({"sslpassword": "x"}, {}, "sslpassword"),
        ({"sslcrl": "/x"}, {}, "sslcrl"),
        ({"krbsrvname": "postgres"}, {}, "krbsrvname"),
        ({"requirepeer": "postgres"}, {}, "requirepeer"),
        ({"load_balance_hosts": "random"}, {}, "load_balance_hosts"),
        ({"client_encoding": "LATIN1"}, {}, "client_encoding"),
        ({"sslmode": "bogus"}, {}, "sslmode"),
        ({"frobnicate": "1"}, {}, "frobnicate"),
        ({}, {"PGREQUIREAUTH": "md5"}, "PGREQUIREAUTH"),
        ({}, {"PGCHANNELBINDING": "require"}, "PGCHANNELBINDING"),
    ],
)
def test_unsupported_names_what_pgwire_does_not_speak(kw: dict, env: dict, named: str) -> None:
    reason = pgwire.unsupported(kw, env)
    assert reason is not None and named in reason


def test_libpq_defaults_and_environment(tmp_path) -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    t = resolve({}, {"HOME": str(tmp_path)})
    assert (t.host, t.port, t.user, t.dbname, t.sslmode) == ("/var/run/postgresql", 5432, me, me, "prefer")
    assert t.socket_path == "/var/run/postgresql/.s.PGSQL.5432" and t.unix
    env = {
        "PGHOST": "h",
        "PGPORT": "6543",
        "PGUSER": "u",
        "PGDATABASE": "d",
        "PGPASSWORD": "p",
        "PGSSLMODE": "require",
        "PGAPPNAME": "app",
        "PGOPTIONS": "-c x=1",
        "PGCONNECT_TIMEOUT": "1",
    }
    t = resolve({}, env)
    assert (t.host, t.port, t.user, t.dbname, t.password, t.sslmode) == ("h", 6543, "u", "d", "p", "require")
    assert (t.application_name, t.options, t.connect_timeout) == ("app", "-c x=1", 2.0)  # libpq: >= 2 s
    t = resolve({"host": "k", "port": 1, "user": "ku", "connect_timeout": 0}, env)  # keywords win
    assert (t.host, t.port, t.user, t.dbname, t.connect_timeout) == ("k", 1, "ku", "d", None)
    with pytest.raises(pgwire.OperationalError, match="port"):
        resolve({"port": "x"}, {})


def test_pgpass_matching(tmp_path) -> None:
    f = tmp_path / "pgpass"
    f.write_text("localhost:5432:db:u:sock\\:pw\nh\\:x:*:*:u:escaped\n*:5433:*:*:any\\\\thing\n")
    f.chmod(0o600)
    assert pgpass_lookup(str(f), "/var/run/postgresql", 5432, "db", "u") == "sock:pw"  # the socket: localhost
    assert pgpass_lookup(str(f), "", 5432, "db", "u") == "sock:pw"
    assert pgpass_lookup(str(f), "/tmp", 5432, "db", "u") is None  # another socket directory
    assert pgpass_lookup(str(f), "h:x", 1, "db", "u") == "escaped"
    assert pgpass_lookup(str(f), "z", 5433, "db", "v") == "any\\thing"
    f.chmod(0o604)
    assert pgpass_lookup(str(f), "z", 5433, "db", "v") is None
    assert pgpass_lookup(str(tmp_path), "z", 5433, "db", "v") is None  # not a regular file


def test_placeholders() -> None:
    assert convert("SELECT %s, %s, '%%', x %% 2") == ("SELECT $1, $2, '%', x % 2", 2)
    with pytest.raises(pgwire.ProgrammingError):
        convert("SELECT %(name)s")
    with pytest.raises(pgwire.ProgrammingError):
        convert("SELECT 5 %")


@pytest.mark.parametrize("length", [0, 3, -1, -(2**31), (1 << 30) + 5, 2**31 - 1])
def test_a_frame_length_out_of_bounds_is_a_protocol_violation(length: int) -> None:
    import struct

    with pytest.raises(messages.ProtocolViolation):
        messages.header(b"D" + struct.pack("!i", length))
    assert messages.header(b"D" + struct.pack("!i", 4)) == (b"D", 0)


def test_a_closed_connections_fileno_is_refused() -> None:
    """dbconn's cut() dups fileno() from another thread: a closed connection's number may name another
    socket by then, so it is refused instead of handed out."""
    import socket

    from stellaops_runtime.pgwire.connection import Connection
    from stellaops_runtime.pgwire.startup import Session
    from stellaops_runtime.pgwire.transport import Transport

    a, b = socket.socketpair()
    conn = Connection(Transport(a, None, socket.AF_UNIX), resolve({"host": "/x"}, {}), Session())
    assert conn.fileno() == a.fileno()
    conn.close()
    b.close()
    with pytest.raises(pgwire.OperationalError):
        conn.fileno()


def test_a_kerberos_credential_cache_leaves_the_connection_to_libpq() -> None:
    """libpq's default gssencmode=prefer tries GSS encryption when a credential cache exists (a
    server with only hostgssenc lines accepts nothing else); pgwire cannot, so it says so."""
    reason = pgwire.unsupported({"host": "db"}, {"KRB5CCNAME": "FILE:/tmp/cc"})
    assert reason is not None and "Kerberos" in reason
    assert pgwire.unsupported({"host": "db", "gssencmode": "disable"}, {"KRB5CCNAME": "FILE:/tmp/cc"}) is None
    assert (
        pgwire.unsupported({"host": "db"}, {"KRB5CCNAME": "FILE:/tmp/cc", "PGGSSENCMODE": "disable"}) is None
    )
