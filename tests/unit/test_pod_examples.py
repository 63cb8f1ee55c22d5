"""The annotated pod examples (docs/examples/pods/) and the `kubectl annotate` lines of docs/install.md.

Each example is a valid Pod (read into the Kubernetes client's V1Pod and
back, unchanged), asks for one observe level with the annotation
``stellaops.io/observe-level``, and states in a ``# posture:`` comment the
posture it gets with a policy allowing FullInstrumentation on a node that
supports every probe kind. The operator's own posture code
(``compute_posture``) must give that posture, and the lower ones the
examples' comments and docs/install.md describe when a policy, the node or
no policy caps it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from stellaops_runtime.contracts.crds import OBSERVE_LEVEL_ANNOTATION, parse_policy_spec
from stellaops_runtime.contracts.posture import ORDER, Posture
from stellaops_runtime.controller.posture import (
    ALLOWED_LEVELS,
    PolicyView,
    compute_posture,
    node_capabilities,
    parse_level,
    policy_view,
)

ROOT = Path(__file__).resolve().parents[2]
PODS = ROOT / "docs" / "examples" / "pods"
INSTALL = ROOT / "docs" / "install.md"


def examples() -> dict[Path, dict[str, Any]]:
    out = {}
    for path in sorted(PODS.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, path
        out[path] = docs[0]
    return out


def stated_posture(path: Path) -> Posture:
    (value,) = re.findall(r"^# posture: (\S+)$", path.read_text(), flags=re.M)
    return Posture(value)


def policy(max_level: str, *, source: Path | None = None) -> PolicyView:
    if source is not None:
        doc = yaml.safe_load(source.read_text())
        spec = parse_policy_spec(doc["spec"], cluster=False)
        return policy_view(
            kind=doc["kind"], namespace=doc["metadata"]["namespace"], name=doc["metadata"]["name"], spec=spec
        )
    spec = parse_policy_spec(
        {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": max_level}, cluster=False
    )
    return policy_view(kind="ObservationPolicy", namespace="default", name="all-levels", spec=spec)


def observation_node(*, reachable: bool, uprobes: bool = True, usdt: bool = True) -> dict[str, Any]:
    caps = {
        "kernelVersion": "6.1.0-18-amd64",
        "btf": True,
        "bpfPermitted": False,
        "tracepoints": True,
        "uprobes": uprobes,
        "kprobes": True,
        "usdt": usdt,
        "ringBuffer": True,
        "tetragon": {"reachable": reachable, "address": "unix:///var/run/tetragon/tetragon.sock"},
    }
    return {
        "metadata": {"name": "n1"},
        "spec": {"nodeName": "n1"},
        "status": {"source": "tetragon" if reachable else "none", "capabilities": caps},
    }


def posture_of(pod: dict[str, Any], policies: list[PolicyView], node: dict[str, Any] | None) -> Posture:
    meta = pod["metadata"]
    return compute_posture(
        annotations=meta.get("annotations") or {},
        pod_labels=meta.get("labels") or {},
        namespace=meta["namespace"],
        namespace_labels={},
        policies=policies,
        node=node_capabilities(node),
    ).posture


def test_one_valid_pod_per_level() -> None:
    api = client.ApiClient()
    levels = []
    for path, doc in examples().items():
        assert doc["apiVersion"] == "v1" and doc["kind"] == "Pod", path
        model = api._ApiClient__deserialize(doc, "V1Pod")  # type: ignore[attr-defined]
        assert api.sanitize_for_serialization(model) == doc, path
        value = doc["metadata"]["annotations"][OBSERVE_LEVEL_ANNOTATION]
        assert isinstance(value, str), f"{path}: the annotation value must be a string"
        level = parse_level(value)
        assert level is not None and value == level.value, path
        assert path.name == f"observe-{ALLOWED_LEVELS[ORDER.index(level)]}.yaml"
        assert f"observe level {level.value} " in path.read_text().splitlines()[0]
        levels.append(level)
    assert sorted(levels, key=lambda p: p.rank) == list(ORDER), "one example per level"


def test_examples_get_the_posture_their_comment_states() -> None:
    full = [policy("FullInstrumentation")]
    node = observation_node(reachable=True)
    for path, pod in examples().items():
        requested = parse_level(pod["metadata"]["annotations"][OBSERVE_LEVEL_ANNOTATION])
        assert posture_of(pod, full, node) == stated_posture(path) == requested, path


def test_the_shipped_policy_caps_full_instrumentation_at_ebpf_deep() -> None:
    # docs/examples/observationpolicy.yaml (maxLevel EbpfDeep, app=web in default) selects every example
    shipped = [policy("", source=ROOT / "docs" / "examples" / "observationpolicy.yaml")]
    node = observation_node(reachable=True)
    got = {p.name: posture_of(pod, shipped, node) for p, pod in examples().items()}
    assert got == {
        "observe-none.yaml": Posture.NONE,
        "observe-passive.yaml": Posture.PASSIVE,
        "observe-active-tracing.yaml": Posture.ACTIVE_TRACING,
        "observe-ebpf-deep.yaml": Posture.EBPF_DEEP,
        "observe-full-instrumentation.yaml": Posture.EBPF_DEEP,
    }
    text = (PODS / "observe-full-instrumentation.yaml").read_text()
    assert "with them this pod is\n# observed at EbpfDeep" in text


def test_without_a_policy_the_annotation_cannot_raise_the_level_above_passive() -> None:
    node = observation_node(reachable=True)
    for path, pod in examples().items():
        want = min(stated_posture(path), Posture.PASSIVE)
        assert posture_of(pod, [], node) == want, path


def test_the_node_caps_every_example() -> None:
    full = [policy("FullInstrumentation")]
    no_uprobes = observation_node(reachable=True, uprobes=False)
    no_source = observation_node(reachable=False)
    no_source["status"]["capabilities"]["tracepoints"] = False
    for path, pod in examples().items():
        assert posture_of(pod, full, no_uprobes) == min(stated_posture(path), Posture.ACTIVE_TRACING), path
        assert posture_of(pod, full, no_source) == Posture.NONE, path
        assert posture_of(pod, full, None) == Posture.NONE, path  # no agent on the node


def test_kebab_case_and_any_case_are_accepted_as_the_comments_say() -> None:
    text = (PODS / "observe-passive.yaml").read_text()
    for alias in ALLOWED_LEVELS:
        assert alias in text.replace("#", " ")
        assert parse_level(alias) is not None and parse_level(alias.upper()) == parse_level(alias)
    for p in ORDER:
        assert parse_level(p.value.lower()) == p


ANNOTATE = re.compile(
    r"^kubectl annotate pod (\S+)(?: -n (\S+))? stellaops\.io/observe-level=(\S+) --overwrite$", re.M
)


def test_install_doc_annotate_lines_use_accepted_values_for_every_level() -> None:
    lines = ANNOTATE.findall(INSTALL.read_text())
    assert lines, "docs/install.md has kubectl annotate lines"
    levels = set()
    for _pod, _ns, value in lines:
        level = parse_level(value)
        assert level is not None, value
        levels.add(level)
    assert levels == set(ORDER)
    assert "kubectl annotate pod web-1 stellaops.io/observe-level-" in INSTALL.read_text()


@pytest.mark.parametrize("value", ["loud", "ebpf_deep", "Full Instrumentation", ""])
def test_values_the_docs_do_not_list_are_refused(value: str) -> None:
    assert parse_level(value) is None
    assert value not in {v for *_, v in ANNOTATE.findall(INSTALL.read_text())}
