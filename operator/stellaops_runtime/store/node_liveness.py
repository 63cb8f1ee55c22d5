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

Before its first rows are written the agent writes a row that claims nothing (:func:`write_start`),
so a node whose agent is killed between its first flush and that flush's proof is judged by the
proof rule, not by its latest record's stamp (a node clock ahead delayed the open gap by its skew).
It says: watched, and proved alive, up to the agent's start less :func:`vouch_slack` (before any
record the reader lets the row vouch for, store/coverage_live.py ``vouches_for``), so the node reads
as down from there until the agent's first proof replaces it. A node that has a row keeps its claim,
its write and the start of the agent that made them (an earlier agent's: where the hole since it
starts, and the records that claim vouches for); only the row's agent becomes this one (so a stop
record of the earlier agent, migration 0017, is not the row's last word). Not at the store's open:
a row tells the next agent that one ran on the node (agent/node_history.py ``survivor_ns``), which
an agent that stored nothing must not; nor does a start row its agent never replaced (written
before its start: its first rows may never have been stored), which ``survivor_ns`` passes over.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from stellaops_runtime.store.dbvalues import postgres_datetime, sqlite_datetime

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
_START_VALUES = {  # the claimed moment and the write's both at the start less the slack (_SQLITE_AGO)
    "postgresql": f"(%s, %s, {_PG_AGO}, %s, {_PG_AGO}, %s, {_PG_AGO}, %s, %s)",
    "sqlite": f"(?, ?, {_SQLITE_AGO}, ?, {_SQLITE_AGO}, ?, {_SQLITE_AGO}, ?, ?)",
}
# A node with a row keeps its claim (alive_*, written_at: where the hole since that agent starts) and
# the start of the agent that made it (started_*: the records that claim vouches for, coverage_live's
# ``vouches_for``; this agent's start there left the earlier agent's last records unvouched, so until
# this agent's rows were stored the node fell back to its latest record's rule, a clock ahead's skew
# late); only the agent becomes this one, so a record the earlier agent left of its own stop is no
# longer read as the row's last word (only its own agent's is).
_START_SET = "agent_id = excluded.agent_id"
_START = {
    d: f"INSERT INTO {t}.node_liveness ({_COLS}) VALUES {_START_VALUES[d]} "
    f"ON CONFLICT (node_name) DO UPDATE SET {_START_SET}"
    for d, t in (("postgresql", "signals"), ("sqlite", "main"))
}
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


def node_time(ns: int, dialect: str) -> Any:
    """A node-clock moment (wall ns) as the driver of ``dialect`` stores it in a UtcDateTime column."""
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
                live.node, live.agent_id, ago[0], node_time(live.started_node_ns, d), ago[1],
                node_time(live.alive_node_ns, d), ago[2], live.flush_seconds, live.window_seconds,
            )  # fmt: skip
        else:
            params = (
                live.node, live.agent_id, max(0.0, live.started_ago), node_time(live.started_node_ns, d),
                max(0.0, live.alive_ago), node_time(live.alive_node_ns, d), live.flush_seconds,
                live.window_seconds,
            )  # fmt: skip
        conn.execute(_WRITE[d], params)


def vouch_slack(window_seconds: int) -> float:
    """Seconds before an agent's start that a record its proof of life vouches for may start: two of
    its windows, at least two minutes (store/coverage_live.py ``Live.vouches_for``)."""
    return 2.0 * max(int(window_seconds), 60)


def write_start(db: Any, live: Liveness) -> None:
    """The row of an agent that has stored nothing yet (one transaction): claimed and written at
    ``live``'s start less :func:`vouch_slack` (its ``alive_*`` are not read), so it vouches for no
    record before its moment and reads as down from it; a row already there keeps its claim, write and
    start, and takes this agent's id. Raises what the driver raises (the caller counts it)."""
    slack = vouch_slack(live.window_seconds)
    ago = max(0.0, live.started_ago) + slack
    node_ns = live.started_node_ns - int(slack * 1e9)
    with db.begin() as conn:
        d = conn.dialect
        if d == "sqlite":
            started, back = (f"{-max(0.0, s):+.6f} seconds" for s in (live.started_ago, ago))
            params: tuple[Any, ...] = (
                live.node, live.agent_id, started, node_time(live.started_node_ns, d), back,
                node_time(node_ns, d), back, live.flush_seconds, live.window_seconds,
            )  # fmt: skip
        else:
            params = (
                live.node, live.agent_id, max(0.0, live.started_ago), node_time(live.started_node_ns, d),
                ago, node_time(node_ns, d), ago, live.flush_seconds, live.window_seconds,
            )  # fmt: skip
        conn.execute(_START[d], params)


# Rows whose every moment is before the retention's cutoff (store/partitions.py): the claim on both
# clocks and the write. Same-width naive UTC text on SQLite (as written above), so text compares as time.
_PRUNE = {
    "postgresql": "DELETE FROM signals.node_liveness WHERE written_at < %s AND alive_through < %s "
    "AND alive_node < %s",
    "sqlite": "DELETE FROM main.node_liveness WHERE written_at < ? AND alive_through < ? AND alive_node < ?",
}


def prune_liveness(db: Any, cutoff: dt.datetime) -> int:
    """Delete the rows of nodes whose last proof of life (its write and its claim, on the store's
    clock and the node's) is older than the retention's ``cutoff``; returns how many. Such a row
    changes no answer the store can still give: its watched end is on a day whose windows retention
    removed, so its open time touches no image watched then, and the node's later records keep the
    rule of the latest record either way (store/coverage_open.py). A live or recently dead node's row
    is newer. One transaction; raises what the driver raises (the caller logs it)."""
    arg = sqlite_datetime(cutoff) if db.dialect == "sqlite" else postgres_datetime(cutoff)
    with db.begin() as conn:
        return max(0, int(conn.execute(_PRUNE[db.dialect], (arg, arg, arg)).rowcount or 0))
