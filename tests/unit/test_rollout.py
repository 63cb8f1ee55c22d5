"""Folding ObservationNodes into a policy's rollout status, and node feature labels."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stellaops_runtime.contracts.crds import FEATURE_LABEL_PREFIX
from stellaops_runtime.controller.node_labels import FEATURE_LABEL_KEYS, is_stale, node_feature_labels
from stellaops_runtime.controller.policy_state import policy_state as _policy_state
from stellaops_runtime.controller.rollout import (
    MAX_MESSAGE_CHARS,
    fold_rollout,
    index_nodes,
    parse_time,
)
from stellaops_runtime.controller.rollout_overdue import unreachable_nodes
from stellaops_runtime.controller.settings import ControllerConfig

NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
FRESH = "2026-11-24T09:59:30Z"
STALE = "2026-11-24T09:50:00Z"
POLICIES = [("shop", "stellaops-web"), ("shop", "stellaops-web-uprobes")]


def node(
    name: str, policies: list[dict[str, Any]], *, beat: str | None = FRESH, source: str = "tetragon"
) -> dict:
    status: dict[str, Any] = {"source": source, "policies": policies}
    if beat is not None:
        status["heartbeatTime"] = beat
    return {"metadata": {"name": name}, "spec": {"nodeName": name}, "status": status}


def loaded(name: str, state: str, error: str = "", namespace: str = "shop") -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "state": state, "error": error}


def fold(nodes: list[dict], policies: list[tuple[str | None, str]] = POLICIES, **kw: Any) -> dict:
    return fold_rollout(tetragon_policies=policies, nodes=nodes, now=NOW, stale_after_seconds=120, **kw)


def test_each_node_state_is_counted_once() -> None:
    nodes = [
        node("a-running", [loaded("stellaops-web", "ENABLED"), loaded("stellaops-web-uprobes", "ENABLED")]),
        node(
            "b-failed",
            [
                loaded("stellaops-web", "ENABLED"),
                loaded("stellaops-web-uprobes", "LOAD_ERROR", "open /usr/bin/x"),
            ],
        ),
        node("c-pending", [loaded("stellaops-web", "LOADING")]),
        node("d-missing", []),
        node("e-stale", [loaded("stellaops-web", "ENABLED")], beat=STALE),
        node("f-no-heartbeat", [], beat=None),
        node("g-native", [], source="native"),
        node("h-bad-time", [], beat="not a time"),
    ]
    r = fold(nodes)
    assert r == {
        "nodesTotal": 8,
        "nodesRunning": 1,
        "nodesPartial": 0,
        "nodesFailed": 1,
        "nodesPending": 2,
        "nodesStale": 3,
        "nodesNative": 1,
        "nodesSkipped": 0,
        "failures": [
            {
                "node": "b-failed",
                "policy": "shop/stellaops-web-uprobes",
                "state": "LOAD_ERROR",
                "message": "open /usr/bin/x",
            }
        ],
    }
    assert r["nodesTotal"] == sum(
        r[k]
        for k in ("nodesRunning", "nodesPartial", "nodesFailed", "nodesPending", "nodesStale", "nodesNative")
    )


@pytest.mark.parametrize(
    ("state", "bucket"),
    [
        ("ENABLED", "nodesRunning"),
        ("TP_STATE_ENABLED", "nodesRunning"),
        ("LOAD_ERROR", "nodesFailed"),
        ("ERROR", "nodesFailed"),
        ("DISABLED", "nodesFailed"),
        ("PARTIALLY_ENABLED", "nodesPartial"),
        ("TP_STATE_PARTIALLY_ENABLED", "nodesPartial"),
        ("LOADING", "nodesPending"),
        ("UNLOADING", "nodesPending"),
        ("UNKNOWN", "nodesPending"),
        ("", "nodesPending"),
    ],
)
def test_tetragon_states(state: str, bucket: str) -> None:
    r = fold([node("n", [loaded("stellaops-web", state)])], policies=[("shop", "stellaops-web")])
    assert r[bucket] == 1 and r["nodesTotal"] == 1


def test_skipped_everywhere_leaves_the_node_out_and_is_counted_as_skipped() -> None:
    r = fold([node("n", [loaded("stellaops-web", "SKIPPED")])], policies=[("shop", "stellaops-web")])
    assert (r["nodesTotal"], r["nodesSkipped"], r["nodesRunning"], r["failures"]) == (0, 1, 0, [])


def test_a_skipped_object_is_ignored_next_to_the_others() -> None:
    both = [loaded("stellaops-web", "SKIPPED"), loaded("stellaops-web-uprobes", "ENABLED")]
    r = fold([node("n", both)])
    assert (r["nodesRunning"], r["nodesSkipped"], r["nodesPending"], r["nodesTotal"]) == (1, 0, 0, 1)
    failing = [loaded("stellaops-web", "SKIPPED"), loaded("stellaops-web-uprobes", "ERROR", "boom")]
    assert fold([node("n", failing)])["nodesFailed"] == 1


def _partial(failed_hooks: list[dict[str, Any]], total: int = 3) -> dict[str, Any]:
    entry = loaded("stellaops-web-uprobes", "PARTIALLY_ENABLED")
    return entry | {
        "hooksTotal": total,
        "hooksLoaded": total - len(failed_hooks),
        "failedHooks": failed_hooks,
    }


def test_a_partially_enabled_policy_is_partial_not_running_and_names_the_hooks() -> None:
    hooks = [
        {"section": "kprobes", "index": 1, "hook": "do_sys_foo", "state": "CALL_NOT_FOUND"},
        {"section": "uprobes", "index": 0, "hook": "/usr/lib/libssl.so.3", "state": "DIGEST_REJECTED"},
    ]
    r = fold(
        [
            node("a", [loaded("stellaops-web", "ENABLED"), _partial(hooks)]),
            node("b", [loaded("stellaops-web", "ENABLED"), loaded("stellaops-web-uprobes", "ENABLED")]),
        ]
    )
    assert (r["nodesPartial"], r["nodesRunning"], r["nodesFailed"], r["nodesTotal"]) == (1, 1, 0, 2)
    assert r["failures"] == [
        {
            "node": "a",
            "policy": "shop/stellaops-web-uprobes",
            "state": "PARTIALLY_ENABLED",
            "message": (
                "1 of 3 hooks loaded: kprobes[1] do_sys_foo: CALL_NOT_FOUND; "
                "uprobes[0] /usr/lib/libssl.so.3: DIGEST_REJECTED"
            ),
            "hooks": [
                "kprobes[1] do_sys_foo: CALL_NOT_FOUND",
                "uprobes[0] /usr/lib/libssl.so.3: DIGEST_REJECTED",
            ],
        }
    ]


def test_failed_wins_over_partial_and_partial_over_pending() -> None:
    partial = _partial([{"section": "kprobes", "index": 0, "hook": "x", "state": "CALL_NOT_FOUND"}])
    failed = fold([node("n", [loaded("stellaops-web", "LOAD_ERROR", "no BTF"), partial])])
    assert (failed["nodesFailed"], failed["nodesPartial"]) == (1, 0)
    assert [f["state"] for f in failed["failures"]] == ["LOAD_ERROR"]
    pending = fold([node("n", [loaded("stellaops-web", "LOADING"), partial])])
    assert (pending["nodesPartial"], pending["nodesPending"]) == (1, 0)


def test_partial_without_hook_statuses_says_so() -> None:
    # Tetragon versions without hook_statuses: the state alone.
    r = fold(
        [node("n", [loaded("stellaops-web", "PARTIALLY_ENABLED")])], policies=[("shop", "stellaops-web")]
    )
    assert r["failures"][0]["message"] == "some hooks were not loaded"
    assert r["failures"][0]["hooks"] == []


def test_failure_messages_first_in_name_order_and_capped() -> None:
    nodes = [node(f"n{i:02d}", [loaded("stellaops-web", "ERROR", f"boom {i}")]) for i in reversed(range(8))]
    r = fold(nodes, policies=[("shop", "stellaops-web")], max_messages=3)
    assert r["nodesFailed"] == 8
    assert [f["node"] for f in r["failures"]] == ["n00", "n01", "n02"]
    assert r["failures"][0]["message"] == "boom 0"
    assert fold(nodes, policies=[("shop", "stellaops-web")], max_messages=0)["failures"] == []


def test_failure_without_error_text_says_the_state_and_long_errors_are_cut() -> None:
    r = fold(
        [
            node(
                "n",
                [loaded("stellaops-web", "DISABLED"), loaded("stellaops-web-uprobes", "ERROR", "x" * 5000)],
            )
        ]
    )
    messages = {f["policy"]: f["message"] for f in r["failures"]}
    assert messages["shop/stellaops-web"] == "policy is DISABLED on this node"
    assert len(messages["shop/stellaops-web-uprobes"]) == MAX_MESSAGE_CHARS


def test_cluster_policies_match_by_empty_namespace() -> None:
    policies: list[tuple[str | None, str]] = [(None, "stellaops-apps")]
    running = fold([node("n", [loaded("stellaops-apps", "ENABLED", namespace="")])], policies=policies)
    assert running["nodesRunning"] == 1
    # the same name in a namespace is another policy
    other = fold([node("n", [loaded("stellaops-apps", "ENABLED", namespace="shop")])], policies=policies)
    assert other["nodesPending"] == 1


def test_a_policy_with_nothing_for_tetragon_runs_on_every_fresh_node() -> None:
    r = fold([node("a", []), node("b", [], beat=STALE)], policies=[])
    assert (r["nodesRunning"], r["nodesStale"], r["nodesTotal"]) == (1, 1, 2)


def test_no_nodes_and_naive_now() -> None:
    assert fold([]) == {
        "nodesTotal": 0,
        "nodesRunning": 0,
        "nodesPartial": 0,
        "nodesFailed": 0,
        "nodesPending": 0,
        "nodesStale": 0,
        "nodesNative": 0,
        "nodesSkipped": 0,
        "failures": [],
    }
    naive = fold_rollout(
        tetragon_policies=[],
        nodes=[node("a", [])],
        now=NOW.replace(tzinfo=None),
        stale_after_seconds=60,
    )
    assert naive["nodesRunning"] == 1


def test_staleness_boundary() -> None:
    beat = (NOW - timedelta(seconds=120)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert fold([node("a", [], beat=beat)], policies=[])["nodesRunning"] == 1
    beat = (NOW - timedelta(seconds=121)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert fold([node("a", [], beat=beat)], policies=[])["nodesStale"] == 1


def test_folding_over_a_prebuilt_index_gives_the_same_status() -> None:
    nodes = [
        node("b", [loaded("stellaops-web", "ENABLED"), loaded("stellaops-web-uprobes", "ERROR", "boom")]),
        node("a", [loaded("stellaops-web", "ENABLED"), loaded("stellaops-web-uprobes", "ENABLED")]),
        node("c", [], beat=STALE),
        node("d", [], source="native"),
    ]
    reports = index_nodes(nodes, now=NOW, stale_after_seconds=120)
    assert [(r.name, r.kind) for r in reports] == [
        ("a", "tetragon"),
        ("b", "tetragon"),
        ("c", "stale"),
        ("d", "native"),
    ]
    for policies in (POLICIES, [("shop", "stellaops-web")], []):
        direct = fold(nodes, policies=policies)
        indexed = fold_rollout(
            tetragon_policies=policies, nodes=[], now=NOW, stale_after_seconds=0, reports=reports
        )
        assert indexed == direct


def test_parse_time_forms() -> None:
    assert parse_time("2026-11-24T10:00:00Z") == NOW
    assert parse_time("2026-11-24T11:00:00.5+01:00") == NOW + timedelta(milliseconds=500)
    assert parse_time("2026-11-24T10:00:00") == NOW  # no offset: UTC
    assert parse_time("") is None and parse_time(None) is None and parse_time(12) is None
    assert parse_time("2026-11-24 10:00:00.123456789Z") == NOW + timedelta(microseconds=123456)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24T10:00:00\x00+00:00",  # a NUL between the time and the zone (O5 left alone)
        "2026-11-24T10:00:00Z\x00",
        "2026-11-24\x0010:00:00Z",
        "2026-11-24T10:00:00Z\n",
        "2026-11-24T10:00:00 +00:00",
        "20261124T100000Z",  # ISO 8601 basic form, not RFC 3339
        "2026-W48-2T10:00:00Z",  # a week date
        "2026-11-24",  # a date alone
        "2026-11-24T10Z",
        "2026-11-24T10:00:00,5Z",
        "\u0662\u0660\u0662\u0666-11-24T10:00:00Z",  # Arabic-Indic digits
    ],
)
def test_parse_time_takes_rfc3339_only(text: str) -> None:
    """Python's fromisoformat reads far more than RFC 3339 (a NUL or a space before the zone, week
    dates, the basic form): what the API server and the agents write is RFC 3339, anything else is
    no time (the callers then use their own clock or skip the value)."""
    assert parse_time(text) is None


# ---------------------------------------------------------------- feature labels

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def test_feature_labels_of_a_tetragon_node() -> None:
    obs = {
        "status": {
            "source": "tetragon",
            "capabilities": {
                "kernelVersion": "6.1.0-18-amd64",
                "btf": True,
                "bpfPermitted": True,
                "tracepoints": True,
                "uprobes": True,
                "kprobes": False,
                "usdt": False,
                "ringBuffer": True,
                "tetragon": {"reachable": True, "version": "v1.7.0"},
            },
        }
    }
    p = FEATURE_LABEL_PREFIX
    assert node_feature_labels(obs) == {
        p + "bpf": "true",
        p + "btf": "true",
        p + "heartbeat": "fresh",
        p + "kernel-version": "6.1.0-18-amd64",
        p + "kprobes": "false",
        p + "max-posture": "EbpfDeep",
        p + "ring-buffer": "true",
        p + "source": "tetragon",
        p + "tetragon": "true",
        p + "tetragon-version": "v1.7.0",
        p + "tracepoints": "true",
        p + "uprobes": "true",
        p + "usdt": "false",
    }
    assert set(node_feature_labels(obs)) == set(FEATURE_LABEL_KEYS)


def test_feature_labels_are_valid_label_values_whatever_the_node_reports() -> None:
    obs = {
        "status": {
            "source": "something-new",
            "capabilities": {"kernelVersion": "5.15.0-1034-azure #41~20.04.1-Ubuntu SMP " + "x" * 80},
        }
    }
    labels = node_feature_labels(obs)
    assert labels[FEATURE_LABEL_PREFIX + "source"] == "none"
    assert labels[FEATURE_LABEL_PREFIX + "max-posture"] == "None"
    assert FEATURE_LABEL_PREFIX + "tetragon-version" not in labels
    for key, value in labels.items():
        assert key.startswith(FEATURE_LABEL_PREFIX) and len(key.split("/", 1)[1]) <= 63
        assert len(value) <= 63 and _LABEL_VALUE.match(value), (key, value)
    assert labels[FEATURE_LABEL_PREFIX + "kernel-version"].startswith(
        "5.15.0-1034-azure-41-20.04.1-Ubuntu-SMP"
    )


# ---------------------------------------------------------------- Tetragon unreachable (issue 16)


def unreachable(name: str, since: str | None, message: str = "Tetragon at x:1 does not answer") -> dict:
    """A fresh node whose agent reports Tetragon unreachable, as node_status.build_status writes it."""
    n = node(name, [])
    n["status"]["source"] = "none"
    n["status"]["capabilities"] = {"uprobes": True, "tetragon": {"reachable": False, "address": "x:1"}}
    if since is not None:
        n["status"]["conditions"] = [
            {
                "type": "Ready",
                "status": "False",
                "reason": "TetragonUnreachable",
                "message": message,
                "lastTransitionTime": since,
            }
        ]
    return n


def _state(
    nodes: list[dict], *, after: float = 120.0, names: list[str] | None = None
) -> tuple[str, str, str]:
    names = ["stellaops-web", "stellaops-web-uprobes"] if names is None else names
    reports = index_nodes(nodes, now=NOW, stale_after_seconds=120)
    rollout = fold_rollout(
        tetragon_policies=[("shop", n) for n in names],
        nodes=(),
        now=NOW,
        stale_after_seconds=120,
        reports=reports,
    )
    overdue, recent = unreachable_nodes(reports, now=NOW, after_seconds=after)
    return _policy_state(
        names=names,
        rollout=rollout,
        errors=[],
        missing_crd=False,
        unreachable=(overdue, recent) if names else ([], []),
        unreachable_after=after,
    )


def test_an_unreachable_node_is_pending_with_a_failure_entry_saying_since_when() -> None:
    r = fold([unreachable("a", "2026-11-24T09:59:00Z"), node("b", [loaded("stellaops-web", "ENABLED")])])
    assert (r["nodesPending"], r["nodesTotal"]) == (2, 2)
    assert r["failures"] == [
        {
            "node": "a",
            "policy": "shop/stellaops-web",
            "state": "TetragonUnreachable",
            "message": (
                "the agent cannot reach Tetragon since 2026-11-24T09:59:00Z: Tetragon at x:1 does not answer"
            ),
        }
    ]
    # a stale node is stale, whatever it said about Tetragon
    stale = unreachable("c", "2026-11-24T09:00:00Z")
    stale["status"]["heartbeatTime"] = STALE
    assert fold([stale])["failures"] == [] and fold([stale])["nodesStale"] == 1


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_transition_time_out_of_range_in_utc_is_no_time(since: str) -> None:
    """An agent's lastTransitionTime in range as written but not in UTC (year 1 at +14:00) was
    parsed, and the failure entry's UTC reading raised OverflowError: the policy's reconcile failed
    on every try, its status never written (review RO5). It is no time: the entry says no since."""
    assert parse_time(since) is None
    entry = fold([unreachable("a", since)])["failures"][0]
    assert entry["message"] == "the agent cannot reach Tetragon: Tetragon at x:1 does not answer"


def test_a_node_whose_agent_gets_no_events_is_pending_not_running() -> None:
    """Tetragon loaded every object, but the agent's event stream is not connected (source none):
    nothing the policy traces is observed there, so the node is not running and the policy says why."""
    both = [loaded("stellaops-web", "ENABLED"), loaded("stellaops-web-uprobes", "ENABLED")]
    deaf = node("a-deaf", both, source="none")
    deaf["status"]["maxPostureReason"] = (
        "Tetragon at x:1 answers but the agent's event stream is not connected"
    )
    r = fold([deaf, node("b-running", both)])
    assert (r["nodesRunning"], r["nodesPending"], r["nodesTotal"]) == (1, 1, 2)
    assert r["failures"] == [
        {
            "node": "a-deaf",
            "policy": "shop/stellaops-web",
            "state": "NoEventSource",
            "message": "the agent gets no events here (source none), so nothing it traces is observed: "
            "Tetragon at x:1 answers but the agent's event stream is not connected",
        }
    ]
    state, reason, message = _state([deaf, node("b-running", both)])
    assert (state, reason) == ("Progressing", "RollingOut")
    assert message.startswith("1/2 nodes running, 1 pending; a-deaf: no event source: the agent gets no")
    # what is known to have failed there still reads failed; an unreachable Tetragon keeps its own entry
    failed = node("c", [loaded("stellaops-web", "LOAD_ERROR", "boom"), both[1]], source="none")
    assert fold([failed])["nodesFailed"] == 1
    assert [f["state"] for f in fold([unreachable("d", None)])["failures"]] == ["TetragonUnreachable"]
    # a source that works, or an older agent that does not say: running as before
    assert fold([node("e", both, source="")])["nodesRunning"] == 1


def test_unreachable_for_a_bounded_time_makes_the_policy_degraded_naming_the_node() -> None:
    assert ControllerConfig().tetragon_unreachable_seconds == 120.0  # the documented default
    within = [unreachable("node-a", "2026-11-24T09:59:00Z")]  # 60 s before NOW
    state, reason, message = _state(within)
    assert (state, reason) == ("Progressing", "RollingOut")
    assert message == "0/1 nodes running, 1 pending (1 with Tetragon unreachable: Degraded after 120s)"
    state, reason, message = _state(within, after=60)  # the bound is inclusive
    assert (state, reason) == ("Degraded", "TetragonUnreachable")
    assert message == (
        "1/1 nodes cannot reach Tetragon for 60s or more, so the policy is not loaded there: "
        "node-a since 2026-11-24T09:59:00Z (Tetragon at x:1 does not answer); 0/1 nodes running"
    )
    # one node running, one down for long: still Degraded, and it names only the one down
    running = node("node-b", [loaded("stellaops-web", "ENABLED"), loaded("stellaops-web-uprobes", "ENABLED")])
    state, reason, message = _state([unreachable("node-a", "2026-11-24T09:00:00Z"), running])
    assert (state, reason) == ("Degraded", "TetragonUnreachable") and "node-b" not in message
    assert message.endswith("1/2 nodes running")
    # an agent that does not say since when: nothing it reports makes the policy load sooner
    assert _state([unreachable("node-a", None)])[1] == "TetragonUnreachable"
    # a load error is named first
    failed = node(
        "node-c", [loaded("stellaops-web", "LOAD_ERROR", "bad"), loaded("stellaops-web-uprobes", "ENABLED")]
    )
    state, reason, message = _state([unreachable("node-a", "2026-11-24T09:00:00Z"), failed])
    assert reason == "LoadFailed" and "node-c: shop/stellaops-web LOAD_ERROR: bad" in message
    # Tetragon back: the policies load and the policy is Ready
    back = node("node-a", [loaded("stellaops-web", "ENABLED"), loaded("stellaops-web-uprobes", "ENABLED")])
    assert _state([back])[:2] == ("Ready", "RolledOut")
    # a policy with nothing for Tetragon to load does not wait on Tetragon
    assert _state([unreachable("node-a", "2026-11-24T09:00:00Z")], names=[])[0] == "Ready"


def test_many_unreachable_nodes_are_summarised() -> None:
    nodes = [unreachable(f"n{i}", "2026-11-24T09:00:00Z", message="") for i in range(5)]
    _, reason, message = _state(nodes)
    assert reason == "TetragonUnreachable"
    assert message.startswith("5/5 nodes cannot reach Tetragon") and "n2 since" in message
    assert "n3" not in message and "and 2 more" in message


def test_feature_labels_follow_the_working_source_not_the_kernel() -> None:
    """Issue 16: Tetragon unreachable, no native probes: max-posture None, source none."""
    caps = {
        "btf": True,
        "bpfPermitted": True,
        "tracepoints": True,
        "uprobes": True,
        "kprobes": True,
        "usdt": True,
        "tetragon": {"reachable": False},
    }
    p = FEATURE_LABEL_PREFIX
    for status in ({"source": "tetragon", "capabilities": caps}, {"source": "none", "capabilities": caps}):
        labels = node_feature_labels({"status": status})
        assert (labels[p + "source"], labels[p + "max-posture"]) == ("none", "None")
        assert labels[p + "uprobes"] == "true"  # the kernel's capability is still reported as such
    passive = node_feature_labels(
        {"status": {"source": "tetragon", "maxPosture": "Passive", "capabilities": caps}}
    )
    assert (passive[p + "source"], passive[p + "max-posture"]) == ("tetragon", "Passive")
    back = node_feature_labels(
        {"status": {"source": "tetragon", "capabilities": caps | {"tetragon": {"reachable": True}}}}
    )
    assert (back[p + "source"], back[p + "max-posture"]) == ("tetragon", "FullInstrumentation")
    native = node_feature_labels(
        {"status": {"source": "native", "maxPosture": "EbpfDeep", "capabilities": caps}}
    )
    assert (native[p + "source"], native[p + "max-posture"]) == ("native", "EbpfDeep")
    no_bcc = node_feature_labels({"status": {"source": "native", "maxPosture": "None", "capabilities": caps}})
    assert (no_bcc[p + "source"], no_bcc[p + "max-posture"]) == ("none", "None")


def test_a_stale_node_claims_nothing() -> None:
    obs = {
        "status": {
            "source": "tetragon",
            "heartbeatTime": STALE,
            "capabilities": {"uprobes": True, "tetragon": {"reachable": True}},
        }
    }
    assert is_stale(obs, now=NOW, stale_after_seconds=120)
    assert not is_stale(
        {**obs, "status": {**obs["status"], "heartbeatTime": FRESH}}, now=NOW, stale_after_seconds=120
    )
    assert is_stale({"status": {}}, now=NOW.replace(tzinfo=None), stale_after_seconds=120)
    assert is_stale({"status": {"heartbeatTime": "yesterday"}}, now=NOW, stale_after_seconds=120)
    p = FEATURE_LABEL_PREFIX
    assert node_feature_labels(obs)[p + "max-posture"] == "EbpfDeep"
    stale = node_feature_labels(obs, stale=True)
    assert (stale[p + "max-posture"], stale[p + "source"]) == ("None", "none")


@pytest.mark.parametrize(
    "node",
    [
        {"metadata": {"name": "h"}, "status": "garbage"},
        {"metadata": "garbage", "spec": ["x"], "status": {"heartbeatTime": 7}},
        {"metadata": {"name": "h"}, "status": {"heartbeatTime": "2026-12-02T00:00:00Z", "policies": "x"}},
        {
            "metadata": {"name": "h"},
            "status": {
                "heartbeatTime": "2026-12-02T00:00:00Z",
                "conditions": 5,
                "capabilities": {"tetragon": {"reachable": False}},
            },
        },
    ],
)
def test_a_hostile_observation_node_is_read_as_saying_nothing(node: dict) -> None:
    """A hand-edited ObservationNode of the wrong shape never stops the fold of the others."""
    good = {
        "metadata": {"name": "g"},
        "status": {"heartbeatTime": "2026-12-02T00:00:00Z", "source": "tetragon"},
    }
    reports = index_nodes(
        [node, good], now=datetime(2026, 12, 2, 0, 0, 30, tzinfo=UTC), stale_after_seconds=120
    )
    assert len(reports) == 2 and "g" in {r.name for r in reports}
