"""Which version of a Tetragon policy a node reports: Tetragon's info text, the agent's entry, the fold.

Tetragon's ``TracingPolicyStatus.info`` for an object loaded from the
Kubernetes API is ``<name> (object:<generation>/<uid>) (type:<kind>/<apiVersion>)``
(``TpInfo`` of its v1alpha1 types); for a policy added from YAML it is the
name alone. The agent copies the two into ``objectUid``/``objectGeneration``;
the rollout counts a report with them only when they are the object's now,
whatever the report's time, and one without them by the time rule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stellaops_runtime.agent.capabilities import policy_entry
from stellaops_runtime.controller.loaded_version import object_version, reported_version, version_from_info
from stellaops_runtime.controller.rollout import awaiting_since, fold_rollout, index_nodes
from stellaops_runtime.wire.tetragon import sensors_pb2

UID = "0b6f5d3e-8c1a-4c8e-9a57-2f1d1e6c3b70"
NOW = datetime(2026, 12, 5, 3, 0, 0, tzinfo=UTC)
KEY = ("shop", "stellaops-web")


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (f"stellaops-web (object:3/{UID}) (type:TracingPolicyNamespaced/cilium.io/v1alpha1)", (UID, 3)),
        (f"p (object:1/{UID}) (type:TracingPolicy/cilium.io/v1alpha1)", (UID, 1)),
        ("stellaops-web", None),  # loaded from YAML (gRPC AddTracingPolicy, a file): no object
        ("", None),
        (f"p (object:0/{UID})", None),  # generations start at 1
        (f"p (object:{2**63}/{UID})", None),  # beyond int64
        (f"p (object:99999999999999999999999/{UID})", None),
        ("p (object:3/)", None),
        ("p (object:-3/abc)", None),
        ("p (object:3/ab\x00c)", None),
        ("p (object:3/\uff41\uff42\uff43)", None),  # fullwidth letters are no uid
        ("p (object:3/" + "a" * 129 + ")", None),
        ("x" * 100_000, None),
    ],
)
def test_version_from_tetragons_info(info: str, expected: tuple[str, int] | None) -> None:
    assert version_from_info(info) == expected


def test_the_agent_reports_the_loaded_version_only_when_tetragon_names_it() -> None:
    named = sensors_pb2.TracingPolicyStatus(
        name="stellaops-web",
        namespace="shop",
        state=sensors_pb2.TP_STATE_ENABLED,
        info=f"stellaops-web (object:7/{UID}) (type:TracingPolicyNamespaced/cilium.io/v1alpha1)",
    )
    entry = policy_entry(named)
    assert (entry["objectUid"], entry["objectGeneration"]) == (UID, 7)
    bare = policy_entry(sensors_pb2.TracingPolicyStatus(name="from-yaml", info="from-yaml"))
    assert "objectUid" not in bare and "objectGeneration" not in bare


@pytest.mark.parametrize(
    "entry",
    [
        None,
        {},
        {"objectUid": UID},
        {"objectGeneration": 3},
        {"objectUid": "", "objectGeneration": 3},
        {"objectUid": UID, "objectGeneration": "3"},
        {"objectUid": UID, "objectGeneration": True},
        {"objectUid": 5, "objectGeneration": 3},
        {"objectUid": [UID], "objectGeneration": 3},
    ],
)
def test_a_hand_edited_entry_names_no_version(entry: dict[str, Any] | None) -> None:
    assert reported_version(entry) is None


def test_object_version() -> None:
    assert object_version({"metadata": {"uid": UID, "generation": 4}}) == (UID, 4)
    assert object_version({"metadata": {"uid": UID}}) is None
    assert object_version({"metadata": "x"}) is None
    assert object_version(None) is None


def _node(beat: datetime, **entry: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "node-a"},
        "status": {
            "heartbeatTime": beat.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": "tetragon",
            "policies": [{"name": KEY[1], "namespace": KEY[0], "state": "ENABLED", **entry}],
        },
    }


def _fold(node: dict[str, Any], *, written: datetime, version: tuple[str, int]) -> dict[str, Any]:
    return fold_rollout(
        tetragon_policies=[KEY],
        nodes=[node],
        now=NOW,
        stale_after_seconds=90,
        written={KEY: written},
        versions={KEY: version},
    )


def test_a_report_of_the_version_now_counts_whatever_its_time() -> None:
    written = NOW - timedelta(seconds=10)
    behind = _node(written - timedelta(seconds=60), objectUid=UID, objectGeneration=2)  # agent clock behind
    assert _fold(behind, written=written, version=(UID, 2))["nodesRunning"] == 1


def test_a_report_of_another_version_is_pending_whatever_its_time() -> None:
    written = NOW - timedelta(seconds=10)
    for entry in ({"objectUid": UID, "objectGeneration": 1}, {"objectUid": "other", "objectGeneration": 2}):
        ahead = _node(NOW + timedelta(minutes=10), **entry)  # agent clock ahead: after the write by time
        rollout = _fold(ahead, written=written, version=(UID, 2))
        assert (rollout["nodesRunning"], rollout["nodesPending"]) == (0, 1)
    failed_old = _node(NOW, objectUid=UID, objectGeneration=1, state="LOAD_ERROR")  # an old version's error
    rollout = _fold(failed_old, written=written, version=(UID, 2))
    assert (rollout["nodesFailed"], rollout["nodesPending"]) == (0, 1)


def test_a_report_naming_no_version_keeps_the_time_rule() -> None:
    written = NOW - timedelta(seconds=10)
    assert (
        _fold(_node(written - timedelta(seconds=5)), written=written, version=(UID, 2))["nodesPending"] == 1
    )
    assert _fold(_node(NOW), written=written, version=(UID, 2))["nodesRunning"] == 1


def test_only_nodes_naming_no_version_wait_on_a_heartbeat() -> None:
    written = NOW - timedelta(seconds=10)
    old = written - timedelta(seconds=5)
    named = index_nodes([_node(old, objectUid=UID, objectGeneration=1)], now=NOW, stale_after_seconds=90)
    bare = index_nodes([_node(old)], now=NOW, stale_after_seconds=90)
    assert awaiting_since(named, {KEY: written}) is None  # its list changes when Tetragon reloads
    assert awaiting_since(bare, {KEY: written}) == written
