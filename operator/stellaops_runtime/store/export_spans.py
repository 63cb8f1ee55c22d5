"""Which bytes of the node's export file each agent's stored counts cover: no line stored twice.

The node's export position (store/export_position.py) is written only with stored counts, so
an agent whose store was away for its whole life left no trace of its turn: it spooled every
count at its stop (store/spool.py). An agent of another ``store.spoolPath`` with an older
watch record then resumed at that record and counted the same lines, and the replayed spool
stored them a second time. So every batch of the export source carries the spans its agent
counted in its life, per file: ``[ino, lo, hi, head]`` (the file's inode, the first byte,
the byte after the last line taken, and the SHA-256 of the file's first 1024 bytes, "" while
fewer were read; agent/export_resume.py ``store_position``), the spool file keeps them
(store/batches.py), and:

- every transaction storing counts of the file writes them here (:func:`write_spans`), per
  (node, agent, inode, head), widened (``lo`` the least, ``hi`` the greatest), never narrowed;
- a spooled batch is checked in the transaction that would store it (:func:`overlapping`):
  when another agent's stored span of one of its files overlaps one of its own, some of its
  lines may be counted already, and its counts are not stored: its windows become gaps
  (store/ledger.py), a doubt said, never a count doubled;
- a spooled batch that may hold counts of the file, replayed by an agent without the export
  lock (no export source, or ``export_unguarded``), is stored as gaps whatever the store holds
  (:func:`guard`): an agent holding the lock leaves no trace until its first stored flush, so
  nothing read here can rule out that it counts the same lines; one replayed with the lock
  whose lines cannot be checked (a spool before the spans) is weighed against the traces other
  agents left (:func:`others_stored`); a batch turned into gaps keeps its 0-call facts;
- an agent about to resume at a checkpoint reads them (:func:`read_spans`): another agent's
  span reaching past the checkpoint (a replayed spool's) means those lines are stored, and
  nothing is resumed (sources/export_store.py ``spans_past``).

Two spans are of one file when their inodes are the same and their heads are (or one is not
known): a file made after another was deleted may get its inode (Tetragon's own rotation
deletes old backups), and its spans must not meet the old file's, nor must an agent resuming
in it read the old file's spans as its own lines stored. A span is the whole of an agent's
life in a file (its earliest batch may hold lines of any byte it read), so the check errs
toward a gap, as it does for a file of under 1024 bytes (its head not known yet).
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypeGuard

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, ObservationWindow
from stellaops_runtime.store.batches import never_dropped
from stellaops_runtime.store.export_position import mark_unknown
from stellaops_runtime.store.pending_buffer import dropped_gap, gap_of

log = logging.getLogger(__name__)

MAX_SPANS = 8  # files an agent's batch names (rotations within one life); more are not ours
_BIGINT = 1 << 63
_INO = 1 << 64  # st_ino is an unsigned 64-bit number: XFS (inode64), overlay, btrfs, NFS use the top bit
PRUNE_NS = 31 * 86400 * 10**9  # past the spool's 30 days (store/ledger.py): no batch is checked against it

Span = tuple[int, int, int, str]  # (ino, lo, hi, head: SHA-256 hex of the first 1024 bytes, or "")
Stored = tuple[str, int, int, int, str]  # (agent, ino, lo, hi, head)
# What to store of a batch (counts, windows), and its rows not stored: recounted, unverified (guard)
Guarded = tuple[list[HotSymbolDelta], list[ObservationWindow], int, int]

_T = {"postgresql": "signals.export_spans", "sqlite": "main.export_spans"}
_P = {"postgresql": "%s", "sqlite": "?"}


def valid_spans(raw: Any) -> list[Span] | None:
    """The spans of a position (a spool file's may be anything); None: not well formed."""
    if not isinstance(raw, list) or len(raw) > MAX_SPANS:
        return None
    out: list[Span] = []
    for s in raw:
        if not isinstance(s, (list, tuple)) or len(s) != 4 or not _head(s[3]):
            return None
        if type(s[0]) is not int or not 0 <= s[0] < _INO:
            return None
        if any(type(v) is not int or not 0 <= v < _BIGINT for v in s[1:3]) or s[1] > s[2]:
            return None
        out.append((s[0], s[1], s[2], s[3]))
    return out


def _head(h: Any) -> bool:
    return isinstance(h, str) and (h == "" or (len(h) == 64 and all(c in "0123456789abcdef" for c in h)))


def ino_to_db(ino: int) -> int:
    """An inode as the ``ino`` bigint column keeps it: its 64 bits as a signed number (two's
    complement), so an inode at or above 2**63 is stored (no column change, no migration) and
    never meets another inode."""
    return ino - _INO if ino >= _BIGINT else ino


def ino_from_db(value: Any) -> int:
    """The inode ``ino_to_db`` stored, as the kernel reports it (``st_ino``)."""
    ino = int(value)
    return ino + _INO if ino < 0 else ino


def same_file(ino: int, head: str, other_ino: int, other_head: str) -> bool:
    """Spans of one file: the same inode, and the same head unless one is not known."""
    return ino == other_ino and (head == other_head or not head or not other_head)


def position_spans(position: dict[str, Any] | None) -> list[Span] | None:
    """A batch's spans (None: it carries none: not an export source, or an agent before them)."""
    if not isinstance(position, dict) or "spans" not in position:
        return None
    return valid_spans(position["spans"])


def write_spans(conn: Any, node: str, agent: str, spans: list[Span], at_ns: int | None = None) -> None:
    """Widen this agent's spans, in the transaction storing the counts they cover, stamped
    ``at_ns`` (None: now on the store's clock, :func:`_now`)."""
    t, p = _T[conn.dialect], _P[conn.dialect]
    least, greatest = ("LEAST", "GREATEST") if conn.dialect == "postgresql" else ("MIN", "MAX")
    stamp, at = (p, [at_ns]) if at_ns is not None else _now(conn.dialect)
    sql = (
        f"INSERT INTO {t} (node_name, agent_id, ino, head, lo, hi, at_ns) "
        f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {stamp}) "
        f"ON CONFLICT (node_name, agent_id, ino, head) DO UPDATE SET lo = {least}({t}.lo, excluded.lo), "
        f"hi = {greatest}({t}.hi, excluded.hi), at_ns = {greatest}({t}.at_ns, excluded.at_ns)"
    )
    if conn.dialect == "sqlite":  # SQLite names the row updated by its bare table name
        sql = sql.replace(f"{t}.lo", "export_spans.lo").replace(f"{t}.hi", "export_spans.hi")
        sql = sql.replace(f"{t}.at_ns", "export_spans.at_ns")
    for ino, lo, hi, head in spans:
        conn.execute(sql, (node, agent, ino_to_db(ino), head, lo, hi, *at))


def _now(dialect: str) -> tuple[str, list[int]]:
    """Now as SQL and its parameters: PostgreSQL's clock (the store's, one for every node), so a
    node's clock set far off (a board without an RTC before NTP, a clock ahead) neither stamps
    spans as long gone nor prunes those a resume needs; SQLite's store is on the agent's host, its
    clock the agent's own."""
    if dialect == "postgresql":
        return "(EXTRACT(EPOCH FROM now()) * 1000000000)::bigint", []
    return "?", [time.time_ns()]


def overlapping(conn: Any, node: str, agent: str, spans: list[Span]) -> list[Stored]:
    """Stored spans of other agents of ``node`` that overlap one of ``spans`` in the same file."""
    t, p = _T[conn.dialect], _P[conn.dialect]
    sql = (
        f"SELECT agent_id, ino, lo, hi, head FROM {t} WHERE node_name = {p} AND agent_id <> {p} "
        f"AND ino = {p} AND lo < {p} AND hi > {p}"
    )
    out: list[Stored] = []
    for ino, lo, hi, head in spans:
        if lo < hi:  # an empty span covers no line
            rows = conn.execute(sql, (node, agent, ino_to_db(ino), hi, lo)).rows
            out += [r for r in map(_stored, rows) if same_file(ino, head, r[1], r[4])]
    return out


def _stored(r: Any) -> Stored:
    return (str(r[0]), ino_from_db(r[1]), int(r[2]), int(r[3]), str(r[4]))


def read_spans(db: Any, node: str) -> list[Stored]:
    """Every stored span of ``node`` (agent, ino, lo, hi, head), spans past :data:`PRUNE_NS` pruned
    first. Raises what the driver raises (a store not usable yet)."""
    t, p = _T[db.dialect], _P[db.dialect]
    now, at = _now(db.dialect)
    with db.begin() as conn:
        conn.execute(f"DELETE FROM {t} WHERE node_name = {p} AND at_ns < {now} - {p}", (node, *at, PRUNE_NS))
        sql = f"SELECT agent_id, ino, lo, hi, head FROM {t} WHERE node_name = {p}"
        rows = conn.execute(sql, (node,)).rows
    return [_stored(r) for r in rows]


def _owner(position: dict[str, Any]) -> tuple[str, str, int] | None:
    """(node, agent, at_ns) of a batch's position (a spool file's may be anything)."""
    node, agent, at = position.get("node"), position.get("agent_id"), position.get("at_ns")
    if not _storable(node) or not _storable(agent) or type(at) is not int or not 0 <= at < _BIGINT:
        return None
    return node, agent, at


def _storable(text: Any) -> TypeGuard[str]:
    """Text both databases take as a key: no NUL, no lone surrogate (a spool file's may hold
    anything; one the driver cannot encode failed the batch's every row as refused)."""
    if not isinstance(text, str) or not text or "\0" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def others_stored(conn: Any, node: str, agent: str) -> str | None:
    """Another agent than ``agent`` that stored counts of ``node``'s export file: the node's position
    row (store/export_position.py) or a span of its (None: no trace of any)."""
    p = _P[conn.dialect]
    schema = "signals" if conn.dialect == "postgresql" else "main"
    for table in ("export_positions", "export_spans"):  # two routed reads on Citus (node_name)
        sql = f"SELECT agent_id FROM {schema}.{table} WHERE node_name = {p} AND agent_id <> {p} LIMIT 1"
        rows = conn.execute(sql, (node, agent)).rows
        if rows:
            return str(rows[0][0])
    return None


def _unverified(batch_agent: str, position: dict[str, Any] | None, units: list[Any]) -> list[tuple[str, str]]:
    """(node, agent) pairs whose traces an unverifiable batch is weighed against: its position's
    owner, else the nodes its rows name (at most :data:`MAX_SPANS`) with the batch's agent."""
    owner = _owner(position) if isinstance(position, dict) else None
    if owner is not None:
        return [(owner[0], owner[1])]
    nodes = {n for u in units if _storable(n := getattr(u, "node_name", None))}
    return [(n, batch_agent) for n in sorted(nodes)[:MAX_SPANS]]


def _as_gaps(deltas: list[HotSymbolDelta], obs: list[ObservationWindow]) -> Guarded:
    """A batch's rows as gaps over their windows: each count's window (store/pending_buffer.py
    ``gap_of``), the gap rows it holds, and an unwatched-container mark's gap; its facts (an
    ``unprobed`` tail, a ``listed`` JAR: 0 calls, sent once, read for every period, which no gap
    stands for: store/batches.py ``never_dropped``) are stored as they are, doubling nothing.
    With 0 and the rows not stored (:func:`guard`'s unverified count; recounted: swap them)."""
    width = max((o.window_seconds for o in obs if o.window_seconds), default=86_400)
    gaps = [o for o in obs if o.has_gap]
    gaps += [g for o in obs if not o.has_gap and (g := dropped_gap(o, width)) is not None]
    facts = [d for d in deltas if never_dropped(d)]
    gaps += [gap_of(d, width) for d in deltas if not never_dropped(d)]
    return facts, gaps, 0, len(deltas) + len(obs) - len(facts)


def as_gaps(deltas: list[HotSymbolDelta], obs: list[ObservationWindow]) -> Guarded:
    """:func:`_as_gaps`, for a batch stored as gaps for another reason (store/spool_age.py)."""
    return _as_gaps(deltas, obs)


def _unlocked_gap(agent: str, deltas: list[HotSymbolDelta], obs: list[ObservationWindow]) -> Guarded:
    """A spooled batch of export counts replayed without the export lock, as gaps (:func:`guard`)."""
    got = _as_gaps(deltas, obs)
    log.warning(
        "spooled batch of agent %s: replayed without the export lock, and an agent following the export "
        "file may be counting the same lines with none stored yet: its %d rows are not stored, their "
        "windows are a gap (never counted twice)",
        agent, got[3],
    )  # fmt: skip
    return got


def guard(
    conn: Any,
    position: dict[str, Any] | None,
    spooled: bool,
    deltas: list[HotSymbolDelta],
    obs: list[ObservationWindow],
    *,
    known: bool = True,
    locked: bool = True,
    agent: str = "",
) -> Guarded:
    """In the transaction storing ``deltas`` and ``obs`` (store/ledger.py): what to store, and how
    many rows are not stored because another agent's stored counts cover their lines (recounted),
    or may (unverified).

    A spooled batch (``spooled``) whose spans another agent's stored spans overlap is stored as
    gaps (:func:`_as_gaps`); its spans are not written (its counts are not stored). Otherwise the
    spans are written with the counts. A position without spans (no export source) is stored as
    before.

    A spooled batch that may hold counts of the export file (spans, ``known`` False, or a position
    not well formed) replayed by an agent without the export lock (``locked`` False: no export
    source, or ``export_unguarded``) is stored as gaps, said and counted as unverified: an agent
    holding the lock may be counting the same lines and leaves no trace until its first stored
    flush (it resumed at an older record of its own, or it reads the file from its start), so no
    check in this transaction can rule it out (s41/E2's hole; :func:`_unlocked_gap`).

    Held by the lock, a spooled batch whose lines cannot be checked is weighed against the traces
    of other agents (:func:`others_stored`) instead: ``known`` False (a spool file of an agent
    before the spans: which lines it counted is not known), or a position whose spans or owner
    are not well formed. When another agent of the node stored counts of an export file, its rows
    are stored as gaps, said and counted (``agent``: the batch's agent id); else it is stored as
    before (spans checked and written as above), and one that leaves no span (its lines not
    known) marks the node's export position unknown where there is none
    (store/export_position.py ``mark_unknown``): an agent of another spool path with an older
    record never resumes over them."""
    spans = position_spans(position)
    owner = _owner(position) if position is not None and spans else None
    broken = position is not None and (spans is None or bool(spans and owner is None))
    if spooled and not locked and (not known or broken or spans):
        return _unlocked_gap(agent, deltas, obs)
    if spooled and (not known or broken):
        why = (
            "spooled by an agent before the export spans"
            if not known
            else "its export spans are not well formed"
        )
        pairs = _unverified(agent, position, [*deltas, *obs])
        for node, whose in pairs:
            if (other := others_stored(conn, node, whose)) is not None:
                got = _as_gaps(deltas, obs)
                log.warning(
                    "spooled batch of agent %s: its lines of the export file cannot be checked (%s), and "
                    "agent %s of node %s stored counts of the export file: its %d rows are not stored, "
                    "their windows are a gap (never counted twice)",
                    whose, why, other, node, got[3],
                )  # fmt: skip
                return got
        if spans is None or owner is None:  # stored with no span: no resume past them (export_position.py)
            for node, whose in pairs:
                mark_unknown(conn, node, whose)
    if spans is None or owner is None:
        return deltas, obs, 0, 0
    node, agent, _at = owner
    if spooled and (hit := overlapping(conn, node, agent, spans)):
        kept, gaps, _, n = _as_gaps(deltas, obs)
        log.warning(
            "spooled batch of agent %s: another agent of node %s stored counts of the same bytes of the "
            "export file (agent %s, inode %d, bytes %d-%d): its %d rows are not stored, their windows are "
            "a gap (never counted twice)",
            agent, node, *hit[0][:4], n,
        )  # fmt: skip
        return kept, gaps, n, 0
    write_spans(conn, node, agent, spans)  # pruned PRUNE_NS after its last write, on the store's clock
    return deltas, obs, 0, 0
