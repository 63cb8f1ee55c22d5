"""Issue 14: native probe events are kept only for the pods a policy selects, as Tetragon's podSelector does.

The policies are rendered by the operator's own functions (render_policy,
render_probe_configmap) into the file the agent reads, so the level labels
and namespace folding are the operator's, not a copy. The pipeline tests run
the real Pipeline on records shaped as the BCC probes' kernel side writes
them, with a real ContainerLookup snapshot of registry records.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.native_selection import (
    NativeSelection,
    PodView,
    ViewPod,
    purl_selects,
)
from stellaops_runtime.agent.native_selection_policies import NAMESPACE_PSEUDO_LABEL, parse_policies
from stellaops_runtime.contracts.crd_names import CLUSTER_POLICY_KIND, POLICY_KIND
from stellaops_runtime.contracts.crd_validation import parse_policy_spec
from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
)
from stellaops_runtime.contracts.label_selector import SelectorError, parse_selector
from stellaops_runtime.controller.policy_selectors import NAMESPACE_PSEUDO_LABEL as OPERATOR_PSEUDO_LABEL
from stellaops_runtime.controller.posture import selector_matches
from stellaops_runtime.controller.render_policy import (
    PROBE_CONFIG_KEY,
    probe_entry_key,
    render_policy,
    render_probe_configmap,
)
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.purl_wiring import selection_of

OBSERVE = {"stellaops.io/observe": "true"}
DEEP = {**OBSERVE, "stellaops.io/observe-deep": "true"}
LIB = "/usr/lib/x86_64-linux-gnu/libssl.so.3"


# -- the operator's rendering, written where the agent reads it --------------------------------


def entry(kind: str, name: str, namespace: str | None, spec: dict[str, Any]) -> tuple[str, dict]:
    cluster = kind == CLUSTER_POLICY_KIND
    r = render_policy(
        kind=kind, name=name, namespace=None if cluster else namespace, uid=f"uid-{name}",
        spec=parse_policy_spec(spec, cluster=cluster),
    )  # fmt: skip
    return probe_entry_key(kind=kind, namespace=None if cluster else namespace, name=name), r.probe_entry


def write_probes(path: Path, *entries: tuple[str, dict]) -> Path:
    cm = render_probe_configmap(name="p", namespace="agents", entries=dict(entries), owner=None)
    path.write_text(cm["data"][PROBE_CONFIG_KEY])
    return path


WEB = entry(
    POLICY_KIND, "web", "shop",
    {
        "podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "EbpfDeep",
        "syscalls": ["connect"], "tcpState": True,
        "functions": [
            {"binaryPath": LIB, "symbols": ["SSL_read"]},
            {"purl": "pkg:deb/debian/openssl@3.0.11?arch=amd64", "symbols": ["SSL_do_handshake"]},
        ],
    },
)  # fmt: skip
TEAM_A = entry(
    CLUSTER_POLICY_KIND, "team-a", None,
    {
        "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["api"]}]},
        "namespaceSelector": {"matchLabels": {"team": "a"}}, "maxLevel": "ActiveTracing",
        "syscalls": ["openat"],
    },
)  # fmt: skip


def pod(uid: str, ns: str, name: str, labels: dict[str, str]) -> ViewPod:
    return ViewPod(uid, ns, name, tuple(sorted(labels.items())))


def event(
    kind: EventKind, uid: str | None, fn: str = "", module: str = "", **pod_kw: str
) -> RuntimeCallEvent:
    ev = RuntimeCallEvent(
        kind=kind, timestamp_ns=1, node_name="n1", process=ProcessInfo(pid=7), source="bcc",
        function_name=fn, module=module,
    )  # fmt: skip
    if uid is not None:
        ev.pod = PodInfo(uid=uid, **pod_kw)
        ev.container = ContainerInfo(id="c-" + uid)
    return ev


def syscall(uid: str | None, name: str = "connect") -> RuntimeCallEvent:
    return event(EventKind.SYSCALL, uid, "__x64_sys_" + name)


@pytest.fixture
def sel(tmp_path: Path) -> NativeSelection:
    s = NativeSelection(str(write_probes(tmp_path / "probes.json", WEB, TEAM_A)), interval=0)
    assert s.refresh() and len(s.policies) == 2
    return s


# -- selectors ---------------------------------------------------------------------------------


def test_selector_semantics_agree_with_the_operators_on_valid_selectors() -> None:
    rng = random.Random(14)
    keys, values = ["a", "b", "c"], ["1", "2"]
    for _ in range(2000):
        labels = {k: rng.choice(values) for k in keys if rng.random() < 0.6}
        sel: dict[str, Any] = {}
        if rng.random() < 0.5:
            sel["matchLabels"] = {rng.choice(keys): rng.choice(values)}
        exprs = []
        for _ in range(rng.randrange(3)):
            op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
            e: dict[str, Any] = {"key": rng.choice(keys), "operator": op}
            if op in ("In", "NotIn"):
                e["values"] = rng.sample(values, rng.randrange(1, 3))
            exprs.append(e)
        if exprs:
            sel["matchExpressions"] = exprs
        parsed = parse_selector(sel)
        assert parsed is not None
        assert parsed.matches(labels) == selector_matches(sel, labels), (sel, labels)


def test_empty_selector_matches_everything_and_none_is_none() -> None:
    assert parse_selector({}).matches({})  # type: ignore[union-attr]
    assert parse_selector({"matchLabels": None}).matches({"x": "y"})  # type: ignore[union-attr]
    assert parse_selector(None) is None


@pytest.mark.parametrize(
    "bad",
    [
        "app=web",
        {"matchLabels": ["app"]},
        {"matchLabels": {"app": 1}},
        {"matchLabels": {"app": "w\x00eb"}},
        {"matchLabels": {"a" * 400: "x"}},
        {"matchExpressions": {"key": "a"}},
        {"matchExpressions": [{"key": "app", "operator": "In", "values": "web"}]},  # substring trap
        {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]},
        {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]},
        {"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]},
        {"matchExpressions": [{"key": 5, "operator": "Exists"}]},
        {"matchExpressions": ["app"]},
        {"matchExpressions": [{"key": "a", "operator": "Exists"}] * 300},
        {"matchLabels": {}, "nodeSelector": {}},
    ],
)
def test_a_hostile_selector_is_refused_with_the_field_named(bad: Any) -> None:
    with pytest.raises(SelectorError, match="selector"):
        parse_selector(bad)


def test_the_namespace_pseudo_label_is_the_operators() -> None:
    assert NAMESPACE_PSEUDO_LABEL == OPERATOR_PSEUDO_LABEL


# -- the decision table ------------------------------------------------------------------------


def test_without_a_pod_view_every_native_event_is_kept(sel: NativeSelection) -> None:
    for ev in (syscall("u1"), syscall(None), event(EventKind.UPROBE, "u1", "SSL_read", "/x")):
        assert not sel.drops(ev)
    assert not sel.active and sum(sel.dropped.values()) == 0 and sel.kept == 0


def test_decision_table_kind_selection_level_label_and_namespace(sel: NativeSelection) -> None:
    lib = "/proc/1/root" + LIB
    sel.view = PodView(
        [
            pod("deep", "shop", "web-1", {"app": "web", **DEEP}),
            pod("active", "shop", "web-2", {"app": "web", **OBSERVE}),
            pod("plain", "shop", "web-3", {"app": "web"}),  # no level label: Tetragon selects it not
            pod("elsewhere", "other", "web-4", {"app": "web", **DEEP}),  # another namespace
            pod("api-a", "ns-a", "api", {"tier": "api", **OBSERVE}),
            pod("api-b", "ns-b", "api", {"tier": "api", **OBSERVE}),
        ],
        {"ns-a": {"team": "a"}, "ns-b": {"team": "b"}},
    )
    tcp = "sock/inet_sock_set_state"
    table = [
        # (event, dropped?)
        (syscall("deep"), False),
        (syscall("active"), False),
        (syscall("plain"), True),
        (syscall("elsewhere"), True),
        (syscall("deep", "openat"), True),  # WEB does not ask for openat, TEAM_A does not select it
        (event(EventKind.TRACEPOINT, "active", tcp), False),
        (event(EventKind.TRACEPOINT, "api-a", tcp), True),  # TEAM_A has no tcpState
        (event(EventKind.UPROBE, "deep", "SSL_read", lib), False),
        (event(EventKind.UPROBE, "active", "SSL_read", lib), True),  # functions need observe-deep
        (event(EventKind.UPROBE, "deep", "SSL_write", lib), True),  # not a function of the policy
        (syscall("api-a", "openat"), False),  # namespace labels match team=a
        (syscall("api-b", "openat"), True),  # team=b
        (syscall("api-a", "connect"), True),
        (event(EventKind.EXEC, "plain", "", "/bin/sh"), False),  # process events: every pod
        (event(EventKind.EXEC, None, "", "/usr/sbin/sshd"), False),
        (event(EventKind.USDT, "plain", "python:function__entry"), False),
        (syscall(None), True),  # a host process: a podSelector never matches it
        (syscall("gone"), False),  # a pod the view does not list (yet): kept, its labels are unknown
    ]
    got = [(sel.drops(ev), ev) for ev, _ in table]
    assert [d for d, _ in got] == [want for _, want in table]
    assert dict(sel.dropped) == {"no_pod": 1, "not_selected": 8}
    assert sel.kept == 5
    assert sel.kept_unlisted == 1


def test_a_tetragon_event_is_never_touched(sel: NativeSelection) -> None:
    sel.view = PodView([])
    ev = syscall("nobody")
    ev.source = "tetragon"
    assert not sel.drops(ev) and sum(sel.dropped.values()) == 0


def test_pods_are_matched_by_uid_first_then_by_name(sel: NativeSelection) -> None:
    sel.view = PodView([pod("new-uid", "shop", "web-1", {"app": "web", **OBSERVE})])
    # a pod re-created under the same name is another pod: the old one is not listed (kept, unlisted)
    assert not sel.drops(syscall("old-uid"))
    assert (sel.kept, sel.kept_unlisted) == (0, 1)
    by_name = syscall(None)
    by_name.pod = PodInfo(namespace="shop", name="web-1")
    assert not sel.drops(by_name)
    assert (sel.kept, sel.kept_unlisted) == (1, 1)


def test_a_label_change_changes_the_decision_at_once(sel: NativeSelection) -> None:
    sel.view = PodView([pod("p", "shop", "web-1", {"app": "web", **OBSERVE})])
    assert not sel.drops(syscall("p"))
    assert sel.refresh()  # the pipeline invalidates the fast path on this
    sel.view = PodView([pod("p", "shop", "web-1", {"app": "db", **OBSERVE})])
    assert sel.refresh()
    assert sel.drops(syscall("p"))
    sel.view = PodView([pod("p", "shop", "web-1", {"app": "web", **OBSERVE})])
    assert not sel.drops(syscall("p"))
    assert sel.refresh()  # each swap is reported once
    assert not sel.refresh()


def test_the_agents_own_probes_stay_node_wide(tmp_path: Path) -> None:
    base = NativeConfig(syscalls=("openat",), uprobes=(UprobeTarget("/opt/app", "main"),), tcp_state=True)
    s = NativeSelection(str(write_probes(tmp_path / "p.json", WEB)), base, interval=0)
    s.poll()
    s.view = PodView([pod("x", "shop", "db", {"app": "db"})])
    assert not s.drops(syscall("x", "openat"))
    assert not s.drops(event(EventKind.UPROBE, "x", "main", "/opt/app"))
    assert not s.drops(event(EventKind.TRACEPOINT, "x", "sock/inet_sock_set_state"))
    assert s.drops(syscall("x", "connect"))  # asked for by a policy only


def test_purl_functions_follow_the_files_the_wiring_probed(sel: NativeSelection, tmp_path: Path) -> None:
    other = entry(POLICY_KIND, "db", "shop", {
        "podSelector": {"matchLabels": {"app": "db"}}, "maxLevel": "EbpfDeep",
        "functions": [{"purl": "pkg:deb/debian/openssl@3.0.11?arch=amd64", "symbols": ["SSL_do_handshake"]}],
    })  # fmt: skip
    write_probes(Path(sel.path), WEB, other)
    assert sel.refresh()
    sel.view = PodView(
        [pod("w", "shop", "web", {"app": "web", **DEEP}), pod("d", "shop", "db", {"app": "db", **DEEP})]
    )
    call = "/usr/lib/x86_64-linux-gnu/libssl.so.3"  # the path inside the image the probe reports
    sel.purl_owners = {(call, "SSL_do_handshake"): frozenset({WEB[0]})}
    assert not sel.drops(event(EventKind.UPROBE, "w", "SSL_do_handshake", call))
    # The same file fires in the db pod too (one probe per file); db's own policy has no file probed there.
    assert sel.drops(event(EventKind.UPROBE, "d", "SSL_do_handshake", call))
    sel.purl_owners = {(call, "SSL_do_handshake"): frozenset({WEB[0], other[0]})}
    assert not sel.drops(event(EventKind.UPROBE, "d", "SSL_do_handshake", call))


def test_purl_wiring_goes_only_to_containers_of_selected_deep_pods(sel: NativeSelection) -> None:
    view = PodView([
        pod("w", "shop", "web", {"app": "web", **DEEP}), pod("a", "shop", "web-a", {"app": "web", **OBSERVE}),
    ])  # fmt: skip
    pods = {
        "c1": ("w", "shop", "web"),
        "c2": ("a", "shop", "web-a"),
        "c3": ("", "", ""),
        "c5": ("n", "shop", "new"),
    }
    selects = purl_selects(sel.policies, view, pods)
    # c3: no pod; c4: not a running container; c5: a pod not listed yet, probed as without a view
    assert [selects(WEB[0], c) for c in ("c1", "c2", "c3", "c4", "c5")] == [True, False, False, False, True]

    class F:  # a PurlFunction's fields that selection_of reads
        policy = WEB[0]

    containers = [("c1", 10), ("c2", 11), ("c3", 12)]
    assert selection_of([F()], containers, selects) == ((WEB[0], ("c1",)),)  # type: ignore[list-item]
    assert selection_of([F()], containers, None) is None  # type: ignore[list-item]


# -- hostile probe ConfigMaps ------------------------------------------------------------------


def test_a_bad_entry_selects_nothing_and_costs_the_others_nothing() -> None:
    good = dict([WEB])
    hostile: dict[str, Any] = {
        "a": "not an object",
        "b": {**WEB[1], "kind": "Pod"},
        "c": {**WEB[1], "podSelector": {"matchLabels": {"app": ["web"]}}},
        "d": {**WEB[1], "podSelector": None},
        "e": {**WEB[1], "namespace": ""},
        "f": {**WEB[1], "functions": [{"binaryPath": "relative", "symbols": ["x"]}]},
        "g": {**WEB[1], "syscalls": [{"nr": 1}]},
        "h": {**WEB[1], "tcpState": "yes"},
        "i": {**WEB[1], "functions": [{"purl": "pkg:x", "symbols": ["a\x00b"]}]},
    }
    policies, bad = parse_policies({**good, **hostile})
    assert [p.key for p in policies] == [WEB[0]]
    assert len(bad) == len(hostile) and all(len(b) <= 300 for b in bad)


def test_a_corrupt_file_keeps_the_last_policies(sel: NativeSelection) -> None:
    before = sel.policies
    Path(sel.path).write_bytes(b"\x00\xff{not json" * 100)
    assert not sel.refresh()
    assert sel.policies is before and sel.read_errors == 1
    Path(sel.path).write_text(json.dumps({"apiVersion": "v1", "kind": "Pod"}))
    sel.poll()
    assert sel.policies is before and sel.read_errors == 2
    write_probes(Path(sel.path), dict([WEB]).popitem())
    assert sel.refresh() and [p.key for p in sel.policies] == [WEB[0]]


def test_syscall_stacks_are_kept_only_for_deep_pods_and_the_stacks_a_policy_asks_for(tmp_path: Path) -> None:
    from stellaops_runtime.contracts.events import StackFrame

    stacked = entry(POLICY_KIND, "web", "shop", {
        "podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "EbpfDeep", "syscalls": ["connect"],
        "stackTraces": {"kernel": False, "user": True},
    })  # fmt: skip
    s = NativeSelection(str(write_probes(tmp_path / "p.json", stacked)), interval=0)
    s.refresh()
    s.view = PodView([pod("deep", "shop", "w1", {"app": "web", **DEEP}),
                      pod("active", "shop", "w2", {"app": "web", **OBSERVE})])  # fmt: skip

    def with_stacks(uid: str) -> RuntimeCallEvent:
        ev = syscall(uid)
        ev.user_stack = [StackFrame(module="/app", offset=16, address=0x1010)]
        ev.kernel_stack = [StackFrame(symbol="do_sys_connect", offset=4, address=0xFFFF0000)]
        return ev

    deep, active = with_stacks("deep"), with_stacks("active")
    assert not s.drops(deep) and not s.drops(active)
    assert len(deep.user_stack) == 1 and deep.kernel_stack == []  # the policy asks for user stacks only
    assert active.user_stack == [] and active.kernel_stack == []  # Tetragon gives no stacks below EbpfDeep
    assert s.stacks_removed == 2 and s.kept == 2
    tcp = event(EventKind.TRACEPOINT, "active", "sock/inet_sock_set_state")
    tcp.user_stack = [StackFrame(module="/app", offset=16, address=0x1010)]
    assert s.drops(tcp)  # this policy has no tcpState
