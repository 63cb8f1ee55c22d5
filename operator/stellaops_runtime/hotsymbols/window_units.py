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
window) replaces the value with the containers it saw itself: a container
seen only by the first agent is not counted. The windows whose containers
were dropped are remembered per (image, node) for :data:`MAX_PRUNED_IMAGES`
pairs, then forgotten together.

Containers are told apart by their runtime id; host processes (no container)
are one. Pure: no I/O, no clock.
"""

from __future__ import annotations

from stellaops_runtime.contracts.posture import LEGACY_TRUSTED

KEEP_DRAINS = 12  # drains a window's containers are kept after its last event (2 min at 10 s flushes)
MAX_PRUNED_IMAGES = 100_000  # (image, node) pairs whose dropped windows are remembered


class WindowUnits:
    """The highest posture rank per container per (image, node, window), kept across drains."""

    __slots__ = ("_idle", "_pruned_upto", "_units")

    def __init__(self) -> None:
        self._units: dict[tuple[str, str, int], dict[str, int]] = {}
        self._idle: dict[tuple[str, str, int], int] = {}  # drains since the window's last event
        # (image, node) -> the latest window start whose containers were dropped
        self._pruned_upto: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self._units)

    def note(self, image: str, node: str, win: int, unit: str, level: int) -> None:
        """One event of container ``unit`` of ``image`` in the window, at posture rank ``level``."""
        key = (image, node, win)
        units = self._units.get(key)
        if units is None:
            units = self._units[key] = {}
        have = units.get(unit)
        if have is None or level > have:
            units[unit] = level
        self._idle[key] = 0

    def weakest(self, image: str, node: str, win: int, default: int) -> int:
        """The lowest of the window's containers' highest ranks (``default`` when none is known),
        at most ActiveTracing for a window some of whose containers were dropped."""
        units = self._units.get((image, node, win))
        rank = min(units.values()) if units else default
        pruned = self._pruned_upto.get((image, node))
        if pruned is not None and win <= pruned:
            rank = min(rank, LEGACY_TRUSTED.rank)
        return rank

    def age(self) -> None:
        """One drain more: drop the windows without an event in the last :data:`KEEP_DRAINS` drains."""
        old = []
        for key, n in self._idle.items():
            if n >= KEEP_DRAINS:
                old.append(key)
            else:
                self._idle[key] = n + 1
        if not old:
            return
        if len(self._pruned_upto) > MAX_PRUNED_IMAGES:  # bounded (module docstring)
            self._pruned_upto.clear()
        for key in old:
            del self._idle[key]
            del self._units[key]
            image, node, win = key
            if win > self._pruned_upto.get((image, node), -1):
                self._pruned_upto[(image, node)] = win
