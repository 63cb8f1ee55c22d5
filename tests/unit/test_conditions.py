"""Status conditions: shape, the four-state helper, and transition times kept across reconciles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from crd_schema import errors, load_crd, validator_for

from stellaops_runtime.controller.conditions import (
    CONDITION_TYPES,
    condition,
    find_condition,
    merge_conditions,
    now_rfc3339,
    state_conditions,
)

T0 = "2026-11-24T10:00:00Z"
T1 = "2026-11-24T10:05:00Z"
ROOT = Path(__file__).resolve().parents[2]


def test_condition_shape() -> None:
    assert condition(type="Ready", status=True, reason="Rendered", message="2 policies", generation=3) == {
        "type": "Ready",
        "status": "True",
        "reason": "Rendered",
        "message": "2 policies",
        "observedGeneration": 3,
    }
    assert "observedGeneration" not in condition(
        type="Ready", status=False, reason="R", message="", generation=None
    )


@pytest.mark.parametrize("state", CONDITION_TYPES)
def test_state_conditions_sets_exactly_one_true(state: str) -> None:
    conds = state_conditions(state=state, reason="InvalidRegex", message="bad", generation=7)  # type: ignore[arg-type]
    assert [c["type"] for c in conds] == ["Ready", "Progressing", "Degraded", "Stalled"]
    assert [c["type"] for c in conds if c["status"] == "True"] == [state]
    assert all(c["reason"] == "InvalidRegex" and c["observedGeneration"] == 7 for c in conds)
    with pytest.raises(ValueError, match="state must be one of"):
        state_conditions(state="Happy", reason="R", message="", generation=None)  # type: ignore[arg-type]


def test_unchanged_reconcile_gives_an_identical_status() -> None:
    new = state_conditions(state="Ready", reason="Rendered", message="ok", generation=2)
    first = merge_conditions(None, new, now=T0)
    assert all(c["lastTransitionTime"] == T0 for c in first)
    second = merge_conditions(
        first, state_conditions(state="Ready", reason="Rendered", message="ok", generation=2), now=T1
    )
    assert second == first  # nothing to write


def test_transition_time_moves_only_with_the_status() -> None:
    first = merge_conditions(
        None, state_conditions(state="Progressing", reason="Rolling", message="1/3", generation=1), now=T0
    )
    # same statuses, new message and generation: times stay, text updates
    second = merge_conditions(
        first, state_conditions(state="Progressing", reason="Rolling", message="2/3", generation=2), now=T1
    )
    assert [c["lastTransitionTime"] for c in second] == [T0] * 4
    assert find_condition(second, "Progressing") == {
        **find_condition(first, "Progressing"),
        "message": "2/3",
        "observedGeneration": 2,
    }  # type: ignore[dict-item]
    # Ready flips: only Ready and Progressing get the new time
    third = merge_conditions(
        second, state_conditions(state="Ready", reason="Rendered", message="3/3", generation=2), now=T1
    )
    times = {c["type"]: c["lastTransitionTime"] for c in third}
    assert times == {"Ready": T1, "Progressing": T1, "Degraded": T0, "Stalled": T0}


def test_conditions_of_other_writers_are_kept_after_ours() -> None:
    existing = [
        {"type": "Reconciling", "status": "True", "lastTransitionTime": T0},
        {"type": "Ready", "status": "True", "lastTransitionTime": T0},
    ]
    merged = merge_conditions(
        existing, [condition(type="Ready", status=True, reason="R", message="m", generation=None)], now=T1
    )
    assert [c["type"] for c in merged] == ["Ready", "Reconciling"]
    assert merged[0]["lastTransitionTime"] == T0
    # an existing condition without a time gets one
    assert (
        merge_conditions(
            [{"type": "Ready", "status": "True"}],
            [condition(type="Ready", status=True, reason="R", message="", generation=None)],
            now=T1,
        )[0]["lastTransitionTime"]
        == T1
    )


def test_find_condition_and_time_format() -> None:
    conds = state_conditions(state="Stalled", reason="UnknownSyscall", message="opnat", generation=None)
    assert find_condition(conds, "Stalled")["status"] == "True"  # type: ignore[index]
    assert find_condition(conds, "Missing") is None and find_condition(None, "Ready") is None
    t = datetime(2026, 11, 24, 11, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert now_rfc3339(t) == T0
    assert (
        now_rfc3339().endswith("Z")
        and now_rfc3339(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00Z"
    )


@pytest.mark.parametrize(
    "crd", ["observationpolicies.yaml", "clusterobservationpolicies.yaml", "runtimeobservers.yaml"]
)
def test_merged_conditions_fit_the_crd_status_schema(crd: str) -> None:
    conds = merge_conditions(
        None, state_conditions(state="Degraded", reason="LoadError", message="1 node", generation=4), now=T0
    )
    v = validator_for(load_crd(ROOT / "manifests" / "crds" / crd))
    meta = {"name": "x", "namespace": "default"} if crd == "observationpolicies.yaml" else {"name": "x"}
    obj = {
        "apiVersion": "stellaops.io/v1alpha1",
        "kind": "X",
        "metadata": meta,
        "spec": {},
        "status": {"observedGeneration": 4, "conditions": conds},
    }
    if crd == "runtimeobservers.yaml":
        obj["spec"] = {"agent": {"image": "i"}, "store": {"secretRef": {"name": "s", "key": "k"}}}
    assert errors(v, obj) == []
