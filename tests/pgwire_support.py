"""Helpers for the pgwire tests: a test database's URL as pgwire/psycopg keywords."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def keywords(url: str, **extra: Any) -> dict[str, Any]:
    """libpq keywords for a tests/pg.py URL (``postgresql+psycopg://user@host:port/db``)."""
    u = urlsplit(url)
    kw: dict[str, Any] = {
        "host": u.hostname,
        "port": u.port,
        "user": u.username,
        "dbname": u.path.lstrip("/"),
        "sslmode": "disable",
        "connect_timeout": 10,
    }
    if u.password:
        kw["password"] = u.password
    kw.update(extra)
    return kw
