"""The agent's side of ``node_liveness`` (migration 0015): a node's proof of life on the store's clock.

A node's agent that is down writes nothing, so the question's side (store/coverage_open.py) ends
the node's watched time at the last moment something vouches for. Window rows are stamped by the
node's clock and a live idle node writes none; this row is written at every flush, empty ones
included, and its times are the store's: ``alive_through`` is the store's clock at the write less
the agent's monotonic (boot-clock) time since the moment it claims, so neither the node's wall
clock nor a step of it moves it. The claimed moment is the one the watch record would keep for
that flush (agent/watch_record.py ``claimed``: the source watched up to it and everything taken by
then is stored), so the row never claims more than the store holds: it is written after the flush
that stored the counts, in its own transaction, and a flush whose COMMIT was not acknowledged
claims nothing new (its moment stays the last acknowledged one's).

Plain DB-API SQL (the agent never loads SQLAlchemy, as store/image_pairs.py); one upsert keyed by
the node. ``started_at`` is the agent's start on the store's clock, ``started_node`` and
``alive_node`` the start and the claimed moment on the node's wall clock: the clock its windows
are stamped by, which coverage_open compares them with.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

_COLS = (
    "node_name, agent_id, started_at, started_node, alive_through, alive_node, written_at, "
    "flush_seconds, window_seconds"
)
_SET = (
    "agent_id = excluded.agent_id, started_at = excluded.started_at, "
    "started_node = excluded.started_node, alive_through = excluded.alive_through, "
    "alive_node = excluded.alive_node, written_at = excluded.written_at, "
    "flush_seconds = excluded.flush_seconds, window_seconds = excluded.window_seconds"
)
# The store's clock, less a number of seconds: PostgreSQL's clock_timestamp() (not now(): the
# transaction's start); SQLite's 'now' (UTC, milliseconds) as the text SQLAlchemy stores, six digits.
_PG_AGO = "clock_timestamp() - make_interval(secs => %s)"
_SQLITE_AGO = "strftime('%Y-%m-%d %H:%M:%f', 'now', ?) || '000'"
_WRITE = {
    "postgresql": (
        f"INSERT INTO signals.node_liveness ({_COLS}) VALUES "
        f"(%s, %s, {_PG_AGO}, %s, {_PG_AGO}, %s, clock_timestamp(), %s, %s) "
        f"ON CONFLICT (node_name) DO UPDATE SET {_SET}"
    ),
    "sqlite": (
        f"INSERT INTO main.node_liveness ({_COLS}) VALUES "
        f"(?, ?, {_SQLITE_AGO}, ?, {_SQLITE_AGO}, ?, {_SQLITE_AGO}, ?, ?) "
        f"ON CONFLICT (node_name) DO UPDATE SET {_SET}"
    ),
}


@dataclass(frozen=True, slots=True)
class Liveness:
    """What one write says. ``*_ago``: seconds on the agent's monotonic clock from the moment to the
    write; ``*_node_ns``: the same moments on the node's wall clock (ns since the epoch)."""

    node: str
    agent_id: str
    started_ago: float
    started_node_ns: int
    alive_ago: float
    alive_node_ns: int
    flush_seconds: float
    window_seconds: int


def _node_time(ns: int, dialect: str) -> Any:
    moment = dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)
    if dialect == "sqlite":  # naive UTC text, as schema.UtcDateTime stores it
        return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return moment


def write_liveness(db: Any, live: Liveness) -> None:
    """Upsert the node's row in one transaction. Raises what the driver raises (the caller counts it)."""
    with db.begin() as conn:
        d = conn.dialect
        if d == "sqlite":
            ago = [f"{-max(0.0, s):+.6f} seconds" for s in (live.started_ago, live.alive_ago, 0.0)]
            params: tuple[Any, ...] = (
                live.node, live.agent_id, ago[0], _node_time(live.started_node_ns, d), ago[1],
                _node_time(live.alive_node_ns, d), ago[2], live.flush_seconds, live.window_seconds,
            )  # fmt: skip
        else:
            params = (
                live.node, live.agent_id, max(0.0, live.started_ago), _node_time(live.started_node_ns, d),
                max(0.0, live.alive_ago), _node_time(live.alive_node_ns, d), live.flush_seconds,
                live.window_seconds,
            )  # fmt: skip
        conn.execute(_WRITE[d], params)
