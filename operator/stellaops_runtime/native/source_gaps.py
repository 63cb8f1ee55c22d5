"""The native probe source's gaps: what the probes dropped, and the time a target's file was unwatched.

Split from :mod:`stellaops_runtime.native.source` (a mixin of ``NativeProbeSource``: the
attributes are the source's), which reads the probes; this part keeps the book of what no
record holds, for the source switch to mark as node-wide gaps (agent/source_switch_gaps.py).

Each read of the kernel counters is compared with the previous one of the
same run (the first with zero): what the probes dropped meanwhile
(native/drop_counters.py) is queued as a :class:`NativeDrop` over the wall
time between the two reads (:meth:`SourceGaps.take_drops`). An episode of
drops is logged when it starts, at most every DROP_LOG_SECONDS while it
lasts, and with its totals when a read sees none again (or the probes stop).

A uprobe or USDT target whose path now names another file is probed in that
file too (native/follow.py); the wall time between the previous look and that
attach, when the new file's processes may have called it unseen, is queued as
an unwatched span (:meth:`SourceGaps.take_unwatched`); so is the time between
two looks while a process runs a target's file that could not be probed, and
the time since the load when the load's former-file scan found one late.

Every span is two wall-clock readings, dated by boottime through the largest
wall-minus-boottime offset sampled since the load (:meth:`SourceGaps._span`,
hotsymbols/clock_span.py ``covering``): a wall clock stepped back inside it
leaves it neither empty nor reversed, as the switch's own gaps.
"""

from __future__ import annotations

import logging
import time

from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.hotsymbols.clock_span import READ_SLACK_NS, boot_ns, covering
from stellaops_runtime.native.drop_counters import (
    Key,
    NativeDrop,
    add_pending,
    describe,
    drop_values,
    increases,
)
from stellaops_runtime.native.follow_files import Followed
from stellaops_runtime.native.source_stats import NativeStats

log = logging.getLogger("stellaops_runtime.native.source")  # the source's own lines

MAX_UNWATCHED = 1_000  # spans not yet taken by the switch; older ones merge
DROP_LOG_SECONDS = 60.0  # while an episode of drops lasts, logged at most this often


class SourceGaps:
    """Drops and unwatched spans of the native probe source (a mixin: see the module docstring)."""

    stats: NativeStats
    _drop_prev: dict[Key, int]  # drop counters at the previous read of this run
    _drop_read_ns: int  # wall clock of that read (of the load, before the first)
    _episode: dict[Key, int] | None  # drops of the current episode (None: none)
    _episode_logged: float  # monotonic time of its last log line
    _follow_ns: int  # wall clock of the last look at the uprobe targets' files
    _load_ns: int  # wall clock of the start of the last load
    _scan_open: bool  # the load's former-file scan unfinished as of the last answer taken
    _offset_hi: int | None  # the largest wall-clock minus boottime seen since the load (_clock_seen)
    _offset_last: int  # ... at the latest sample
    _stepped: bool  # the wall clock stepped between two samples since the load

    def _note_drops(self, kernel: dict[str, dict[str, int]], now_ns: int) -> None:
        """Queue what the probes dropped since the previous read (see the module docstring)."""
        cur = drop_values(kernel)
        inc = increases(self._drop_prev, cur)
        start, self._drop_prev, self._drop_read_ns = self._drop_read_ns, cur, max(now_ns, self._drop_read_ns)
        if not inc:
            self._end_episode()
            return
        drop = NativeDrop(*self._span(start, now_ns), inc)  # both sides of a clock step inside it
        add_pending(self.stats.drops, drop)
        self.stats.dropped_total += drop.total
        first = self._episode is None
        ep = self._episode if self._episode is not None else {}
        for k, n in inc.items():
            ep[k] = ep.get(k, 0) + n
        self._episode = ep
        now = time.monotonic()
        if first:
            log.warning(
                "native probes dropped events in the kernel (%s): recorded as observation gaps", describe(inc)
            )
            self._episode_logged = now
        elif now - self._episode_logged >= DROP_LOG_SECONDS:
            log.warning("native probes still dropping events in the kernel (so far: %s)", describe(ep))
            self._episode_logged = now

    def _end_episode(self) -> None:
        """A read without drops (or the probes' stop) ends the episode: its totals, once."""
        if self._episode is None:
            return
        log.info(
            "native probes stopped dropping events: %d in this episode (%s), recorded as observation gaps",
            sum(self._episode.values()), describe(self._episode),
        )  # fmt: skip
        self._episode = None

    def _note_followed(self, res: Followed, now_ns: int, looked_ns: int | None = None) -> None:
        """The span since the previous look is unwatched when a target's file was replaced."""
        if res.reload:
            self.stats.reload_wanted = True  # the source switch reloads (agent/source_switch_purl.py)
        if res.attached or res.failed or res.unwatched or res.since_load:
            # a former file found by the scan's rest was run unprobed since the load
            since = self._load_ns if res.since_load else self._follow_ns
            self._note_unwatched(*self._span(since, now_ns))  # both sides of a clock step inside it
            self.stats.followed += len(res.attached)
            self.stats.former += res.former
            now_on = set(res.attached)  # a file there now is probed: no longer failed (a file put later)
            failed = [f for f in self.stats.failed if f[0] not in now_on]
            known = {label for label, _ in failed}
            # shown by probes and /readyz: the reason redacted, as a load's failures are
            new = [(label, redact(why)) for label, why in res.failed if label not in known]
            self.stats.failed = failed + new
            self.stats.attached += [
                f"uprobe {x}" for x in res.attached if f"uprobe {x}" not in self.stats.attached
            ]
        self._follow_ns = max(now_ns if looked_ns is None else looked_ns, self._follow_ns)

    def _clock_seen(self, reset: bool = False) -> None:
        """Sample the wall clock's offset from boottime, as a read of the buffer is stamped, for
        :meth:`_span`. Until the clock steps (the offset moves more than a read's slack between two
        samples, about 0.1 s apart: a slew moves it microseconds) the latest sample dates a stamp of
        the run; after a step, the largest since the load does (a step back lowers the offset, never
        the largest: a stamp is dated no later than it was, the span wider, never short)."""
        offset = time.time_ns() - boot_ns()
        hi = self._offset_hi
        if reset or hi is None:
            self._offset_hi, self._stepped = offset, False
        else:
            self._offset_hi = max(hi, offset)
            self._stepped = self._stepped or abs(offset - self._offset_last) > READ_SLACK_NS
        self._offset_last = offset

    def _span(self, since_ns: int, now_ns: int) -> tuple[int, int]:
        """The wall-clock span holding every moment from ``since_ns`` (a wall stamp of this run) to
        ``now_ns`` (a recent reading), whichever way the wall clock stepped between them
        (hotsymbols/clock_span.py): a step back leaves it neither empty nor reversed. Before any
        sample (no run) the two readings, ordered.

        ``now_ns`` may be older than this call: a look's is read on the probes' thread and noted once
        the event loop takes it (milliseconds later under load). Its boottime is read back from now,
        boottime read before the wall clock so never later than ``now_ns``'s: boottime read at this
        call dated it late, the clocks disagreed by the hand-off, a step was assumed and the span
        began (and ended) that much early and late, into time the probes watched
        (tests/unit/test_native_gap_clock_steps.py)."""
        boot = boot_ns()
        end_boot = boot - max(0, time.time_ns() - now_ns)
        hi = self._offset_hi
        if hi is None:
            return covering(since_ns, None, now_ns, end_boot)
        return covering(since_ns, since_ns - (hi if self._stepped else self._offset_last), now_ns, end_boot)

    def _note_unwatched(self, start_ns: int, end_ns: int) -> None:
        """Queue a wall-clock span no record or count holds; past MAX_UNWATCHED the two oldest merge."""
        spans = self.stats.unwatched
        spans.append((start_ns, end_ns))
        if len(spans) > MAX_UNWATCHED:  # the two oldest merge: wider, never lost
            first, second = spans[0], spans.pop(1)
            spans[0] = (min(first[0], second[0]), max(first[1], second[1]))

    @property
    def noted_ns(self) -> int:
        """Wall clock before which every drop and unwatched span of this run is noted (queued here, or
        taken): the last read of the drop counters, the last look at the targets' files (a file
        replaced since is the next look's span, from that look on; the switch's tick may run while a
        look goes on), and the load while its former-file scan has processes left (one found later was
        run unprobed since the load). The switch marks the gaps it takes through here
        (agent/source_switch_gaps.py): a watching moment past it could pass a span noted next."""
        noted = min(self._drop_read_ns, self._follow_ns)
        return min(noted, self._load_ns) if self._scan_open else noted

    @property
    def drops_read_ns(self) -> int:
        """Wall clock of the last read of the drop counters: every drop before it is in
        ``stats.drops`` (or was taken)."""
        return self._drop_read_ns

    def take_unwatched(self) -> list[tuple[int, int]]:
        """The spans queued since the last call (the event loop's thread only)."""
        out, self.stats.unwatched = self.stats.unwatched, []
        return out

    def take_drops(self) -> list[NativeDrop]:
        """The drops queued since the last call (the event loop's thread only)."""
        out, self.stats.drops = self.stats.drops, []
        return out
