"""Which containers of an image were seen with calls on a UTC day: a run nobody watched takes the day out.

A watched day (evidence/store_facts.py) is a claim about every run of the
image that day, and the store judges it per (node, UTC day): a node that saw
the image's calls in one window keeps its other windows of the day, since a
window evidenced below EbpfDeep beside them is mostly the same traced
container being idle or sending events without a stack. The store cannot
tell that from a second container of the image that ran silent (no policy
traces it) or traced without stacks beside the first: only the agent knows
the containers (hotsymbols/window_units.py, hotsymbols/container_runs.py).

So the agent judges each container over its UTC day on the node: a
container that ran in a window (sent it events, or ran silent) and showed no
call (no event at EbpfDeep or above) that day so far, while another
container of the image there did, makes the first window it ran in that day
carry ``evidenced`` None (rank 0), a value no event gives. One window per
container and day is enough: the store takes the node's whole day out of
the watch on it (store/watched_sql.py ``unseen_days``) and ``query
observed`` names the node and day (store/coverage_unseen.py); the other
windows it ran in keep their own value. A container seen with calls later
that day was idle, not unwatched: its window is written again at its own
value (:meth:`DayCalls.restated`, a row with no events carrying only
``evidenced``); a window written before the day's first call is marked once
that call comes.

What the agent knew is what it judges: the containers are remembered for
the day of the newest window it saw and the day before. A restarted agent
knows only the calls it saw itself, and the agent before it may have seen
another container of the image calling earlier that day: so on the UTC day
the agent started (``started_ns``, the wall clock the agent hands in) and
any day before it (an export file read from where the agent before it
stopped), the first window of a container it has not seen with calls is
marked whether or not another container showed calls to it; so is every day
up to the last moment an agent before it watched (:meth:`DayCalls.blind_through`,
agent/history_days.py: its watch record, the store's latest window of the
node), which may be a day after the start on this clock when the node's clock
went back across midnight between the two (a window of such a day already
written is marked on a restate row; the days after the start are not
forgotten while that moment is awaited: :meth:`DayCalls.await_history`). That takes out
no day that was watched: a node where no container of the image showed a
call that day has no window that could see calls, so the day is out of the
watch already; a container that called only to the agent before costs that
node's day (no answer rather than a wrong one). Host processes and a
container whose image is unknown (``host:``, ``container:`` images) are one
unit, with no container beside them, and are judged as before. A day it
forgot (older than that: an export file of several days read at once, a
day-ahead event) is not judged
again: its kept windows keep what was written (:meth:`DayCalls.forgot`),
and a window of it written again (late events) is marked when one of its
containers was not seen with calls since, since the agent cannot tell
whether it was that container's first window (a mark is never lost; a
day may be lost that was watched). Past :data:`MAX_UNITS` remembered
containers, seen with calls or not (a storm of short-lived ones), the
oldest days' largest sets are dropped (counted: ``dropped``), and such a
day is judged the same way from then on: every window of a container not
seen with calls since is marked. Containers are compared as container_runs.py compares
them (31 characters of the id, lower case). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator

from stellaops_runtime.contracts.posture import FUNCTION_VISIBLE, Posture
from stellaops_runtime.hotsymbols.container_runs import unit_id

DAY_NS = 86_400 * 1_000_000_000
MAX_UNITS = 100_000  # (image, node, day, container)s remembered at once, seen with calls or not
UNWATCHED = Posture.NONE.rank  # the mark: a container of the image ran there, unseen with calls that day
_VISIBLE = FUNCTION_VISIBLE.rank

_Day = tuple[str, str, int]  # (image, node, UTC day number)
# Windows of host processes (one unit) and of a container whose image is unknown (the image key is the
# container): no other container of the "image" can have called beside it (store/refs.py
# NON_IMAGE_PREFIXES), so the day the agent started marks nothing of theirs it would not mark anyway.
_ONE_UNIT = ("host:", "container:")


class DayCalls:
    """Per (image, node, UTC day): the containers seen with calls, and the first window of each other one."""

    __slots__ = (
        "_at",
        "_awaiting",
        "_blind_done",
        "_blind_upto",
        "_called",
        "_dirty",
        "_first",
        "_floor",
        "_latest",
        "_ncalled",
        "_size",
        "_spilled",
        "dropped",
    )

    def __init__(self, started_ns: int | None = None) -> None:
        # the days up to the agent's start (UTC): an agent before it may have seen callers this one did not
        self._blind_upto = started_ns // DAY_NS if started_ns is not None else -1
        self._blind_done = self._blind_upto  # the days up to it were judged blind (restated() catches up)
        self._awaiting = False  # a moment of an agent before is still to come: days after the start kept
        self._called: dict[_Day, set[str]] = {}
        # (image, node, day) -> container not yet seen with calls -> [its first window, that window's
        # own rank, the rank written for it]
        self._first: dict[_Day, dict[str, list[int]]] = {}
        # (image, node, day) -> window -> the containers in _first whose first window it is: the window
        # is judged by them all, not only by the containers it holds in the drain that writes it (a
        # late event after its containers were dropped, window_units.py KEEP_DRAINS)
        self._at: dict[_Day, dict[int, set[str]]] = {}
        self._dirty: set[_Day] = set()  # days with a container newly seen with calls
        self._latest = 0  # the newest day noted
        self._floor = -1  # the days before it are forgotten
        self._spilled: set[_Day] = set()  # days whose containers were dropped past MAX_UNITS
        self._size = 0  # containers in _first
        self._ncalled = 0  # containers in _called
        self.dropped = 0  # containers dropped past MAX_UNITS (their days judged blind)

    def __len__(self) -> int:
        return self._size

    def note(self, image: str, node: str, win: int, unit: str, level: int) -> None:
        """One event of container ``unit`` in the window, at posture rank ``level``."""
        if level < _VISIBLE:
            return
        day = win // DAY_NS
        key = (image, node, day)
        called = self._called.get(key)
        if called is None:
            called = self._called[key] = set()
            self._latest = max(self._latest, day)
        u = unit_id(unit)
        if u not in called:
            called.add(u)
            self._ncalled += 1
            self._dirty.add(key)

    def blind_through(self, ns: int) -> None:
        """An agent before this one watched the node until ``ns`` (wall, as that agent's clock read
        it): its day and the days before it are judged as the start day is. Only an int is written
        (another thread may tell it: the store's opening one); :meth:`restated` marks the windows of
        such a day written before it was told."""
        self._blind_upto = max(self._blind_upto, ns // DAY_NS)

    def await_history(self) -> None:
        """The store's answer to :meth:`blind_through` is still to come (agent/history_days.py): the
        days after the start are not forgotten until it came and :meth:`restated` judged them."""
        self._awaiting = True

    def history_known(self) -> None:
        """The store answered (after its :meth:`blind_through`, if any): days are forgotten as before
        once :meth:`restated` has judged them. Only a bool is written (the store's opening thread)."""
        self._awaiting = False

    def forgot(self, win: int) -> bool:
        """Whether the window's day was forgotten: its rows keep what was written."""
        return win // DAY_NS < self._floor

    def judge(self, image: str, node: str, win: int, rank: int, units: Iterable[str]) -> int:
        """The window's ``evidenced`` rank to write: ``rank``, or :data:`UNWATCHED` when it is the
        first window that day of a container that ran in it (``units``, or one judged in it before:
        written again by a late event after its containers were dropped, it is still that one's
        first window) and has shown no call that day while another container has (on the day the
        agent started or before it: whether or not another has, as far as this agent saw); on a day
        forgotten or dropped past the bound, any window of a container not seen with calls since."""
        day = win // DAY_NS
        key = (image, node, day)
        called = self._called.get(key, set())
        if day < self._floor or key in self._spilled:  # its first windows are not known any more
            return UNWATCHED if any(unit_id(u) not in called for u in units) else rank
        firsts = self._first.get(key)
        for u in map(unit_id, units):
            if u in called:
                continue
            if firsts is None:
                firsts = self._first[key] = {}
                self._latest = max(self._latest, day)
            if u not in firsts:
                firsts[u] = [win, rank, rank]
                self._at.setdefault(key, {}).setdefault(win, set()).add(u)
                self._size += 1
        # every container whose first window this is and that has shown no call yet, whether or not
        # it is among ``units`` this time
        waiting = self._at.get(key, {}).get(win, ()) if firsts else ()
        mine = [firsts[u] for u in waiting if u not in called] if firsts else []
        blind = day <= self._blind_upto and not image.startswith(_ONE_UNIT)
        value = UNWATCHED if mine and (called or blind) else rank
        for entry in mine:
            entry[1], entry[2] = rank, value
        return value

    def restated(
        self, skip: set[tuple[str, str, int]], written: Collection[tuple[str, str, int]] = ()
    ) -> Iterator[tuple[str, str, int, int]]:
        """(image, node, window, rank) of each remembered window (not in ``skip``, written this drain)
        whose value changed since it was written: its containers were all seen with calls since
        (the mark goes), or the first container of the day was (the mark comes). A window in
        ``written`` (its row written this drain) is given too when its mark goes: the store keeps
        a mark against a row with events (another agent's, store/marks.py), so the agent that
        marked it writes it away on a restate row (the caller says which value)."""
        dirty, self._dirty = self._dirty, set()
        upto = self._blind_upto
        if upto > self._blind_done:  # days told blind since their windows were written: judged again
            dirty.update(
                k for k in self._first if self._blind_done < k[2] <= upto and not k[0].startswith(_ONE_UNIT)
            )
            self._blind_done = upto
        for key in dirty:
            firsts = self._first.get(key)
            if not firsts:
                continue
            called = self._called.get(key, set())
            image, node, _ = key
            wins: dict[int, list[list[int]]] = {}  # window -> the entries of containers still unseen
            was: dict[int, tuple[int, int]] = {}  # window -> (its own rank, the rank written)
            at = self._at.get(key, {})
            for u, entry in list(firsts.items()):
                win = entry[0]
                was.setdefault(win, (entry[1], entry[2]))
                if u in called:
                    del firsts[u]
                    self._size -= 1
                    waiting = at.get(win)
                    if waiting is not None:
                        waiting.discard(u)
                        if not waiting:
                            del at[win]
                else:
                    wins.setdefault(win, []).append(entry)
            for win, (rank, said) in was.items():
                left = wins.get(win, [])
                value = UNWATCHED if left else rank
                for entry in left:
                    entry[2] = value
                if value == said:
                    continue
                key3 = (image, node, win)
                if key3 not in skip or (said == UNWATCHED and key3 in written):
                    yield image, node, win, value

    def prune(self) -> None:
        """Forget the days before the day before the newest one; past the bound, drop the containers of
        the oldest days (largest first): such a day is judged blind from then on. While the store's
        moment is awaited, or told and not yet judged, the days after those judged blind are kept
        (the bound still holds): a day forgotten before it is told could not be marked any more."""
        keep = self._latest - 1
        if self._awaiting or self._blind_upto > self._blind_done:  # _awaiting read first (history_known)
            keep = min(keep, self._blind_done + 1)
        keep = self._floor = max(self._floor, keep)
        for key in [k for k in self._called.keys() | self._first.keys() | self._spilled if k[2] < keep]:
            self._forget(key)
        if self._size + self._ncalled > MAX_UNITS:  # the oldest days' largest sets first
            held = {
                k: len(self._first.get(k, ())) + len(self._called.get(k, ()))
                for k in self._first.keys() | self._called.keys()
            }
            for key in sorted(held, key=lambda k: (k[2], -held[k])):
                self.dropped += held[key]
                self._forget(key)
                self._spilled.add(key)
                if self._size + self._ncalled <= MAX_UNITS:
                    break

    def _forget(self, key: _Day) -> None:
        self._ncalled -= len(self._called.pop(key, ()))
        self._spilled.discard(key)
        self._dirty.discard(key)
        self._at.pop(key, None)
        firsts = self._first.pop(key, None)
        if firsts:
            self._size -= len(firsts)
