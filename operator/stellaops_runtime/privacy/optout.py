"""Pod opt-out: drop every event of a pod that asked not to be observed, before anything counts it.

A user opts a pod out with the annotation ``stellaops.io/observe-level:
None`` (docs/operator.md, Posture). Tetragon still traces the pod's processes
(its base sensor sees every exec and exit on the node), so the agent must
drop those events itself, first thing after the adapter: before the gap
tracker notes the pod's container, the privacy filter, the frame
canonicalizer and the hot-symbol aggregator. Nothing of them is redacted,
resolved, counted, sampled or stored. A throttle Tetragon reports for an
opted-out pod's cgroup then names a container the agent never noted, so it
is a node-wide gap (every image on the node is unknown while it lasts),
never a row naming the pod's image.

The agent learns of the opt-out in one of two ways, either enough:

- the annotation itself, when Tetragon exports pod annotations (v1.5+, run
  with ``--enable-pod-annotations``): read with the operator's own parser
  (``controller.posture.opts_out``), so both agree on spelling, case and
  whitespace, and an invalid value is ignored by both;
- the label ``stellaops.io/observe-off: "true"``, which the operator sets on
  every pod the annotation opts out (Tetragon exports labels with every
  event). Events from before the operator labelled the pod are not
  recognised this way: that is why ``--enable-pod-annotations`` is
  recommended.

Dropped events are counted by how the opt-out was recognised (``annotation``
first, then ``label``); the agent exports the counts as
``stellaops_runtime_events_opted_out_total{reason}``. Nothing else about the
event is kept. Observation windows are made from received events only, so a
dropped event never makes a "not observed" answer claim the pod was watched.

Pure and cheap: two dict look-ups an event, no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter

from stellaops_runtime.contracts.events import PodInfo, RuntimeCallEvent
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION, OBSERVE_OFF_LABEL, opts_out

# Reasons, in the order they are checked (the metric's label values).
REASONS = ("annotation", "label")


def opt_out_reason(pod: PodInfo | None) -> str | None:
    """How ``pod`` says it opted out (``annotation`` or ``label``), or None if it did not.

    Values of the wrong type (a map that is not a dict, a value that is not a
    string) say nothing: the adapters already reject such events, and the
    operator, which never sees them, would ignore them too.
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


class OptOut:
    """The per-event stage: ``drops(ev)`` is True (and counted) for an event of an opted-out pod."""

    __slots__ = ("dropped",)

    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter()  # events dropped, by reason

    def drops(self, ev: RuntimeCallEvent) -> bool:
        """Whether ``ev`` belongs to an opted-out pod and must go no further (counted if so)."""
        reason = opt_out_reason(ev.pod)
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
