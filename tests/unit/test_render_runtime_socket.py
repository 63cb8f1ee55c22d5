"""spec.containerRuntime rendered into the agent fleet: the socket's host mount, the agent's lifecycle keys.

Without the runtime's socket the agent cannot know a node's silent containers,
so no window of a container's image reads above ActiveTracing (docs/lifecycle.md,
"Without the lifecycle part"); on k3s, Docker or CRI-O nodes the default mounts
(``/run/containerd``, ``/var/run/crio``) hold none. The RuntimeObserver says
where it is (controller/runtime_socket.py, contracts/runtime_socket.py); the
rendered agent config must then pick that socket in the agent itself
(``lifecycle_target``, against a real Unix socket at the path).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schema import load_crd, served_schema
from kubernetes import client

from stellaops_runtime.agent.lifecycle_part import Target, lifecycle_target
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crds import SpecError, parse_observer_spec
from stellaops_runtime.contracts.runtime_socket import (
    DATA_ROOT_PATTERN,
    FORBIDDEN_PATTERN,
    KUBELET_PATTERN,
    MAX_SOCKET_PATH_BYTES,
    NESTED_PATTERN,
    RUNTIME_KINDS,
    SOCKET_PATH_PATTERN,
)
from stellaops_runtime.controller.agent_config import AGENT_CONFIG_KEY
from stellaops_runtime.controller.render_agent import render_agent_objects

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = {
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}
K3S = "/run/k3s/containerd/containerd.sock"


def spec_with(runtime: dict[str, Any] | None, **more: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    if runtime is not None:
        spec["containerRuntime"] = runtime
    spec.update(more)
    return spec


def render(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    objs = render_agent_objects(
        name="default", uid="u-1", namespace="stellaops-agent", spec=parse_observer_spec(spec)
    )
    return {o["kind"]: o for o in objs}


def pod(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return objs["DaemonSet"]["spec"]["template"]["spec"]


def runtime_mounts(objs: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str, bool]]:
    """mountPath -> (volume, hostPath type, readOnly) of every hostPath mount but the agent's own."""
    spec = pod(objs)
    volumes = {v["name"]: v for v in spec["volumes"]}
    own = {"tetragon", "spool", "index-cache", "tracefs", "debugfs", "modules", "cgroup"}
    out = {}
    for m in spec["containers"][0]["volumeMounts"]:
        host = volumes[m["name"]].get("hostPath")
        if host is not None and m["name"] not in own:
            assert host["path"] == m["mountPath"]  # at the same path: the config's address is the host's
            out[m["mountPath"]] = (m["name"], host["type"], m["readOnly"])
    return out


def lifecycle(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return dict(json.loads(objs["ConfigMap"]["data"][AGENT_CONFIG_KEY])["lifecycle"])


def test_unset_keeps_containerds_and_crios_directories_and_auto() -> None:
    objs = render(spec_with(None))
    assert runtime_mounts(objs) == {
        "/run/containerd": ("containerd", "DirectoryOrCreate", True),
        "/var/run/crio": ("crio", "DirectoryOrCreate", True),
    }
    assert lifecycle(objs) == {"enabled": "auto", "runtime": "auto"}


@pytest.mark.parametrize(
    ("runtime", "mounted", "kind", "config"),
    [
        # k3s / RKE2: containerd's socket in its own directory
        (
            {"kind": "containerd", "socketPath": K3S},
            "/run/k3s/containerd",
            "DirectoryOrCreate",
            {"runtime": "containerd", "containerdAddress": K3S},
        ),
        # Docker Engine: its socket sits in /var/run, which is mounted alone, never the whole directory
        (
            {"kind": "docker"},
            "/var/run/docker.sock",
            "Socket",
            {"runtime": "docker", "dockerAddress": "/var/run/docker.sock"},
        ),
        # cri-dockerd's CRI, also in /var/run
        (
            {"kind": "cri", "socketPath": "/var/run/cri-dockerd.sock"},
            "/var/run/cri-dockerd.sock",
            "Socket",
            {"runtime": "cri", "criAddresses": ["/var/run/cri-dockerd.sock"]},
        ),
        (
            {"kind": "cri"},
            "/var/run/crio",
            "DirectoryOrCreate",
            {"runtime": "cri", "criAddresses": ["/var/run/crio/crio.sock"]},
        ),
        (
            {"kind": "containerd"},
            "/run/containerd",
            "DirectoryOrCreate",
            {"runtime": "containerd", "containerdAddress": "/run/containerd/containerd.sock"},
        ),
        # rootless Docker in the user's runtime directory
        (
            {"kind": "docker", "socketPath": "/run/user/1000/docker.sock"},
            "/run/user/1000",
            "DirectoryOrCreate",
            None,
        ),
        ({"kind": "cri", "socketPath": "/var/lib/cri.sock"}, "/var/lib/cri.sock", "Socket", None),
        ({"kind": "cri", "socketPath": "/tmp/crio.sock"}, "/tmp/crio.sock", "Socket", None),
        ({"kind": "cri", "socketPath": "/var/crio.sock"}, "/var/crio.sock", "Socket", None),
    ],
)
def test_the_socket_is_mounted_alone_and_named_in_the_config(
    runtime: dict[str, Any], mounted: str, kind: str, config: dict[str, Any] | None
) -> None:
    objs = render(spec_with(runtime))
    assert runtime_mounts(objs) == {mounted: ("runtime-socket", kind, True)}
    if config is not None:
        assert lifecycle(objs) == {"enabled": "auto", **config}
    # the agent reads it as its own config keys, one runtime, no other candidate
    cfg = parse_config(objs["ConfigMap"])
    assert cfg.lifecycle.runtime == runtime["kind"] and cfg.lifecycle.enabled == "auto"
    # valid Kubernetes objects (the official client's models keep every field)
    api = client.ApiClient()
    ds = objs["DaemonSet"]
    assert api.sanitize_for_serialization(api._ApiClient__deserialize(ds, "V1DaemonSet")) == ds  # type: ignore[attr-defined]


def test_a_changed_socket_rolls_the_agents() -> None:
    hashes = {
        json.dumps(r): render(spec_with(r))["DaemonSet"]["spec"]["template"]["metadata"]["annotations"]
        for r in (None, {"kind": "containerd", "socketPath": K3S}, {"kind": "docker"})
    }
    assert len({json.dumps(a, sort_keys=True) for a in hashes.values()}) == 3


@pytest.mark.parametrize("kind", ["containerd", "docker", "cri"])
def test_the_agent_with_the_rendered_config_picks_that_socket(kind: str) -> None:
    """The rendered keys make the agent choose the configured socket, by kind, when it exists."""
    # A short directory: a pytest tmp_path may pass the 107 bytes a Unix socket address holds.
    with tempfile.TemporaryDirectory(prefix="rs-", dir="/tmp") as directory:
        path = f"{directory}/{kind}.sock"
        objs = render(spec_with({"kind": kind, "socketPath": path}))
        cfg = parse_config(objs["ConfigMap"])
        assert lifecycle_target(cfg) is None  # auto, nothing there yet: no_runtime_socket, said at start
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path)
            assert lifecycle_target(cfg) == Target(kind, path)


def _own_mount_paths() -> list[str]:
    """Every path the agent pod mounts for itself, native fallback included."""
    spec = spec_with(None)
    spec["agent"]["capabilities"] = ["SYS_PTRACE", "BPF", "PERFMON"]
    container = pod(render(spec))["containers"][0]
    runtime = {"/run/containerd", "/var/run/crio"}
    return sorted(m["mountPath"] for m in container["volumeMounts"] if m["mountPath"] not in runtime)


@pytest.mark.parametrize("mount", _own_mount_paths())
def test_no_socket_path_hides_or_exposes_what_the_agent_mounts_itself(mount: str) -> None:
    for path in (mount, f"{mount}/runtime.sock"):
        with pytest.raises(SpecError) as e:
            parse_observer_spec(spec_with({"kind": "containerd", "socketPath": path}))
        assert e.value.reason == "InvalidSocketPath", path


SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # the ServiceAccount admission's mount


@pytest.mark.parametrize(
    "path",
    [
        f"{SA_TOKEN_DIR}/x.sock",  # the mount would take the token's place (admission skips its own)
        "/var/run/secrets/x.sock",  # a read-only parent: the token's mount point cannot be made
        "/run/secrets/x.sock",  # the same directory in the image (/var/run -> /run)
        "/run/secrets/eks.amazonaws.com/serviceaccount/x.sock",  # projected tokens of cloud identity
    ],
)
def test_no_socket_path_hides_the_pods_service_account_token(path: str) -> None:
    """The agent talks to the API server (ObservationNode, pods) with the token the API server's
    ServiceAccount admission mounts at SA_TOKEN_DIR (the pod automounts it): a runtime mount at or
    above it hides it, or leaves the kubelet no mount point, and the agent pod cannot work."""
    assert pod(render(spec_with(None)))["automountServiceAccountToken"] is True
    with pytest.raises(SpecError) as e:
        parse_observer_spec(spec_with({"kind": "containerd", "socketPath": path}))
    assert e.value.reason == "InvalidSocketPath" and "must not mount" in e.value.message, e.value.message
    assert "/var/run/secrets" in e.value.message


@pytest.mark.parametrize("path", ["/opt/stellaops/x.sock", "/opt/stellaops/venv/run/x.sock"])
def test_no_socket_path_hides_the_agents_own_program(path: str) -> None:
    """The image's virtualenv is /opt/stellaops/venv (scripts/image/build.sh, Containerfile): the
    socket's directory mounted at or above it would hide the agent's program (it could not start)."""
    assert "/opt/stellaops/venv" in (ROOT / "scripts" / "image" / "build.sh").read_text()
    with pytest.raises(SpecError) as e:
        parse_observer_spec(spec_with({"kind": "containerd", "socketPath": path}))
    assert e.value.reason == "InvalidSocketPath" and "/opt/stellaops" in e.value.message, e.value.message


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/", "absolute, normalized"),
        ("relative/containerd.sock", "absolute, normalized"),
        ("/run/containerd/../../etc/shadow", "absolute, normalized"),
        ("/run//containerd.sock", "absolute, normalized"),
        ("/run/./containerd.sock", "absolute, normalized"),
        ("/run/containerd/containerd.sock\x00", "absolute, normalized"),
        ("/containerd.sock", "never directly in /"),
        ("/proc/1/root/run/containerd/containerd.sock", "must not mount"),
        ("/sys/fs/cgroup/x.sock", "must not mount"),
        ("/dev/shm/x.sock", "must not mount"),
        ("/etc/docker/docker.sock", "must not mount"),
        ("/root/x.sock", "must not mount"),
        ("/home/me/.docker/run/docker.sock", "must not mount"),
        ("/usr/lib/x.sock", "must not mount"),
        ("/lib64/x.sock", "must not mount"),
        ("/run/tetragon/tetragon.sock", "must not mount"),
        ("/run/" + "x" * 103, "107 bytes"),
        ("", "absolute, normalized"),  # not the kind's default: the CRD's pattern refuses it too
        ("/run/a\nb/c.sock", "control character"),
        ("/run/a\tb/c.sock", "control character"),
        ("/run/containerd/containerd.sock\n", "control character"),
        ("/run/a\ud800/c.sock", "not valid UTF-8"),  # a lone surrogate (only a JSON escape gives one)
        ("/var/lib/k0s/kubelet/x.sock", "a kubelet's"),  # k0s (its whole /var/lib/k0s is a data root)
        ("/var/snap/microk8s/common/var/lib/kubelet/pods/u/x.sock", "a kubelet's"),
        ("/data/kubelet/x.sock", "a kubelet's"),  # kubelet --root-dir=/data/kubelet
        ("/mnt/k8s/pods/u/volumes/x.sock", "pod data"),  # --root-dir=/mnt/k8s
        ("/var/lib/etcd/x.sock", "data root"),
        ("/var/lib/docker/x.sock", "data root"),
        ("/var/lib/containerd/x.sock", "data root"),
    ],
)
def test_invalid_socket_paths_are_spec_errors(path: str, needle: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_observer_spec(spec_with({"kind": "docker", "socketPath": path}))
    assert e.value.reason == "InvalidSocketPath" and needle in e.value.message, e.value.message
    assert "spec.containerRuntime.socketPath" in e.value.message


def test_a_huge_path_is_refused_with_a_short_message() -> None:
    """Without an API server in front (kmock, a laptop), nothing bounds it: the condition message is."""
    with pytest.raises(SpecError) as e:
        parse_observer_spec(spec_with({"kind": "cri", "socketPath": "/run/" + "a" * 1_000_000}))
    assert e.value.reason == "InvalidSocketPath" and len(e.value.message) < 400, len(e.value.message)
    assert "1000005 characters" in e.value.message


def test_the_crd_says_what_the_operator_checks() -> None:
    crd = load_crd(ROOT / "manifests" / "crds" / "runtimeobservers.yaml")
    prop = served_schema(crd)["properties"]["spec"]["properties"]["containerRuntime"]
    assert prop["required"] == ["kind"] and tuple(prop["properties"]["kind"]["enum"]) == RUNTIME_KINDS
    path = prop["properties"]["socketPath"]
    assert path["pattern"] == SOCKET_PATH_PATTERN and path["maxLength"] == MAX_SOCKET_PATH_BYTES
    rules = [v["rule"] for v in path["x-kubernetes-validations"]]
    assert rules == [
        f"self.matches('{NESTED_PATTERN}')",
        f"size(bytes(self)) <= {MAX_SOCKET_PATH_BYTES}",  # bytes, where maxLength counts characters
        f"!self.matches('{FORBIDDEN_PATTERN}')",
        f"!self.matches('{KUBELET_PATTERN}')",  # the kubelet's pod data (test_crd_cel_real_values)
        f"!self.matches('{DATA_ROOT_PATTERN}')",  # etcd's data, every container's filesystem
    ]


def test_the_docs_describe_the_field() -> None:
    operator = (ROOT / "docs" / "operator.md").read_text()
    assert "| `containerRuntime.kind` |" in operator and "| `containerRuntime.socketPath` |" in operator
    assert "InvalidSocketPath" in operator
    install = (ROOT / "docs" / "install.md").read_text()
    assert "containerRuntime" in install and "/run/k3s/containerd/containerd.sock" in install
    example = yaml.safe_load_all((ROOT / "docs" / "examples" / "runtimeobserver.yaml").read_text())
    assert any(d and d.get("kind") == "RuntimeObserver" for d in example)


def test_an_agent_without_a_socket_points_a_cluster_at_the_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The ObservationNode (what the cluster reads) and the agent's WARNING name spec.containerRuntime:
    in a cluster the agent's lifecycle keys are the operator's to write, not the user's."""
    from stellaops_runtime.agent.lifecycle_part import make_lifecycle
    from stellaops_runtime.agent.observation_status import CONTAINERS_CONDITION, build_status
    from stellaops_runtime.agent.pipeline import Pipeline
    from tests.unit.test_working_source import UP, caps

    status = build_status(
        capabilities=caps(), tetragon=UP, policies=[], existing_conditions=None, now="t1",
        containers="no_runtime_socket",
    )  # fmt: skip
    (cond,) = [c for c in status["conditions"] if c["type"] == CONTAINERS_CONDITION]
    assert (
        cond["reason"] == "NoRuntimeSocket" and "RuntimeObserver's spec.containerRuntime" in cond["message"]
    )
    absent = str(tmp_path / "absent.sock")
    doc = {
        "nodeName": "n1",
        "store": {"url": f"sqlite:///{tmp_path}/hot.db"},
        "lifecycle": {"containerdAddress": absent, "dockerAddress": absent, "criAddresses": [absent]},
    }
    config = parse_config(doc)
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.agent.runtime_target"):
        assert make_lifecycle(config, node_name="n1", pipeline=Pipeline(config, node_name="n1")) is None
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "no runtime socket" in warning and "RuntimeObserver's spec.containerRuntime" in warning, warning


def test_the_daemonset_docs_say_a_store_secret_change_rolls_the_agents() -> None:
    """docs/operator.md said twice that it does not, against render_agent's store-secret-hash and
    test_operator_observer.py::test_a_store_secret_change_rolls_the_agents."""
    text = (ROOT / "docs" / "operator.md").read_text()
    assert "does not roll the agents" not in text and "store Secret does\nnot roll" not in text
    assert "`stellaops.io/store-secret-hash`" in text


@pytest.mark.parametrize(
    "path",
    [
        "/var/lib/x.sock",  # in the parent of the spool and index cache: the socket alone is mounted
        "/var/cache/x.sock",  # in the parent of the BCC header cache
        "/var/run/x.sock",  # beside Tetragon's directory
        "/var/run/tetragon.sock",
        "/run/x.sock",
        "/run/containerd/containerd.sock",
        "/var/lib/kubelet/pod-resources/x.sock",
        "/var/lib/example/agent/containerd/containerd.sock",
        "/opt/x.sock",
        "/a/b",
    ],
)
def test_the_socket_mount_neither_hides_nor_duplicates_another(path: str) -> None:
    """No mount of the pod sits at or under another one (the runtime's would hide the agent's own)."""
    spec = spec_with({"kind": "cri", "socketPath": path})
    spec["agent"]["capabilities"] = ["SYS_PTRACE", "BPF", "PERFMON"]  # every mount of the native fallback
    paths = [m["mountPath"] for m in pod(render(spec))["containers"][0]["volumeMounts"]]
    aliased = [p.removeprefix("/var") if p.startswith("/var/run/") else p for p in paths]  # /var/run -> /run
    for i, a in enumerate(aliased):
        for b in aliased[i + 1 :]:
            assert a != b and not a.startswith(b + "/") and not b.startswith(a + "/"), (a, b)


def test_an_agent_waiting_for_an_absent_docker_socket_is_progressing_not_degraded() -> None:
    """docs/install.md and operator.md: the Socket mount keeps the pod in ContainerCreating where the
    socket is absent; the operator reports no stuck container for it (the RuntimeObserver stays
    Progressing, RollingOut), as for a slow pull."""
    from stellaops_runtime.controller.agent_pods import container_problems

    objs = render(spec_with({"kind": "docker"}))
    assert runtime_mounts(objs) == {"/var/run/docker.sock": ("runtime-socket", "Socket", True)}
    waiting = {"name": "agent", "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}
    pod_obj = {
        "metadata": {"name": "a"},
        "spec": {"nodeName": "n1"},
        "status": {"containerStatuses": [waiting]},
    }
    assert container_problems(pod_obj) == ()
    for doc in ("install.md", "operator.md"):
        text = " ".join((ROOT / "docs" / doc).read_text().split())
        assert "`ContainerCreating`" in text and "`FailedMount`" in text and "Progressing" in text, doc
        assert 'message adds "an agent whose node has no ' in text, doc  # test_operator_runtime_socket


@pytest.mark.parametrize("path", ["/var/lib/docker/x.sock", "/data/kubelet/x.sock", "/var/lib/k0s/x/c.sock"])
def test_rendering_refuses_a_socket_the_checks_refuse(path: str) -> None:
    """A spec that did not come through parse_observer_spec (built in code, a later bug) is not
    rendered into a mount of a kubelet's or a data root's directory: the rule holds at rendering too."""
    spec = parse_observer_spec(spec_with({"kind": "containerd", "socketPath": "/run/k0s/containerd.sock"}))
    assert spec.container_runtime is not None
    bad = spec.model_copy(
        update={"container_runtime": spec.container_runtime.model_copy(update={"socket_path": path})}
    )
    with pytest.raises(SpecError) as e:
        render_agent_objects(name="default", uid="u-1", namespace="stellaops-agent", spec=bad)
    assert e.value.reason == "InvalidSocketPath" and path in e.value.message


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        (("pods", "plugins", "pki"), "kubelet"),  # a kubelet --root-dir of any name, the socket in it
        (("pods", "pod-resources"), "kubelet"),
        (("member",), "etcd"),
        (("overlay2", "containers"), "Docker"),
        (("containers", "image", "volumes"), "Docker"),
        (("io.containerd.snapshotter.v1.overlayfs",), "containerd"),
        (("overlay-containers",), "Podman"),
    ],
)
def test_the_agent_refuses_a_socket_whose_directory_is_a_data_root(
    entries: tuple[str, ...], needle: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No path rule knows a kubelet root-dir, or a data root, by another name: the agent sees the
    directory mounted for its socket and does not watch a runtime through one that holds such data
    (no_runtime_socket: no window above ActiveTracing), and says why."""
    with tempfile.TemporaryDirectory(prefix="rs-", dir="/tmp") as directory:
        path = f"{directory}/c.sock"
        cfg = parse_config(render(spec_with({"kind": "containerd", "socketPath": path}))["ConfigMap"])
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path)
            assert lifecycle_target(cfg) == Target("containerd", path)  # a directory of its own
            for name in entries:
                os.mkdir(f"{directory}/{name}")
            with caplog.at_level(logging.ERROR, logger="stellaops_runtime.agent.runtime_target"):
                assert lifecycle_target(cfg) is None
    assert needle in caplog.text and path in caplog.text


def test_the_agent_refuses_a_socket_path_the_rule_refuses(caplog: pytest.LogCaptureFixture) -> None:
    """An agent config written by hand (no operator in front) naming a data root's socket: refused."""
    with tempfile.TemporaryDirectory(prefix="rs-", dir="/tmp") as directory:
        os.makedirs(f"{directory}/var/lib/docker")
        path = f"{directory}/var/lib/docker/d.sock"
        cfg = parse_config({"lifecycle": {"runtime": "docker", "dockerAddress": path}})
        with socket.socket(socket.AF_UNIX) as s, caplog.at_level(logging.ERROR):
            s.bind(path)
            assert lifecycle_target(cfg) is None
    assert "data root" in caplog.text


@pytest.mark.parametrize(
    ("child", "entries", "needle"),
    [
        ("kl", ("pods", "plugins", "pki"), "kubelet"),  # a kubelet --root-dir of any name beside the socket
        ("etcd-data", ("member",), "etcd"),
        ("docker-root", ("containers", "image", "volumes", "overlay2"), "Docker"),
        ("ctd-root", ("io.containerd.content.v1.content", "io.containerd.metadata.v1.bolt"), "containerd"),
        ("storage", ("overlay-containers", "overlay-images"), "Podman"),
    ],
)
def test_the_agent_refuses_a_socket_whose_directory_holds_a_data_root(
    child: str, entries: tuple[str, ...], needle: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The directory mounted for the socket shows the agent its subdirectories too: one that holds
    a kubelet root-dir or a data root (/opt/k8s/containerd.sock beside /opt/k8s/kl/pods) hands the
    agent that data as surely as the root-dir itself, whatever the names."""
    with tempfile.TemporaryDirectory(prefix="rs-", dir="/tmp") as directory:
        path = f"{directory}/c.sock"
        cfg = parse_config(render(spec_with({"kind": "containerd", "socketPath": path}))["ConfigMap"])
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path)
            for name in entries:
                os.makedirs(f"{directory}/{child}/{name}")
            with caplog.at_level(logging.ERROR, logger="stellaops_runtime.agent.runtime_target"):
                assert lifecycle_target(cfg) is None
    assert needle in caplog.text and child in caplog.text


@pytest.mark.parametrize(
    "layout",
    [
        # containerd's state directory (/run/containerd, k3s's /run/k3s/containerd) with its CRI plugin
        ("io.containerd.grpc.v1.cri/containers", "io.containerd.grpc.v1.cri/sandboxes",
         "io.containerd.runtime.v2.task/k8s.io", "io.containerd.runtime.v1.linux/moby", "runc/k8s.io",
         "s", "fifo"),
        # Docker's exec root (/var/run/docker) and CRI-O's (/var/run/crio)
        ("containerd/daemon", "netns", "plugins", "runtime-runc/moby", "swarm", "libnetwork"),
        ("exits", "crio", "version"),
    ],
)  # fmt: skip
def test_a_runtime_state_directory_is_not_taken_for_a_data_root(layout: tuple[str, ...]) -> None:
    """What the usual socket directories hold, one level down included, is no data root."""
    with tempfile.TemporaryDirectory(prefix="rs-", dir="/tmp") as directory:
        path = f"{directory}/c.sock"
        cfg = parse_config(render(spec_with({"kind": "containerd", "socketPath": path}))["ConfigMap"])
        for name in layout:
            os.makedirs(f"{directory}/{name}")
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path)
            assert lifecycle_target(cfg) == Target("containerd", path)
