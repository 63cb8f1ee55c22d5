"""The pods opted out by their annotation, as the operator lists them in the probe ConfigMap.

A pod annotated ``stellaops.io/observe-level: None`` must not be observed on
any node. The agents learn it from the annotation or the operator's label
when their source exports them; events that carry neither (the agent's own
BCC probes, a Tetragon without ``--enable-pod-annotations``) are matched
against this list, which ``render_policy.render_probe_configmap`` writes as
``optedOut`` and the agents re-read from the mounted file
(agent/optout_watch.py, privacy/optout.py). Sorted and deduplicated so that
the same pods always give the same bytes; bounded so the ConfigMap stays
under its 1 MiB with the policies. Pure: no I/O.

The agents' container-runtime record of a pod (lifecycle/lookup.py) is its
annotation at the pod's creation, and they drop a pod created opted out from
its first event, before this list reaches them. A pod created opted out and
annotated with a level since would stay dropped until re-created; so the
operator also names, by uid, every pod whose annotation now names a level
(``optedIn``, :func:`opted_in_entries`), and the agents take that over the
record (privacy/optout.py). By uid only: a pod re-created under the same name
is another pod, whose record speaks for it. A pod left out (past the bound)
stays dropped where the record says so: a gap, never a count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stellaops_runtime.controller.naming import canonical_json

# The ``optedOut`` list holds at most this many pods and this many bytes of JSON, so
# the ConfigMap stays well under its 1 MiB with the policies; any more are counted in optedOutOmitted.
MAX_OPTED_OUT = 5_000
MAX_OPTED_OUT_BYTES = 512 << 10
# The ``optedIn`` list (uids of pods whose annotation names a level): bounded the same way.
MAX_OPTED_IN = 5_000
MAX_OPTED_IN_BYTES = 200 << 10


@dataclass(frozen=True, slots=True, order=True)
class OptedOutPod:
    """A pod whose ``stellaops.io/observe-level`` opts it out, as the agents match it."""

    namespace: str
    name: str
    uid: str

    def to_json(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid}


def opted_out_entries(pods: Iterable[OptedOutPod]) -> tuple[list[dict[str, str]], int]:
    """The ``optedOut`` list (sorted, deduplicated, bounded) and how many pods did not fit."""
    ordered = sorted(set(pods))
    out: list[dict[str, str]] = []
    size = 0
    for pod in ordered:
        entry = pod.to_json()
        size += len(canonical_json(entry)) + 1
        if len(out) >= MAX_OPTED_OUT or size > MAX_OPTED_OUT_BYTES:
            break
        out.append(entry)
    return out, len(ordered) - len(out)


def opted_in_entries(uids: Iterable[str], max_bytes: int = MAX_OPTED_IN_BYTES) -> tuple[list[str], int]:
    """The ``optedIn`` list (the uids, sorted, deduplicated, bounded) and how many did not fit.

    ``max_bytes``: the room left for it (never more than :data:`MAX_OPTED_IN_BYTES`).
    """
    ordered = sorted({u for u in uids if u})
    out: list[str] = []
    size = 0
    limit = min(max_bytes, MAX_OPTED_IN_BYTES)
    for uid in ordered:
        size += len(canonical_json(uid)) + 1
        if len(out) >= MAX_OPTED_IN or size > limit:
            break
        out.append(uid)
    return out, len(ordered) - len(out)
