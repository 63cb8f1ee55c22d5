"""The minimal-write rules (controller.patches) and the keyed work queue (controller.scheduler)."""

from __future__ import annotations

import asyncio
import json

import pytest

from stellaops_runtime.contracts.crds import (
    OBSERVE_LABEL,
    OBSERVE_OFF_LABEL,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
)
from stellaops_runtime.controller.patches import (
    APPLIED_FIELDS_ANNOTATION,
    covers,
    for_create,
    labels_patch,
    owned_patch,
    pod_posture_patch,
    status_patch,
)
from stellaops_runtime.controller.scheduler import Scheduler

DS = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {
        "name": "agent",
        "namespace": "ns",
        "labels": {"app.kubernetes.io/managed-by": "stellaops-runtime"},
        "ownerReferences": [{"kind": "RuntimeObserver", "name": "x", "uid": "u1"}],
    },
    "spec": {
        "template": {
            "spec": {
                "nodeSelector": {"kubernetes.io/os": "linux", "pool": "a"},
                "containers": [{"name": "agent", "image": "img:1", "ports": [{"containerPort": 8080}]}],
                "hostPID": True,
            }
        }
    },
}


def _as_server_stores(obj: dict) -> dict:
    """What an API server returns: our fields plus defaults, status and bookkeeping."""
    out = json.loads(json.dumps(for_create(obj)))
    out["metadata"].update(
        uid="abc", resourceVersion="7", generation=1, creationTimestamp="2026-01-01T00:00:00Z"
    )
    c = out["spec"]["template"]["spec"]["containers"][0]
    c["terminationMessagePath"] = "/dev/termination-log"
    c["ports"][0]["protocol"] = "TCP"
    out["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    out["spec"]["revisionHistoryLimit"] = 10
    out["status"] = {"numberReady": 3}
    return out


def test_covers_allows_defaults_and_omitted_empties() -> None:
    assert covers({"a": 1, "b": 2}, {"a": 1})
    assert not covers({"a": 1}, {"a": 2})
    assert covers({}, {"a": {}, "b": [], "c": False, "d": 0, "e": ""})
    assert not covers({}, {"a": "x"})
    assert covers({"l": [{"a": 1, "x": 9}]}, {"l": [{"a": 1}]})
    assert not covers({"l": [{"a": 1}, {"a": 2}]}, {"l": [{"a": 1}]})


def test_owned_patch_is_none_when_the_cluster_has_what_we_render() -> None:
    assert owned_patch(DS, _as_server_stores(DS)) is None


def test_owned_patch_restores_drift_and_records_applied_fields() -> None:
    live = _as_server_stores(DS)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:2"
    patch = owned_patch(DS, live)
    assert patch is not None
    assert patch["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"
    assert APPLIED_FIELDS_ANNOTATION in patch["metadata"]["annotations"]
    assert "status" not in patch


def test_owned_patch_removes_a_field_it_no_longer_renders() -> None:
    live = _as_server_stores(DS)  # applied with nodeSelector.pool=a
    smaller = json.loads(json.dumps(DS))
    del smaller["spec"]["template"]["spec"]["nodeSelector"]["pool"]
    patch = owned_patch(smaller, live)
    assert patch is not None
    assert patch["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": None}
    # ...while a server default it never set (dnsPolicy) is left alone
    assert "dnsPolicy" not in patch["spec"]["template"]["spec"]


def test_owned_patch_without_record_rewrites_record_only_when_needed() -> None:
    live = _as_server_stores(DS)
    del live["metadata"]["annotations"][APPLIED_FIELDS_ANNOTATION]
    patch = owned_patch(DS, live)
    assert patch is not None and APPLIED_FIELDS_ANNOTATION in patch["metadata"]["annotations"]


def test_status_patch_changes_and_removals() -> None:
    assert status_patch({"a": 1, "b": [1]}, {"a": 1, "b": [1]}) is None
    assert status_patch({"a": 1}, {"a": 2}) == {"status": {"a": 2}}
    assert status_patch({"a": 1, "old": 3}, {"a": 1}, owned_keys=("old",)) == {"status": {"old": None}}
    assert status_patch({"a": 1, "theirs": 3}, {"a": 1}, owned_keys=("old",)) is None


def test_pod_posture_patch_is_one_merge_patch() -> None:
    deep, full = "stellaops.io/observe-deep", "stellaops.io/observe-full"
    ann = {POSTURE_ANNOTATION: "EbpfDeep", POSTURE_REASON_ANNOTATION: "why"}
    have = {OBSERVE_LABEL: "true", deep: "true", "app": "web"}
    assert pod_posture_patch(annotations=ann, labels=have, posture="EbpfDeep", reason="why",
                             level_labels={OBSERVE_LABEL: "true", deep: "true"}) is None  # fmt: skip
    p = pod_posture_patch(annotations=ann, labels=have, posture="Passive", reason="r", level_labels={})
    assert p == {
        "metadata": {
            "annotations": {POSTURE_ANNOTATION: "Passive", POSTURE_REASON_ANNOTATION: "r"},
            "labels": {OBSERVE_LABEL: None, deep: None},  # removed, never "false"; others untouched
        }
    }
    p = pod_posture_patch(
        annotations=ann,
        labels=have,
        posture="ActiveTracing",
        reason="why",
        level_labels={OBSERVE_LABEL: "true"},
    )
    assert p is not None and p["metadata"]["labels"] == {deep: None}  # lowered: loses the deep label only
    p = pod_posture_patch(
        annotations={},
        labels={},
        posture="FullInstrumentation",
        reason="r",
        level_labels={OBSERVE_LABEL: "true", deep: "true", full: "true"},
    )
    assert p is not None and p["metadata"]["labels"] == {OBSERVE_LABEL: "true", deep: "true", full: "true"}


def test_pod_posture_patch_sets_and_removes_the_opt_out_label() -> None:
    off = {OBSERVE_OFF_LABEL: "true"}
    # opted out: the level labels go, observe-off is set
    have = {OBSERVE_LABEL: "true", "stellaops.io/observe-deep": "true", "app": "web"}
    p = pod_posture_patch(annotations={}, labels=have, posture="None", reason="out", level_labels=off)
    assert p is not None and p["metadata"]["labels"] == {
        OBSERVE_LABEL: None, "stellaops.io/observe-deep": None, OBSERVE_OFF_LABEL: "true"
    }  # fmt: skip
    # already recorded: nothing to write
    ann = {POSTURE_ANNOTATION: "None", POSTURE_REASON_ANNOTATION: "out"}
    assert pod_posture_patch(annotations=ann, labels={**off, "app": "web"}, posture="None", reason="out",
                             level_labels=off) is None  # fmt: skip
    # opted back in (annotation removed or changed): observe-off is removed, never set to "false"
    p = pod_posture_patch(annotations=ann, labels={**off, "app": "web"}, posture="Passive", reason="r",
                          level_labels={})  # fmt: skip
    assert p is not None and p["metadata"]["labels"] == {OBSERVE_OFF_LABEL: None}
    # at None for another reason (no agent on the node): no observe-off, and none removed that is absent
    p = pod_posture_patch(annotations={}, labels={"app": "web"}, posture="None", reason="r", level_labels={})
    assert p is not None and "labels" not in p["metadata"]


def test_labels_patch_removes_stale_feature_labels_only() -> None:
    current = {
        "feature.stellaops.io/btf": "true",
        "feature.stellaops.io/old": "x",
        "kubernetes.io/os": "linux",
    }
    desired = {"feature.stellaops.io/btf": "true", "feature.stellaops.io/usdt": "false"}
    assert labels_patch(current, desired, prefix="feature.stellaops.io/") == {
        "feature.stellaops.io/usdt": "false",
        "feature.stellaops.io/old": None,
    }
    assert labels_patch(desired, desired, prefix="feature.stellaops.io/") is None


# -- the scheduler ---------------------------------------------------------------------------------


async def test_scheduler_coalesces_a_burst_into_one_run() -> None:
    runs: list[tuple] = []

    async def reconcile(key: tuple) -> None:
        runs.append(key)

    s = Scheduler(reconcile)
    for _ in range(50):
        s.trigger(("a",), delay=0.05)
    s.trigger(("b",))
    await s.wait_idle()
    assert sorted(runs) == [("a",), ("b",)]


async def test_scheduler_never_runs_one_key_twice_at_once_and_reruns_once() -> None:
    active = 0
    peak = 0
    runs = 0
    started = asyncio.Event()
    release = asyncio.Event()

    async def reconcile(key: tuple) -> None:
        nonlocal active, peak, runs
        active += 1
        runs += 1
        peak = max(peak, active)
        started.set()
        await release.wait()
        active -= 1

    s = Scheduler(reconcile)
    s.trigger(("k",))
    await started.wait()
    for _ in range(10):  # arrive while running: exactly one more run
        s.trigger(("k",))
    release.set()
    await s.wait_idle()
    assert peak == 1
    assert runs == 2


async def test_scheduler_retries_failures_with_backoff() -> None:
    attempts = 0

    async def reconcile(key: tuple) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RuntimeError("API server down")

    s = Scheduler(reconcile, retry_initial=0.01, retry_max=0.02)
    s.trigger(("k",))
    await asyncio.wait_for(s.wait_idle(), 5)
    assert attempts == 3
    assert s.stats.failures == 2 and s.stats.retries == 2


async def test_scheduler_run_waits_for_a_fresh_run() -> None:
    seen: list[int] = []
    value = 0

    async def reconcile(key: tuple) -> None:
        await asyncio.sleep(0.01)
        seen.append(value)

    s = Scheduler(reconcile)
    s.trigger(("k",))
    await asyncio.sleep(0)
    value = 1
    await s.run(("k",))
    assert seen[-1] == 1


@pytest.mark.parametrize("delay", [0.0, 0.02])
async def test_scheduler_close_cancels_pending(delay: float) -> None:
    ran = []

    async def reconcile(key: tuple) -> None:
        ran.append(key)

    s = Scheduler(reconcile)
    s.trigger(("k",), delay=10)
    await asyncio.sleep(delay)
    await s.close()
    s.trigger(("late",))
    assert ran == [] and len(s) == 0
