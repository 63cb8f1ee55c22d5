"""The CRI observer's pure rules, the one-runtime rule of the agent, and the CRI wire code's freshness.

``transitions`` is what keeps a container from being announced twice when an
event and a relist both see it; ``verbose_facts`` and ``bounded`` are where a
runtime's hostile reply stops. ``lifecycle_target`` is the dedupe rule of
docs/lifecycle.md ("CRI"): an agent watches one runtime, and a containerd
socket (which also serves the CRI) through containerd's events service.
"""

from __future__ import annotations

import json
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stellaops_runtime.agent import runtime_target
from stellaops_runtime.agent.lifecycle_part import LifecyclePart, Target, lifecycle_target
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import ConfigError, parse_config
from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle.cri_records import (
    MAX_INFO_BYTES,
    MAX_MAP_CHARS,
    MAX_MAP_ENTRIES,
    bounded,
    digest_in_ref,
    ns_time,
    pick_repo_digest,
    transitions,
    verbose_facts,
)
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.wire.cri import generate
from tests.unit.test_agent_imports import _modules

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 12, 3, 12, 1, tzinfo=UTC)


def rec(status: str, *, started: datetime | None = T0, stopped: datetime | None = None) -> ContainerRecord:
    return ContainerRecord(
        container_id="c", namespace="", status=status, started_at=started, stopped_at=stopped
    )


def kinds(old: ContainerRecord | None, new: ContainerRecord, announce: bool = True) -> list[T]:
    return [k for k, _ in transitions(old, new, created_at=T0, announce_new=announce)]


def test_transitions_announce_each_step_once() -> None:
    assert kinds(None, rec("created", started=None)) == [T.CREATE]
    assert kinds(None, rec("running")) == [T.CREATE, T.START]
    assert kinds(None, rec("stopped", stopped=T1)) == [T.CREATE, T.START, T.DIE, T.STOP]
    assert kinds(None, rec("stopped", started=None, stopped=T1)) == [T.CREATE, T.DIE, T.STOP]  # never ran
    assert kinds(rec("created", started=None), rec("running")) == [T.START]
    assert kinds(rec("running"), rec("stopped", stopped=T1)) == [T.DIE, T.STOP]
    for same in ("created", "running", "stopped", "unknown"):  # a second look at the same state: nothing
        assert kinds(rec(same), rec(same)) == []
    assert kinds(rec("stopped"), rec("running")) == []  # CRI containers never restart
    assert kinds(rec("running"), rec("unknown")) == []  # an unknown state moves nothing
    assert kinds(None, rec("running"), announce=False) == []  # the first build lists, never announces
    times = transitions(rec("running"), rec("stopped", stopped=T1), created_at=T0, announce_new=True)
    assert [ts for _, ts in times] == [T1, T1]  # at the time the runtime recorded


def test_image_digest_from_references() -> None:
    assert digest_in_ref(f"registry.test/app@{D1}") == D1
    for not_a_digest in ("registry.test/app:1", D1, "app@sha256:short", f"app@{D1}x", ""):
        assert digest_in_ref(not_a_digest) == ""
    repos = [f"other.test/x@{D2}", f"registry.test:5000/app@{D1}", "garbage", "@"]
    assert pick_repo_digest(repos, "registry.test:5000/app:1.2") == D1  # its repository, port and all
    assert pick_repo_digest(repos, f"registry.test:5000/app@{D2}") == D1
    assert pick_repo_digest(repos, "unrelated/app:1") == D2  # else the first digest there is
    assert pick_repo_digest(["garbage", ""], "app") == "" and pick_repo_digest([], "app") == ""


def test_times_are_nanoseconds_and_nonsense_is_none() -> None:
    assert ns_time(1_796_301_430_458_585_271) == datetime(2026, 12, 3, 12, 37, 10, 458585, tzinfo=UTC)
    assert ns_time(1_796_301_843_579_664_033) == datetime(2026, 12, 3, 12, 44, 3, 579664, tzinfo=UTC)
    for bad in (0, -5, 1 << 63, True, "12", None, 1.5):
        assert ns_time(bad) is None


def test_verbose_info_of_any_shape_never_raises() -> None:
    good = {"pid": 42, "runtimeSpec": {"process": {"env": ["A=1", "B=2"]}, "linux": {"cgroupsPath": "/k/c"}}}
    f = verbose_facts({"info": json.dumps(good)})
    assert (f.pid, f.env, f.cgroups_path, f.problem) == (42, ("A=1", "B=2"), "/k/c", "")
    cases = {
        "": "not JSON",
        "[1]": "not a JSON object",
        "[" * 100_000: "not JSON",  # nesting deep enough to blow the parser's stack
        json.dumps({"pid": True}): "pid is not a process id",
        json.dumps({"pid": -1}): "pid is not a process id",
        json.dumps({"pid": 1 << 40}): "pid is not a process id",
        json.dumps({"pid": 3, "runtimeSpec": "x"}): "runtimeSpec is not an object",
        json.dumps({"runtimeSpec": {"process": {"env": "A=1"}}}): "process.env is not a list",
        json.dumps({"runtimeSpec": {"process": {"env": ["A=1", 3, "B\x00=2"]}}}): "not strings dropped",
        json.dumps({"runtimeSpec": {"linux": {"cgroupsPath": ["/x"]}}}): "cgroupsPath is not a string",
        " " * (MAX_INFO_BYTES + 1): "over the limit",
    }
    for text, problem in cases.items():
        f = verbose_facts({"info": text})
        assert problem in f.problem, (text[:40], f)
        assert f.pid in (0, 3) and all(isinstance(e, str) and "\x00" not in e for e in f.env)
    assert verbose_facts({}).problem == "verbose status without info"
    assert verbose_facts({"info": json.dumps({"runtimeSpec": {"process": {"env": ["A=1", 3]}}})}).env == (
        "A=1",
    )


def test_huge_or_nul_labels_are_cut() -> None:
    many = {f"k{i}": "v" for i in range(MAX_MAP_ENTRIES + 10)}
    kept, problem = bounded(many, "labels")
    assert len(kept) == MAX_MAP_ENTRIES and problem == "10 labels over the size limits or with NUL dropped"
    kept, problem = bounded({"a": "1", "b\x00": "2", "c": "3\x00", "d": "x" * (1 << 20)}, "labels")
    assert kept == {"a": "1"} and problem.startswith("3 labels")
    wide = {f"k{i}": "x" * 60_000 for i in range(10)}
    kept, _ = bounded(wide, "annotations")
    assert sum(len(k) + len(v) for k, v in kept.items()) <= MAX_MAP_CHARS and len(kept) == 4
    assert bounded({"a": "1"}, "labels") == ({"a": "1"}, "")


def test_one_runtime_is_watched_never_two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """containerd's socket also serves the CRI: it is watched once, through containerd's events service."""
    ctd, dock, crio = tmp_path / "containerd.sock", tmp_path / "docker.sock", tmp_path / "crio.sock"
    paths = {"containerdAddress": str(ctd), "dockerAddress": str(dock), "criAddresses": [str(ctd), str(crio)]}

    def target(**kw: object) -> Target | None:
        return lifecycle_target(parse_config({"lifecycle": {**paths, **kw}}))

    assert target() is None
    assert target(enabled=True, runtime="cri") == Target("cri", str(ctd))  # asked for: the first, retried
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(crio))
        assert target() == Target("cri", str(crio))  # a CRI-O node: neither containerd nor Docker
        ctd.touch()
        assert target() == Target("containerd", str(ctd))  # containerd's events, not its CRI as well
        assert target(runtime="cri") == Target("cri", str(ctd))  # told to: its CRI, and only that
        assert target(runtime="cri", criAddresses=[str(crio), str(ctd)]) == Target("cri", str(crio))
        assert target(runtime="docker") is None
    # containerd's default socket (first of the CRI defaults) is never taken for a CRI runtime by
    # auto, even when containerdAddress points elsewhere; asked for by runtime: cri, it is.
    monkeypatch.setattr(runtime_target, "DEFAULT_CONTAINERD_SOCKET", str(ctd))
    elsewhere = {"containerdAddress": str(tmp_path / "elsewhere.sock"), "criAddresses": [str(ctd)]}
    assert target(**elsewhere) is None and target(**elsewhere, runtime="cri") == Target("cri", str(ctd))
    assert target(**{**elsewhere, "criAddresses": [f"unix://{ctd}"]}) is None
    for bad, message in (
        ({"criAddresses": []}, "lifecycle.criAddresses"),
        ({"criAddresses": "/run/crio.sock"}, "lifecycle.criAddresses"),
        ({"criRelistSeconds": 0}, "lifecycle.criRelistSeconds"),
        ({"runtime": "crio"}, "lifecycle.runtime"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config({"lifecycle": bad})


def test_the_agent_builds_a_cri_observer_and_loads_it_only_when_it_starts() -> None:
    config = parse_config(
        {
            "symbols": {"enabled": False},
            "attribution": {"enabled": False},
            "lifecycle": {"runtime": "cri", "criRelistSeconds": "500ms", "connectionTimeout": 3},
        }
    )
    part = LifecyclePart(
        config,
        Target("cri", "/nonexistent/crio.sock"),
        node_name="n1",
        pipeline=Pipeline(config, node_name="n1"),
    )
    obs = part._make_observer()
    from stellaops_runtime.lifecycle.cri_observer import CriObserver

    assert isinstance(obs, CriObserver) and obs.relist_seconds == 0.5 and obs.client.timeout == 3
    assert obs.address == "/nonexistent/crio.sock" and obs.resync_seconds == 60.0  # the backstop relist
    agent_config = {
        "tetragon": {"exportFile": "/nonexistent/tetragon.log"},
        "privacy": {"useDefaultRedactionPatterns": False},
        "lifecycle": {"enabled": True, "runtime": "cri", "criAddresses": ["/nonexistent/crio.sock"]},
    }
    _, built = _modules(agent_config)
    assert "stellaops_runtime.agent.lifecycle_part" in built
    cri = ("cri_client", "cri_observer", "cri_records", "wire.cri")
    assert sorted(m for m in built if m.startswith("stellaops_runtime.") and m.endswith(cri)) == []


def test_the_generated_cri_code_is_fresh_and_the_check_sees_a_stale_copy(tmp_path: Path) -> None:
    assert generate.stale_files() == []
    assert generate.main(["--check"]) == 0
    protos = tmp_path / "protos"
    shutil.copytree(generate.PROTO_ROOT / "cri", protos / "cri")
    text = (protos / "cri" / "api.proto").read_text()
    (protos / "cri" / "api.proto").write_text(text.replace("string reason = 10;", "string cause = 10;"))
    assert generate.stale_files(proto_root=protos) == ["api_pb2.py", "api_pb2.pyi"]
    copy = tmp_path / "out"
    generate.generate(copy)
    (copy / "leftover_pb2.py").write_text("")
    assert generate.stale_files(committed_dir=copy) == ["leftover_pb2.py"]


def test_the_start_of_a_cri_event_is_its_containers_creation_else_a_start_events_time() -> None:
    """What a run the registry missed reaches back to (lifecycle_part's hole from its start)."""
    from stellaops_runtime.lifecycle.cri_records import event_start
    from stellaops_runtime.wire.cri import api_pb2

    created, at = 1_790_000_000_000_000_000, 1_790_000_005_000_000_000
    stopped = api_pb2.ContainerEventResponse(
        container_id="c", container_event_type=api_pb2.CONTAINER_STOPPED_EVENT, created_at=at
    )
    assert event_start(stopped) is None  # a stop's time is not its start
    stopped.containers_statuses.add(id="c", created_at=created)
    assert event_start(stopped) == datetime.fromtimestamp(created // 10**9, UTC)
    started = api_pb2.ContainerEventResponse(
        container_id="c", container_event_type=api_pb2.CONTAINER_STARTED_EVENT, created_at=at
    )
    assert event_start(started) == datetime.fromtimestamp(at // 10**9, UTC)
    started.created_at = -5  # nonsense: not known
    assert event_start(started) is None


@pytest.mark.parametrize(
    "value", ["None\x00", "Passive\x00", "Passive" + " " * (64 << 10)], ids=lambda v: repr(v[:12])
)
def test_a_sandbox_s_level_annotation_the_bounds_drop_still_opts_the_pod_out(value: str) -> None:
    """The operator reads a level with NUL or past 64 characters as invalid, so None (it fails closed,
    contracts/posture.read_level). Dropped by the record's bounds, it read as absent: a CRI-O pod's
    events counted until the operator's label or list arrived."""
    from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION, opts_out
    from stellaops_runtime.lifecycle.cri_records import VerboseFacts, sandbox_record
    from stellaops_runtime.wire.cri import api_pb2

    sandbox = api_pb2.PodSandbox(id="s" * 64, state=api_pb2.SANDBOX_READY)
    sandbox.metadata.name, sandbox.metadata.namespace, sandbox.metadata.uid = "p", "shop", "u1"
    sandbox.annotations[OBSERVE_LEVEL_ANNOTATION] = value
    sandbox.annotations["other"] = "x\x00"
    rec, problem = sandbox_record(sandbox, VerboseFacts())
    kept = rec.pod_annotations.get(OBSERVE_LEVEL_ANNOTATION)
    assert opts_out(kept) and "\x00" not in (kept or "") and len(kept or "") <= 64
    assert "other" not in rec.pod_annotations and problem.startswith("2 annotations")
    plain = api_pb2.PodSandbox(id="t" * 64, state=api_pb2.SANDBOX_READY)
    plain.annotations[OBSERVE_LEVEL_ANNOTATION] = "Passive"
    assert sandbox_record(plain, VerboseFacts())[0].pod_annotations == {OBSERVE_LEVEL_ANNOTATION: "Passive"}
