"""The node's export position in the store: where its stored counts of the export file may end.

The node's watch record (agent/watch_record.py) is kept beside ``store.spoolPath``, so two
agents of one node with different spool paths (a second install, an agent run by hand beside
the DaemonSet's pod) keep two records. The export file's lock (sources/export_lock.py) keeps
them from following the file at once, not one after the other: agent X, its record at byte
100, started after agent Y had followed the file to byte 500 and stopped, resumed at 100 and
counted lines 100..500 a second time. So the position travels with the counts: every
transaction that stores counts of a batch drained from the export source also writes the
node's row of ``export_positions`` (migration 0011), in the same transaction, so a count in
the store is never without a position at least as far on (a lost COMMIT acknowledgement
included: the retry is a no-op through the ledger, the row was written with the counts).

The row (JSON text, checked by its reader) holds the checkpoint of the file
(sources/export_checkpoint.py: device, inode, hash of its first bytes, offset), the moment the
drain reaching it began (wall and boot clock, the boot id) and the agent that wrote it. The
offset is where the batch's lines may reach, not where they all do (a batch is written in
parts, one transaction each): lines before it may be counted, none after it in the store; but
its agent may have counted lines after it that only reached its spool file (its store down at
its shutdown) or were lost (killed), so the row says ``"final": true`` only once its agent's
shutdown stored every count (:func:`mark_final`), and only such a row of another agent is a
place to resume at (sources/export_store.py). An agent about
to resume reads it first (:func:`read_position`, agent/watch_record.py ``store_opened``) and
never reads the file before it (sources/export_restart.py). Plain DB-API SQL (the agent never
loads SQLAlchemy); the table is outside ``store/schema.py``'s metadata, which the query side
reads, as the agent alone uses it.
"""

from __future__ import annotations

import json
from typing import Any

_WRITE = {
    "postgresql": (
        "INSERT INTO signals.export_positions (node_name, agent_id, position) VALUES (%s, %s, %s) "
        "ON CONFLICT (node_name) DO UPDATE SET agent_id = excluded.agent_id, position = excluded.position"
    ),
    "sqlite": (
        "INSERT INTO main.export_positions (node_name, agent_id, position) VALUES (?, ?, ?) "
        "ON CONFLICT (node_name) DO UPDATE SET agent_id = excluded.agent_id, position = excluded.position"
    ),
}
# The mark (:func:`mark_final`) never replaces a row of a later moment: it may commit late.
_FINAL_GUARD = {
    "postgresql": " WHERE (signals.export_positions.position::jsonb ->> 'at_ns')::numeric <= %s",
    "sqlite": " WHERE CAST(json_extract(main.export_positions.position, '$.at_ns') AS INTEGER) <= ?",
}
_READ = {
    "postgresql": "SELECT agent_id, position FROM signals.export_positions WHERE node_name = %s",
    "sqlite": "SELECT agent_id, position FROM main.export_positions WHERE node_name = ?",
}
MAX_POSITION_CHARS = 4096  # a position is ~400 characters; a larger one is not ours
# Spooled counts whose lines of the export file are not known were stored (store/export_spans.py
# ``guard``): no checkpoint can say they are not past it, so no other agent resumes at its own
# (sources/export_store.py reads it as not well formed). Written only where the node has no row.
UNKNOWN = "unknown"
_MARK = {
    "postgresql": (
        "INSERT INTO signals.export_positions (node_name, agent_id, position) VALUES (%s, %s, %s) "
        "ON CONFLICT (node_name) DO NOTHING"
    ),
    "sqlite": (
        "INSERT INTO main.export_positions (node_name, agent_id, position) VALUES (?, ?, ?) "
        "ON CONFLICT (node_name) DO NOTHING"
    ),
}


def write_position(conn: Any, position: dict[str, Any], *, final: bool = False) -> None:
    """Write the node's row, inside the transaction storing the counts it covers.

    ``position``: ``{"node", "agent_id", "checkpoint", "at_ns", "at_boot", "boot_id"}``.
    ``final``: see :func:`mark_final` (a row written with counts is never final)."""
    doc: dict[str, Any] = {k: position[k] for k in ("checkpoint", "at_ns", "at_boot", "boot_id")}
    if final:
        doc["final"] = True
    text = json.dumps(doc, ensure_ascii=True, sort_keys=True)
    params: tuple[Any, ...] = (position["node"], position["agent_id"], text)
    if final:
        conn.execute(_WRITE[conn.dialect] + _FINAL_GUARD[conn.dialect], (*params, int(position["at_ns"])))
    else:
        conn.execute(_WRITE[conn.dialect], params)


def mark_unknown(conn: Any, node: str, agent: str) -> None:
    """Inside the transaction storing ``agent``'s spooled counts of lines not known (a spool file of
    an agent before the spans), where the node has no row yet: a row saying so (``{"unknown": ...}``),
    so an agent of another spool path with an older record does not resume there and count those
    lines again; the next counts an export agent stores replace it with their position."""
    text = json.dumps({UNKNOWN: "spooled counts of lines of the export file not known were stored"})
    conn.execute(_MARK[conn.dialect], (node, agent, text))


def mark_final(db: Any, position: dict[str, Any]) -> None:
    """At a shutdown that stored every count (none spooled, none lost), still holding the export
    lock: the node's row says so (``"final": true``), in a transaction of its own. Only a final
    row of another agent is resumed at (sources/export_store.py): a row written with counts may
    be followed by counts its agent could only spool (its store unreachable at its shutdown) or
    lost (killed), lines a reader resuming there would count again once the spool is replayed.
    A row of a later moment (``at_ns``) is left as it is: a mark whose write hung past the
    shutdown deadline may commit after the agent exited, when the next agent of the node has
    written its own row (and a row that is not ours fails the mark: the safe side too).
    Raises what the driver raises (the row then stays not final: the safe side)."""
    with db.begin() as conn:
        write_position(conn, position, final=True)


def read_position(db: Any, node: str) -> tuple[str, Any] | None:
    """The node's row as (agent id, the position document as written; checked by the caller);
    None: no row (no agent of 0011 on stored counts of the node's export file). Raises what
    the driver raises (a store not usable yet)."""
    with db.connect() as conn:
        rows = conn.execute(_READ[db.dialect], (node,)).rows
    if not rows:
        return None
    agent, text = rows[0]
    if not isinstance(text, str) or len(text) > MAX_POSITION_CHARS:
        return (str(agent), None)
    try:
        return (str(agent), json.loads(text))
    except ValueError:
        return (str(agent), None)
