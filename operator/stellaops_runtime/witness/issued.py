"""When a witness is issued: no later than the store's clock, whatever the signer's says.

The agent's witness bridge signs on its node, and a node's clock may run ahead. A witness issued
in the future is taken for the newest of its claim (``witness list`` orders by ``issued_at``; a
newer witness supersedes the older ones, docs/witnesses.md), so a stale "PotentiallyReachable"
signed on such a node passed for newer than the "DynamicReachable" another node signed after the
function ran, and ``verify --not-before`` could refuse no time before it. The question's day is
already the earlier of the asker's clock and the store's (evidence/store_facts.py); the time a
witness is issued is too: PostgreSQL's ``now()`` (the snapshot's transaction began then), and on
SQLite the machine's own clock, the signer's. So is the time a VEX or Evidence document is dated
(:func:`issued_now`): a VEX statement dated in the future was taken, by a consumer merging
documents, over the statements made after it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.store.queries import rfc3339
from stellaops_runtime.store.refs import RefError, parse_rfc3339


def store_now(conn: sa.Connection) -> dt.datetime | None:
    """The store's clock (UTC), or None when it does not read as a time."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(sa.text("SELECT now()")).scalar()
    else:
        value = conn.execute(sa.text("SELECT strftime('%Y-%m-%dT%H:%M:%f', 'now')")).scalar()
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
        except ValueError:
            return None
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        return None
    return value.astimezone(dt.UTC)


def no_later_than_store(conn: sa.Connection, doc: dict[str, Any]) -> dict[str, Any]:
    """The Evidence document ``doc`` (its ``timestamp`` the signer's clock), its timestamp the
    store's time when that is earlier: the ``issued_at`` its witness signs and is kept under."""
    theirs = store_now(conn)
    try:
        mine = parse_rfc3339(doc["timestamp"])
    except RefError:
        mine = None
    if theirs is None or (mine is not None and mine <= theirs):
        return doc
    return {**doc, "timestamp": rfc3339(theirs)}


def issued_now(conn: sa.Connection) -> dt.datetime:
    """The time an answer read on ``conn`` is issued: this machine's clock, or the store's when it
    is earlier (a VEX document's and its statements' ``timestamp``)."""
    mine = dt.datetime.now(dt.UTC)
    theirs = store_now(conn)
    return theirs if theirs is not None and theirs < mine else mine
