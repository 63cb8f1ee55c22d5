"""Argo CD health checks (manifests/gitops/argocd/) run in a real Lua 5.1 against our statuses.

The sandbox is Argo CD's (tests/argocd_lua.py: base and table libraries only).
The statuses come from the operator's own code: conditions from
``state_conditions``/``merge_conditions``, policy states from
``fold_rollout`` + ``_policy_state``, invalid specs from the real spec
parsers. A change to those that the scripts do not follow fails here. The
ObservationNode's script, read against the agent's own statuses, is tested in
test_argocd_node_health.py.
"""

from __future__ import annotations

import copy
import functools
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from argocd_lua import ARGO, PREFIX, argo_lua, configmap, health, scripts
from crd_schema import errors, load_crd, validator_for
from lupa.lua51 import LuaError

from stellaops_runtime.contracts.crds import SpecError, parse_observer_spec, parse_policy_spec
from stellaops_runtime.controller.conditions import CONDITION_TYPES, merge_conditions, state_conditions
from stellaops_runtime.controller.reconcile_policies import _policy_state
from stellaops_runtime.controller.rollout import fold_rollout

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "manifests" / "crds"
EXAMPLES = ROOT / "docs" / "examples"
# what each of our condition types maps to when it is the one that is True
EXPECTED = {"Ready": "Healthy", "Progressing": "Progressing", "Degraded": "Degraded", "Stalled": "Degraded"}
T0 = "2026-12-03T06:00:00Z"
NOW = datetime(2026, 12, 3, 6, 0, 0, tzinfo=UTC)


def crd_kinds() -> dict[str, str]:
    """``<group>_<Kind>`` -> CRD file name, for every CRD we ship."""
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = load_crd(path)
        out[f"{crd['spec']['group']}_{crd['spec']['names']['kind']}"] = path.name
    return out


@functools.cache
def _example(kind: str) -> dict[str, Any]:
    if kind == "RuntimeObserver":
        docs = list(yaml.safe_load_all((EXAMPLES / "runtimeobserver.yaml").read_text()))
        return next(d for d in docs if d["kind"] == kind)
    if kind == "ObservationPolicy":
        return yaml.safe_load((EXAMPLES / "observationpolicy.yaml").read_text())
    return yaml.safe_load((EXAMPLES / "clusterobservationpolicy.yaml").read_text())


def resource(kind: str, status: dict[str, Any] | None, *, generation: int = 3) -> dict[str, Any]:
    """A whole object of ``kind`` with a valid spec (from docs/examples) and ``status``."""
    obj = copy.deepcopy(_example(kind))
    obj["metadata"]["generation"] = generation
    if status is not None:
        obj["status"] = status
    return obj


FILES = {
    "RuntimeObserver": "runtimeobservers.yaml",
    "ObservationPolicy": "observationpolicies.yaml",
    "ClusterObservationPolicy": "clusterobservationpolicies.yaml",
}


@functools.cache
def _validator(name: str) -> Any:
    return validator_for(load_crd(CRDS / name))


def assert_fits_crd(kind: str, obj: dict[str, Any]) -> None:
    assert errors(_validator(FILES[kind]), obj) == []


def status_of(state: str, reason: str, message: str, generation: int = 3, before: list | None = None) -> dict:
    conds = state_conditions(state=state, reason=reason, message=message, generation=generation)  # type: ignore[arg-type]
    return {"observedGeneration": generation, "conditions": merge_conditions(before, conds, now=T0)}


# --- the ConfigMap patch ------------------------------------------------------------------------


def test_configmap_covers_every_crd_kind_and_nothing_else() -> None:
    cm = configmap()
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["metadata"]["name"] == "argocd-cm"
    keys = set(cm["data"])
    assert keys == {PREFIX + k for k in crd_kinds()}, "one health check per CRD in manifests/crds"
    assert all(isinstance(v, str) and v.strip() for v in cm["data"].values())


def test_each_script_is_a_verbatim_copy_of_a_lua_file() -> None:
    files = {p.name: p.read_text() for p in sorted((ARGO / "health").glob("*.lua"))}
    assert files, "manifests/gitops/argocd/health/*.lua"
    used = set()
    for kind, text in scripts().items():
        match = [name for name, body in files.items() if body == text]
        assert match, f"{kind}: the ConfigMap's script differs from every file in health/ (copy it again)"
        used.update(match)
        # the file each key is said to come from is the one it equals
        comment = re.search(rf"# health/(\S+)\n  {re.escape(PREFIX)}stellaops\.io_{kind}:", _raw())
        assert comment and comment.group(1) in match, kind
    assert used == set(files), f"unused Lua files: {set(files) - used}"


def _raw() -> str:
    return (ARGO / "argocd-cm-health.yaml").read_text()


@pytest.mark.parametrize("kind", ["RuntimeObserver", "ObservationNode"])
def test_scripts_name_no_library_argo_cd_does_not_open(kind: str) -> None:
    text = scripts()[kind]
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    assert not re.search(r"\b(string|math|io|debug|coroutine|utf8|os)\s*[.\[]", code)
    assert not re.search(r"\b(require|load|loadstring|dofile|loadfile)\s*\(", code)
    assert not re.search(r"[\w\"')\]]:\w+\s*\(", code), "a method call on a string needs the string library"
    # the sandbox really lacks them: the same call fails there
    lua = argo_lua()
    with pytest.raises(LuaError):
        lua.execute('return string.format("%d", 1)')
    with pytest.raises(LuaError):
        lua.execute('return ("x"):upper()')


# --- policies and observers: statuses the operator writes -------------------------------------


def node(name: str, state: str | None, *, error: str = "", namespace: str = "default") -> dict[str, Any]:
    policies = [] if state is None else [{"name": "stellaops-web", "namespace": namespace, "state": state}]
    if error:
        policies[0]["error"] = error
    return {
        "metadata": {"name": name},
        "spec": {"nodeName": name},
        "status": {"source": "tetragon", "heartbeatTime": T0, "policies": policies},
    }


ROLLOUTS = [
    # (node states, missing Tetragon CRDs, expected condition type, expected reason)
    (["ENABLED", "ENABLED"], False, "Ready", "RolledOut"),
    ([], False, "Progressing", "NoNodeRunning"),  # no node runs it: not Ready
    (["ENABLED", "LOADING"], False, "Progressing", "RollingOut"),
    (["ENABLED", None], False, "Progressing", "RollingOut"),  # not listed yet on one node
    (["ENABLED", "LOAD_ERROR"], False, "Degraded", "LoadFailed"),
    (["PARTIALLY_ENABLED", "ENABLED"], False, "Degraded", "PartiallyLoaded"),
    (["ENABLED"], True, "Degraded", "TetragonNotInstalled"),
]


@pytest.mark.parametrize("kind", ["ObservationPolicy", "ClusterObservationPolicy"])
@pytest.mark.parametrize(("states", "missing_crd", "want_type", "want_reason"), ROLLOUTS)
def test_policy_rollout_states(
    kind: str, states: list[str | None], missing_crd: bool, want_type: str, want_reason: str
) -> None:
    namespace = "default" if kind == "ObservationPolicy" else None
    nodes = [node(f"n{i}", s, error="boom" if s == "LOAD_ERROR" else "") for i, s in enumerate(states)]
    for n in nodes:
        for p in n["status"]["policies"]:
            if namespace is None:
                p.pop("namespace")
    rollout = fold_rollout(
        tetragon_policies=[(namespace, "stellaops-web")], nodes=nodes, now=NOW, stale_after_seconds=120
    )
    errs = ["TracingPolicy stellaops-web: 404 NotFound: no such kind"] if missing_crd else []
    state, reason, message = _policy_state(
        names=["stellaops-web"], rollout=rollout, errors=errs, missing_crd=missing_crd
    )
    assert (state, reason) == (want_type, want_reason)
    obj = resource(kind, {**status_of(state, reason, message), "rollout": rollout})
    assert_fits_crd(kind, obj)
    got = health(kind, obj)
    assert got == {"status": EXPECTED[want_type], "message": f"{reason}: {message}"}


@pytest.mark.parametrize("kind", ["ObservationPolicy", "ClusterObservationPolicy"])
def test_invalid_policy_spec_is_degraded_with_the_parser_reason(kind: str) -> None:
    spec = resource(kind, None)["spec"] | {"syscalls": ["opnat"]}
    with pytest.raises(SpecError) as e:
        parse_policy_spec(spec, cluster=kind == "ClusterObservationPolicy")
    obj = resource(kind, status_of("Stalled", e.value.reason, e.value.message))
    assert_fits_crd(kind, obj)
    assert health(kind, obj) == {"status": "Degraded", "message": f"{e.value.reason}: {e.value.message}"}
    assert e.value.reason == "UnknownSyscall"


def test_invalid_observer_spec_is_degraded() -> None:
    spec = resource("RuntimeObserver", None)["spec"] | {"agentNamespace": "Not_A_Namespace"}
    with pytest.raises(SpecError) as e:
        parse_observer_spec(spec)
    obj = resource("RuntimeObserver", status_of("Stalled", e.value.reason, e.value.message))
    assert_fits_crd("RuntimeObserver", obj)
    assert health("RuntimeObserver", obj)["status"] == "Degraded"


# Reasons the operator writes for a RuntimeObserver (reconcile_observers.py), and the generic
# Degraded the policies get when Tetragon stays unreachable: any Degraded reason is Degraded.
OBSERVER_STATES = [
    ("Ready", "AgentsReady", "3/3 agents ready"),
    ("Progressing", "WaitingForDaemonSet", "the agent DaemonSet has not reported this configuration yet"),
    ("Progressing", "NoNodes", "no node matches the agent's nodeSelector yet"),
    ("Progressing", "RollingOut", "1/3 agents ready, 1/3 updated"),
    ("Degraded", "ApplyFailed", "DaemonSet stellaops-agent-default: 403 Forbidden"),
    ("Degraded", "NotOwned", "ConfigMap stellaops-agent-default exists and is not ours"),
    ("Degraded", "TetragonUnreachable", "node n1: Tetragon at unix:///var/run/tetragon/tetragon.sock"),
    ("Degraded", "SomeReasonAddedLater", "a reason this script has never seen"),
]


@pytest.mark.parametrize("kind", ["RuntimeObserver", "ObservationPolicy", "ClusterObservationPolicy"])
@pytest.mark.parametrize(("state", "reason", "message"), OBSERVER_STATES)
def test_every_state_maps_by_condition_type_not_by_reason(
    kind: str, state: str, reason: str, message: str
) -> None:
    obj = resource(kind, status_of(state, reason, message))
    assert_fits_crd(kind, obj)
    assert health(kind, obj) == {"status": EXPECTED[state], "message": f"{reason}: {message}"}


@pytest.mark.parametrize("kind", ["RuntimeObserver", "ObservationPolicy"])
def test_a_transition_keeps_one_true_condition_and_follows_it(kind: str) -> None:
    first = status_of("Ready", "RolledOut", "1/1 nodes running", generation=3)
    later = status_of("Degraded", "LoadFailed", "1/1 nodes failed", generation=3, before=first["conditions"])
    assert [c["status"] for c in later["conditions"]].count("True") == 1
    assert health(kind, resource(kind, later))["status"] == "Degraded"
    back = status_of("Ready", "RolledOut", "1/1 nodes running", generation=3, before=later["conditions"])
    assert health(kind, resource(kind, back))["status"] == "Healthy"


@pytest.mark.parametrize("kind", ["RuntimeObserver", "ObservationPolicy", "ClusterObservationPolicy"])
def test_a_status_older_than_the_spec_is_progressing(kind: str) -> None:
    # the user changed the spec (generation 4); the status still describes generation 3, Ready
    obj = resource(kind, status_of("Ready", "RolledOut", "1/1 nodes running", generation=3), generation=4)
    got = health(kind, obj)
    assert got["status"] == "Progressing"
    assert "generation 4" in got["message"] and "generation 3" in got["message"]
    # the same once the operator caught up
    obj = resource(kind, status_of("Ready", "RolledOut", "1/1 nodes running", generation=4), generation=4)
    assert health(kind, obj)["status"] == "Healthy"


def test_a_true_condition_from_an_older_generation_is_not_believed() -> None:
    status = status_of("Ready", "RolledOut", "ok", generation=3)
    status.pop("observedGeneration")  # only the conditions say which generation they describe
    assert health("ObservationPolicy", resource("ObservationPolicy", status, generation=4))["status"] == (
        "Progressing"
    )


def test_no_status_yet_and_deletion_are_progressing() -> None:
    for kind in FILES:
        assert health(kind, resource(kind, None))["status"] == "Progressing"
        obj = resource(kind, status_of("Ready", "RolledOut", "ok"))
        obj["metadata"]["deletionTimestamp"] = T0
        assert health(kind, obj)["status"] == "Progressing"


def test_hand_edited_statuses_with_several_true_conditions_prefer_the_worst() -> None:
    def with_true(*types: str) -> dict:
        conds = [
            {"type": t, "status": "True" if t in types else "False", "reason": f"R{t}", "message": t}
            for t in CONDITION_TYPES
        ]
        return {"observedGeneration": 3, "conditions": conds}

    def observer(*types: str) -> dict:
        return health("RuntimeObserver", resource("RuntimeObserver", with_true(*types)))

    assert observer("Ready", "Stalled")["status"] == "Degraded"
    assert observer("Ready", "Degraded")["message"] == "RDegraded: Degraded"
    assert observer("Ready", "Progressing")["status"] == "Progressing"
    assert observer()["status"] == "Progressing"


# --- hostile statuses: never a Lua error, always a valid health code ----------------------------

HOSTILE: list[Any] = [
    {},
    {"metadata": None},
    {"metadata": "x", "status": "x"},
    {"metadata": {"generation": "4"}, "status": {"observedGeneration": "3", "conditions": []}},
    {"metadata": {"generation": 4}, "status": {"observedGeneration": None}},
    {"status": []},
    {"status": {"conditions": {}}},
    {"status": {"conditions": {"Ready": {"status": "True"}}}},
    {"status": {"conditions": "Ready"}},
    {"status": {"conditions": 7}},
    {"status": {"conditions": [None, 1, "Ready", [], True, {}]}},
    {"status": {"conditions": [{"type": 5, "status": "True"}]}},
    {"status": {"conditions": [{"type": "Ready", "status": True}]}},  # a boolean, not "True"
    {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": 3, "message": ["x"]}]}},
    {"status": {"conditions": [{"type": "Ready"}]}},
    {"status": {"conditions": [{"type": "Stalled", "status": "True", "observedGeneration": "x"}]}},
    {"metadata": {"generation": 1e300}, "status": {"observedGeneration": -1, "conditions": []}},
    {"status": {"conditions": [{"type": "Ready", "status": "True", "message": "a\x00b" + "x" * 1_000_000}]}},
    {"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "Ünïcode ☃"}]}},
    {"metadata": {"deletionTimestamp": 5}},
]


@pytest.mark.parametrize(
    "kind", ["RuntimeObserver", "ObservationPolicy", "ClusterObservationPolicy", "ObservationNode"]
)
@pytest.mark.parametrize("obj", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_hostile_objects_never_raise(kind: str, obj: Any) -> None:
    got = health(kind, obj)
    assert got["status"] in {"Healthy", "Progressing", "Degraded"}


def test_hostile_values_are_not_read_as_health() -> None:
    # a boolean True, a non-string type or a map of conditions never makes anything Healthy
    for obj in HOSTILE[5:13]:
        for kind in ("ObservationPolicy", "ObservationNode"):
            assert health(kind, obj)["status"] != "Healthy", (kind, obj)
    got = health("ObservationPolicy", HOSTILE[17])
    assert got["status"] == "Healthy" and got["message"].startswith("a\x00b")  # NUL and size kept intact
    assert health("ObservationNode", HOSTILE[18]) == {"status": "Degraded", "message": "Ünïcode ☃"}


def test_obj_not_a_table_at_all() -> None:
    for kind in scripts():
        assert health(kind, None)["status"] == "Progressing"
        assert health(kind, "a string")["status"] == "Progressing"


def test_gitops_md_quotes_the_scripts_messages() -> None:
    text = (ROOT / "docs" / "gitops.md").read_text()
    for kind in FILES:
        assert f"`{health(kind, resource(kind, None))['message']}`" in text
    assert "| `Stalled` True: an invalid spec | Degraded |" in text
    assert "| `Ready` True | Healthy |" in text
