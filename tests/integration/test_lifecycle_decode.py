"""The lifecycle observer's pure parts, on the inputs a node and a hostile publisher give.

Envelope and payload decoding never raise and say why they refused; OCI specs
of the wrong shape yield empty facts and a reason; cgroup paths are found on
pure v2, hybrid and cgroup-namespaced mount tables; the registry never lets a
dead container keep a cgroup id; the generated containerd wire code matches
its .proto files, and the field numbers we rely on are the ones containerd
puts on the wire (pinned by hand-encoded bytes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from stellaops_runtime.contracts.lifecycle import ContainerLifecycleEvent, LifecycleEventType
from stellaops_runtime.lifecycle import cgroups
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.lifecycle.decode import (
    Decoded,
    DecodeFailure,
    Ignored,
    decode_envelope,
    spec_facts,
    timestamp_of,
)
from stellaops_runtime.lifecycle.docker_client import DockerClient
from stellaops_runtime.lifecycle.metrics import LifecycleStats, lifecycle_metrics
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from stellaops_runtime.lifecycle.registry import ContainerRecord, ContainerRegistry
from stellaops_runtime.wire.containerd import events_pb2, generate, task_pb2, types_pb2


def _envelope(type_url: str, value: bytes, topic: str = "/tasks/start", ns: str = "k8s.io") -> bytes:
    env = types_pb2.Envelope(topic=topic, namespace=ns)
    env.timestamp.seconds = 1_700_000_000
    env.event.CopyFrom(any_pb2.Any(type_url=type_url, value=value))
    return env.SerializeToString()


def test_generated_wire_code_is_up_to_date() -> None:
    assert generate.stale_files() == []


def test_field_numbers_match_containerds_wire_format() -> None:
    # TaskExit: container_id=1 string, id=2 string, pid=3 varint, exit_status=4 varint, exited_at=5.
    raw = b"\x0a\x01c\x12\x01c\x18\x07\x20\x89\x01\x2a\x02\x08\x05"
    m = events_pb2.TaskExit.FromString(raw)
    assert (m.container_id, m.id, m.pid, m.exit_status, m.exited_at.seconds) == ("c", "c", 7, 137, 5)
    # Envelope: timestamp=1, namespace=2, topic=3, event=4 (Any: type_url=1, value=2).
    env = types_pb2.Envelope.FromString(b"\x12\x06k8s.io\x1a\x03/t1\x22\x05\x0a\x01T\x12\x00")
    assert (env.namespace, env.topic, env.event.type_url) == ("k8s.io", "/t1", "T")
    # Process (Tasks/List): id=2, pid=3, status=4 (RUNNING=2), exit_status=9.
    p = task_pb2.Process.FromString(b"\x12\x01c\x18\x2a\x20\x02\x48\x03")
    assert (p.id, p.pid, p.status, p.exit_status) == ("c", 42, task_pb2.RUNNING, 3)


def test_decode_envelope_outcomes() -> None:
    ok = decode_envelope(
        _envelope(
            "containerd.events.TaskStart", events_pb2.TaskStart(container_id="a", pid=9).SerializeToString()
        )
    )
    assert isinstance(ok, Decoded) and ok.payload.pid == 9 and ok.namespace == "k8s.io"  # type: ignore[attr-defined]
    assert ok.timestamp is not None and ok.timestamp.year == 2023
    # A host-prefixed type URL names the same type.
    prefixed = decode_envelope(_envelope("types.containerd.io/containerd.events.TaskOOM", b"\x0a\x01a"))
    assert isinstance(prefixed, Decoded) and isinstance(prefixed.payload, events_pb2.TaskOOM)
    # Fields we leave out of our subset (TaskCreate.rootfs = 3) are not an error.
    assert isinstance(
        decode_envelope(_envelope("containerd.events.TaskCreate", b"\x1a\x02\x0a\x00\x30\x05")), Decoded
    )

    cases = {
        b"\xff\xfe garbage": "envelope",
        types_pb2.Envelope(topic="/x").SerializeToString(): "no_payload",
        _envelope("containerd.events.TaskStart", b"\x0a\x09abc"): "payload",
        _envelope("containerd.events.TaskStart", b"\x0a\x02\xff\xfe"): "payload",
        _envelope("containerd.events.TaskStart", b"\x12\x01x"): "field",
        _envelope("containerd.events.TaskDelete", b"\x0d\x00\x00\x00\x00"): "field",
    }
    for raw, reason in cases.items():
        got = decode_envelope(raw)
        assert isinstance(got, DecodeFailure) and got.reason == reason, (raw, got)
    unknown = decode_envelope(
        _envelope("containerd.events.SnapshotPrepare", b"\x0a\x01k", topic="/snapshot/prepare")
    )
    assert unknown == Ignored(topic="/snapshot/prepare", type_name="containerd.events.SnapshotPrepare")


def test_timestamps_unset_and_go_zero_time_are_none() -> None:
    ts = types_pb2.Envelope().timestamp
    assert timestamp_of(ts) is None
    ts.seconds = -62135596800  # Go's zero time, what containerd sends for "not exited"
    assert timestamp_of(ts) is None
    ts.seconds = 253402300800 * 10  # beyond datetime's range
    assert timestamp_of(ts) is None


def test_spec_facts_of_hostile_specs() -> None:
    good = {
        "process": {"env": ["A=1", "B=2"]},
        "annotations": {"io.kubernetes.cri.sandbox-id": "x"},
        "linux": {"cgroupsPath": "/k8s.io/c"},
    }
    facts = spec_facts(json.dumps(good).encode())
    assert (facts.env, facts.cgroups_path, facts.problem) == (("A=1", "B=2"), "/k8s.io/c", "")
    assert facts.annotations == {"io.kubernetes.cri.sandbox-id": "x"}
    assert spec_facts(b"").problem == ""
    for raw in (b"{not json", b"[1,2]", b"\x00\x01", b"[" * 100_000, b'"' + b"a" * (5 << 20) + b'"'):
        f = spec_facts(raw)
        assert f.problem and f.env == () and f.annotations == {}
    wrong = spec_facts(json.dumps({"process": {"env": ["A=1", 5, None]}, "annotations": {"k": 1}}).encode())
    assert wrong.env == ("A=1",) and wrong.annotations == {} and "dropped" in wrong.problem
    assert (
        spec_facts(json.dumps({"process": {"env": "A=1"}, "linux": {"cgroupsPath": 7}}).encode()).cgroups_path
        == ""
    )


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("0::/k8s.io/abc\n", "/k8s.io/abc"),
        ("12:memory:/k8s.io/abc\n1:name=systemd:/x\n0::/kubepods/pod1/abc\n", "/kubepods/pod1/abc"),
        ("4:memory:/only/v1\n", None),
        ("", None),
        ("garbage\x00\n0:\n0::relative\n", None),
    ],
)
def test_unified_path(text: str, path: str | None) -> None:
    assert cgroups.unified_path(text) == path


def test_cgroup2_mounts_and_directories() -> None:
    hybrid = (
        "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "35 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "40 30 0:35 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    )
    mounts = cgroups.cgroup2_mounts(hybrid)
    assert mounts == [cgroups.CgroupMount("/sys/fs/cgroup/unified", "/")]
    assert cgroups.directory_of("/k8s.io/c", mounts) == "/sys/fs/cgroup/unified/k8s.io/c"
    assert cgroups.directory_of("/", mounts) == "/sys/fs/cgroup/unified"
    # A cgroup-namespaced agent's mount shows only a subtree; paths outside it are not there.
    ns = cgroups.cgroup2_mounts("50 1 0:40 /kubepods /host/cg\\040dir rw shared:1 - cgroup2 none rw\n")
    assert ns == [cgroups.CgroupMount("/host/cg dir", "/kubepods")]
    assert cgroups.directory_of("/kubepods/pod1/c", ns) == "/host/cg dir/pod1/c"
    assert cgroups.directory_of("/kubepodsX/c", ns) is None
    assert cgroups.cgroup2_mounts("no separator here\n\x00\x00 - cgroup2\n") == []


def test_resolver_on_a_fake_proc_tree(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cg = tmp_path / "cg"
    (cg / "k8s.io" / "c1").mkdir(parents=True)
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(f"40 30 0:35 / {cg} rw - cgroup2 cgroup2 rw\n")
    (proc / "77").mkdir()
    (proc / "77" / "cgroup").write_text("0::/k8s.io/c1\n")
    (proc / "78").mkdir()
    (proc / "78" / "cgroup").write_text("0::/k8s.io/gone\n")
    r = cgroups.CgroupResolver(str(proc))
    info = r.resolve(77)
    assert info is not None and info.cgroup_id == (cg / "k8s.io" / "c1").stat().st_ino
    assert r.resolve(78) == cgroups.CgroupInfo(path="/k8s.io/gone", cgroup_id=0)
    assert r.resolve(79) is None and r.resolve(-1) is None


def test_oom_kills_from_memory_events(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cg = tmp_path / "cg"
    (cg / "k8s.io" / "c1").mkdir(parents=True)
    (cg / "k8s.io" / "c2").mkdir(parents=True)
    (cg / "k8s.io" / "c3").mkdir(parents=True)
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(f"40 30 0:35 / {cg} rw - cgroup2 cgroup2 rw\n")
    (cg / "k8s.io" / "c1" / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n")
    (cg / "k8s.io" / "c2" / "memory.events").write_text("oom_kill banana\n")
    r = cgroups.CgroupResolver(str(proc))
    assert r.oom_kills("/k8s.io/c1") == 1
    assert r.oom_kills("/k8s.io/c2") is None  # not a number: not an OOM kill
    assert r.oom_kills("/k8s.io/c3") is None  # no memory controller
    assert r.oom_kills("/k8s.io/gone") is None
    assert r.oom_kills("k8s.io/c1") is None and r.oom_kills("/k8s.io/../k8s.io/c1") is None
    assert r.oom_kills("/k8s.io/c1\x00") is None
    assert cgroups.oom_kill_count("oom 3\noom_kill 0\n") == 0
    assert cgroups.oom_kill_count("") is None


def test_registry_cgroup_index_follows_the_task() -> None:
    reg = ContainerRegistry()
    a = ContainerRecord(
        container_id="a", namespace="k8s.io", image_digest="sha256:aa", status="running", pid=5
    )
    reg.put(a)
    reg.set_cgroup(a, "/k8s.io/a", 100)
    got = reg.by_cgroup(100)
    assert got is not None and got.image_digest == "sha256:aa"
    got.labels["x"] = "y"  # a copy: callers cannot change the registry
    assert reg.get("k8s.io", "a").labels == {}  # type: ignore[union-attr]
    reg.task_gone(a)
    assert reg.by_cgroup(100) is None
    # The inode is reused by a new container: it names the new one only.
    b = ContainerRecord(container_id="b", namespace="k8s.io", status="running", pid=6, cgroup_id=100)
    reg.put(b)
    assert reg.by_cgroup(100).container_id == "b"  # type: ignore[union-attr]
    # A rebuild keeps only what the runtime lists, per namespace.
    other = ContainerRecord(container_id="z", namespace="moby")
    reg.put(other)
    changed, removed = reg.replace_all("k8s.io", [ContainerRecord(container_id="c", namespace="k8s.io")])
    assert (changed, removed) == (1, 2)
    assert [r.container_id for r in reg.records()] == ["c", "z"]
    assert reg.by_cgroup(100) is None and reg.cgroup_ids() == {}


def test_event_json_and_pod_identity() -> None:
    ev = ContainerLifecycleEvent(
        event_type=LifecycleEventType.START,
        runtime="containerd",
        namespace="k8s.io",
        container_id="c",
        labels={
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.pod.name": "cart",
            "io.kubernetes.container.name": "app",
            "stellaops.io/scan-id": "s1",
        },
        pid=3,
    )
    j = ev.to_json()
    assert (j["pod_namespace"], j["pod_name"], j["container_name"], j["scan_id"]) == (
        "shop",
        "cart",
        "app",
        "s1",
    )
    assert j["event_type"] == "start" and j["exit_code"] is None
    json.dumps(j)
    bare = ContainerLifecycleEvent(
        event_type=LifecycleEventType.CREATE, runtime="containerd", namespace="", container_id="c"
    )
    assert (bare.scan_id, bare.pod_name, bare.to_json()["scan_id"]) == ("", "", "")


DOCUMENTED_METRICS = {
    "lifecycle_envelopes",
    "lifecycle_events",
    "lifecycle_decode_failures",
    "lifecycle_events_ignored",
    "lifecycle_reconnects",
    "lifecycle_stream_errors",
    "lifecycle_resyncs",
    "lifecycle_resync_removed",
    "lifecycle_spec_problems",
    "lifecycle_cgroup_unresolved",
    "lifecycle_oom_from_cgroup",
    "lifecycle_oom_notifications",
    "lifecycle_oom_unwatched",
    "lifecycle_oom_births_overflows",
    "lifecycle_oom_early_evicted",
    "lifecycle_oom_parents_unwatched",
    "lifecycle_oom_unread",
    "lifecycle_unwatched_starts",
    "lifecycle_missed_events",
    "lifecycle_connected",
    "lifecycle_containers",
    "lifecycle_cgroups",
}


def test_docs_list_every_metric_and_the_default_backoff() -> None:
    families = list(lifecycle_metrics(LifecycleStats(), containers=0, cgroups=0))
    assert {m.name.removeprefix("stellaops_runtime_") for m in families} == DOCUMENTED_METRICS
    doc = (Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md").read_text()
    for m in families:
        short = m.name.removeprefix("stellaops_runtime_")
        assert f"`{short}_total" in doc if m.type == "counter" else f"`{short}`" in doc, short
    obs = ContainerdObserver(ContainerdClient())
    assert (obs.backoff.initial, obs.backoff.maximum) == (0.5, 30.0)
    assert obs.namespace == "k8s.io" and obs.address == "/run/containerd/containerd.sock"
    assert DockerClient().address == "/var/run/docker.sock"


def test_metric_families_are_named_like_the_agents() -> None:
    st = LifecycleStats()
    st.count_failure("payload")
    st.count_event("start")
    for i in range(100):
        st.count_ignored(f"hostile.Type{i}")  # a publisher inventing names cannot grow the label set
    assert len(st.ignored) == 65 and st.ignored["other"] == 36
    names = {m.name: m for m in lifecycle_metrics(st, containers=4, cgroups=2)}
    assert all(n.startswith("stellaops_runtime_lifecycle_") for n in names)
    fails = {
        s.labels["reason"]: s.value for s in names["stellaops_runtime_lifecycle_decode_failures"].samples
    }
    assert fails["payload"] == 1 and fails["envelope"] == 0
    assert names["stellaops_runtime_lifecycle_containers"].samples[0].value == 4
