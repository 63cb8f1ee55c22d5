"""Argo CD health of an ObservationNode (manifests/gitops/argocd/health/observationnode.lua).

The script runs in Argo CD's Lua sandbox (tests/argocd_lua.py) against
statuses the agent's own ``build_status`` writes: ``Ready`` (Tetragon
reachable), ``ContainersKnown`` (every lifecycle state of
``CONTAINERS_STATES``) and ``ExportPositionRecorded`` (``export_position`` of
a watch record that can or cannot be written). A node whose agent cannot
count silent containers, or holds what it read because its watch record
cannot be written, must not show Healthy; a lifecycle state added to the
agent without a decision here fails ``test_every_containers_state_is_mapped``.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from argocd_lua import health
from crd_schema import errors, load_crd, validator_for

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.observation_status import (
    CONTAINERS_CONDITION,
    CONTAINERS_STATES,
    EVENT_SOURCE_CONDITION,
    EXPORT_CONDITION,
    build_status,
    export_position,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = "2026-12-03T06:00:00Z"
ADDRESS = "unix:///var/run/tetragon/tetragon.sock"
UP = TetragonInfo(address=ADDRESS, reachable=True, version="v1.7.0")
DOWN = TetragonInfo(address=ADDRESS, reachable=False, error="connection refused")
# lifecycle_state's answer -> Argo CD health of a node whose Tetragon answers
CONTAINERS_HEALTH = {
    "in_sync": "Healthy",
    "not_in_sync": "Progressing",  # before the first sample, the runtime away: the agent retries
    "no_runtime_socket": "Degraded",  # needs a mount or a setting: nothing retries
    "off": "Degraded",  # silent containers are not counted at all
}


def caps(tetragon: TetragonInfo) -> Capabilities:
    return Capabilities(
        kernel_version="6.1.0-18-amd64",
        btf=True,
        bpf_permitted=False,
        tracepoints=True,
        uprobes=True,
        kprobes=True,
        usdt=True,
        ring_buffer=True,
        tetragon=tetragon,
    )


def observation_node(status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "stellaops.io/v1alpha1",
        "kind": "ObservationNode",
        "metadata": {"name": "n1", "generation": 1},
        "spec": {"nodeName": "n1"},
    }
    if status is not None:
        obj["status"] = status | {"heartbeatTime": T0}
    return obj


def status(
    tetragon: TetragonInfo = UP,
    *,
    containers: str | None = None,
    export: tuple[bool, str] | None = None,
    before: list[dict[str, Any]] | None = None,
    now: str = T0,
) -> dict[str, Any]:
    return build_status(
        capabilities=caps(tetragon),
        tetragon=tetragon,
        source="tetragon",
        policies=[],
        existing_conditions=before,
        now=now,
        containers=containers,
        export_position=export,
    )


def record(*, held: int) -> Any:
    """A watch record as ``export_position`` reads it (agent/watch_record.py's attributes)."""
    export = SimpleNamespace(positions=object(), held=held)
    return SimpleNamespace(
        enabled=True, path="/var/lib/stellaops/spool.alive", export=export, unrecorded=held > 0
    )


def node_health(st: dict[str, Any]) -> dict[str, Any]:
    obj = observation_node(st)
    assert errors(validator_for(load_crd(ROOT / "manifests" / "crds" / "observationnodes.yaml")), obj) == []
    return health("ObservationNode", obj)


def cond(st: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in st["conditions"] if c["type"] == kind)


def test_observation_node_reachable_unreachable_and_not_reported() -> None:
    up = status()
    assert node_health(up) == {
        "status": "Healthy",
        "message": f"TetragonReachable: Tetragon v1.7.0 at {ADDRESS}",
    }
    down = status(DOWN, before=up["conditions"], now="2026-12-03T06:05:00Z")
    got = node_health(down)
    assert got["status"] == "Degraded" and got["message"].startswith("TetragonUnreachable: ")
    assert "connection refused" in got["message"]
    assert health("ObservationNode", observation_node(None))["status"] == "Progressing"
    assert health("ObservationNode", observation_node({"source": "tetragon"}))["status"] == "Progressing"


def test_every_containers_state_is_mapped() -> None:
    assert set(CONTAINERS_HEALTH) == set(CONTAINERS_STATES), "decide the Argo CD health of a new state"


@pytest.mark.parametrize("state", sorted(CONTAINERS_STATES))
def test_containers_known_decides_a_reachable_node(state: str) -> None:
    st = status(containers=state)
    c = cond(st, CONTAINERS_CONDITION)
    got = node_health(st)
    assert got["status"] == CONTAINERS_HEALTH[state]
    if c["status"] == "True":
        assert got["message"].startswith("TetragonReachable: ")
    else:  # the message names the condition, then says what it means and what to set
        assert got["message"] == f"{CONTAINERS_CONDITION} False: {c['reason']}: {c['message']}"


def test_no_runtime_socket_was_healthy_and_back_in_sync_is_healthy_again() -> None:
    capped = status(containers="no_runtime_socket")
    got = node_health(capped)
    assert got["status"] == "Degraded" and got["message"].startswith(
        "ContainersKnown False: NoRuntimeSocket: "
    )
    synced = status(containers="in_sync", before=capped["conditions"], now="2026-12-03T06:05:00Z")
    assert node_health(synced)["status"] == "Healthy"


def test_an_unwritable_watch_record_is_degraded() -> None:
    held = export_position(record(held=3))
    assert held is not None and held[0] is False
    st = status(containers="in_sync", export=held)
    c = cond(st, EXPORT_CONDITION)
    assert node_health(st) == {
        "status": "Degraded",
        "message": f"{EXPORT_CONDITION} False: WatchRecordUnwritable: {c['message']}",
    }
    assert "export_drains_held_total" in c["message"]
    recorded = status(containers="in_sync", export=export_position(record(held=0)), before=st["conditions"])
    assert node_health(recorded)["status"] == "Healthy"


def test_the_worst_condition_wins() -> None:
    held = export_position(record(held=1))
    # Tetragon unreachable outranks both: its message is the Ready condition's, as before
    got = node_health(status(DOWN, containers="no_runtime_socket", export=held))
    assert got["status"] == "Degraded" and got["message"].startswith("TetragonUnreachable: ")
    # a held export outranks a registry still syncing (Progressing) and a missing socket
    for containers in ("not_in_sync", "no_runtime_socket"):
        got = node_health(status(containers=containers, export=held))
        assert got["status"] == "Degraded" and got["message"].startswith("ExportPositionRecorded False: ")


@pytest.mark.parametrize(
    ("conditions", "want"),
    [
        # hand-written or from a future agent: anything but True is no health
        ([{"type": "Ready", "status": "True"}, {"type": "ContainersKnown", "status": "Unknown"}], "Degraded"),
        ([{"type": "Ready", "status": "True"}, {"type": "ContainersKnown", "status": True}], "Degraded"),
        (
            [
                {"type": "Ready", "status": "True"},
                {"type": "ContainersKnown", "status": "False", "reason": 1},
            ],
            "Degraded",
        ),
        (
            [
                {"type": "Ready", "status": "True"},
                {"type": "ContainersKnown", "status": "False", "reason": "New"},
            ],
            "Degraded",
        ),
        ([{"type": "Ready", "status": "True"}, {"type": "ExportPositionRecorded"}], "Degraded"),
        ([{"type": "Ready", "status": "True"}, {"type": "ContainersKnown", "status": "True"}], "Healthy"),
        ([{"type": "ContainersKnown", "status": "True"}], "Progressing"),  # no Ready: not reported
        ([{"type": "Ready", "status": "True"}, {"type": "SomethingElse", "status": "False"}], "Healthy"),
    ],
)
def test_odd_conditions(conditions: list[dict[str, Any]], want: str) -> None:
    got = health("ObservationNode", {"status": {"conditions": conditions}})
    assert got["status"] == want and got["message"]


def test_gitops_md_and_operator_md_say_what_the_script_does() -> None:
    gitops = (ROOT / "docs" / "gitops.md").read_text()
    flat = re.sub(r"\s+", " ", gitops)
    for state, want in CONTAINERS_HEALTH.items():
        reason = CONTAINERS_STATES[state][1]
        if want != "Healthy":
            assert re.search(rf"\| `ContainersKnown` False[^|]*`{reason}`[^|]*\| {want} \|", flat), reason
    assert "| `ExportPositionRecorded` False (`WatchRecordUnwritable`) | Degraded |" in flat
    operator = re.sub(r"\s+", " ", (ROOT / "docs" / "operator.md").read_text())
    assert "Argo CD's health reads `Ready` only" not in operator


def test_a_node_whose_agent_gets_no_events_is_not_healthy() -> None:
    """Tetragon answers (Ready True) but the agent's event stream is not connected (source none):
    nothing on the node is observed, and the node showed Healthy (the script read Ready). It is now
    Progressing (the agent reconnects by itself, as an agent's restart does; the policies it holds
    turn Degraded NoEventSource after the operator's bound), naming the EventSource condition; a
    Degraded condition still wins, and a connected stream is Healthy again."""

    def deaf(connected: bool, containers: str = "in_sync", before: Any = None) -> dict[str, Any]:
        return build_status(
            capabilities=caps(UP),
            tetragon=UP,
            policies=[],
            existing_conditions=before,
            now=T0,
            stream_connected=connected,
            containers=containers,
        )

    st = deaf(False)
    c = cond(st, EVENT_SOURCE_CONDITION)
    assert node_health(st) == {
        "status": "Progressing",
        "message": f"{EVENT_SOURCE_CONDITION} False: NoEventSource: {c['message']}",
    }
    assert "event stream is not connected" in c["message"]
    got = node_health(deaf(False, "no_runtime_socket"))
    assert got["status"] == "Degraded" and got["message"].startswith("ContainersKnown False: NoRuntimeSocket")
    assert node_health(deaf(True, before=st["conditions"]))["status"] == "Healthy"
    odd = [{"type": "Ready", "status": "True"}, {"type": EVENT_SOURCE_CONDITION, "status": "Unknown"}]
    assert health("ObservationNode", {"status": {"conditions": odd}})["status"] == "Progressing"


def test_an_eventsource_left_by_a_newer_agent_does_not_hold_a_working_node() -> None:
    """An agent rolled back to a version before EventSource keeps the condition the newer agent last
    wrote (merge_conditions keeps types it does not write): a stale False held a node whose source
    works (``status.source`` tetragon or native) Progressing for ever, saying ``source none``. The
    condition is read only where the status says no source works (or does not say)."""
    stale = {
        "type": EVENT_SOURCE_CONDITION,
        "status": "False",
        "reason": "NoEventSource",
        "message": "source none",
    }
    ready = {"type": "Ready", "status": "True", "reason": "TetragonReachable", "message": "Tetragon"}
    for working in ("tetragon", "native"):
        got = health("ObservationNode", {"status": {"source": working, "conditions": [ready, stale]}})
        assert got["status"] == "Healthy", (working, got)
    for deaf in ({"source": "none"}, {}, {"source": 7}):
        got = health("ObservationNode", {"status": deaf | {"conditions": [ready, stale]}})
        assert got["status"] == "Progressing", (deaf, got)


def test_a_node_whose_tetragon_losses_are_unreadable_is_degraded() -> None:
    """``TetragonLossesKnown`` False (``MetricsUnreadable``, agent/tetragon_losses_status.py): the
    node's time is a node-wide gap and every answer there is unknown, yet the script read Ready
    and showed the node Healthy (RTM, brief F5 item 2). It needs a change by the user (Tetragon's
    metrics on and reachable, or ``spec.tetragon.metricsUrl: ""``), like a missing runtime socket:
    Degraded, naming the condition. True (read, or the native probes watch) stays Healthy."""
    from stellaops_runtime.agent.tetragon_losses_status import LOSSES_CONDITION, tetragon_losses

    def losses_status(losses: Any, tetragon: TetragonInfo = UP, **kw: Any) -> dict[str, Any]:
        return build_status(
            capabilities=caps(tetragon), tetragon=tetragon, policies=[], existing_conditions=None,
            now=T0, tetragon_losses=losses, **({"containers": "in_sync"} | kw),
        )  # fmt: skip

    poller = SimpleNamespace(
        unreadable=True,
        shown_url="http://10.0.0.7:2112/metrics",
        stats=SimpleNamespace(last_error="connection refused"),
    )
    tetragon = SimpleNamespace(mode="tetragon")
    lost = tetragon_losses(poller, tetragon)
    st = losses_status(lost)
    c = cond(st, LOSSES_CONDITION)
    assert node_health(st) == {
        "status": "Degraded",
        "message": f"{LOSSES_CONDITION} False: MetricsUnreadable: {c['message']}",
    }
    assert 'metricsUrl to ""' in c["message"]
    # it outranks what the agent retries by itself (a registry syncing, a stream not connected) ...
    got = node_health(losses_status(lost, containers="not_in_sync", stream_connected=False))
    assert got["status"] == "Degraded" and got["message"].startswith(f"{LOSSES_CONDITION} False: ")
    # ... and Tetragon unreachable, a held export and a missing socket outrank it
    got = node_health(losses_status(lost, DOWN, containers="no_runtime_socket"))
    assert got["status"] == "Degraded" and got["message"].startswith("TetragonUnreachable: ")
    got = node_health(losses_status(lost, export_position=export_position(record(held=1))))
    assert got["message"].startswith("ExportPositionRecorded False: ")
    got = node_health(losses_status(lost, containers="no_runtime_socket"))
    assert got["message"].startswith("ContainersKnown False: NoRuntimeSocket")
    # read again, or the source switch's native probes watch: Healthy
    poller.unreadable = False
    for known in (tetragon_losses(poller, tetragon), tetragon_losses(poller, SimpleNamespace(mode="bcc"))):
        assert known is not None and known[0] is True
        assert node_health(losses_status(known))["status"] == "Healthy"
    # hand-written or from a future agent: anything but True is no health
    ready = {"type": "Ready", "status": "True", "reason": "TetragonReachable"}
    for odd in ({"status": "Unknown"}, {"status": True}, {}, {"status": "False", "reason": 7}):
        got = health("ObservationNode", {"status": {"conditions": [ready, {"type": LOSSES_CONDITION} | odd]}})
        assert got["status"] == "Degraded" and got["message"].startswith(LOSSES_CONDITION), (odd, got)
