"""spec.tetragon.address rendered into the agent pod: the socket's directory is mounted where it says.

Before, the pod mounted only the node's ``/var/run/tetragon`` whatever the
address said, so a Tetragon listening elsewhere (a Helm ``tetragon.grpc.address``
changed to ``/var/run/cilium/tetragon``, where Tetragon keeps its export files, a distribution's own
path) was unreachable from every agent, with no fix in the CRD
(contracts/tetragon_socket.py, controller/render_agent.py).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crds import SpecError, parse_observer_spec
from stellaops_runtime.controller.agent_config import AGENT_CONFIG_KEY
from stellaops_runtime.controller.render_agent import render_agent_objects

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = {
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}
# What the pod had for Tetragon before the mount followed the address (kept byte for byte).
TODAY_MOUNT = {"name": "tetragon", "mountPath": "/var/run/tetragon", "readOnly": True}
TODAY_VOLUME = {"name": "tetragon", "hostPath": {"path": "/var/run/tetragon", "type": "DirectoryOrCreate"}}


def spec_with(
    address: str | None, runtime: dict[str, Any] | None = None, native: bool = False
) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    if address is not None:
        spec["tetragon"] = {"address": address}
    if runtime is not None:
        spec["containerRuntime"] = runtime
    if native:  # every mount of the native fallback too
        spec["agent"]["capabilities"] = ["SYS_PTRACE", "BPF", "PERFMON"]
    return spec


def pod(spec: dict[str, Any]) -> dict[str, Any]:
    objs = render_agent_objects(
        name="default", uid="u-1", namespace="stellaops-agent", spec=parse_observer_spec(spec)
    )
    (ds,) = [o for o in objs if o["kind"] == "DaemonSet"]
    return dict(ds["spec"]["template"]["spec"])


def tetragon(pod_spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    (mount,) = [m for m in pod_spec["containers"][0]["volumeMounts"] if m["name"] == "tetragon"]
    (volume,) = [v for v in pod_spec["volumes"] if v["name"] == "tetragon"]
    return mount, volume


@pytest.mark.parametrize(
    "address",
    [
        None,  # the default, unix:///var/run/tetragon/tetragon.sock
        "unix:///var/run/tetragon/tetragon.sock",
        "unix:///run/tetragon/tetragon.sock",  # the same directory (/var/run is /run)
        "unix:///var/run/tetragon/grpc/tetragon.sock",
        "unix:///var/run/tetragon//tetragon.sock",  # accepted before, in the same directory
        "localhost:54321",  # TCP: nothing to mount, the mount is left as it was
        "10.0.0.1:54321",
    ],
)
def test_the_usual_directory_and_tcp_keep_todays_mount_byte_for_byte(address: str | None) -> None:
    spec = pod(spec_with(address))
    assert tetragon(spec) == (TODAY_MOUNT, TODAY_VOLUME)
    mounts = spec["containers"][0]["volumeMounts"]
    assert [m["name"] for m in mounts][:4] == ["config", "probes", "tetragon", "containerd"]  # same place


@pytest.mark.parametrize(
    ("address", "directory"),
    [
        ("unix:///var/run/cilium/tetragon/tetragon.sock", "/var/run/cilium/tetragon"),  # beside its export
        ("unix:///run/tetragon-agent/tetragon.sock", "/run/tetragon-agent"),
        ("unix:///opt/tetragon/run/tetragon.sock", "/opt/tetragon/run"),
        ("unix:///var/lib/tetragon/tetragon.sock", "/var/lib/tetragon"),
    ],
)
def test_a_socket_elsewhere_has_its_directory_mounted_read_only(address: str, directory: str) -> None:
    spec = pod(spec_with(address))
    mount, volume = tetragon(spec)
    assert mount == {"name": "tetragon", "mountPath": directory, "readOnly": True}
    # DirectoryOrCreate: a node without Tetragon still starts its agent (its native fallback)
    assert volume == {"name": "tetragon", "hostPath": {"path": directory, "type": "DirectoryOrCreate"}}
    paths = [v.get("hostPath", {}).get("path") for v in spec["volumes"]]
    assert "/var/run/tetragon" not in paths  # the usual directory is not mounted for nothing
    objs = render_agent_objects(
        name="default", uid="u-1", namespace="stellaops-agent", spec=parse_observer_spec(spec_with(address))
    )
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"]
    assert json.loads(cm["data"][AGENT_CONFIG_KEY])["tetragon"]["address"] == address
    assert parse_config(cm).tetragon.address == address  # the agent dials the path it now sees


def test_a_changed_address_rolls_the_agents() -> None:
    def annotations(address: str | None) -> dict[str, str]:
        objs = render_agent_objects(
            name="default",
            uid="u-1",
            namespace="stellaops-agent",
            spec=parse_observer_spec(spec_with(address)),
        )
        (ds,) = [o for o in objs if o["kind"] == "DaemonSet"]
        return dict(ds["spec"]["template"]["metadata"]["annotations"])

    assert annotations(None) != annotations("unix:///var/run/cilium/tetragon/tetragon.sock")


@pytest.mark.parametrize(
    ("address", "runtime", "needle"),
    [
        # shared by the node: not mounted whole, and a socket mounted alone would go stale on a restart
        ("unix:///run/tetragon.sock", None, "shared by the node"),
        ("unix:///var/run/tetragon.sock", None, "shared by the node"),
        ("unix:///tmp/tetragon.sock", None, "shared by the node"),
        ("unix:///var/tetragon.sock", None, "shared by the node"),
        ("unix:///var/lib/kubelet/tetragon.sock", None, "a kubelet's"),
        ("unix:///var/lib/kubelet/pods/u/tetragon.sock", None, "a kubelet's pod data"),
        ("unix:///var/snap/microk8s/common/var/lib/kubelet/t.sock", None, "a kubelet's"),
        ("unix:///srv/kubelet/pods/u/t.sock", None, "a kubelet's pod data"),
        ("unix:///var/lib/k0s/run/t.sock", None, "data root"),
        ("unix:///var/lib/etcd/t/t.sock", None, "data root"),
        ("unix:///opt/tetragon.sock", None, "shared by the node"),
        # the container runtime's mounts: the same directory, one inside or around the other
        ("unix:///run/containerd/tetragon.sock", None, "container runtime's mount '/run/containerd'"),
        ("unix:///var/run/containerd/t/tetragon.sock", None, "container runtime's mount '/run/containerd'"),
        ("unix:///var/run/crio/tetragon.sock", None, "container runtime's mount '/var/run/crio'"),
        ("unix:///run/crio/tetragon.sock", None, "container runtime's mount '/var/run/crio'"),
        (
            "unix:///run/k3s/tetragon.sock",
            {"kind": "containerd", "socketPath": "/run/k3s/containerd/c.sock"},
            "'/run/k3s/containerd'",
        ),
        (
            "unix:///run/k3s/containerd/t.sock",
            {"kind": "containerd", "socketPath": "/run/k3s/containerd/c.sock"},
            "'/run/k3s/containerd'",
        ),
        (
            "unix:///run/k3s/containerd/x/t.sock",
            {"kind": "containerd", "socketPath": "/run/k3s/containerd/c.sock"},
            "'/run/k3s/containerd'",
        ),
        # the rules of spec.containerRuntime's socket
        ("unix:///etc/tetragon/tetragon.sock", None, "must not mount"),
        ("unix:///var/lib/stellaops-runtime/t/tetragon.sock", None, "must not mount"),
        ("unix:///var/run/secrets/t/tetragon.sock", None, "must not mount"),
        ("unix:///opt/stellaops/t/tetragon.sock", None, "must not mount"),
        ("unix:///sys/fs/t.sock", None, "must not mount"),
        ("unix:///var/run/tetragon/../docker.sock", None, "normalized"),
        ("unix:///opt/t/../t.sock", None, "normalized"),
        ("unix:///opt/t/\nx.sock", None, "control character"),
        ("unix:///tetragon.sock", None, "never directly in /"),
        # gRPC reads the target as a URI: the agent would dial another path than the one mounted
        ("unix:///opt/t%41/tetragon.sock", None, "URI escape"),
        ("unix:///opt/t?x/tetragon.sock", None, "URI escape"),
        ("unix:///opt/t#x/tetragon.sock", None, "URI escape"),
        ("unix:///opt/tetragon/" + "x" * 100 + ".sock", None, "107 bytes"),
    ],
)
def test_a_socket_the_pod_must_not_mount_is_refused(
    address: str, runtime: dict[str, Any] | None, needle: str
) -> None:
    with pytest.raises(SpecError) as e:
        parse_observer_spec(spec_with(address, runtime))
    assert e.value.reason == "InvalidSocketPath"
    assert str(e.value).count("spec.tetragon.address") == 1 and needle in str(e.value), str(e.value)


def test_a_huge_address_gives_a_short_message() -> None:
    with pytest.raises(SpecError) as e:
        parse_observer_spec(spec_with("unix:///opt/tetragon/" + "x" * 1_000_000))
    assert e.value.reason == "InvalidSocketPath" and len(str(e.value)) < 600


@pytest.mark.parametrize(
    "address",
    [
        "unix:///var/run/cilium/tetragon/tetragon.sock",
        "unix:///run/cilium/tetragon/tetragon.sock",
        "unix:///var/lib/tetragon/tetragon.sock",
        "unix:///var/cache/tetragon/tetragon.sock",
        "unix:///run/user/0/tetragon.sock",
        "unix:///opt/tetragon/tetragon.sock",
        "unix:///var/run/tetragon/tetragon.sock",
    ],
)
@pytest.mark.parametrize(
    "runtime",
    [
        None,
        {"kind": "docker"},
        {"kind": "cri"},
        {"kind": "containerd", "socketPath": "/run/k3s/containerd/c.sock"},
    ],
)
def test_the_tetragon_mount_neither_hides_nor_duplicates_another(
    address: str, runtime: dict[str, Any] | None
) -> None:
    """No mount of the pod sits at or under another one, native fallback and runtime socket included."""
    spec = pod(spec_with(address, runtime, native=True))
    paths = [m["mountPath"] for m in spec["containers"][0]["volumeMounts"]]
    aliased = [p.removeprefix("/var") if p.startswith("/var/run/") else p for p in paths]  # /var/run -> /run
    for i, a in enumerate(aliased):
        for b in aliased[i + 1 :]:
            assert a != b and not a.startswith(b + "/") and not b.startswith(a + "/"), (a, b)


def _own_mount_paths() -> list[str]:
    spec = pod(spec_with(None, native=True))
    tetragon_and_runtime = {"/var/run/tetragon", "/run/containerd", "/var/run/crio"}
    return sorted(
        m["mountPath"]
        for m in spec["containers"][0]["volumeMounts"]
        if m["mountPath"] not in tetragon_and_runtime
    )


@pytest.mark.parametrize("mount", _own_mount_paths())
def test_no_address_hides_or_exposes_what_the_agent_mounts_itself(mount: str) -> None:
    for path in (f"{mount}/tetragon.sock", f"{mount}/x/tetragon.sock"):
        with pytest.raises(SpecError) as e:
            parse_observer_spec(spec_with(f"unix://{path}"))
        assert e.value.reason == "InvalidSocketPath", path


def test_the_docs_say_the_mount_follows_the_address() -> None:
    operator = " ".join((ROOT / "docs" / "operator.md").read_text().split())
    install = " ".join((ROOT / "docs" / "install.md").read_text().split())
    assert "mounts only the node's `/var/run/tetragon`" not in operator
    assert "the agent pod mounts that socket's directory" in operator
    assert "Tetragon makes its socket again when it restarts" in operator
    assert "`tetragon.grpc.address`" in install and "`spec.tetragon.address`" in install


@pytest.mark.parametrize(
    ("written", "read"),
    [("t%41/x.sock", "tA/x.sock"), ("t?q/x.sock", "t"), ("t#f/x.sock", "t")],
)
async def test_grpc_reads_a_unix_address_as_a_uri(written: str, read: str) -> None:
    """Why a '%', '?' or '#' is refused: the agent's gRPC client (stellaops_runtime.rpc, as grpcio)
    dials ``unix:///d/t%41/x.sock`` at ``/d/tA/x.sock`` (percent-decoded) and ends the path at a
    '?' or '#' (a query, a fragment), not at the path Tetragon listens on as written."""
    import shutil
    import socket
    import tempfile

    from tests.unit.test_runtime_socket_target import dialled

    root = Path(tempfile.mkdtemp(prefix="stellaops-tg-", dir="/tmp"))  # short: a socket address
    try:
        for path in (written, read):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
        with socket.socket(socket.AF_UNIX) as s, socket.socket(socket.AF_UNIX) as as_written:
            s.bind(str(root / read))
            s.listen(1)
            as_written.bind(str(root / written))
            as_written.listen(1)
            assert await dialled(f"unix://{root}/{written}", s, as_written) == 0  # the path as read
        with pytest.raises(SpecError) as e:
            parse_observer_spec(spec_with(f"unix:///opt/{written}"))
        assert e.value.reason == "InvalidSocketPath"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("directory", ["/opt/t", "/var/run/tetragon"])
def test_every_address_the_operator_takes_is_dialled_at_the_path_as_written(directory: str) -> None:
    """The operator's refusals and the agent's client agree: with any printable ASCII character in
    the path (an unusual directory's rules and the usual directory's), an address the operator
    takes is one the agent's client (rpc/target.py) reads as the path Tetragon listens on; and
    every character that client does not read literally is refused."""
    from stellaops_runtime.rpc.target import parse_target

    read_otherwise = set()
    for c in map(chr, range(0x20, 0x7F)):
        path = f"{directory}/a{c}b%41/tetragon.sock" if c == "%" else f"{directory}/a{c}b/tetragon.sock"
        address = f"unix://{path}"
        if parse_target(address).unix != path:
            read_otherwise.add(c)
        try:
            parse_observer_spec(spec_with(address))
        except SpecError as e:
            assert e.reason == "InvalidSocketPath", (c, e)
            continue
        assert parse_target(address).unix == path, c
    assert read_otherwise == {"%", "?", "#"}


@pytest.mark.parametrize("path", ["/var/lib/etcd/t/t.sock", "/srv/kubelet/pods/u/t.sock", "/proc/1/t.sock"])
def test_rendering_refuses_an_address_the_checks_refuse(path: str) -> None:
    """A spec that did not come through parse_observer_spec is not rendered into a mount of the
    directory of a Tetragon socket the checks refuse (a kubelet's pod data, a data root)."""
    spec = parse_observer_spec(spec_with("unix:///var/run/cilium/tetragon/tetragon.sock"))
    bad = spec.model_copy(update={"tetragon": spec.tetragon.model_copy(update={"address": f"unix://{path}"})})
    with pytest.raises(SpecError) as e:
        render_agent_objects(name="default", uid="u-1", namespace="stellaops-agent", spec=bad)
    assert e.value.reason == "InvalidSocketPath" and path in e.value.message
