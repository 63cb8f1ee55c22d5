"""A small async client of containerd's gRPC API over its unix socket.

Only what the lifecycle observer needs: subscribe to the event service, list
and get containers, list and get tasks, get an image. Methods are called by
their full gRPC path with our own message classes
(:mod:`stellaops_runtime.wire.containerd`), and every call carries the
``containerd-namespace`` metadata header that containerd uses to pick the
namespace (``k8s.io`` for Kubernetes' CRI plugin). Subscribe hands back raw
envelope bytes: decoding belongs to :mod:`stellaops_runtime.lifecycle.decode`,
which never raises on what an untrusted publisher put on the bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import datetime
from urllib.parse import quote

from google.protobuf.message import DecodeError

from stellaops_runtime import rpc
from stellaops_runtime.lifecycle.decode import timestamp_of
from stellaops_runtime.lifecycle.image_config import (
    MAX_BLOB,
    config_digest,
    host_arch,
    is_index,
    pick_manifest,
)
from stellaops_runtime.wire.containerd import (
    containers_pb2,
    content_pb2,
    events_service_pb2,
    images_pb2,
    namespaces_pb2,
    task_pb2,
    tasks_pb2,
    types_pb2,
)

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_NAMESPACE = "k8s.io"
NAMESPACE_HEADER = "containerd-namespace"

SUBSCRIBE = "/containerd.services.events.v1.Events/Subscribe"
PUBLISH = "/containerd.services.events.v1.Events/Publish"
CONTAINERS_LIST = "/containerd.services.containers.v1.Containers/List"
CONTAINERS_GET = "/containerd.services.containers.v1.Containers/Get"
TASKS_LIST = "/containerd.services.tasks.v1.Tasks/List"
TASKS_GET = "/containerd.services.tasks.v1.Tasks/Get"
IMAGES_GET = "/containerd.services.images.v1.Images/Get"
IMAGES_LIST = "/containerd.services.images.v1.Images/List"
NAMESPACES_LIST = "/containerd.services.namespaces.v1.Namespaces/List"
CONTENT_READ = "/containerd.services.content.v1.Content/Read"
CONFIGS_KEPT = 4096  # config digests remembered by target digest (content-addressed: never stale)

# The observer's own event, published to learn that its subscription is registered (observer.py).
SUBSCRIBED_TOPIC = "/stellaops-runtime/subscribed"
SUBSCRIBED_TYPE = "stellaops.io/runtime.Subscribed"

# A container spec or a list of thousands of containers can be several MiB.
CHANNEL_OPTIONS = rpc.ChannelOptions(max_receive_message_length=64 << 20)


def target_of(address: str) -> str:
    """A gRPC target for a socket path (``/run/...`` -> ``unix:///run/...``); others unchanged.

    The agent's client (stellaops_runtime.rpc/target.py) reads a unix target as grpcio does, as a
    URI: ``%41`` in a path is ``A`` to it, and ``?`` or ``#`` end the path. So a path is
    percent-encoded, those two included (the socket at the path as written is dialled); an address
    already written as a ``unix:`` URI is the caller's URI and is left alone."""
    if address.startswith(("unix:", "unix-abstract:")):
        return address
    path = quote(address, safe="/")
    return f"unix://{path}" if address.startswith("/") else f"unix:{path}"


def event_filters(namespace: str) -> list[str]:
    """Subscribe filters: the task, container and image topics of one namespace, the task starts and
    ends of every namespace (a container of another one runs unwatched, observer.py), and the
    observer's own mark in its namespace (``SUBSCRIBED_TOPIC``)."""
    ns = f'namespace=="{namespace}"'
    return [
        f'{ns},topic~="^/tasks/"',
        f'{ns},topic~="^/containers/"',
        f'{ns},topic~="^/images/"',
        'topic~="^/tasks/(start|exit|delete)$"',
        f'{ns},topic=="{SUBSCRIBED_TOPIC}"',
    ]


def is_subscribed_mark(raw: bytes, nonce: bytes) -> bool:
    """Whether ``raw`` (a Subscribe message) is the mark published with ``nonce``."""
    env = types_pb2.Envelope()
    try:
        env.ParseFromString(raw)
    except (DecodeError, ValueError):
        return False
    return env.topic == SUBSCRIBED_TOPIC and env.event.value == nonce


class ContainerdClient:
    """One channel to containerd; ``namespace`` goes in every call's metadata."""

    def __init__(
        self, address: str = DEFAULT_ADDRESS, *, namespace: str = DEFAULT_NAMESPACE, timeout: float = 10.0
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self._channel: rpc.Channel | None = None
        self._configs: dict[str, str] = {}

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((NAMESPACE_HEADER, self.namespace),)

    def _ch(self) -> rpc.Channel:
        if self._channel is None:
            self._channel = rpc.insecure_channel(target_of(self.address), CHANNEL_OPTIONS)
        return self._channel

    async def connect(self) -> None:
        """Wait until the socket answers; ConnectionError after ``timeout``."""
        try:
            await asyncio.wait_for(self._ch().channel_ready(), self.timeout)
        except TimeoutError:
            raise ConnectionError(
                f"no connection to containerd at {self.address} within {self.timeout}s"
            ) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def subscribe(self, filters: list[str] | None = None) -> AsyncGenerator[bytes, None]:
        """Serialized ``containerd.types.Envelope`` messages, as containerd sends them."""
        req = events_service_pb2.SubscribeRequest(filters=filters or [])
        call = self._ch().unary_stream(
            SUBSCRIBE,
            request_serializer=events_service_pb2.SubscribeRequest.SerializeToString,
            response_deserializer=None,
        )(req, metadata=self.metadata)
        try:
            async for raw in call:
                yield raw
        finally:
            call.cancel()

    async def list_containers(self) -> list[containers_pb2.Container]:
        resp = await self._ch().unary_unary(
            CONTAINERS_LIST,
            request_serializer=containers_pb2.ListContainersRequest.SerializeToString,
            response_deserializer=containers_pb2.ListContainersResponse.FromString,
        )(containers_pb2.ListContainersRequest(), metadata=self.metadata, timeout=self.timeout)
        return list(resp.containers)

    async def get_container(self, container_id: str) -> containers_pb2.Container | None:
        """The container, or ``None`` when containerd no longer has it."""
        try:
            resp = await self._ch().unary_unary(
                CONTAINERS_GET,
                request_serializer=containers_pb2.GetContainerRequest.SerializeToString,
                response_deserializer=containers_pb2.GetContainerResponse.FromString,
            )(
                containers_pb2.GetContainerRequest(id=container_id),
                metadata=self.metadata,
                timeout=self.timeout,
            )
        except rpc.RpcError as e:
            if e.code() == rpc.StatusCode.NOT_FOUND:
                return None
            raise
        return resp.container

    async def list_tasks(self, namespace: str | None = None) -> list[task_pb2.Process]:
        """The tasks of the client's namespace (or of ``namespace``)."""
        metadata = self.metadata if namespace is None else ((NAMESPACE_HEADER, namespace),)
        resp = await self._ch().unary_unary(
            TASKS_LIST,
            request_serializer=tasks_pb2.ListTasksRequest.SerializeToString,
            response_deserializer=tasks_pb2.ListTasksResponse.FromString,
        )(tasks_pb2.ListTasksRequest(), metadata=metadata, timeout=self.timeout)
        return list(resp.tasks)

    async def list_namespaces(self) -> list[str]:
        """The names of every containerd namespace."""
        resp = await self._ch().unary_unary(
            NAMESPACES_LIST,
            request_serializer=namespaces_pb2.ListNamespacesRequest.SerializeToString,
            response_deserializer=namespaces_pb2.ListNamespacesResponse.FromString,
        )(namespaces_pb2.ListNamespacesRequest(), timeout=self.timeout)
        return [n.name for n in resp.namespaces]

    async def get_task(self, container_id: str) -> task_pb2.Process | None:
        try:
            resp = await self._ch().unary_unary(
                TASKS_GET,
                request_serializer=tasks_pb2.GetRequest.SerializeToString,
                response_deserializer=tasks_pb2.GetResponse.FromString,
            )(tasks_pb2.GetRequest(container_id=container_id), metadata=self.metadata, timeout=self.timeout)
        except rpc.RpcError as e:
            if e.code() == rpc.StatusCode.NOT_FOUND:
                return None
            raise
        return resp.process

    async def image_digest(self, name: str) -> str:
        """The digest of image ``name``'s target (manifest or index); "" when containerd has no such image."""
        return (await self.image_target(name))[0]

    async def image_target(self, name: str) -> tuple[str, datetime | None]:
        """(the digest of image ``name``'s target, when the name was last updated); ("", None) when
        containerd has no such image. A name re-pulled or re-imported may point at another image."""
        if not name:
            return "", None
        try:
            resp = await self._ch().unary_unary(
                IMAGES_GET,
                request_serializer=images_pb2.GetImageRequest.SerializeToString,
                response_deserializer=images_pb2.GetImageResponse.FromString,
            )(images_pb2.GetImageRequest(name=name), metadata=self.metadata, timeout=self.timeout)
        except rpc.RpcError as e:
            if e.code() == rpc.StatusCode.NOT_FOUND:
                return "", None
            raise
        return resp.image.target.digest, timestamp_of(resp.image.updated_at)

    async def image_targets(self) -> list[str]:
        """The target digest of every image in the namespace (lifecycle/image_aliases.py)."""
        resp = await self._ch().unary_unary(
            IMAGES_LIST,
            request_serializer=images_pb2.ListImagesRequest.SerializeToString,
            response_deserializer=images_pb2.ListImagesResponse.FromString,
        )(images_pb2.ListImagesRequest(), metadata=self.metadata, timeout=self.timeout)
        return [i.target.digest for i in resp.images if i.target.digest]

    async def read_blob(self, digest: str) -> bytes | None:
        """The blob ``digest`` from the content store; b"" when it is larger than ``MAX_BLOB`` (for
        good: a blob's size never changes); None when containerd has none or the read fails (it may
        have it later; what it would have said is not known, never guessed)."""
        req = content_pb2.ReadContentRequest(digest=digest, size=MAX_BLOB + 1)
        call = self._ch().unary_stream(
            CONTENT_READ,
            request_serializer=content_pb2.ReadContentRequest.SerializeToString,
            response_deserializer=content_pb2.ReadContentResponse.FromString,
        )(req, metadata=self.metadata, timeout=self.timeout)
        data = bytearray()
        try:
            async for part in call:
                data += part.data
                if len(data) > MAX_BLOB:
                    return b""
        except rpc.RpcError:
            return None
        finally:
            call.cancel()
        return bytes(data)

    async def image_config(self, target: str) -> str:
        """The config digest of the image whose target (manifest or index) is ``target``: the CRI's
        image id of it (lifecycle/image_config.py); "" when it cannot be read. For an index, the
        manifest of this node's platform (none, or two: ""). Remembered by target (content-addressed),
        unless a blob was absent or unread: asked again next time."""
        if not target:
            return ""
        if (known := self._configs.get(target)) is not None:
            return known
        raw = await self.read_blob(target)
        if raw and is_index(raw):
            manifest = pick_manifest(raw, host_arch())
            raw = await self.read_blob(manifest) if manifest else b""
        config = config_digest(raw or b"")
        if raw is not None and len(self._configs) < CONFIGS_KEPT:
            self._configs[target] = config
        return config

    async def publish(self, topic: str, type_url: str, value: bytes) -> None:
        """Put an event on containerd's bus (the tests publish hostile payloads this way)."""
        req = events_service_pb2.PublishRequest(topic=topic)
        req.event.type_url = type_url
        req.event.value = value
        await self._ch().unary_unary(
            PUBLISH,
            request_serializer=events_service_pb2.PublishRequest.SerializeToString,
            response_deserializer=None,
        )(req, metadata=self.metadata, timeout=self.timeout)
