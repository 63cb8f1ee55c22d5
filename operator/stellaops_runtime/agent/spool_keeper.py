"""The spool file: hot-symbol rows the store could not take before shutdown, for the next agent.

Split from :mod:`stellaops_runtime.agent.flusher`, which decides when rows are
spooled; this module is what the file holds and who may remove it.

- At start, :meth:`SpoolKeeper.load` queues the rows a previous agent spooled
  (written first, through the flush ledger: a replayed batch never counts
  twice); a corrupt file is moved aside and counted, never replayed, and its
  lost counts make the time since the node's latest stored window a gap
  (``on_lost``, agent/watch_record.py ``spool_lost``). A file one of whose
  batch lines does not decode (another version's rows) is kept aside as it
  was, its other batches are queued, and the lost batch's counts make the same
  gap (the windows of the batches kept do not shorten it).
- Once every loaded batch is stored, the file is removed, but only if it is
  still the very file loaded (its identity): another agent of the node may
  have written it since.
- At shutdown, :meth:`SpoolKeeper.save` writes what is still pending; a file
  this agent did not load is merged into the one it writes, never replaced
  (one with a batch line that does not decode is kept aside as a hard link,
  so it stays at the path until the merged file is renamed over it, and that
  line is written on into the merged file as it was: the next agent meets it,
  replays it if it can read it, else keeps it aside with its gap); one set
  aside whole leaves a line in its place that no agent reads (``lost_line``),
  so the next agent makes the same gap.
- The gap for a batch line that does not decode starts at the earliest window
  the line names (read as text, ``lost_since_ns``) when that is before the
  node's latest stored window: another agent of the path may have stored
  windows after the lost ones. So does the gap for a file set aside whole at
  start (the earliest window its text names, ``text_window_ns``).
- The image pairings not stored at shutdown go beside the file (agent/spool_pairs.py), noted
  at load, so the next agent writes them before the rows they pair; removed with the file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from stellaops_runtime.agent.node_history import spooled_window_ns
from stellaops_runtime.agent.spool_pairs import read_pairs, remove_pairs, write_pairs
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.image_pairs import PairsToRecord
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.spool import (
    NOTHING_UNREAD,
    Identity,
    SpoolError,
    Unread,
    keep_aside,
    lost_line,
    quarantine_spool,
    read_spool_kept,
    remove_spool,
    remove_stale_temporaries,
    spool_identity,
    spool_lock,
    text_window_ns,
    unread_window_ns,
    write_spool,
)

log = logging.getLogger(__name__)


class SpoolKeeper:
    """The agent's spool file (``store.spoolPath``, empty for none) and what it says about it."""

    def __init__(
        self, path: str, pending: PendingWrites, why: Callable[[], str], pairs: PairsToRecord | None = None
    ) -> None:
        self.path = path
        self.pending = pending
        self.pairs = pairs  # the flush writes them before the rows they pair (agent/spool_pairs.py)
        self._why = why  # why rows are left at shutdown (the flusher's last error)
        self.lost_rows = 0
        self.spooled_rows = 0
        self.corrupt = 0
        self.error = ""
        self._loaded = False
        self._identity: Identity | None = None  # the file load() read
        self.window_ns: int | None = None  # the latest window start of the spooled rows
        # The earliest window a batch line that did not decode names: its lost counts' gap starts
        # there at the latest (agent/watch_record_store.py); None: the line names none.
        self.lost_since_ns: int | None = None
        # A spool file set aside at load: its counts are lost, their windows a gap (watch_record.py).
        self.on_lost: Callable[[], None] | None = None

    def load(self) -> None:
        """Queue the rows a previous agent spooled; a corrupt file is moved aside and counted."""
        path = self.path
        if not path:
            return
        with spool_lock(path) as locked:
            if locked and (n := remove_stale_temporaries(path)):
                log.info("removed %d temporary spool file(s) left by a killed agent beside %s", n, path)
            if self.pairs is not None:  # the spooled rows' pairings: written before them
                for config, manifest in read_pairs(path):
                    self.pairs.note(config, manifest)
            try:
                got = read_spool_kept(path)
            except SpoolError as e:  # its gap starts at the earliest window its text names at the latest
                self.lost_since_ns = text_window_ns(path)
                self._set_aside(path, e)
                if self.on_lost is not None:
                    self.on_lost()
                return
            if got is not None and got[2]:
                self.lost_since_ns = unread_window_ns(got[3])
                self._keep_aside(path, got[2], "(the time since the node's latest stored window, or the "
                                 "earliest window they name if before it, is a gap), "
                                 "the other batches are replayed")  # fmt: skip
            if got is None and locked:  # no rows wait for them (those noted are written anyway)
                remove_pairs(path)
        if got is None:
            return
        batches, self._identity, bad, _unread = got
        # Counts lost: the gap starts at the node's latest stored window, never shortened by these.
        self.window_ns = None if bad else spooled_window_ns(batches)
        if bad and self.on_lost is not None:
            self.on_lost()
        self.pending.load(batches)
        self._loaded = True
        log.info("loaded %d hot-symbol rows in %d batches from spool file %s; they are written first",
                 self.pending.spool_loaded_rows, len(batches), path)  # fmt: skip

    def _keep_aside(self, path: str, bad: list[str], then: str) -> None:
        """Some batch lines of the file do not decode: a copy of it as it was is kept aside (call
        under the lock; a hard link, so the file stays at its path until it is replaced or removed:
        its other batches are never lost with the bad ones), ``then`` says what becomes of them."""
        self.corrupt += 1
        self.error = f"{path}: {len(bad)} batch(es) not readable: {bad[0]}"
        kept = keep_aside(path)
        log.error("%s; their counts are lost %s; the file as it was is kept at %s", self.error, then,
                  kept or "(could not keep a copy)")  # fmt: skip

    def _set_aside(self, path: str, e: SpoolError) -> None:
        self.corrupt += 1
        self.error = str(e)
        moved = quarantine_spool(path)
        log.error("%s; moved aside to %s, its rows are not replayed", e, moved or "(could not move)")

    def done(self) -> None:
        if self._loaded and not self.pending.spool_batches_left:
            path = self.path
            with spool_lock(path, wait=0) as locked:
                if not locked:
                    return  # another agent is at the file: try again after the next flush
                removed = self._remove_loaded(path)
            self._loaded = False
            what = "removed" if removed else "kept: another agent wrote it since it was loaded"
            log.info("the spooled rows are stored (%d rows); spool file %s %s",
                     self.pending.spool_replayed_rows, path, what)  # fmt: skip

    def _remove_loaded(self, path: str) -> bool:
        """Remove the spool file if it is still the one :meth:`load` read (call under the lock)."""
        loaded, self._identity = self._identity, None
        if loaded is None or spool_identity(path) != loaded:
            return False
        remove_spool(path)
        remove_pairs(path)  # its rows are stored, so were their pairings (agent/flusher.py)
        return True

    def _foreign(self, path: str) -> tuple[list[Batch], Unread]:
        """The batches of a spool file this agent did not load (call under the lock), and its batch
        lines that do not decode here, as they were; none if there is no such file.

        Another agent wrote it after this one started (or after this one replayed
        and removed its own): replacing it would erase that agent's counts.
        Its batches keep their agent id and sequence, so the ledger stores each once.
        """
        now = spool_identity(path)
        if now is None or now == self._identity:
            return [], NOTHING_UNREAD  # none, or the one loaded: its unreplayed batches are pending here
        try:
            got = read_spool_kept(path)
        except SpoolError as e:  # its counts are lost: a line the next agent meets says so (its gap)
            lost = lost_line(path, str(e))
            self._set_aside(path, e)
            return [], lost
        if got is None:
            return [], NOTHING_UNREAD
        if got[2]:  # its batches that decode are kept in the file written now; until then, in it
            then = ("here: they are written on into the file written now as they were, for the next agent "
                    "(which replays them, or keeps them aside with a gap over their windows)")  # fmt: skip
            self._keep_aside(path, got[2], then)
        log.warning("spool file %s was written by another agent since this one started: its %d rows "
                    "are kept in the file written now", path, sum(b.rows for b in got[0]))  # fmt: skip
        return got[0], got[3]

    def _save_pairs(self, path: str) -> None:
        """The pairings not stored, beside the spool file (call under the lock): the next agent
        writes them before replaying the rows (agent/spool_pairs.py)."""
        unstored = self.pairs.unstored() if self.pairs is not None else []
        try:
            write_pairs(path, unstored)
        except OSError as e:
            log.error("could not keep %d image pairings beside spool file %s: %s (a question by one "
                      "of their digests reads that digest's rows alone)", len(unstored), path, e)  # fmt: skip

    def save(self) -> bool:
        """Write everything still pending to the spool file; True when nothing is left unsaved."""
        path = self.path
        rows = self.pending.pending_rows
        if not rows:
            if self._loaded:
                with spool_lock(path):
                    self._remove_loaded(path)
            return True
        if not path:
            self.lost_rows = rows
            log.error("could not store %d hot-symbol rows before shutdown: %s (set store.spoolPath to "
                      "keep them for the next start)", rows, self._why())  # fmt: skip
            return False
        own = self.pending.take_all()
        with spool_lock(path):  # held or not (another agent past the wait): the rows are written
            foreign, unread = self._foreign(path)
            try:
                self.spooled_rows = write_spool(path, foreign + own, unread)
            except SpoolError as e:
                self.pending.load(own)
                self.lost_rows = rows
                log.error("could not store %d hot-symbol rows before shutdown (%s), and %s",
                          rows, self._why(), e)  # fmt: skip
                return False
            self._save_pairs(path)
        log.warning("the store could not take %d hot-symbol rows before shutdown (%s); spooled them to "
                    "%s for the next start", self.spooled_rows, self._why(), path)  # fmt: skip
        return True
