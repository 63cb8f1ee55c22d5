"""Frozen flush batches: the unit the store writes exactly once.

A flush takes what the outage buffer holds and freezes it into a
:class:`Batch` with the agent's id and the next flush sequence number. From
then on the batch never changes shape: it is retried as it is, with the same
(agent id, sequence), until the store confirms it. The store records the pair
in its flush ledger in the same transaction as the counts
(:mod:`stellaops_runtime.store.ledger`), so a retry of a batch whose COMMIT
went through but whose acknowledgement was lost adds nothing.

When the database refuses a row, the store splits the batch by index ranges
and records each committed range as a "part" (``"lo-hi"``). Ranges come
from a deterministic bisection of a list that never reorders, so a later
retry meets the same ranges. Rows dropped from a frozen batch to keep memory
bounded become ``None`` (a tombstone) instead of shifting the indices.

The JSON form (:func:`batch_to_json`, :func:`batch_from_json`) is what the
spool file holds across a restart.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.contracts.hotsymbols import (
    FACT_KINDS,
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture

Unit = HotSymbolDelta | ObservationWindow


def boot_clock() -> float:
    """Seconds since boot, suspend included (CLOCK_BOOTTIME; monotonic where there is none): how
    long a live batch has been held, whatever the wall clock says or is set to meanwhile."""
    if hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.monotonic()


Range = tuple[int, int]


@dataclass(slots=True)
class Batch:
    """One frozen flush: its identity and its rows, in a fixed order."""

    agent_id: str
    seq: int
    units: list[Unit | None]
    from_spool: bool = False
    # The agent's oldest sequence still pending when this batch is written: its
    # ledger rows below it are of confirmed batches, never retried, and go in the
    # same transaction (so the ledger holds a few rows per live agent).
    ledger_floor: int = 0
    # Ranges of at least this many units took longer than the statement timeout: they are
    # written in halves straight away (store/ledger.py), on this attempt and every retry.
    timed_out_span: int = sys.maxsize
    timeout_splits: int = 0  # ranges split because their write passed the statement timeout
    writing: Range | None = None  # the range whose transaction runs now (store/ledger.py)
    attempt: int = 0  # bumped when a write of the batch is abandoned: that write stops splitting
    parts_done: int = 0  # ranges committed (or found stored): a write in parts is making progress
    # Ranges this process saw committed, with how (``"written"``/``"duplicate"``): a retry of the
    # batch skips them without a round trip (the ledger would answer "already stored").
    stored_ranges: dict[Range, str] = field(default_factory=dict)
    # Where the export file's lines counted in this batch (and the ones before it) may reach,
    # written with each of its transactions (store/export_position.py); None: no export source.
    export_position: dict[str, Any] | None = None
    # False: read from a spool file of an agent before the spans (s39), which wrote no
    # ``export_position`` key: whether it holds counts of the export file, and of which lines, is
    # not known (store/export_spans.py ``guard``). Kept as it is when the batch is spooled again.
    export_known: bool = True
    # Replayed by an agent that does not hold the export lock (store/pending.py ``spool_unlocked``):
    # another agent's counts of its lines may be in flight, unseen by its check. Never spooled.
    unlocked: bool = False
    # The store's ``retentionDays`` (the writer sets it): rows older than its cutoff are kept out of
    # the history (store/late_rows.py). None: no such check (a batch written without a store's).
    retention_days: int | None = None
    # When the flush froze it (the agent's clock, unix seconds), kept in the spool file and through
    # its merges: a spooled batch frozen before the flush ledger's rows are pruned cannot be told
    # stored or not (store/spool_age.py). None: a spool file of before session 45, not known.
    frozen_unix: int | None = field(default_factory=lambda: int(time.time()))
    # When this process's first attempt at it reached the database (store/ledger.py ``_claim``), by
    # :func:`boot_clock`: a live agent holding a batch whose acknowledgement was lost longer than the
    # ledger keeps its rows cannot tell it stored or not, and its node's wall clock may be a month
    # off (store/spool_age.py). None: no attempt of this process reached a COMMIT (a store down
    # since the freeze: no ledger row can exist), or read from a spool file (never spooled).
    claimed_boot: float | None = None
    # When an attempt at it first reached the database, by the ledger's clock (the server's on
    # PostgreSQL: store/ledger.py ``_claim``), unix seconds, kept in the spool file: a spooled batch
    # none of whose attempts did (None, ``claim_known``) has no ledger row to be forgotten
    # (store/spool_age.py). ``claim_known`` False: a spool file of before session 46, not known.
    claimed_unix: int | None = None
    claim_known: bool = True
    _front: int = 0  # units before this index are all tombstones
    _droppable: int = 0  # units before this index are tombstones or gap rows (never dropped)

    def range_stored(self, r: Range, how: str) -> None:
        self.stored_ranges[r] = how
        self.parts_done += 1

    def stored_as(self, r: Range) -> str | None:
        """How a range containing ``r`` was stored by this process (None: not known to be stored)."""
        lo, hi = r
        for (a, b), how in list(self.stored_ranges.items()):  # another thread may add one
            if a <= lo and hi <= b:
                return how
        return None

    def too_slow(self, r: Range | None = None) -> bool:
        """Write ranges of ``r``'s size (default: the one being written) and larger in halves from now on.

        False when there is nothing to halve (no range, or a single row).
        """
        r = r or self.writing
        if r is None or r[1] - r[0] < 2:
            return False
        self.timed_out_span = min(self.timed_out_span, r[1] - r[0])
        self.timeout_splits += 1
        return True

    @property
    def rows(self) -> int:
        return sum(u is not None for u in self.units)

    def split(self, lo: int, hi: int) -> tuple[list[HotSymbolDelta], list[ObservationWindow]]:
        """The live deltas and observation windows of ``units[lo:hi]``."""
        deltas: list[HotSymbolDelta] = []
        obs: list[ObservationWindow] = []
        for u in self.units[lo:hi]:
            if isinstance(u, HotSymbolDelta):
                deltas.append(u)
            elif u is not None:
                obs.append(u)
        return deltas, obs

    def oldest_window(self) -> int | None:
        """The window start of the oldest live row (units are in window order), None when empty."""
        while self._front < len(self.units) and self.units[self._front] is None:
            self._front += 1
        if self._front == len(self.units):
            return None
        u = self.units[self._front]
        assert u is not None
        return u.window_start_ns

    def oldest_droppable_window(self) -> int | None:
        """The window start of the oldest live row that may be dropped (:func:`never_dropped`: not a gap
        row, not an ``unprobed`` fact)."""
        units = self.units
        i = max(self._droppable, self._front)
        while i < len(units) and (units[i] is None or never_dropped(units[i])):
            i += 1
        self._droppable = i
        if i == len(units):
            return None
        u = units[i]
        assert u is not None
        return u.window_start_ns

    def drop_oldest_droppable(self) -> tuple[int, Unit]:
        """Tombstone the oldest live row that may be dropped; return its index and the row.

        The caller may put the row's gap in its place (:meth:`put_gap`).
        """
        if self.oldest_droppable_window() is None:
            raise IndexError("nothing droppable in the batch")
        i = self._droppable
        u = self.units[i]
        assert u is not None
        self.units[i] = None
        return i, u

    def put_gap(self, i: int, gap: ObservationWindow) -> None:
        """Put a dropped row's gap in its tombstone ``i``: stored in the same ledger range as the row.

        So the gap is never stored after the batch's observation of that window
        (a window claimed watched without the dropped calls), and when the range
        was stored already (a lost acknowledgement), so was the row: no gap is due.
        """
        if self.units[i] is not None or not gap.has_gap:
            raise ValueError("a gap goes only into a tombstone")
        self.units[i] = gap

    def drop_oldest(self) -> Unit:
        """Tombstone the oldest live row and return it (the batch must not be empty)."""
        if self.oldest_window() is None:
            raise IndexError("drop from an empty batch")
        u = self.units[self._front]
        assert u is not None
        self.units[self._front] = None
        return u


@dataclass(slots=True)
class BatchResult:
    """What writing one batch did, in rows (one (key, window) delta or one observation window)."""

    written: int = 0
    duplicate: int = 0  # already in the store: a retry of a committed batch or part
    quarantined: int = 0  # refused by the database, kept in quarantined_rows
    quarantined_invocations: int = 0
    splits: int = 0  # ranges retried in halves because a row was refused
    # spooled rows not stored: another agent's stored counts cover their lines (store/export_spans.py)
    recounted: int = 0
    # spooled rows not stored: their lines cannot be checked and another agent stored counts of the file
    unverified: int = 0
    # observation windows not stored: they start before the retention's cutoff (store/late_rows.py)
    expired: int = 0
    errors: list[str] = field(default_factory=list)  # one per quarantined row

    def add(self, other: BatchResult) -> None:
        self.written += other.written
        self.duplicate += other.duplicate
        self.quarantined += other.quarantined
        self.quarantined_invocations += other.quarantined_invocations
        self.splits += other.splits
        self.recounted += other.recounted
        self.unverified += other.unverified
        self.expired += other.expired
        self.errors.extend(other.errors)


# -- ledger parts -------------------------------------------------------------------


def part_name(lo: int, hi: int) -> str:
    return f"{lo}-{hi}"


def parse_part(name: str) -> Range | None:
    """``"lo-hi"`` -> (lo, hi); None for anything else."""
    lo, sep, hi = name.partition("-")
    if not sep or not lo.isdigit() or not hi.isdigit():
        return None
    return int(lo), int(hi)


class Coverage(enum.Enum):
    APPLIED = "applied"  # the whole range is already in the store
    PARTIAL = "partial"  # some of it is: write the rest in smaller ranges
    FREE = "free"  # none of it is


def coverage(r: Range, applied: Iterable[Range]) -> Coverage:
    """How much of range ``r`` the already-applied ranges cover.

    Applied ranges come from one bisection, so they nest or are disjoint:
    ``r`` is applied when one contains it, partial when one overlaps it
    without containing it.
    """
    lo, hi = r
    partial = False
    for a_lo, a_hi in applied:
        if a_lo <= lo and hi <= a_hi:
            return Coverage.APPLIED
        if a_lo < hi and lo < a_hi:
            partial = True
    return Coverage.PARTIAL if partial else Coverage.FREE


# -- JSON ------------------------------------------------------------------------------

_DELTA_FIELDS = tuple(f.name for f in dataclasses.fields(HotSymbolDelta) if f.name != "key")
_OBS_FIELDS = tuple(f.name for f in dataclasses.fields(ObservationWindow))


def unit_to_json(u: Unit) -> dict[str, Any]:
    if isinstance(u, HotSymbolDelta):
        k = u.key
        out: dict[str, Any] = {
            "t": "delta",
            "image_digest": k.image_digest,
            "module": k.module,
            "function_name": k.function_name,
            "evidence": str(k.evidence),
        }
        out.update((name, getattr(u, name)) for name in _DELTA_FIELDS)
        return out
    out = {"t": "observation"}
    for name in _OBS_FIELDS:
        v = getattr(u, name)
        out[name] = v.value if isinstance(v, enum.Enum) else v
    return out


def unit_from_json(d: dict[str, Any]) -> Unit:
    """The inverse of :func:`unit_to_json`; raises ValueError/KeyError/TypeError on a bad record."""
    kind = d.get("t")
    if kind == "delta":
        key = HotSymbolKey(
            str(d["image_digest"]), str(d["module"]), str(d["function_name"]), EvidenceKind(d["evidence"])
        )
        return HotSymbolDelta(key=key, **{n: d[n] for n in _DELTA_FIELDS if n in d})
    if kind == "observation":
        kw = {n: d[n] for n in _OBS_FIELDS if n in d}
        for name in ("posture", "evidenced"):
            if kw.get(name) is not None:
                kw[name] = Posture(kw[name])
        return ObservationWindow(**kw)
    raise ValueError(f"unknown row type {kind!r}")


def is_fact(u: Unit | None) -> bool:
    """A fact row (:data:`_FACTS`: an ``unprobed`` tail, a ``listed`` JAR), 0 calls the answers read."""
    return isinstance(u, HotSymbolDelta) and u.key.evidence in _FACTS


def batch_to_json(b: Batch) -> dict[str, Any]:
    """The batch's JSON form. A fact row goes under ``facts`` as ``[index, row]``, a tombstone in
    its place in ``units``: an agent of before the facts (995bd72, a DaemonSet rolled back) skips
    the key and replays the batch's other rows, where its ``EvidenceKind`` refused the fact's kind
    and lost the whole batch (tests/unit/test_spool_rollback_facts.py); the indices, which the
    ledger's parts name, stay."""
    out: dict[str, Any] = {
        "agent_id": b.agent_id,
        "seq": b.seq,
        "units": [None if u is None or is_fact(u) else unit_to_json(u) for u in b.units],
    }
    if facts := [[i, unit_to_json(u)] for i, u in enumerate(b.units) if u is not None and is_fact(u)]:
        out["facts"] = facts
    if b.export_known:  # its spans are checked at the replay (store/export_spans.py); null: no export counts
        out["export_position"] = b.export_position
    if b.frozen_unix is not None:
        out["frozen_unix"] = b.frozen_unix
    if b.claim_known:  # null: no attempt reached the database
        out["claimed_unix"] = b.claimed_unix
    return out


_YEAR_10000_UNIX = 253_402_300_800


def batch_from_json(d: dict[str, Any]) -> Batch:
    """The inverse of :func:`batch_to_json` (facts inside ``units`` too: a file of the agent before
    they moved); raises ValueError/KeyError/TypeError on a bad record."""
    units = [None if u is None else unit_from_json(u) for u in d["units"]]
    for i, u in spooled_facts(d):
        units[i] = u
    agent_id, seq = d["agent_id"], d["seq"]
    if not isinstance(agent_id, str) or not agent_id or not isinstance(seq, int):
        raise ValueError("a batch needs a non-empty agent_id and an integer seq")
    position = d.get("export_position")  # checked where it is used (store/export_spans.py)
    frozen, claimed = d.get("frozen_unix"), d.get("claimed_unix")
    claim_ok = claimed is None or (type(claimed) is int and 0 <= claimed < _YEAR_10000_UNIX)
    return Batch(
        agent_id,
        seq,
        units,
        from_spool=True,
        export_position=position if isinstance(position, dict) else None,
        export_known="export_position" in d and (position is None or isinstance(position, dict)),
        # A time no datetime holds (a file edited by hand) is not known: it would raise in the write.
        frozen_unix=frozen if type(frozen) is int and 0 <= frozen < _YEAR_10000_UNIX else None,
        # No key (a file of before s46) or a value no datetime holds: not known, judged by its freeze.
        claimed_unix=claimed if claim_ok else None,
        claim_known="claimed_unix" in d and claim_ok,
    )


def spooled_facts(d: dict[str, Any]) -> list[tuple[int, Unit]]:
    """The fact rows of a batch's JSON form (``facts``), each with its tombstone's index in ``units``.
    Raises ValueError (or KeyError/TypeError) when one is no fact, or its index no tombstone of them."""
    facts, units = d.get("facts", []), d["units"]
    if not isinstance(facts, list) or not isinstance(units, list):
        raise ValueError("a batch's facts and units are lists")
    got: list[tuple[int, Unit]] = []
    for entry in facts:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or type(entry[0]) is not int
            or not isinstance(entry[1], dict)
        ):
            raise ValueError("a fact is [index, row]")
        i, u = entry[0], unit_from_json(entry[1])
        if not 0 <= i < len(units) or units[i] is not None or any(i == j for j, _ in got) or not is_fact(u):
            raise ValueError(f"a fact's index {i} is no tombstone of the batch, or its row no fact")
        got.append((i, u))
    return got


def never_dropped(u: Unit | None) -> bool:
    """A row the outage bound never drops nor counts: dropping it could turn "unknown" into "not
    observed". A gap row says evidence is missing; an ``unprobed`` fact (agent/unprobed.py) says a
    function was probed in part for any period, is sent once, and no gap over its one window
    would stand for it (tests/unit/test_pending_unprobed.py); so does a ``listed`` JAR
    (agent/listed_jars.py, tests/unit/test_listed_jars.py). A spool line's row whose window start
    (or gap end) is no integer (a hostile or damaged file) has no window to be ordered by nor a gap
    to leave: kept, the write quarantines it, counted (store/rowcheck.py;
    tests/integration/test_gap_hostile_window.py)."""
    if u is None:
        return False
    if type(u.window_start_ns) is not int or (
        isinstance(u, ObservationWindow) and type(u.gap_end_ns) is not int
    ):
        return True
    if isinstance(u, ObservationWindow):
        return u.has_gap
    return u.key.evidence in _FACTS


_FACTS = FACT_KINDS  # rows of no call the answers read (contracts/hotsymbols.py)
