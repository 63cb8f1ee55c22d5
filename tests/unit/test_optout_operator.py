"""The operator's list of opted-out pods: rendered by the operator, read by the agent, honoured per event.

Issue 14: on a node where the agent's own BCC probes observe, events carry a
container but no pod labels or annotations, so a pod that opted out with
``stellaops.io/observe-level: None`` was still counted. The operator now lists
every such pod (uid, namespace, name) in the probe ConfigMap and the agent
drops their events whatever their source, with ``reason="operator"``. These
tests render the ConfigMap with the operator's own function and read it back
with the agent's own parser (hostile payloads included), follow a file the
way the kubelet replaces a mounted ConfigMap, and run the real Tetragon fixture
stream through the real pipeline, fast path on, before and after a pod is added
to the list. The CRI sandbox metadata decoding is here too (hostile inputs);
tests/integration/test_optout_containerd.py does it against a real containerd.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stellaops_runtime.agent.optout_watch import OptOutWatch
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crds import OBSERVE_LEVEL_ANNOTATION, OBSERVE_OFF_LABEL
from stellaops_runtime.contracts.events import (
    KEPT_POD_ANNOTATIONS,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
)
from stellaops_runtime.contracts.posture import UNREADABLE_LEVEL, opts_out
from stellaops_runtime.controller import opted_out as controller_side
from stellaops_runtime.controller.opted_out import OptedOutPod
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, render_probe_configmap
from stellaops_runtime.lifecycle.decode import SANDBOX_METADATA_EXTENSION, sandbox_facts
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import CRI_KIND_LABEL, POD_UID_LABEL, ContainerRecord
from stellaops_runtime.native import policy_config
from stellaops_runtime.native.config import NativeConfigError
from stellaops_runtime.native.policy_config import parse_opted_out, parse_payload
from stellaops_runtime.privacy.optout import OptOut
from tests.e2e import harness as h
from tests.e2e import optout_store as store

UID_A = "0f6c2b9e-3c55-4a8e-9d1e-000000000001"
UID_B = "0f6c2b9e-3c55-4a8e-9d1e-000000000002"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SECRET = "sandbox-secret-9c1f"


def _event(pod: PodInfo | None) -> RuntimeCallEvent:
    ev = RuntimeCallEvent(kind=EventKind.EXEC, timestamp_ns=1, node_name="n", process=ProcessInfo(pid=1))
    ev.pod = pod
    return ev


def _configmap(pods: list[OptedOutPod], entries: dict[str, dict] | None = None) -> dict[str, Any]:
    return render_probe_configmap(
        name="stellaops-probes-x", namespace="stellaops", entries=entries or {}, owner=None, opted_out=pods
    )


def _payload(pods: list[OptedOutPod]) -> bytes:
    return _configmap(pods)["data"][PROBE_CONFIG_KEY].encode()


# --- the stage ------------------------------------------------------------------------------------


def test_operator_list_matches_by_uid_when_the_event_has_one_else_by_name() -> None:
    stage = OptOut()
    assert stage.set_operator([("shop", "cart-0", UID_A)])
    assert not stage.set_operator([("shop", "cart-0", UID_A)])  # unchanged: no invalidation
    assert stage.drops(_event(PodInfo(namespace="shop", name="cart-0", uid=UID_A)))
    assert stage.drops(_event(PodInfo(namespace="shop", name="cart-0")))  # Tetragon: no uid
    # A pod of the same name created later (another uid) did not opt out.
    assert not stage.drops(_event(PodInfo(namespace="shop", name="cart-0", uid=UID_B)))
    assert not stage.drops(_event(PodInfo(namespace="shop", name="cart-1")))
    assert not stage.drops(_event(PodInfo(namespace="other", name="cart-0")))
    assert not stage.drops(_event(None))  # host processes
    # An entry without a uid matches every event of that name; one without a name, by uid only.
    stage.set_operator([("shop", "web-1", ""), ("", "", UID_B)])
    assert stage.drops(_event(PodInfo(namespace="shop", name="web-1", uid=UID_A)))
    assert stage.drops(_event(PodInfo(namespace="x", name="y", uid=UID_B)))
    assert not stage.drops(_event(PodInfo(namespace="shop", name="cart-0")))
    assert stage.counts() == {"annotation": 0, "label": 0, "operator": 4}
    # The annotation and the label are still named first.
    stage.set_operator([("shop", "web-1", UID_A)])
    annotated = PodInfo(
        namespace="shop", name="web-1", uid=UID_A, annotations={OBSERVE_LEVEL_ANNOTATION: "None"}
    )
    assert stage.drops(_event(annotated))
    assert stage.counts()["annotation"] == 1 and stage.operator_pods == 1
    stage.set_operator([])
    assert not stage.drops(_event(PodInfo(namespace="shop", name="web-1", uid=UID_A)))


@pytest.mark.parametrize("bad", [b"\x00", 7, None, ["uid"], {"uid": 1}])
def test_wrong_types_in_a_pod_never_match_and_never_raise(bad: Any) -> None:
    stage = OptOut()
    stage.set_operator([("shop", "cart-0", UID_A)])
    pod = PodInfo(namespace="shop", name="cart-0", uid=UID_A)
    pod.uid = bad
    pod.namespace = bad
    assert not stage.drops(_event(pod))


# --- the ConfigMap: rendered by the operator, read by the agent -----------------------------------


def test_rendered_list_is_canonical_and_reads_back_exactly() -> None:
    pods = [OptedOutPod("shop", "cart-0", UID_A), OptedOutPod("billing", "api-7", UID_B)]
    one = _payload(pods)
    assert _payload([*reversed(pods), pods[0]]) == one  # order and duplicates do not matter: same bytes
    doc = json.loads(one)
    assert doc["optedOut"] == [
        {"name": "api-7", "namespace": "billing", "uid": UID_B},
        {"name": "cart-0", "namespace": "shop", "uid": UID_A},
    ]
    assert parse_opted_out(one) == ([("billing", "api-7", UID_B), ("shop", "cart-0", UID_A)], 0)
    # No opted-out pod: no key, the payload is exactly what it was before the list existed.
    assert "optedOut" not in _payload([]).decode()
    assert parse_opted_out(_payload([])) == ([], 0)
    # The policies are read as before with the list present (the probes ignore it).
    entries = {"ObservationPolicy/shop/web": {"syscalls": [{"name": "connect"}]}}
    cm = _configmap(pods, entries)
    assert parse_payload(cm["data"][PROBE_CONFIG_KEY].encode()) == entries
    # A whole ConfigMap saved with kubectl reads the same.
    assert parse_opted_out(json.dumps(cm).encode())[0] == parse_opted_out(one)[0]


def test_list_is_bounded_in_entries_and_bytes_and_says_how_many_did_not_fit() -> None:
    assert policy_config.MAX_OPTED_OUT == controller_side.MAX_OPTED_OUT
    many = [OptedOutPod("ns", f"pod-{i:05}", f"uid-{i:05}") for i in range(controller_side.MAX_OPTED_OUT + 7)]
    doc = json.loads(_payload(many))
    assert len(doc["optedOut"]) == controller_side.MAX_OPTED_OUT and doc["optedOutOmitted"] == 7
    long = [OptedOutPod("n" * 63, f"{i:04}" + "p" * 240, f"uid-{i}") for i in range(4000)]
    raw = _payload(long)
    doc = json.loads(raw)
    assert len(raw) < controller_side.MAX_OPTED_OUT_BYTES + 4096 < 1 << 20
    assert len(doc["optedOut"]) + doc["optedOutOmitted"] == 4000 and doc["optedOutOmitted"] > 0
    pods, bad = parse_opted_out(raw)
    assert len(pods) == len(doc["optedOut"]) and bad == 0


def _doc(opted: object) -> bytes:
    return json.dumps(
        {
            "apiVersion": policy_config.API_VERSION,
            "kind": policy_config.KIND,
            "policies": {},
            "optedOut": opted,
        }
    ).encode()


def test_hostile_entries_are_skipped_and_counted_never_costing_the_others() -> None:
    good = {"namespace": "shop", "name": "cart-0", "uid": UID_A}
    hostile = [
        "shop/cart-0", 7, None, [good], {}, {"uid": ""}, {"namespace": "shop"},
        {"uid": 12}, {"uid": ["x"]}, {"uid": "a\x00b"}, {"name": "p" * 254, "namespace": "n", "uid": ""},
        {"namespace": {"x": 1}, "name": "a", "uid": UID_B},
    ]  # fmt: skip
    pods, bad = parse_opted_out(_doc([*hostile, good, {"uid": UID_B, "extra": [1, 2]}]))
    assert pods == [("shop", "cart-0", UID_A), ("", "", UID_B)] and bad == len(hostile)
    over = [{"uid": f"u{i}"} for i in range(policy_config.MAX_OPTED_OUT + 3)]
    pods, bad = parse_opted_out(_doc(over))
    assert len(pods) == policy_config.MAX_OPTED_OUT and bad == 3


@pytest.mark.parametrize(
    "raw",
    [
        b"", b"{not json", b"\xff\xfe", b"[" * 100_000, b"\x00" * 64, json.dumps([1]).encode(),
        json.dumps({"kind": "ProbeConfig"}).encode(), _doc({"uid": UID_A}), _doc("uid"),
        b" " * (policy_config.MAX_FILE_BYTES + 1),
    ],
    ids=lambda r: repr(r[:24]),
)  # fmt: skip
def test_a_file_that_is_no_list_is_an_error_not_a_crash(raw: bytes) -> None:
    with pytest.raises(NativeConfigError):
        parse_opted_out(raw)


# --- following the mounted file ---------------------------------------------------------------------


def _kubelet_write(volume: Path, payload: bytes, generation: int) -> Path:
    """Write ``probes.json`` the way the kubelet updates a ConfigMap volume (a ..data symlink swap)."""
    data = volume / f"..{generation}"
    data.mkdir()
    (data / PROBE_CONFIG_KEY).write_bytes(payload)
    tmp = volume / "..data_tmp"
    tmp.symlink_to(data.name)
    tmp.rename(volume / "..data")
    link = volume / PROBE_CONFIG_KEY
    if not link.is_symlink():
        link.symlink_to(f"..data/{PROBE_CONFIG_KEY}")
    return link


def test_watch_follows_the_file_and_keeps_the_last_list_on_a_bad_one(tmp_path: Path) -> None:
    stage = OptOut()
    path = tmp_path / PROBE_CONFIG_KEY
    watch = OptOutWatch(str(path), stage, interval=1.0)
    assert not watch.poll(now=100.0) and stage.operator_pods == 0  # no file yet: an empty list
    link = _kubelet_write(tmp_path, _payload([OptedOutPod("shop", "cart-0", UID_A)]), 1)
    assert link == path
    assert not watch.poll(now=100.5)  # not due: at most one look a second
    assert watch.poll(now=101.0) and stage.operator_pods == 1 and watch.reads == 1
    assert not watch.poll(now=102.0) and watch.reads == 1  # unchanged: not read again
    _kubelet_write(
        tmp_path, _payload([OptedOutPod("shop", "cart-0", UID_A), OptedOutPod("a", "b", UID_B)]), 2
    )
    assert watch.poll(now=103.0) and stage.operator_pods == 2
    _kubelet_write(
        tmp_path, b'{"apiVersion": "stellaops.io/v1alpha1", "kind": "ProbeConfig", "optedOut": 5}', 3
    )
    assert not watch.poll(now=104.0) and stage.operator_pods == 2 and watch.errors == 1  # kept
    assert not watch.poll(now=105.0) and watch.errors == 1  # the same bad file is not re-parsed
    os.unlink(path)
    assert not watch.poll(now=106.0) and stage.operator_pods == 2  # gone after a read: kept
    _kubelet_write(tmp_path, _payload([]), 4)
    assert watch.poll(now=107.0) and stage.operator_pods == 0  # a list read empty is empty


# --- through the real pipeline, fast path on ------------------------------------------------------------


def test_a_pod_added_to_the_list_later_is_dropped_from_every_tetragon_event_fast_path_or_not(
    tmp_path: Path,
) -> None:
    with gzip.open(h.STREAM) as f:  # the export lines as Tetragon writes them (time last)
        # Without exits, so the processes live on and the fast path keeps their outcomes.
        lines = [line.rstrip(b"\n") for line in f if line.strip() and b'"process_exit"' not in line]
    pods = [
        p
        for o in map(json.loads, lines)
        for k, b in o.items()
        if k.startswith("process_") and isinstance(b, dict) and (p := b.get("process", {}).get("pod"))
    ]
    digest = str(pods[0]["container"]["image"]["id"]).split("@")[1]
    names = {(p["namespace"], p["name"]) for p in pods if str(p["container"]["image"]["id"]).endswith(digest)}
    path = tmp_path / PROBE_CONFIG_KEY
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False},
                        "native": {"probeConfigFile": str(path)}})  # fmt: skip
    pipe = Pipeline(cfg, node_name="node-1")
    assert pipe.optout_watch is not None and pipe.fast_path is not None
    pipe.optout_watch.interval = 0.0
    now = time.time_ns()
    for _ in range(3):  # repeats now take the fast path
        pipe.process_json([(line, now) for line in lines])
    before, _ = pipe.drain()
    assert digest in {d.key.image_digest for d in before} and pipe.fast_path.stats.hits > 0
    hits = pipe.fast_path.stats.hits
    kept = {d.key.image_digest: 0 for d in before}
    for d in before:
        kept[d.key.image_digest] += d.invocation_count

    # Every pod of that image opts out; Tetragon sends no uid, so they are matched by name.
    path.write_bytes(_payload([OptedOutPod(ns, name, f"uid-{ns}-{name}") for ns, name in names]))
    for _ in range(3):
        pipe.process_json([(line, now) for line in lines])
    after, windows = pipe.drain()
    dropped = pipe.optout.counts()["operator"]
    assert dropped == 3 * sum(1 for p in pods if (p["namespace"], p["name"]) in names) > 0
    assert digest not in {d.key.image_digest for d in after}
    # Of its pods only this is kept: its image ran unwatched in each window in which their events were
    # dropped (the whole window, no events, no posture, source opted_out), and nothing else.
    wn = cfg.hot_symbols.window_seconds * store.S
    gaps = [w for w in windows if w.image_digest == digest]

    def listed(o: dict[str, Any]) -> bool:
        pod = store.pod_of(o)
        return pod is not None and (pod["namespace"], pod["name"]) in names

    truth = store.opted_out_windows(map(json.loads, lines), listed, cfg.hot_symbols.window_seconds)
    assert truth and {(w.image_digest, w.node_name, w.window_start_ns) for w in gaps} == truth
    for w in gaps:
        assert (w.event_count, w.posture, w.source, w.throttles, w.dropped_events) == (
            0,
            None,
            "opted_out",
            0,
            0,
        )
        assert (w.gap_start_ns, w.gap_end_ns) == (w.window_start_ns, w.window_start_ns + wn), w
    counts = {k: 0 for k in kept}
    for d in after:
        counts[d.key.image_digest] += d.invocation_count
    assert counts == {k: v for k, v in kept.items() if k != digest} | {digest: 0}  # the others unchanged
    assert pipe.fast_path.stats.hits > hits  # the fast path still serves the others


# --- the CRI sandbox metadata (hostile) ------------------------------------------------------------------


def _ext(value: bytes) -> dict[str, Any]:
    return {SANDBOX_METADATA_EXTENSION: SimpleNamespace(type_url="x/Metadata", value=value)}


def _sandbox_json(annotations: object, version: str = "v1") -> bytes:
    config = {
        "metadata": {"name": "p", "uid": UID_A, "namespace": "ns"},
        "labels": {},
        "annotations": annotations,
    }
    return json.dumps({"Version": version, "Metadata": {"ID": "sb", "Name": "p", "Config": config}}).encode()


def test_sandbox_metadata_yields_only_the_kept_annotation() -> None:
    facts = sandbox_facts(_ext(_sandbox_json({OBSERVE_LEVEL_ANNOTATION: "None", LAST_APPLIED: SECRET})),
                          KEPT_POD_ANNOTATIONS)  # fmt: skip
    assert facts.annotations == {OBSERVE_LEVEL_ANNOTATION: "None"} and not facts.problem
    assert SECRET not in repr(facts)
    assert sandbox_facts({}, KEPT_POD_ANNOTATIONS).annotations == {}


@pytest.mark.parametrize(
    "value",
    [
        b"", b"{", b"\x00\xff", b"[" * 50_000 + b"]" * 50_000, b"[]", b'{"Version": "v2", "Metadata": {}}',
        b'{"Version": "v1", "Metadata": []}', b'{"Version": "v1", "Metadata": {"Config": "x"}}',
        _sandbox_json("None"), _sandbox_json(["None"]), b" " * (2 << 20), _sandbox_json({}, "v0"),
        _sandbox_json({OBSERVE_LEVEL_ANNOTATION: None}),
    ],
    ids=lambda v: repr(v[:30]),
)  # fmt: skip
def test_hostile_sandbox_metadata_says_nothing_and_never_raises(value: bytes) -> None:
    facts = sandbox_facts(_ext(value), KEPT_POD_ANNOTATIONS)
    assert facts.annotations == {}


@pytest.mark.parametrize(
    "value", ["None\x00", "Passive\x00", "\x00", 0, 1, True, ["Passive"], {"a": 1}], ids=repr
)
def test_a_present_level_the_record_cannot_keep_as_it_is_still_opts_out(value: object) -> None:
    """The operator reads such a value as invalid, so None (contracts/posture.read_level fails closed):
    the record must not make it absent, or the pod's events count until the label or list arrives."""
    facts = sandbox_facts(_ext(_sandbox_json({OBSERVE_LEVEL_ANNOTATION: value})), KEPT_POD_ANNOTATIONS)
    kept = facts.annotations.get(OBSERVE_LEVEL_ANNOTATION)
    assert opts_out(kept) and "\x00" not in (kept or "")


@pytest.mark.parametrize(
    "value",
    [
        # Go's JSON encoder writes each < > & as \u003c (6 bytes): 256 KiB of annotations pass 1 MiB
        _sandbox_json({OBSERVE_LEVEL_ANNOTATION: "None", "n": "<" * (200 << 10)}).replace(b"<", b"\\u003c"),
        _sandbox_json({OBSERVE_LEVEL_ANNOTATION: "None"})[:-3],  # cut short: not JSON
        _sandbox_json({OBSERVE_LEVEL_ANNOTATION: "None"}, "v2"),  # a format this agent does not know
        json.dumps({"Version": "v1", "Metadata": {"Config": {
            "annotations": [OBSERVE_LEVEL_ANNOTATION, "None"]}}}).encode(),
    ],
    ids=["over-the-limit", "not-json", "unknown-version", "annotations-not-an-object"],
)  # fmt: skip
def test_metadata_the_agent_cannot_read_that_names_the_level_still_opts_out(value: bytes) -> None:
    """A sandbox whose metadata cannot be read (too big, not JSON, an unknown format) while it holds
    ``stellaops.io/observe-level``: read as absent, the pod's events counted until the operator's
    label or list arrived. The agent cannot know the value, so it fails closed (UNREADABLE_LEVEL),
    as for a value it cannot keep; metadata that does not name the key still says nothing."""
    facts = sandbox_facts(_ext(value), KEPT_POD_ANNOTATIONS)
    assert facts.annotations == {OBSERVE_LEVEL_ANNOTATION: UNREADABLE_LEVEL} and facts.problem
    assert opts_out(facts.annotations[OBSERVE_LEVEL_ANNOTATION])
    other = value.replace(OBSERVE_LEVEL_ANNOTATION.encode(), b"example.com/other-annotation")
    assert sandbox_facts(_ext(other), KEPT_POD_ANNOTATIONS).annotations == {}


def test_hostile_extension_maps_never_raise() -> None:
    for ext in (5, "x", [1], {SANDBOX_METADATA_EXTENSION: None}, {SANDBOX_METADATA_EXTENSION: 5}):
        assert sandbox_facts(ext, KEPT_POD_ANNOTATIONS).annotations == {}


# --- the lookup: a pod's opt-out from its sandbox -----------------------------------------------------


def _rec(cid: str, uid: str, *, sandbox: bool, cgroup: int = 0, **kw: Any) -> ContainerRecord:
    labels = {
        POD_UID_LABEL: uid,
        "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.pod.name": f"p-{uid[-1]}",
        CRI_KIND_LABEL: "sandbox" if sandbox else "container",
        **kw.pop("labels", {}),
    }
    return ContainerRecord(container_id=cid, namespace="k8s.io", labels=labels, status="running",
                           pid=10 if cgroup else 0, cgroup_id=cgroup, **kw)  # fmt: skip


def test_lookup_gives_every_container_of_a_pod_its_sandbox_opt_out() -> None:
    lookup = ContainerLookup(
        [
            _rec("a" * 64, UID_A, sandbox=True, pod_annotations={OBSERVE_LEVEL_ANNOTATION: "None"}),
            _rec("b" * 64, UID_A, sandbox=False, cgroup=11),
            _rec("c" * 64, UID_B, sandbox=True, labels={OBSERVE_OFF_LABEL: "true"}),
            _rec("d" * 64, UID_B, sandbox=False, cgroup=12),
            # A container's own spec annotation counts (a runtime passing pod annotations);
            # its own label does not (only the sandbox has the pod's labels).
            _rec(
                "e" * 64,
                "uid-3",
                sandbox=False,
                cgroup=13,
                labels={OBSERVE_OFF_LABEL: "true"},
                annotations={OBSERVE_LEVEL_ANNOTATION: "Passive"},
            ),
        ],
        "containerd",
    )
    a, b, c = lookup.pod_by_cgroup(11), lookup.pod_by_cgroup(12), lookup.pod_by_cgroup(13)
    assert a is not None and (a.uid, a.annotations, a.labels) == (
        UID_A,
        {OBSERVE_LEVEL_ANNOTATION: "None"},
        {},
    )
    assert b is not None and (b.uid, b.labels) == (UID_B, {OBSERVE_OFF_LABEL: "true"})
    assert c is not None and (c.annotations, c.labels) == ({OBSERVE_LEVEL_ANNOTATION: "Passive"}, {})
    stage = OptOut()
    assert [stage.drops(_event(p)) for p in (a, b, c)] == [True, True, False]
    assert stage.counts() == {"annotation": 1, "label": 1, "operator": 0}
    # The BCC path: the decoder knows the container only; _finish fills the pod, then drops it.
    pipe = Pipeline(parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}))
    pipe.container_lookup = lookup
    ev = _event(None)
    ev.container = lookup.by_cgroup(11)
    pipe._finish(ev)
    assert pipe.optout.counts()["annotation"] == 1 and pipe.processed == 0
