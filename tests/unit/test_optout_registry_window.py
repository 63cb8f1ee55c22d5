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
    """A process_exec of the pod as Tetragon without --enable-pod-annotations sends it (labels only)."""
    m = events_pb2.GetEventsResponse(node_name="node-1")
    m.time.seconds = 1_795_510_800 + i
    p = m.process_exec.process
    p.exec_id = f"{pod}-{i}"
    p.pid.value = 100 + i
    p.binary = "/usr/bin/app"
    p.arguments = "--token=s3cr3t-value-xyz"
    p.pod.namespace = "shop"
    p.pod.name = pod
    p.pod.container.id = f"containerd://{_cid(pod)}"
    p.pod.container.image.id = f"registry.example.com/shop/{pod}@{_digest(pod)}"
    p.pod.pod_labels["app"] = pod  # no stellaops.io/observe-off yet: the operator has not labelled it
    return m.SerializeToString()


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
