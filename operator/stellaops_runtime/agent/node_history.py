"""What the store knows of the node's earlier agents, when the node's watch record is lost.

The watch record (agent/watch_record.py) is how an agent learns that one ran on the node
before it: where the hole since then starts, and where that agent's stored counts end in
Tetragon's export file. A record that is missing (the hostPath wiped, ``store.spoolPath``
changed) or ignored as unreadable made the next agent act as the node's first: the hole
since the last agent was no gap, and with ``exportFromStart`` the export file was read from
its first line, so every line an earlier agent had stored was counted twice.

The store keeps the node's observation windows (and the spool file the rows an earlier
agent could not store), so it can tell. :func:`last_window_ns` reads the start of the
node's latest window, before this agent writes anything: the agent asks it as the store
opens (agent/flusher.py ``on_open``). When there is one, an earlier agent watched the node
and may have counted every line written before that window ended: the span from its start
until this agent's source watches is a gap, and the export file is not replayed. A start
ahead of the clock (an earlier agent's clock was ahead, stepped back since) says nothing
about where the hole began on this clock: the gap then starts at the node's boot
(agent/watch_record.py ``_tell``), never at that future moment. A store that
cannot say within 10 s (``tetragon.exportHistoryWaitSeconds``, sources/export_restart.py) does
not make the node new either: the file is not replayed, and the late answer places the gap (from the node's
boot for a node the store did not know). The query is served by the index of migration 0010.

Retention (``store.retentionDays``, store/partitions.py) removes a node's windows once they are
old, and with them the store's only sign that an agent ran there: a node with a lost record and
no window for longer than retention read as new, and ``exportFromStart`` counted its never-rotated
file a second time. :func:`survivor_ns` reads the node's records that retention leaves: its
``export_positions`` row (migration 0011: the moment its last drain began) and its
``node_liveness`` row (migration 0015: the moment its last agent claimed, on the node's clock;
retention prunes it once that and its write are older than its cutoff, store/node_liveness.py;
not a start row that claims nothing, whose agent may have stored nothing before it was killed:
taken as "ran", the next agent read the export file from its end and those lines were lost).
Either says an agent ran; a position with no moment (``{"unknown": ...}``, a row not ours) says
so too, but not when (:data:`RAN_WHEN_UNKNOWN`: the gap then starts at the node's boot).
Plain DB-API SQL (store/dbconn.py): the agent never loads SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.store.dbvalues import postgres_datetime, sqlite_datetime
from stellaops_runtime.store.export_position import MAX_POSITION_CHARS
from stellaops_runtime.store.timeconv import datetime_to_ns, ns_to_datetime

_SQL = {
    "postgresql": "SELECT max(window_start) FROM signals.observation_windows WHERE node_name = %s",
    "sqlite": "SELECT max(window_start) FROM main.observation_windows WHERE node_name = ?",
}
_NOT_AFTER = {  # the same, up to a bound (agent/history_days.py: a window stamped far ahead is not believed)
    "postgresql": _SQL["postgresql"] + " AND window_start <= %s",
    "sqlite": _SQL["sqlite"] + " AND window_start <= ?",
}


# What survives retention (store/partitions.py removes windows only): the node's export position
# (migration 0011) and its proof of life (migration 0015), not a start row its agent never replaced
# (store/node_liveness.py ``write_start``: written before its agent's start, which may have stored
# nothing; the only row written so, as every proof is written after its agent's start).
_SURVIVORS = {
    "postgresql": (
        "SELECT position FROM signals.export_positions WHERE node_name = %s",
        "SELECT alive_node FROM signals.node_liveness WHERE node_name = %s AND written_at >= started_at",
    ),
    "sqlite": (
        "SELECT position FROM main.export_positions WHERE node_name = ?",
        "SELECT alive_node FROM main.node_liveness WHERE node_name = ? AND written_at >= started_at",
    ),
}
RAN_WHEN_UNKNOWN = -1  # :func:`survivor_ns`: an agent ran on the node, when is not known


def last_window_ns(db: Any, node: str, *, not_after_ns: int | None = None) -> int | None:
    """The start (wall ns) of the node's latest observation window in the store; None: none.

    ``db``: the store's :class:`~stellaops_runtime.store.dbconn.Database`. Raises what the
    driver raises (the caller treats it as a store not usable yet). ``not_after_ns``: the latest
    window that starts no later (so one stamped decades ahead does not hide it)."""
    with db.connect() as conn:
        if not_after_ns is None:
            value = conn.execute(_SQL[db.dialect], (node,)).scalar()
        else:
            bound = ns_to_datetime(not_after_ns)
            arg = sqlite_datetime(bound) if db.dialect == "sqlite" else postgres_datetime(bound)
            value = conn.execute(_NOT_AFTER[db.dialect], (node, arg)).scalar()
    if value is None:
        return None
    if isinstance(value, str):  # SQLite: naive UTC text (store/dbvalues.py)
        value = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return int(datetime_to_ns(value))


def survivor_ns(db: Any, node: str) -> int | None:
    """The latest moment (wall ns) the node's records that retention never removes name: an
    agent ran on the node then. :data:`RAN_WHEN_UNKNOWN`: a record says an agent ran but names no
    moment it can be read as; None: no such record. Raises what the driver raises."""
    position_sql, liveness_sql = _SURVIVORS[db.dialect]
    with db.connect() as conn:
        positions = conn.execute(position_sql, (node,)).rows
        alive = conn.execute(liveness_sql, (node,)).rows
    moments: list[int] = []
    ran = bool(positions) or bool(alive)
    for (text,) in positions:
        at = _position_at(text)
        if at is not None:
            moments.append(at)
    for (value,) in alive:
        if isinstance(value, str):  # SQLite: naive UTC text (store/dbvalues.py)
            value = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
        if isinstance(value, dt.datetime):
            moments.append(int(datetime_to_ns(value)))
    if moments:
        return max(moments)
    return RAN_WHEN_UNKNOWN if ran else None


def _position_at(text: Any) -> int | None:
    """The ``at_ns`` of an export position's JSON text (store/export_position.py); None: none readable."""
    if not isinstance(text, str) or len(text) > MAX_POSITION_CHARS:
        return None
    try:
        at = json.loads(text).get("at_ns")
    except (ValueError, AttributeError):
        return None
    return at if isinstance(at, int) and not isinstance(at, bool) and at > 0 else None


def spooled_window_ns(batches: Iterable[Any]) -> int | None:
    """The latest window start of the observation rows in spooled batches (None: none). The spool
    file is on the node's hostPath beside the record: its rows are of the node's agents."""
    best: int | None = None
    for b in batches:
        for u in b.units:
            start = getattr(u, "window_start_ns", None) if isinstance(u, ObservationWindow) else None
            if isinstance(start, int) and (best is None or start > best):
                best = start
    return best
