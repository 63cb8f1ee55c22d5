"""What a policy and its writer say of a rendered object being deleted (pure; the race runs in
tests/integration/test_owned_terminating.py and tests/realkube/test_owned_terminating_real.py).

An object a finalizer holds, deleted, is about to go: ``owned.TerminatingError`` names it, and the
policy is Progressing ``WaitingForDeletion`` where it was Ready, RollingOut or NoNodeRunning; what
makes it Degraded (its nodes' load errors, a refused object, an apply error) still decides first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stellaops_runtime.controller.conditions import WAITING_FOR_DELETION
from stellaops_runtime.controller.owned import TerminatingError
from stellaops_runtime.controller.ownership import NotOwnedError
from stellaops_runtime.controller.policy_state import policy_state
from stellaops_runtime.controller.rollout import fold_rollout

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
POLICY = ("shop", "stellaops-web")
GOING = str(
    TerminatingError(
        kind="TracingPolicyNamespaced",
        namespace="shop",
        name="stellaops-web",
        meta={"deletionTimestamp": "2026-12-06T11:59:00Z", "finalizers": ["example.com/hold"]},
    )
)


def _rollout(states: list[str | None]) -> dict[str, Any]:
    nodes = []
    for i, state in enumerate(states):
        status: dict[str, Any] = {
            "heartbeatTime": (NOW - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": "tetragon",
            "capabilities": {"tetragon": {"reachable": True}},
            "policies": [{"name": POLICY[1], "namespace": POLICY[0], "state": state}] if state else [],
        }
        nodes.append({"metadata": {"name": f"n{i}"}, "spec": {"nodeName": f"n{i}"}, "status": status})
    return fold_rollout(tetragon_policies=[POLICY], nodes=nodes, now=NOW, stale_after_seconds=90)


@pytest.mark.parametrize(
    "states", [["ENABLED"], ["ENABLED", None], []], ids=["was-ready", "was-rolling-out", "was-no-node"]
)
def test_an_object_being_deleted_is_progressing_whatever_the_nodes_say(states: list[str | None]) -> None:
    rollout = _rollout(states)
    state, reason, message = policy_state(
        names=[POLICY[1]], rollout=rollout, errors=[], missing_crd=False, terminating=[GOING]
    )
    assert (state, reason) == ("Progressing", WAITING_FOR_DELETION)
    assert message.startswith(GOING) and message.endswith(
        f"{rollout['nodesRunning']}/{len(states)} nodes running"
    )


def test_what_makes_the_policy_degraded_decides_first() -> None:
    failed = policy_state(
        names=[POLICY[1]], rollout=_rollout(["LOAD_ERROR"]), errors=[], missing_crd=False, terminating=[GOING]
    )
    assert failed[:2] == ("Degraded", "LoadFailed")
    refused = NotOwnedError(kind="TracingPolicyNamespaced", namespace="shop", name="x", why="not ours")
    state = policy_state(
        names=[POLICY[1]],
        rollout=_rollout([]),
        errors=[],
        missing_crd=False,
        refused=[refused],
        terminating=[GOING],
    )
    assert state[:2] == ("Degraded", "NotOwned")
    state = policy_state(
        names=[POLICY[1]], rollout=_rollout([]), errors=["x: 500"], missing_crd=False, terminating=[GOING]
    )
    assert state[:2] == ("Degraded", "ApplyFailed")


def test_the_message_names_the_object_since_when_and_the_finalizers_and_no_more() -> None:
    assert GOING == (
        "TracingPolicyNamespaced shop/stellaops-web is being deleted (since 2026-12-06T11:59:00Z; "
        "finalizers pending: example.com/hold): it is created again once it is gone"
    )
    # What the API server holds is the user's: a finalizer list of another type, or a long one.
    odd = TerminatingError(
        kind="ConfigMap", namespace=None, name="c", meta={"deletionTimestamp": "t", "finalizers": 7}
    )
    assert str(odd) == "ConfigMap c is being deleted (since t): it is created again once it is gone"
    many = TerminatingError(
        kind="ConfigMap",
        namespace="a",
        name="c",
        meta={"deletionTimestamp": "t", "finalizers": [f"f{i}" for i in range(99)]},
    )
    assert "pending: f0, f1, f2, f3, f4 and 94 more)" in str(many)
