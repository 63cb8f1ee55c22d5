"""A private containerd with its CRI plugin on, and a small synchronous CRI driver for the tests.

``CriContainerd`` is the lifecycle tests' private containerd
(tests/containerd_harness.py: own root, state and socket in a temporary
directory, killable and restartable) with ``io.containerd.grpc.v1.cri``
enabled: the pod sandbox image is one built in the test (the static program
sleeping), CNI points at empty directories of its own, and every pod the tests
run uses the node's network (``NamespaceOption.network = NODE``), for which
the CRI plugin needs no CNI at all. Images are imported with ``ctr`` into
``k8s.io`` and also named ``repo@sha256:<manifest>``, as a pull through the
CRI names them, so the CRI reports their repo digest.

``CriDriver`` plays kubelet: RunPodSandbox, CreateContainer (with kubelet's
pod labels), StartContainer, StopContainer, RemoveContainer, StopPodSandbox,
RemovePodSandbox, over a blocking gRPC channel with our own messages.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from stellaops_runtime.lifecycle.cri_client import CONTAINER_STATUS, IMAGE_STATUS
from stellaops_runtime.wire.cri import api_pb2
from tests.containerd_harness import SETUP_HINT, Containerd, Image, available, build_image

PAUSE_REF = "test.local/cri-pause:1"
_RT = "/runtime.v1.RuntimeService/"


class CriContainerd(Containerd):
    """A private containerd whose CRI plugin serves on its socket (see the module docstring)."""

    def _config(self, address: str) -> Path:
        cni_bin, cni_conf = self.dir / "cni-bin", self.dir / "cni-conf"
        cni_bin.mkdir(exist_ok=True)
        cni_conf.mkdir(exist_ok=True)
        path = self.dir / "config.toml"
        path.write_text(
            "version = 2\n"
            f'root = "{self.root}"\n'
            f'state = "{self.state}"\n'
            "[grpc]\n"
            f'  address = "{address}"\n'
            "[ttrpc]\n"
            f'  address = "{address}.ttrpc"\n'
            '[plugins."io.containerd.grpc.v1.cri"]\n'
            f'  sandbox_image = "{PAUSE_REF}"\n'
            '  stream_server_address = "127.0.0.1"\n'
            '  stream_server_port = "0"\n'
            # No CAP_SYS_RESOURCE here (nor in CI's container): the plugin must not lower oom_score_adj.
            "  restrict_oom_score_adj = true\n"
            '  [plugins."io.containerd.grpc.v1.cri".cni]\n'
            f'    bin_dir = "{cni_bin}"\n'
            f'    conf_dir = "{cni_conf}"\n'
        )
        return path

    def import_cri_image(self, image: Image) -> None:
        """Import ``image`` and name it by its manifest digest too (what a CRI pull leaves behind)."""
        self.import_image(image)
        repo = image.ref.rsplit(":", 1)[0]
        self.ctr("images", "tag", "--force", image.ref, f"{repo}@{image.manifest_digest}")

    def remove_all(self) -> None:
        """Remove every pod through the CRI first (so its plugin lets go of them), then what is left."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                driver = CriDriver(self.address)
                for sb in driver.list_sandboxes():
                    driver.stop_pod(sb.id)
                    driver.remove_pod(sb.id)
                driver.close()
            except grpc.RpcError:
                pass
        super().remove_all()


@dataclass
class Pod:
    sandbox_id: str
    name: str
    namespace: str
    uid: str
    config: api_pb2.PodSandboxConfig


class CriDriver:
    """Blocking CRI calls the way kubelet makes them (what the tests do to the runtime)."""

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, request: object, response: type) -> object:
        return self.channel.unary_unary(
            method if method.startswith("/") else _RT + method,
            request_serializer=type(request).SerializeToString,  # type: ignore[attr-defined]
            response_deserializer=response.FromString,  # type: ignore[attr-defined]
        )(request, timeout=self.timeout)

    def run_pod(
        self,
        name: str,
        namespace: str = "default",
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Pod:
        uid = str(uuid.uuid4())
        host = api_pb2.NamespaceOption(network=api_pb2.NODE)
        config = api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            labels={
                "io.kubernetes.pod.name": name,
                "io.kubernetes.pod.namespace": namespace,
                "io.kubernetes.pod.uid": uid,
                **(labels or {}),
            },
            annotations=annotations or {},
            linux=api_pb2.LinuxPodSandboxConfig(
                security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=host)
            ),
        )
        resp = self.call(
            "RunPodSandbox", api_pb2.RunPodSandboxRequest(config=config), api_pb2.RunPodSandboxResponse
        )
        assert isinstance(resp, api_pb2.RunPodSandboxResponse)
        return Pod(resp.pod_sandbox_id, name, namespace, uid, config)

    def create(
        self,
        pod: Pod,
        name: str,
        image: str,
        args: list[str],
        env: dict[str, str] | None = None,
        memory_limit: int = 0,
        labels: dict[str, str] | None = None,
    ) -> str:
        host = api_pb2.NamespaceOption(network=api_pb2.NODE)
        config = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=name, attempt=0),
            image=api_pb2.ImageSpec(image=image),
            args=args,
            envs=[api_pb2.KeyValue(key=k, value=v.encode()) for k, v in (env or {}).items()],
            labels={  # kubelet's labels on every container of a pod
                "io.kubernetes.container.name": name,
                "io.kubernetes.pod.name": pod.name,
                "io.kubernetes.pod.namespace": pod.namespace,
                "io.kubernetes.pod.uid": pod.uid,
                **(labels or {}),
            },
            linux=api_pb2.LinuxContainerConfig(
                resources=api_pb2.LinuxContainerResources(memory_limit_in_bytes=memory_limit),
                security_context=api_pb2.LinuxContainerSecurityContext(namespace_options=host),
            ),
        )
        req = api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod.sandbox_id, config=config, sandbox_config=pod.config
        )
        resp = self.call("CreateContainer", req, api_pb2.CreateContainerResponse)
        assert isinstance(resp, api_pb2.CreateContainerResponse)
        return resp.container_id

    def start(self, cid: str) -> None:
        self.call(
            "StartContainer", api_pb2.StartContainerRequest(container_id=cid), api_pb2.StartContainerResponse
        )

    def stop(self, cid: str, timeout: int = 0) -> None:
        req = api_pb2.StopContainerRequest(container_id=cid, timeout=timeout)
        self.call("StopContainer", req, api_pb2.StopContainerResponse)

    def remove(self, cid: str) -> None:
        self.call(
            "RemoveContainer",
            api_pb2.RemoveContainerRequest(container_id=cid),
            api_pb2.RemoveContainerResponse,
        )

    def stop_pod(self, sandbox_id: str) -> None:
        req = api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)
        self.call("StopPodSandbox", req, api_pb2.StopPodSandboxResponse)

    def remove_pod(self, sandbox_id: str) -> None:
        req = api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id)
        self.call("RemovePodSandbox", req, api_pb2.RemovePodSandboxResponse)

    def list_sandboxes(self) -> list[api_pb2.PodSandbox]:
        resp = self.call("ListPodSandbox", api_pb2.ListPodSandboxRequest(), api_pb2.ListPodSandboxResponse)
        assert isinstance(resp, api_pb2.ListPodSandboxResponse)
        return list(resp.items)

    def status(self, cid: str) -> api_pb2.ContainerStatusResponse:
        req = api_pb2.ContainerStatusRequest(container_id=cid, verbose=True)
        resp = self.call(CONTAINER_STATUS, req, api_pb2.ContainerStatusResponse)
        assert isinstance(resp, api_pb2.ContainerStatusResponse)
        return resp

    def wait_image(self, ref: str, timeout: float = 20.0) -> None:
        """Until the CRI plugin's image store has ``ref`` (it learns of imports from containerd's events)."""
        deadline = time.monotonic() + timeout
        req = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref))
        while True:
            resp = self.call(IMAGE_STATUS, req, api_pb2.ImageStatusResponse)
            assert isinstance(resp, api_pb2.ImageStatusResponse)
            if resp.HasField("image") and resp.image.id:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the CRI plugin never listed image {ref} within {timeout}s")
            time.sleep(0.05)

    def wait_state(self, cid: str, state: int, timeout: float = 20.0) -> api_pb2.ContainerStatus:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(cid).status
            if st.state == state:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"container {cid} not in state {state} within {timeout}s: {st}")
            time.sleep(0.05)


@dataclass
class CriSetup:
    containerd: CriContainerd
    driver: CriDriver
    image: Image


def running(directory: Path) -> Iterator[CriSetup]:
    """A started CRI containerd with the test image and the pause image imported (module fixtures)."""
    if not available():
        import pytest

        pytest.fail(SETUP_HINT, pytrace=False)
    c = CriContainerd()
    try:
        c.start()
        image = build_image(directory, ref="test.local/cri-app:1")
        c.import_cri_image(build_image(directory, ref=PAUSE_REF, env=("ROLE=pause",)))
        c.import_cri_image(image)
        driver = CriDriver(c.socket)
        driver.wait_image(PAUSE_REF)
        driver.wait_image(image.ref)
        try:
            yield CriSetup(c, driver, image)
        finally:
            driver.close()
    finally:
        c.teardown()
