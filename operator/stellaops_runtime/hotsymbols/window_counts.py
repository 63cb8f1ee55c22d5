"""Observation windows as the aggregator counts them: events, highest posture and sources per window.

Split from :mod:`stellaops_runtime.hotsymbols.aggregate`, which counts per
key; this module keeps the per-(image, node, window) bookkeeping that says an
image was under observation, at which posture, by which source. A "not
observed" answer rests on these rows, so their rules live in one place:

- a window's posture is the highest any of its events showed; what it
  evidences (``ObservationWindow.evidenced``) the lowest, over the image's
  containers that sent events in it, of the highest each one showed
  (hotsymbols/window_units.py), a silent running container of the image
  counting at Passive (hotsymbols/container_runs.py), and None in the first
  window of one that showed no call that UTC day while another did
  (hotsymbols/day_calls.py; lifecycle rows too: :meth:`WindowCounts.quiet`);
- its ``source`` is the sources of its events (``tetragon`` for both Tetragon
  transports, ``bcc`` for the agent's own probes), comma-joined and sorted
  when the agent switched sources inside it; an event naming no source
  counts under the aggregator's own.

Each window is one list ``[event count, posture rank, source(s)]`` that the
fast path (agent/fastpath.py) may hold and count into until the next drain.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import ORDER, Posture
from stellaops_runtime.hotsymbols.day_calls import UNWATCHED
from stellaops_runtime.hotsymbols.window_units import WindowUnits

if TYPE_CHECKING:
    from stellaops_runtime.hotsymbols.run_windows import RunWindows

# An event's source (RuntimeCallEvent.source) as observation windows name it.
WINDOW_SOURCE = {"tetragon-grpc": "tetragon", "tetragon-export": "tetragon", "bcc": "bcc"}


def window_source(raw: str, default: str) -> str:
    """The ``source`` of a window from its events' sources (comma-joined when several), sorted."""
    return ",".join(sorted({WINDOW_SOURCE.get(p, p) or default for p in raw.split(",")}))


def _joined_sources(have: str, other: str) -> str:
    return ",".join(sorted(set(have.split(",")) | {other}))


class WindowCounts:
    """Event count, highest posture rank and raw sources per (image, node, window start)."""

    __slots__ = ("_windows", "units", "window_seconds")

    def __init__(self, window_seconds: int, started_ns: int | None = None) -> None:
        self.window_seconds = window_seconds
        self._windows: dict[tuple[str, str, int], list[Any]] = {}
        self.units = WindowUnits(started_ns)  # kept across drains; the agent's start: day_calls.py

    def __len__(self) -> int:
        return len(self._windows)

    def blind_through(self, ns: int) -> None:
        """An agent before this one watched the node until ``ns``: day_calls.py ``blind_through``."""
        self.units.days.blind_through(ns)

    def await_history(self, awaiting: bool = True) -> None:
        """The store's moment is awaited (True) or came (False): day_calls.py ``await_history``."""
        if awaiting:
            self.units.days.await_history()
        else:
            self.units.days.history_known()

    def note(
        self,
        image: str,
        node: str,
        win: int,
        level: int,
        source: str,
        share: Callable[[str], str],
        unit: str = "",
    ) -> None:
        """One event of container ``unit`` of ``image`` on ``node`` in the window starting at ``win``,
        at posture rank ``level``."""
        self.units.note(image, node, win, unit, level)
        seen = self._windows.get((image, node, win))
        if seen is None:
            self._windows[(share(image), share(node), win)] = [1, level, source]
            return
        seen[0] += 1
        if level > seen[1]:
            seen[1] = level
        if seen[2] != source:  # a window both sources observed (a switch inside it)
            seen[2] = _joined_sources(seen[2], source)

    def entry(self, image: str, node: str, win: int) -> list[Any]:
        """The window's list ([events, posture rank, source]); KeyError when it has no event."""
        return self._windows[(image, node, win)]

    def drain(self, default_source: str, lifecycle: RunWindows | None = None) -> list[ObservationWindow]:
        """Every window counted since the last drain, as rows; starts empty again. With the agent's
        ``lifecycle`` windows, the node's container runs count (hotsymbols/container_runs.py), and a
        row with no events restates each kept window whose ``evidenced`` changed since its last row
        (window_units.py ``restated``)."""
        windows, self._windows = self._windows, {}
        runs = lifecycle.containers if lifecycle is not None else None
        units = self.units
        out = []
        for (i, n, w), (count, rank, src) in windows.items():
            evidenced = units.value(i, n, w, rank, runs)
            units.written(i, n, w, evidenced)
            out.append(
                ObservationWindow(
                    image_digest=i,
                    node_name=n,
                    window_start_ns=w,
                    event_count=count,
                    posture=ORDER[rank],
                    window_seconds=self.window_seconds,
                    source=window_source(src, default_source),
                    evidenced=ORDER[evidenced],
                )
            )
        for i, n, w, evidenced in units.restated(runs, set(windows)):
            out.append(
                ObservationWindow(i, n, w, 0, None, self.window_seconds, "", evidenced=ORDER[evidenced])
            )
        units.age()
        return out

    def quiet(self, rows: list[ObservationWindow], lifecycle: RunWindows) -> list[ObservationWindow]:
        """``rows`` with each lifecycle row (no events: the image's containers ran through the
        window, hotsymbols/run_windows.py) carrying ``evidenced`` None when it is the first window
        of one of those containers that showed no call that UTC day while another container of
        the image did (day_calls.py); otherwise it leaves the window's value alone, as before."""
        runs = lifecycle.containers
        out = []
        for o in rows:
            if o.event_count == 0 and o.posture is Posture.PASSIVE and o.evidenced is None and not o.has_gap:
                i, n, w = o.image_digest, o.node_name, o.window_start_ns
                if self.units.value(i, n, w, Posture.PASSIVE.rank, runs) == UNWATCHED:
                    o = dataclasses.replace(o, evidenced=Posture.NONE)
            out.append(o)
        return out
