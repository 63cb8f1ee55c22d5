"""The containerd lifecycle observer: event stream + registry, reconnecting forever.

``ContainerdObserver.events(stop)`` is an async iterator of
ContainerLifecycleEvents. Each connection first opens the event subscription
(task, container and image topics of one namespace), waits until it is seen
to be live (subscribed.py: its own mark came back), then rebuilds the
registry from Containers/List, Tasks/List and Images/Get, so containers that
started or went away while the observer was not connected (an agent restart,
containerd restarting) are in, or out of, the registry before the first event
is handled, and what happens after the list is an event on the stream (the
events received before the mark are applied after the list). Envelopes that
do not decode are counted and skipped. When the socket goes away the
observer waits a jittered, capped exponential backoff and connects again;
``by_cgroup`` answers from the registry meanwhile.

What each containerd event becomes (only a container's init process counts;
exec'd processes are not container lifecycle):

- ``/containers/create`` -> CREATE (labels, spec env/annotations, image digest; the config
  digest beside it, from the content store: lifecycle/image_config.py; the other images of
  that config: lifecycle/image_aliases.py)
- ``/tasks/create``      -> registry: pid and cgroup (no event)
- ``/tasks/start``       -> START (pid, cgroup path and id, started_at)
- ``/tasks/oom``         -> registry: oom_killed, carried by the DIE that follows
- ``/tasks/exit``        -> DIE (exit code, stopped_at, oom_killed)
- ``/tasks/delete``      -> STOP (the cgroup id no longer names the container)
- ``/containers/delete`` -> DELETE (removed from the registry)
- ``/images/create``, ``/images/update`` -> IMAGE_PULL (name and target digest)

Containers of the other namespaces are not followed, but their tasks' starts
and exits are (and each rebuild lists their running tasks: ``unwatched``): one
of them may run any image without sending an event, so while one runs the
agent takes the registry as not in sync (agent/lifecycle_part.py).

A container names its image by reference, and a reference can be pulled
again onto another image while the container still runs the old one. So a
container keeps the digest it was first seen with, and a container created
before its reference was last updated (an observer started after the move)
gets no digest rather than the new image's: counted in
``digest_unverified`` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime import rpc
from stellaops_runtime.contracts.lifecycle import ContainerLifecycleEvent, LifecycleEventType
from stellaops_runtime.lifecycle.base import LifecycleObserver
from stellaops_runtime.lifecycle.cgroups import CgroupResolver
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient, event_filters
from stellaops_runtime.lifecycle.decode import Decoded, DecodeFailure, Ignored, decode_envelope, timestamp_of
from stellaops_runtime.lifecycle.image_aliases import ImageConfigs, realias
from stellaops_runtime.lifecycle.records import (
    apply_task,
    image_event,
    is_init,
    lifecycle_event,
    record_from_container,
)
from stellaops_runtime.lifecycle.registry import ContainerRecord, ContainerRegistry
from stellaops_runtime.lifecycle.scrub import scrub, scrub_map, scrub_ref
from stellaops_runtime.lifecycle.subscribed import await_subscribed, received
from stellaops_runtime.privacy.filter import PrivacyFilter
from stellaops_runtime.wire.containerd import events_pb2, image_events_pb2, task_pb2

log = logging.getLogger(__name__)

T = LifecycleEventType
# Task states in which a container's program may run (Tasks/List's Process.status).
_LIVE = (task_pb2.RUNNING, task_pb2.PAUSED, task_pb2.PAUSING)
UNWATCHED_MAX = 4096  # other namespaces' running containers remembered (one is enough to say so)
# An event stream idle this long is checked with a call (``_check_alive``); a hung containerd is
# noticed within this plus the client's timeout.
LIVENESS_SECONDS = 10.0
ID_MAX = 76  # the longest container id or namespace containerd accepts (its identifiers package)


class ContainerdObserver(LifecycleObserver):
    """Watches one containerd namespace; see the module docstring for what it emits."""

    runtime = "containerd"

    def __init__(
        self,
        client: ContainerdClient,
        *,
        privacy: PrivacyFilter | None = None,
        resolver: CgroupResolver | None = None,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        on_sync: Callable[[ContainerRegistry], None] | None = None,
        liveness_seconds: float = LIVENESS_SECONDS,
    ) -> None:
        super().__init__(
            address=client.address,
            namespace=client.namespace,
            privacy=privacy,
            resolver=resolver,
            reconnect_initial=reconnect_initial,
            reconnect_max=reconnect_max,
            on_sync=on_sync,
        )
        self.client = client
        self.liveness_seconds = liveness_seconds
        self.images = ImageConfigs()  # every image's config: the digests kubelet may name one by

    async def _close(self) -> None:
        await self.client.close()

    async def resync(self) -> None:
        """Rebuild the registry from the runtime's lists (containers, tasks, image digests)."""
        await self.client.connect()
        containers = await self.client.list_containers()
        # Tasks/List names a task's container in ``id`` (``container_id`` is left empty).
        tasks = {t.container_id or t.id: t for t in await self.client.list_tasks()}
        targets: dict[str, tuple[str, datetime | None]] = {}
        records = []
        await self.images.relist(self.client)
        for c in containers:
            if c.image not in targets:
                targets[c.image] = await self.client.image_target(c.image)
            rec = self._record(c, self._digest(c, targets[c.image]))
            rec.image_config = await self.client.image_config(rec.image_digest)
            rec.image_aliases = self.images.aliases(rec.image_config, rec.image_digest)
            task = tasks.get(c.id)
            if task is not None:
                apply_task(rec, task)
                self._find_cgroup(rec)
            self._keep_stopped(rec, task is not None)
            records.append(rec)
        self._rebuilt(records)
        await self._list_foreign()

    async def _list_foreign(self) -> None:
        """The containers whose task runs in another namespace (see ``_foreign_task``)."""
        found: set[tuple[str, str]] = set()
        for ns in await self.client.list_namespaces():
            if ns == self.namespace:
                continue
            for t in await self.client.list_tasks(ns):
                if t.status in _LIVE and len(found) < UNWATCHED_MAX:
                    found.add((ns, t.container_id or t.id))
        for ns in sorted({ns for ns, _ in found - self.unwatched}):
            self._warn_foreign(ns)
        self.unwatched = found

    def _foreign_task(self, d: Decoded) -> None:
        """A task started or ended in a namespace the observer does not follow. Its container runs
        where the registry cannot see it, so it may be a silent container of any image: while one
        runs the agent takes the registry as not in sync (agent/lifecycle_part.py)."""
        p = d.payload
        cid: str = getattr(p, "container_id", "")
        if not cid:
            return
        key = (d.namespace, cid)
        if isinstance(p, events_pb2.TaskStart):
            self._unwatched_start(d.timestamp)  # the next sample is not in sync, whatever follows
            if len(cid) > ID_MAX or len(d.namespace) > ID_MAX:
                return  # no container containerd can have (a forged event): not held
            if key not in self.unwatched and len(self.unwatched) < UNWATCHED_MAX:
                if not any(ns == d.namespace for ns, _ in self.unwatched):
                    self._warn_foreign(d.namespace)
                self.unwatched.add(key)
        elif isinstance(p, events_pb2.TaskExit | events_pb2.TaskDelete) and is_init(cid, p.id):
            self.unwatched.discard(key)

    def _warn_foreign(self, namespace: str) -> None:
        log.warning(
            "a container runs in containerd namespace %r, which this observer (namespace %r) does not "
            "follow: the registry is not in sync while it runs (no window above ActiveTracing); "
            "watch the runtime that owns it (Docker's containers are in 'moby': lifecycle.runtime docker)",
            namespace[:64], self.namespace,
        )  # fmt: skip

    def _keep_stopped(self, rec: ContainerRecord, has_task: bool) -> None:
        """What a rebuild cannot list of a container known stopped: its exit facts once its task is
        deleted (a task-less container lists as never started), and the cgroup its task had,
        which still names it for its late records (lookup.py)."""
        known = self.registry.get(self.namespace, rec.container_id)
        if known is None or known.status != "stopped":
            return
        if not has_task:
            for name in ("status", "pid", "started_at", "stopped_at", "exit_code", "oom_killed"):
                setattr(rec, name, getattr(known, name))
        if rec.status == "stopped" and not rec.cgroup_id and known.cgroup_id:
            rec.cgroup_path, rec.cgroup_id = known.cgroup_path, known.cgroup_id

    # -- one connection --------------------------------------------------------

    async def _connection(self, stop: asyncio.Event) -> AsyncIterator[ContainerLifecycleEvent]:
        await self.client.connect()
        stream = self.client.subscribe(event_filters(self.namespace))
        pending: asyncio.Future[Any] = asyncio.ensure_future(anext(stream))
        stopper: asyncio.Future[Any] | None = None
        try:
            # Subscribe, then list: the lists are read only once containerd is seen to deliver this
            # subscription's events (its own mark came back), so whatever happens after the list is
            # an event on the stream; events that came before the mark wait for the list.
            backlog, pending = await await_subscribed(self.client, stream, pending)
            await self.resync()
            self._synced()
            for raw in backlog:
                for ev in await self._handle(raw):
                    yield ev
            stopper = asyncio.ensure_future(stop.wait())
            while True:
                done, _ = await asyncio.wait(
                    (pending, stopper), timeout=self.liveness_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:  # no event for a while: is containerd still answering?
                    await self._check_alive()
                    continue
                if stopper in done and pending not in done:
                    return
                raw = received(pending)
                for ev in await self._handle(raw):
                    yield ev
                pending = asyncio.ensure_future(anext(stream))
        finally:
            for fut in (pending, stopper):
                if fut is not None and not fut.done():
                    fut.cancel()
                    with contextlib.suppress(BaseException):
                        await fut
            await stream.aclose()

    async def _check_alive(self) -> None:
        """An idle stream cannot tell a quiet containerd from a hung one (stopped, its connection
        stalled): a call that gets no answer within the client's timeout ends the connection, so
        the registry is not in sync until a new one is rebuilt."""
        try:
            await self.client.list_namespaces()
        except rpc.RpcError as e:
            raise ConnectionError(
                f"containerd did not answer a liveness check ({e.code().name}): the connection is hung"
            ) from None

    # -- events ----------------------------------------------------------------

    async def _handle(self, raw: bytes) -> list[ContainerLifecycleEvent]:
        self.stats.envelopes += 1
        d = decode_envelope(raw)
        if isinstance(d, DecodeFailure):
            self.stats.count_failure(d.reason)
            log.debug("skipped undecodable containerd event: %s", d.detail)
            return []
        if isinstance(d, Ignored):
            self.stats.count_ignored(d.type_name)
            return []
        if d.namespace and d.namespace != self.namespace:
            self.stats.count_ignored("other_namespace")
            self._foreign_task(d)
            return []
        out = await self._apply(d)
        for ev in out:
            self.stats.count_event(str(ev.event_type))
        return out

    async def _apply(self, d: Decoded) -> list[ContainerLifecycleEvent]:
        p = d.payload
        ts = d.timestamp or datetime.now(UTC)
        if isinstance(p, events_pb2.ContainerCreate | events_pb2.ContainerUpdate):
            rec = await self._fetch(p.id)
            if rec is None or isinstance(p, events_pb2.ContainerUpdate):
                return []
            return [lifecycle_event(T.CREATE, rec, timestamp=ts, topic=d.topic)]
        if isinstance(p, events_pb2.ContainerDelete):
            gone = self.registry.remove(self.namespace, p.id)
            self.oom_watch.forget((self.namespace, p.id))
            gone = gone or ContainerRecord(container_id=p.id, namespace=self.namespace)
            return [lifecycle_event(T.DELETE, gone, timestamp=ts, topic=d.topic)]
        if isinstance(p, image_events_pb2.ImageCreate | image_events_pb2.ImageUpdate):
            digest = await self.client.image_digest(p.name)
            if await self.images.learn(self.client, digest):  # another manifest of a config
                realias(self.registry, self.images)
            ev = image_event(
                namespace=self.namespace,
                name=scrub_ref(p.name, self.privacy),
                digest=digest,
                labels=scrub_map(dict(p.labels), self.privacy),
                timestamp=ts,
                topic=d.topic,
            )
            return [ev]
        if isinstance(p, image_events_pb2.ImageDelete):
            return []
        return await self._apply_task(d, p, ts)

    async def _apply_task(self, d: Decoded, p: object, ts: datetime) -> list[ContainerLifecycleEvent]:
        cid: str = getattr(p, "container_id", "")
        if isinstance(p, events_pb2.TaskExit | events_pb2.TaskDelete) and not is_init(cid, p.id):
            return []  # an exec'd process, not the container
        rec = self.registry.get(self.namespace, cid) or await self._fetch(cid)
        if rec is None:
            if isinstance(p, events_pb2.TaskStart):
                # It ran, but containerd no longer had its container when asked (removed at once,
                # read late): an image the registry cannot name, as a start in another namespace.
                self._unwatched_start(ts)
                log.info("container %s started and was gone before it could be read", cid[:64])
            return []
        if isinstance(p, events_pb2.TaskCreate):
            rec.pid, rec.status = p.pid, "created"
            self._find_cgroup(rec, ts)
        elif isinstance(p, events_pb2.TaskStart):
            rec.pid, rec.status, rec.started_at = p.pid, "running", ts
            rec.stopped_at, rec.exit_code, rec.oom_killed = None, None, False
            self._find_cgroup(rec, ts)
            return [lifecycle_event(T.START, rec, timestamp=ts, topic=d.topic)]
        elif isinstance(p, events_pb2.TaskOOM):
            rec.oom_killed = True
        elif isinstance(p, events_pb2.TaskExit):
            rec.status, rec.exit_code = "stopped", p.exit_status
            rec.stopped_at = timestamp_of(p.exited_at) or ts
            rec.oom_killed = self._oom_of_exit(rec.oom_killed, rec)
            return [lifecycle_event(T.DIE, rec, timestamp=ts, topic=d.topic)]
        elif isinstance(p, events_pb2.TaskDelete):
            rec.status, rec.exit_code = "stopped", p.exit_status
            rec.stopped_at = rec.stopped_at or timestamp_of(p.exited_at) or ts
            self.registry.task_gone(rec)
            return [lifecycle_event(T.STOP, rec, timestamp=ts, topic=d.topic)]
        elif isinstance(p, events_pb2.TaskPaused):
            rec.status = "paused"
        elif isinstance(p, events_pb2.TaskResumed):
            rec.status = "running"
        return []

    # -- helpers ---------------------------------------------------------------

    def _record(self, c: object, digest: str) -> ContainerRecord:
        rec, problem = record_from_container(
            c,  # type: ignore[arg-type]
            namespace=self.namespace,
            image_digest=digest,
            env_filter=self.privacy.filter_env,
        )
        if problem:
            self.stats.spec_problems += 1
            log.debug("container %s: %s", rec.container_id, problem)
        return scrub(rec, self.privacy)

    def _digest(self, c: Any, target: tuple[str, datetime | None]) -> str:
        """The digest of the image container ``c`` runs: the one it was first seen with, else its
        reference's target, unless the reference moved after the container was created ("")."""
        known = self.registry.get(self.namespace, c.id)
        if known is not None and known.image_ref == scrub_ref(c.image, self.privacy) and known.image_digest:
            return known.image_digest
        digest, updated = target
        created = timestamp_of(c.created_at)
        if digest and updated is not None and created is not None and updated > created:
            self.stats.digest_unverified += 1
            log.warning(
                "container %s: image %s was updated after the container was created; "
                "the digest it runs is unknown (not %s)",
                c.id[:12], scrub_ref(c.image, self.privacy), digest,
            )  # fmt: skip
            return ""
        return digest

    async def _fetch(self, container_id: str) -> ContainerRecord | None:
        """(Re)read a container from containerd into the registry, keeping known task facts."""
        c = await self.client.get_container(container_id)
        if c is None:
            return None
        rec = self._record(c, self._digest(c, await self.client.image_target(c.image)))
        rec.image_config = await self.client.image_config(rec.image_digest)
        rec.image_aliases = self.images.aliases(rec.image_config, rec.image_digest)
        old = self.registry.get(self.namespace, container_id)
        if old is not None:
            for name in (
                "status",
                "pid",
                "cgroup_path",
                "cgroup_id",
                "started_at",
                "stopped_at",
                "exit_code",
            ):
                setattr(rec, name, getattr(old, name))
            rec.oom_killed = old.oom_killed
        self.registry.put(rec)
        return rec
