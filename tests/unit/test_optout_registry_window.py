"""A pod created opted out is dropped from its first Tetragon event, before the operator's label or list.

Tetragon sends a pod's labels with every event but its annotations only with
``--enable-pod-annotations``. Without that flag the agent learned of a pod
created with ``stellaops.io/observe-level: None`` (or ``off``, or any value
that is not a level) from the operator's ``observe-off`` label, written after
the operator saw the pod, or from the operator's list, which reaches the node
through a mounted ConfigMap up to a minute later: until then the pod's events
were counted. The agent's container registry (containerd's CRI sandbox holds
the pod's annotations from its creation, lifecycle/lookup.py) already knew;
the pipeline now reads it for Tetragon events too, through the real adapter,
with and without the fast path.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.wire.tetragon import events_pb2
from tests.tetragon_exec import process_exec

# pod -> its annotation (None: none); only "web" and "plain" stay observed
PODS = {"private": "None", "quiet": "off", "typo": "Pasive", "web": "Passive", "plain": None}


def _digest(pod: str) -> str:
    return "sha256:" + f"{sorted(PODS).index(pod) + 1:x}" * 64


def _cid(pod: str) -> str:
    return f"{sorted(PODS).index(pod) + 1:x}" * 64


def _records(pod: str) -> list[ContainerRecord]:
    """The pod's sandbox (with its annotation, as containerd's CRI plugin keeps it) and its container."""
    keys = {
        "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.pod.name": pod,
        "io.kubernetes.pod.uid": f"uid-{pod}",
    }
    level = PODS[pod]
    sandbox = ContainerRecord(
        container_id="5" + _cid(pod)[1:], namespace="k8s.io", status="running", pid=1, cgroup_id=0,
        labels={**keys, "io.cri-containerd.kind": "sandbox"},
        pod_annotations={OBSERVE_LEVEL_ANNOTATION: level} if level is not None else {},
    )  # fmt: skip
    container = ContainerRecord(
        container_id=_cid(pod), namespace="k8s.io", image_digest=_digest(pod), status="running", pid=2,
        cgroup_id=100 + sorted(PODS).index(pod), labels={**keys, "io.kubernetes.container.name": "app"},
    )  # fmt: skip
    return [sandbox, container]


def _exec(pod: str, i: int) -> bytes:
    """A process_exec of the pod as Tetragon without --enable-pod-annotations sends it (labels only:
    no stellaops.io/observe-off yet, the operator has not labelled it)."""
    return process_exec(pod, i, container_id=_cid(pod), digest=_digest(pod))


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "no-fast-path"])
def test_tetragon_events_of_a_pod_created_opted_out_are_dropped_before_the_operator_labels_it(
    fast_path: bool,
) -> None:
    pipeline = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}),
        node_name="node-1",
        fast_path=fast_path,
    )
    pipeline.container_lookup = ContainerLookup([r for pod in PODS for r in _records(pod)], "containerd")
    pipeline._process_proto([(_exec(pod, i % 3), 1) for i in range(12) for pod in PODS])  # repeats too
    deltas, windows = pipeline.drain()

    assert pipeline.optout.counts() == {"annotation": 12 * 3, "label": 0, "operator": 0}
    assert {d.key.image_digest for d in deltas} == {_digest("web"), _digest("plain")}
    assert sum(d.invocation_count for d in deltas) == 24
    opted = {_digest(pod) for pod in ("private", "quiet", "typo")}
    assert {w.image_digest for w in windows if w.source == "opted_out"} == opted
    assert not any(w.image_digest in opted and w.gap_start_ns is None for w in windows)


def test_without_a_registry_entry_the_event_is_kept_as_before() -> None:
    """No record of the container (another runtime, a registry not filled yet): nothing to read."""
    pipeline = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}), node_name="node-1"
    )
    pipeline.container_lookup = ContainerLookup(_records("web"), "containerd")
    pipeline._process_proto([(_exec("private", 0), 1)])
    deltas, _ = pipeline.drain()
    assert pipeline.optout.total == 0 and {d.key.image_digest for d in deltas} == {_digest("private")}


def test_an_annotation_the_event_carries_decides_over_the_runtime_s_record() -> None:
    """With --enable-pod-annotations the event holds the pod's current value: a pod created opted
    out and annotated Passive since is observed; one created observed and opted out since is not."""
    pipeline = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}), node_name="node-1"
    )
    pipeline.container_lookup = ContainerLookup(_records("private") + _records("web"), "containerd")
    now_in = events_pb2.GetEventsResponse.FromString(_exec("private", 0))
    now_in.process_exec.process.pod.pod_annotations[OBSERVE_LEVEL_ANNOTATION] = "Passive"
    now_out = events_pb2.GetEventsResponse.FromString(_exec("web", 1))
    now_out.process_exec.process.pod.pod_annotations[OBSERVE_LEVEL_ANNOTATION] = "off"
    pipeline._process_proto([(now_in.SerializeToString(), 1), (now_out.SerializeToString(), 1)])
    deltas, _ = pipeline.drain()
    assert pipeline.optout.counts() == {"annotation": 1, "label": 0, "operator": 0}
    assert {d.key.image_digest for d in deltas} == {_digest("private")}


def test_a_label_set_by_hand_at_creation_does_not_outlive_the_operator_s_removal() -> None:
    """The operator's opt-out is the annotation: a ``stellaops.io/observe-off`` label set by hand
    without it is removed by the operator, which reports the pod observed at its policies' level
    (docs/operator.md). A Tetragon event carries the pod's current labels; the runtime's record keeps
    the labels of the pod's creation. Reading that record's label for Tetragon events dropped such a
    pod for its whole life, unseen by the operator (no observe-off label left, no Warning, posture at
    its level): a way to hide a pod from policies that ask to watch it."""
    pipeline = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}), node_name="node-1"
    )
    hand = _records("plain")
    hand[0].labels["stellaops.io/observe-off"] = "true"  # the sandbox: the label as the pod was created
    pipeline.container_lookup = ContainerLookup(hand, "containerd")
    pipeline._process_proto([(_exec("plain", i), 1) for i in range(3)])  # labels now: no observe-off
    deltas, windows = pipeline.drain()
    assert pipeline.optout.counts() == {"annotation": 0, "label": 0, "operator": 0}
    assert sum(d.invocation_count for d in deltas if d.key.image_digest == _digest("plain")) == 3
    assert not any(w.source == "opted_out" for w in windows)
    # while Tetragon still sends the label, it decides (the event's current labels)
    labelled = events_pb2.GetEventsResponse.FromString(_exec("plain", 5))
    labelled.process_exec.process.pod.pod_labels["stellaops.io/observe-off"] = "true"
    pipeline._process_proto([(labelled.SerializeToString(), 1)])
    assert pipeline.optout.counts() == {"annotation": 0, "label": 1, "operator": 0}


def test_a_pod_created_opted_out_and_given_a_level_later_stays_a_gap_never_a_window() -> None:
    """Tetragon without --enable-pod-annotations: the pod was created at None, then annotated
    EbpfDeep. The operator removed its observe-off label, gave it the level labels and took it off
    its list; the runtime's record still says None. Its events stay dropped until it is re-created
    (docs/operator.md): its image's time is an opted-out gap, never a window a "not observed" could
    rest on (its silent time too: test_lifecycle_optout_runs.py)."""
    pipeline = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}), node_name="node-1"
    )
    pipeline.container_lookup = ContainerLookup(_records("private"), "containerd")
    pipeline.optout.set_operator([])  # the operator's list no longer names it
    levels = {"app": "private", "stellaops.io/observe": "true", "stellaops.io/observe-deep": "true"}
    cid, digest = _cid("private"), _digest("private")
    payloads = [
        process_exec("private", i, container_id=cid, digest=digest, labels=levels) for i in range(0, 600, 30)
    ]
    pipeline._process_proto([(p, 1) for p in payloads])
    deltas, windows = pipeline.drain()
    assert pipeline.optout.counts() == {"annotation": 20, "label": 0, "operator": 0}
    assert deltas == []
    assert windows and all(w.source == "opted_out" and w.gap_start_ns is not None for w in windows)
    assert len({w.window_start_ns for w in windows}) == 10  # every minute of the ten it ran
