"""Observation windows from the container lifecycle: an image ran here while the source was watching.

"Observed for 30 days, never called" rests on knowing that the image was
under observation, and an image whose functions were never called may send
no event at all. The hot-symbol aggregator only opens a window for images
that produced events; this module adds one for every image whose container
ran on this node during a window (the lifecycle registry says so), with no
events (``event_count`` 0).

A window gets such a row only when the whole window was watched: the agent
was running, its event source connected and the runtime's registry in sync
from the window's first instant to its last (sampled by :meth:`tick`; a
source or runtime reconnect between two samples breaks the watch). A window
in which the agent started or stopped, or the source or runtime was away for
any moment, gets none: no "not observed" may rest on it.

The row's posture is Passive, always. That the image ran here while the
source was connected says its processes' exec and exit would have been seen
(Tetragon's base sensor and the native exec probe see every process of the
node), nothing more: which probes selected the image's pods (a policy's
podSelector, the pod's observe level) the agent cannot tell from the
runtime, and another image's syscall or uprobe events on this node say
nothing about this one. So a lifecycle row never backs a "not observed" for
a function on its own (``query observed`` answers unknown, "only at posture
Passive"); merged with the image's own events of the window (``merged``
keeps the higher posture) it changes nothing of theirs. An earlier version
took the highest posture of *any* image's events on the node, which would
have said "not observed" about images no policy traced.
The other side: while the runtime's registry is in sync but the event source
is away (a Tetragon outage, the agent started before Tetragon was reachable),
every image the registry says ran gets a *gap* in each window it ran in
(source ``none``, over the part of the window between the last watched sample
and now), so a question about that image meets the time it ran here
unwatched, even when it sent no event that day on this node and another node
watched it throughout. The agent's first sample starts no such span: the time
before an agent started is the watch record's (agent/watch_record.py).

The samples' times are the wall clock's, which may step. A sample behind the
last one (the clock stepped back; with ``boot_ns``, the boot clock's measure
of the time between them disagreeing by more than :data:`STEP_SLACK_NS`)
breaks the watch, keeps the windows that were whole before it (emitted at
the next drain) and goes on from the new clock: images running while the
source is away get their gaps over the time since the last sample on the new
clock (with ``boot_ns``; without it from that sample on), never nothing until
the clock is back where it was. A step forward (an RTC reset to the past, set
right by NTP) marks the time between two samples on each side of the jump,
not every window of the years it skipped (nothing ran at those times); a jump
without the boot clock to measure it marks the latest :data:`MAX_WINDOWS`
windows (``stats.capped``).

Its source is the sources of the node's events in the window (the
aggregator's own when none). Rows are held until the window ended and a
settle time passed, so that the window's events (which reach the aggregator
with some delay) are merged first. Gaps (hotsymbols/gaps.py) still cut these windows in the
store. Pure: no I/O, no clock (times are passed in).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stellaops_runtime.contracts.hotsymbols import NODE_WIDE, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.container_runs import ContainerRuns

UNWATCHED_SOURCE = "none"  # the source of an unwatched span's gap, as hotsymbols/gaps.py names it
SETTLE_NS = 5_000_000_000  # a window's rows wait this long after its end for its events
MAX_WINDOWS = 10_000  # windows held at once (a stuck drain must not grow memory without bound)
STEP_SLACK_NS = 10_000_000  # wall and boot clock may disagree by this between samples before a step is seen


@dataclass(frozen=True, slots=True)
class Run:
    """One container's run as the registry knows it (times in ns since the epoch; 0 = unknown)."""

    image: str
    started_ns: int
    stopped_ns: int  # 0 while running
    running: bool
    container_id: str = ""  # the runtime's id (hotsymbols/container_runs.py)


@dataclass(slots=True)
class RunWindowStats:
    rows: int = 0  # lifecycle window rows emitted
    broken: int = 0  # watches broken (source or runtime away, or a reconnect between samples)
    discarded: int = 0  # windows dropped because a watch broke inside them
    unwatched: int = 0  # image gap rows emitted: the image ran while the source was away
    capped: int = 0  # unwatched spans longer than MAX_WINDOWS windows, marked over the latest ones


class RunWindows:
    """Windows in which images ran while watched; see the module docstring."""

    def __init__(self, *, window_seconds: int, node_name: str, settle_ns: int = SETTLE_NS) -> None:
        self._wn = window_seconds * 1_000_000_000
        self._window_seconds = window_seconds
        self._node = node_name
        self._settle = settle_ns
        self._since: int | None = None  # start of the current unbroken watch
        self._last = 0  # time of the latest sample
        self._last_boot: int | None = None  # ... on the boot clock (when the caller gives it)
        self._whole: set[int] = set()  # windows watched whole before the clock stepped back: ready
        self._ran: dict[int, set[str]] = {}  # window start -> images that ran in it (this watch)
        self._sources: dict[int, set[str]] = {}  # window start -> sources of this node's events
        # (image, window start) -> [first, last] ns an image ran while the source was away
        self._unwatched: dict[tuple[str, int], list[int]] = {}
        self.stats = RunWindowStats()
        # Set when the agent stops (its queue processed): the last whole windows need not settle.
        self.final = False
        # Every container's run, events or not: a silent one lowers its image's windows.
        self.containers = ContainerRuns(window_seconds)

    @property
    def held(self) -> int:
        """Windows held, not yet emitted."""
        return len(self._ran)

    @property
    def watching(self) -> bool:
        return self._since is not None

    def tick(
        self,
        now_ns: int,
        watching: bool,
        runs: Iterable[Run],
        runtime_known: bool = False,
        boot_ns: int | None = None,
    ) -> None:
        """A sample: is everything watching (and has it been since the last sample), and what runs.

        ``runtime_known``: not watching, but the registry is in sync (the source is what is away),
        so ``runs`` says which images ran unwatched since the last sample. ``boot_ns``: the boot
        clock at the sample (CLOCK_BOOTTIME), which measures the time since the last one whatever
        the wall clock did.
        """
        runs = list(runs)
        self.containers.update(now_ns, watching or runtime_known, runs)
        prev, prev_boot = self._last, self._last_boot
        self._last_boot = boot_ns
        if prev and (now_ns < prev or _stepped_back(now_ns - prev, prev_boot, boot_ns)):
            self._stepped_back(prev, now_ns, watching, runs, runtime_known, prev_boot, boot_ns)
            return
        self._last = max(self._last, now_ns)
        if not watching and runtime_known and prev:
            for a, b in _between(prev, now_ns, prev_boot, boot_ns):
                self._note_unwatched(a, b, runs)
        if not watching:
            if self._since is not None:  # windows that ended by the last watched sample stay whole
                self.stats.broken += 1
                for w in [w for w in self._ran if w + self._wn > prev]:
                    del self._ran[w]
                    self.stats.discarded += 1
            self._since = None
            return
        if self._since is None or now_ns <= prev:
            if self._since is None:
                self._since = now_ns
            return
        wn = self._wn
        if now_ns - prev > 2 * wn:  # a sample missed for more than a window: a stalled loop, not a watch
            self._since = now_ns
            return
        first_whole = self._since - self._since % wn + (wn if self._since % wn else 0)
        for r in runs:
            if not r.image:
                continue
            start = max(prev, r.started_ns)
            end = now_ns if r.running else min(now_ns, r.stopped_ns)
            if end < start or (end <= prev and not r.running):
                continue
            first = start - start % wn
            last = end - end % wn
            if end > start and end == last:  # ends exactly on a boundary: not the next window
                last -= wn
            w = max(first_whole, first)
            while w <= last:
                if len(self._ran) >= MAX_WINDOWS and w not in self._ran:
                    break
                self._ran.setdefault(w, set()).add(r.image)
                w += wn

    def _stepped_back(
        self,
        prev: int,
        now_ns: int,
        watching: bool,
        runs: Iterable[Run],
        runtime_known: bool,
        prev_boot: int | None,
        boot_ns: int | None,
    ) -> None:
        """The wall clock stepped back since the last sample (see the module docstring)."""
        self._last = now_ns
        if not watching and runtime_known:
            since = (
                now_ns - max(0, boot_ns - prev_boot)
                if boot_ns is not None and prev_boot is not None
                else now_ns
            )
            self._note_unwatched(since, now_ns, runs)
        if self._since is not None:  # the watch breaks; the windows whole before the step are kept
            self.stats.broken += 1
            for w in list(self._ran):
                if w + self._wn > prev:
                    del self._ran[w]
                    self.stats.discarded += 1
                else:
                    self._whole.add(w)
        self._since = now_ns if watching else None

    def _note_unwatched(self, prev: int, now_ns: int, runs: Iterable[Run]) -> None:
        """Each image that ran between the last sample and now, while the source was away (the latest
        ``MAX_WINDOWS`` windows of a longer span: a clock jump without the boot clock to measure it)."""
        wn = self._wn
        if now_ns - prev > MAX_WINDOWS * wn:
            self.stats.capped += 1
            prev = now_ns - MAX_WINDOWS * wn
        for r in runs:
            if not r.image or r.image == NODE_WIDE:
                continue
            start = max(prev, r.started_ns)
            end = now_ns if r.running else min(now_ns, r.stopped_ns)
            if end < start:
                continue
            w = start - start % wn
            last = end - end % wn
            if end > start and end == last:  # ends exactly on a boundary: not the next window
                last -= wn
            while w <= last:
                key = (r.image, w)
                span = self._unwatched.get(key)
                lo, hi = max(start, w, 1), min(end, w + wn)
                if span is not None:
                    span[0], span[1] = min(span[0], lo), max(span[1], hi)
                elif len(self._unwatched) < MAX_WINDOWS:
                    self._unwatched[key] = [lo, hi]
                else:  # past the bound: the node-wide gap of the window (one per window), never none
                    span = self._unwatched.setdefault((NODE_WIDE, w), [lo, hi])
                    span[0], span[1] = min(span[0], lo), max(span[1], hi)
                w += wn

    def drain(self, windows: list[ObservationWindow], source: str) -> list[ObservationWindow]:
        """``windows`` (the aggregator's) with the rows of every settled, wholly watched window merged in,
        and the gaps of images that ran while the source was away."""
        node = self._node
        for o in windows:
            if o.node_name == node and o.event_count > 0 and o.source:
                self._sources.setdefault(o.window_start_ns, set()).update(o.source.split(","))
        settle = 0 if self.final else self._settle
        ready = [w for w in self._ran if w + self._wn + settle <= self._last or w in self._whole]
        self._whole.difference_update(ready)
        if not ready and not self._unwatched:
            self._prune()
            return windows
        out: dict[tuple[str, str, int], ObservationWindow] = {
            (o.image_digest, o.node_name, o.window_start_ns): o for o in windows
        }
        unwatched, self._unwatched = self._unwatched, {}
        for (image, w), (lo, hi) in sorted(unwatched.items()):
            gap = ObservationWindow(
                image,
                node,
                w,
                0,
                None,
                self._window_seconds,
                UNWATCHED_SOURCE,
                gap_start_ns=lo,
                gap_end_ns=hi,
            )
            self.stats.unwatched += 1
            k = (image, node, w)
            have = out.get(k)
            out[k] = gap if have is None else have.merged(gap)
        for w in sorted(ready):
            src = ",".join(sorted(self._sources.get(w, ()))) or source
            for image in sorted(self._ran.pop(w)):
                if image == NODE_WIDE:
                    continue
                row = ObservationWindow(image, node, w, 0, Posture.PASSIVE, self._window_seconds, src)
                self.stats.rows += 1
                k = (image, node, w)
                have = out.get(k)
                out[k] = row if have is None else have.merged(row)
        self._prune()
        return list(out.values())

    def _prune(self) -> None:
        """Forget the sources of windows no pending row can need."""
        current = self._last - self._last % self._wn
        keep_from = min(min(self._ran, default=current), current) - self._wn
        for w in [w for w in self._sources if w < keep_from]:
            del self._sources[w]


def _stepped_back(wall_elapsed: int, prev_boot: int | None, boot_ns: int | None) -> bool:
    """The wall clock moved less than the boot clock between two samples, by more than the slack."""
    if prev_boot is None or boot_ns is None:
        return False
    return wall_elapsed < (boot_ns - prev_boot) - STEP_SLACK_NS


def _between(prev: int, now: int, prev_boot: int | None, boot_ns: int | None) -> list[tuple[int, int]]:
    """The wall-clock spans of the time between two samples: both clocks' sides when the wall clock
    stepped forward by more than the slack (the span it skipped held no moment anything ran)."""
    if prev_boot is None or boot_ns is None or now - prev <= boot_ns - prev_boot + STEP_SLACK_NS:
        return [(prev, now)]
    real = max(0, boot_ns - prev_boot)
    return [(prev, prev + real), (now - real, now)]
