"""Which containers of an image ran on this node, and when: the silent ones count too.

A window's ``evidenced`` posture is the weakest of the image's containers
(hotsymbols/window_units.py). A container that sent no event in the window
still ran the image's code there: a pod no policy selects, a pod whose
observe level asks for less, processes started before the policy was
applied, a native node without its probes. A function that ran only in it
was seen by nobody, so it counts at Passive, the lowest posture a running
container has (its processes' exec and exit are all the node's base sensor
could have shown of it; the agent cannot tell an idle traced container from
an untraced one in one window: over its UTC day, hotsymbols/day_calls.py).

The agent's lifecycle part (agent/lifecycle_part.py) gives this the
runtime's registry once a second (:meth:`ContainerRuns.update`): every
container with an image digest, its start and, once stopped, its stop. A
container that leaves the registry (removed) while it ran is taken as
stopped at that sample; one removed between two samples comes with the
next (``ContainerRegistry.removed_since``): it ran, even if no sample saw it.
The runs are kept :data:`RETAIN_NS` after their stop
(at most :data:`MAX_CONTAINERS`, the earliest stopped dropped first), so
windows of late events, and windows whose rows were written before the
image's digest was known, still meet every container that ran in them.

While the registry is not in sync (not yet after the agent started, or the
runtime is away) the agent cannot know which containers ran: ``known`` is
False and no window reads above ActiveTracing (window_units.py). Nor does,
once it is in sync again, a window that met that time (:meth:`unsure`): a
container that started and ended while the registry was not in sync, or
while the runtime's event stream was cut and listed again between two
samples (:meth:`hole`), is in no list. The first sync after the agent
started is not such a hole: the registry's start times reach back.

A container restarted under its id (Docker's ``--restart``, ``docker
restart``, a task started again) is one run from its first start: the
registry names only its latest start, and a window of its earlier run written
after the restart must still meet it. The time between its runs counts as
running too, which can only lower a window. That holds for a run removed and
created again under its id between two samples too (``ctr run --rm IMAGE
job`` twice); one created again with another image keeps the earlier run
apart, under a name no event's container has (it can only lower a window).

Containers are matched by the first 31 characters of their id, lower case:
Tetragon keeps 31 characters of a container id (``process.docker``) where the
runtime names it by 64. A window's image is also the image the registry gives
the containers that sent its events, so a silent container counts even when
Tetragon named the image by another digest than the runtime. Pure: no I/O, no clock (times are passed in).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stellaops_runtime.hotsymbols.run_windows import Run

ID_PREFIX = 31  # characters of a container id Tetragon keeps (lifecycle/lookup.py)
RETAIN_NS = 3600 * 1_000_000_000  # a stopped container's run is kept this long after its stop
MAX_CONTAINERS = 100_000  # runs kept at once
MAX_HOLES = 256  # times the registry could have missed a run, kept at once


def unit_id(container_id: str) -> str:
    """A container id as runs and window units compare it."""
    return container_id[:ID_PREFIX].lower()


class ContainerRuns:
    """The runs of this node's containers per image, from the runtime's registry."""

    __slots__ = ("_by_image", "_holes", "_last_known", "_runs", "known", "window_ns")

    def __init__(self, window_seconds: int) -> None:
        self.window_ns = window_seconds * 1_000_000_000
        # container (unit_id) -> (image, started ns (0: unknown), stopped ns (0: running))
        self._runs: dict[str, tuple[str, int, int]] = {}
        self._by_image: dict[str, list[tuple[str, int, int]]] = {}  # image -> [(unit, started, stopped)]
        self.known = False  # the registry was in sync at the latest sample
        self._last_known: int | None = None  # the latest sample in sync
        self._holes: list[list[int]] = []  # [from, to (0: still)] the registry could have missed a run

    def __len__(self) -> int:
        return len(self._runs)

    def hole(self, from_ns: int, to_ns: int) -> None:
        """The registry may have missed a container that ran between ``from_ns`` and ``to_ns``
        (its runtime's event stream was cut and listed again between two samples)."""
        if self._holes:
            last = self._holes[-1]
            if last[1] == 0 or last[1] >= from_ns:  # it meets the latest (open: still going)
                last[0] = min(last[0], from_ns)  # a run learnt of late reaches back before it
                if last[1]:
                    last[1] = max(last[1], to_ns)
                return
        self._holes.append([from_ns, to_ns])
        if len(self._holes) > MAX_HOLES:  # bounded: the two oldest become one, wider
            first = self._holes.pop(0)
            self._holes[0][0] = first[0]

    def unsure(self, win: int) -> bool:
        """Whether the window starting at ``win`` meets a time the registry could have missed a run."""
        end = win + self.window_ns
        return any(a < end and (b == 0 or b > win) for a, b in self._holes)

    def update(self, now_ns: int, known: bool, runs: Iterable[Run]) -> None:
        """One sample of the registry (``known``: in sync, so ``runs`` is every container)."""
        was = self.known
        self.known = known
        if not known:
            if was and self._last_known is not None:
                self.hole(self._last_known, now_ns)  # open from the latest sample in sync
                self._holes[-1][1] = 0
            return  # what ran meanwhile is not known: kept as it was
        if self._holes and self._holes[-1][1] == 0:
            self._holes[-1][1] = now_ns  # listed again: what runs now is known
        self._last_known = now_ns
        self._holes = [h for h in self._holes if h[1] == 0 or now_ns - h[1] <= RETAIN_NS]
        current: dict[str, tuple[str, int, int]] = {}
        for r in runs:
            if r.image and r.container_id:
                unit = unit_id(r.container_id)
                started = r.started_ns
                # an earlier run under its id: this sample's (removed, then created again) or the last's
                prev = current.get(unit) or self._runs.get(unit)
                if prev is not None and prev[0] == r.image:
                    started = min(started, prev[1])  # restarted under its id: its earlier run is kept
                elif unit in current:  # the id again, another image: the earlier run kept apart
                    current[f"{unit}@{prev[0] if prev else ''}"] = current[unit]
                current[unit] = (r.image, started, 0 if r.running else r.stopped_ns)
        for unit, (image, started, stopped) in self._runs.items():
            if unit not in current and now_ns - (stopped or now_ns) <= RETAIN_NS:
                current[unit] = (image, started, stopped or now_ns)  # left the registry: stopped by now
        if len(current) > MAX_CONTAINERS:  # bounded: the earliest stopped go first
            gone = sorted((s, u) for u, (_, _, s) in current.items() if s)
            for _, unit in gone[: len(current) - MAX_CONTAINERS]:
                del current[unit]
        self._runs = current
        by_image: dict[str, list[tuple[str, int, int]]] = {}
        for unit, (image, started, stopped) in current.items():
            by_image.setdefault(image, []).append((unit, started, stopped))
        self._by_image = by_image

    def silent(self, image: str, win: int, units: Iterable[str]) -> bool:
        """Whether a container of ``image`` ran in the window starting at ``win`` without being one of
        ``units`` (the containers that sent its events, by id). The image is also the one the
        registry gives those containers, when the events named it otherwise (another digest)."""
        return bool(self.ran_silent(image, win, units))

    def ran_silent(self, image: str, win: int, units: Iterable[str]) -> list[str]:
        """The containers (:func:`unit_id`) of :meth:`silent`, in the registry's order."""
        seen = {unit_id(u) for u in units}
        images = {image}
        for u in seen:
            run = self._runs.get(u)
            if run is not None:
                images.add(run[0])
        end = win + self.window_ns
        out = []
        for img in images:
            for unit, started, stopped in self._by_image.get(img, ()):
                if started >= end or (stopped and stopped <= win):
                    continue  # not running in the window
                if unit not in seen:
                    out.append(unit)
        return out
