"""Observation gaps: the windows in which Tetragon told us it did not deliver events.

A "not observed" answer must never cover a period in which Tetragon dropped
the very events that would have said otherwise (issue 10). Tetragon says so
itself (contracts/drops.py), and this module turns what it says into gaps
on the observation windows of the images affected:

- a **throttle** (``process_throttle``) names a cgroup. Its container ID (the
  64- or 31-hex-digit run in ``cri-containerd-<id>.scope``, ``docker-<id>.scope``,
  ``crio-<id>.scope`` or a bare ``<id>``) is looked up among the containers
  this agent has seen events from, giving the image (and pod, for metrics).
  A cgroup without a container ID (``session-4.scope``, ``system.slice``) is
  a host cgroup: the image ``host:<node>``. A container ID never seen is an
  unknown image, so the gap is node-wide. The gap runs from THROTTLE_START
  to THROTTLE_STOP; while no STOP has been seen it extends to the end of the
  latest window the agent has seen (events or signals), drain after drain. A
  STOP without a START (the agent started mid-throttle, or the START was lost
  in an outage) runs from the earliest event the agent saw: the throttle was on
  since before it could have seen it start. One stamped before its START (the
  wall clock stepped back in between), or before any event, marks its own
  window up to the STOP.
- the agent's **own drops** (its receive queue was full, :meth:`GapTracker.own_drop`)
  are events nobody counted, anyone's on the node: a node-wide gap, in wall
  clock over the drops and in event time around them;
- a **source switch** (agent/source_switch.py: Tetragon went away and the
  agent's own BCC probes took over, or back) leaves a time no source
  observed: :meth:`GapTracker.source_gap` marks it node-wide, with the source
  ``none``;
- the agent's **own BCC probes' drops** (native/drop_counters.py: events a
  probe's rate limit, sampling or full ring/perf buffer kept from us, and runs
  the kernel skipped as recursion) are anyone's on this node:
  :meth:`GapTracker.native_drop` marks a node-wide gap over the time between
  the two counter reads that saw them, carrying the number dropped;
- a pod of the image that ran **unwatched** (opted out, outside
  ``privacy.allowedNamespaces``, or selected by no native policy): its events
  are dropped unseen, and :meth:`GapTracker.opted_out`,
  :meth:`GapTracker.not_allowed` and :meth:`GapTracker.not_selected` mark the
  image's whole window in which one was dropped (sources ``opted_out``,
  ``not_allowed``, ``not_selected``; hotsymbols/unwatched_windows.py), so that
  no "not observed" about the image rests on a time one of its pods ran
  unwatched. Only the image, node and window are kept;
- a **rate-limit report** (``rate_limit_info``) has no pod: the events lost
  are anyone's on that node, in the minute before the report. It is a
  node-wide gap (image :data:`~stellaops_runtime.contracts.hotsymbols.NODE_WIDE`),
  which the store applies to every image observed on that node in those windows.

Gaps are emitted as :class:`ObservationWindow` rows (no events, gap fields
set) merged into the aggregator's rows at drain, so they travel with the
counts, through the outage buffer, into ``observation_windows``. Pure: no I/O,
no clock (times come from the events and signals). How a span becomes window rows
(and day rows past :data:`MAX_GAP_WINDOWS`), and how marks join the drained rows, is
hotsymbols/gap_windows.py.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from stellaops_runtime.contracts.drops import RATE_LIMIT_REPORT_NS, DropKind, DropSignal
from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE, ObservationWindow
from stellaops_runtime.hotsymbols.gap_windows import mark_span, merge_marks
from stellaops_runtime.hotsymbols.unwatched_windows import (
    MAX_OPTED_WINDOWS,
    NOT_ALLOWED_SOURCE,
    NOT_SELECTED_SOURCE,
    OPTED_OUT_SOURCE,
    UnwatchedWindows,
)

# Tetragon keeps 31 characters of a container ID when BPF truncated the cgroup name
# (procevents.BpfContainerIdLength); IDs are compared on that prefix.
ID_PREFIX = 31
_CONTAINER_ID = re.compile(r"[0-9a-f]{31,64}")
# A gap spanning more windows than this marks only its first and latest ones, half each (clock
# trouble: a throttle started in 1970, an outage across a jump of years; only its ends held real time),
# and between them one row a UTC day, whose gap spans the day (an agent down for weeks with 10 s
# windows: every day of the hole stays a gap day, never "watched, no gap"), up to MAX_GAP_DAYS days;
# the halves shrink by the day rows, so a gap is never more than MAX_GAP_WINDOWS rows.
MAX_GAP_WINDOWS = 100_000
MAX_GAP_DAYS = 1_000  # past ~3 years of days only clock trouble remains: the rest goes unmarked
MAX_NODES = 1_000
SWITCH_GAP_SOURCE = "none"  # the source of a gap no source observed (source_gap)
_NO_TIME = 1 << 63  # above every event time


def container_id_of_cgroup(cgroup: str) -> str:
    """The container ID prefix a cgroup name holds ("" for a host cgroup)."""
    name = cgroup.rstrip("/").rsplit("/", 1)[-1].lower()
    m = _CONTAINER_ID.search(name)
    return m.group(0)[:ID_PREFIX] if m else ""


@dataclass(frozen=True, slots=True)
class _Container:
    image: str
    namespace: str
    pod: str


@dataclass(slots=True)
class _Open:
    """A throttle seen starting and not yet stopping."""

    image: str
    marked_from_ns: int  # the gap is marked up to here already
    started_ns: int = 0  # the START's time


@dataclass(slots=True)
class GapStats:
    """Counters for the agent's /metrics (agent/metrics.py)."""

    # (node, namespace, pod, type start|stop) -> throttle signals; pod "" when unresolved or host
    throttles: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    rate_limit_reports: Counter[str] = field(default_factory=Counter)  # node -> rate_limit_info events
    rate_limit_dropped: Counter[str] = field(default_factory=Counter)  # node -> events Tetragon dropped
    gap_windows: Counter[str] = field(default_factory=Counter)  # image | node -> window rows marked
    own_dropped: Counter[str] = field(default_factory=Counter)  # node -> events our own queue dropped
    native_dropped: Counter[str] = field(default_factory=Counter)  # node -> events our BCC probes dropped
    capped: int = 0  # throttles longer than MAX_GAP_WINDOWS windows
    opted_out: Counter[str] = field(default_factory=Counter)  # node -> opted-out events marked as gaps
    not_allowed: Counter[str] = field(default_factory=Counter)  # node -> allowlist drops marked as gaps
    not_selected: Counter[str] = field(default_factory=Counter)  # node -> native selection drops as gaps


class GapTracker:
    """Turns drop signals into gap rows (see the module docstring)."""

    def __init__(
        self, *, window_seconds: int, source: str = "tetragon", max_containers: int = 50_000
    ) -> None:
        self._window_ns = window_seconds * 1_000_000_000
        self._window_seconds = window_seconds
        self.source = source  # of the rows marked (the agent's source switch sets the active one)
        self._max_containers = max_containers
        self._containers: dict[str, _Container] = {}
        self._open: dict[tuple[str, str], _Open] = {}  # (node, cgroup) -> throttle
        self._marks: dict[tuple[str, str, int], ObservationWindow] = {}
        self._latest_ns = 0
        self._seen_max_ns = 0  # the latest event time seen (own drops are placed against it)
        self._seen_min_ns = 0  # the earliest (a STOP whose START was never seen runs from it)
        self._batch_min_ns = _NO_TIME  # the earliest event time seen since the last batch closed
        self._own_pending: tuple[int, int] | None = None  # (count, from event time)
        # Nodes whose events this agent received (one in a DaemonSet; a replayed stream has more):
        # a dropped event could have been any of theirs.
        self._nodes: set[str] = set()
        self.stats = GapStats()
        st = (
            self.stats
        )  # the windows a pod of an image ran unwatched in (read at construction: a test lowers it)
        self._pods_unwatched = UnwatchedWindows(
            self._window_ns, limit=MAX_OPTED_WINDOWS, mark=self._mark_source,
            counts={OPTED_OUT_SOURCE: st.opted_out, NOT_ALLOWED_SOURCE: st.not_allowed,
                    NOT_SELECTED_SOURCE: st.not_selected},
        )  # fmt: skip

    @property
    def open_throttles(self) -> Counter[str]:
        """Throttles started and not stopped, by node."""
        return Counter(node for node, _ in self._open)

    # -- learning containers from events ----------------------------------

    def note(self, ev: RuntimeCallEvent) -> None:
        """Remember which image (and pod) a container ID belongs to; cheap when already known."""
        ts = ev.timestamp_ns
        if ts > self._seen_max_ns:
            self._seen_max_ns = ts
        if ts < self._batch_min_ns:
            self._batch_min_ns = ts
            if ts and (ts < self._seen_min_ns or not self._seen_min_ns):
                self._seen_min_ns = ts
        if ev.node_name not in self._nodes and len(self._nodes) < MAX_NODES:
            self._nodes.add(ev.node_name)
        c = ev.container
        if c is None or not c.id:
            return
        key = c.id[:ID_PREFIX].lower()
        if key in self._containers:
            return
        if len(self._containers) >= self._max_containers:
            self._containers.pop(next(iter(self._containers)))  # the oldest first
        pod = ev.pod
        self._containers[key] = _Container(
            ev.image_key, pod.namespace if pod else "", pod.name if pod else ""
        )

    # -- signals ------------------------------------------------------------

    def signal(self, s: DropSignal) -> None:
        """One drop signal (time and node already filled)."""
        ts, node = s.timestamp_ns, s.node_name
        self._latest_ns = max(self._latest_ns, ts)
        if s.kind is DropKind.RATE_LIMIT:
            self.stats.rate_limit_reports[node] += 1
            self.stats.rate_limit_dropped[node] += s.dropped
            self._mark(NODE_WIDE, node, max(0, ts - RATE_LIMIT_REPORT_NS), ts, dropped=s.dropped)
            return
        image, namespace, pod = self._resolve(s.cgroup, node)
        kind = "start" if s.kind is DropKind.THROTTLE_START else "stop"
        self.stats.throttles[(node, namespace, pod, kind)] += 1
        key = (node, s.cgroup)
        have = self._open.get(key)
        if s.kind is DropKind.THROTTLE_START:
            self._mark(image, node, ts, ts, throttles=1)
            if have is None:
                self._open[key] = _Open(image, ts, ts)
            return
        if have is not None:
            del self._open[key]
            self._mark(have.image, node, have.marked_from_ns, ts)
            if ts >= have.started_ns:
                return
        # Stopped "before" it started (the wall clock stepped back in between: Tetragon stamps each
        # event as it sends it): its own window, up to the STOP. Started before we were watching (or
        # its START lost in an outage): on since the earliest event seen, at the latest.
        since = ts - ts % self._window_ns
        if have is None and 0 < self._seen_min_ns < since:
            since = self._seen_min_ns
        self._mark(have.image if have is not None else image, node, since, ts)

    def own_drop(
        self, node: str, first_ns: int, last_ns: int, count: int, *, event_span: tuple[int, int] | None = None
    ) -> None:
        """Our receive queue dropped ``count`` events from ``first_ns`` to ``last_ns`` (wall clock).

        Nobody counted them, and they could be anyone's: a node-wide gap on
        every node whose events this agent receives. It is marked over the wall-clock span of the drops
        (where a live stream's event times are) and, in event time, from the
        latest event seen before them to the latest seen in the next batch
        (:meth:`after_batch`), where a delayed or replayed stream's are; with no event seen
        before them, from the earliest event of that batch. A wall-clock span whose end came
        before its start (the clock stepped back between the drops) is marked in either order.
        ``event_span``: the dropped events' own (earliest, latest) times, when they were read (the
        shutdown deadline's drops, which no batch follows): the event-time span is closed at once,
        from the latest event seen before them (or the earliest dropped one) to the latest dropped.
        """
        first_ns, last_ns = min(first_ns, last_ns), max(first_ns, last_ns)
        self.stats.own_dropped[node] += count
        if not self._nodes:  # no event seen yet: the agent's own node
            self._nodes.add(node)
        for n in self._nodes:
            self._mark(NODE_WIDE, n, first_ns, last_ns)
        if self._own_pending is not None:  # two reports before a batch closed the first
            count += self._own_pending[0]
        start = self._own_pending[1] if self._own_pending is not None else self._seen_max_ns
        if event_span is None:
            self._own_pending = (count, start)
            return
        low, high = min(event_span), max(event_span)
        start = min(start, low) if start else low
        self._own_pending = None
        self._seen_max_ns = max(self._seen_max_ns, high)
        self._latest_ns = max(self._latest_ns, self._seen_max_ns)
        end = max(high + 1, self._seen_max_ns)  # + 1: the latest one's window even on its boundary
        for n in self._nodes:
            self._mark(NODE_WIDE, n, start, end, dropped=count)

    def after_batch(self) -> None:
        """A batch was processed: close the event-time span of drops reported before it."""
        low, self._batch_min_ns = self._batch_min_ns, _NO_TIME
        if self._own_pending is None:
            return
        count, start = self._own_pending
        if not start:  # no event seen before the drops: from the earliest one seen since
            if low == _NO_TIME:
                return  # none yet either: the next batch closes it
            start = low
        self._own_pending = None
        self._latest_ns = max(self._latest_ns, self._seen_max_ns)
        for n in self._nodes:  # each node's row: N events dropped, any of which could be its own
            self._mark(NODE_WIDE, n, start, max(start, self._seen_max_ns), dropped=count)

    def source_gap(self, node: str, start_ns: int, end_ns: int) -> None:
        """No source observed this node from ``start_ns`` to ``end_ns`` (wall clock): a node-wide gap."""
        self._mark(NODE_WIDE, node, start_ns, end_ns, source=SWITCH_GAP_SOURCE)

    def opted_out(self, image: str, node: str, ts_ns: int) -> None:
        """An opted-out pod's event was dropped: its image's window is a gap (unwatched_windows.py)."""
        self._pods_unwatched.opted_out(image, node, ts_ns)

    def not_allowed(self, image: str, node: str, ts_ns: int) -> None:
        """A pod's event outside ``privacy.allowedNamespaces`` was dropped: as :meth:`opted_out`."""
        self._pods_unwatched.not_allowed(image, node, ts_ns)

    def not_selected(self, image: str, node: str, ts_ns: int) -> None:
        """A probe event of a pod no native policy selects was dropped: as :meth:`opted_out`."""
        self._pods_unwatched.not_selected(image, node, ts_ns)

    def native_drop(self, node: str, start_ns: int, end_ns: int, count: int, source: str = "") -> None:
        """The node's own probes dropped ``count`` events between ``start_ns`` and ``end_ns`` (wall clock):
        a node-wide gap carrying the count (``source``: the probes' source name, else the active one)."""
        if count <= 0:
            return
        self.stats.native_dropped[node] += count
        a, b = min(start_ns, end_ns), max(start_ns, end_ns)  # the second read first: a clock step back
        self._mark(NODE_WIDE, node, a, b, dropped=count, source=source)

    def tetragon_drop(self, node: str, start_ns: int, end_ns: int, count: int) -> None:
        """Tetragon's own drop counters (sources/tetragon_metrics.py) rose by ``count`` between two
        scrapes at ``start_ns`` and ``end_ns`` (wall clock): a node-wide gap carrying the count."""
        if count <= 0:
            return
        a, b = min(start_ns, end_ns), max(start_ns, end_ns)  # the second scrape first: a clock step back
        self._mark(NODE_WIDE, node, a, b, dropped=count)

    def tetragon_unread(self, node: str, start_ns: int, end_ns: int) -> None:
        """Tetragon's drop counters could not be read from ``start_ns`` to ``end_ns`` (wall clock;
        sources/tetragon_metrics.py ``take_unknown``): what it lost then is unknown, a node-wide gap
        (of the source that watched, not an outage: its events came)."""
        a, b = min(start_ns, end_ns), max(start_ns, end_ns)
        self._mark(NODE_WIDE, node, a, b)

    def _resolve(self, cgroup: str, node: str) -> tuple[str, str, str]:
        """(image, namespace, pod) a throttled cgroup belongs to (see the module docstring)."""
        cid = container_id_of_cgroup(cgroup)
        if not cid:
            return f"host:{node}", "", ""
        c = self._containers.get(cid)
        if c is None:
            return NODE_WIDE, "", ""
        return c.image, c.namespace, c.pod

    # -- marking and draining -------------------------------------------------

    def _mark(
        self,
        image: str,
        node: str,
        start_ns: int,
        end_ns: int,
        *,
        throttles: int = 0,
        dropped: int = 0,
        source: str = "",
    ) -> None:
        """Mark [start_ns, end_ns] as a gap on every window it touches; counts go to the last one."""
        if mark_span(
            self._marks, image, node, start_ns, end_ns,
            window_seconds=self._window_seconds, source=source or self.source, throttles=throttles,
            dropped=dropped, max_windows=MAX_GAP_WINDOWS, max_days=MAX_GAP_DAYS,
        ):  # fmt: skip
            self.stats.capped += 1

    def _mark_source(self, image: str, node: str, start_ns: int, end_ns: int, source: str) -> None:
        """:meth:`_mark` with a source (UnwatchedWindows' marks)."""
        self._mark(image, node, start_ns, end_ns, source=source)

    def drain(self, windows: list[ObservationWindow]) -> list[ObservationWindow]:
        """The aggregator's windows with every gap marked since the last drain merged in.

        Open throttles are first extended to the end of the latest window seen
        (from ``windows`` and the signals), so an unfinished throttle is a gap
        in every window up to now.
        """
        self.after_batch()  # drops with no batch after them: up to the latest event seen
        self._pods_unwatched.take()
        wn = self._window_ns
        for w in windows:
            self._latest_ns = max(self._latest_ns, w.window_start_ns)
        if self._open and self._latest_ns:
            end = self._latest_ns - self._latest_ns % wn + wn
            for (node, _), t in self._open.items():
                if end > t.marked_from_ns:
                    self._mark(t.image, node, t.marked_from_ns, end)
                    t.marked_from_ns = end
        marks, self._marks = self._marks, {}
        if not marks:
            return windows
        for m in marks.values():
            self.stats.gap_windows["node" if m.image_digest == NODE_WIDE else "image"] += 1
        return merge_marks(windows, marks)
