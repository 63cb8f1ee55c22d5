"""The agent's own URL parser against SQLAlchemy's ``make_url`` (issue 13: the agent loads no SQLAlchemy).

store/store_url.py must read every store URL as SQLAlchemy does (the readers
still hand the same URL to SQLAlchemy, and a store named two ways would be
two stores), render it as SQLAlchemy does (the store's name in logs and
messages), and connect with what SQLAlchemy's dialects would have passed to
the driver. URLs are generated: users and passwords with percent-encoding and
every awkward character, ports (none, empty, text, huge), query parameters
(sslmode, repeated keys, unix-socket ``host=/run/postgresql``, blanks),
IPv6 hosts, driver suffixes, SQLite relative/absolute/``:memory:``/``file:``
forms, and malformed ones.
"""

from __future__ import annotations

import itertools
import random
import warnings
from urllib.parse import quote

import pytest
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from stellaops_runtime.store.engine import normalize_url
from stellaops_runtime.store.errors import StoreConfigError
from stellaops_runtime.store.store_url import URLSyntaxError, parse_store_url, split_url

USERS = [None, "", "u", "app user", "ü", "a+b", "a%40b", "x@y"]
PASSWORDS = [None, "", "s3cret", "p%40ss", "p%3Aw%2Fo%23r", "with space", "pl+us", "ümlaut", "%", "a:b"]
HOSTS = ["", "db", "db.example.com", "127.0.0.1", "[::1]", "[fe80::1%25eth0]", "h_1", "x@y", "-"]
PORTS = [None, "", "5432", "0", "65535", "99999999999", "54x", " 12", "+7", "1_0"]
DATABASES = [None, "", "hot", "my db", "d%2Fb", "a/b", "ö", "x@y", "d?b"]
QUERIES = [
    None,
    "",
    "sslmode=require",
    "host=/run/postgresql",
    "host=/run/postgresql&port=5433",
    "sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
    "a=1&a=2",
    "k=",
    "k",
    "options=-c%20search_path%3Dx",
    "sslpassword=k3y",
    "%zz=1",
    "a=b=c",
]
DRIVERS = ["postgresql", "postgresql+psycopg", "postgresql+psycopg2", "sqlite", "sqlite+pysqlite", "mysql"]


def pg_urls() -> list[str]:
    rng = random.Random(1304)
    out = []
    for _ in range(3000):
        user, pw = rng.choice(USERS), rng.choice(PASSWORDS)
        cred = "" if user is None else user + ("" if pw is None else ":" + pw) + "@"
        port = rng.choice(PORTS)
        db = rng.choice(DATABASES)
        q = rng.choice(QUERIES)
        out.append(
            f"{rng.choice(DRIVERS)}://{cred}{rng.choice(HOSTS)}"
            + ("" if port is None else ":" + port)
            + ("" if db is None else "/" + db)
            + ("" if q is None else "?" + q)
        )
    return out


SQLITE_URLS = [
    "sqlite://",
    "sqlite:///",
    "sqlite:///:memory:",
    "sqlite:///hot.db",
    "sqlite:///rel/dir/hot.db",
    "sqlite:////var/lib/stellaops/hot.db",
    "sqlite:////tmp/with space/ü.db",
    "sqlite:////tmp/pct%20enc.db",
    "sqlite:///file:hot.db?mode=ro&uri=true",
    "sqlite:///file:mem?mode=memory&cache=shared&uri=true",
    "sqlite:///hot.db?timeout=5",
    "sqlite:///hot.db?check_same_thread=false",
    "sqlite+pysqlite:///hot.db",
]
MALFORMED = [
    "",
    "not a url",
    "postgresql:/x",
    "://h/db",
    "postgres ql://h/db",
    "postgresql//h/db",
    "postgresql://u:pw@h:port/db",
    "postgresql://u:pwone@fragtwo@db/x",
    "postgresql://u:pwone@fragtwo:fragthree@db/x",
    "postgresql://u:pwone@fragtwo/w#x@db/x",
    "postgresql://h:/db",
    "\x00://h",
    "sqlite:///nul\x00.db",
    "ümlaut+drv://h/db",
]

ALL = [*pg_urls(), *SQLITE_URLS, *MALFORMED]


def sqlalchemy_view(url: str) -> tuple[object, ...]:
    """What make_url makes of ``url``: the fields the agent uses, or the kind of error."""
    try:
        u = make_url(url)
    except ArgumentError:
        return ("syntax",)
    except ValueError:
        return ("port",)
    query = {k: (v if isinstance(v, str) else tuple(v)) for k, v in u.query.items()}
    return (
        u.get_backend_name(),
        u.drivername,
        u.host,
        u.port,
        u.username,
        u.password,
        u.database,
        query,
        u.render_as_string(hide_password=True),
        u.render_as_string(hide_password=False),
    )


def our_view(url: str) -> tuple[object, ...]:
    try:
        u = split_url(url)
    except URLSyntaxError:
        return ("syntax",)
    except ValueError:
        return ("port",)
    return (
        u.backend,
        u.drivername,
        u.host,
        u.port,
        u.username,
        u.password,
        u.database,
        u.query_dict,
        u.render(hide_password=True),
        u.render(hide_password=False),
    )


def test_the_generated_urls_cover_every_outcome() -> None:
    kinds = {sqlalchemy_view(u)[0] for u in ALL}
    assert {"syntax", "port", "postgresql", "sqlite", "mysql"} <= kinds
    assert len(set(ALL)) > 1500


@pytest.mark.parametrize("chunk", range(8))
def test_every_url_is_read_as_sqlalchemy_reads_it(chunk: int) -> None:
    urls = ALL[chunk::8]
    diffs = [(u, ours, theirs) for u in urls if (ours := our_view(u)) != (theirs := sqlalchemy_view(u))]
    assert diffs == []


def _old_normalize(url: str) -> tuple[str, str] | str:
    """The store's rules as they were applied to make_url's result (before the agent lost SQLAlchemy)."""
    try:
        u = make_url(url)
    except ArgumentError:
        return "syntax"
    except ValueError:
        return "port"
    backend = u.get_backend_name()
    if backend == "postgresql":
        if "@" in (u.host or "") or "@" in (u.database or ""):
            return "at"
        return "postgresql+psycopg", u.set(drivername="postgresql+psycopg").render_as_string(False)
    if backend == "sqlite":
        return u.drivername, u.render_as_string(False)
    return "unsupported"


def _new_normalize(url: str) -> tuple[str, str] | str:
    try:
        u = parse_store_url(url)
    except StoreConfigError as e:
        text = str(e)
        if "not an SQLAlchemy URL" in text:
            return "syntax"
        if "port is not a number" in text:
            return "port"
        if "'@' after the host" in text:
            return "at"
        assert text.startswith("unsupported store URL"), text
        return "unsupported"
    return u.drivername, u.render(hide_password=False)


def test_the_store_rules_accept_and_refuse_the_same_urls() -> None:
    diffs = [(u, a, b) for u in ALL if (a := _new_normalize(u)) != (b := _old_normalize(u))]
    assert diffs == []
    for u in ALL:  # and normalize_url (the readers') still says what it said, with the same messages
        if isinstance(_new_normalize(u), tuple):
            assert normalize_url(u).render_as_string(False) == _new_normalize(u)[1]  # type: ignore[index]


def _psycopg_args(url: str) -> dict[str, object] | None:
    try:
        _, params = PGDialect_psycopg().create_connect_args(make_url(url))
    except ArgumentError:  # SQLAlchemy's own multi-host checks: not a URL the agent may take
        return None
    params.pop("context", None)
    return {k: str(v) for k, v in params.items()}


def test_postgres_connections_get_the_driver_arguments_sqlalchemy_gave() -> None:
    checked = 0
    for url in ALL:
        try:
            u = parse_store_url(url)
        except StoreConfigError:
            continue
        if u.backend != "postgresql":
            continue
        theirs = _psycopg_args(u.render(hide_password=False))
        if theirs is None or any(not isinstance(v, str) for _, v in u.query):
            continue  # repeated keys: SQLAlchemy's multi-host forms, joined with commas here
        assert {k: str(v) for k, v in u.postgres_params().items()} == theirs, url
        checked += 1
    assert checked > 500


@pytest.mark.parametrize("url", [u for u in SQLITE_URLS if "file:" not in u or "uri=true" in u])
def test_sqlite_opens_the_file_sqlalchemy_opened(url: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy warns about query keys pysqlite ignores
        (filename,), opts = SQLiteDialect_pysqlite().create_connect_args(make_url(url))
    assert parse_store_url(url).sqlite_target() == (filename, bool(opts.get("uri", False)))


def test_percent_encoded_passwords_round_trip_for_every_awkward_character() -> None:
    for a, b in itertools.product("@:/#?%+ &=ü\\", repeat=2):
        pw = f"p{a}w{b}d"
        url = f"postgresql://user:{quote(pw, safe='')}@db:5432/hot?sslmode=require"
        u = parse_store_url(url)
        assert u.password == pw == make_url(url).password
        assert u.postgres_params()["password"] == pw
        assert "***" in u.render() and quote(pw, safe="") not in u.render()
