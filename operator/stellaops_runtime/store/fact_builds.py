"""The write side of ``node_fact_builds`` (migration 0016): each build a node's fact was stored of.

A node's agent stores the unprobed tails and clones of a ``binaryPath`` function as ``unprobed``
rows of ``host:<node>`` with the file's build-id (native/host_tails.py). ``hot_symbols`` keeps one
row per (image, path, function, kind) with its first build-id: after the node's file was upgraded in
place, the new build's fact is added to the old build's row and its build-id is lost there. The
flush that writes those rows also writes here each (host image, path, function, build-id) it holds,
so the question's side (store/node_facts.py) meets a container's rows of the new build with the
new build's fact. Plain DB-API through the generated statement (the agent never loads SQLAlchemy);
ON CONFLICT DO NOTHING: idempotent across retries and agents; in the flush's own transaction, so a
fact's build is stored exactly when its row is.

The table's key is ``hot_symbols``' with a build-id (40 characters) for the kind, so a fact whose
path and name fit ``hot_symbols``' key index with less than that to spare would be refused by this
table's on PostgreSQL (its btree entries hold 2,704 bytes at most) and the whole flush with it: the
ledger's bisection then quarantined the fact's row, and a container that ran the node's file said
"not observed" where a store before 0016 said unknown. A fact past :data:`MAX_KEY_BYTES` keeps no
builds here: it is met by the build its row keeps, as before 0016 (migration 0016 copies none either).

The table has no time of its own, and a build's row cannot be judged old by the rows that show that
build (a process of an old build runs on long after its load event). What retention does end is a
node's reach: a question meets the facts of the nodes the image was watched on, read from its
``observation_windows`` (store/node_facts.py), so once retention removed every window of a node (a
node gone, an autoscaled one replaced under another name) no question reaches its builds again, and
:func:`prune_fact_builds`, run after the retention, deletes them: without it each node name ever seen
kept its rows for ever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta
from stellaops_runtime.store.agent_sql import STATEMENTS
from stellaops_runtime.store.dbconn import Conn, Database
from stellaops_runtime.store.errors import first_line

log = logging.getLogger("stellaops_runtime.store.writer")  # the retention pass's logger

HOST_PREFIX = "host:"  # contracts/events.py image_key: a host process's image
_ROWS_PER_CALL = 5_000  # parameters made at a time, as store/upsert.py's CHUNK_ROWS
# The key's bytes that always fit PostgreSQL's btree entry (2,704 bytes with its tuple and column
# headers and their alignment, about 30 of them); migration 0016 copies by the same bound.
MAX_KEY_BYTES = 2_650
# The class of the per-node advisory locks, pg_advisory_xact_lock(LOCK_CLASS, hashtext(host)): the
# two-int key space, apart from the one-bigint locks of the ledger, migrations and maintenance.
LOCK_CLASS = 0x53544642  # "STFB"


def _fits(*parts: str) -> bool:
    """Whether a key of ``parts`` fits the index: their UTF-8 bytes at most :data:`MAX_KEY_BYTES` (a
    lone surrogate, of a path that was not UTF-8, counted as 3: never less than the store's)."""
    return sum(len(p.encode("utf-8", "surrogatepass")) for p in parts) <= MAX_KEY_BYTES


def fact_builds(deltas: Iterable[HotSymbolDelta]) -> list[tuple[str, str, str, str]]:
    """The (host image, path, function, build-id) of the node facts among ``deltas`` whose key fits
    the index (:func:`_fits`), in key order (concurrent writers of one key take its lock in the same
    order)."""
    unprobed = EvidenceKind.UNPROBED
    return sorted(
        {
            row
            for d in deltas
            if d.key.evidence is unprobed
            and d.build_id
            and d.key.image_digest.startswith(HOST_PREFIX)
            and _fits(*(row := (d.key.image_digest, d.key.function_name, d.key.module, d.build_id)))
        }
    )


def _lock_hosts(conn: Conn, hosts: Iterable[str], *, shared: bool) -> None:
    """Take each host's :data:`LOCK_CLASS` advisory lock until the commit (PostgreSQL), in key
    order: shared by the flushes writing its builds, alone by :func:`prune_fact_builds`."""
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    for host in sorted(set(hosts)):
        conn.execute(f"SELECT {fn}(%s, hashtext(%s))", (LOCK_CLASS, host))


def record_fact_builds(conn: Conn, deltas: Iterable[HotSymbolDelta]) -> int:
    """Write the node facts' builds of ``deltas`` inside the caller's transaction; how many sent.
    On PostgreSQL each node's lock is held shared first (:func:`prune_fact_builds`)."""
    rows = fact_builds(deltas)
    if rows and conn.dialect == "postgresql":
        _lock_hosts(conn, (r[0] for r in rows), shared=True)
    stmt = STATEMENTS[conn.dialect]["fact_build"]
    for i in range(0, len(rows), _ROWS_PER_CALL):
        conn.executemany(
            stmt,
            (
                {"image_digest": image, "module": module, "function_name": name, "build_id": bid}
                for image, name, module, bid in rows[i : i + _ROWS_PER_CALL]
            ),
        )
    return len(rows)


def prune_fact_builds(conn: Conn) -> int:
    """Delete the builds of the facts of each node no observation window is left of, inside the
    caller's transaction (:func:`prune_gone_nodes_builds`); how many rows. One host at a time,
    through the keys: its builds lead ``node_fact_builds``' key and the node's windows
    ``ix_observation_windows_node_window``; two statements, no join (on Citus both tables are
    distributed by image, not by node). On PostgreSQL a node found with no window is looked at
    again under its lock (:func:`_lock_hosts`), which a flush writing its builds holds shared until
    its commit: a node back after more than the retention, whose first flush found an earlier build
    stored (READ COMMITTED: ON CONFLICT DO NOTHING, no row lock) and has not committed, is waited
    for and keeps that build; a flush that comes after the delete writes its builds again."""
    if conn.dialect == "postgresql":
        mark, builds, windows = "%s", "signals.node_fact_builds", "signals.observation_windows"
    else:
        mark, builds, windows = "?", "node_fact_builds", "observation_windows"
    hosts = sorted(conn.execute(f"SELECT DISTINCT image_digest FROM {builds}").scalars())  # lock order
    deleted = 0
    for host in hosts:
        node = host[len(HOST_PREFIX) :] if host.startswith(HOST_PREFIX) else None
        if node is None:
            continue  # not a node's (fact_builds writes none such): left to whoever wrote it
        seen = f"SELECT 1 FROM {windows} WHERE node_name = {mark} LIMIT 1"
        if conn.execute(seen, (node,)).rows:
            continue
        if conn.dialect == "postgresql":  # under its lock: a flush of its builds committed first
            _lock_hosts(conn, (host,), shared=False)
            if conn.execute(seen, (node,)).rows:
                continue
        res = conn.execute(f"DELETE FROM {builds} WHERE image_digest = {mark}", (host,))
        deleted += max(0, int(res.rowcount or 0))
    return deleted


def prune_gone_nodes_builds(db: Database, url: str) -> int:
    """:func:`prune_fact_builds` in its own transaction, as the store's retention pass runs it
    (store/writer.py ``maintain``, after the windows it removed): logged, never raised (housekeeping,
    tried again at the next retention); how many rows went."""
    try:
        with db.begin() as conn:
            pruned = prune_fact_builds(conn)
    except Exception as e:
        log.warning("cannot prune the node fact builds of %s: %s", url, first_line(e))
        return 0
    if pruned:
        log.info("pruned %d node fact builds of nodes the retention left no window of", pruned)
    return pruned
