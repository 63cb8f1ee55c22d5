"""``tcpState: true`` on an ObservationPolicy: the CRD field, its Tetragon and native renderings.

The rendered tracepoint is validated against Tetragon's own CRDs (v1.7.0 and
main, tests/fixtures/tetragon/crds) and its field indices against the running
kernel's tracepoint format (tracefs; skipped where tracefs cannot be read).
The probe ConfigMap the operator renders is read back by the native loader.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schema import errors, load_crd, served_schema, validator_for

from stellaops_runtime.contracts import tcp_state
from stellaops_runtime.contracts.crds import (
    CLUSTER_POLICY_KIND,
    OBSERVE_LABEL,
    POLICY_KIND,
    SpecError,
    parse_policy_spec,
)
from stellaops_runtime.controller.posture import Posture, level_labels, selector_matches
from stellaops_runtime.controller.render_policy import (
    PROBE_CONFIG_KEY,
    probe_entry_key,
    render_policy,
    render_probe_configmap,
)
from stellaops_runtime.controller.render_tcp import MAX_SELECTORS, tcp_tracepoint
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.policy_config import read_probe_config

ROOT = Path(__file__).resolve().parents[2]
TETRAGON_CRDS = ROOT / "tests" / "fixtures" / "tetragon" / "crds"
OUR_CRDS = {POLICY_KIND: "observationpolicies.yaml", CLUSTER_POLICY_KIND: "clusterobservationpolicies.yaml"}
TRACEFS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


def render(spec: dict[str, Any], *, kind: str = POLICY_KIND, name: str = "web") -> Any:
    cluster = kind == CLUSTER_POLICY_KIND
    return render_policy(
        kind=kind,
        name=name,
        namespace=None if cluster else "shop",
        uid="uid-1",
        spec=parse_policy_spec(spec, cluster=cluster),
    )


def _crd(path: Path) -> dict[str, Any]:
    """A CRD file read with libyaml when present (Tetragon's are large), as crd_schema.load_crd reads it."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    (doc,) = [d for d in yaml.load_all(path.read_text(), Loader=loader) if d]
    return doc


@pytest.fixture(scope="module")
def tetragon_validators() -> dict[tuple[str, str], Any]:
    files = {
        "TracingPolicy": "cilium.io_tracingpolicies.yaml",
        "TracingPolicyNamespaced": "cilium.io_tracingpoliciesnamespaced.yaml",
    }
    return {
        (release, kind): validator_for(_crd(TETRAGON_CRDS / release / f))
        for release in ("v1.7.0", "main")
        for kind, f in files.items()
    }


# ---------------------------------------------------------------- the field


@pytest.mark.parametrize("kind", [POLICY_KIND, CLUSTER_POLICY_KIND])
def test_crd_schema_has_the_field_and_rejects_wrong_types(kind: str) -> None:
    validator = validator_for(load_crd(ROOT / "manifests" / "crds" / OUR_CRDS[kind]))
    meta = {"name": "web", "namespace": "shop"} if kind == POLICY_KIND else {"name": "web"}
    obj = {"apiVersion": "stellaops.io/v1alpha1", "kind": kind, "metadata": meta, "spec": {"tcpState": True}}
    assert errors(validator, obj) == []
    prop = served_schema(load_crd(ROOT / "manifests" / "crds" / OUR_CRDS[kind]))["properties"]["spec"]
    assert prop["properties"]["tcpState"] == {
        "description": tcp_state.FIELD_DESCRIPTION,
        "type": "boolean",
        "default": False,
    }
    for bad in ("true", 1, None, {"enabled": True}):
        bad_obj = copy.deepcopy(obj)
        bad_obj["spec"]["tcpState"] = bad
        assert any("tcpState" in e for e in errors(validator, bad_obj)), bad


@pytest.mark.parametrize("bad", ["true", 1, 0, None, [], {"enabled": True}, "\x00"])
def test_parse_rejects_what_is_not_a_boolean(bad: Any) -> None:
    with pytest.raises(SpecError) as e:
        parse_policy_spec({"tcpState": bad}, cluster=False)
    assert e.value.reason == "InvalidSpec" and "spec.tcpState" in e.value.message


def test_parse_default_is_off() -> None:
    assert parse_policy_spec({}, cluster=False).tcp_state is False
    assert parse_policy_spec({"tcpState": True}, cluster=True).tcp_state is True


# ---------------------------------------------------------------- Tetragon rendering


@pytest.mark.parametrize("kind", [POLICY_KIND, CLUSTER_POLICY_KIND])
def test_tcp_state_renders_one_valid_tracepoint_object(kind: str, tetragon_validators: dict) -> None:
    r = render({"podSelector": {"matchLabels": {"app": "web"}}, "tcpState": True}, kind=kind)
    (obj,) = r.tracing_policies
    for release in ("v1.7.0", "main"):
        assert errors(tetragon_validators[(release, obj["kind"])], obj) == [], release
    assert obj["kind"] == ("TracingPolicyNamespaced" if kind == POLICY_KIND else "TracingPolicy")
    assert obj["metadata"]["name"] == "stellaops-web-tcp"
    assert obj["metadata"]["labels"]["stellaops.io/policy-part"] == "tcp-state"
    assert obj["spec"]["options"] == [{"name": "policy-mode", "value": "monitor"}]
    assert obj["spec"]["podSelector"] == {"matchLabels": {"app": "web", OBSERVE_LABEL: "true"}}
    assert set(obj["spec"]) == {"options", "podSelector", "tracepoints"}
    (tp,) = obj["spec"]["tracepoints"]
    assert (tp["subsystem"], tp["event"]) == ("sock", "inet_sock_set_state")
    assert tp["args"] == [
        {"index": 5, "type": "int32", "label": "oldstate"},
        {"index": 6, "type": "int32", "label": "newstate"},
        {"index": 7, "type": "uint16", "label": "sport"},
        {"index": 8, "type": "uint16", "label": "dport"},
        {"index": 4, "type": "sock", "label": "sock"},
    ]
    broken = copy.deepcopy(obj)  # the validator is not vacuous: Tetragon has no type "u16"
    broken["spec"]["tracepoints"][0]["args"][2]["type"] = "u16"
    assert errors(tetragon_validators[("v1.7.0", obj["kind"])], broken) != []
    assert r.notes == [] and r.probe_entry["tcpState"] is True
    assert r.probe_entry["tetragonPolicies"] == ["stellaops-web-tcp"]


def _posted(tp: dict[str, Any], old: int, new: int) -> bool:
    """Whether Tetragon posts ``old`` -> ``new``: the first selector whose matchArgs all hold."""
    values = {a["index"]: v for a, v in zip(tp["args"], (old, new), strict=False)}
    for sel in tp["selectors"]:
        if all(
            m["operator"] == "Equal" and values[m["index"]] in {int(v) for v in m["values"]}
            for m in sel["matchArgs"]
        ):
            return any(a["action"] == "Post" for a in sel["matchActions"])
    return False


def test_only_transitions_made_in_a_system_call_are_posted() -> None:
    """connect, listen, close/shutdown: the socket's own task; never a softirq's interrupted task."""
    tp = tcp_tracepoint()
    assert len(tp["selectors"]) <= MAX_SELECTORS
    s = tcp_state.STATE_NUMBER
    posted = {(o, n) for o in tcp_state.TCP_STATES for n in tcp_state.TCP_STATES if _posted(tp, o, n)}
    expected_in_syscall = {
        (o, n)
        for o in tcp_state.TCP_STATES
        for n in tcp_state.TCP_STATES
        if n in (s["SYN_SENT"], s["LISTEN"])
        or (o, n) in {(1, 4), (8, 9), (10, 7)}  # close/shutdown: ESTABLISHED, CLOSE_WAIT, LISTEN
    }
    assert posted == expected_in_syscall
    for softirq in [(2, 1), (10, 3), (3, 1), (1, 8), (4, 5), (5, 6), (9, 7), (2, 7), (6, 7)]:
        assert softirq not in posted, softirq
        assert not tcp_state.is_syscall_transition(*softirq)
    assert all(tcp_state.is_syscall_transition(o, n) for o, n in posted)


def test_of_a_loopback_connections_twelve_changes_tetragon_is_asked_for_five() -> None:
    """The sequence in docs/native-probes.md ("TCP state"); test_native_tcp.py sees it on the kernel."""
    names = [
        ("CLOSE", "LISTEN"), ("LISTEN", "CLOSE"),  # the listener
        ("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"), ("ESTABLISHED", "FIN_WAIT1"),  # the client
        ("FIN_WAIT1", "FIN_WAIT2"), ("FIN_WAIT2", "CLOSE"),
        ("LISTEN", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED"), ("ESTABLISHED", "CLOSE_WAIT"),  # accepted
        ("CLOSE_WAIT", "LAST_ACK"), ("LAST_ACK", "CLOSE"),
    ]  # fmt: skip
    n = tcp_state.STATE_NUMBER
    tp = tcp_tracepoint()
    posted = [(o, new) for o, new in names if _posted(tp, n[o], n[new])]
    assert len(names) == 12 and posted == [
        ("CLOSE", "LISTEN"), ("LISTEN", "CLOSE"), ("CLOSE", "SYN_SENT"), ("ESTABLISHED", "FIN_WAIT1"),
        ("CLOSE_WAIT", "LAST_ACK"),
    ]  # fmt: skip


def test_match_arg_indices_survive_tetragons_index_rewrite() -> None:
    """Tetragon rewrites a selector's tracepoint field index into the argument's position, arg by arg
    in spec order (pkg/sensors/tracing/generictracepoint.go, InitKernelSelectors); a rewritten index
    equal to a later argument's field index would be rewritten twice."""
    tp = tcp_tracepoint()
    sels = copy.deepcopy(tp["selectors"])
    for pos, arg in enumerate(tp["args"]):
        for sel in sels:
            for m in sel["matchArgs"]:
                if m["index"] == arg["index"]:
                    m["index"] = pos
    labels = [a["label"] for a in tp["args"]]
    for before, after in zip(tp["selectors"], sels, strict=True):
        for m0, m1 in zip(before["matchArgs"], after["matchArgs"], strict=True):
            field = {a["index"]: a["label"] for a in tp["args"]}[m0["index"]]
            assert labels[m1["index"]] == field


def _format_fields() -> list[tuple[str, str, int, bool]]:
    for root in TRACEFS:
        f = root / "events" / "sock" / "inet_sock_set_state" / "format"
        try:
            text = f.read_text()
        except OSError:
            continue
        out = []
        for m in re.finditer(r"field:(.+?);\s*offset:\d+;\s*size:(\d+);\s*signed:(\d);", text):
            decl = m.group(1).strip()
            name = re.sub(r"\[.*\]$", "", decl.split()[-1]).lstrip("*")
            out.append((name, decl, int(m.group(2)), m.group(3) == "1"))
        return out
    pytest.skip("tracefs is not readable here: the tracepoint's format cannot be checked")


def test_indices_and_types_match_this_kernels_tracepoint_format() -> None:
    fields = _format_fields()
    sizes = {"int32": (4, True), "uint16": (2, False), "sock": (8, False)}
    for label, field, index, ty in tcp_state.TETRAGON_ARGS:
        name, decl, size, signed = fields[index]
        assert name == field, (label, index, decl)
        assert (size, signed) == sizes[ty], (label, decl)
    assert [f[0] for f in fields[:4]] == ["common_type", "common_flags", "common_preempt_count", "common_pid"]


@pytest.mark.parametrize(
    ("level", "rendered"),
    [
        ("None", False),
        ("Passive", False),
        ("ActiveTracing", True),
        ("EbpfDeep", True),
        ("FullInstrumentation", True),
    ],
)
def test_tcp_state_needs_active_tracing(level: str, rendered: bool) -> None:
    r = render({"tcpState": True, "maxLevel": level})
    assert [o["metadata"]["name"] for o in r.tracing_policies] == (["stellaops-web-tcp"] if rendered else [])
    assert ("tcpState" in r.probe_entry) is rendered
    assert any("tcpState is off (the tracepoint needs ActiveTracing)" in n for n in r.notes) is not rendered


def test_tcp_object_selects_every_pod_from_active_tracing_up_beside_the_other_parts() -> None:
    r = render(
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "syscalls": ["connect"],
            "functions": [{"binaryPath": "/usr/bin/python3.11", "symbols": ["PyEval_EvalCode"]}],
            "stackTraces": {"kernel": True},
            "tcpState": True,
        }
    )
    names = [o["metadata"]["name"] for o in r.tracing_policies]
    assert names == ["stellaops-web", "stellaops-web-stacks", "stellaops-web-uprobes", "stellaops-web-tcp"]
    assert r.probe_entry["tetragonPolicies"] == names
    tcp_obj = r.tracing_policies[-1]
    for posture in Posture:
        pod = {"app": "web", **level_labels(posture)}
        assert selector_matches(tcp_obj["spec"]["podSelector"], pod) is (posture >= Posture.ACTIVE_TRACING)
    assert not selector_matches(
        tcp_obj["spec"]["podSelector"], {"app": "db", **level_labels(Posture.EBPF_DEEP)}
    )


def test_rate_limit_is_not_put_on_tcp_events_and_a_note_says_so() -> None:
    r = render({"tcpState": True, "syscalls": ["connect"], "rateLimit": "1m"})
    syscalls, tcp = r.tracing_policies
    assert syscalls["spec"]["kprobes"][0]["selectors"][0]["matchActions"] == [
        {"action": "Post", "rateLimit": "1m"}
    ]
    for sel in tcp["spec"]["tracepoints"][0]["selectors"]:
        assert sel["matchActions"] == [{"action": "Post"}]
    assert any(n.startswith("rateLimit is not applied to TCP state events") for n in r.notes)


def test_tcp_state_alone_is_something_to_trace() -> None:
    assert not any("nothing for Tetragon to trace" in n for n in render({"tcpState": True}).notes)
    assert any("nothing for Tetragon to trace" in n for n in render({"tcpState": False}).notes)


def test_without_tcp_state_nothing_changes() -> None:
    r = render({"syscalls": ["connect"]})
    assert "tcpState" not in r.probe_entry
    assert all("tracepoints" not in o["spec"] for o in r.tracing_policies)


# ---------------------------------------------------------------- the native side


def _configmap_file(tmp_path: Path, *specs: tuple[str, dict[str, Any]]) -> Path:
    entries = {}
    for name, spec in specs:
        r = render(spec, name=name)
        entries[probe_entry_key(kind=POLICY_KIND, namespace="shop", name=name)] = r.probe_entry
    cm = render_probe_configmap(
        name="stellaops-probes-x", namespace="stellaops-agent", entries=entries, owner=None
    )
    path = tmp_path / PROBE_CONFIG_KEY
    path.write_text(cm["data"][PROBE_CONFIG_KEY])
    return path


def test_native_loader_turns_the_tcp_probe_on_from_the_rendered_configmap(tmp_path: Path) -> None:
    path = _configmap_file(tmp_path, ("web", {"tcpState": True}), ("db", {"syscalls": ["connect"]}))
    res = read_probe_config(str(path), NativeConfig())
    assert res.config.tcp_state is True
    assert res.config.syscalls == ("connect",)
    assert res.policies == ["ObservationPolicy/shop/db", "ObservationPolicy/shop/web"]
    assert not any("tcpState" in n for n in res.not_covered)  # understood, not reported as unknown


def test_native_side_applies_no_rate_limit_to_tcp_either(tmp_path: Path) -> None:
    """The rateLimit note says native probes do not apply it to TCP events: there is no TCP period."""
    path = _configmap_file(tmp_path, ("web", {"tcpState": True, "syscalls": ["connect"], "rateLimit": "1m"}))
    cfg = read_probe_config(str(path), NativeConfig()).config
    assert cfg.tcp_state is True and cfg.syscall_periods == (("connect", 60),)
    tcp_fields = [f.name for f in dataclasses.fields(NativeConfig) if "tcp" in f.name]
    assert tcp_fields == [  # no period among them
        "tcp_state", "tcp_all_transitions", "tcp_kernel_stacks", "tcp_user_stacks",
    ]  # fmt: skip


def test_native_loader_keeps_the_tcp_probe_off_when_no_policy_may_use_it(tmp_path: Path) -> None:
    path = _configmap_file(tmp_path, ("web", {"tcpState": True, "maxLevel": "Passive"}), ("db", {}))
    res = read_probe_config(str(path), NativeConfig())
    assert res.config.tcp_state is False
    # the agent's own configuration still counts: a policy never switches the probe off
    assert read_probe_config(str(path), NativeConfig(tcp_state=True)).config.tcp_state is True
