"""Functions named by PURL: the node entries the agent sums (native/purl_wiring.py), the policy fold
(controller/purl_coverage.py), the ObservationNode status field, and the bounds the CRDs share.

Real parts: PurlProbePlan reports made by resolving a missing process (an
``error``), the real ConfigMap reader on files written here. The per-container
resolution itself, on a real chrooted process, is tests/integration/test_native_purl.py.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.node_status import build_status, purl_state
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.source_switch import SourceSwitch
from stellaops_runtime.contracts import purl_status as ps
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.controller.purl_coverage import NO_SOURCE, NOT_REPORTED, fold_purl_functions
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.native import purl_targets as pt
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.policy_config import PurlFunction
from stellaops_runtime.native.purl_wiring import running, wire
from stellaops_runtime.sources.queue import EventQueue
from tests.e2e import harness as h

CRDS = Path(__file__).resolve().parents[2] / "manifests" / "crds"
PURL = "pkg:deb/debian/openssl@3.0.11"
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def _status_schema(file: str) -> dict[str, Any]:
    crd = next(d for d in yaml.safe_load_all((CRDS / file).read_text()) if d)
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]


def test_the_crd_bounds_are_the_code_bounds() -> None:
    node = _status_schema("observationnodes.yaml")["purlFunctions"]
    assert node["maxItems"] == ps.MAX_NODE_ENTRIES
    assert node["items"]["properties"]["state"]["enum"] == list(ps.NODE_STATES)
    assert node["items"]["properties"]["reason"]["maxLength"] == ps.MAX_REASON_CHARS
    for f in ("observationpolicies.yaml", "clusterobservationpolicies.yaml"):
        pol = _status_schema(f)["purlFunctions"]
        assert pol["maxItems"] == ps.MAX_POLICY_ENTRIES
        assert pol["items"]["properties"]["nodes"]["maxItems"] == ps.MAX_NODES_LISTED


def test_only_running_containers_with_a_pid_are_resolved() -> None:
    recs = [
        ContainerRecord("c1", "k8s.io", status="running", pid=10),
        ContainerRecord("c2", "k8s.io", status="stopped", pid=11),
        ContainerRecord("c3", "k8s.io", status="running", pid=0),
        ContainerRecord(
            "c4", "k8s.io", status="running", pid=12, labels={"io.cri-containerd.kind": "sandbox"}
        ),
    ]
    assert running(recs) == [("c1", 10)]


def test_node_entries_sum_the_containers_and_say_why(tmp_path: Path) -> None:
    base = NativeConfig(exec_events=False, uprobes=(UprobeTarget("/bin/true", "main"),))
    fns = [PurlFunction("ObservationPolicy/shop/a", PURL, ("SSL_read",)),
           PurlFunction("ObservationPolicy/shop/b", "not a purl", ("x",))]  # fmt: skip
    gone = 2**22 + 4242  # no such process: its root cannot be read
    (tmp_path / str(gone + 1) / "root").mkdir(parents=True)  # a root without any package database
    w = wire(fns, [("c1", gone), ("c2", gone + 1)], base, proc_root=str(tmp_path))
    try:
        assert w.config is base and not w.plan.targets()  # nothing resolved: the probes are the agent's own
        w.mark([], [])
        entries, omitted = w.entries()
        assert omitted == 0
        by = {(e["policy"], e["symbol"]): e for e in entries}
        a = by[("ObservationPolicy/shop/a", "SSL_read")]
        assert (a["state"], a["containers"], a["source"]) == ("error", 1, "native")  # error wins, c1 only
        assert "cannot read the package database" in a["reason"]
        b = by[("ObservationPolicy/shop/b", "x")]
        assert (b["state"], b["containers"]) == ("error", 1)
        w2 = wire(fns[1:], [("c2", gone + 1)], base, proc_root=str(tmp_path))
        b2 = w2.entries()[0][0]
        w2.close()
        assert (b2["state"], b2["containers"]) == ("unsupported", 1)
    finally:
        w.close()
    none = wire(fns[:1], [], base)
    assert none.entries()[0] == [{
        "policy": "ObservationPolicy/shop/a", "purl": PURL, "symbol": "SSL_read", "source": "native",
        "state": "not_found", "reason": "no running container on this node", "containers": 0,
    }]  # fmt: skip


def test_attached_in_one_container_wins_over_the_others() -> None:
    from stellaops_runtime.native.purl_wiring import _entry

    ok = pt.FunctionReport("c1", 1, PURL, "f", pt.ATTACHED)
    miss = pt.FunctionReport("c2", 2, PURL, "f", pt.NOT_FOUND, "no installed package matches")
    failed = pt.FunctionReport("c3", 3, PURL, "f", pt.ATTACH_FAILED, "attach failed: EPERM")
    assert _entry("p", PURL, "f", [ok, miss, failed])["state"] == "attached"
    e = _entry("p", PURL, "f", [miss, failed])
    assert (e["state"], e["reason"], e["containers"]) == ("error", "attach failed: EPERM", 1)
    long = pt.FunctionReport("c4", 4, PURL, "f", pt.NOT_IN_PACKAGE, "x" * 5000)
    assert len(_entry("p", PURL, "f", [long])["reason"]) == ps.MAX_REASON_CHARS


def _node(name: str, source: str, *, beat: datetime = NOW, entries: list[Any] | None = None) -> dict:
    status: dict[str, Any] = {"source": source, "heartbeatTime": beat.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if entries is not None:
        status["purlFunctions"] = entries
    return {"metadata": {"name": name}, "status": status}


def test_policy_fold_covers_stale_unreported_and_sourceless_nodes() -> None:
    key = "ObservationPolicy/shop/a"
    attached = {"policy": key, "purl": PURL, "symbol": "SSL_read", "state": "attached", "containers": 1}
    other_policy = {**attached, "policy": "ObservationPolicy/shop/other"}
    nodes = [
        _node("n1", "native", entries=[attached]),
        _node("n2", "native", entries=[other_policy]),  # another policy's entry: not this one's
        _node("n3", "none"),
        _node("n4", "tetragon", beat=NOW - timedelta(hours=1)),  # stale: counted in neither
        {"metadata": {"name": "n5"}, "status": "garbage"},  # hostile: no heartbeat, so stale
    ]
    (got,) = fold_purl_functions(
        policy=key, functions=[{"purl": PURL, "symbols": ["SSL_read"]}], nodes=nodes, now=NOW,
        stale_after_seconds=60,
    )  # fmt: skip
    assert (got["source"], got["nodesNative"], got["nodesNone"]) == ("partial", 1, 2)
    assert [(n["node"], n["source"], n["state"]) for n in got["nodes"]] == [
        ("n2", "none", NOT_REPORTED), ("n3", "none", "no_source"), ("n1", "native", "attached"),
    ]  # fmt: skip
    assert got["nodes"][1]["reason"] == NO_SOURCE
    only = fold_purl_functions(
        policy=key, functions=[{"purl": PURL, "symbols": ["SSL_read"]}], nodes=nodes[:1], now=NOW,
        stale_after_seconds=60,
    )  # fmt: skip
    assert only[0]["source"] == "native"
    nobody = fold_purl_functions(
        policy=key, functions=[{"purl": PURL, "symbols": ["SSL_read"]}], nodes=[], now=NOW,
        stale_after_seconds=60,
    )  # fmt: skip
    assert (nobody[0]["source"], nobody[0]["nodes"]) == ("none", [])
    many = fold_purl_functions(
        policy=key, functions=[{"purl": PURL, "symbols": [f"f{i}" for i in range(100)]}],
        nodes=[_node(f"m{i:02}", "tetragon") for i in range(30)], now=NOW, stale_after_seconds=60,
    )  # fmt: skip
    assert len(many) == ps.MAX_POLICY_ENTRIES and all(len(e["nodes"]) == ps.MAX_NODES_LISTED for e in many)


def _status(stream: object) -> dict[str, Any]:
    return build_status(
        capabilities=Capabilities(
            kernel_version="6.1.0", btf=True, bpf_permitted=True, tracepoints=True, uprobes=True,
            kprobes=False, usdt=True, ring_buffer=True, tetragon=TetragonInfo(address="127.0.0.1:1"),
        ),
        tetragon=TetragonInfo(address="127.0.0.1:1"), policies=None,
        existing_conditions=None, now="2026-12-03T10:00:00Z", purl_functions=purl_state(stream),
    )  # fmt: skip


def test_node_status_carries_the_list_and_writes_it_empty_to_clear_it() -> None:
    cfg = parse_config({"tetragon": {"address": f"127.0.0.1:{h.free_port()}"}, "native": {"enabled": True}})
    sw = SourceSwitch(cfg, queue=EventQueue(10), pipeline=Pipeline(cfg, node_name="n"), in_pipeline=None)  # type: ignore[arg-type]
    st = _status(sw.stats)
    assert (st["purlFunctions"], st["purlFunctionsOmitted"]) == (
        [],
        0,
    )  # a merge patch must clear old entries
    sw.stats.purl_functions = [{"policy": "p", "purl": PURL, "symbol": "f", "state": "attached"}]
    sw.stats.purl_functions_omitted = 3
    st = _status(sw.stats)
    assert st["purlFunctions"][0]["state"] == "attached" and st["purlFunctionsOmitted"] == 3
    assert "purlFunctions" not in _status(None)  # a plain Tetragon source says nothing about them


def test_a_changed_probe_configmap_asks_for_a_reload(tmp_path: Path) -> None:
    probes = tmp_path / "probes.json"
    doc = {"apiVersion": "stellaops.io/v1alpha1", "kind": "ProbeConfig", "policies": {}}
    probes.write_text(json.dumps(doc))
    cfg = parse_config({
        "tetragon": {"address": f"127.0.0.1:{h.free_port()}"},
        "native": {"enabled": True, "probeConfigFile": str(probes)},
    })  # fmt: skip
    sw = SourceSwitch(cfg, queue=EventQueue(10), pipeline=Pipeline(cfg, node_name="n"), in_pipeline=None)  # type: ignore[arg-type]
    sw._probe_config()
    assert not sw._reload_wanted()
    doc["policies"] = {"ObservationPolicy/shop/a": {"functions": [{"purl": PURL, "symbols": ["f"]}]}}
    probes.write_text(json.dumps(doc))
    os.utime(probes, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert sw._reload_wanted()  # the ConfigMap changed
    sw._probe_config()
    assert [f.purl for f in sw._purl_functions] == [PURL] and not sw._reload_wanted()
    sw.containers = lambda: [ContainerRecord("c1", "k8s.io", status="running", pid=os.getpid())]
    assert sw._reload_wanted()  # a container started: its root must be resolved
    probes.unlink()
    assert sw._reload_wanted()  # the ConfigMap went away


def test_node_entries_are_sorted_and_bounded_with_the_rest_counted() -> None:
    symbols = tuple(f"fn{i:03}" for i in range(300))
    fns = [
        PurlFunction("ObservationPolicy/shop/b", PURL, symbols[:1]),
        PurlFunction("ObservationPolicy/shop/a", PURL, symbols),
    ]
    w = wire(fns, [], NativeConfig(exec_events=False))
    entries, omitted = w.entries()
    assert len(entries) == ps.MAX_NODE_ENTRIES and omitted == 301 - ps.MAX_NODE_ENTRIES
    keys = [(e["policy"], e["purl"], e["symbol"]) for e in entries]
    assert keys == sorted(keys) and keys[0] == ("ObservationPolicy/shop/a", PURL, "fn000")
