"""Store URLs parsed without SQLAlchemy: what the agent needs to connect, and to name the store.

The agent connects with plain DB-API drivers (:mod:`stellaops_runtime.store.dbconn`)
and must not load SQLAlchemy (issue 13: ~16 MB). The readers still hand URLs to
SQLAlchemy, so this parser takes exactly SQLAlchemy's URL grammar
(``driver://user:password@host:port/database?query``, user, password and
database percent-decoded, a port through ``int()``, a repeated query key
collected into a tuple) and renders it back the way SQLAlchemy does (password
as ``***``). A differential test (tests/unit/test_store_url_differential.py)
holds the two equal over generated URLs.

:func:`parse_store_url` also applies the store's own rules, with the same
messages as :func:`stellaops_runtime.store.engine.normalize_url`: only
PostgreSQL (``postgresql://`` and ``postgresql+psycopg2://`` become psycopg 3)
and SQLite, and no unencoded ``@`` in a PostgreSQL password.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote

from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.store.errors import StoreConfigError

_ENCODE_HINT = "percent-encode @ : / # in the password: %40 %3A %2F %23"

_URL = re.compile(
    r"""
    (?P<name>[\w+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/?]+)\]|(?P<ipv4host>[^/:?]+))?(?::(?P<port>[^/?]*))?)?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.X,
)


class URLSyntaxError(ValueError):
    """Not a URL at all (SQLAlchemy's ArgumentError)."""


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL: the fields SQLAlchemy's ``URL`` has, the query as str -> str | tuple."""

    drivername: str
    username: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: tuple[tuple[str, str | tuple[str, ...]], ...] = ()

    @property
    def backend(self) -> str:
        """``postgresql`` or ``sqlite``: the part of the driver name before ``+``."""
        return self.drivername.split("+", 1)[0]

    @property
    def query_dict(self) -> dict[str, str | tuple[str, ...]]:
        return dict(self.query)

    def render(self, *, hide_password: bool = True) -> str:
        """The URL as SQLAlchemy's ``render_as_string`` writes it (the password as ``***``)."""
        s = self.drivername + "://"
        if self.username is not None:
            s += quote(self.username, safe=" +")
            if self.password is not None:
                s += ":" + ("***" if hide_password else quote(self.password, safe=" +"))
            s += "@"
        if self.host is not None:
            s += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            s += f":{self.port}"
        if self.database is not None:
            s += "/" + quote(self.database, safe=" +/")
        if self.query:
            s += "?" + "&".join(
                f"{quote_plus(k)}={quote_plus(v)}"
                for k, vs in sorted(self.query)
                for v in ((vs,) if isinstance(vs, str) else vs)
            )
        return s

    def sqlite_path(self) -> Path | None:
        """The file of a SQLite URL; None for in-memory databases."""
        db = self.database
        if not db or db == ":memory:" or db.startswith("file:"):
            return None
        return Path(db)

    def postgres_params(self) -> dict[str, Any]:
        """libpq keywords from the URL, as SQLAlchemy's psycopg dialect builds them.

        user, password, host, port, dbname, then every query parameter
        (``sslmode``, ``host=/run/postgresql`` ...); a repeated ``host`` is a
        comma-separated host list.
        """
        out: dict[str, Any] = {}
        fields: tuple[tuple[str, str | int | None], ...] = (
            ("host", self.host),
            ("dbname", self.database),
            ("user", self.username),
            ("password", self.password),
            ("port", self.port),
        )
        for key, value in fields:
            if value:  # SQLAlchemy leaves out empty fields (and port 0)
                out[key] = value
        for key, q in self.query:
            out[key] = q if isinstance(q, str) else ",".join(q)
        hosts = self.query_dict.get("host")
        if hosts is not None:
            out.update(_split_hosts(hosts, "port" in self.query_dict))
        return out

    def sqlite_target(self) -> tuple[str, bool]:
        """(filename, uri) for ``sqlite3.connect``, as SQLAlchemy's pysqlite dialect passes them."""
        q = self.query_dict
        uri = str(q.get("uri", "")).strip().lower() in ("true", "yes", "on", "y", "t", "1")
        if uri:
            extra = {k: v for k, v in q.items() if k not in _PYSQLITE_ARGS}
            filename = self.database or ""
            if extra:
                filename += "?" + "&".join(f"{k}={extra[k]}" for k in sorted(extra))
            return filename, True
        filename = self.database or ":memory:"
        return (filename if filename == ":memory:" else os.path.abspath(filename)), False


_HOST_PORT = re.compile(r"([a-zA-Z0-9\-.]*)(?::(\d*))?")


def _split_hosts(hosts: str | tuple[str, ...], port_in_query: bool) -> dict[str, str]:
    """``host`` and ``port`` from the query's multi-host forms, as SQLAlchemy's psycopg dialect reads them.

    ``?host=h1:5432&host=h2:5433`` (or one ``?host=db:5433``) names each host with
    its port: libpq gets ``host=h1,h2 port=5432,5433``, never a host called
    ``h1:5432``. ``?host=h1,h2&port=p1,p2`` and a socket directory stay as written.
    Raises :class:`StoreConfigError` where SQLAlchemy refuses the URL.
    """
    if isinstance(hosts, str):
        m = _HOST_PORT.fullmatch(hosts)
        if port_in_query or "," in hosts or ":" not in hosts or m is None:
            return {}
        pairs = [(m.group(1), m.group(2) or "")]
    else:
        if port_in_query:
            raise StoreConfigError(
                "store URL: use either ?host=h1:p1&host=h2:p2 or ?host=h1,h2&port=p1,p2, not both"
            )
        split = [h.split(":") for h in hosts]
        if any(len(hp) > 2 for hp in split):
            raise StoreConfigError("store URL: more than one ':' in a ?host=HOST:PORT")
        pairs = [(hp[0], hp[1] if len(hp) == 2 else "") for hp in split]
    if not all(p.isdigit() or not p for _, p in pairs):
        raise StoreConfigError("store URL: a port in ?host=HOST:PORT is not a number")
    out = {"host": ",".join(h for h, _ in pairs)}
    if any(p for _, p in pairs):
        out["port"] = ",".join(p for _, p in pairs)
    return out


_PYSQLITE_ARGS = (
    "uri",
    "timeout",
    "isolation_level",
    "detect_types",
    "check_same_thread",
    "cached_statements",
)


def split_url(text: str) -> StoreURL:
    """SQLAlchemy's ``make_url`` of a string, with nothing of the store's rules.

    Raises :class:`URLSyntaxError` where ``make_url`` raises ArgumentError and
    ValueError where it does (a port ``int()`` refuses).
    """
    if not isinstance(text, str):
        raise URLSyntaxError("not a string")
    m = _URL.match(text)
    if m is None:
        raise URLSyntaxError("not a URL")
    g = m.groupdict()
    port: int | None = None
    if g["port"] is not None:
        port = int(g["port"])  # ValueError, as SQLAlchemy's (also for an empty port)
    query: dict[str, str | tuple[str, ...]] = {}
    if g["query"] is not None:
        for key, value in parse_qsl(g["query"]):
            have = query.get(key)
            if have is None:
                query[key] = value
            else:
                query[key] = (*((have,) if isinstance(have, str) else have), value)

    def dec(v: str | None) -> str | None:
        return unquote(v) if v is not None else None

    return StoreURL(
        drivername=g["name"],
        username=dec(g["username"]),
        password=dec(g["password"]),
        host=g["ipv4host"] or g["ipv6host"],
        port=port,
        database=dec(g["database"]),
        query=tuple(query.items()),
    )


def safe_text(url: str | StoreURL) -> str:
    """A URL for messages: its password, and password-like query parameters, masked.

    A string is masked as written, not parsed first: a malformed URL is what
    needs a message (see :mod:`stellaops_runtime.contracts.redact`).
    """
    if isinstance(url, StoreURL):
        return redact(url.render(hide_password=True))
    return redact(url)


def parse_store_url(url: str | StoreURL) -> StoreURL:
    """Parse a store URL; ``postgresql://`` and ``postgresql+psycopg2://`` become psycopg 3.

    Raises :class:`StoreConfigError` for anything that is not SQLite or
    PostgreSQL, and for a PostgreSQL URL whose password holds an unencoded
    ``@``. Messages show the URL masked, never the parser's own text.
    """
    if isinstance(url, StoreURL):
        u = url
    else:
        try:
            u = split_url(url)
        except URLSyntaxError:
            raise StoreConfigError(
                f"invalid store URL {safe_text(url)!r}: not an SQLAlchemy URL "
                "(expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB)"
            ) from None
        except ValueError:  # int() of the port: its text may be a piece of the password
            raise StoreConfigError(
                f"invalid store URL {safe_text(url)!r}: the port is not a number ({_ENCODE_HINT})"
            ) from None
    if u.backend == "postgresql":
        if "@" in (u.host or "") or "@" in (u.database or ""):
            raise StoreConfigError(
                f"invalid store URL {safe_text(url)!r}: '@' after the host ({_ENCODE_HINT})"
            )
        pg = StoreURL("postgresql+psycopg", u.username, u.password, u.host, u.port, u.database, u.query)
        pg.postgres_params()  # the multi-host forms' own rules (StoreConfigError), as SQLAlchemy's
        return pg
    if u.backend == "sqlite":
        return u
    raise StoreConfigError(
        f"unsupported store URL {safe_text(url)!r}: expected sqlite:///PATH or postgresql://..."
    )
