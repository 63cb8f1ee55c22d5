"""docs/configuration.md's lists of what the agent's own PostgreSQL client speaks are pgwire's.

The store section names the libpq keywords and environment variables pgwire follows, and examples of
what makes the agent's store use psycopg instead (store/pg_connect.py). Each is checked here
against ``pgwire.unsupported``, the one place that decides.
"""

from __future__ import annotations

import re
from pathlib import Path

from stellaops_runtime import pgwire
from stellaops_runtime.pgwire.params import KEYWORDS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def listed(marker: str) -> list[str]:
    found = re.search(f"<!-- {marker} -->(.*?)<!-- /{marker} -->", DOC, re.S)
    assert found, marker
    return re.findall(r"`([A-Za-z_]+)`", found.group(1))


# A value each keyword takes in a real store URL (or from store/dbconn.py's Timeouts).
VALUES = {
    "host": "db.example",
    "hostaddr": "10.0.0.5",
    "port": 5432,
    "dbname": "stella",
    "user": "agent",
    "password": "x",
    "passfile": "/etc/pg/pgpass",
    "sslmode": "verify-full",
    "sslrootcert": "/etc/pg/ca.crt",
    "sslcert": "/etc/pg/c.crt",
    "sslkey": "/etc/pg/c.key",
    "connect_timeout": 10,
    "application_name": "stellaops-runtime",
    "options": "-c statement_timeout=30000",
    "client_encoding": "UTF8",
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30000,
}


def test_the_documented_keywords_are_the_ones_pgwire_speaks() -> None:
    assert sorted(listed("pgwire-keywords")) == sorted(KEYWORDS) == sorted(VALUES)
    assert pgwire.unsupported(VALUES, {}) is None


def test_the_documented_environment_variables_are_the_ones_pgwire_reads() -> None:
    assert sorted(listed("pgwire-env")) == sorted(v for v in KEYWORDS.values() if v)


def test_the_documented_examples_make_the_store_use_psycopg() -> None:
    base = {"host": "db.example", "dbname": "stella"}
    for kw in ({"host": "h1,h2"}, {"target_session_attrs": "read-write"}, {"service": "stella"}):
        assert pgwire.unsupported({**base, **kw}, {}) is not None, kw
    for name, value in (
        ("PGSERVICE", "x"), ("PGKRBSRVNAME", "x"), ("PGSSLCRL", "x"), ("PGSSLSNI", "0"),
        ("PGTZ", "Asia/Kathmandu"), ("PGDATESTYLE", "German"), ("PGGEQO", "off"),
    ):  # fmt: skip
        said = pgwire.unsupported(base, {name: value})
        assert said is not None and name in said, (name, said)
