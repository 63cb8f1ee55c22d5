"""A node whose agent gets no events turns its policies Degraded after a bound, naming the node.

A fresh node whose Tetragon answers while its agent's event stream is not
connected (``source: none``) counts as pending in a policy's rollout, with a
``NoEventSource`` entry. That kept the policy Progressing for as long as it
lasted (days), while nothing the policy traces on that node reached the store:
``kubectl wait --for=condition=Ready`` and a GitOps health check waited for
ever, with no terminal answer. The agent now writes since when it has had no
event source (its ObservationNode's ``EventSource`` condition, False with
reason ``NoEventSource``), and the policy turns Degraded (``NoEventSource``,
naming the node and since when) once that has lasted
``tetragon_unreachable_seconds``; a shorter episode (an agent's restart, before
its stream connects) stays Progressing. Timed like ``TetragonUnreachable``:
the agent's own account (its heartbeat minus the transition, one clock) on an
operator's first sight, so a restarted operator finds the same answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.observation_status import EVENT_SOURCE_CONDITION, build_status
from stellaops_runtime.controller.heartbeats import Heartbeats
from stellaops_runtime.controller.policy_state import policy_state
from stellaops_runtime.controller.rollout import NodeReport, fold_rollout, index_nodes
from stellaops_runtime.controller.rollout_overdue import no_source_nodes, unreachable_nodes

NOW = datetime(2026, 12, 6, 1, 0, 0, tzinfo=UTC)
ADDRESS = "unix:///var/run/tetragon/tetragon.sock"
UP = TetragonInfo(address=ADDRESS, reachable=True, version="v1.7.0")
CAPS = Capabilities(
    kernel_version="6.1.0",
    btf=True,
    bpf_permitted=True,
    tracepoints=True,
    uprobes=True,
    kprobes=True,
    usdt=True,
    ring_buffer=True,
    tetragon=TetragonInfo(address=ADDRESS),
)
NAMES = ["stellaops-web"]
ENABLED = [{"name": "stellaops-web", "namespace": "shop", "state": "ENABLED"}]


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(connected: bool, at: datetime, before: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return build_status(
        capabilities=CAPS,
        tetragon=UP,
        policies=ENABLED,
        existing_conditions=before,
        now=_stamp(at),
        stream_connected=connected,
    )


def _node(name: str, status: dict[str, Any], beat: datetime) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": status | {"heartbeatTime": _stamp(beat)}}


def _state(nodes: list[dict[str, Any]], beats: Heartbeats, now: datetime = NOW) -> tuple[str, str, str]:
    arrived = beats.received_all(nodes, now=now)  # staleness on the operator's clock, as reconciled
    reports = index_nodes(nodes, now=now, stale_after_seconds=90, beats=arrived)
    deaf: list[NodeReport] = []  # the nodes the fold counts pending for NoEventSource
    rollout = fold_rollout(
        tetragon_policies=[("shop", n) for n in NAMES],
        nodes=(),
        now=now,
        stale_after_seconds=90,
        reports=reports,
        deaf=deaf,
    )
    return policy_state(
        names=NAMES,
        rollout=rollout,
        errors=[],
        missing_crd=False,
        unreachable=unreachable_nodes(reports, now=now, after_seconds=120),
        no_source=no_source_nodes(
            deaf,
            now=now,
            after_seconds=120,
            since=lambda r: beats.no_source_since(r.name, r.no_source_since, now=now, beat=r.beat),
        ),
        unreachable_after=120,
    )


def _condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == EVENT_SOURCE_CONDITION)


def test_the_agent_says_since_when_it_has_no_event_source() -> None:
    first = _status(False, NOW - timedelta(minutes=10))
    deaf = _condition(first)
    assert (deaf["status"], deaf["reason"]) == ("False", "NoEventSource")
    assert "event stream is not connected" in deaf["message"]
    again = _status(False, NOW, first["conditions"])
    assert again == first  # the same episode: nothing to write, its start kept
    back = _condition(_status(True, NOW, again["conditions"]))
    assert (back["status"], back["reason"], back["lastTransitionTime"]) == (
        "True",
        "SourceWorking",
        _stamp(NOW),
    )


def test_no_event_source_for_longer_than_the_bound_makes_the_policy_degraded_naming_the_node() -> None:
    since = NOW - timedelta(minutes=10)
    deaf = _node("node-deaf", _status(False, since), NOW)
    running = _node("node-ok", _status(True, since), NOW)
    state, reason, message = _state([deaf, running], Heartbeats())
    assert (state, reason) == ("Degraded", "NoEventSource"), message
    assert message.startswith(
        "1/2 nodes have delivered no events for 120s or more (source none), so nothing the policy "
        f"traces is observed there: node-deaf since {_stamp(since)}"
    ), message
    assert message.endswith("; 1/2 nodes running"), message


def test_a_short_episode_an_agents_restart_stays_progressing_and_says_when_it_turns_degraded() -> None:
    beats = Heartbeats()
    deaf = _status(False, NOW - timedelta(seconds=5))
    state, reason, message = _state([_node("node-deaf", deaf, NOW)], beats)
    assert (state, reason) == ("Progressing", "RollingOut"), message
    assert "1 with no event source: Degraded after 120s" in message, message
    # the stream connects: Ready; a later episode, an hour on, is timed anew, not from the first one
    back = _status(True, NOW, deaf["conditions"])
    assert _state([_node("node-deaf", back, NOW)], beats)[0] == "Ready"
    later = NOW + timedelta(hours=1)
    again = _status(False, later - timedelta(seconds=5), back["conditions"])
    state, _, message = _state([_node("node-deaf", again, later)], beats, now=later)
    assert state == "Progressing", message
    then = later + timedelta(seconds=130)  # and turns Degraded once it lasts the bound
    assert _state([_node("node-deaf", again, then)], beats, now=then)[:2] == ("Degraded", "NoEventSource")


def test_a_restarted_operator_times_it_by_the_agents_own_account_whatever_its_clock() -> None:
    for skew in (timedelta(hours=-3), timedelta(0), timedelta(days=1)):  # the node's clock vs ours
        agent_now = NOW + skew
        status = _status(False, agent_now - timedelta(minutes=5))  # 5 min without events, its clock
        node = _node("node-deaf", status, agent_now)
        assert _state([node], _restarted(node))[:2] == ("Degraded", "NoEventSource"), skew
        recent = _node("node-deaf", _status(False, agent_now - timedelta(seconds=30)), agent_now)
        assert _state([recent], _restarted(recent))[0] == "Progressing", skew


def _restarted(node: dict[str, Any]) -> Heartbeats:
    """A restarted operator that saw one earlier heartbeat of the node (a node clock behind reads
    stale on the first sight alone, until its next heartbeat: controller.heartbeats)."""
    beats = Heartbeats()
    earlier = {**node, "status": node["status"] | {"heartbeatTime": "2000-01-01T00:00:00Z"}}
    beats.received(earlier, now=NOW - timedelta(seconds=30))
    return beats


def test_an_agent_that_does_not_say_since_when_keeps_the_policy_progressing() -> None:
    """An agent of an older version writes no EventSource condition: no time is assumed."""
    status = _status(False, NOW - timedelta(hours=1))
    status["conditions"] = [c for c in status["conditions"] if c["type"] != EVENT_SOURCE_CONDITION]
    state, reason, message = _state([_node("node-old", status, NOW)], Heartbeats())
    assert (state, reason) == ("Progressing", "RollingOut")
    # it never turns Degraded, so the message must not promise it (it said "Degraded after 120s")
    assert "Degraded after" not in message, message
    assert "(1 with no event source, its agent does not say since when)" in message, message
    timed = _node("node-new", _status(False, NOW - timedelta(seconds=5)), NOW)
    both = _state([_node("node-old", status, NOW), timed], Heartbeats())[2]
    assert "(1 with no event source: Degraded after 120s)" in both, both
    assert "(1 with no event source, its agent does not say since when)" in both, both
    # hostile: a transition that is no time, or of the wrong type
    for hostile in ("yesterday", 12, None, "\x00"):
        bad = _status(False, NOW - timedelta(hours=1))
        _condition(bad)["lastTransitionTime"] = hostile
        assert _state([_node("node-bad", bad, NOW)], Heartbeats())[0] == "Progressing", hostile


def test_a_node_that_runs_nothing_of_the_policy_does_not_hold_it() -> None:
    """Only a node where the policy would run counts: one whose Tetragon skipped it (its nodeSelector),
    or failed to load it (LoadFailed says so), is not a NoEventSource of this policy."""
    since = NOW - timedelta(hours=1)
    skipped = _status(False, since)
    skipped["policies"] = [ENABLED[0] | {"state": "SKIPPED"}]
    ok = _node("node-ok", _status(True, since), NOW)
    assert _state([_node("node-skip", skipped, NOW), ok], Heartbeats())[:2] == ("Ready", "RolledOut")
    failed = _status(False, since)
    failed["policies"] = [ENABLED[0] | {"state": "LOAD_ERROR", "error": "boom"}]
    assert _state([_node("node-fail", failed, NOW), ok], Heartbeats())[1] == "LoadFailed"
