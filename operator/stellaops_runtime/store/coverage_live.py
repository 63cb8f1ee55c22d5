"""The question's side of ``node_liveness`` (migration 0015): each node's proof of life and the store's now.

Split from store/coverage_open.py, which decides where a node's watched time ends: this module
reads what the agents wrote (store/node_liveness.py) and the store's own clock, so that neither a
node's clock nor the CLI host's moves an answer. A store before migration 0015 has no table: every
node then keeps the rule of its latest record.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.store.queries import chunks
from stellaops_runtime.store.schema import SCHEMA, node_liveness

# A flush's own time beside its interval: a healthy flush and its proof of life take well under a
# second, the moment a flush claims is the outage marker's last sample (taken about once a second),
# and one flush missed (a slow store) is in the three intervals. A flush slower still reads as down
# for the rest: the safe side (unknown, never "not observed").
FLUSH_ALLOWANCE = dt.timedelta(seconds=2)
FLUSHES = 3  # flush intervals a live agent may go without a proof of life
# How far a live agent's claimed moment may trail its write: Tetragon may still hold events up to its
# event cache's 32 s and a backlog's lag (sources/event_hold.py: at most 600 s), so a gRPC stream's
# moment is that far behind now. An agent whose claimed moment trails further (its flushes failing
# while its proofs of life are written) is taken as down from that moment: the safe side.
LAG_ALLOWANCE = dt.timedelta(seconds=32 + 600 + 30)


@dataclass(frozen=True, slots=True)
class Stopped:
    """An agent's graceful stop record (store/node_stop.py): ``at`` on the store's clock; the
    digests of the images still running then, ``uncertain`` when it could not know them; ``gone``
    when its Node was being deleted."""

    at: dt.datetime
    reason: str
    running: frozenset[str]
    uncertain: bool
    gone: bool


@dataclass(frozen=True, slots=True)
class Live:
    """One node's proof of life: ``alive_through``/``started_at`` on the store's clock,
    ``alive_node``/``started_node`` the same moments on the node's (its windows') clock."""

    agent_id: str
    started_at: dt.datetime
    started_node: dt.datetime
    alive_through: dt.datetime
    alive_node: dt.datetime
    flush_seconds: float
    window_seconds: int
    written_at: dt.datetime  # store clock
    stop: Stopped | None = None  # its graceful stop record (migration 0017), when it is this agent's

    @property
    def grace(self) -> dt.timedelta:
        """How long after a proof of life's write a live agent has written the next one:
        :data:`FLUSHES` flush intervals and :data:`FLUSH_ALLOWANCE`."""
        return FLUSHES * dt.timedelta(seconds=max(0.0, self.flush_seconds)) + FLUSH_ALLOWANCE

    def alive_at(self, asked: dt.datetime) -> bool:
        """Whether the agent is taken as alive at ``asked`` (the store's clock): its last write is
        within :attr:`grace` and its claimed moment trailed that write by at most the grace and
        :data:`LAG_ALLOWANCE`; a question before the claimed moment is answered by it too."""
        if asked <= self.alive_through:
            return True
        lag = self.written_at - self.alive_through
        return asked - self.written_at <= self.grace and lag <= self.grace + LAG_ALLOWANCE

    @property
    def watched_end(self) -> dt.datetime:
        """Where the node's watched time ends in its windows' time: the earlier of the two clocks'
        readings of the claimed moment (a node clock behind the store's watched event time up to
        its own reading only; one ahead is held to the store's)."""
        return min(self.alive_through, self.alive_node)

    def stop_end(self, images: Iterable[str]) -> dt.datetime | None:
        """Where the open time of an image known by the digests ``images`` ends after this agent's
        graceful stop: at ``stopped_at`` when its node is gone; None (open on to the question)
        otherwise, and without a stop record (a SIGKILL, an OOM kill, a crash). The images running at
        a plain stop are recorded, not used: on a node that runs on without an agent, an image not
        running at the stop (a CronJob's, a pod rescheduled there) may start again unwatched."""
        stop = self.stop
        if stop is not None and stop.gone:
            return stop.at
        return None

    def vouches_for(self, latest: dt.datetime) -> bool:
        """Whether this agent watched the node's time around its latest record ``latest`` (a window
        start): the record is not older than the agent's start by more than two of its windows
        (its restart gap's last row starts within one window of it). A replayed export file's
        windows (days behind) or an earlier agent's are not this agent's to vouch for."""
        slack = dt.timedelta(seconds=2 * max(self.window_seconds, 60))
        return latest >= self.started_node - slack


def has_liveness(conn: sa.Connection) -> bool:
    """Whether the store has migration 0015's table."""
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    return sa.inspect(conn).has_table(node_liveness.name, schema=schema)


def store_now(conn: sa.Connection) -> dt.datetime:
    """The store's clock (PostgreSQL ``clock_timestamp()``; SQLite ``'now'``, UTC, milliseconds)."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    else:
        value = conn.execute(sa.text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
    return _as_utc(value)


_STOP_COLUMNS = ("stopped_at", "stop_agent", "stop_reason", "running_images", "images_uncertain", "gone")


def has_stop_columns(conn: sa.Connection) -> bool:
    """Whether the store has migration 0017's stop record columns."""
    schema = SCHEMA if conn.dialect.name == "postgresql" else None
    names = {c["name"] for c in sa.inspect(conn).get_columns(node_liveness.name, schema=schema)}
    return set(_STOP_COLUMNS) <= names


def liveness(conn: sa.Connection, nodes: Iterable[str]) -> dict[str, Live]:
    """The proof of life of each of ``nodes`` that has one (a statement per
    :data:`~stellaops_runtime.store.queries.KEYS_PER_STATEMENT` nodes), with its agent's stop
    record when the store has one (migration 0017) and it is that agent's last word."""
    names = sorted(set(nodes))
    if not names or not has_liveness(conn):
        return {}
    c = node_liveness.c
    stops = has_stop_columns(conn)
    cols = [col for col in node_liveness.columns if stops or col.name not in _STOP_COLUMNS]
    rows = _in_parts(conn, sa.select(*cols), c.node_name, names)
    return {
        r.node_name: Live(
            r.agent_id,
            _as_utc(r.started_at),
            _as_utc(r.started_node),
            _as_utc(r.alive_through),
            _as_utc(r.alive_node),
            float(r.flush_seconds),
            int(r.window_seconds),
            written := _as_utc(r.written_at),
            _stopped(r, written) if stops else None,
        )
        for r in rows
    }


def _stopped(r: Any, written: dt.datetime) -> Stopped | None:
    """The row's stop record, when it is its agent's and written after its last proof of life (a
    next agent's proof upserts the row and leaves an earlier agent's stop behind). A record that
    does not read (a list that is no list of digests) is none: the open time runs on."""
    if r.stopped_at is None or r.stop_agent != r.agent_id:
        return None
    at = _as_utc(r.stopped_at)
    if at < written:
        return None
    try:
        running = json.loads(r.running_images or "[]")
    except ValueError:
        return None
    if not isinstance(running, list) or not all(isinstance(i, str) for i in running):
        return None
    uncertain = r.images_uncertain is None or bool(r.images_uncertain)
    return Stopped(at, str(r.stop_reason or ""), frozenset(running), uncertain, bool(r.gone))


def _in_parts(conn: sa.Connection, query: sa.Select[Any], column: Any, names: list[str]) -> list[Any]:
    """``query``'s rows whose ``column`` is one of ``names``, an IN list of at most
    :data:`~stellaops_runtime.store.queries.KEYS_PER_STATEMENT` a statement (a fleet's nodes passed
    the drivers' bound-parameter limits in one)."""
    return [row for part in chunks(names) for row in conn.execute(query.where(column.in_(part))).all()]


def _as_utc(value: Any) -> dt.datetime:
    if isinstance(value, str):  # SQLite's text
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
