"""The operator's ``optedIn`` speaks over the runtime's record of a pod, and only over that record.

A pod created opted out and given a level later is named by uid in the probe ConfigMap's
``optedIn`` (controller/opted_out.py); the agent then no longer drops it for what the container
runtime's record says (its annotation at creation, privacy/optout.OptOut.record_reason). A
Tetragon event without a pod is given the record's pod by the container lookup, so optedIn speaks
over it as over the agent's own probes' events; what an event carries itself (its current
annotation, the operator's observe-off label) is never spoken over. Split from
test_optout_registry_window.py (its helpers), which holds the rest of the window story.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.wire.tetragon import events_pb2
from tests.tetragon_exec import process_exec
from tests.unit.test_optout_registry_window import _cid, _digest, _exec, _probes, _records, _watched_pipeline


def test_the_level_list_never_overrides_what_an_event_naming_the_listed_uid_carries(tmp_path: Path) -> None:
    """Tetragon (v1.x) sends the pod's uid. A pod given a level and then opted out again is still in
    the agent's ``optedIn`` until the next read: an event that carries its current annotation or
    the operator's observe-off label is dropped all the same; only the record's word is spoken over."""
    path = tmp_path / "probes.json"
    pipeline = _watched_pipeline(path)
    pipeline.container_lookup = ContainerLookup(_records("private"), "containerd")
    _probes(path, opted_in=["uid-private"])
    cid, digest = _cid("private"), _digest("private")
    carried = [
        ({"app": "private"}, {OBSERVE_LEVEL_ANNOTATION: "off"}),  # --enable-pod-annotations
        ({"app": "private", "stellaops.io/observe-off": "true"}, {}),  # the operator's label
        ({"app": "private"}, {}),  # nothing of its own: the record's None, spoken over by optedIn
    ]
    payloads = []
    for i, (labels, own) in enumerate(carried):
        raw = process_exec("private", i, container_id=cid, digest=digest, labels=labels, annotations=own)
        m = events_pb2.GetEventsResponse.FromString(raw)
        m.process_exec.process.pod.uid = "uid-private"
        payloads.append((m.SerializeToString(), 1))
    pipeline.process_proto(payloads)
    assert pipeline.optout.counts() == {"annotation": 1, "label": 1, "operator": 0}
    assert pipeline.processed == 1


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "no-fast-path"])
def test_tetragon_events_without_a_pod_take_the_level_list_over_the_record_they_are_given(
    tmp_path: Path, fast_path: bool
) -> None:
    """Tetragon without its Kubernetes API (or before its pod cache knows the pod) sends only the
    container id (``process.docker``): the pod the opt-out reads is the runtime's record, given by
    the container lookup, as for the agent's own probes. Its annotation at creation was taken for
    one the event carried, so the operator's ``optedIn`` never spoke over it: such a pod stayed
    dropped (a gap) until re-created. Still dropped without the list, or once opted out again."""
    path = tmp_path / "probes.json"
    pipeline = _watched_pipeline(path, fast_path)
    pipeline.container_lookup = ContainerLookup(_records("private"), "containerd")

    def bare(i: int) -> tuple[bytes, int]:
        m = events_pb2.GetEventsResponse.FromString(_exec("private", i % 2))
        m.process_exec.process.ClearField("pod")
        m.process_exec.process.docker = _cid("private")[:31]
        return m.SerializeToString(), 1

    pipeline.process_proto([bare(i) for i in range(4)])  # repeats: the fast path's replays too
    assert pipeline.optout.counts()["annotation"] == 4 and pipeline.processed == 0
    _probes(path, opted_in=["uid-private"])
    pipeline.process_proto([bare(i) for i in range(4)])
    assert pipeline.optout.counts()["annotation"] == 4 and pipeline.processed == 4
    _probes(path, opted_out=[("private", "uid-private")], opted_in=["uid-private"])  # optedOut wins
    pipeline.process_proto([bare(i) for i in range(4)])
    assert pipeline.optout.counts() == {"annotation": 8, "label": 0, "operator": 0}
    deltas, _ = pipeline.drain()
    assert sum(d.invocation_count for d in deltas if d.key.image_digest == _digest("private")) == 4
