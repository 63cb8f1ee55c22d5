"""The native pod selection's metric families (agent/native_selection.py, agent/pod_view.py).

Split from the collector (agent/metrics.py) so the families live beside what
they count; built at scrape time from plain counters, like the others:

native_selection_dropped_total{reason}  native events dropped because no policy selecting their pod
                                        asks for their probe: no_pod, not_selected
native_selection_kept_total             native events of a filtered kind kept by a selecting policy
native_selection_kept_unlisted_total    native events of a filtered kind kept because their pod is not
                                        in the pod view yet (its labels unknown: never dropped for that)
native_selection_stacks_removed_total   kept syscall events whose stacks were removed (the pod is not
                                        labelled observe-deep, or no selecting policy asks for them)
native_pod_view_active                  1 while native events are selected by pod (a pod view was
                                        listed), 0 while the native probes are node-wide
native_pod_view_pods                    pods of this node in the view
native_pod_view_errors_total{kind}      listings that failed (config, api, io) and unusable items (bad)
native_selection_policy_errors_total    probe ConfigMap reads that failed (last policies kept)
                                        plus entries left out (they select no pod)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from stellaops_runtime.agent.metric_families import counter, gauge, labelled

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from stellaops_runtime.agent.native_selection import NativeSelection
    from stellaops_runtime.agent.pod_view import PodViewStats


def selection_metrics(sel: NativeSelection, view: PodViewStats | None) -> Iterator[Metric]:
    yield labelled(
        "native_selection_dropped",
        "Native probe events dropped because no policy selecting their pod asks for their probe.",
        "reason",
        dict(sel.dropped),
    )
    yield counter(
        "native_selection_kept", "Native probe events kept because a policy selecting their pod asks.",
        sel.kept,
    )  # fmt: skip
    yield counter(
        "native_selection_kept_unlisted",
        "Native probe events kept because their pod is not in the pod view yet (its labels are unknown).",
        sel.kept_unlisted,
    )
    yield counter(
        "native_selection_stacks_removed",
        "Kept native syscall events whose stacks were removed: no policy selecting the pod at EbpfDeep asks.",
        sel.stacks_removed,
    )
    yield gauge(
        "native_pod_view_active",
        "1 while native probe events are selected by pod, 0 while the native probes are node-wide.",
        1 if sel.active else 0,
    )
    yield gauge("native_pod_view_pods", "Pods of this node in the pod view.", view.pods if view else 0)
    yield labelled(
        "native_pod_view_errors",
        "Pod view listings that failed, by kind (config, api, io), and unusable list items (bad).",
        "kind",
        {k: 0 for k in ("config", "api", "io", "bad")} | (dict(view.errors) if view else {}),
    )
    yield counter(
        "native_selection_policy_errors",
        "Probe ConfigMap reads for pod selection that failed, plus entries left out (they select no pod).",
        sel.read_errors + sel.bad_entries_total,
    )
