"""What the CRI runtime's answers do to the registry: the lists, the statuses, each stream message.

The CRI observer (cri_observer.py) keeps the connection: when to list, what the stream is trusted
with (cri_stream.py). This part, the one it extends, turns a list or an event into the registry's
records and the lifecycle events they announce, through one comparison
(:func:`~stellaops_runtime.lifecycle.cri_records.transitions`) whichever of the two saw a change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.message import DecodeError

from stellaops_runtime.contracts.lifecycle import ContainerLifecycleEvent, LifecycleEventType
from stellaops_runtime.lifecycle.base import LifecycleObserver
from stellaops_runtime.lifecycle.cgroups import CgroupResolver
from stellaops_runtime.lifecycle.cri_client import CriClient
from stellaops_runtime.lifecycle.cri_records import (
    RUNTIME,
    STATE_OF,
    Pod,
    VerboseFacts,
    container_record,
    digest_in_ref,
    event_start,
    late_oom_possible,
    ns_time,
    pick_repo_digest,
    pod_of,
    sandbox_record,
    transitions,
    verbose_facts,
)
from stellaops_runtime.lifecycle.records import lifecycle_event
from stellaops_runtime.lifecycle.registry import ContainerRecord, ContainerRegistry
from stellaops_runtime.lifecycle.scrub import scrub
from stellaops_runtime.lifecycle.unreported import IN_FLIGHT_SECONDS, Unreported
from stellaops_runtime.privacy.filter import PrivacyFilter
from stellaops_runtime.wire.cri import api_pb2

_monotonic = time.monotonic  # the event loop's clock (asyncio's default): unreported.py's times
log = logging.getLogger("stellaops_runtime.lifecycle.cri_observer")  # one logger for the CRI observer


class CriApply(LifecycleObserver):
    """The registry side of :class:`~stellaops_runtime.lifecycle.cri_observer.CriObserver`."""

    runtime = RUNTIME

    def __init__(
        self,
        client: CriClient,
        *,
        privacy: PrivacyFilter | None,
        resolver: CgroupResolver | None,
        reconnect_initial: float,
        reconnect_max: float,
        on_sync: Callable[[ContainerRegistry], None] | None,
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
        self.relists = 0
        # Events sent before this observer began (containerd 1.7 keeps them for the next stream) are
        # of a time before the agent's, which its watch record accounts for: no run the registry missed.
        self._began = datetime.now(UTC)
        self._unreported = Unreported(in_flight_seconds)  # changes a backstop list found (cri_stream.py)
        self._listed_at: datetime | None = None  # when the latest list was read, and the one before
        self._list_before: datetime | None = None
        self._pods: dict[str, Pod] = {}
        self._sandbox_of: dict[str, str] = {}  # container id -> its pod sandbox id
        self._digests: dict[str, str] = {}  # image reference -> manifest digest, per connection

    # -- the relist --------------------------------------------------------------

    async def _relist(self, *, announce: bool, rebuild: bool) -> list[ContainerLifecycleEvent]:
        """Read both lists, update the registry to them and return what changed (when ``announce``)."""
        self.relists += 1
        self._list_before, self._listed_at = self._listed_at, datetime.now(UTC)
        sandboxes = await self.client.list_sandboxes()
        containers = await self.client.list_containers()
        self._pods = {sb.id: pod_of(sb.id, sb.metadata) for sb in sandboxes if sb.id}
        records: list[ContainerRecord] = []
        for sb in sandboxes:
            if not sb.id:
                self.stats.count_failure("field")
                continue
            old = self.registry.get("", sb.id)
            ready = "running" if sb.state == api_pb2.SANDBOX_READY else "stopped"
            if old is not None and old.status == ready:
                records.append(old)
                continue
            rec = await self._fetch_sandbox(sb)
            records.append(rec)
        out: list[ContainerLifecycleEvent] = []
        now = datetime.now(UTC)
        for c in containers:
            if not c.id:
                self.stats.count_failure("field")
                continue
            self._sandbox_of[c.id] = c.pod_sandbox_id
            old = self.registry.get("", c.id)
            if (
                old is not None
                and not old.is_sandbox
                and old.status == STATE_OF.get(c.state, "unknown")
                and not late_oom_possible(old, now)
            ):
                records.append(old)
                continue
            got = await self._fetch(c.id)
            if got is None:  # removed between the list and its status: the next look sees it gone
                if old is not None:
                    records.append(old)
                elif c.state in (api_pb2.CONTAINER_RUNNING, api_pb2.CONTAINER_EXITED):
                    self._unread_run(c.id, ns_time(c.created_at))
                continue
            rec, created_at = got
            out += self._emit(old, rec, created_at, announce=announce, topic="relist")
            records.append(rec)
        listed = {r.container_id for r in records}
        for gone in self.registry.records():
            if gone.container_id not in listed:
                self._sandbox_of.pop(gone.container_id, None)
                if announce and not gone.is_sandbox:
                    out += self._emit_delete(gone, topic="relist")
        _, removed = self.registry.replace_all("", records)
        self.oom_watch.retain({("", r.container_id) for r in records})
        if rebuild:
            self.stats.resyncs += 1
            self.stats.resync_removed += removed
        return out

    async def _fetch_sandbox(self, sb: api_pb2.PodSandbox | api_pb2.PodSandboxStatus) -> ContainerRecord:
        resp = await self.client.sandbox_status(sb.id) if sb.state == api_pb2.SANDBOX_READY else None
        facts = verbose_facts(resp.info) if resp is not None else VerboseFacts()
        rec, problem = sandbox_record(sb, facts)
        scrub(rec, self.privacy)
        self._problem(sb.id, problem)
        self._find_cgroup(rec)
        return rec

    async def _fetch(
        self, cid: str, pod: Pod | None = None
    ) -> tuple[ContainerRecord, datetime | None] | None:
        """A container's record from its verbose status (None when the runtime no longer has it)."""
        resp = await self.client.container_status(cid)
        if resp is None or not resp.HasField("status"):
            return None
        st = resp.status
        if st.id != cid:
            self.stats.count_failure("field")
            log.warning("CRI status of %.80s names container %.80r; skipped", cid, st.id)
            return None
        facts = verbose_facts(resp.info)
        pod = pod or self._pods.get(self._sandbox_of.get(cid, ""))
        rec, problem = container_record(
            st, pod=pod, image_digest=await self._digest(st), facts=facts, env_filter=self.privacy.filter_env
        )
        self._problem(cid, problem)
        return scrub(rec, self.privacy), ns_time(st.created_at)

    async def _digest(self, st: api_pb2.ContainerStatus) -> str:
        """The manifest digest of a container's image: in its reference, else in the image's repo digests."""
        digest = digest_in_ref(st.image_ref) or digest_in_ref(st.image.image)
        if digest:
            return digest
        key = st.image_ref or st.image_id or st.image.image
        if key not in self._digests:
            repo_digests = await self.client.image_repo_digests(key)
            self._digests[key] = pick_repo_digest(repo_digests, st.image.image)
        return self._digests[key]

    def _unread_run(self, cid: str, since: datetime | None) -> None:
        """It ran, and was gone when its status was asked: no run of its image, so not in sync, and
        the time since ``since`` (its creation, when known) is a hole (base.take_unwatched_from)."""
        self._unwatched_start(since)
        log.info("CRI container %.80s ran and was gone before its status could be read", cid)

    def _problem(self, cid: str, problem: str) -> None:
        if problem:
            self.stats.spec_problems += 1
            log.warning("CRI container %.80s: %s", cid, problem)

    # -- the event stream ----------------------------------------------------------

    async def _handle(self, raw: bytes) -> list[ContainerLifecycleEvent]:
        self.stats.envelopes += 1
        try:
            msg = api_pb2.ContainerEventResponse.FromString(raw)
        except DecodeError:
            self.stats.count_failure("envelope")
            log.warning("skipped a CRI container event that does not decode (%d bytes)", len(raw))
            return []
        kind = (
            api_pb2.ContainerEventType.Name(msg.container_event_type)
            if msg.container_event_type in (api_pb2.ContainerEventType.values())
            else ""
        )
        cid = msg.container_id
        self._unreported.heard(cid)
        self._unreported.event(msg.created_at if 0 < msg.created_at < 1 << 62 else None, _monotonic())
        if not cid or not kind:
            self.stats.count_failure("field")
            log.warning("skipped a CRI container event without a container id or a known type")
            return []
        sb = msg.pod_sandbox_status if msg.HasField("pod_sandbox_status") else None
        pod = pod_of(sb.id, sb.metadata) if sb is not None and sb.id else None
        if pod is not None:
            self._pods[pod.sandbox_id] = pod
        if sb is not None and cid == sb.id:  # the sandbox's own lifecycle: registry only
            if msg.container_event_type == api_pb2.CONTAINER_DELETED_EVENT:
                self.registry.remove("", cid)
            else:
                self.registry.put(await self._fetch_sandbox(sb))
            return []
        old = self.registry.get("", cid)
        if msg.container_event_type == api_pb2.CONTAINER_DELETED_EVENT:
            self._sandbox_of.pop(cid, None)
            if old is None:
                return []
            self.registry.remove("", cid)
            return self._count(self._emit_delete(old, topic=kind))
        if pod is not None:
            self._sandbox_of[cid] = pod.sandbox_id
        got = await self._fetch(cid, pod)
        if got is None:
            sent = ns_time(msg.created_at)  # a backlog kept for the next reader (containerd 1.7)
            if sent is not None and sent < self._began:
                log.debug("CRI event of %.80s from before the observer began: not a run missed", cid)
            elif old is None and msg.container_event_type in (
                api_pb2.CONTAINER_STARTED_EVENT,
                api_pb2.CONTAINER_STOPPED_EVENT,
            ):
                self._unread_run(cid, event_start(msg))
            return []
        rec, created_at = got
        out = self._emit(old, rec, created_at or ns_time(msg.created_at), announce=True, topic=kind)
        self.registry.put(rec)
        return out

    def _unsaid(self, found: list[ContainerLifecycleEvent]) -> set[str]:
        """The containers whose changes a backstop relist ``found`` that the stream should have said (they
        then wait for their events, unreported.py): all but a start that failed. Created, now exited and
        never started, that container got no event: containerd 2.x sends STARTED only when the start
        succeeds and nothing when it fails (``internal/cri/server/container_start.go``). CRI-O removes
        such a container at once, without an event (``server/container_start.go``): created and gone, it
        is a run whose events may have been lost as well, so it stays a loss."""
        created = {e.container_id for e in found if e.event_type == LifecycleEventType.CREATE}
        out: set[str] = set()
        for e in found:
            rec = self.registry.get("", e.container_id)
            failed_start = rec is not None and rec.status == "stopped" and rec.started_at is None
            if e.container_id in created or not failed_start:
                out.add(e.container_id)
        return out

    # -- events out ----------------------------------------------------------------

    def _emit(
        self,
        old: ContainerRecord | None,
        rec: ContainerRecord,
        created_at: datetime | None,
        *,
        announce: bool,
        topic: str,
    ) -> list[ContainerLifecycleEvent]:
        if old is not None and rec.status == "stopped" and not rec.pid:
            rec.pid, rec.cgroup_path = old.pid, old.cgroup_path or rec.cgroup_path
        if rec.status == "stopped":
            # The runtime deleted the cgroup before saying the container exited, and says
            # OOMKilled only if containerd's shim reported it: the kernel's count (oom_watch.py),
            # also of a container first seen exited (its cgroup watched from its creation).
            exits = old is None or old.status in ("created", "running", "paused")
            said = rec.oom_killed or (old is not None and old.oom_killed)
            rec.oom_killed = self._oom_of_exit(said, rec) if exits else said
        if rec.status in ("created", "running", "paused") and not rec.cgroup_id:
            self._find_cgroup(rec)
        out = []
        for kind, ts in transitions(old, rec, created_at=created_at, announce_new=announce):
            out.append(
                lifecycle_event(kind, rec, timestamp=ts or datetime.now(UTC), topic=topic, runtime=RUNTIME)
            )
        return self._count(out)

    def _emit_delete(self, gone: ContainerRecord, *, topic: str) -> list[ContainerLifecycleEvent]:
        self.oom_watch.forget(("", gone.container_id))
        ev = lifecycle_event(
            LifecycleEventType.DELETE, gone, timestamp=datetime.now(UTC), topic=topic, runtime=RUNTIME
        )
        return self._count([ev])

    def _count(self, events: list[ContainerLifecycleEvent]) -> list[ContainerLifecycleEvent]:
        for ev in events:
            self.stats.count_event(str(ev.event_type))
        return events
