"""Pod opt-out: drop every event of a pod that asked not to be observed, before anything counts it.

A user opts a pod out with the annotation ``stellaops.io/observe-level:
None`` (or ``off``, ``false``, ``no``..., or any value that is not a level:
it fails closed; docs/operator.md, Posture). Tetragon still traces the pod's processes
(its base sensor sees every exec and exit on the node), so the agent must
drop those events itself, first thing after the adapter: before the gap
tracker notes the pod's container, the privacy filter, the frame
canonicalizer and the hot-symbol aggregator. Nothing of them is redacted,
resolved, counted, sampled or stored. A throttle Tetragon reports for an
opted-out pod's cgroup then names a container the agent never noted, so it
is a node-wide gap (every image on the node is unknown while it lasts),
never a row naming the pod's image.

The agent learns of the opt-out in one of three ways, any one enough:

- the annotation itself, when Tetragon exports pod annotations (v1.5+, run
  with ``--enable-pod-annotations``): read with the operator's own parser
  (``contracts.posture.opts_out``), so both agree on spelling, case,
  whitespace and invalid values, which opt the pod out on both sides;
- the label ``stellaops.io/observe-off: "true"``, which the operator sets on
  every pod the annotation opts out (Tetragon exports labels with every
  event). Events from before the operator labelled the pod are not
  recognised this way: that is why ``--enable-pod-annotations`` is
  recommended;
- the operator's list of opted-out pods (uid, namespace, name), which it
  renders into the probe ConfigMap (``optedOut`` in ``probes.json``,
  controller/render_policy.py) and the agent re-reads when the mounted file
  changes (agent/optout_watch.py): an event of a pod with a uid matches by
  uid, one without (Tetragon sends none) by namespace and name. This is the
  one way that reaches events which carry neither the annotation nor the
  label: the agent's own BCC probes (their pod comes from the container
  runtime, lifecycle/lookup.py), a Tetragon without
  ``--enable-pod-annotations``, events from before the operator labelled the
  pod.

Events of the agent's own BCC probes carry no pod labels or annotations;
their pod is filled in from the container registry (lifecycle/lookup.py),
which reads, for containers created by containerd's CRI plugin, the pod's
uid from the ``io.kubernetes.pod.uid`` label and the pod's
``stellaops.io/observe-level`` annotation and ``stellaops.io/observe-off``
label from the pod's sandbox container (its labels, and the PodSandboxConfig
in its ``io.cri-containerd.sandbox.metadata`` extension). Those are fixed
when the pod is created; an annotation added later reaches such events
through the operator's list. The same record serves a Tetragon event that
carries no observe-level annotation of its own (Tetragon without
``--enable-pod-annotations``): ``drops`` asks it (``PodRegistry``) by the
event's container id, so a pod created opted out is dropped from its first
event, before the operator's label or list reaches the agent; an event that
carries the annotation is decided by that, its current value.

The record is the pod's creation: a pod created opted out and annotated with
a level since would stay dropped until re-created. The operator names every
pod whose annotation now names a level, by uid (``optedIn`` in ``probes.json``,
controller/opted_out.py); a pod it names is no longer dropped for what the
record says (its annotation or label at creation), from the moment the agent
reads the list: :meth:`OptOut.record_reason`. It never speaks over what an
event carries itself (Tetragon's current annotation or label) or over the
operator's ``optedOut``, and a pod re-created under the same name is another
uid. Events before that moment stay dropped, their time an opted-out gap:
events from before it read late (a restarted agent reading the export lines
written while none ran) too, by their time, and they are counted in
``before_opted_in`` so that the fast path never remembers such a drop.

Dropped events are counted by how the opt-out was recognised (``annotation``
first, then ``label``, then ``operator``); the agent exports the counts as
``stellaops_runtime_events_opted_out_total{reason}``. Nothing else about the
event is kept. Observation windows are made from received events only, so a
dropped event never makes a "not observed" answer claim the pod was watched.

Pure and cheap: a few dict and set look-ups an event, no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from stellaops_runtime.contracts.events import PodInfo, RuntimeCallEvent
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION, OBSERVE_OFF_LABEL, opts_out

# Reasons, in the order they are checked (the metric's label values).
REASONS = ("annotation", "label", "operator")
# The source of the agent's own BCC probes' events (native/events.SOURCE, not imported: the agent on
# a Tetragon node never loads the native side), whose pod always comes from the runtime's record.
OWN_PROBES = "bcc"


def _text(v: object) -> str:
    return v if type(v) is str else ""


def opt_out_reason(pod: PodInfo | None) -> str | None:
    """How ``pod`` says it opted out (``annotation`` or ``label``), or None if it did not.

    Maps of the wrong type (not a dict) say nothing: the adapters already
    reject such events. An annotation value that is not a string (the
    adapters reject those too) fails closed, as ``opts_out`` reads any value
    that is not a level.
    """
    if pod is None:
        return None
    annotations = pod.annotations
    if annotations and type(annotations) is dict and opts_out(annotations.get(OBSERVE_LEVEL_ANNOTATION)):
        return "annotation"
    labels = pod.labels
    if labels and type(labels) is dict and labels.get(OBSERVE_OFF_LABEL) == "true":
        return "label"
    return None


class PodRegistry(Protocol):
    """The container runtime's record of pods (lifecycle/lookup.ContainerLookup)."""

    def opted_out_by_id(self, container_id: str) -> str: ...

    def pod_by_container_id(self, container_id: str) -> PodInfo | None: ...


def _names_a_level(pod: PodInfo | None) -> bool:
    """Whether the event itself carries the observe-level annotation (then it, the current value, decides)."""
    return pod is not None and type(pod.annotations) is dict and OBSERVE_LEVEL_ANNOTATION in pod.annotations


class OptOut:
    """The per-event stage: ``drops(ev)`` is True (and counted) for an event of an opted-out pod."""

    __slots__ = ("_bare", "_in", "_names", "_uids", "before_opted_in", "dropped")

    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter()  # events dropped, by reason
        self._uids: frozenset[str] = frozenset()  # the operator's list (set_operator)
        self._names: frozenset[tuple[str, str]] = frozenset()
        self._bare: frozenset[tuple[str, str]] = frozenset()  # entries without a uid, by name
        self._in: dict[str, int] = {}  # uid the operator reads at a level (optedIn) -> since (wall ns)
        self.before_opted_in = 0  # events the record dropped only for their time (before the list)

    def set_operator(
        self, pods: Iterable[tuple[str, str, str]], opted_in: Iterable[str] = (), read_ns: int = 0
    ) -> bool:
        """Replace the operator's lists: opted-out pods, (namespace, name, uid) each, and the uids of
        pods whose annotation names a level (``optedIn``); True if either changed.

        An entry without a uid matches every event by namespace and name; one
        without a namespace or name matches by uid only. A uid in both lists
        is taken as opted out. ``read_ns``: when the agent read the lists (wall
        clock); a uid ``optedIn`` names from now on speaks over the record for
        events from then on only (0: for every event).
        """
        pods = list(pods)
        uids = frozenset(uid for _, _, uid in pods if uid)
        names = frozenset((ns, name) for ns, name, _ in pods if ns and name)
        bare = frozenset((ns, name) for ns, name, uid in pods if ns and name and not uid)
        at_level = frozenset(u for u in opted_in if u and type(u) is str) - uids
        same_in = at_level == self._in.keys()
        if uids == self._uids and names == self._names and bare == self._bare and same_in:
            return False
        self._uids, self._names, self._bare = uids, names, bare
        self._in = {u: self._in.get(u, read_ns) for u in at_level}  # a uid still named keeps its time
        return True

    def record_reason(self, pod: PodInfo | None, at_ns: int = 0) -> str | None:
        """:func:`opt_out_reason` of a pod as the container runtime's record gives it (its annotation
        and label at its creation): None once the operator's ``optedIn`` names its uid, for an
        event at ``at_ns`` (0: now) no earlier than the agent read that."""
        reason = opt_out_reason(pod)
        if reason is not None and self._in and pod is not None and self._spoken_over(_text(pod.uid), at_ns):
            return None
        return reason

    def _spoken_over(self, uid: str, at_ns: int) -> bool:
        """Whether ``optedIn`` speaks over the record of pod ``uid`` for an event at ``at_ns``."""
        since = self._in.get(uid)
        return since is not None and not (0 < at_ns < since)

    @property
    def operator_pods(self) -> int:
        """How many pods the operator's list names (by uid, else by name)."""
        return max(len(self._uids), len(self._names))

    def operator_reason(self, pod: PodInfo | None) -> str | None:
        """``operator`` when the operator's list names ``pod``: by uid if the event has one, else by name."""
        if pod is None or not (self._uids or self._names):
            return None
        uid = _text(pod.uid)
        key = (_text(pod.namespace), _text(pod.name))
        # A uid names one pod: a same-named pod created later is not the one that opted out.
        hit = (uid in self._uids or key in self._bare) if uid else key in self._names
        return "operator" if hit else None

    def drops(
        self, ev: RuntimeCallEvent, registry: PodRegistry | None = None, *, pod_from_record: bool = False
    ) -> bool:
        """Whether ``ev`` belongs to an opted-out pod and must go no further (counted if so).

        ``registry``: the container runtime's record of the pod, read when the event carries no
        observe-level annotation of its own (its sandbox's annotation, fixed at the pod's
        creation; not its label, which the event carries as it is now), before the operator's list.
        An event of the agent's own probes knows only a cgroup, and a Tetragon event without a pod
        (no Kubernetes API, a pod its cache does not know yet) only a container id: its pod is
        that record's (``pod_from_record``: Pipeline._finish, lifecycle/lookup.enrich), so the
        operator's ``optedIn`` speaks over it (:meth:`record_reason`).
        """
        pod, at = ev.pod, ev.timestamp_ns
        from_record = pod_from_record or ev.source == OWN_PROBES
        reason = self.record_reason(pod, at) if from_record else opt_out_reason(pod)
        if reason is not None and from_record and pod is not None and _text(pod.uid) in self._in:
            self.before_opted_in += 1  # the list names it, but only since after this event
        c = ev.container
        if reason is None and registry is not None and c is not None and c.id and not _names_a_level(pod):
            reason = registry.opted_out_by_id(c.id) or None
            if reason is not None and self._in:  # the record's word, unless optedIn names the pod since
                rec = registry.pod_by_container_id(c.id)
                if rec is not None and _text(rec.uid) in self._in:
                    if self._spoken_over(_text(rec.uid), at):
                        reason = None
                    else:
                        self.before_opted_in += 1
        if reason is None:
            if not (self._uids or self._names):  # no list: no call per event
                return False
            reason = self.operator_reason(pod)
            if reason is None:
                return False
        self.dropped[reason] += 1
        return True

    def counts(self) -> dict[str, int]:
        """Events dropped by reason, every reason present (for the metric)."""
        return {r: self.dropped[r] for r in REASONS}

    @property
    def total(self) -> int:
        return sum(self.dropped.values())
