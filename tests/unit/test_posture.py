"""A pod's posture for every combination of annotation, selecting policies and node capabilities.

The rule under test (docs/operator.md, "Posture"): posture = min(requested,
policy maximum, node ceiling); requested = the annotation's level, or the
policy maximum without one; policy maximum = the highest maxLevel of the
selecting policies, Passive when none selects the pod; node ceiling from its
ObservationNode, None without one, and only what its *working* source
delivers (Tetragon answering: the kernel's probe kinds; Tetragon's stream
without its API: Passive; nothing working, the unimplemented native source,
or an old agent's ``source: tetragon`` beside ``reachable: false``: None).
One level label per level reached (observe at ActiveTracing, observe-deep at
EbpfDeep, observe-full at FullInstrumentation); an annotation requesting None
opts the pod out and labels it observe-off; an invalid annotation is
reported and fails closed: it opts the pod out too (contracts/posture.read_level).
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest

from stellaops_runtime.contracts.crds import (
    CLUSTER_POLICY_KIND,
    LEVELS,
    OBSERVE_LEVEL_ANNOTATION,
    POLICY_KIND,
    parse_policy_spec,
)
from stellaops_runtime.controller.posture import (
    ALLOWED_LEVELS,
    NodeCapabilities,
    PolicyView,
    Posture,
    allowed_levels_message,
    compute_posture,
    node_capabilities,
    parse_level,
    policy_selects,
    policy_view,
    posture_counts,
    selector_matches,
)

P = Posture
NS = "shop"
NS_LABELS = {"team": "payments"}
POD_LABELS = {"app": "web", "tier": "front"}


def ns_policy(
    level: Posture, *, name: str = "p", namespace: str = NS, selector: dict | None = None
) -> PolicyView:
    return PolicyView(
        kind=POLICY_KIND,
        namespace=namespace,
        name=name,
        max_level=level,
        pod_selector=selector if selector is not None else {"matchLabels": {"app": "web"}},
        namespace_selector=None,
    )


def cluster_policy(level: Posture, *, name: str = "c", ns_selector: dict | None = None) -> PolicyView:
    return PolicyView(
        kind=CLUSTER_POLICY_KIND,
        namespace=None,
        name=name,
        max_level=level,
        pod_selector={"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]},
        namespace_selector=ns_selector,
    )


def observation_node(**caps: Any) -> dict[str, Any]:
    tetragon = caps.pop("tetragon", False)
    source = caps.pop("source", "tetragon" if tetragon else "native")
    extra = {k: caps.pop(k) for k in ("maxPosture", "maxPostureReason") if k in caps}
    return {
        "apiVersion": "stellaops.io/v1alpha1",
        "kind": "ObservationNode",
        "metadata": {"name": "node-a"},
        "spec": {"nodeName": "node-a"},
        "status": {
            "source": source,
            **extra,
            "capabilities": {
                "kernelVersion": "6.1.0-18-amd64",
                **caps,
                "tetragon": {"reachable": tetragon, "version": "v1.7.0" if tetragon else ""},
            },
        },
    }


# node name -> (ObservationNode or None, expected ceiling)
NODES: dict[str, tuple[dict[str, Any] | None, Posture]] = {
    "no-agent": (None, P.NONE),
    "agent-nothing-usable": (observation_node(source="none"), P.NONE),
    "tetragon-no-uprobes": (observation_node(tetragon=True), P.ACTIVE_TRACING),
    "tetragon-uprobes": (observation_node(tetragon=True, uprobes=True), P.EBPF_DEEP),
    "tetragon-uprobes-usdt": (
        observation_node(tetragon=True, uprobes=True, usdt=True),
        P.FULL_INSTRUMENTATION,
    ),
    # The native source does not exist yet: whatever the kernel allows, nothing observes the node.
    "native-no-btf": (observation_node(bpfPermitted=True, tracepoints=True, uprobes=True), P.NONE),
    "native-uprobes-usdt": (
        observation_node(bpfPermitted=True, tracepoints=True, btf=True, uprobes=True, usdt=True),
        P.NONE,
    ),
    # issue 16: an agent that could not reach Tetragon said "source: tetragon"; raw BPF
    # capabilities are no source, so nothing is observed.
    "old-agent-tetragon-unreachable": (
        observation_node(
            source="tetragon", bpfPermitted=True, tracepoints=True, btf=True, uprobes=True, usdt=True
        ),
        P.NONE,
    ),
    "source-none-all-caps": (
        observation_node(
            source="none", bpfPermitted=True, tracepoints=True, btf=True, uprobes=True, usdt=True
        ),
        P.NONE,
    ),
    # Tetragon's event stream delivers, its API does not answer: the agent says Passive.
    "stream-without-api": (
        observation_node(source="tetragon", uprobes=True, usdt=True, maxPosture="Passive"),
        P.PASSIVE,
    ),
    # an agent's own ceiling lowers, never raises
    "agent-lowers": (
        observation_node(tetragon=True, uprobes=True, usdt=True, maxPosture="ActiveTracing"),
        P.ACTIVE_TRACING,
    ),
    "agent-cannot-raise": (
        observation_node(tetragon=True, maxPosture="FullInstrumentation"),
        P.ACTIVE_TRACING,
    ),
    "agent-garbage-ceiling": (observation_node(tetragon=True, uprobes=True, maxPosture="lots"), P.NONE),
    "agent-says-none": (observation_node(tetragon=True, uprobes=True, maxPosture="None"), P.NONE),
}

# annotation value (None = absent) -> the level it requests (None = no request)
# an invalid value fails closed to None (tests/unit/test_observe_level_read.py has the spellings)
ANNOTATIONS: dict[str | None, Posture | None] = {None: None, "bogus-level": Posture.NONE, "off": Posture.NONE}
for level, kebab in zip(Posture, ALLOWED_LEVELS, strict=True):
    ANNOTATIONS[level.value] = level
    ANNOTATIONS[kebab.upper()] = level  # case does not matter

# policy set name -> (policies, highest level among those selecting the pod, or None)
POLICY_SETS: dict[str, tuple[list[PolicyView], Posture | None]] = {
    "none": ([], None),
    "other-namespace": ([ns_policy(P.EBPF_DEEP, namespace="elsewhere")], None),
    "not-matching-pods": ([ns_policy(P.EBPF_DEEP, selector={"matchLabels": {"app": "db"}})], None),
    "cluster-ns-excluded": (
        [cluster_policy(P.EBPF_DEEP, ns_selector={"matchLabels": {"team": "ops"}})],
        None,
    ),
    **{f"one-{lv}": ([ns_policy(lv)], lv) for lv in Posture},
    "cluster-all-namespaces": ([cluster_policy(P.ACTIVE_TRACING)], P.ACTIVE_TRACING),
    "cluster-by-ns-name": (
        [
            cluster_policy(
                P.FULL_INSTRUMENTATION,
                ns_selector={
                    "matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [NS]}
                    ]
                },
            )
        ],
        P.FULL_INSTRUMENTATION,
    ),
    "two-overlapping": ([ns_policy(P.ACTIVE_TRACING, name="a"), cluster_policy(P.EBPF_DEEP)], P.EBPF_DEEP),
    "two-overlapping-one-selects": (
        [ns_policy(P.PASSIVE, name="a"), ns_policy(P.FULL_INSTRUMENTATION, name="b", namespace="x")],
        P.PASSIVE,
    ),
}


@pytest.mark.parametrize(
    ("annotation", "policy_set", "node_name"),
    list(itertools.product(ANNOTATIONS, POLICY_SETS, NODES)),
    ids=lambda v: str(v),
)
def test_every_combination(annotation: str | None, policy_set: str, node_name: str) -> None:
    policies, policy_max = POLICY_SETS[policy_set]
    node_obj, ceiling = NODES[node_name]
    requested = ANNOTATIONS[annotation]
    annotations = {OBSERVE_LEVEL_ANNOTATION: annotation} if annotation is not None else {}

    decision = compute_posture(
        annotations=annotations,
        pod_labels=POD_LABELS,
        namespace=NS,
        namespace_labels=NS_LABELS,
        policies=policies,
        node=node_capabilities(node_obj),
    )

    allowed = policy_max if policy_max is not None else P.PASSIVE
    expected = min(requested if requested is not None else allowed, allowed, ceiling)
    assert decision.posture == expected
    assert decision.observe_label is (expected >= P.ACTIVE_TRACING)
    want_labels = {
        "stellaops.io/observe": expected >= P.ACTIVE_TRACING,
        "stellaops.io/observe-deep": expected >= P.EBPF_DEEP,
        "stellaops.io/observe-full": expected >= P.FULL_INSTRUMENTATION,
    }
    # an explicit opt-out (the annotation requests None) also gets the label that tells the agent
    want_labels["stellaops.io/observe-off"] = requested == P.NONE
    assert decision.opted_out is (requested == P.NONE)
    assert decision.labels == {k: "true" for k, on in want_labels.items() if on}
    assert decision.invalid_level == ("bogus-level" if annotation == "bogus-level" else None)

    # the reason names what limited the posture (annotation, then policy, then node on ties)
    reason = decision.reason
    if annotation == "bogus-level":
        assert reason.startswith(f"invalid {OBSERVE_LEVEL_ANNOTATION} 'bogus-level', not an observe level: ")
        assert "opted out (None)" in reason
    elif requested == P.NONE:
        assert "opts the pod out" in reason
    elif requested is not None and requested == expected:
        assert f"annotation {OBSERVE_LEVEL_ANNOTATION} requests {expected}" in reason
    elif allowed == expected:
        if policy_max is None:
            assert "no ObservationPolicy or ClusterObservationPolicy selects the pod" in reason
        else:
            assert f"allows at most {expected}" in reason
    elif node_obj is None:
        assert "node has no StellaOps agent" in reason
    else:
        assert f"node supports at most {expected}" in reason


def test_reason_names_the_policy_and_counts_the_others() -> None:
    policies = [
        ns_policy(P.ACTIVE_TRACING, name="a"),
        ns_policy(P.EBPF_DEEP, name="b"),
        cluster_policy(P.PASSIVE),
    ]
    d = compute_posture(
        annotations={},
        pod_labels=POD_LABELS,
        namespace=NS,
        namespace_labels={},
        policies=policies,
        node=node_capabilities(NODES["tetragon-uprobes-usdt"][0]),
    )
    assert d.posture == P.EBPF_DEEP
    assert d.reason == f"policy ObservationPolicy/{NS}/b (and 2 more) allows at most EbpfDeep"


def test_node_limit_reason_says_what_is_missing() -> None:
    d = compute_posture(
        annotations={OBSERVE_LEVEL_ANNOTATION: "ebpf-deep"},
        pod_labels=POD_LABELS,
        namespace=NS,
        namespace_labels={},
        policies=[ns_policy(P.FULL_INSTRUMENTATION)],
        node=node_capabilities(NODES["tetragon-no-uprobes"][0]),
    )
    assert (d.posture, d.observe_label) == (P.ACTIVE_TRACING, True)
    assert d.reason == "node supports at most ActiveTracing (no uprobes)"


def test_levels_are_ordered_and_parse_case_insensitively() -> None:
    assert [p.value for p in sorted(Posture, reverse=True)][::-1] == list(LEVELS)
    assert P.NONE < P.PASSIVE < P.ACTIVE_TRACING < P.EBPF_DEEP < P.FULL_INSTRUMENTATION
    assert max(P.EBPF_DEEP, P.PASSIVE) == P.EBPF_DEEP
    for text, level in [("ebpfdeep", P.EBPF_DEEP), (" Active-Tracing ", P.ACTIVE_TRACING), ("NONE", P.NONE)]:
        assert parse_level(text) is level
    for text in ("", "deep", "ebpf_deep", "5", "activetracing!"):
        assert parse_level(text) is None
    message = allowed_levels_message()
    assert all(level in message for level in LEVELS) and "ebpf-deep" in message


def test_node_capabilities_reads_the_observation_node_status() -> None:
    caps = node_capabilities(
        observation_node(
            tetragon=True, btf=True, bpfPermitted=True, tracepoints=True, uprobes=True, ringBuffer=True
        )
    )
    assert caps == NodeCapabilities(
        source="tetragon",
        kernel_version="6.1.0-18-amd64",
        btf=True,
        bpf_permitted=True,
        tracepoints=True,
        uprobes=True,
        kprobes=False,
        usdt=False,
        ring_buffer=True,
        tetragon_reachable=True,
        tetragon_version="v1.7.0",
    )
    assert node_capabilities(None) is None
    with_max = node_capabilities(observation_node(tetragon=True, maxPosture="passive", maxPostureReason="r"))
    assert with_max is not None and (with_max.agent_max, with_max.agent_max_reason) == (P.PASSIVE, "r")
    # a node whose agent has not reported yet, or reported garbage, is capable of nothing
    empty = node_capabilities({"metadata": {"name": "n"}})
    assert empty is not None and empty.ceiling()[0] == P.NONE
    garbage = node_capabilities({"status": {"capabilities": ["not", "a", "map"]}})
    assert garbage is not None and garbage.ceiling()[0] == P.NONE


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, {"a": "2"}, False),
        (None, {"a": "1"}, False),
    ],
)
def test_selector_semantics(selector: dict | None, labels: dict, matches: bool) -> None:
    assert selector_matches(selector, labels) is matches


def test_policy_selects_by_namespace_and_kind() -> None:
    pol = ns_policy(P.EBPF_DEEP)
    assert policy_selects(pol, pod_labels=POD_LABELS, namespace=NS, namespace_labels={})
    assert not policy_selects(pol, pod_labels=POD_LABELS, namespace="other", namespace_labels={})
    by_label = cluster_policy(P.EBPF_DEEP, ns_selector={"matchLabels": {"team": "payments"}})
    assert policy_selects(by_label, pod_labels=POD_LABELS, namespace="any", namespace_labels=NS_LABELS)
    assert not policy_selects(by_label, pod_labels=POD_LABELS, namespace="any", namespace_labels={})
    # kubernetes.io/metadata.name is implied even when the caller's labels lack it
    by_name = cluster_policy(P.EBPF_DEEP, ns_selector={"matchLabels": {"kubernetes.io/metadata.name": NS}})
    assert policy_selects(by_name, pod_labels=POD_LABELS, namespace=NS, namespace_labels={})


def test_policy_view_from_a_parsed_spec() -> None:
    spec = parse_policy_spec(
        {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing"}, cluster=False
    )
    view = policy_view(kind=POLICY_KIND, namespace=NS, name="web", spec=spec)
    assert view == PolicyView(
        kind=POLICY_KIND,
        namespace=NS,
        name="web",
        max_level=P.ACTIVE_TRACING,
        pod_selector={"matchLabels": {"app": "web"}},
        namespace_selector=None,
    )
    assert view.ref == f"ObservationPolicy/{NS}/web"
    cspec = parse_policy_spec({"namespaceSelector": {"matchLabels": {"team": "a"}}}, cluster=True)
    cview = policy_view(kind=CLUSTER_POLICY_KIND, namespace="ignored", name="all", spec=cspec)
    assert cview.namespace is None and cview.namespace_selector == {"matchLabels": {"team": "a"}}
    assert (
        cview.max_level == P.EBPF_DEEP
        and cview.pod_selector == {}
        and cview.ref == "ClusterObservationPolicy/all"
    )
    with pytest.raises(ValueError, match="not a policy kind"):
        policy_view(kind="Pod", namespace=None, name="x", spec=spec)


def test_posture_counts_lists_every_level() -> None:
    assert posture_counts([P.PASSIVE, P.PASSIVE, P.EBPF_DEEP]) == {
        "None": 0,
        "Passive": 2,
        "ActiveTracing": 0,
        "EbpfDeep": 1,
        "FullInstrumentation": 0,
    }


@pytest.mark.parametrize(
    ("status", "ceiling", "why"),
    [
        ({"source": "none"}, P.NONE, "Tetragon is unreachable: no source delivers events"),
        (
            {"source": "none", "capabilities": {"tetragon": {"reachable": True}}},
            P.NONE,
            "Tetragon answers but the agent receives no events from it (source: none)",
        ),
        (
            {"source": "tetragon", "capabilities": {"uprobes": True, "tetragon": {"reachable": False}}},
            P.NONE,
            "Tetragon is unreachable: no source delivers events",
        ),
        ({"source": "native"}, P.NONE, "the native probes report no posture: nothing observes this node"),
        (
            {"source": "native", "maxPosture": "None", "maxPostureReason": "no bcc"},
            P.NONE,
            "the native probes report no posture: nothing observes this node",
        ),
        (
            {
                "source": "native",
                "maxPosture": "EbpfDeep",
                "capabilities": {"tetragon": {"reachable": False}},
            },
            P.EBPF_DEEP,
            "the agent's native probes (BCC) deliver events",
        ),
        (
            {"source": "native", "maxPosture": "ActiveTracing", "maxPostureReason": "no uprobes"},
            P.ACTIVE_TRACING,
            "no uprobes",
        ),
        (
            {"source": "native", "maxPosture": "Bogus"},
            P.NONE,
            "the native probes report no posture: nothing observes this node",
        ),
        (
            {
                "source": "tetragon",
                "maxPosture": "Passive",
                "capabilities": {"tetragon": {"reachable": False}},
            },
            P.PASSIVE,
            "Tetragon's events arrive but its API does not answer: process events only",
        ),
        (
            {
                "source": "tetragon",
                "maxPosture": "ActiveTracing",
                "maxPostureReason": "stream lost",
                "capabilities": {"uprobes": True, "tetragon": {"reachable": True}},
            },
            P.ACTIVE_TRACING,
            "stream lost",
        ),
    ],
)
def test_node_ceiling_says_why(status: dict, ceiling: Posture, why: str) -> None:
    caps = node_capabilities({"status": status})
    assert caps is not None and caps.ceiling() == (ceiling, why)
    # whatever it says, a node whose agent stopped heart-beating claims nothing
    stale = replace(caps, stale=True).ceiling()
    assert stale == (P.NONE, "its agent's heartbeat is stale: nothing it reported can be trusted")


def test_level_labels_and_the_label_each_level_needs() -> None:
    from stellaops_runtime.controller.posture import LEVEL_LABEL_KEYS, level_label, level_labels

    assert LEVEL_LABEL_KEYS == (
        "stellaops.io/observe",
        "stellaops.io/observe-deep",
        "stellaops.io/observe-full",
    )
    assert level_labels(P.NONE) == level_labels(P.PASSIVE) == {}
    assert level_labels(P.ACTIVE_TRACING) == {"stellaops.io/observe": "true"}
    assert level_labels(P.EBPF_DEEP) == {"stellaops.io/observe": "true", "stellaops.io/observe-deep": "true"}
    assert len(level_labels(P.FULL_INSTRUMENTATION)) == 3
    assert level_label(P.EBPF_DEEP) == "stellaops.io/observe-deep"
    for below in (P.NONE, P.PASSIVE):
        with pytest.raises(ValueError, match="no pod label"):
            level_label(below)


def test_only_the_annotation_opts_a_pod_out() -> None:
    """observe-off is set for an explicit opt-out only, never for a pod at None for another reason."""
    no_agent = compute_posture(
        annotations={},
        pod_labels=POD_LABELS,
        namespace=NS,
        namespace_labels=NS_LABELS,
        policies=[],
        node=None,
    )
    assert no_agent.posture == P.NONE and not no_agent.opted_out and no_agent.labels == {}
    policy_none = compute_posture(
        annotations={OBSERVE_LEVEL_ANNOTATION: "passive"},
        pod_labels=POD_LABELS,
        namespace=NS,
        namespace_labels=NS_LABELS,
        policies=[ns_policy(P.NONE)],
        node=node_capabilities(observation_node(tetragon=True)),
    )
    assert policy_none.posture == P.NONE and not policy_none.opted_out and policy_none.labels == {}
    for value in ("None", " none\n", "NONE"):
        d = compute_posture(
            annotations={OBSERVE_LEVEL_ANNOTATION: value},
            pod_labels=POD_LABELS,
            namespace=NS,
            namespace_labels=NS_LABELS,
            policies=[ns_policy(P.FULL_INSTRUMENTATION)],
            node=node_capabilities(observation_node(tetragon=True, uprobes=True, usdt=True)),
        )
        assert (d.posture, d.opted_out) == (P.NONE, True)
        assert d.labels == {"stellaops.io/observe-off": "true"}  # and no level label
        assert d.reason == f"annotation {OBSERVE_LEVEL_ANNOTATION} opts the pod out (None)"


@pytest.mark.parametrize(
    "value",
    ["None", "none", " NONE\t", "Passive", "bogus", "", "None\x00", 0, None, b"None", ["None"]],
    ids=repr,
)
def test_opts_out_is_the_annotation_parser_of_compute_posture(value: object) -> None:
    """The agent's reading (opts_out) and the operator's (compute_posture) of one value agree."""
    from stellaops_runtime.controller.posture import opts_out

    d = compute_posture(
        annotations={OBSERVE_LEVEL_ANNOTATION: value},  # type: ignore[dict-item]  # hostile types on purpose
        pod_labels={}, namespace=NS, namespace_labels={}, policies=[], node=None,
    )  # fmt: skip
    assert opts_out(value) is d.opted_out
    # absent (None) and a level above None do not opt out; anything else present does (fail closed)
    assert opts_out(value) is (value not in (None, "Passive"))


def test_pod_label_keys_and_reserved_selector_keys() -> None:
    from stellaops_runtime.contracts.crds import OBSERVE_OFF_LABEL, RESERVED_POD_LABEL_KEYS, SpecError
    from stellaops_runtime.controller.posture import LEVEL_LABEL_KEYS, POD_LABEL_KEYS

    assert OBSERVE_OFF_LABEL == "stellaops.io/observe-off"
    assert (*LEVEL_LABEL_KEYS, OBSERVE_OFF_LABEL) == POD_LABEL_KEYS
    assert set(RESERVED_POD_LABEL_KEYS) == set(POD_LABEL_KEYS)
    # a policy may not select on the opt-out label: it is the operator's, set from the annotation
    for selector in (
        {"matchLabels": {OBSERVE_OFF_LABEL: "true"}},
        {"matchExpressions": [{"key": OBSERVE_OFF_LABEL, "operator": "DoesNotExist"}]},
    ):
        with pytest.raises(SpecError) as e:
            parse_policy_spec({"podSelector": selector, "syscalls": ["execve"]}, cluster=False)
        assert e.value.reason == "ConflictingSelectors" and OBSERVE_OFF_LABEL in e.value.message
