"""The node's "last known watching" record: the time between two agents on a node is a gap.

Tetragon replays nothing, so an outage of its stream is a node-wide gap
(agent/outages.py). An agent that stops (an upgrade, a crash, SIGKILL, an OOM
kill, a node reboot) leaves a hole of the same kind: nobody watches the node
until the next agent's first stream opens. Nothing in the store says so (the
windows before and after exist), so without this record the day would count
as watched and a "not observed" could rest on a hole of seconds to hours.

The record is ``<store.spoolPath>.alive``, on the same hostPath as the spool
file, so the next agent pod on the node finds it: JSON with the node name,
the agent id and ``alive_ns``, the last wall-clock moment the agent knew its
source was watching (the stream's last message, or its opening) *and* had
stored the counts of everything that arrived by then. Both matter: an agent
killed by SIGKILL or the OOM killer loses the counts it had not flushed, and a
window row it had already stored claims the whole window, so the next agent's
gap must start before the first lost event, not at the last message. The
outage marker's tick samples the watching moment about once a second, after
marking the outages it took, and each flush as it starts while the native
probes run (none while the source is not watching: that outage is recorded as
it goes); each flush that stores everything the pipeline had taken when it
started writes the latest sample it covers (its own, when the pipeline had
taken everything queued by its start), never past the moment up to which
Tetragon's counted losses were in the gap tracker as it started
(sources/tetragon_metrics.py
``marked_through``: a loss not stored yet would otherwise fall in no gap); a
graceful shutdown that stored or spooled every count writes the moment stop
was asked (no later than that moment either). Each write goes to a temporary file
beside it and is renamed (mode 0600), with no fsync: a lost write leaves an
older time, i.e. a larger gap, the safe side.

With the JSON export source the record also keeps the file's checkpoints (the
offset where the stored counts end, and the one a running flush may store up to:
agent/export_resume.py), so the next agent reads on from there instead of
leaving a gap or counting lines twice.

At start the next agent reads it; a record of this node with a sane time
makes the span from that time until its first stream opens an outage of the
source (``resume_outage``), handed over by ``take_outage`` like a reconnect.
A record that cannot be trusted (too large, not JSON, wrong shape, another
node's, a time <= 0, a symlink) is ignored, logged and counted in
:attr:`WatchRecord.ignored`; it never stops the agent. A missing or ignored
record does not make this the node's first agent: the store says, as it opens
(agent/node_history.py), whether it holds windows of the node; if so the time
since the latest one's start is a gap (since the node's boot when that start is
ahead of the clock: stepped back since), and an ``exportFromStart`` replay of the
export file is refused (sources/export_restart.py), also when the store cannot say within
``tetragon.exportHistoryWaitSeconds`` (10 s);
an agent that stops before the store ever answered marks the time from the node's boot as a gap
(:meth:`WatchRecord.unanswered_at_stop`). Without ``store.spoolPath`` there is no record, and
restart holes are not recorded.

The wall clock may have stepped since the record was written (NTP, ``date
-s``): a record "from the future" is a clock stepped back, and its hole is
still a hole. The record also keeps the node's boot id and the moment on the
boot clock (``CLOCK_BOOTTIME``, which never steps), so on the same boot the
hole is measured exactly and marked on both sides of the step
(hotsymbols/clock_span.py). A record ahead of the clock by more than
:data:`FUTURE_SKEW_NS` without that (another boot, an older record) or by more
than :data:`MAX_STEP_NS` (not a time any clock had) says nothing about where
the hole began on the old clock: the gap then starts where the hole must have
started on the new one, the boot (or, on the same boot, the boot clock's
measure of the hole), never nowhere. A record of another boot starts the gap
at the boot at the latest, whatever its time: the clock may have gone back
across the reboot, and nobody watched the node since it booted.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import Counter, deque
from typing import Any

from stellaops_runtime.agent.export_resume import ExportResume, resume_export
from stellaops_runtime.agent.watch_record_file import (
    FORMAT,
    FUTURE_SKEW_NS,
    MAX_RECORD_BYTES,
    MAX_STEP_NS,
    SUFFIX,
    Hole,
    RecordIgnored,
    _iso,
    encode,
    read_record,
    record_path,
    this_boot,
    write_record,
)
from stellaops_runtime.agent.watch_record_store import StoreAnswer
from stellaops_runtime.hotsymbols.clock_span import READ_SLACK_NS, boot_ns, boot_of, now_pair

log = logging.getLogger(__name__)

MAX_SAMPLES = 4096  # watching moments waiting for a flush that covers them

__all__ = [
    "FORMAT", "FUTURE_SKEW_NS", "MAX_RECORD_BYTES", "MAX_SAMPLES", "MAX_STEP_NS", "SUFFIX", "Hole",
    "RecordIgnored", "WatchRecord", "encode", "read_record", "record_path",
    "this_boot", "write_record",
]  # fmt: skip


class WatchRecord(StoreAnswer):
    """Reads the record at start (:meth:`resume`); keeps it at the last moment both watched and stored.

    A moment counts once every payload that had arrived by then is in a flush that
    succeeded: an agent killed (SIGKILL, OOM) loses what it had not stored, so the
    next agent's gap must start before that. :meth:`tick` samples ``(watching time,
    payloads enqueued)``; :meth:`flush_starts` reads how many payloads the pipeline
    has taken (all of them are in the drain that starts the flush: the pipeline
    thread runs in order); :meth:`flushed` writes the latest sample that flush covered.
    """

    def __init__(self, path: str, *, node: str, agent_id: str, queue: Any) -> None:
        self.path = path
        self.node = node
        self.agent_id = agent_id
        self.queue = queue  # sources/queue.py EventQueue: ``enqueued`` and ``len()``
        self.ignored: Counter[str] = Counter()  # records not used, by reason
        self.restart_gaps = 0  # restart holes handed to the source as outages
        self.restart_gap_seconds = 0.0  # ... their length up to this agent's start
        self.write_errors = 0
        self._written = (0, 0)  # (alive_ns, its boottime) of the last write
        # (watching ns, its boottime, payloads enqueued then)
        self._samples: deque[tuple[int, int, int]] = deque()
        self.export = ExportResume(queue)  # the export source's checkpoints (agent/export_resume.py)
        self._hole: tuple[int, int | None] | None = None  # the last agent's moment, if resumed
        self._started = now_pair()  # before the source read any line (agent/runner.py attaches it first)
        # No usable record: the store's latest window of the node (agent/node_history.py), read
        # as it opens; ``_asked`` until then, ``_told`` once handed to the source.
        self._asked = False
        self._told = False
        self._store_knows: int | None = None  # wall ns; None: the store has no window of the node
        self._store_answered = False
        self.spool_window_ns: Any = lambda: None  # the flusher's spooled rows' latest window
        # The earliest window a spooled batch line that did not decode names (agent/spool_keeper.py
        # ``lost_since_ns``): the gap for its lost counts starts there when that is earlier
        self.spool_lost_since: Any = lambda: None
        # Tetragon's losses are stored up to here (sources/tetragon_metrics.py marked_through; None:
        # no such bound): read as a flush starts, the moment written never passes it
        self.drops_through: Any = lambda: None
        self._drops_cap: int | None = None
        self._unmarked = False  # the store's answer handed to the source on the last tick
        self._claims = True  # the running flush may write a watching moment (flush_starts)
        self.source: Any = None  # the agent's source: sampled as a flush starts too (attach_watch_record)
        # (wall ns, boottime ns): the latest moment a flush (or the final one) covered, with or without
        # a record file: the node's proof of life in the store claims it (store/node_liveness.py). The
        # source's ``live_ns`` when it has one (a silent open gRPC stream: now, less the hold)
        self.claimed: tuple[int, int] | None = None
        self._live: deque[tuple[int, int, int]] = deque()  # (live ns, its boottime, payloads enqueued)

    @property
    def enabled(self) -> bool:
        return bool(self.path)

    def resume(self, source: Any) -> int | None:
        """Hand the hole since the last agent to ``source.resume_outage``; returns its start (or None)."""
        self.export.attach(source)
        if not self.path or getattr(source, "resume_outage", None) is None:
            return None
        now = time.time_ns()
        from stellaops_runtime.store.spool import remove_stale_temporaries

        with contextlib.suppress(OSError):  # a killed agent's temporary record files
            remove_stale_temporaries(self.path)
        try:
            alive, last_agent, alive_boot, export, export_timed = read_record(
                self.path, node=self.node, now_ns=now
            )
        except FileNotFoundError:
            log.info("no watch record at %s: the store tells whether an agent ran on this node before",
                     self.path)  # fmt: skip
            self._ask_store(source)
            return None
        except RecordIgnored as e:
            self.ignored[e.reason] += 1
            log.warning("watch record %s ignored (%s): %s", self.path, e.reason, e)
            self._ask_store(source)
            return None
        except Exception as e:  # never stop an agent over this file: the store is asked instead
            self.ignored["error"] += 1
            log.error("watch record %s ignored (error): %r", self.path, e)
            self._ask_store(source)
            return None
        source.resume_outage(alive, alive_boot)
        self._hole = (alive, alive_boot)
        self.restart_gaps += 1
        self.restart_gap_seconds = (boot_ns() - alive_boot if alive_boot is not None else now - alive) / 1e9
        widen = functools.partial(self._widen, source)
        resumes = resume_export(source, export, (alive, alive_boot), timed=export_timed, widen=widen)
        if resumes:  # weighed against the store's export position first (sources/export_store.py)
            self.export.ask_store(last_agent)
        log.warning(
            "the node was not watched from %s (last agent %s) to now (%.1fs): recorded as a gap%s",
            _iso(self._hole[0]), last_agent, self.restart_gap_seconds,
            " unless the export file is resumed where that agent's stored counts end" if resumes else "",
        )  # fmt: skip
        return self._hole[0]

    def _widen(self, source: Any, wall: int, boot: int) -> None:
        """The last agent's record cannot say which lines it stored (agent/export_resume.py): the
        hole starts at ``(wall, boot)`` (the node's boot), for the source and this agent's own record."""
        source.resume_outage(wall, boot)
        self._hole = (wall, boot)
        self.restart_gap_seconds = (boot_ns() - boot) / 1e9

    @property
    def unrecorded(self) -> bool:
        """Drains are held now: the export file's position cannot be recorded, nothing is stored
        (``/readyz``'s ``export_position_unrecorded``)."""
        return self.export.held > 0

    def tick(self, source: Any) -> None:
        """Sample the source's last watching moment (about once a second), if it is watching.

        The store's answer, handed over here, reaches the pipeline on the marker's next tick (it
        runs before this): no flush starting before then claims a moment (:meth:`flush_starts`)."""
        self._unmarked = self._tell(source)
        self._sample(getattr(source, "watching_ns", None))
        self._sample_live(getattr(source, "live_ns", None) or getattr(source, "watching_ns", None))

    def _sample_live(self, live: Any) -> None:
        """Keep ``(live(), its boottime, payloads enqueued)`` for ``claimed``: the source's proof of
        life's moment (``live_ns``: a silent open stream's now), else its watching moment."""
        alive = live() if live is not None else None
        if alive is None:
            return
        boot = boot_of(alive)
        if self._live and not _later((alive, boot), self._live[-1][:2]):
            return
        if len(self._live) < MAX_SAMPLES:
            self._live.append((alive, boot, self.queue.enqueued))

    def _sample(self, watching: Any) -> None:
        """Keep ``(watching(), payloads enqueued)``, read in that order: every payload holding an
        event before that moment was enqueued by then."""
        alive = watching() if watching is not None else None  # without a path: for ``claimed``
        if alive is None:
            return
        boot = boot_of(alive)
        if not _later((alive, boot), self._samples[-1][:2] if self._samples else self._written):
            return
        if len(self._samples) < MAX_SAMPLES:  # full (the store down for long): the oldest ones count
            self._samples.append((alive, boot, self.queue.enqueued))

    def flush_starts(self) -> int:
        """Payloads the pipeline has taken so far: the flush starting now drains all of them. While
        the native probes run, their watching moment is sampled first (``flush_moment_ns``,
        agent/source_switch_gaps.py): when the pipeline has taken everything queued by now, this
        flush covers it, not only the last tick's sample, up to a second older (the next agent would
        count Tetragon's copies of the calls this flush stored after that sample again,
        agent/source_switch_loads.py). Not Tetragon's stream: its outages and loop stalls reach the
        pipeline on the marker's tick, which samples only after marking them."""
        self._sample(getattr(self.source, "flush_moment_ns", None))
        taken = int(self.queue.enqueued - len(self.queue))
        self.export.flush_starts(taken)
        self._drops_cap = self.drops_through()  # gaps marked by now are in this flush's drain
        # The hole the store's answer opens is not in this drain: a record claiming past its start
        # would hide it from the next agent, should this one die before a later flush stores it.
        self._claims = not (self.unclaimable or self._unmarked)
        return taken

    def drain_starts(self) -> bool:
        """A drain is about to be handed to the pipeline thread: an export checkpoint it moves
        past is recorded as in flight first, durably (agent/export_resume.py). False: the record
        could not be written, and the drain must be held (its counts stay in the aggregator, the
        file keeps the lines): stored rows past the checkpoint on disk would be read again by
        the next agent and counted twice."""
        entry = self.export.drain_starts() if self.path else None
        if entry is None:
            self.export.recorded(None)
            return True
        before = self.export.in_flight
        self.export.in_flight = entry
        if self.write(*self._latest(), force=True, durable=True):
            self.export.recorded(entry)
            return True
        self.export.in_flight = before
        self.export.drain_held()
        if self.export.held == 1 or self.export.held % 60 == 0:
            log.error(
                "the watch record %s cannot be written, so the export file's position cannot be "
                "recorded: the counts read since are held (not stored) until it can be (%d drains "
                "held); if the agent stops meanwhile, the next agent reads those lines again",
                self.path, self.export.held,
            )  # fmt: skip
        return False

    def _latest(self) -> tuple[int, int]:
        """The moment to keep with a record written for its checkpoints alone: the last written,
        else the last agent's (the node's boot when it is no moment of this boot: a reboot, a clock
        set far back), else this agent's start. Never a moment no flush stored through: the next
        agent's gap starts here, and must hold the lines in doubt of the in-flight entry it is
        written with, and the hole this agent has not stored yet (s46/er: "now", read after that
        entry's own moment, or the first watching sample, taken after the lines first read, made
        those lines a gap of no time); no later than the first replayed line's time less the hold
        (sources/export_restart.py ``replay_floor``)."""
        if self._written[0]:
            return self._written
        if self._hole is not None and self._hole[1] is not None:
            moment = (self._hole[0], self._hole[1])
        elif self._hole is not None:
            wall, boot = now_pair()
            moment = (wall - boot, 0)
        else:
            moment = self._started
        # A replay of the export file (exportFromStart): its lines are older than this agent and
        # any hole it resumed (s47/ex: the next agent's gap from the start left them out).
        floor = getattr(self.export.source, "replay_floor", None)
        at = floor() if floor is not None else None
        return at if at is not None and _later(moment, at) else moment

    def flushed(self, taken: int, ok: bool) -> None:
        """A flush that started at ``taken`` ended; if it stored everything, its moment is recorded."""
        best = None
        ok = ok and self.export.holds == self.export.holds_at_flush  # a held drain: not all stored
        while ok and self._claims and self._samples and self._samples[0][2] <= taken:
            best = self._samples.popleft()
        live = None
        while ok and self._claims and self._live and self._live[0][2] <= taken:
            live = self._live.popleft()
        if live is not None:
            cap = self._drops_cap
            self._claim(*((live[0], live[1]) if cap is None or live[0] <= cap else (cap, boot_of(cap))))
        moved = self.export.flushed(taken, ok)
        if best is not None:
            if self._drops_cap is not None and best[0] > self._drops_cap:  # a loss may be unstored past it
                best = (self._drops_cap, boot_of(self._drops_cap), best[2])
            self._claim(best[0], best[1])
            self.write(best[0], best[1], force=moved)
        elif moved:
            self.write(*self._latest(), force=True)

    def final(self, alive: int | None, ok: bool) -> None:
        """At shutdown: ``alive`` (the source's last watching moment when stop was asked) if the
        shutdown stored or spooled every count (``ok``); else the record keeps its stored moment."""
        if ok and alive is not None and not self.export.held:  # held counts were never stored
            cap = self.drops_through()  # Tetragon's losses since its last good scrape: not stored
            moment = alive if cap is None else min(alive, cap)
            self._claim(moment, boot_of(moment))
            self.write(moment, force=self.export.final())

    def _claim(self, alive: int, boot: int) -> None:
        """``claimed`` moves to ``(alive, boot)`` if that is later (:func:`_later`)."""
        if self.claimed is None or _later((alive, boot), self.claimed):
            self.claimed = (alive, boot)

    def write(
        self, alive: int, boot: int | None = None, *, force: bool = False, durable: bool = False
    ) -> bool:
        """Record ``alive`` (boottime ``boot``; read back from now when None) if it is later;
        ``force``: the export checkpoints changed, written even if the moment did not move.
        False if the write failed."""
        boot = boot_of(alive) if boot is None else boot
        if not self.path:
            return True
        if not _later((alive, boot), self._written):
            if not force:
                return True
            alive, boot = self._written if self._written[0] else (alive, boot)
        try:
            doc = self.export.doc()
            write_record(self.path, self.node, self.agent_id, alive, boot, doc, durable=durable)
        except OSError as e:
            self.write_errors += 1
            if self.write_errors == 1 or self.write_errors % 600 == 0:
                log.warning(
                    "cannot write the watch record %s: %s (%d failures)", self.path, e, self.write_errors
                )
            return False
        self._written = (alive, boot)
        return True


def _later(moment: tuple[int, int], than: tuple[int, int]) -> bool:
    """A moment after another: on the wall clock, or on the boot clock once the wall clock stepped back."""
    return moment[0] > than[0] or moment[1] > than[1] + READ_SLACK_NS
