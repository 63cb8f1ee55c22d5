"""Issue 14: native pod selection in the real Pipeline, the Agent's wiring, the pod view's parsing, RBAC.

Split from test_native_pod_selection.py (the selector and decision-table
tests, and the helpers both use). Records are shaped as the BCC probes'
kernel side writes them; containers come from a real ContainerLookup
snapshot of lifecycle registry records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stellaops_runtime.agent.native_selection import PodView
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.syscalls import X86_64
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, render_probe_configmap
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.native import records
from stellaops_runtime.native.events import encode_trailer
from tests.unit.test_native_pod_selection import OBSERVE, WEB, pod, write_probes

# -- the real pipeline -------------------------------------------------------------------------


DIGEST = {"c-web": "sha256:" + "a" * 64, "c-db": "sha256:" + "d" * 64}


def _record(cid: str, uid: str, ns: str, name: str, cgroup: int) -> ContainerRecord:
    labels = {
        "io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.name": name, "io.kubernetes.pod.uid": uid,
        "io.kubernetes.container.name": "app",
    }  # fmt: skip
    return ContainerRecord(cid, "k8s.io", image_ref="img", image_digest=DIGEST.get(cid, "sha256:" + "e" * 64),
                           labels=labels, status="running", pid=100 + cgroup, cgroup_id=cgroup)  # fmt: skip


def bcc_syscall(cgroup: int, name: str, pid: int) -> bytes:
    head = (records.KIND_SYSCALL, 0, 0, pid, pid, 0, 5_000_000, cgroup, b"app")
    return records.STRUCTS[records.KIND_SYSCALL].pack(*head, X86_64[name], 1) + encode_trailer("/app", 1, [])


def bcc_exec(cgroup: int, pid: int) -> bytes:
    head = (records.KIND_EXEC, 0, 0, pid, pid, 0, 4_000_000, cgroup, b"app")
    return records.STRUCTS[records.KIND_EXEC].pack(*head, 1, 0, b"/app") + encode_trailer("", 0, [])


def test_the_pipeline_counts_exactly_the_selected_pods_events(tmp_path: Path) -> None:
    path = write_probes(tmp_path / "probes.json", WEB)
    cfg = parse_config({
        "native": {"probeConfigFile": str(path)}, "symbols": {"enabled": False},
        "attribution": {"enabled": False},
    })  # fmt: skip
    p = Pipeline(cfg, node_name="n1")
    assert p.native_selection is not None
    p.container_lookup = ContainerLookup(
        [_record("c-web", "uid-web", "shop", "web-1", 501), _record("c-db", "uid-db", "shop", "db-1", 502)]
    )
    n = 7
    batch = [(bcc_syscall(cg, "connect", 100 + cg), 1) for cg in (501, 502) for _ in range(n)]
    batch += [(bcc_exec(cg, 100 + cg), 1) for cg in (501, 502)]
    p.process_native(batch)  # no pod view yet: node-wide, as before
    assert p.processed == 2 * n + 2 and sum(p.native_selection.dropped.values()) == 0

    web, db = (pod("uid-web", "shop", "web-1", {"app": "web", **OBSERVE}),
               pod("uid-db", "shop", "db-1", {"app": "db", **OBSERVE}))  # fmt: skip
    p.native_selection.view = PodView([web, db])
    generation = p.fast_path._generation if p.fast_path is not None else 0
    p.process_native(batch)
    assert p.processed == (2 * n + 2) + (n + 2)  # web's syscalls and both execs
    assert p.native_selection.dropped["not_selected"] == n and p.native_selection.kept == n
    assert p.fast_path is not None and p.fast_path._generation > generation  # nothing stale reused

    # The db pod is relabelled to app=web: its next events count, exactly.
    p.native_selection.view = PodView([web, pod("uid-db", "shop", "db-1", {"app": "web", **OBSERVE})])
    p.process_native(batch)
    assert p.processed == (2 * n + 2) + (n + 2) + (2 * n + 2)
    assert p.native_selection.dropped["not_selected"] == n and p.native_selection.kept == 3 * n
    deltas, _ = p.drain()
    by_image: dict[str, int] = {}
    for d in deltas:
        if d.key.function_name.endswith("sys_connect"):
            by_image[d.key.image_digest] = by_image.get(d.key.image_digest, 0) + d.invocation_count
    assert by_image == {DIGEST["c-web"]: 3 * n, DIGEST["c-db"]: n + n}  # db: before the view, after the label


def test_without_the_api_or_the_probe_configmap_there_is_no_pod_view(tmp_path: Path) -> None:
    base = {"store": {"url": f"sqlite:///{tmp_path / 'hot.db'}"}}
    probes = str(write_probes(tmp_path / "probes.json", WEB))
    on = {"enabled": True, "kubeconfig": str(tmp_path / "kubeconfig")}
    for doc, wanted in (
        ({**base, "native": {"probeConfigFile": probes}}, False),  # no observationNode: not in a cluster
        ({**base, "observationNode": on}, False),  # no probe ConfigMap: no policies to select by
        ({**base, "observationNode": on, "native": {"enabled": False, "probeConfigFile": probes}}, False),
        ({**base, "observationNode": on, "native": {"probeConfigFile": probes}}, True),
    ):
        view = Agent(parse_config(doc)).pod_view
        assert (view is not None) is wanted, doc
        assert view is None or view.interval == 5.0  # docs/operator.md: listed every 5 s
    from stellaops_runtime.agent import pod_view

    assert pod_view.NAMESPACE_INTERVAL_SECONDS == 30.0  # namespaces at most every 30 s


def test_hostile_list_items_are_counted_and_other_nodes_pods_left_out() -> None:
    from stellaops_runtime.agent.pod_view import MAX_LABELS, view_namespaces, view_pods

    def item(uid: Any, node: Any = "n1", labels: Any = None, name: Any = "p") -> Any:
        return {"metadata": {"uid": uid, "namespace": "shop", "name": name, "labels": labels or {}},
                "spec": {"nodeName": node}}  # fmt: skip

    items = [
        item("ok", labels={"app": "web"}),
        item("other-node", node="n2"),
        "not an object",
        {"metadata": None, "spec": {}},
        item(None),
        item("bad-labels", labels={"app": 1}),
        item("list-labels", labels=["app"]),
        item("too-many", labels={f"k{i}": "v" for i in range(MAX_LABELS + 1)}),
        item("", name=""),
    ]
    pods, bad = view_pods(items, "n1")
    assert [p.uid for p in pods] == ["ok"] and bad == 7
    assert pods[0].labels == (("app", "web"),)
    assert view_namespaces(
        [{"metadata": {"name": "a", "labels": {"t": "1"}}}, 5, {"metadata": {"name": 3}}]
    ) == {"a": {"t": "1"}}


def test_the_agents_cluster_role_grants_list_on_pods_and_namespaces_and_nothing_more_on_them() -> None:
    import yaml

    docs = yaml.safe_load_all((Path(__file__).resolve().parents[2] / "manifests/agent/rbac.yaml").read_text())
    (role,) = [d for d in docs if d and d["kind"] == "ClusterRole"]
    on = [r for r in role["rules"] if {"pods", "namespaces"} & set(r["resources"])]
    assert on == [{"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["list"]}]


def test_an_opted_out_pod_is_counted_as_opted_out_not_as_unselected(tmp_path: Path) -> None:
    from stellaops_runtime.controller.opted_out import OptedOutPod

    cm = render_probe_configmap(
        name="p", namespace="agents", entries=dict([WEB]), owner=None,
        opted_out=[OptedOutPod("shop", "db-1", "uid-db")],
    )  # fmt: skip
    path = tmp_path / "probes.json"
    path.write_text(cm["data"][PROBE_CONFIG_KEY])
    cfg = parse_config({"native": {"probeConfigFile": str(path)}, "symbols": {"enabled": False},
                        "attribution": {"enabled": False}})  # fmt: skip
    p = Pipeline(cfg, node_name="n1")
    assert p.native_selection is not None
    p.container_lookup = ContainerLookup([_record("c-db", "uid-db", "shop", "db-1", 502)])
    p.native_selection.view = PodView([pod("uid-db", "shop", "db-1", {"app": "db", **OBSERVE})])
    p.process_native([(bcc_syscall(502, "connect", 602), 1)] * 3)
    assert p.optout.total == 3 and sum(p.native_selection.dropped.values()) == 0 and p.processed == 0


def test_a_purl_function_whose_policy_selects_no_running_container_is_reported_not_found() -> None:
    from stellaops_runtime.native.config import NativeConfig
    from stellaops_runtime.native.policy_config import PurlFunction
    from stellaops_runtime.native.purl_wiring import wire

    fn = PurlFunction(WEB[0], "pkg:deb/debian/openssl@3.0.11?arch=amd64", ("SSL_do_handshake",))
    wiring = wire([fn], [("c1", 1)], NativeConfig(), selects=lambda policy, container: False)
    try:
        assert wiring.config.uprobes == () and wiring.selection == ((WEB[0], ()),)
        (e,), omitted = wiring.entries()
        assert omitted == 0 and (e["state"], e["containers"]) == ("not_found", 0)
        assert e["reason"] == "no running container of a pod this policy selects at EbpfDeep on this node"
    finally:
        wiring.close()


def test_binary_path_function_events_decoded_from_the_probes_own_targets_are_matched(tmp_path: Path) -> None:
    """The module the decoder gives a binaryPath uprobe (the config's own target) is what selection reads."""
    from stellaops_runtime.native.config import NativeConfig
    from stellaops_runtime.native.policy_config import read_probe_config
    from tests.unit.test_native_pod_selection import DEEP

    path = write_probes(tmp_path / "probes.json", WEB)
    native = read_probe_config(str(path), NativeConfig()).config
    (target,) = [i for i, t in enumerate(native.uprobes) if t.symbol == "SSL_read"]
    cfg = parse_config({"native": {"probeConfigFile": str(path)}, "symbols": {"enabled": False},
                        "attribution": {"enabled": False}})  # fmt: skip
    p = Pipeline(cfg, node_name="n1")
    assert p.native_selection is not None
    p.container_lookup = ContainerLookup(
        [_record("c-web", "uid-web", "shop", "web-1", 501), _record("c-db", "uid-db", "shop", "db-1", 502)]
    )
    p.native_selection.view = PodView([pod("uid-web", "shop", "web-1", {"app": "web", **DEEP}),
                                       pod("uid-db", "shop", "db-1", {"app": "web", **OBSERVE})])  # fmt: skip

    def call(cgroup: int) -> bytes:
        head = (records.KIND_UPROBE, 0, 0, 100 + cgroup, 100 + cgroup, 0, 5_000_000, cgroup, b"app")
        return records.STRUCTS[records.KIND_UPROBE].pack(*head, target, 0, 1000) + encode_trailer(
            "/app", 1, []
        )

    p.process_native([(call(501), 1)] * 4 + [(call(502), 1)] * 3, native)
    assert p.processed == 4 and p.native_selection.kept == 4
    assert p.native_selection.dropped["not_selected"] == 3  # web-like, but not labelled observe-deep
