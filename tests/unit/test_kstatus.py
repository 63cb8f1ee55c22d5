"""What Flux sees of our statuses: kstatus's generic rules, and the CEL health checks we ship.

Flux's ``healthChecks`` and ``wait`` compute a custom resource's status with
kstatus (sigs.k8s.io/cli-utils pkg/kstatus/status: ``checkGenericProperties``
in generic.go and ``Compute`` in status.go). For a kind kstatus has no
built-in rules for, that is, in order:

1. ``metadata.deletionTimestamp`` set -> Terminating;
2. ``status.observedGeneration`` present and != ``metadata.generation`` -> InProgress;
3. the first condition that is ``Reconciling`` True -> InProgress, or ``Stalled`` True -> Failed;
4. otherwise -> Current.

``kstatus`` below is that, written from the documented rules (no code
copied). kstatus does not read Ready, Progressing or Degraded: the tests pin
down what that means for each status the operator writes, which
docs/gitops.md states. The ``healthCheckExprs`` of
manifests/gitops/flux/stellaops-runtime.yaml read our conditions instead;
they are evaluated here with cel-python the way kustomize-controller
documents it (``inProgress``, then ``failed``, then ``current``; the first
true one decides; an expression that cannot be evaluated, e.g. on a missing
``status``, keeps Flux waiting).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellaops_runtime.contracts.crds import SpecError, parse_policy_spec
from stellaops_runtime.controller.conditions import merge_conditions, state_conditions

ROOT = Path(__file__).resolve().parents[2]
FLUX = ROOT / "manifests" / "gitops" / "flux" / "stellaops-runtime.yaml"
EXAMPLES = ROOT / "docs" / "examples"
T0 = "2026-12-03T06:00:00Z"


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus's status of a custom resource of a kind it has no specific rules for."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int) and observed != generation:
        return "InProgress"
    for c in status.get("conditions") or ():
        if c.get("type") == "Reconciling" and c.get("status") == "True":
            return "InProgress"
        if c.get("type") == "Stalled" and c.get("status") == "True":
            return "Failed"
    return "Current"


@functools.cache
def _example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


def policy(status: dict[str, Any] | None, *, generation: int = 3) -> dict[str, Any]:
    obj = copy.deepcopy(_example("observationpolicy.yaml"))
    obj["metadata"]["generation"] = generation
    if status is not None:
        obj["status"] = status
    return obj


def status_of(state: str, reason: str, message: str = "m", generation: int = 3) -> dict[str, Any]:
    conds = state_conditions(state=state, reason=reason, message=message, generation=generation)  # type: ignore[arg-type]
    return {"observedGeneration": generation, "conditions": merge_conditions(None, conds, now=T0)}


def invalid_spec_status() -> dict[str, Any]:
    spec = _example("observationpolicy.yaml")["spec"] | {"syscalls": ["opnat"]}
    with pytest.raises(SpecError) as e:
        parse_policy_spec(spec, cluster=False)
    return status_of("Stalled", e.value.reason, e.value.message)


# --- kstatus: what Flux's healthChecks / wait see without expressions ----------------------------


def test_kstatus_on_the_operator_statuses() -> None:
    # an invalid spec (the real parser's reason) is Failed: Flux stops waiting and reports it
    assert kstatus(policy(invalid_spec_status())) == "Failed"
    # a status older than the spec is InProgress
    assert kstatus(policy(status_of("Ready", "RolledOut", generation=2), generation=3)) == "InProgress"
    # Ready is Current
    assert kstatus(policy(status_of("Ready", "RolledOut"))) == "Current"
    # deletion
    deleting = policy(status_of("Ready", "RolledOut"))
    deleting["metadata"]["deletionTimestamp"] = T0
    assert kstatus(deleting) == "Terminating"


@pytest.mark.parametrize(
    ("state", "reason"),
    [("Progressing", "RollingOut"), ("Degraded", "LoadFailed"), ("Degraded", "TetragonUnreachable")],
)
def test_kstatus_does_not_see_progressing_or_degraded(state: str, reason: str) -> None:
    # kstatus knows Reconciling, not Progressing, and no Degraded: both are "Current" to it.
    # docs/gitops.md says so and points Flux users at the healthCheckExprs below.
    assert kstatus(policy(status_of(state, reason))) == "Current"
    assert {c["type"] for c in status_of(state, reason)["conditions"]} == {
        "Ready",
        "Progressing",
        "Degraded",
        "Stalled",
    }


def test_kstatus_before_the_operator_wrote_anything_is_current() -> None:
    # no observedGeneration, no condition: kstatus cannot tell, and says Current
    assert kstatus(policy(None)) == "Current"


# --- the healthCheckExprs we ship ----------------------------------------------------------------


def celpy() -> Any:
    """cel-python (the test extra of pyproject.toml); imported here so the kstatus tests run without it."""
    try:
        import celpy as module
    except ImportError:
        pytest.fail("cel-python is not installed: pip install -e '.[test]'", pytrace=False)
    return module


def flux_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(FLUX.read_text()) if d]


@functools.cache
def expressions() -> dict[str, dict[str, Any]]:
    """Kind -> {"inProgress": program, "failed": program, "current": program}."""
    env = celpy().Environment()
    out: dict[str, dict[str, Any]] = {}
    for d in flux_docs():
        for e in d["spec"].get("healthCheckExprs") or ():
            out[e["kind"]] = {
                k: env.program(env.compile(e[k])) for k in ("inProgress", "failed", "current") if k in e
            }
    return out


def flux_health(kind: str, obj: dict[str, Any]) -> str:
    """InProgress | Failed | Current, as kustomize-controller documents healthCheckExprs."""
    cel = celpy()
    activation = {k: cel.json_to_cel(v) for k, v in obj.items()}
    for name, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        program = expressions()[kind].get(name)
        if program is None:
            continue
        try:
            result = program.evaluate(activation)
        except cel.CELEvalError:
            return "InProgress"  # Flux keeps waiting on an expression it cannot evaluate
        if isinstance(result, cel.CELEvalError):
            return "InProgress"
        if bool(result):
            return verdict
    return "InProgress"


def test_flux_kustomizations_order_and_cover_our_kinds() -> None:
    docs = flux_docs()
    assert [d["kind"] for d in docs] == ["Kustomization", "Kustomization"]
    runtime, observation = docs
    assert runtime["metadata"]["name"] == "stellaops-runtime" and runtime["spec"]["wait"] is True
    assert observation["spec"]["dependsOn"] == [{"name": "stellaops-runtime"}]
    assert observation["spec"]["wait"] is True
    # gitops.md: without a Tetragon node loading each policy, the Kustomization fails at its timeout
    assert (
        observation["spec"]["timeout"] == "10m"
        and runtime["spec"]["prune"] is observation["spec"]["prune"] is True
    )
    text = " ".join((ROOT / "docs" / "gitops.md").read_text().split())
    assert "fails at its `timeout` (10m)" in text and "(with `prune: true`)" in text
    kinds = {e["kind"] for e in observation["spec"]["healthCheckExprs"]}
    # ObservationNodes are written by the agents, never applied from git
    assert kinds == {"RuntimeObserver", "ObservationPolicy", "ClusterObservationPolicy"}
    assert all(e["apiVersion"] == "stellaops.io/v1alpha1" for e in observation["spec"]["healthCheckExprs"])


@pytest.mark.parametrize("kind", ["RuntimeObserver", "ObservationPolicy", "ClusterObservationPolicy"])
def test_health_check_exprs_on_the_operator_statuses(kind: str) -> None:
    def health(status: dict[str, Any] | None, generation: int = 3) -> str:
        return flux_health(kind, policy(status, generation=generation))

    assert health(status_of("Ready", "RolledOut")) == "Current"
    assert health(status_of("Progressing", "RollingOut")) == "InProgress"
    assert health(status_of("Degraded", "LoadFailed")) == "Failed"
    assert health(status_of("Degraded", "TetragonUnreachable")) == "Failed"
    assert health(invalid_spec_status()) == "Failed"
    # the status describes an older spec: wait, whatever it says
    assert health(status_of("Ready", "RolledOut", generation=2), generation=3) == "InProgress"
    assert health(status_of("Stalled", "InvalidSpec", generation=2), generation=3) == "InProgress"
    # before the operator wrote a status: the expressions cannot be evaluated, Flux waits
    assert health(None) == "InProgress"
    assert health({"observedGeneration": 3}) == "InProgress"
    assert health({"observedGeneration": 3, "conditions": []}) == "InProgress"


def test_health_check_exprs_on_hostile_statuses_never_say_current() -> None:
    hostile: list[Any] = [
        {"observedGeneration": 3, "conditions": [{"type": "Ready", "status": True}]},
        {"observedGeneration": 3, "conditions": [{"type": "Ready"}]},
        {"observedGeneration": 3, "conditions": "Ready"},
        {"observedGeneration": "3", "conditions": [{"type": "Ready", "status": "True"}]},
        {"conditions": [{"type": "Ready", "status": "True"}]},
        "not a map",
    ]
    for status in hostile:
        assert flux_health("ObservationPolicy", policy(status)) != "Current", status
