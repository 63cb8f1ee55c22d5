"""What a policy gives pods when some of its rendered Tetragon objects are not applied (``in_force``).

Each rendered object needs a level (the level label its podSelector
requires); with one missing, the policy gives at most the level just below
the lowest a missing object needs. Checked against ``render_policy``'s real
output for every object of a policy that renders all four kinds, so a
renamed object or a changed level label cannot leave the cap at the full
level.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.crds import POLICY_KIND, parse_policy_spec
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.controller.in_force import (
    capped,
    in_force_cap,
    load_failures,
    node_load_cap,
    object_level,
)
from stellaops_runtime.controller.posture import policy_view
from stellaops_runtime.controller.render_policy import render_policy

SPEC = parse_policy_spec(
    {
        "podSelector": {"matchLabels": {"app": "web"}},
        "maxLevel": "FullInstrumentation",
        "syscalls": ["execve"],
        "stackTraces": {"kernel": True},
        "functions": [{"binaryPath": "/usr/lib/libssl.so.3", "symbols": ["SSL_read"]}],
        "tcpState": True,
    },
    cluster=False,
)
OBJECTS = render_policy(kind=POLICY_KIND, name="web", namespace="shop", uid="u", spec=SPEC).tracing_policies
VIEW = policy_view(kind=POLICY_KIND, namespace="shop", name="web", spec=SPEC)


def test_every_rendered_object_has_the_level_of_its_probes() -> None:
    levels = {o["metadata"]["name"]: object_level(o) for o in OBJECTS}
    assert levels["stellaops-web"] == Posture.ACTIVE_TRACING
    assert levels["stellaops-web-stacks"] == Posture.EBPF_DEEP
    assert levels["stellaops-web-uprobes"] == Posture.EBPF_DEEP
    assert len(levels) == 4  # and the TCP state object


@pytest.mark.parametrize("missing", [o["metadata"]["name"] for o in OBJECTS])
def test_a_missing_object_caps_the_policy_below_its_level(missing: str) -> None:
    obj = next(o for o in OBJECTS if o["metadata"]["name"] == missing)
    cap = in_force_cap(OBJECTS, [missing])
    assert cap is not None and cap[0] < object_level(obj) and cap[0].rank == object_level(obj).rank - 1
    (view,) = capped([VIEW], {(POLICY_KIND, "shop", "web"): cap})
    assert view.max_level == cap[0] and missing in view.note


def test_nothing_missing_caps_nothing_and_a_cap_never_raises() -> None:
    assert in_force_cap(OBJECTS, []) is None
    low = policy_view(
        kind=POLICY_KIND,
        namespace="shop",
        name="web",
        spec=parse_policy_spec({"podSelector": {}, "maxLevel": "Passive"}, cluster=False),
    )
    assert capped([low], {(POLICY_KIND, "shop", "web"): (Posture.EBPF_DEEP, "x")}) == [low]


# -- a node's load failures (in_force.load_failures, node_load_cap) ------------------------------


def _entry(name: str, state: str, **extra: object) -> dict:
    return {"name": name, "namespace": "shop", "state": state, **extra}


def test_a_node_that_failed_to_load_an_object_caps_the_policy_there() -> None:
    failures = load_failures(
        [
            _entry("stellaops-web", "ENABLED"),
            _entry("stellaops-web-uprobes", "LOAD_ERROR", error="uprobe: no such file /usr/lib/libssl.so.3"),
        ]
    )
    assert set(failures) == {("shop", "stellaops-web-uprobes")}
    cap = node_load_cap(OBJECTS, failures, node="node-a")
    assert cap is not None and cap[0] == Posture.ACTIVE_TRACING
    assert "stellaops-web-uprobes" in cap[1] and "node-a" in cap[1] and "LOAD_ERROR" in cap[1]
    assert "no such file" in cap[1]
    assert capped([VIEW], {("ObservationPolicy", "shop", "web"): cap})[0].max_level == Posture.ACTIVE_TRACING


@pytest.mark.parametrize("state", ["LOAD_ERROR", "ERROR", "DISABLED", "TP_STATE_LOAD_ERROR", "load_error"])
def test_every_failed_state_counts(state: str) -> None:
    cap = node_load_cap(OBJECTS, load_failures([_entry("stellaops-web", state)]), node="n")
    assert cap is not None and cap[0] == Posture.PASSIVE  # the syscall object: nothing above Passive


@pytest.mark.parametrize(
    "state", ["ENABLED", "LOADING", "UNLOADING", "UNKNOWN", "SKIPPED", "PARTIALLY_ENABLED"]
)
def test_running_pending_skipped_or_partial_objects_cap_nothing(state: str) -> None:
    assert load_failures([_entry("stellaops-web-uprobes", state)]) == {}
    assert node_load_cap(OBJECTS, {}, node="n") is None


def test_a_failed_entry_beside_an_enabled_one_of_the_name_still_fails() -> None:
    # listed twice (a Tetragon main domain, a garbled answer): the worst of ours decides, in any order
    for order in (1, -1):
        listed = [_entry("stellaops-web-uprobes", "ENABLED"), _entry("stellaops-web-uprobes", "LOAD_ERROR")]
        assert ("shop", "stellaops-web-uprobes") in load_failures(listed[::order])


def test_only_a_policy_of_our_name_not_from_the_api_server_means_ours_is_not_loaded() -> None:
    held = load_failures([_entry("stellaops-web-uprobes", "ENABLED", fromObject=False)])
    assert held[("shop", "stellaops-web-uprobes")][0][0] == "NOT_FROM_API"
    # ... while ours is listed beside it, ours decides
    ours = [
        _entry("stellaops-web-uprobes", "ENABLED", fromObject=False),
        _entry("stellaops-web-uprobes", "ENABLED"),
    ]
    assert load_failures(ours) == {}


@pytest.mark.parametrize(
    "policies",
    [None, "LOAD_ERROR", 7, [None, 3, "x", {"state": "LOAD_ERROR"}, {"name": 5, "state": "LOAD_ERROR"}], {}],
)
def test_a_hostile_policy_list_names_no_failure_without_a_name(policies: object) -> None:
    # a hand-edited status of the wrong type says nothing; an entry without a name names no object
    assert set(load_failures(policies)) <= {("", "5")}


def test_a_huge_error_is_cut_in_the_reason() -> None:
    failures = load_failures([_entry("stellaops-web-uprobes", "LOAD_ERROR", error="x" * 100_000)])
    cap = node_load_cap(OBJECTS, failures, node="n")
    assert cap is not None and len(cap[1]) < 600


def test_an_old_version_listed_failed_beside_the_loaded_current_one_caps_nothing() -> None:
    # Tetragon lists the uprobes object twice: the generation before (LOAD_ERROR) and the one the
    # operator wrote since (ENABLED). The rollout counts the node running (only the current version
    # speaks for it); the pods there must not be capped on the old version's failure.
    key = ("shop", "stellaops-web-uprobes")
    listed = [
        _entry("stellaops-web-uprobes", "LOAD_ERROR", error="old", objectUid="u1", objectGeneration=1),
        _entry("stellaops-web-uprobes", "ENABLED", objectUid="u1", objectGeneration=2),
    ]
    for order in (1, -1):
        failures = load_failures(listed[::order])
        assert node_load_cap(OBJECTS, failures, node="n", versions={key: ("u1", 2)}) is None
        # the current version failed while the old one is listed running: capped
        cap = node_load_cap(OBJECTS, failures, node="n", versions={key: ("u1", 1)})
        assert cap is not None and cap[0] == Posture.ACTIVE_TRACING and "'old'" in cap[1]
        # the operator's version unknown, or named by no entry (not reloaded yet): the worst decides
        for versions in (None, {}, {key: ("u1", 3)}, {key: ("u2", 2)}):
            assert node_load_cap(OBJECTS, failures, node="n", versions=versions) is not None
    # an entry that names no version may be the current one: it still fails the object
    unnamed = [_entry("stellaops-web-uprobes", "LOAD_ERROR"), listed[1]]
    assert node_load_cap(OBJECTS, load_failures(unnamed), node="n", versions={key: ("u1", 2)}) is not None


def test_the_reason_tells_an_object_being_deleted_from_one_that_failed() -> None:
    names = [o["metadata"]["name"] for o in OBJECTS]
    both = in_force_cap(OBJECTS, names[:2], deleting=[names[1], "not-missing"])
    assert both is not None
    assert f"object(s) {names[0]} could not be applied and {names[1]} is being deleted, so" in both[1]
    going = in_force_cap(OBJECTS, names[:2], deleting=names[:2])
    assert going is not None and "could not be applied" not in going[1]
    assert f"{', '.join(sorted(names[:2]))} are being deleted" in going[1]
    assert in_force_cap(OBJECTS, [], deleting=names) is None  # deleting alone is not missing
