"""The agent fleet rendered from a RuntimeObserver: config, hash, grants, RBAC, determinism.

Field names are checked against the Kubernetes API itself: each object is
read into the official client's model (``kubernetes`` package) and written
back; a misspelt or misplaced field would be dropped on the way and the
round trip would differ.
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from stellaops_runtime.contracts.config import STORE_URL_ENV, parse_config
from stellaops_runtime.contracts.crd_names import AGENT_TEMPLATE_ANNOTATION, AGENT_TEMPLATE_ENV
from stellaops_runtime.contracts.crds import (
    CONFIG_HASH_ANNOTATION,
    DEFAULT_AGENT_NAMESPACE,
    MANAGED_BY,
    OBSERVER_LABEL,
    parse_observer_spec,
)
from stellaops_runtime.controller.agent_capabilities import (
    agent_capabilities,
    default_capabilities,
    native_fallback,
)
from stellaops_runtime.controller.agent_config import AGENT_CONFIG_KEY
from stellaops_runtime.controller.naming import canonical_json, sha256_hex
from stellaops_runtime.controller.render_agent import (
    STORE_SECRET_ANNOTATION,
    agent_resource_name,
    agent_template_hash,
    probe_configmap_name,
    render_agent_objects,
    rendered_agent_template,
    store_secret_token,
)
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY
from stellaops_runtime.image import IMAGE

ROOT = Path(__file__).resolve().parents[2]
UID = "6f1d0a0e-3c3b-4f57-9a53-0e5cfd1c2f11"
BASE: dict[str, Any] = {
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}
# The documented grant (docs/operator.md, "The agent DaemonSet"): nothing more. With Tetragon
# as the source (what a RuntimeObserver renders) the agent loads no eBPF program itself.
CAPABILITIES = {"SYS_PTRACE"}
# SYS_RESOURCE (memlock before 5.11) is never a default: a node whose bounding set lacks it
# cannot start the container at all (issue 16); spec.agent.capabilities adds it where needed.
NATIVE_CAPABILITIES = {"BPF", "PERFMON", "SYS_PTRACE"}
SPOOL_DIR = "/var/lib/stellaops-runtime/spool"
MOUNTS = {
    ("config", "/etc/stellaops-runtime/agent", True),
    ("probes", "/etc/stellaops-runtime/probes", True),
    ("tetragon", "/var/run/tetragon", True),
    ("containerd", "/run/containerd", True),
    ("crio", "/var/run/crio", True),
    ("spool", SPOOL_DIR, False),
    ("index-cache", "/var/lib/stellaops-runtime/index-cache", False),
}
# Tetragon's directory is created empty on a node without Tetragon (the agent must start there and
# fall back to its own probes); the spool directory is ours.
HOST_PATHS = {
    "/var/run/tetragon": "DirectoryOrCreate", "/run/containerd": "DirectoryOrCreate",
    "/var/run/crio": "DirectoryOrCreate",
    SPOOL_DIR: "DirectoryOrCreate", "/var/lib/stellaops-runtime/index-cache": "DirectoryOrCreate",
}  # fmt: skip
# What the BCC fallback reads on the host, read-only, only when the agent may load BPF programs.
NATIVE_HOST_PATHS = {
    "/sys/kernel/tracing": "Directory", "/sys/kernel/debug": "Directory", "/lib/modules": "Directory",
    "/sys/fs/cgroup": "Directory",
}  # fmt: skip


def render(spec: dict[str, Any] | None = None, *, name: str = "default") -> dict[str, dict[str, Any]]:
    objs = render_agent_objects(
        name=name, uid=UID, namespace="stellaops-system", spec=parse_observer_spec(spec or BASE)
    )
    return {o["kind"]: o for o in objs}


def with_(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    node = spec
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return spec


def pod_spec(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return objs["DaemonSet"]["spec"]["template"]["spec"]


def config_hash(objs: dict[str, dict[str, Any]]) -> str:
    return objs["DaemonSet"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]


def test_objects_kinds_names_and_ownership() -> None:
    objs = render_agent_objects(
        name="default", uid=UID, namespace="stellaops-system", spec=parse_observer_spec(BASE)
    )
    assert [o["kind"] for o in objs] == ["ServiceAccount", "ConfigMap", "DaemonSet", "Service"]
    for o in objs:
        meta = o["metadata"]
        assert meta["name"] == agent_resource_name("default") == "stellaops-agent-default"
        assert meta["labels"][MANAGED_BY[0]] == MANAGED_BY[1] and meta["labels"][OBSERVER_LABEL] == "default"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "stellaops.io/v1alpha1",
                "kind": "RuntimeObserver",
                "name": "default",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["namespace"] == "stellaops-system"  # nothing cluster-scoped: no RBAC is rendered


def test_field_names_are_kubernetes_api_fields() -> None:
    api = client.ApiClient()
    spec = with_(
        "agent.tolerations", [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]
    )
    spec["agent"]["priorityClassName"] = "node-agents"
    spec["agent"]["nodeSelector"] = {"pool": "general"}
    for obj in render(spec).values():
        model = api._ApiClient__deserialize(obj, f"V1{obj['kind']}")  # type: ignore[attr-defined]
        assert api.sanitize_for_serialization(model) == obj, obj["kind"]


def test_configmap_is_a_valid_agent_config_with_no_secret() -> None:
    spec = with_("privacy.extraPatterns", ["token=\\S+"])
    spec["hotSymbols"] = {"windowSeconds": 120, "minConfidenceThreshold": 0.5, "flushIntervalSeconds": 5}
    spec["tetragon"] = {"address": "127.0.0.1:54321", "timeoutSeconds": 2}
    spec["metrics"] = {"port": 9100}
    cm = render(spec)["ConfigMap"]
    assert list(cm["data"]) == [AGENT_CONFIG_KEY]
    config = parse_config(cm)  # the whole ConfigMap, as `stella-runtime agent --config` reads it
    assert config == parse_config(yaml.safe_load(cm["data"][AGENT_CONFIG_KEY]))
    assert config.tetragon.address == "127.0.0.1:54321" and config.tetragon.timeout_seconds == 2
    assert (config.hot_symbols.window_seconds, config.hot_symbols.min_confidence_threshold) == (120, 0.5)
    assert config.hot_symbols.flush_interval_seconds == 5
    assert config.privacy.extra_patterns == ["token=\\S+"] and config.privacy.redact_arguments is True
    assert (config.metrics.address, config.metrics.port) == ("0.0.0.0", 9100)
    assert config.observation_node.enabled is True
    # The lifecycle observer runs when containerd's socket is in the mounted /run/containerd, else
    # when CRI-O's is in the mounted /var/run/crio.
    assert (config.lifecycle.enabled, config.lifecycle.runtime) == ("auto", "auto")
    assert os.path.dirname(config.lifecycle.containerd_address) == "/run/containerd"
    assert "/var/run/crio" in {os.path.dirname(a) for a in config.lifecycle.cri_addresses}
    assert config.symbols.index_cache_dir == "/var/lib/stellaops-runtime/index-cache"  # a hostPath
    # The URL comes from the Secret; the store section holds only the spool on its hostPath.
    assert yaml.safe_load(cm["data"][AGENT_CONFIG_KEY])["store"] == {
        "spoolPath": f"{SPOOL_DIR}/hot-symbols.spool"
    }
    container = pod_spec(render(spec))["containers"][0]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert render(spec)["Service"]["spec"]["ports"][0]["port"] == 9100


def test_configmap_uses_the_seed_key_names_and_no_deprecated_one(caplog: pytest.LogCaptureFixture) -> None:
    spec = copy.deepcopy(BASE)
    spec["tetragon"] = {"timeoutSeconds": 7}
    spec["hotSymbols"] = {"windowSeconds": 90}
    spec["privacy"] = {"defaultPatterns": False, "symbolIdOnly": True}
    doc = yaml.safe_load(render(spec)["ConfigMap"]["data"][AGENT_CONFIG_KEY])
    assert doc["tetragon"]["connectionTimeout"] == 7
    assert doc["hotSymbols"]["aggregationWindowSeconds"] == 90
    assert doc["privacy"]["useDefaultRedactionPatterns"] is False
    assert doc["privacy"]["symbolIdOnlyMode"] is True
    rendered = {f"{section}.{key}" for section, keys in doc.items() for key in keys}
    deprecated = {
        "tetragon.timeoutSeconds",
        "hotSymbols.windowSeconds",
        "privacy.defaultPatterns",
        "privacy.symbolIdOnly",
    }
    assert not rendered & deprecated
    with caplog.at_level("WARNING", logger="stellaops_runtime.contracts.config"):
        config = parse_config(doc)
    assert caplog.records == []  # the agent has nothing to warn about
    assert (config.tetragon.timeout_seconds, config.hot_symbols.window_seconds) == (7, 90)
    assert (config.privacy.default_patterns, config.privacy.symbol_id_only) == (False, True)


def test_store_url_and_node_name_come_from_the_environment() -> None:
    env = pod_spec(render())["containers"][0]["env"]
    assert env == [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        # tetragon.metricsUrl's $(NODE_IP) (tests/integration/test_tetragon_metrics_default_url.py)
        {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {
            "name": AGENT_TEMPLATE_ENV,
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['stellaops.io/agent-template']"}},
        },
        {"name": STORE_URL_ENV, "valueFrom": {"secretKeyRef": {"name": "stellaops-store", "key": "url"}}},
    ]


def test_the_pod_template_names_its_rollout_and_the_agent_reads_it() -> None:
    """``stellaops.io/agent-template``: a digest of the whole template, so it changes exactly when the
    pods roll (config, image, store Secret), and the agent reads it through the downward API."""

    def annotations(spec: dict[str, Any] = BASE, token: str | None = "t1") -> dict[str, str]:
        objs = render_agent_objects(
            name="default", uid=UID, namespace="ns", spec=parse_observer_spec(spec), store_secret=token
        )
        assert rendered_agent_template(objs) is not None
        (ds,) = [o for o in objs if o["kind"] == "DaemonSet"]
        template = ds["spec"]["template"]
        assert template["metadata"]["annotations"][AGENT_TEMPLATE_ANNOTATION] == agent_template_hash(template)
        assert rendered_agent_template(objs) == template["metadata"]["annotations"][AGENT_TEMPLATE_ANNOTATION]
        return dict(template["metadata"]["annotations"])

    first = annotations()
    assert len(first[AGENT_TEMPLATE_ANNOTATION]) == 16 and annotations() == first  # same spec: same rollout
    image = {**BASE, "agent": {**BASE.get("agent", {}), "image": "example.org/agent:2"}}
    window = {**BASE, "hotSymbols": {"windowSeconds": 120}}
    for changed in (annotations(image), annotations(window), annotations(token="t2")):
        assert changed[AGENT_TEMPLATE_ANNOTATION] != first[AGENT_TEMPLATE_ANNOTATION]
    assert rendered_agent_template([]) is None


def test_mounts_and_capabilities_are_exactly_the_documented_grant() -> None:
    spec = pod_spec(render())
    (container,) = spec["containers"]
    sc = container["securityContext"]
    assert set(sc["capabilities"]["add"]) == CAPABILITIES and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert (sc["runAsUser"], sc["runAsNonRoot"]) == (0, False)
    assert {(m["name"], m["mountPath"], m["readOnly"]) for m in container["volumeMounts"]} == MOUNTS
    host_paths = {v["hostPath"]["path"]: v["hostPath"]["type"] for v in spec["volumes"] if "hostPath" in v}
    assert host_paths == HOST_PATHS
    others = {v["name"]: v for v in spec["volumes"] if "hostPath" not in v}
    assert others["config"]["configMap"]["name"] == agent_resource_name("default")
    assert others["probes"]["configMap"] == {"name": probe_configmap_name("default"), "optional": True}
    assert spec["hostPID"] is True
    assert not any(spec.get(k) for k in ("hostNetwork", "hostIPC", "shareProcessNamespace"))
    assert container["command"] == [
        "stella-runtime",
        "agent",
        "--config",
        "/etc/stellaops-runtime/agent/agent.yaml",
    ]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("tetragon.address", "unix:///run/tetragon/tetragon.sock"),
        ("tetragon.timeoutSeconds", 9),
        ("hotSymbols.windowSeconds", 30),
        ("hotSymbols.minConfidenceThreshold", 0.9),
        ("hotSymbols.flushIntervalSeconds", 1),
        ("privacy.redactArguments", False),
        ("privacy.defaultPatterns", False),
        ("privacy.extraPatterns", ["secret=\\S+"]),
        ("privacy.symbolIdOnly", True),
        ("privacy.allowedNamespaces", ["shop"]),
        ("metrics.port", 9000),
    ],
)
def test_config_hash_changes_when_the_config_changes(path: str, value: Any) -> None:
    before, after = render(), render(with_(path, value))
    assert after["ConfigMap"]["data"] != before["ConfigMap"]["data"]
    assert config_hash(after) != config_hash(before)
    assert config_hash(after) == sha256_hex(after["ConfigMap"]["data"])


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("agent.image", "ghcr.io/stellaops/stellaops-runtime:0.2.0"),
        ("agent.pullPolicy", "Always"),
        ("agent.resources", {"limits": {"memory": "2Gi"}}),
        ("agent.nodeSelector", {"pool": "general"}),
        ("agent.tolerations", []),
        ("agent.priorityClassName", "node-agents"),
        ("store.secretRef", {"name": "other", "key": "dsn"}),
        ("agentNamespace", "observability"),
    ],
)
def test_config_hash_stays_when_only_the_pod_changes(path: str, value: Any) -> None:
    before, after = render(), render(with_(path, value))
    assert after["ConfigMap"]["data"] == before["ConfigMap"]["data"]
    assert config_hash(after) == config_hash(before)
    if path != "agentNamespace":  # the namespace is the caller's argument, not read from the spec here
        assert canonical_json(after["DaemonSet"]) != canonical_json(before["DaemonSet"])


def test_scheduling_defaults_and_overrides() -> None:
    default = pod_spec(render())
    assert default["tolerations"] == [{"operator": "Exists"}]
    assert default["nodeSelector"] == {"kubernetes.io/os": "linux"} and "priorityClassName" not in default
    custom = pod_spec(
        render(
            {
                **BASE,
                "agent": {
                    **BASE["agent"],
                    "tolerations": [],
                    "nodeSelector": {"pool": "general"},
                    "priorityClassName": "node-agents",
                },
            }
        )
    )
    assert custom["tolerations"] == []
    assert custom["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "general"}
    assert custom["priorityClassName"] == "node-agents"


def test_rendering_is_byte_for_byte_deterministic() -> None:
    a = render_agent_objects(name="default", uid=UID, namespace="ns", spec=parse_observer_spec(BASE))
    b = render_agent_objects(
        name="default", uid=UID, namespace="ns", spec=parse_observer_spec(copy.deepcopy(BASE))
    )
    assert canonical_json(a) == canonical_json(b)
    assert render()["ConfigMap"]["data"][AGENT_CONFIG_KEY] == render()["ConfigMap"]["data"][AGENT_CONFIG_KEY]


def test_capabilities_follow_the_event_source() -> None:
    tetragon = pod_spec(render())["containers"][0]["securityContext"]["capabilities"]
    assert set(tetragon["add"]) == CAPABILITIES and tetragon["drop"] == ["ALL"]
    objs = render_agent_objects(
        name="default",
        uid=UID,
        namespace="stellaops-system",
        spec=parse_observer_spec(BASE),
        source="native",
    )
    (ds,) = [o for o in objs if o["kind"] == "DaemonSet"]
    native = ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]
    assert set(native["add"]) == NATIVE_CAPABILITIES and native["drop"] == ["ALL"]
    assert agent_capabilities("tetragon") == default_capabilities("tetragon") == ["SYS_PTRACE"]
    assert "SYS_RESOURCE" not in default_capabilities("native")


@pytest.mark.parametrize("source", ["tetragon", "native"])
def test_spec_capabilities_replace_the_default_of_the_source(source: Any) -> None:
    def caps(spec: dict[str, Any]) -> dict[str, Any]:
        objs = render_agent_objects(
            name="default", uid=UID, namespace="ns", spec=parse_observer_spec(spec), source=source
        )
        (ds,) = [o for o in objs if o["kind"] == "DaemonSet"]
        return ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]

    # exactly what is asked for, sorted, whatever the source; everything else still dropped
    asked = caps(with_("agent.capabilities", ["SYS_RESOURCE", "BPF", "PERFMON", "SYS_PTRACE"]))
    assert asked == {"drop": ["ALL"], "add": ["BPF", "PERFMON", "SYS_PTRACE", "SYS_RESOURCE"]}
    # an empty list is "none at all", not "the default"
    assert caps(with_("agent.capabilities", [])) == {"drop": ["ALL"], "add": []}
    assert caps(BASE)["add"] == default_capabilities(source)


@pytest.mark.parametrize(
    ("caps", "reason"),
    [
        (["CAP_SYS_PTRACE"], "InvalidSpec"),  # Kubernetes' spelling is without CAP_
        (["sys_ptrace"], "InvalidSpec"),
        (["ALL"], "InvalidSpec"),
        (["SYS_PTRACE\x00"], "InvalidSpec"),
        ("SYS_PTRACE", "InvalidSpec"),  # a string is not a list
        ([1], "InvalidSpec"),
        (["SYS_PTRACE", "SYS_PTRACE"], "DuplicateEntry"),
    ],
)
def test_invalid_capabilities_are_spec_errors(caps: Any, reason: str) -> None:
    from stellaops_runtime.contracts.crds import SpecError

    with pytest.raises(SpecError) as err:
        parse_observer_spec(with_("agent.capabilities", caps))
    assert err.value.reason == reason


def test_the_image_defaults_to_this_release() -> None:
    spec = copy.deepcopy(BASE)
    del spec["agent"]
    assert pod_spec(render(spec))["containers"][0]["image"] == IMAGE
    assert pod_spec(render(with_("agent", {"pullPolicy": "Always"})))["containers"][0]["image"] == IMAGE
    mirror = "registry.example/stellaops-runtime@sha256:" + "ab" * 32
    assert pod_spec(render(with_("agent.image", mirror)))["containers"][0]["image"] == mirror


def _secret(uid: str, rv: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "stellaops-store", "uid": uid, "resourceVersion": rv}, "data": data or {}}


def test_store_secret_version_goes_into_the_pod_template_without_its_content() -> None:
    def template(token: str | None, spec: dict[str, Any] = BASE) -> dict[str, Any]:
        objs = render_agent_objects(
            name="default", uid=UID, namespace="ns", spec=parse_observer_spec(spec), store_secret=token
        )
        (ds,) = [o for o in objs if o["kind"] == "DaemonSet"]
        return ds["spec"]["template"]["metadata"]["annotations"]

    secret = _secret("u1", "100", {"url": "cG9zdGdyZXM6Ly9zM2NyM3Q="})
    first = template(store_secret_token(secret))
    assert set(first) == {CONFIG_HASH_ANNOTATION, STORE_SECRET_ANNOTATION, AGENT_TEMPLATE_ANNOTATION}
    # new data (at a new resourceVersion), or the Secret re-created, changes the template: a roll
    assert (
        template(store_secret_token(_secret("u1", "101", {"url": "b3RoZXI="})))[STORE_SECRET_ANNOTATION]
        != first[STORE_SECRET_ANNOTATION]
    )
    assert (
        template(store_secret_token(_secret("u1", "101")))[STORE_SECRET_ANNOTATION]
        != first[STORE_SECRET_ANNOTATION]
    )
    # a write that leaves the data alone (a label, `kubectl apply --server-side` taking over
    # managedFields) bumps only the resourceVersion: no roll (seen on the real API server,
    # tests/realkube/test_idle_writes.py)
    relabelled = _secret("u1", "257", {"url": "cG9zdGdyZXM6Ly9zM2NyM3Q="})
    relabelled["metadata"]["labels"] = {"team": "x"}
    assert template(store_secret_token(relabelled)) == first
    assert (
        template(store_secret_token(_secret("u2", "100")))[STORE_SECRET_ANNOTATION]
        != first[STORE_SECRET_ANNOTATION]
    )
    # the same version gives the same template; the config hash does not depend on the Secret
    assert template(store_secret_token(copy.deepcopy(secret))) == first
    assert template(store_secret_token(None))[CONFIG_HASH_ANNOTATION] == first[CONFIG_HASH_ANNOTATION]
    assert store_secret_token(None) == "absent"
    # pointing at another Secret rolls too, even at an equal version
    other = with_("store.secretRef", {"name": "other", "key": "url"})
    assert (
        template(store_secret_token(secret), other)[STORE_SECRET_ANNOTATION] != first[STORE_SECRET_ANNOTATION]
    )
    # nothing of the content in clear, and no plain digest of it: the digest is keyed with the
    # uid, so equal data under another uid gives another token
    token = store_secret_token(secret)
    assert "cG9zdGdyZXM6Ly9zM2NyM3Q=" not in token and "s3cr3t" not in token
    assert hashlib.sha256(b"cG9zdGdyZXM6Ly9zM2NyM3Q=").hexdigest() not in token
    assert token.split("/")[1] != store_secret_token(_secret("u2", "100", secret["data"])).split("/")[1]
    assert "cG9zdGdyZXM6Ly9zM2NyM3Q=" not in canonical_json(first)
    # no token, no annotation (a caller that did not read the Secret)
    assert set(template(None)) == {CONFIG_HASH_ANNOTATION, AGENT_TEMPLATE_ANNOTATION}


def test_spool_survives_the_pod_and_shutdown_has_time_to_spool() -> None:
    spec = pod_spec(render())
    (container,) = spec["containers"]
    config = yaml.safe_load(render()["ConfigMap"]["data"][AGENT_CONFIG_KEY])
    spool_file = config["store"]["spoolPath"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "spool"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "spool"]
    # the same path inside and outside, on the host, writable
    assert spool_file.startswith(mount["mountPath"] + "/")
    assert volume["hostPath"]["path"] == mount["mountPath"] and mount["readOnly"] is False
    # 10 s longer than the rendered agent's own shutdown.graceSeconds (its default, 20 s), within
    # which its stop ends by its own log (tests/e2e/test_export_spooled_position.py): the margin is
    # for the signal's handling and the process's exit (docs/operator.md)
    assert spec["terminationGracePeriodSeconds"] == 30
    grace = parse_config(render()["ConfigMap"]).shutdown.grace_seconds
    assert "shutdown" not in config and grace == 20
    assert spec["terminationGracePeriodSeconds"] - grace == 10


def test_agent_rbac_comes_with_the_manifests_and_matches_what_the_agent_does() -> None:
    """No RBAC is rendered; manifests/agent/rbac.yaml binds the agent role to the agent namespace."""
    assert not any(o["kind"].startswith("Cluster") for o in render().values())
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "agent" / "rbac.yaml").read_text()) if d]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert role["rules"] == [
        {
            "apiGroups": ["stellaops.io"],
            "resources": ["observationnodes"],
            "verbs": ["get", "create", "patch"],
        },
        {"apiGroups": ["stellaops.io"], "resources": ["observationnodes/status"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["list"]},  # agent/pod_view.py
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    # every ServiceAccount of the default agent namespace, where the operator names one per observer
    assert binding["subjects"] == [
        {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Group",
            "name": f"system:serviceaccounts:{DEFAULT_AGENT_NAMESPACE}",
        }
    ]
    assert pod_spec(render())["serviceAccountName"] == render()["ServiceAccount"]["metadata"]["name"]


def test_metrics_service_selects_the_agents() -> None:
    objs = render()
    svc = objs["Service"]["spec"]
    assert svc["clusterIP"] == "None"
    assert svc["selector"] == objs["DaemonSet"]["spec"]["selector"]["matchLabels"]
    template_labels = objs["DaemonSet"]["spec"]["template"]["metadata"]["labels"]
    assert svc["selector"].items() <= template_labels.items()
    assert svc["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]


def test_long_or_dotted_observer_names_give_valid_distinct_names() -> None:
    dotted, dashed = agent_resource_name("team.a"), agent_resource_name("team-a")
    assert dotted != dashed and "." not in dotted
    long = agent_resource_name("x" * 253)
    assert len(long) <= 52 and long.startswith("stellaops-agent-")
    assert len(probe_configmap_name("x" * 253)) <= 63
    objs = render(name="x" * 253)
    assert objs["DaemonSet"]["metadata"]["labels"]["app.kubernetes.io/instance"] != "x" * 253
    assert len(objs["DaemonSet"]["metadata"]["labels"]["app.kubernetes.io/instance"]) <= 63


@pytest.mark.parametrize(
    ("caps", "source", "native"),
    [
        (None, "tetragon", False),  # the default: SYS_PTRACE only, no BPF program can load
        (None, "native", True),
        (["SYS_PTRACE", "BPF", "PERFMON"], "tetragon", True),  # the observer asks for the fallback
        (["SYS_PTRACE", "SYS_ADMIN"], "tetragon", True),
        (["SYS_PTRACE", "BPF"], "tetragon", False),  # BPF alone cannot attach probes
        ([], "native", False),
    ],
)
def test_the_bcc_fallback_is_rendered_only_with_the_capabilities_to_load_it(
    caps: list[str] | None, source: Any, native: bool
) -> None:
    spec = with_("agent.capabilities", caps) if caps is not None else BASE
    objs = {o["kind"]: o for o in render_agent_objects(
        name="default", uid=UID, namespace="ns", spec=parse_observer_spec(spec), source=source
    )}  # fmt: skip
    pod = objs["DaemonSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = parse_config(yaml.safe_load(objs["ConfigMap"]["data"][AGENT_CONFIG_KEY]))
    host_paths = {v["hostPath"]["path"]: v["hostPath"]["type"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["mountPath"]: m["readOnly"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert config.native.enabled is native
    assert native_fallback(container["securityContext"]["capabilities"]["add"]) is native
    if native:
        assert host_paths == HOST_PATHS | NATIVE_HOST_PATHS
        assert all(mounts[p] is True for p in NATIVE_HOST_PATHS)
        assert mounts[env["STELLA_CACHE_DIR"]] is False  # the header tree: the root fs is read-only
        assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} == {"cache"}
    else:
        assert host_paths == HOST_PATHS and "STELLA_CACHE_DIR" not in env
        assert not set(NATIVE_HOST_PATHS) & set(mounts)
    # The probe ConfigMap's payload, where the probes volume mounts it: read on every node, for the
    # operator's list of opted-out pods even where the BCC probes never run.
    assert config.native.probe_config_file == f"/etc/stellaops-runtime/probes/{PROBE_CONFIG_KEY}"
    assert mounts["/etc/stellaops-runtime/probes"] is True
    assert pod["hostPID"] is True
