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


S = 1_000_000_000
T0 = 1_795_510_800  # process_exec's second 0


def _bare(i: int, second: int | None = None) -> tuple[bytes, int]:
    """A Tetragon event naming only its container (``process.docker``) of process ``i``, at
    ``second`` (default ``i``): the same process at another time is a repeat for the fast path."""
    m = events_pb2.GetEventsResponse.FromString(_exec("private", i))
    m.process_exec.process.ClearField("pod")
    m.process_exec.process.docker = _cid("private")[:31]
    m.time.seconds = T0 + (i if second is None else second)
    return m.SerializeToString(), 1


def _bare_kprobe(second: int) -> tuple[bytes, int]:
    """A call of one process (always the same: a repeat for the fast path) naming only its container."""
    m = events_pb2.GetEventsResponse(node_name="node-1")
    k = m.process_kprobe
    k.process.exec_id, k.process.binary, k.process.pid.value = "private-k", "/usr/bin/app", 4242
    k.process.docker = _cid("private")[:31]
    k.function_name, k.policy_name = "__x64_sys_write", "stellaops-syscalls"
    f = k.user_stack_trace.add()
    f.module, f.offset, f.symbol = "/usr/lib/libx.so", 0x1234, "hint"
    m.time.seconds = T0 + second
    return m.SerializeToString(), 1


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "no-fast-path"])
def test_events_from_before_the_agent_read_the_list_stay_dropped_when_read_late(
    tmp_path: Path, fast_path: bool
) -> None:
    """A restarted agent reads the JSON export's lines written while none ran (sources/
    export_checkpoint.py), after reading ``optedIn`` at its start: a pod created opted out and given
    a level while no agent ran had those lines counted, the time it was opted out among them. The
    list speaks over the record only for events from when the agent read it; earlier ones stay
    dropped (a gap), as the docs say, and are never remembered by the fast path as dropped for good."""
    path = tmp_path / "probes.json"
    pipeline = _watched_pipeline(path, fast_path)
    assert pipeline.optout_watch is not None
    pipeline.optout_watch.wall = lambda: (T0 + 100) * S  # the agent reads the list at second 100
    pipeline.container_lookup = ContainerLookup(_records("private"), "containerd")
    _probes(path, opted_in=["uid-private"])
    labelled = process_exec("private", 5, container_id=_cid("private"), digest=_digest("private"))
    backlog = [_bare(i % 2) for i in range(6)] + [(labelled, 1)]  # seconds 0, 1 and 5: read late
    pipeline.process_proto(backlog)
    assert pipeline.optout.counts() == {"annotation": 7, "label": 0, "operator": 0}
    assert pipeline.processed == 0
    pipeline.process_proto([_bare_kprobe(10 + i) for i in range(6)])  # repeats, from before the read
    assert pipeline.optout.counts()["annotation"] == 13 and pipeline.processed == 0
    live = [_bare(i % 2, 100 + i) for i in range(6)] + [_bare_kprobe(110 + i) for i in range(6)]
    pipeline.process_proto(live)  # the same processes' events after the read: never dropped for good
    assert pipeline.optout.counts()["annotation"] == 13 and pipeline.processed == 12
    deltas, windows = pipeline.drain()
    assert deltas and min(d.first_seen_ns for d in deltas) >= (T0 + 100) * S  # nothing from before
    first_minute = [w for w in windows if w.window_start_ns == T0 * S]
    assert first_minute and all(w.source == "opted_out" for w in first_minute)
