"""A small async client of the Kubernetes CRI (``runtime.v1``) over a runtime's unix socket.

Only what the CRI lifecycle observer needs: the runtime's version, the lists
of pod sandboxes and containers, their (verbose) statuses, an image's status
and the ``GetContainerEvents`` stream (cri-api v0.26+: containerd 1.7,
CRI-O 1.26). Methods are called by their full gRPC path with our own message
classes (:mod:`stellaops_runtime.wire.cri`). The event stream hands back raw
bytes: decoding them belongs to the observer, which counts what does not
decode instead of raising. A runtime that does not implement the stream
answers it with ``UNIMPLEMENTED`` (containerd 1.6); the observer then relists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from stellaops_runtime import rpc
from stellaops_runtime.lifecycle.containerd_client import CHANNEL_OPTIONS, target_of
from stellaops_runtime.wire.cri import api_pb2

DEFAULT_ADDRESSES = ("/run/containerd/containerd.sock", "/var/run/crio/crio.sock")
CRI_API_VERSION = "v1"

_RUNTIME = "/runtime.v1.RuntimeService/"
VERSION = _RUNTIME + "Version"
LIST_SANDBOXES = _RUNTIME + "ListPodSandbox"
SANDBOX_STATUS = _RUNTIME + "PodSandboxStatus"
LIST_CONTAINERS = _RUNTIME + "ListContainers"
CONTAINER_STATUS = _RUNTIME + "ContainerStatus"
CONTAINER_EVENTS = _RUNTIME + "GetContainerEvents"
IMAGE_STATUS = "/runtime.v1.ImageService/ImageStatus"


class CriClient:
    """One channel to a CRI runtime (containerd's CRI plugin, CRI-O ...)."""

    def __init__(self, address: str = DEFAULT_ADDRESSES[0], *, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel: rpc.Channel | None = None

    def _ch(self) -> rpc.Channel:
        if self._channel is None:
            self._channel = rpc.insecure_channel(target_of(self.address), CHANNEL_OPTIONS)
        return self._channel

    async def _unary(self, path: str, request: object, response: type) -> object:
        return await self._ch().unary_unary(
            path,
            request_serializer=type(request).SerializeToString,  # type: ignore[attr-defined]
            response_deserializer=response.FromString,  # type: ignore[attr-defined]
        )(request, timeout=self.timeout)

    async def connect(self) -> api_pb2.VersionResponse:
        """Wait until the socket answers and return the runtime's Version; ConnectionError otherwise."""
        try:
            await asyncio.wait_for(self._ch().channel_ready(), self.timeout)
        except TimeoutError:
            raise ConnectionError(
                f"no connection to the CRI at {self.address} within {self.timeout}s"
            ) from None
        return await self.version()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def version(self) -> api_pb2.VersionResponse:
        resp = await self._unary(
            VERSION, api_pb2.VersionRequest(version=CRI_API_VERSION), api_pb2.VersionResponse
        )
        assert isinstance(resp, api_pb2.VersionResponse)
        return resp

    async def list_sandboxes(self) -> list[api_pb2.PodSandbox]:
        resp = await self._unary(
            LIST_SANDBOXES, api_pb2.ListPodSandboxRequest(), api_pb2.ListPodSandboxResponse
        )
        assert isinstance(resp, api_pb2.ListPodSandboxResponse)
        return list(resp.items)

    async def list_containers(self) -> list[api_pb2.Container]:
        resp = await self._unary(
            LIST_CONTAINERS, api_pb2.ListContainersRequest(), api_pb2.ListContainersResponse
        )
        assert isinstance(resp, api_pb2.ListContainersResponse)
        return list(resp.containers)

    async def container_status(self, container_id: str) -> api_pb2.ContainerStatusResponse | None:
        """The container's verbose status (``info`` holds the runtime's JSON), or None when it is gone."""
        req = api_pb2.ContainerStatusRequest(container_id=container_id, verbose=True)
        try:
            resp = await self._unary(CONTAINER_STATUS, req, api_pb2.ContainerStatusResponse)
        except rpc.RpcError as e:
            if e.code() == rpc.StatusCode.NOT_FOUND:
                return None
            raise
        assert isinstance(resp, api_pb2.ContainerStatusResponse)
        return resp

    async def sandbox_status(self, sandbox_id: str) -> api_pb2.PodSandboxStatusResponse | None:
        """The sandbox's verbose status, or None when it is gone."""
        req = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True)
        try:
            resp = await self._unary(SANDBOX_STATUS, req, api_pb2.PodSandboxStatusResponse)
        except rpc.RpcError as e:
            if e.code() == rpc.StatusCode.NOT_FOUND:
                return None
            raise
        assert isinstance(resp, api_pb2.PodSandboxStatusResponse)
        return resp

    async def image_repo_digests(self, image: str) -> list[str]:
        """The ``repo@sha256:...`` references of an image (by name or id); [] when the runtime lacks it."""
        if not image:
            return []
        req = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image))
        try:
            resp = await self._unary(IMAGE_STATUS, req, api_pb2.ImageStatusResponse)
        except rpc.RpcError as e:
            if e.code() == rpc.StatusCode.NOT_FOUND:
                return []
            raise
        assert isinstance(resp, api_pb2.ImageStatusResponse)
        return list(resp.image.repo_digests) if resp.HasField("image") else []

    async def container_events(self) -> AsyncGenerator[bytes, None]:
        """Serialized ``ContainerEventResponse`` messages as the runtime sends them.

        Raises :class:`stellaops_runtime.rpc.RpcError` (``UNIMPLEMENTED`` on runtimes without the stream)."""
        call = self._ch().unary_stream(
            CONTAINER_EVENTS,
            request_serializer=api_pb2.GetEventsRequest.SerializeToString,
            response_deserializer=None,
        )(api_pb2.GetEventsRequest())
        try:
            async for raw in call:
                yield raw
        finally:
            call.cancel()
