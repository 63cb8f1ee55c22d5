"""When each agent last gave a sign of life, on the operator's own clock.

An ObservationNode's ``heartbeatTime`` is stamped by its agent's clock. The
operator used to judge a node stale by comparing it with its own clock
(older than ``stale_after_seconds``), so skew between the two moved the
rule: an agent clock two minutes behind made a working node stale for good
(its pods' posture ceiling dropped to None, no policy counted it), and an
agent clock ahead kept a dead agent's last report fresh for as long as the
skew (its policies stayed Ready, its pods kept their levels).

So the operator remembers, per node, when it first saw the current
``heartbeatTime`` value: a new value is a new report, made by a live agent
no later than when it arrived, and staleness is measured from that arrival
on the operator's clock alone. A value seen for the first time with no
earlier one to compare (the operator just started, or the node is new) is
taken as of the earlier of its stamp and now: an agent clock behind makes
the node stale only until its next heartbeat, one ahead counts from now.

Except where the operator had already judged that node fresh: a restarted
operator read a node whose clock is behind as stale on first sight (its stamp
looks old), so the Node's labels, its pods' ceilings, its policies and its
RuntimeObserver were written out and, at the next heartbeat, back. The
operator's last judgement of each node is on the Node itself: its
``feature.stellaops.io/source`` and ``max-posture`` labels are what the report
gives, or ``none``/``None`` once it was judged stale, and its ``heartbeat`` label
says which (``node_labels``: a report with no working source has ``none``/``None``
either way, and an operator restarted then flapped such a node, its clock behind,
stale and back). When they
show the report judged fresh (``prior``), the first sight counts from now: a
live agent stays fresh whatever its clock, and one that died while the
operator was down turns stale ``stale_after_seconds`` after the restart, as it
would after a last heartbeat seen arrive then. When the labels cannot tell
(none yet, an older report's, or an older operator's labels without
``heartbeat`` on a report whose fresh and stale labels are the same), the rule
above holds. When the ``heartbeat`` label says ``stale``, the report counts as
at least ``stale_after_seconds`` old on first sight, whatever its stamp: a dead
agent whose clock ran ahead read fresh again after a restart (its last stamp
recent or "in the future" by the operator's clock), so its pods' ceiling was
raised, its policies counted it running and its RuntimeObserver read Ready
until it turned stale once more; a live agent's next heartbeat (a new value)
counts from its arrival as always. (Not for a node this process saw without any
heartbeat: its label judged no report, and its first one counts as above.)
The stamp rule also holds for a report stamped more than
``LABELS_TRUSTED_SECONDS`` before now: an operator restarted within
``stale_after_seconds`` each time (a crash loop) never judged a dead node stale,
so its labels kept saying fresh and every start counted its first sight from
now, its posture ceiling raised for ever. The labels now vouch for an hour of
a dead agent at most (a node clock more than that behind reads stale on a
restart's first sight, until its next heartbeat).

The same holds for since when a node's agent cannot reach Tetragon (its
``Ready=False`` ``lastTransitionTime``, also the agent's clock), which
turns its policies Degraded after ``tetragon_unreachable_seconds``: an
agent clock a day ahead kept them Progressing for a day, one behind made
them Degraded at once. ``unreachable_since`` times it from the operator's
first sight of that transition; a transition the operator finds already
there when it starts is timed by the agent's own account (its heartbeat
minus the transition, one clock), so a restart does not move it. Since when
its agent has had no event source while Tetragon answers (``EventSource=False``,
which turns them Degraded ``NoEventSource`` after the same bound) is timed
the same way (``no_source_since``).

Since when a node's container registry is not in sync (``ContainersKnown``
``RegistryNotInSync``, which turns its RuntimeObserver Degraded after
``registry_not_in_sync_seconds``) is timed from the agent's own account of how
long it has lasted, ``heartbeatTime`` minus the condition's
``lastTransitionTime``: both stamped by the node's clock, so a skew either way
cancels out (neither Degraded at once nor never), and an operator restarted
meanwhile finds the same answer as before (no flap back to Progressing). A
node clock stepped forward after the transition would still make it look
old: it is bounded by the last time the operator saw that node in sync.

A node whose report is for an older rollout of its RuntimeObserver's agent pod
template (``status.agentTemplate``) is that node's rollout in progress, timed
from when the operator first saw it so while the DaemonSet said every agent
updated and ready (``outdated_since``): a new agent writes on its first poll,
so one that has not for ``stale_after_seconds`` by then is a real problem.
A restarted operator times it anew. A node whose report is stale while an agent
pod of its RuntimeObserver runs there (the agent runs but its reports stopped)
turns the observer Degraded once it has been stale for ``stale_after_seconds``
(timed from its last report's arrival, or its ObservationNode's creation when it
never reported, so a restart finds the same answer) while the DaemonSet says
every agent updated and ready (``silent_since``: whether it does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from stellaops_runtime.contracts.crds import FEATURE_LABEL_PREFIX
from stellaops_runtime.controller.node_labels import node_feature_labels
from stellaops_runtime.controller.rollout import parse_time

_JUDGED = (FEATURE_LABEL_PREFIX + "source", FEATURE_LABEL_PREFIX + "max-posture")
_HEARTBEAT = FEATURE_LABEL_PREFIX + "heartbeat"  # the judgement itself: fresh | stale
LABELS_TRUSTED_SECONDS = 3600.0  # the labels' "judged fresh" vouches for a report stamped within this


def _status(node: Mapping[str, Any] | None) -> Mapping[str, Any]:
    status = (node or {}).get("status")
    return status if isinstance(status, Mapping) else {}


def judged_fresh(labels: Any, node: Mapping[str, Any]) -> bool:
    """The Node's ``labels`` show this report judged fresh by the operator (see the module docstring):
    its source and ceiling labels are the report's, and its ``heartbeat`` label says ``fresh``; or,
    without a ``heartbeat`` label (an operator before it), those labels differ from a stale one's."""
    if not isinstance(labels, Mapping):
        return False
    fresh, stale = node_feature_labels(node), node_feature_labels(node, stale=True)
    mine, theirs = tuple(labels.get(k) for k in _JUDGED), tuple(fresh.get(k) for k in _JUDGED)
    if None in mine or mine != theirs:
        return False
    if _HEARTBEAT in labels:
        return labels[_HEARTBEAT] == "fresh"
    return mine != tuple(stale.get(k) for k in _JUDGED)


def judged_stale(labels: Any) -> bool:
    """The Node's ``heartbeat`` label says the operator judged its report stale (see the module)."""
    return isinstance(labels, Mapping) and labels.get(_HEARTBEAT) == "stale"


def _name(node: Mapping[str, Any]) -> str:
    meta, spec = node.get("metadata"), node.get("spec")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return str(name or (spec.get("nodeName") if isinstance(spec, Mapping) else None))


MAX_FORGOTTEN = 10_000  # names of deleted ObservationNodes remembered


class Heartbeats:
    """Per node name: (the ``heartbeatTime`` text last seen, when the operator first saw it)."""

    def __init__(
        self, labels: Callable[[str], Any] | None = None, *, stale_after_seconds: float | None = None
    ) -> None:
        self._labels = labels  # node name -> the Node's labels (kopf's index; None: unknown)
        self._stale_after = stale_after_seconds  # a report judged stale is at least this old
        self._unstamped: set[str] = set()  # seen by this process with no heartbeat yet
        self._forgotten: set[str] = set()  # ObservationNodes deleted: the labels judged the old one
        self._outdated: dict[str, tuple[str, datetime]] = {}  # name -> (agent template wanted, since)
        self._silent: dict[str, datetime] = {}  # name -> since when its live agent's report is stale
        self._seen: dict[str, tuple[str, datetime]] = {}
        self._down: dict[str, tuple[datetime, datetime]] = {}  # name -> (agent's since, arrival)
        self._deaf: dict[str, tuple[datetime, datetime]] = {}  # the same, of EventSource=False
        # name -> (agent's stamp, since), or (None, when the operator last saw it in sync)
        self._unsynced: dict[str, tuple[str | None, datetime]] = {}

    def received(self, node: Mapping[str, Any], *, now: datetime) -> datetime | None:
        """When this node's current report arrived, on the operator's clock (None: it has no heartbeat)."""
        text = _status(node).get("heartbeatTime")
        stamped = parse_time(text)
        name = _name(node)
        if stamped is None:
            if len(self._unstamped) < MAX_FORGOTTEN:
                self._unstamped.add(name)  # its labels judge no report: its first one is not judged stale
            return None
        before = self._seen.get(name)
        if before is not None and before[0] == text:
            return before[1]
        labels = self._labels(name) if self._labels and name not in self._forgotten else None
        recent = (now - stamped).total_seconds() <= LABELS_TRUSTED_SECONDS  # a crash loop: bounded
        fresh_before = before is None and recent and judged_fresh(labels, node)
        at = now if before is not None or fresh_before else min(now, stamped)
        if (
            before is None
            and self._stale_after is not None
            and name not in self._unstamped
            and judged_stale(labels)
        ):
            at = min(at, now - timedelta(seconds=self._stale_after + 1))  # stale until its next report
        self._seen[name] = (str(text), at)
        self._forgotten.discard(name)  # judged by its own stamp once: kept in _seen from now on
        return at

    def received_all(self, nodes: Iterable[Mapping[str, Any]], *, now: datetime) -> dict[str, datetime]:
        """``received`` of each node that has a heartbeat, by name."""
        out = {}
        for node in nodes:
            if (at := self.received(node, now=now)) is not None:
                out[_name(node)] = at
        return out

    def unreachable_since(
        self, name: str, stamped: datetime | None, *, now: datetime, beat: datetime | None = None
    ) -> datetime | None:
        """Since when (operator's clock) the node's agent reports Tetragon unreachable, given the
        agent's ``lastTransitionTime`` ``stamped`` (None: it does not say, and nothing is assumed)
        and the report's ``heartbeatTime`` ``beat`` (the same clock). A transition first seen with
        no earlier one (the operator just started) is taken as of how long the agent says it has
        lasted, ``beat`` minus ``stamped``, before now: a node clock behind made a restarted
        operator read it as old and turn its policies Degraded at once (without ``beat``: the
        earlier of ``stamped`` and now)."""
        return _since(self._down, name, stamped, now=now, beat=beat)

    def no_source_since(
        self, name: str, stamped: datetime | None, *, now: datetime, beat: datetime | None = None
    ) -> datetime | None:
        """Since when (operator's clock) the node's agent has had no event source while Tetragon
        answers, given its ``EventSource=False`` ``lastTransitionTime`` ``stamped`` (None: it does not
        say, and nothing is assumed): timed as ``unreachable_since`` is, so a restarted operator
        finds the same answer whatever the node's clock."""
        return _since(self._deaf, name, stamped, now=now, beat=beat)

    def not_in_sync_since(self, name: str, stamped: str, elapsed: float | None, *, now: datetime) -> datetime:
        """Since when (operator's clock) the node's registry is not in sync, given the condition's
        ``lastTransitionTime`` text ``stamped`` and ``elapsed``, how long the agent says it has lasted
        by its own clock (``node_backing.registry_transition``; None: from now). Kept per transition,
        so later heartbeats do not move it."""
        before = self._unsynced.get(name)
        if before is not None and before[0] == stamped:
            return before[1]
        at = now - timedelta(seconds=min(elapsed or 0.0, 3.2e8))  # ~10 years: no year before 1
        if before is not None and before[0] is None:  # seen in sync then: out of sync only since
            at = max(at, min(before[1], now))
        self._unsynced[name] = (stamped, at)
        return at

    def in_sync(self, name: str, *, now: datetime) -> None:
        """The node's registry is in sync (or not reported) as of ``now``: its next
        RegistryNotInSync is timed anew, and not from before ``now``."""
        self._unsynced[name] = (None, now)

    def outdated_since(self, name: str, template: str, *, now: datetime, timed: bool) -> datetime | None:
        """Since when (operator's clock) the node's report has been for another agent pod template
        than ``template`` while its DaemonSet said every agent updated and ready (``timed``; before
        that the DaemonSet's own rollout is under way and nothing is timed: None)."""
        if not timed:
            self._outdated.pop(name, None)
            return None
        before = self._outdated.get(name)
        if before is not None and before[0] == template:
            return before[1]
        self._outdated[name] = (template, now)
        return now

    def silent_since(self, name: str, *, now: datetime, timed: bool) -> datetime | None:
        """Since when (operator's clock) the operator has seen the node's report stale while an agent
        pod of its observer runs there and the DaemonSet said every agent updated and ready
        (``timed``; before that nothing is timed: None)."""
        if not timed:
            self._silent.pop(name, None)
            return None
        return self._silent.setdefault(name, now)

    def reporting(self, name: str) -> None:
        """The node's report is fresh: a later silence is timed anew."""
        self._silent.pop(name, None)

    def current(self, name: str) -> None:
        """The node reports the agent pod template wanted (or none): nothing outdated to time."""
        self._outdated.pop(name, None)

    def forget(self, name: str) -> None:
        """The ObservationNode is gone: one made again under its name is judged by its own stamp."""
        if len(self._forgotten) >= MAX_FORGOTTEN:  # bounded (nodes whose names never come back)
            self._forgotten.clear()  # one made again is then judged by the labels, as at a restart
        self._forgotten.add(name)
        self._unstamped.discard(name)
        self._seen.pop(name, None)
        self._down.pop(name, None)
        self._deaf.pop(name, None)
        self._unsynced.pop(name, None)
        self._outdated.pop(name, None)
        self._silent.pop(name, None)


def _since(
    kept: dict[str, tuple[datetime, datetime]],
    name: str,
    stamped: datetime | None,
    *,
    now: datetime,
    beat: datetime | None,
) -> datetime | None:
    """``Heartbeats.unreachable_since`` and ``no_source_since``: one transition per node in ``kept``."""
    if stamped is None:
        kept.pop(name, None)
        return None
    before = kept.get(name)
    if before is not None and before[0] == stamped:
        return before[1]
    if before is None and beat is not None:
        lasted = min(max(0.0, (beat - stamped).total_seconds()), 3.2e8)  # ~10 years: no year before 1
        at = now - timedelta(seconds=lasted)
    else:
        at = now if before is not None else min(now, stamped)
    kept[name] = (stamped, at)
    return at
