"""controller/node_backing.py: the fresh ObservationNodes folded into the RuntimeObserver's NotObservedBacked.

Statuses come from the agent's own ``build_status`` for every ``CONTAINERS_STATES``
entry (a lifecycle state added to the agent without a decision here fails
``test_every_containers_state_is_decided``), plus hand-made odd and hostile ones:
the fold never raises, keeps its message bounded, and gives the same text for
the same fleet (so an unchanged fleet is no write).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.observation_status import CONTAINERS_STATES, build_status, export_position
from stellaops_runtime.controller.heartbeats import Heartbeats
from stellaops_runtime.controller.node_backing import (
    BACKING_CONDITION,
    GROUPS,
    fold_backing,
    node_problem,
    outdated,
    registry_transition,
)

UP = TetragonInfo(address="unix:///t.sock", reachable=True, version="v1.7.0")
CAPS = Capabilities(
    kernel_version="6.1.0", btf=True, bpf_permitted=False, tracepoints=True, uprobes=True, kprobes=True,
    usdt=True, ring_buffer=True, tetragon=UP,
)  # fmt: skip
# lifecycle_state's answer -> the RuntimeObserver's state it asks for (None: no objection)
DECIDED = {"in_sync": None, "not_in_sync": "Progressing", "no_runtime_socket": "Degraded", "off": "Degraded"}


def status(
    containers: str | None, *, held: bool | None = None, losses: tuple[bool, str, str] | None = None
) -> dict[str, Any]:
    record = None
    if held is not None:
        record = SimpleNamespace(
            enabled=True, path="/s.alive", unrecorded=held, export=SimpleNamespace(positions=object(), held=1)
        )
    return build_status(
        capabilities=CAPS, tetragon=UP, source="tetragon", policies=[], existing_conditions=None,
        now="2026-12-05T10:00:00Z", containers=containers, export_position=export_position(record),
        tetragon_losses=losses,
    )  # fmt: skip


def test_every_containers_state_is_decided() -> None:
    assert set(DECIDED) == set(CONTAINERS_STATES), "decide what a new lifecycle state does to the observer"


@pytest.mark.parametrize("state", sorted(CONTAINERS_STATES))
def test_each_containers_state(state: str) -> None:
    got = fold_backing([("n1", status(state)), ("n2", status("in_sync"))], generation=4)
    assert got.state == DECIDED[state]
    c = got.condition
    assert (c["type"], c["observedGeneration"]) == (BACKING_CONDITION, 4)
    if DECIDED[state] is None:
        assert (c["status"], c["reason"]) == ("True", "AgentsBackNotObserved")
    else:
        assert (c["status"], c["reason"]) == ("False", CONTAINERS_STATES[state][1])
        assert c["message"].startswith("1 of 2 fresh node(s) cannot back 'not observed': ContainersKnown ")
        assert "(n1)" in c["message"] and "n2" not in c["message"]


def test_export_held_ranks_first_and_a_recorded_one_is_no_fault() -> None:
    assert fold_backing([("n1", status("in_sync", held=False))], generation=1).state is None
    got = fold_backing([("a", status("off")), ("b", status("in_sync", held=True))], generation=1)
    assert (got.state, got.reason) == ("Degraded", "WatchRecordUnwritable")
    assert got.summary.index("ExportPositionRecorded") < got.summary.index("LifecycleDisabled")


def test_no_node_and_older_agents() -> None:
    none = fold_backing([], generation=1)
    assert (none.condition["status"], none.reason, none.state) == ("Unknown", "NoNodeReports", None)
    older = fold_backing([("n1", status(None)), ("n2", None), ("n3", {"conditions": "x"})], generation=1)
    assert (older.condition["status"], older.state) == ("True", None)  # no condition written: no fault


def test_names_a_few_sorted_and_counts_the_rest() -> None:
    nodes = [(f"node-{i:02d}", status("no_runtime_socket")) for i in reversed(range(7))]
    got = fold_backing([*nodes, ("ok", status("in_sync"))], generation=None)
    assert "observedGeneration" not in got.condition
    assert "ContainersKnown NoRuntimeSocket on 7 (node-00, node-01, node-02 and 4 more)" in got.summary
    assert got.summary.startswith("7 of 8 fresh node(s)")
    again = fold_backing(list(reversed([*nodes, ("ok", status("in_sync"))])), generation=None)
    assert again == got  # the same fleet in another order: the same text (no write)


def test_hostile_and_odd_conditions_never_raise_and_stay_bounded() -> None:
    odd: list[tuple[str, Any]] = [
        ("unknown-status", {"conditions": [{"type": "ContainersKnown", "status": "Unknown"}]}),
        ("no-reason", {"conditions": [{"type": "ContainersKnown", "status": "False", "reason": 7}]}),
        ("not-a-map", {"conditions": ["x", None, 3]}),
    ]
    odd += [
        (
            f"h{i}",
            {"conditions": [{"type": "ContainersKnown", "status": "False", "reason": f"R{i}" + "x" * 5000}]},
        )
        for i in range(50)
    ]
    got = fold_backing(odd, generation=1)
    assert got.state == "Degraded"
    assert got.reason == "ContainersKnownNotTrue"  # an agent's unknown text is never the observer's reason
    assert node_problem(odd[0][1]) == ("ContainersKnown", "Unknown")
    assert node_problem(odd[2][1]) is None
    assert "other reason(s) on the ObservationNodes" in got.summary
    assert len(got.condition["message"]) < 4096
    assert "\x00" not in got.condition["message"]


def test_operator_md_rows_and_example_are_what_the_fold_writes() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "operator.md").read_text()
    rows = re.findall(r"^\| `(True|False|Unknown)`, `([A-Za-z<>]+)` \|", text, re.M)
    reasons = {reason for _, reason in rows}
    assert reasons == {
        "AgentsBackNotObserved", "WatchRecordUnwritable", "NoRuntimeSocket", "LifecycleDisabled",
        "RegistryNotInSync", "<type>NotTrue", "NoNodeReports", "AgentsRollingOut", "AgentReportOutdated",
        "AgentReportsStale", "MetricsUnreadable",
    }  # fmt: skip
    apart = (
        "AgentReportsStale",
        "AgentsBackNotObserved",
        "<type>NotTrue",
        "NoNodeReports",
        "AgentsRollingOut",
        "AgentReportOutdated",
    )
    order = [r for _, r in rows if r not in apart]
    got = fold_backing(
        [
            (f"n{i}", status(s, held=s == "held"))
            for i, s in enumerate(("off", "not_in_sync", "no_runtime_socket"))
        ]
        + [("n9", status("in_sync", held=True))]
        + [("n8", status("in_sync", losses=(False, "MetricsUnreadable", "x")))],
        generation=1,
    )
    kinds = "ContainersKnown|ExportPositionRecorded|TetragonLossesKnown"
    assert re.findall(rf"(?:{kinds}) (\w+) on \d+ \(", got.summary) == order[:GROUPS]  # the rest counted
    last = fold_backing(
        [("n1", status("not_in_sync")), ("n2", status("in_sync", losses=(False, "MetricsUnreadable", "x")))],
        generation=1,
    )
    assert re.findall(rf"(?:{kinds}) (\w+) on \d+ \(", last.summary) == order[GROUPS - 1 :]
    example = fold_backing(
        [("node-a", status("no_runtime_socket")), ("node-b", status("in_sync"))], generation=1
    )
    flat = " ".join(text.split())
    start = flat.index("e.g. `1 of 2 fresh node(s)") + len("e.g. `")
    shown = flat[start : flat.index("`", start)]
    head, _, tail = shown.partition(" ... ")
    assert example.summary.startswith(head) and example.summary.endswith(tail), (shown, example.summary)


def test_gitops_and_operations_md_say_it() -> None:
    root = Path(__file__).resolve().parents[2]
    gitops = " ".join((root / "docs" / "gitops.md").read_text().split())
    assert "its `NotObservedBacked` condition is False while a fresh node's agent cannot back" in gitops
    assert "A fleet whose agents find no runtime socket is therefore Degraded in the Application" in gitops
    assert "neither reads `ContainersKnown`" not in gitops  # the gap H5 documented is closed
    operations = " ".join((root / "docs" / "operations.md").read_text().split())
    assert "the RuntimeObserver's `NotObservedBacked` condition counts and names such nodes" in operations


def test_operator_md_says_which_nodes_count() -> None:
    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "operator.md").read_text().split())
    assert "those whose Node labels match its `spec.agent.nodeSelector` (every node without one)" in text


def test_an_export_problem_is_held_and_is_said_before_the_agents_are_ready() -> None:
    """An agent holding what it read answers /readyz 503 (agent/runner.py): the observer cannot wait
    for every agent ready before saying Degraded (reconcile_observers, test_operator_observer_backing)."""
    held = fold_backing(
        [("n1", status("no_runtime_socket")), ("n2", status("in_sync", held=True))], generation=1
    )
    assert (held.held, held.state, held.reason) == (True, "Degraded", "WatchRecordUnwritable")
    socket = fold_backing([("n1", status("no_runtime_socket")), ("n2", status("in_sync"))], generation=1)
    assert (socket.held, socket.state) == (False, "Degraded")
    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "operator.md").read_text().split())
    assert (
        "`WatchRecordUnwritable` (any `ExportPositionRecorded` that is not True) does not wait for the "
        "agents to be ready: such an agent answers `/readyz` 503"
    ) in text


def _not_in_sync(since: str, beat: str | None) -> dict[str, Any]:
    st = status("not_in_sync")
    for c in st["conditions"]:
        if c["type"] == "ContainersKnown":
            c["lastTransitionTime"] = since
    return st | ({"heartbeatTime": beat} if beat is not None else {})


def test_registry_not_in_sync_past_its_grace_is_degraded_and_named() -> None:
    """A registry that never comes in sync (the runtime hung, its stream failing) stayed Progressing
    for ever: Flux failed only at its timeout with "in progress". Past the grace period: Degraded."""
    fleet = [("n1", status("not_in_sync")), ("n2", status("not_in_sync")), ("n3", status("in_sync"))]
    fresh = fold_backing(fleet, generation=1, grace_seconds=300)
    assert (fresh.state, fresh.reason) == ("Progressing", "RegistryNotInSync")
    assert "it retries by itself (Degraded after 300s)" in fresh.summary
    late = fold_backing(fleet, generation=1, late={"n2"}, grace_seconds=300)
    assert (late.state, late.reason, late.condition["status"]) == ("Degraded", "RegistryNotInSync", "False")
    text = late.summary
    assert text.startswith("2 of 3 fresh node(s) cannot back 'not observed': ")
    assert text.index("ContainersKnown RegistryNotInSync for 300s or more on 1 (n2): ") < text.index(
        "ContainersKnown RegistryNotInSync on 1 (n1): "
    )
    assert "check the node's container runtime" in text
    # the text names the grace period, never a running time: the same fleet later is the same text
    assert fold_backing(list(reversed(fleet)), generation=1, late={"n2"}, grace_seconds=300) == late
    # only RegistryNotInSync can be late; a worse reason still wins
    worse = fold_backing(
        [("n1", status("no_runtime_socket")), ("n2", status("not_in_sync"))], generation=1, late={"n1", "n2"}
    )
    assert worse.reason == "NoRuntimeSocket"
    assert "NoRuntimeSocket on 1 (n1)" in worse.summary
    assert "RegistryNotInSync for its grace period or more on 1 (n2)" in worse.summary


def test_how_long_not_in_sync_is_read_on_the_nodes_clock_alone() -> None:
    """heartbeatTime minus lastTransitionTime: a node clock a day ahead or behind gives the same answer."""
    for day in (-1, 0, 1):
        since = f"2026-12-0{5 + day}T10:00:00Z"
        beat = f"2026-12-0{5 + day}T10:07:30Z"
        assert registry_transition(_not_in_sync(since, beat)) == (since, 450.0)
    assert registry_transition(_not_in_sync("2026-12-05T10:00:00Z", "2026-12-05T09:00:00Z"))[1] == 0.0
    for odd in (
        _not_in_sync("2026-12-05T10:00:00Z", None),
        _not_in_sync("yesterday", "2026-12-05T10:00:00Z"),
        _not_in_sync("2026-12-05T10:00:00Z", 17),  # type: ignore[arg-type]
        {"conditions": "x"},
        {"conditions": [None, 3, {"type": "ContainersKnown", "lastTransitionTime": ["x"]}]},
        None,
    ):
        assert registry_transition(odd)[1] is None  # timed from the operator's first sight, never raises


def test_the_operator_times_a_transition_once_and_bounds_it() -> None:
    now = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
    beats = Heartbeats()
    first = beats.not_in_sync_since("n1", "2026-12-05T09:58:00Z", 120.0, now=now)
    assert first == now - timedelta(seconds=120)
    later = now + timedelta(minutes=3)  # later heartbeats (a larger elapsed) do not move it
    assert beats.not_in_sync_since("n1", "2026-12-05T09:58:00Z", 300.0, now=later) == first
    assert beats.not_in_sync_since("n1", "2026-12-05T10:02:59Z", None, now=later) == later  # a new one
    beats.in_sync("n1", now=later - timedelta(seconds=30))
    again = beats.not_in_sync_since("n1", "2026-12-05T10:02:59Z", 1.0, now=later)
    assert again == later - timedelta(seconds=1)
    # a node clock stepped a day forward since: no older than when the operator last saw it in sync
    beats.in_sync("n1", now=later)
    step = later + timedelta(seconds=10)
    assert beats.not_in_sync_since("n1", "2026-12-06T10:03:00Z", 86400.0, now=step) == later
    # a hostile stamp from year 1 (elapsed ~2,000 years) neither raises nor reaches before year 1
    assert beats.not_in_sync_since("n2", "0001-01-01T00:00:00Z", 6.4e10, now=now).year > 2000 - 20
    beats.forget("n2")
    assert beats.not_in_sync_since("n2", "s", None, now=now) == now


def test_operator_md_says_when_registry_not_in_sync_turns_degraded() -> None:
    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "operator.md").read_text().split())
    for sentence in (
        "Degraded once a node's `RegistryNotInSync` has lasted `--registry-not-in-sync-seconds` "
        "(default 300)",
        "its `heartbeatTime` minus the condition's `lastTransitionTime`, both stamped by the node's clock",
        "the 30 s observer timer (`--rollout-refresh-seconds`) re-folds",
    ):
        assert sentence in text, sentence


def test_gitops_md_says_a_registry_stuck_out_of_sync_turns_degraded() -> None:
    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "gitops.md").read_text().split())
    assert (
        "**Degraded** once a node's registry has stayed out of sync for `--registry-not-in-sync-seconds`"
        in text
    )
    operations = " ".join(
        (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text().split()
    )
    assert "until it has lasted `--registry-not-in-sync-seconds`, default 300: then Degraded" in operations
    operator = " ".join((Path(__file__).resolve().parents[2] / "docs" / "operator.md").read_text().split())
    assert "counts no further back than the last time the operator saw that node in sync" in operator


def _of(template: str | None, containers: str = "in_sync") -> dict[str, Any]:
    st = status(containers)
    if template is not None:
        st["agentTemplate"] = template
    return st


def test_an_older_rollouts_report_is_the_rollout_in_progress_not_its_problem() -> None:
    """After a rollout the old agent's report (its NoRuntimeSocket, fixed by the rollout) is no fault
    of the new agent: Progressing AgentsRollingOut, NotObservedBacked Unknown; the late ones Degraded."""
    assert outdated(_of("aa"), "bb") and not outdated(_of("bb"), "bb")
    assert not outdated(_of(None), "bb") and not outdated(_of("aa"), None)  # an older agent: cannot tell
    assert not outdated({"agentTemplate": 7}, "bb") and not outdated(None, "bb")
    nodes = [("node-a", _of("old", "no_runtime_socket")), ("node-b", _of("new"))]
    got = fold_backing(nodes, generation=3, rolling={"node-a"}, report_seconds=90)
    assert (got.state, got.reason, got.condition["status"], got.condition["reason"]) == (
        "Progressing", "AgentsRollingOut", "Unknown", "AgentsRollingOut",
    )  # fmt: skip
    assert got.summary == (
        "1 of 2 fresh node(s) (node-a) report an older agent configuration (status.agentTemplate): "
        "their new agent has not written its ObservationNode yet"
    )
    assert got.condition["observedGeneration"] == 3 and not got.held
    late = fold_backing(nodes, generation=3, rolling={"node-a"}, rolling_late={"node-a"}, report_seconds=90)
    assert (late.state, late.reason, late.condition["status"]) == (
        "Degraded",
        "AgentReportOutdated",
        "Unknown",
    )
    assert late.summary.startswith("1 of 2 fresh node(s) (node-a) still report an older agent configuration")
    assert "90s or more after the DaemonSet said every agent updated and ready" in late.summary
    # a problem of a current report still counts, the rolling nodes said after it
    mixed = [("node-a", _of("old", "no_runtime_socket")), ("node-b", _of("new", "off"))]
    got = fold_backing(mixed, generation=1, rolling={"node-a"}, report_seconds=90)
    assert (got.state, got.reason, got.condition["status"]) == ("Degraded", "LifecycleDisabled", "False")
    assert got.summary.startswith(
        "1 of 2 fresh node(s) cannot back 'not observed': ContainersKnown Lifecycle"
    )
    assert got.summary.endswith("(node-a) report an older agent configuration (status.agentTemplate): "
                                "their new agent has not written its ObservationNode yet")  # fmt: skip
    # a registry not in sync yet stays Progressing, unless an outdated report is late
    waiting = [("node-a", _of("old")), ("node-b", _of("new", "not_in_sync"))]
    got = fold_backing(waiting, generation=1, rolling={"node-a"}, grace_seconds=300, report_seconds=90)
    assert (got.state, got.reason, got.condition["reason"]) == (
        "Progressing",
        "RegistryNotInSync",
        "RegistryNotInSync",
    )
    got = fold_backing(
        waiting,
        generation=1,
        rolling={"node-a"},
        rolling_late={"node-a"},
        grace_seconds=300,
        report_seconds=90,
    )
    assert (got.state, got.reason, got.condition["reason"]) == (
        "Degraded",
        "AgentReportOutdated",
        "RegistryNotInSync",
    )
    # the text names the nodes sorted, a bound and never a running time: the same fleet, the same text
    many = [(f"n{i}", _of("old")) for i in (5, 3, 1, 4, 2)]
    first = fold_backing(many, generation=1, rolling={n for n, _ in many}, report_seconds=90)
    assert first.summary.startswith("5 of 5 fresh node(s) (n1, n2, n3 and 2 more) report")
    assert (
        fold_backing(list(reversed(many)), generation=1, rolling={n for n, _ in many}, report_seconds=90)
        == first
    )


def test_the_operator_times_an_outdated_report_once_the_daemonset_rolled_out() -> None:
    beats = Heartbeats()
    now = datetime(2026, 12, 5, tzinfo=UTC)
    assert beats.outdated_since("n", "t2", now=now, timed=False) is None  # the DaemonSet still rolls
    later = now + timedelta(seconds=40)
    assert beats.outdated_since("n", "t2", now=later, timed=True) == later
    assert beats.outdated_since("n", "t2", now=later + timedelta(seconds=60), timed=True) == later
    assert beats.outdated_since(
        "n", "t3", now=later + timedelta(seconds=70), timed=True
    ) == later + timedelta(seconds=70)  # another rollout: timed anew
    beats.current("n")
    assert beats.outdated_since(
        "n", "t3", now=later + timedelta(seconds=80), timed=True
    ) == later + timedelta(seconds=80)
    assert beats.outdated_since("n", "t3", now=later + timedelta(seconds=90), timed=False) is None
    beats.forget("n")
    assert beats.outdated_since(
        "n", "t3", now=later + timedelta(seconds=99), timed=True
    ) == later + timedelta(seconds=99)


def test_operator_docs_say_what_a_rollout_does() -> None:
    root = Path(__file__).resolve().parents[2]
    operator = " ".join((root / "docs" / "operator.md").read_text().split())
    example = fold_backing(
        [("node-a", _of("new")), ("node-b", _of("old"))], generation=1, rolling={"node-b"}, report_seconds=90
    )
    assert f"e.g. `{example.summary}`" in operator
    for sentence in (
        "a report of an older one is that node's rollout in progress, not a fault",
        "`NotObservedBacked` is Unknown (`AgentsRollingOut`) and the observer **Progressing** with "
        "that reason",
        "`--stale-after-seconds` (default 90) after the DaemonSet said every agent updated and ready, "
        "timed on the operator's clock, makes the observer **Degraded** (`AgentReportOutdated`",
        "A report that names no template (an agent of an older version) is judged as it is.",
        # test_operator_observer_rollout: a rollout that has not reached a node (its old pod runs)
        "So is a report of an older rollout whose agent pod still runs on its node (the pod's "
        "`stellaops.io/agent-template` names that rollout) while the DaemonSet has not said every agent "
        "updated and ready",
        "A restarted operator times an outdated report anew",
        "| `status.agentTemplate` | which rollout of its RuntimeObserver's agent pod template the agent runs",
    ):
        assert sentence in operator, sentence
    gitops = " ".join((root / "docs" / "gitops.md").read_text().split())
    assert "is **Progressing** (`AgentsRollingOut`), not Degraded by what the old agent said" in gitops
    operations = " ".join((root / "docs" / "operator-operations.md").read_text().split())
    assert "may still be an older rollout's agent's before its RuntimeObserver turns Degraded" in operations
    # the upgrade that brings the annotation: the template gains it (test_render_agent), a report naming
    # none is judged as before (test_operator_observer_rollout)
    assert "rolls every agent once: the template gains that annotation and the env" in operations
    assert "their nodes' reports name no template and are judged as before" in operations


def test_operator_md_names_the_template_env_and_annotation() -> None:
    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "operator.md").read_text().split())
    assert "| env `STELLA_AGENT_TEMPLATE` (`metadata.annotations['stellaops.io/agent-template']`) |" in text
    assert "Which rollout a pod runs is `stellaops.io/agent-template`, a digest of the whole pod" in text


def test_a_running_agent_whose_report_is_stale_keeps_the_observer_from_ready() -> None:
    """The fresh nodes back "not observed", but node-a's agent pod runs and reports nothing: not
    Ready (the Ready that outlived its agents), Progressing, then Degraded once it has lasted."""
    fresh = [("node-b", status("in_sync"))]
    assert fold_backing(fresh, generation=1).state is None  # Ready, without the silent node
    waiting = fold_backing(fresh, generation=1, silent=["node-a"], report_seconds=90.0)
    assert (waiting.state, waiting.reason, waiting.condition["status"]) == (
        "Progressing",
        "AgentReportsStale",
        "False",
    )
    assert waiting.summary.startswith("1 node(s) (node-a): an agent pod runs there but its ObservationNode")
    assert "(Degraded after 90s)" in waiting.summary
    late = fold_backing(fresh, generation=1, silent=["node-a"], silent_late=["node-a"], report_seconds=90.0)
    assert (late.state, late.reason, late.condition["reason"]) == (
        "Degraded",
        "AgentReportsStale",
        "AgentReportsStale",
    )
    # no fresh node at all: still said (it was NoNodeReports, Unknown, and the observer Ready)
    alone = fold_backing([], generation=1, silent=["node-a"], silent_late=["node-a"])
    assert (alone.state, alone.condition["status"]) == ("Degraded", "False")
    # a worse problem of the fresh nodes keeps its reason; the message says both
    worse = fold_backing([("node-b", status("no_runtime_socket"))], generation=1, silent=["node-a"])
    assert (worse.state, worse.condition["reason"]) == ("Degraded", "NoRuntimeSocket")
    assert "node-a" in worse.summary and "NoRuntimeSocket on 1 (node-b)" in worse.summary
    many = fold_backing(fresh, generation=1, silent=[f"n{i}" for i in range(1000)])
    assert "and 997 more" in many.summary and len(many.summary) < 1000
