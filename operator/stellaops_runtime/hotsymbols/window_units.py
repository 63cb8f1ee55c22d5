"""Which containers of an image a window's posture rests on: the weakest of them.

A window is one image on one node, and a "not observed" over it is a claim
about every process of that image there. Several containers of one image may
run on a node under different policies: one pod's syscall probes with user
stacks (EbpfDeep) say nothing about a second pod of the image traced without
stacks (ActiveTracing), by uprobes only, or by no policy at all (its exec
events only: Passive). A function that ran only in the second pod is on none
of the first pod's stacks, so the window must not read as able to see it.

So besides the highest posture of its events (``posture``, what was shown at
all), each window gets ``evidenced``: the lowest, over the containers of the
image that sent events in the window, of the highest posture each one's events
showed (hotsymbols/window_counts.py). It is cumulative over the drains of the
window: the agent keeps each window's containers for :data:`KEEP_DRAINS` drains
after its last event, and every drain emits the value over all of them, so the
last row written for a window (the store keeps the latest, store/pg_write.py)
holds every container that sent it events, whatever the flush timing. A window
whose containers were dropped and that gets events again (events more than
``KEEP_DRAINS`` drains apart) reads at most ActiveTracing: the containers
seen before are not known any more.

A second agent writing a window of the same node (one restarted inside the
window) replaces the value with the containers it knows (but not the
unwatched-container mark: the store keeps that until a restate row, which
the marking agent writes when the container's calls come, store/marks.py): a container that
sent events only to the first agent counts at Passive while the registry
still holds it, and not at all once it left. The windows whose containers
were dropped are remembered per (image, node) for :data:`MAX_PRUNED_IMAGES`
pairs, then forgotten together.

A container of the image that ran in the window and sent it no event counts
too, at Passive (hotsymbols/container_runs.py); and a container that showed
no call all that UTC day on the node while another container of the image
did makes the value of the first window it ran in None, judged over the day
(:meth:`WindowUnits.value`, hotsymbols/day_calls.py). The agent's lifecycle part
knows from the runtime's registry which containers ran when. A container
known only after the window's rows were written (the registry synced late,
its image digest learnt later) lowers a kept window in a later drain: the
window's value is written again then (:meth:`WindowUnits.restated`, a row
with no events that carries only ``evidenced``). While the registry is not in
sync no window reads above ActiveTracing; so too for an agent whose
``lifecycle.enabled: auto`` found no runtime socket (its registry is never in
sync: agent/lifecycle_part.py ``UnseenContainers``). With ``enabled: false``
(the operator's choice) there are no runs: the windows rest on the containers
that sent events.

Containers are told apart by their runtime id; host processes (no container)
are one, and their windows (image ``host:<node>``) meet no silent container.
Events that name an image but no container id count as one container, which
the registry's containers of the image do not match. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from stellaops_runtime.contracts.posture import LEGACY_TRUSTED, Posture
from stellaops_runtime.hotsymbols.day_calls import DayCalls

if TYPE_CHECKING:
    from stellaops_runtime.hotsymbols.container_runs import ContainerRuns

KEEP_DRAINS = 12  # drains a window's containers are kept after its last event (2 min at 10 s flushes)
MAX_PRUNED_IMAGES = 100_000  # (image, node) pairs whose dropped windows are remembered
_PASSIVE = Posture.PASSIVE.rank
# The image of host processes' events (hotsymbols/aggregate.py): no container, so none silent. Every
# other window is a container's, even when its events named no container id (a pod's without one):
# then any running container of the image may be the silent one.
HOST_IMAGE = "host:"


class WindowUnits:
    """The highest posture rank per container per (image, node, window), kept across drains."""

    __slots__ = ("_idle", "_pruned_upto", "_said", "_units", "days")

    def __init__(self, started_ns: int | None = None) -> None:
        self._units: dict[tuple[str, str, int], dict[str, int]] = {}
        self._idle: dict[tuple[str, str, int], int] = {}  # drains since the window's last event
        # (image, node) -> the latest window start whose containers were dropped
        self._pruned_upto: dict[tuple[str, str], int] = {}
        self._said: dict[tuple[str, str, int], int] = {}  # the rank last written for each window
        self.days = DayCalls(started_ns)  # each container judged over its UTC day (hotsymbols/day_calls.py)

    def __len__(self) -> int:
        return len(self._units)

    def note(self, image: str, node: str, win: int, unit: str, level: int) -> None:
        """One event of container ``unit`` of ``image`` in the window, at posture rank ``level``."""
        key = (image, node, win)
        units = self._units.get(key)
        if units is None:
            units = self._units[key] = {}
        have = units.get(unit)
        self._idle[key] = 0
        if have is None or level > have:  # a repeat at the same level has told its day already
            units[unit] = level
            self.days.note(image, node, win, unit, level)

    def weakest(
        self, image: str, node: str, win: int, default: int, runs: ContainerRuns | None = None
    ) -> int:
        """The lowest of the window's containers' highest ranks (``default`` when none is known),
        at most ActiveTracing for a window some of whose containers were dropped; with the node's
        container ``runs``, at most Passive when a container of the image ran in the window without
        sending it an event, and at most ActiveTracing while the registry is not in sync or for a
        window that met a time it was not (container_runs.py ``unsure``)."""
        units = self._units.get((image, node, win))
        rank = min(units.values()) if units else default
        pruned = self._pruned_upto.get((image, node))
        if pruned is not None and win <= pruned:
            rank = min(rank, LEGACY_TRUSTED.rank)
        if runs is not None and rank > _PASSIVE and not image.startswith(HOST_IMAGE):
            if not runs.known or runs.unsure(win):
                rank = min(rank, LEGACY_TRUSTED.rank)
            if runs.silent(image, win, units or ()):
                rank = _PASSIVE
        return rank

    def value(self, image: str, node: str, win: int, default: int, runs: ContainerRuns | None = None) -> int:
        """The window's ``evidenced`` rank to write: :meth:`weakest`, or None's (0) in the first window
        of a container that ran in it (sent it events, or ran silent) and showed no call that UTC
        day while another container of the image there did (hotsymbols/day_calls.py)."""
        rank = self.weakest(image, node, win, default, runs)
        ran = set(self._units.get((image, node, win), ()))
        if runs is not None and not image.startswith(HOST_IMAGE):
            ran.update(runs.ran_silent(image, win, ran))
        return self.days.judge(image, node, win, rank, ran)

    def written(self, image: str, node: str, win: int, rank: int) -> None:
        """The window's row was written with ``rank`` (restated() compares with it)."""
        key = (image, node, win)
        if key in self._units:
            self._said[key] = rank

    def restated(
        self, runs: ContainerRuns | None, written: set[tuple[str, str, int]]
    ) -> Iterator[tuple[str, str, int, int]]:
        """(image, node, window, rank) of every kept window not in ``written`` whose value changed
        since its last row (the registry learnt of a container that ran in it, or synced), and of
        every window a container's calls later that day marked or cleared (day_calls.py), a window
        in ``written`` too when its mark went: with the value its row this drain carries (the store
        keeps a mark against a row with events, store/marks.py)."""
        done = set(written)
        if runs is not None:
            for key, said in self._said.items():
                if key in written or self.days.forgot(key[2]):  # a forgotten day keeps what was written
                    continue
                rank = self.value(*key, said, runs)
                if rank != said:
                    self._said[key] = rank
                    done.add(key)
                    yield (*key, rank)
        for image, node, win, rank in self.days.restated(done, written):
            key = (image, node, win)
            if key in written:  # its mark went on the row this drain wrote: a restate row says so
                yield image, node, win, self._said.get(key, rank)
                continue
            if key in self._said:
                self._said[key] = rank
            yield image, node, win, rank

    def age(self) -> None:
        """One drain more: drop the windows without an event in the last :data:`KEEP_DRAINS` drains."""
        old = []
        for key, n in self._idle.items():
            if n >= KEEP_DRAINS:
                old.append(key)
            else:
                self._idle[key] = n + 1
        self.days.prune()
        if not old:
            return
        if len(self._pruned_upto) > MAX_PRUNED_IMAGES:  # bounded (module docstring)
            self._pruned_upto.clear()
        for key in old:
            del self._idle[key]
            del self._units[key]
            self._said.pop(key, None)
            image, node, win = key
            if win > self._pruned_upto.get((image, node), -1):
                self._pruned_upto[(image, node)] = win
