"""Time Tetragon has not loaded our policies yet is unwatched: a node-wide gap, never a watched time.

Tetragon's event stream comes back before Tetragon traces what our policies
ask: after Tetragon starts (a node reboot, a Tetragon restart) it answers
gRPC first and loads each TracingPolicy later, listing it ``LOADING`` (or not
yet at all) in ListTracingPolicies for its own delay; an updated object is
unloaded and loaded again (a new generation); and a new agent cannot know
what Tetragon did before its first look. Events of that time carry nothing of
the policy's probes, yet the windows and days around it could read as
watched at a level that sees calls (another policy's stacks, the calls seen
later that day), so a "not observed" would cover calls nobody could see.

So the agent's ObservationNode writer hands every ListTracingPolicies answer
to :class:`PolicyLoadWatch`, and the outage marker (agent/outages.py) records
what it reports as node-wide gaps (source ``none``), like a stream outage:

- while an object of ours (named ``stellaops-...``, loaded from the API server)
  is listed pending (``LOADING``, ``UNLOADING``, ``UNKNOWN`` or a state this
  agent does not know), from the last poll that saw it settled (a poll whose
  ListTracingPolicies failed saw nothing), to the first poll that sees it
  settled again; settled is ``ENABLED``,
  ``PARTIALLY_ENABLED`` (its loaded hooks trace; the operator reports the rest),
  ``SKIPPED`` (not for this node) and the failed states, whose pods the operator
  caps instead (controller/in_force.py);
- after the event stream (re)connects: from the poll before the connection
  was seen (the outage covers the time before it) to the first poll after it
  that sees nothing pending, since what Tetragon traced before that poll is
  unknown (for the JSON export source, which has outages too, the file's
  opening and each rotation are its connections: where Tetragon's API never
  answers, that span never closes, as nothing says our policies are loaded;
  tests/integration/test_policy_loading_gap_export.py);
- an object of ours listed again under another version (uid, generation),
  or under the same one with another load number (``TracingPolicyStatus.id``,
  agent/policy_reloads.py ``loaded_anew``; a number not told is none), than
  at the last poll that read the list: Tetragon reloaded it in between,
  from that poll on; and every object of ours listed again after Tetragon's
  unix socket was made anew (a restart, agent/policy_reloads.py
  ``server_identity``: the JSON export source sees no reconnection then),
  from the last poll that saw the socket before; one span per poll, however
  many objects it reloaded;
- an object of ours listed that the poll before did not list: within
  :data:`EXPECT_SECONDS` of a (re)connection it was being loaded since
  Tetragon came back (its list is empty at first), so from the poll before
  the connection; an object listed before and back within that bound, from its
  last listing; otherwise (a policy just created: nothing of it traced before
  either) from the poll before;
- after every posture ceiling the writer writes other than the last one the
  API server took (its first too: ``ceiling_told``), from the poll before,
  until a write is taken (``reported``) and :data:`EXPECT_SECONDS` after it:
  the operator labels the pods from that ceiling (an agent away longer than
  the operator's stale-after, the stream down at a poll, Tetragon's API not
  answering, the native probes: each takes the pods' level labels away, and
  the next ceiling gives them back), and Tetragon's policy filter follows its
  own pod cache later, while ListTracingPolicies lists our policies
  ``ENABLED`` all along. A start day is a gap anyway (the first connection,
  the hole since the last agent); without this a start, or an outage's end,
  shortly before midnight ran on unwatched into a day that read watched.
  Written while the stream is down, that time is the outage's: only the
  reconnection is held;
- an object of ours that stopped tracing (listed ``DISABLED``, ``LOAD_ERROR``,
  ``ERROR`` or ``SKIPPED``, or no more, after it was listed tracing) or started
  again (back to ``ENABLED``/``PARTIALLY_ENABLED``): from the last poll that read
  the list, held open for :data:`EXPECT_SECONDS` after the poll that saw it,
  while the operator caps or uncaps its pods and Tetragon follows their labels.
  The windows of that day before the change show the policy's stacks, so
  without this the day read watched over the hours nothing of it traced. An
  object that stays in such a state costs nothing more: its pods' windows
  show no stack of it (the operator caps them, controller/in_force.py).
  A hold ends on the wall clock; after a step back it lasts its length from
  the step at most (a year back kept the node in a gap for a year).

What remains: between two polls (a third of ``observationNode.heartbeatSeconds``)
a reload that ends with the same version and load number is not seen (a restart
behind a TCP address that numbers its loads as before); an agent without
``observationNode.enabled`` reads no policy states and records none of this;
while Tetragon's API does not answer, an open span stays open (one a
reconnection or a ceiling written then opens too) and no other opens; the list empty at Tetragon's
restart reads as every object of ours gone, so such a restart's gap lasts
:data:`EXPECT_SECONDS` at least (the safe side). An open span shows as
``stellaops_runtime_policy_load_gap_open_seconds`` (agent/store_metrics.py).

Every answered poll also tells :class:`~stellaops_runtime.agent.policy_reloads.PolicyReloads`
(``reloads``) which objects of ours Tetragon loaded anew since the poll before: what ends a
replaced probed node file's gap (agent/node_file_gaps.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from stellaops_runtime.agent.policy_reloads import (
    LISTED_TWICE,
    TETRAGON_ID,
    PolicyReloads,
    loaded_anew,
    numbered_as_before,
)
from stellaops_runtime.controller.loaded_version import not_from_api

Span = tuple[int, int]  # wall ns
# Every Tetragon object the operator renders (render_policy names; observation_status, which brings
# Tetragon's capability probe with it: the agent loads that only with observationNode.enabled).
OPERATOR_PREFIX = "stellaops-"
# Listed states in which the object's probes trace (or never will here, which the operator handles).
SETTLED_STATES = frozenset({"ENABLED", "PARTIALLY_ENABLED", "SKIPPED", "LOAD_ERROR", "ERROR", "DISABLED"})
# Of those, the states in which its probes trace; the others trace nothing here (the operator caps).
TRACING_STATES = frozenset({"ENABLED", "PARTIALLY_ENABLED"})
# How long after a (re)connection an object of ours first listed is taken as loading since then.
EXPECT_SECONDS = 900.0
# Spans kept for the marker at most (merged into one beyond: wider, never lost).
MAX_HELD_SPANS = 64


def _ours(entries: Iterable[Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """The entries of objects the operator rendered, by (namespace, name). A name listed twice (in
    another Tetragon ``domain``, or a policy of our name loaded otherwise) keeps no load number:
    Tetragon lists in no set order, so which entry's number is kept would move between polls, a
    reload nobody made (agent/policy_reloads.py ``loaded_anew``); it is marked ``LISTED_TWICE``: no
    reload of it ends a replaced node file's gap."""
    out: dict[tuple[str, str], Mapping[str, Any]] = {}
    twice: set[tuple[str, str]] = set()
    for e in entries:
        if not isinstance(e, Mapping) or not_from_api(e):
            continue
        name = str(e.get("name") or "")
        if name.startswith(OPERATOR_PREFIX):
            key = (str(e.get("namespace") or ""), name)
            if key in out:
                twice.add(key)
            out[key] = e
    for key in twice:
        out[key] = {k: v for k, v in out[key].items() if k != TETRAGON_ID} | {LISTED_TWICE: True}
    return out


def _state(entry: Mapping[str, Any]) -> str:
    return str(entry.get("state") or "UNKNOWN").upper().removeprefix("TP_STATE_")


def _pending(entry: Mapping[str, Any]) -> bool:
    return _state(entry) not in SETTLED_STATES


class PolicyLoadWatch:
    """Turns successive ListTracingPolicies answers into unwatched spans (see the module)."""

    def __init__(
        self,
        *,
        start_ns: int,
        expect_seconds: float = EXPECT_SECONDS,
        relabel_seconds: float = EXPECT_SECONDS,
    ) -> None:
        self._start = start_ns  # before this agent, the watch record and the outages speak
        self._expect_ns = int(expect_seconds * 1e9)
        self._relabel_ns = int(relabel_seconds * 1e9)  # the hold of the agent's first connection
        self._prev_poll: int | None = None  # the last poll's time
        self._answered: int | None = None  # the last poll whose ListTracingPolicies was answered
        self._connects: int | None = None
        self._was_connected = False
        self._conn_from: int | None = None  # the poll before the current connection was seen
        self._conn_at: int | None = None  # the poll that saw it
        self._open_from: int | None = None  # an unwatched span still open
        self._handed_to: int | None = None  # ... handed over up to here (take)
        self._listed: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._last_seen: dict[tuple[str, str], int] = {}
        self._tracing: dict[tuple[str, str], bool] = {}  # each object's last settled state: tracing?
        self._hold_to: int | None = None  # a change of what traces keeps a span open until then
        self._hold_from = 0  # ... set at this time (a clock stepped back before it shortens the hold)
        self._unheard = self._relabel_ns > 0  # no ceiling of this agent taken by the API server yet
        self._spans: list[Span] = []
        self._in_flight: list[Span] = []  # taken by the marker, not in the pipeline yet (marked)
        self.spans = 0  # spans recorded (closed ones, and each reload)
        self.pending = 0  # objects of ours listed pending at the last poll
        self.reloads = PolicyReloads()  # when each was loaded anew (ends a replaced node file's gap)

    @property
    def open(self) -> bool:
        return self._open_from is not None

    def open_seconds(self, now_ns: int | None = None) -> float:
        """How long the span still open has been open (0.0: none is): its start to now, wall clock."""
        if self._open_from is None:
            return 0.0
        now = time.time_ns() if now_ns is None else now_ns
        return max(0.0, (now - self._open_from) / 1e9)

    def observe(
        self,
        entries: Iterable[Any] | None,
        *,
        now_ns: int,
        connected: bool | None,
        connects: int | None = None,
        asked_mono_ns: int | None = None,
        server: tuple[int, int] | None = None,
    ) -> None:
        """One poll: ``entries`` the ``status.policies`` entries (None: Tetragon's API did not answer),
        ``connected``/``connects`` the event stream's state (None: not known to the writer),
        ``asked_mono_ns`` when its ListTracingPolicies was sent, monotonic clock (default: now),
        ``server`` Tetragon's socket looked at then (agent/policy_reloads.py ``server_identity``)."""
        before = self._prev_poll if self._prev_poll is not None else self._start
        if connected is False:  # the stream is down: that outage is the source's to mark
            self._was_connected = False
            self._prev_poll = now_ns
            return
        new = (connects is not None and connects != self._connects) or not self._was_connected
        self._connects, self._was_connected = connects, True
        if new:  # what Tetragon traced before this poll is unknown
            self._conn_from, self._conn_at = before, now_ns
            self._open(before)
        if entries is None:  # nothing known of what Tetragon traces: an open span stays open
            self._prev_poll = now_ns
            return
        # What the list shows changed since the last list read, not the last poll: a poll whose
        # ListTracingPolicies failed (a timeout while Tetragon loads) saw nothing of it.
        listed = self._answered if self._answered is not None else self._start
        ours = _ours(entries)
        asked = time.monotonic_ns() if asked_mono_ns is None else asked_mono_ns
        restart = self.reloads.listed(ours, asked_ns=asked, now_ns=now_ns, server=server)
        spans: set[Span] = set()  # one reload of several objects (a restart) is one span
        for key, entry in ours.items():
            was = self._listed.get(key)
            if was is None:
                spans.add((self._listed_from(key, listed, now_ns), now_ns))
            elif restart is not None:  # Tetragon's socket made anew: a restart reloaded every one
                spans.add((min(restart, listed), now_ns))
            elif loaded_anew(was, entry):  # reloaded in between (another version, or load number)
                spans.add((listed, now_ns))
            ours[key] = numbered_as_before(was, entry)
        for start, end in sorted(spans):
            self._record(start, end)
        self._changes(ours, listed, now_ns)
        self.pending = sum(1 for e in ours.values() if _pending(e))
        if self.pending or self._held(now_ns):
            self._open(listed)
        elif self._open_from is not None:
            self._record(self._open_from if self._handed_to is None else self._handed_to, now_ns)
            self._open_from = self._handed_to = None
        self._listed = ours
        for key in ours:
            self._last_seen[key] = now_ns
        for key in [k for k, t in self._last_seen.items() if now_ns - t > self._expect_ns and k not in ours]:
            del self._last_seen[key]
        self._prev_poll = self._answered = now_ns

    def _changes(self, ours: Mapping[tuple[str, str], Mapping[str, Any]], listed: int, now_ns: int) -> None:
        """An object of ours that started or stopped tracing (DISABLED, a failed state, SKIPPED, gone,
        or back to ENABLED) since its last settled state: from the last list read, and held open
        for :data:`EXPECT_SECONDS` while the operator relabels the pods (its cap) and Tetragon follows."""
        changed = False
        for key, entry in ours.items():
            if _pending(entry):
                continue
            tracing = _state(entry) in TRACING_STATES
            if self._tracing.get(key, tracing) != tracing:
                changed = True
            self._tracing[key] = tracing
        for key in [k for k in self._tracing if k not in ours]:
            changed |= self._tracing.pop(key)  # listed no more: stopped, if it traced
        if changed:
            self._open(listed)
            self._hold(now_ns, self._expect_ns)

    def _hold(self, now_ns: int, length_ns: int) -> None:
        """Keep the span open until ``length_ns`` after ``now_ns`` at least."""
        if self._hold_to is None or now_ns + length_ns > self._hold_to:
            self._hold_to, self._hold_from = now_ns + length_ns, now_ns

    def ceiling_told(self, *, now_ns: int) -> None:
        """The agent is writing a posture ceiling (``maxPosture``) other than the last one the API
        server took (its first, too): the operator takes the pods' level labels away or gives them
        back after it, and Tetragon's policy filter follows its own pod cache later still, while
        ListTracingPolicies lists our policies ``ENABLED`` all along. Unwatched from the last poll,
        held for the relabel's length after the write, and until a write is taken (``reported``).
        Written while the stream is down, that time is the outage's (or the native probes', which
        deliver meanwhile): the hold then keeps only the span the reconnection opens."""
        if not self._relabel_ns:
            return
        if self._was_connected:
            self._open(self._prev_poll if self._prev_poll is not None else self._start)
        self._hold(now_ns, self._relabel_ns)
        self._unheard = True

    def reported(self, *, now_ns: int) -> None:
        """The API server took the ceiling ``ceiling_told`` announced: the relabel's hold runs from here."""
        if self._relabel_ns:
            self._hold(now_ns, self._relabel_ns)
            self._unheard = False

    def _held(self, now_ns: int) -> bool:
        """Whether a hold keeps the span open at ``now_ns``; a clock stepped back since the hold was
        set keeps it for its length from here at most, not until the old clock's time comes again.
        Until the operator took a ceiling of this agent, the pods' labels are unknown: held."""
        if self._unheard:
            return True
        if self._hold_to is None:
            return False
        if now_ns < self._hold_from:
            self._hold_to = now_ns + min(
                self._hold_to - self._hold_from, max(self._expect_ns, self._relabel_ns)
            )
            self._hold_from = now_ns
        return now_ns < self._hold_to

    def _listed_from(self, key: tuple[str, str], before: int, now_ns: int) -> int:
        """Since when an object of ours first listed at this poll may have traced nothing."""
        if (
            self._conn_at is not None
            and self._conn_from is not None
            and now_ns - self._conn_at <= self._expect_ns
        ):
            return min(self._conn_from, before)
        seen = self._last_seen.get(key)
        if seen is not None and now_ns - seen <= self._expect_ns:
            return min(seen, before)
        return before

    def _open(self, start: int) -> None:
        if self._open_from is None:
            self._open_from, self._handed_to = start, None
        elif start < self._open_from:  # reaches further back: that part is a span of its own
            self._record(start, self._open_from)
            self._open_from = start

    def _record(self, start: int, end: int) -> None:
        self._spans.append((min(start, end), max(start, end)))
        self.spans += 1
        if len(self._spans) > MAX_HELD_SPANS:
            self._spans = [(min(a for a, _ in self._spans), max(b for _, b in self._spans))]

    def take(self, now_ns: int | None = None) -> list[Span]:
        """The spans not handed over yet, and what an open one adds up to now (it stays open)."""
        out, self._spans = self._spans, []
        if self._open_from is not None:  # piece by piece, as an open outage is handed over
            now = time.time_ns() if now_ns is None else now_ns
            start = self._open_from if self._handed_to is None else self._handed_to
            out.append((min(start, now), max(start, now)))
            self._handed_to = max(start, now)
        self._in_flight.extend(out)
        return out

    def give_back(self, spans: list[Span]) -> None:
        """Spans the marker could not hand to the pipeline: kept for its next call (the others it
        took are in the pipeline)."""
        self._spans[:0] = spans
        self._in_flight = []

    def marked(self) -> None:
        """The marker put every span it took into the pipeline: a flush starting now drains them."""
        self._in_flight = []

    def unstored_from(self) -> int | None:
        """The earliest moment of a span not in the pipeline yet (held, taken and not marked, or the
        part of an open one not handed over); None: none. The watch record read as a flush starts
        claims no later (agent/watch_record.py ``drops_through``): the spans reach back to the poll
        before the one that saw them, so a flush in between wrote a record past their start, and a
        SIGKILL before they were stored lost them to the next agent's restart gap."""
        starts = [a for a, _ in self._spans] + [a for a, _ in self._in_flight]
        if self._open_from is not None:
            starts.append(self._open_from if self._handed_to is None else self._handed_to)
        return min(starts) if starts else None
