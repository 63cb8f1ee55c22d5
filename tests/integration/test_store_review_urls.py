"""Adversarial review of the agent's store URLs (issue 13): the connection made is the one SQLAlchemy made.

The differential test (tests/unit/test_store_url_differential.py) holds the
parse equal to SQLAlchemy's and skips the multi-host forms. Here the driver
arguments of those forms are compared with what SQLAlchemy's psycopg dialect
gives, and the real PostgreSQL is reached through them: a host named with
its port in the query (``?host=127.0.0.1:PORT``) and a fail-over list whose
first server is down. Before the review the agent gave libpq a host called
``127.0.0.1:PORT``: every write failed as "unavailable", forever.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
import pytest
from pg import free_port
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from stellaops_runtime.store.engine import StoreConfigError, open_store
from stellaops_runtime.store.store_url import parse_store_url
from tests.integration.test_flush_ledger import batch, counts

FORMS = [
    "postgresql://u:p@/db?host=h1:5432&host=h2:5433",
    "postgresql://u:p@/db?host=db:5433",
    "postgresql://u:p@h0:5000/db?host=h1:5432",
    "postgresql://u:p@/db?host=h1:5432&host=h2",
    "postgresql://u:p@/db?host=h1&host=h2",
    "postgresql://u:p@/db?host=h1,h2&port=5432,5433",
    "postgresql://u:p@/db?host=h1:5432&port=5",
    "postgresql://u:p@/db?host=/run/postgresql",
    "postgresql://u:p@/db?host=/run/postgresql&port=5433",
    "postgresql://u:p@/db?host=db.example.com:&sslmode=verify-full",
    "postgresql://u:p@/db?host=%5B::1%5D",
]
REFUSED = [
    "postgresql://u:p@/db?host=h1:5432&host=h2:5433&port=5",  # two multi-host forms mixed
    "postgresql://u:p@/db?host=h1:x&host=h2:5433",  # a port that is not a number
]


def _conninfo(params: dict[str, object]) -> dict[str, str]:
    """What libpq is given, with an empty port list entry meaning the default port either way."""
    info = psycopg.conninfo.conninfo_to_dict(psycopg.conninfo.make_conninfo("", **params))
    if set(info.get("port", "x")) <= {","}:
        info.pop("port", None)
    return {k: str(v) for k, v in info.items()}


@pytest.mark.parametrize("url", FORMS)
def test_libpq_gets_the_host_and_port_sqlalchemy_gave_it(url: str) -> None:
    _, theirs = PGDialect_psycopg().create_connect_args(make_url(url))
    assert _conninfo(parse_store_url(url).postgres_params()) == _conninfo(theirs)


@pytest.mark.parametrize("url", REFUSED)
def test_a_multi_host_url_sqlalchemy_refuses_is_a_config_error(url: str) -> None:
    with pytest.raises(ArgumentError):
        PGDialect_psycopg().create_connect_args(make_url(url))
    with pytest.raises(StoreConfigError):  # permanent, with a message; never "unavailable, retry"
        parse_store_url(url)


def _via_query(pg_url: str, hosts: list[str]) -> str:
    u = urlsplit(pg_url)
    query = "&".join(f"host={h}" for h in hosts)
    return f"{u.scheme}://{u.username}@{u.path}?{query}"


@pytest.mark.postgres
def test_a_host_with_its_port_in_the_query_reaches_the_server(pg_url: str) -> None:
    port = urlsplit(pg_url).port
    url = _via_query(pg_url, [f"127.0.0.1:{port}"])
    with open_store(url) as store:
        assert store.write_batch(batch(1, n=3)).written == 4
        assert counts(store) == {"fn_0": 1, "fn_1": 2, "fn_2": 3}


@pytest.mark.postgres
def test_a_fail_over_list_whose_first_server_is_down_writes_to_the_second(pg_url: str) -> None:
    port = urlsplit(pg_url).port
    url = _via_query(pg_url, [f"127.0.0.1:{free_port()}", f"127.0.0.1:{port}"])
    with open_store(url) as store:
        assert store.write_batch(batch(1, n=3)).written == 4
        assert store.write_batch(batch(1, n=3)).duplicate == 4  # and exactly once
        assert counts(store) == {"fn_0": 1, "fn_1": 2, "fn_2": 3}


@pytest.mark.postgres
def test_a_urls_own_options_reach_the_server_beside_the_timeouts(pg_url: str) -> None:
    # Before: the timeouts' startup options replaced the URL's, so its -c settings were dropped.
    sep = "&" if "?" in pg_url else "?"
    url = f"{pg_url}{sep}options=-c%20lock_timeout%3D4321%20-c%20statement_timeout%3D7654"
    settings = ("lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout")
    with open_store(url) as store:
        with store.db.connect() as conn:  # the agent's write path
            agent = [conn.execute(f"SHOW {s}").first()[0] for s in settings]
        with store.engine.connect() as c:  # SQLAlchemy, for readers and tools
            readers = [c.exec_driver_sql(f"SHOW {s}").scalar() for s in settings]
        assert store.write_batch(batch(1, n=2)).written == 3
    # The URL's own settings, the one it shares with the timeouts the URL's; the rest the timeouts'.
    assert agent == readers == ["4321ms", "7654ms", "1min"]
