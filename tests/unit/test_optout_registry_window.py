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

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.optout_watch import OptOutWatch
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crds import API_VERSION
from stellaops_runtime.contracts.events import PodInfo
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION, Posture
from stellaops_runtime.controller import opted_out
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, render_probe_configmap
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.native.config import NativeConfigError
from stellaops_runtime.native.policy_config import MAX_OPTED_IN, parse_opted_in
from stellaops_runtime.privacy.optout import OptOut
from stellaops_runtime.wire.tetragon import events_pb2
from tests.tetragon_exec import process_exec
from tests.unit.test_native_pod_selection_pipeline import bcc_exec

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
    its list; the runtime's record still says None. Until the agent reads the operator's ``optedIn``
    naming the pod (below), or for good if its annotation was removed rather than set to a level
    (the operator names only pods at a level), its events stay dropped (docs/operator.md): its
    image's time is an opted-out gap, never a window a "not observed" could rest on (its silent
    time too: test_lifecycle_optout_runs.py). The level labels alone never override the record: a
    pod created None with copied level labels would be observed while the operator is down."""
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


# --- given a level later: observed from when the agent reads the operator's list -----------------------

S = 1_000_000_000
W = 60 * S


def _probes(path: Path, *, opted_out: Iterable[tuple[str, str]] = (), opted_in: Iterable[str] = ()) -> None:
    """The probe ConfigMap's file as the kubelet replaces it (a new inode): the operator's lists,
    written as controller/render_policy.render_probe_configmap writes them
    (test_the_operator_writes_the_pods_at_a_level_and_the_agent_reads_them_back)."""
    doc: dict[str, object] = {"apiVersion": API_VERSION, "kind": "ProbeConfig", "policies": {}}
    if opted_out:
        doc["optedOut"] = [{"namespace": "shop", "name": n, "uid": u} for n, u in sorted(opted_out)]
    if opted_in:
        doc["optedIn"] = sorted(opted_in)
    tmp = path.with_suffix(".new")
    tmp.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))
    os.replace(tmp, path)


def _watched_pipeline(path: Path, fast_path: bool = True) -> Pipeline:
    _probes(path)
    cfg = {"symbols": {"enabled": False}, "attribution": {"enabled": False},
           "native": {"probeConfigFile": str(path)}}  # fmt: skip
    pipeline = Pipeline(parse_config(cfg), node_name="node-1", fast_path=fast_path)
    assert pipeline.optout_watch is not None
    pipeline.optout_watch.interval = 0.0
    # optedIn read at wall time 0: it speaks for the fixture's events whatever their time (their
    # time against the read's: test_optout_level_list_record.py)
    pipeline.optout_watch.wall = lambda: 0
    return pipeline


def _minutes(windows: Iterable[Any], digest: str) -> dict[int, set[str]]:
    """Minute of the run (0 = its first) -> its windows: "gap" (opted out, no event) or "watched"."""
    out: dict[int, set[str]] = {}
    for w in windows:
        if w.image_digest == digest:
            minute = (w.window_start_ns - 1_795_510_800 * S) // W
            gap = w.source == "opted_out" and w.event_count == 0 and w.posture is None
            out.setdefault(minute, set()).add("gap" if gap else "watched")
    return out


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "no-fast-path"])
def test_a_pod_created_opted_out_is_observed_from_when_the_agent_reads_its_level(
    tmp_path: Path, fast_path: bool
) -> None:
    """Created at None, annotated Passive since: the operator lists the pod's uid in ``optedIn``. Its
    events are dropped until the agent reads that list, counted from then; its earlier minutes stay
    opted-out gaps, none of them watched. Before, they stayed dropped until the pod was re-created."""
    path = tmp_path / "probes.json"
    pipeline = _watched_pipeline(path, fast_path)
    pipeline.container_lookup = ContainerLookup(_records("private") + _records("web"), "containerd")
    cid, digest = _cid("private"), _digest("private")
    levels = {"app": "private", "stellaops.io/observe": "true"}  # the operator's level label since

    def run(seconds: range) -> None:
        for _ in range(2):  # repeats: the fast path's replays too
            pipeline.process_proto(
                [
                    (process_exec("private", i, container_id=cid, digest=digest, labels=levels), 1)
                    for i in seconds
                ]
            )

    run(range(0, 300, 30))  # minutes 0-4: the operator's list does not say its level yet
    _probes(path, opted_in=["uid-private"])
    run(range(300, 600, 30))  # minutes 5-9
    deltas, windows = pipeline.drain()
    assert pipeline.optout.counts() == {"annotation": 20, "label": 0, "operator": 0}
    assert sum(d.invocation_count for d in deltas if d.key.image_digest == digest) == 20
    assert _minutes(windows, digest) == {m: {"gap" if m < 5 else "watched"} for m in range(10)}
    watched = [w for w in windows if w.image_digest == digest and w.source != "opted_out"]
    assert {(w.source, w.posture) for w in watched} == {("tetragon", Posture.PASSIVE)}


def test_a_pod_opted_out_later_keeps_what_came_before_and_is_a_gap_from_then(tmp_path: Path) -> None:
    """The reverse: created at Passive, annotated off since. Its events count until the agent learns
    of it (here the operator's list), are dropped from then, each minute after an opted-out gap; one
    drain after the change still holds every count from before it."""
    path = tmp_path / "probes.json"
    pipeline = _watched_pipeline(path)
    pipeline.container_lookup = ContainerLookup(_records("web"), "containerd")
    cid, digest = _cid("web"), _digest("web")

    def run(seconds: range) -> None:
        pipeline.process_proto(
            [(process_exec("web", i, container_id=cid, digest=digest), 1) for i in seconds]
        )

    run(range(0, 300, 30))
    _probes(path, opted_out=[("web", "uid-web")])
    run(range(300, 600, 30))
    deltas, windows = pipeline.drain()
    assert pipeline.optout.counts() == {"annotation": 0, "label": 0, "operator": 10}
    assert sum(d.invocation_count for d in deltas if d.key.image_digest == digest) == 10
    assert _minutes(windows, digest) == {m: {"watched" if m < 5 else "gap"} for m in range(10)}


def test_the_level_list_never_overrides_an_annotation_the_event_carries_or_another_pod(
    tmp_path: Path,
) -> None:
    """The operator's ``optedIn`` names a pod by uid and only speaks over the runtime's record of
    that pod: an event carrying its own (current) opt-out is dropped, a pod re-created under the
    same name (a new uid) created opted out is dropped, a pod not named stays dropped."""
    path = tmp_path / "probes.json"
    pipeline = _watched_pipeline(path)
    again = _records("private")
    for r in again:
        r.labels["io.kubernetes.pod.uid"] = "uid-private-2"  # the same name, re-created: a new uid
    pipeline.container_lookup = ContainerLookup(again + _records("quiet"), "containerd")
    _probes(path, opted_in=["uid-private", "uid-web"])
    off = process_exec(
        "private", 1, container_id=_cid("private"), digest=_digest("private"),
        annotations={OBSERVE_LEVEL_ANNOTATION: "off"},
    )  # fmt: skip
    pipeline.process_proto([(off, 1), (_exec("private", 2), 1), (_exec("quiet", 3), 1)])
    deltas, _ = pipeline.drain()
    assert pipeline.optout.counts() == {"annotation": 3, "label": 0, "operator": 0}
    assert deltas == []


def test_bcc_events_of_a_pod_created_opted_out_count_from_when_the_agent_reads_its_level(
    tmp_path: Path,
) -> None:
    """The agent's own probes know only a cgroup; the pod, and its annotation at creation, come
    from the runtime's record. The operator's ``optedIn`` speaks over that record too."""
    path = tmp_path / "probes.json"
    pipeline = _watched_pipeline(path)
    cgroup = 100 + sorted(PODS).index("private")
    pipeline.container_lookup = ContainerLookup(_records("private"), "containerd")
    pipeline.process_native([(bcc_exec(cgroup, 2), 1)] * 3)
    assert pipeline.optout.counts()["annotation"] == 3 and pipeline.processed == 0
    _probes(path, opted_in=["uid-private"])
    pipeline.process_native([(bcc_exec(cgroup, 2), 1)] * 3)
    assert pipeline.optout.counts()["annotation"] == 3 and pipeline.processed == 3
    _probes(path, opted_out=[("private", "uid-private")])  # and opted out again: the record's word again
    pipeline.process_native([(bcc_exec(cgroup, 2), 1)] * 3)
    assert pipeline.optout.counts() == {"annotation": 6, "label": 0, "operator": 0}
    assert pipeline.processed == 3


def test_the_operator_writes_the_pods_at_a_level_and_the_agent_reads_them_back(tmp_path: Path) -> None:
    """``optedIn``: the uids sorted and deduplicated, bounded (the rest counted, left as the record
    says), byte-identical to what _probes writes; hostile entries skipped and counted; an optedIn
    of the wrong type is read as empty (the record's word), never costing the file its optedOut."""
    cm = render_probe_configmap(
        name="p", namespace="agents", entries={}, owner=None, opted_in=["uid-b", "uid-a", "uid-b", ""]
    )
    raw = cm["data"][PROBE_CONFIG_KEY]
    _probes(tmp_path / "probes.json", opted_in=["uid-a", "uid-b"])
    assert raw == (tmp_path / "probes.json").read_text()
    assert parse_opted_in(raw.encode()) == (["uid-a", "uid-b"], 0)
    many = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(MAX_OPTED_IN + 7)]
    doc = json.loads(render_probe_configmap(name="p", namespace="a", entries={}, owner=None, opted_in=many)
                     ["data"][PROBE_CONFIG_KEY])  # fmt: skip
    assert len(doc["optedIn"]) == MAX_OPTED_IN == opted_out.MAX_OPTED_IN and doc["optedInOmitted"] == 7
    hostile = {"apiVersion": API_VERSION, "kind": "ProbeConfig", "policies": {},
               "optedIn": ["ok", 5, None, "", "a\x00b", "x" * 300, ["uid"], {"uid": "u"}]}  # fmt: skip
    assert parse_opted_in(json.dumps(hostile).encode()) == (["ok"], 7)
    stage = OptOut()
    path = tmp_path / "probes.json"
    watch = OptOutWatch(str(path), stage, interval=0.0)
    assert watch.poll() and stage.record_reason(_pod("uid-a")) is None
    for bad in ("uid-a", {"uid": "uid-a"}, 7):  # the wrong type: one bad entry, never the file refused
        doc = {**hostile, "optedIn": bad, "optedOut": [{"namespace": "shop", "name": "z", "uid": "uid-z"}]}
        assert parse_opted_in(json.dumps(doc).encode()) == ([], 1)
        tmp = path.with_suffix(".new")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)
        watch.poll()
        assert stage.record_reason(_pod("uid-a")) == "annotation"  # the record's word: dropped
        assert stage.operator_reason(_pod("uid-z")) == "operator"  # the file's optedOut still read
        _probes(path, opted_in=["uid-a"])
        assert watch.poll() and stage.record_reason(_pod("uid-a")) is None
    with pytest.raises(NativeConfigError):  # no ProbeConfig at all: refused, as for optedOut
        parse_opted_in(b'{"optedIn": []}')
    # a uid the operator lists in both is opted out: optedOut wins
    assert stage.set_operator([("shop", "a", "uid-a")], ["uid-a"])
    assert stage.record_reason(_pod("uid-a")) == "annotation"


def _pod(uid: str) -> PodInfo:
    return PodInfo(namespace="shop", name="a", uid=uid, annotations={OBSERVE_LEVEL_ANNOTATION: "None"})
