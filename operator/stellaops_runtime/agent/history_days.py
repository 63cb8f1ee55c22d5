"""The days an agent before this one watched, told to the day judgement, whatever the clock reads now.

An agent judges the UTC day it started, and every day before it, as a day on which an agent
before it may have seen a container of the image calling (hotsymbols/day_calls.py): a silent
container's first window that day is marked although this agent saw no caller. Its own start
is not enough when the node's clock went back across midnight between the two (the last agent
watched until 00:00:30 of day D+1, this one starts reading 23:59:50 of day D: a reboot, a step
further back than the watch record measures, a node without a usable record): D+1 was judged on
this agent's calls alone, and a silent container of it went unmarked beside calls only the agent
before saw. So the last moment an agent before watched is read as it was written, not as this
clock places the hole (agent/watch_record.py does that), and handed to the aggregator
(``blind_through``): the watch record's ``alive_ns`` at start, and the store's latest window of
the node (agent/node_history.py) and the spool file's (agent/spool_keeper.py) as the store first
opens, before this agent writes. A later day than the truth costs watched days only (more
marks), never a "not observed".

A moment more than :data:`MAX_AHEAD_DAYS` after this agent's start (its clock, read once) is not
believed, with a warning: the store keeps windows stamped in the future (a node whose clock once
ran ahead), and one stamped in 2099 made every later agent of the node judge every day until then
blind, each idle container's day marked and no "not observed" of the node's images for decades
(tests/unit/test_history_days_far_ahead.py); the store's and the spool file's moments are weighed
each on its own, so a refused one does not hide the other, and the store is asked for the node's
latest window up to that bound (agent/node_history.py ``not_after_ns``), not its latest at all.
What that leaves: days an agent before watched more
than that far ahead of this clock (a clock stepped back by more than a month) are judged on this
agent's calls alone when it reaches them.

The days after this agent's start are kept (hotsymbols/day_calls.py ``await_history``) until the
store's moment came and was judged: with no usable record, the store down for days and the clock
stepped back across midnight, a day the agent had forgotten before the store answered was not
marked any more, and read watched beside calls only the agent before saw
(tests/unit/test_day_calls_store_late.py). The bound on remembered containers still holds: a
store down long enough on a busy node drops the oldest kept days (day_calls.py ``MAX_UNITS``), and
their windows already written stay as written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from stellaops_runtime.agent.watch_record_file import RecordIgnored, read_moment, record_path
from stellaops_runtime.hotsymbols.day_calls import DAY_NS

log = logging.getLogger(__name__)

MAX_AHEAD_DAYS = 31  # a moment further ahead of this agent's start is not believed (module docstring)


class _Days(Protocol):
    def blind_through(self, ns: int) -> None: ...


def recorded_moment(path: str, node: str) -> int | None:
    """The record's ``alive_ns`` as written, for ``node`` (None: no usable record)."""
    if not path:
        return None
    try:
        return read_moment(path, node=node)[2]
    except (FileNotFoundError, RecordIgnored):
        return None
    except Exception as e:  # never stop an agent over this file (agent/watch_record.py counts it)
        log.debug("watch record %s not read for the days before this agent: %r", path, e)
        return None


class HistoryDays:
    """Tells ``days`` (the pipeline's aggregator) the last moment an agent before this one watched."""

    def __init__(self, days: _Days, *, node: str, now_ns: int | None = None) -> None:
        self.days = days
        self.node = node
        self.now_ns = time.time_ns() if now_ns is None else now_ns  # this agent's start, read once
        self.told: int | None = None  # the latest moment told
        self._stored = False  # the store's answer was taken (once: later opens hold this agent's rows)

    @property
    def bound_ns(self) -> int:
        """The latest moment believed: :data:`MAX_AHEAD_DAYS` after this agent's start."""
        return self.now_ns + MAX_AHEAD_DAYS * DAY_NS

    def tell(self, ns: int | None) -> None:
        if ns is not None and ns > self.bound_ns:
            log.warning(
                "an agent before this one watched node %s until %d ns, more than %d days ahead of this "
                "clock: not believed (a clock that ran ahead); the days until then are judged on this "
                "agent's own calls", self.node, ns, MAX_AHEAD_DAYS,
            )  # fmt: skip
            return
        if ns is not None and ns > 0 and (self.told is None or ns > self.told):
            self.told = ns
            self.days.blind_through(ns)

    def record(self, path: str) -> None:
        """At start, before the pipeline runs: the watch record's moment."""
        self.tell(recorded_moment(path, self.node))

    def stored(self, *moments: int | None) -> None:
        """The store's and the spool file's latest window start of the node, before this agent wrote:
        each told on its own, so one not believed (far ahead) does not take the other with it."""
        if not self._stored:
            self._stored = True
            for ns in moments:
                self.tell(ns)


def attach_history_days(agent: Any) -> HistoryDays:
    """Reads the record now and wraps the flusher's ``on_open`` (agent/runner.py, after
    attach_watch_record set it): the store's latest window of the node is read as it first opens."""
    from stellaops_runtime.agent.node_history import last_window_ns

    aggregator = agent.pipeline.aggregator
    aggregator.await_history()  # the days after the start are kept until the store's moment is judged
    h = HistoryDays(aggregator, node=agent.node_name)
    h.record(record_path(agent.config.store.spool_path))
    inner: Callable[[Any], None] | None = agent.flusher.on_open

    def on_open(store: Any) -> None:
        if inner is not None:
            inner(store)
        if h._stored:
            return
        from stellaops_runtime.store.errors import StoreUnavailable

        try:
            # the latest window believable (a later one, stamped far ahead, would hide it)
            stored = last_window_ns(store.db, agent.node_name, not_after_ns=h.bound_ns)
        except Exception as e:
            raise StoreUnavailable(f"cannot read this node's earlier windows: {e!r}") from e
        h.stored(stored, agent.flusher.spool.window_ns)
        aggregator.await_history(False)  # after its blind_through: the days it names are judged first

    agent.flusher.on_open = on_open
    return h
