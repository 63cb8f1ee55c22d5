"""controller/node_backing.py: the fresh ObservationNodes folded into the RuntimeObserver's NotObservedBacked.

Statuses come from the agent's own ``build_status`` for every ``CONTAINERS_STATES``
entry (a lifecycle state added to the agent without a decision here fails
``test_every_containers_state_is_decided``), plus hand-made odd and hostile ones:
the fold never raises, keeps its message bounded, and gives the same text for
the same fleet (so an unchanged fleet is no write).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.observation_status import CONTAINERS_STATES, build_status, export_position
from stellaops_runtime.controller.node_backing import BACKING_CONDITION, fold_backing, node_problem

UP = TetragonInfo(address="unix:///t.sock", reachable=True, version="v1.7.0")
CAPS = Capabilities(
    kernel_version="6.1.0", btf=True, bpf_permitted=False, tracepoints=True, uprobes=True, kprobes=True,
    usdt=True, ring_buffer=True, tetragon=UP,
)  # fmt: skip
# lifecycle_state's answer -> the RuntimeObserver's state it asks for (None: no objection)
DECIDED = {"in_sync": None, "not_in_sync": "Progressing", "no_runtime_socket": "Degraded", "off": "Degraded"}


def status(containers: str | None, *, held: bool | None = None) -> dict[str, Any]:
    record = None
    if held is not None:
        record = SimpleNamespace(
            enabled=True, path="/s.alive", unrecorded=held, export=SimpleNamespace(positions=object(), held=1)
        )
    return build_status(
        capabilities=CAPS, tetragon=UP, source="tetragon", policies=[], existing_conditions=None,
        now="2026-12-05T10:00:00Z", containers=containers, export_position=export_position(record),
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
        "RegistryNotInSync", "<type>NotTrue", "NoNodeReports",
    }  # fmt: skip
    order = [r for _, r in rows if r not in ("AgentsBackNotObserved", "<type>NotTrue", "NoNodeReports")]
    got = fold_backing(
        [
            (f"n{i}", status(s, held=s == "held"))
            for i, s in enumerate(("off", "not_in_sync", "no_runtime_socket"))
        ]
        + [("n9", status("in_sync", held=True))],
        generation=1,
    )
    assert re.findall(r"(?:ContainersKnown|ExportPositionRecorded) (\w+) on \d+ \(", got.summary) == order
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
