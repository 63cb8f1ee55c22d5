"""The Docker Engine lifecycle observer: ``/events`` + registry, reconnecting forever.

Same API and registry as the containerd observer (:mod:`.base`); the facts
come from the Engine API instead. Each connection opens ``GET /events``
(every type: the replay's size is checked, docker_replay.py; container and
image events are used, the others counted as ignored and dropped as they are
read, while the observer handles what it keeps: docker_reader.py), then rebuilds the
registry from ``/containers/json?all=1`` and an inspect of each container,
and lists the containers again every ``resync_seconds`` for what the stream
never said (unreported.py). What each Docker event becomes:

- container ``create``  -> CREATE (labels, env (filtered), image reference and digest)
- container ``start``   -> START (pid, cgroup path and id, started_at)
- container ``oom``     -> registry: oom_killed, carried by the DIE that follows
- container ``die``     -> DIE (exit code, OOM from the inspect or the kernel's count kept
  while the cgroup lived: oom_watch.py); the cgroup id no longer names it
- container ``stop``    -> STOP (``docker stop``; a kill is only a DIE)
- container ``destroy`` -> DELETE
- image ``pull``, ``load`` -> IMAGE_PULL

``image_digest`` is the registry (manifest) digest Docker records for the
image (``RepoDigests``); an image that was built or loaded locally has none,
and its digest is then empty rather than Docker's image id (the digest of its
config), which no registry or SBOM names. Lines of the event stream that are
not JSON objects of the expected shape are counted and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from stellaops_runtime.contracts.lifecycle import ContainerLifecycleEvent, LifecycleEventType
from stellaops_runtime.lifecycle import docker_reader
from stellaops_runtime.lifecycle.base import LifecycleObserver
from stellaops_runtime.lifecycle.cgroups import CgroupResolver
from stellaops_runtime.lifecycle.docker_client import DockerClient
from stellaops_runtime.lifecycle.docker_reader import EagerLines, Lost, stamp_of
from stellaops_runtime.lifecycle.docker_records import (
    digest_of,
    field_of,
    listed_differs,
    record_from_inspect,
)
from stellaops_runtime.lifecycle.docker_records import docker_time as docker_time  # its old home
from stellaops_runtime.lifecycle.docker_replay import ReplayCheck
from stellaops_runtime.lifecycle.records import image_event, lifecycle_event
from stellaops_runtime.lifecycle.registry import ContainerRecord, ContainerRegistry
from stellaops_runtime.lifecycle.scrub import scrub, scrub_ref
from stellaops_runtime.lifecycle.unreported import IN_FLIGHT_SECONDS, Unreported
from stellaops_runtime.privacy.filter import PrivacyFilter

T = LifecycleEventType
log = logging.getLogger(__name__)
# No type filter: the Engine's replay then holds every event of its ring newer than ``since``, and
# a replay of its whole ring (256) says events may have been lost (docker_replay.py).
EVENT_FILTERS: dict[str, list[str]] = {}
_CONTAINER = ("create", "start", "die", "stop", "destroy", "oom", "pause", "unpause")
# the (type, action) pairs the observer uses; the reader drops the others as it reads them
_USED = {("image", "pull"), ("image", "load")} | {("container", a) for a in _CONTAINER}


class DockerObserver(LifecycleObserver):
    """Watches one Docker Engine; see the module docstring for what it emits."""

    runtime = "docker"

    def __init__(
        self,
        client: DockerClient,
        *,
        privacy: PrivacyFilter | None = None,
        resolver: CgroupResolver | None = None,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        on_sync: Callable[[ContainerRegistry], None] | None = None,
        liveness_seconds: float = 10.0,
        resync_seconds: float = 60.0,
        in_flight_seconds: float = IN_FLIGHT_SECONDS,
    ) -> None:
        super().__init__(
            address=client.address,
            namespace="",
            privacy=privacy,
            resolver=resolver,
            reconnect_initial=reconnect_initial,
            reconnect_max=reconnect_max,
            on_sync=on_sync,
        )
        self.client = client
        self.liveness_seconds = liveness_seconds  # an idle stream this long: is Docker answering?
        self._replay = ReplayCheck(0)  # each connection's own (docker_replay.py)
        self.resync_seconds = resync_seconds  # the backstop list: what the stream never said (unreported.py)
        self._unreported = Unreported(in_flight_seconds)
        self._listed_at: datetime | None = None  # when the latest list was read

    async def _close(self) -> None:
        return None  # one connection per request: nothing stays open

    async def resync(self) -> None:
        listed = await self.client.get_json("/containers/json?all=1")
        records = []
        for item in listed if isinstance(listed, list) else []:
            cid = item.get("Id") if isinstance(item, dict) else None
            if isinstance(cid, str):
                rec = await self._fetch(cid, index=False)
                if rec is not None:
                    records.append(rec)
                elif item.get("State") in ("running", "paused", "restarting", "exited", "dead"):
                    # it ran, and was removed before its inspect: since it was created, at the latest
                    created = item.get("Created")
                    ok = isinstance(created, int) and not isinstance(created, bool) and 0 < created < 2**33
                    self._unwatched_start(datetime.fromtimestamp(created, tz=UTC) if ok else None)
        self._rebuilt(records)
        for rec in records:
            self._find_cgroup(self.registry.get("", rec.container_id) or rec)

    async def _fetch(self, cid: str, *, index: bool = True) -> ContainerRecord | None:
        info = await self.client.get_or_none(f"/containers/{cid}/json")
        if not isinstance(info, dict):
            return None
        ref = str((info.get("Config") or {}).get("Image", "")) if isinstance(info.get("Config"), dict) else ""
        image = (
            await self.client.get_or_none(f"/images/{info.get('Image', '')}/json")
            if info.get("Image")
            else None
        )
        rec = scrub(
            record_from_inspect(info, digest=digest_of(image, ref), env_filter=self.privacy.filter_env),
            self.privacy,
        )
        if index:
            self.registry.put(rec)
        return rec

    async def _connection(self, stop: asyncio.Event) -> AsyncIterator[ContainerLifecycleEvent]:
        await self.client.ping()
        # Subscribe, then list: the Engine registers the stream when its request arrives, which can
        # be after the list is read; asked to replay from the instant before the request, it
        # sends what happened in between (Docker's own timestamps, on this host's clock) first, from
        # its last 256 events: a replay of all of them may have lost older ones (docker_replay.py).
        since_ns = time.time_ns()
        self._replay = ReplayCheck(since_ns)
        # read as it comes, during the list too (the first line's arrival bounds the replay), the
        # ignored dropped at once: the Engine's 1024 slots for us never fill (docker_reader.py)
        stream = EagerLines(
            self.client.events(EVENT_FILTERS, since_ns=since_ns),
            self._read,
            limit=docker_reader.MAX_WAITING,
            max_bytes=docker_reader.MAX_WAITING_BYTES,
        )
        pending: asyncio.Future[Any] = asyncio.ensure_future(anext(stream))
        stopper: asyncio.Future[Any] | None = None
        await asyncio.sleep(0)
        try:
            self._listed_at = datetime.fromtimestamp(since_ns / 1e9, tz=UTC)
            self._unreported.clear()
            await self.resync()
            self._synced()
            stopper = asyncio.ensure_future(stop.wait())
            next_list = idle_since = time.monotonic()
            next_list += self.resync_seconds  # a deadline: events do not put it off
            while True:
                now = time.monotonic()
                timeout = min(self.liveness_seconds - (now - idle_since), next_list - now)
                due = self._unreported.wait(now)  # changes a backstop list found, awaiting their events
                timeout = timeout if due is None else min(timeout, due)
                done, _ = await asyncio.wait(
                    (pending, stopper), timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED
                )
                if stopper in done and pending not in done:
                    return
                now = time.monotonic()
                await self._backstop(now, now >= next_list)
                if now >= next_list:
                    next_list = time.monotonic() + self.resync_seconds
                if pending not in done:
                    if now - idle_since >= self.liveness_seconds:
                        try:  # an idle stream cannot tell a quiet Docker from a hung one (stopped)
                            await self.client.ping()  # bounded by the client's timeout
                        except TimeoutError:
                            raise ConnectionError(
                                "docker did not answer a liveness check: it is hung"
                            ) from None
                        idle_since = time.monotonic()
                    continue
                idle_since = now
                msg = pending.result()  # raises when the stream ends or breaks
                if isinstance(msg, Lost):
                    await self._lost_here(msg)
                for ev in [] if isinstance(msg, Lost) else await self._handle_msg(msg):
                    yield ev
                pending = asyncio.ensure_future(anext(stream))
        finally:
            for fut in (pending, stopper):
                if fut is not None and not fut.done():
                    fut.cancel()
                    with contextlib.suppress(BaseException):
                        await fut
            await stream.aclose()

    async def _backstop(self, now: float, due: bool) -> None:
        """The list the stream should have nothing to add to, when ``due``; and the changes an earlier
        one found whose events never came: lost (unreported.py), so the registry is rebuilt and the
        time since the list before is a hole."""
        lost, since = self._unreported.lost(now)
        if lost:
            log.warning(
                "docker's event stream did not report a change its container list showed: events since "
                "%s may be lost (a hole; lifecycle_missed_events_total)", since.isoformat() if since else "?",
            )  # fmt: skip
            self._missed_events(since)
            await self.resync()
            self._notify()  # no event follows to refresh the agent's lookup (its pods, their opt-out)
        if not due:
            return
        before, self._listed_at = self._listed_at, datetime.now(UTC)
        listed = await self.client.get_json("/containers/json?all=1")
        states = {
            item["Id"]: str(item.get("State", ""))
            for item in (listed if isinstance(listed, list) else [])
            if isinstance(item, dict) and isinstance(item.get("Id"), str)
        }
        changed = {
            c
            for c, st in states.items()
            if listed_differs(getattr(self.registry.get("", c), "status", ""), st)
        }
        changed |= {r.container_id for r in self.registry.records() if r.container_id not in states}
        list_ns = int(self._listed_at.timestamp() * 1e9)
        self._unreported.found(changed, time.monotonic(), before, list_ns)

    async def _lost_here(self, lost: Lost) -> None:
        """Events the reader dropped for want of room (docker_reader.py), in their place: counted, the
        time since the first one's stamp a hole, and the registry rebuilt from a list."""
        # floored, a microsecond earlier: the hole starts no later than the first one dropped
        since = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=lost.since_ns // 1000 - 1)
        log.warning(
            "%d docker events found the agent's queue full (%d events or %d MiB) and were dropped: a "
            "container may have run unseen since %s (a hole; lifecycle_missed_events_total)", lost.count,
            docker_reader.MAX_WAITING, docker_reader.MAX_WAITING_BYTES >> 20, since.isoformat(),
        )  # fmt: skip
        self._missed_events(since)
        await self.resync()
        self._notify()

    async def _handle(self, line: bytes) -> list[ContainerLifecycleEvent]:
        """One line of the stream, read and handled (what the reader and the observer do in turn)."""
        msg = self._read(line)
        return [] if msg is None else await self._handle_msg(msg)

    def _read(self, line: bytes) -> dict[str, Any] | None:
        """A line as it is read: counted, the replay checked, and the message when the observer uses
        it (None: malformed, or ignored, counted by type and action)."""
        self.stats.envelopes += 1
        msg: Any = None
        try:
            msg, decoded = json.loads(line), True
        except (ValueError, RecursionError):
            decoded = False
        self._check_replay(stamp_of(msg))  # every line counts, a malformed one too
        if not decoded:
            self.stats.count_failure("envelope")
            return None
        actor = msg.get("Actor") if isinstance(msg, dict) else None
        if not isinstance(actor, dict) or not isinstance(actor.get("ID"), str):
            self.stats.count_failure("field")
            return None
        kind, action = str(msg.get("Type")), str(msg.get("Action", ""))
        if (kind, action) not in _USED:
            # by type and action: an exec's action goes on with its command line, a password among it
            label = f"{kind}/{action.split(':', 1)[0]}"
            self.stats.count_ignored(label if len(label) <= 64 else "other")
            return None
        return docker_reader.kept(msg)  # what it waits as: not its labels (docker_reader.py)

    async def _handle_msg(self, msg: dict[str, Any]) -> list[ContainerLifecycleEvent]:
        actor = msg["Actor"]
        nano = stamp_of(msg)
        self._unreported.heard(actor["ID"])
        self._unreported.event(nano, time.monotonic())
        kind, action = str(msg.get("Type")), str(msg.get("Action", ""))
        ts = datetime.fromtimestamp(nano / 1e9, tz=UTC) if nano is not None else datetime.now(UTC)
        attrs: dict[str, Any] = field_of(actor, "Attributes", dict, {})
        out = await self._apply(kind, action, actor["ID"], attrs, ts, f"{kind}/{action}")
        for ev in out:
            self.stats.count_event(str(ev.event_type))
        return out

    def _check_replay(self, nano: int | None) -> None:
        if self._replay.see(nano, time.time_ns()):
            since = datetime.fromtimestamp(self._replay.since_ns / 1e9, tz=UTC)
            log.warning(
                "docker replayed its whole buffer of %d events from %s: events before them are lost, so "
                "a container may have run unseen since then (a hole; lifecycle_missed_events_total)",
                self._replay.count, since.isoformat(),
            )  # fmt: skip
            self._missed_events(since)

    async def _apply(
        self, kind: str, action: str, cid: str, attrs: dict[str, Any], ts: datetime, topic: str
    ) -> list[ContainerLifecycleEvent]:
        if kind == "image":  # pull, load
            # A pull names the reference with its tag in the actor id (the "name" attribute
            # drops the tag); a load names the image id there.
            name = str(attrs.get("name", cid)) if cid.startswith("sha256:") else cid
            image = await self.client.get_or_none(f"/images/{name}/json")
            return [
                image_event(
                    namespace="",
                    name=scrub_ref(name, self.privacy),
                    digest=digest_of(image, name),
                    labels={},
                    timestamp=ts,
                    topic=topic,
                    runtime=self.runtime,
                )
            ]
        if action == "destroy":
            gone = self.registry.remove("", cid) or ContainerRecord(container_id=cid, namespace="")
            self.oom_watch.forget(("", cid))
            return [lifecycle_event(T.DELETE, gone, timestamp=ts, topic=topic, runtime=self.runtime)]
        old = self.registry.get("", cid)
        rec = await self._fetch(cid)
        if rec is None:
            if action == "start":  # it ran, and was removed before it could be read (observer.py)
                self._unwatched_start(ts)
            return []
        if old is not None and action in ("die", "stop", "oom"):
            rec.pid = rec.pid or old.pid
            rec.cgroup_path, rec.cgroup_id = old.cgroup_path, old.cgroup_id
            rec.oom_killed = True if rec.oom_killed or old.oom_killed else old.oom_killed
        if action == "create":
            return [lifecycle_event(T.CREATE, rec, timestamp=ts, topic=topic, runtime=self.runtime)]
        if action == "start":
            self._find_cgroup(rec)
            return [lifecycle_event(T.START, rec, timestamp=ts, topic=topic, runtime=self.runtime)]
        if action == "oom":
            rec.oom_killed = True
            return []
        if action in ("die", "stop"):
            rec.status = "stopped"
            code = attrs.get("exitCode")
            if isinstance(code, str) and code.lstrip("-").isdigit():
                rec.exit_code = int(code)
            rec.stopped_at = rec.stopped_at or ts
            # Docker deleted the cgroup before this event, and says OOM only if containerd's shim
            # reported it: the kernel's count, kept while the cgroup lived (oom_watch.py).
            rec.oom_killed = self._oom_of_exit(rec.oom_killed, rec)
            self.registry.task_gone(rec)
            return [
                lifecycle_event(
                    T.DIE if action == "die" else T.STOP, rec, timestamp=ts, topic=topic, runtime=self.runtime
                )
            ]
        self._find_cgroup(rec)  # pause / unpause: the record's status changed
        return []
