"""The CRI lifecycle observer: ``GetContainerEvents`` where the runtime has it, relisting where not.

Same API and registry as the containerd and Docker observers (:mod:`.base`), for nodes whose runtime
speaks only the Kubernetes CRI (CRI-O) or when the agent is told to use it (``lifecycle.runtime:
cri``). Each connection asks for the runtime's Version, opens the ``GetContainerEvents`` stream
(cri-api v0.26+: containerd 1.7, CRI-O 1.26), then rebuilds the registry from ListPodSandbox and
ListContainers plus a verbose ContainerStatus of each container (pid, environment and cgroups path
from the runtime's ``info`` JSON; image digest from the status's image reference or ImageStatus's
repo digests), and lists again once the stream is live or SETTLE_SECONDS after asking for it before
it says it is in sync. What the stream is trusted with is cri_stream.py's: a runtime without it
(``UNIMPLEMENTED``, or OK and empty before its first message, at once or late) is relisted every
``relist_seconds``; so is one whose
stream is not yet live (its first message is the only sign) or splits events between its readers; a
live stream of its own is backed by a relist every ``resync_seconds``.

An event and a relist both end in the same comparison (cri_apply.py)
(:func:`~stellaops_runtime.lifecycle.cri_records.transitions`) of what the registry held with what
the runtime says now, so a container seen by both is announced once: CREATE, START (pid, cgroup),
DIE then STOP (exit code, finished_at, OOM from the status's ``OOMKilled`` reason or the kernel's
count kept while the cgroup lived, oom_watch.py; the CRI deletes a task when it exits, as
containerd's TaskExit and TaskDelete), DELETE when it leaves the list. What ran before the
observer's first sync is listed, not announced; after a reconnect the differences are announced with
the times the runtime recorded. Pod sandboxes are registry entries only (they carry the pod's labels
and opt-out annotation). Image pulls are not seen: the CRI has no image events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from stellaops_runtime import rpc
from stellaops_runtime.contracts.lifecycle import ContainerLifecycleEvent
from stellaops_runtime.lifecycle.cgroups import CgroupResolver
from stellaops_runtime.lifecycle.cri_apply import CriApply
from stellaops_runtime.lifecycle.cri_client import CriClient
from stellaops_runtime.lifecycle.cri_stream import SETTLE_SECONDS, shared_stream, stream_absent, why
from stellaops_runtime.lifecycle.registry import ContainerRegistry
from stellaops_runtime.lifecycle.unreported import IN_FLIGHT_SECONDS
from stellaops_runtime.privacy.filter import PrivacyFilter

log = logging.getLogger(__name__)


def _ns(at: datetime | None) -> int:
    return int(at.timestamp() * 1e9) if at is not None else 0


class CriObserver(CriApply):
    """Watches one CRI runtime; see the module docstring for what it emits."""

    def __init__(
        self,
        client: CriClient,
        *,
        privacy: PrivacyFilter | None = None,
        resolver: CgroupResolver | None = None,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        relist_seconds: float = 2.0,
        resync_seconds: float = 60.0,
        on_sync: Callable[[ContainerRegistry], None] | None = None,
        settle_seconds: float = SETTLE_SECONDS,
        in_flight_seconds: float = IN_FLIGHT_SECONDS,
    ) -> None:
        super().__init__(
            client,
            privacy=privacy,
            resolver=resolver,
            reconnect_initial=reconnect_initial,
            reconnect_max=reconnect_max,
            on_sync=on_sync,
            in_flight_seconds=in_flight_seconds,
        )
        self.relist_seconds = relist_seconds
        self.resync_seconds = resync_seconds
        self.settle_seconds = settle_seconds
        self.mode = ""  # "events" while the stream is open, "relist" where the runtime lacks it
        self.runtime_name = ""  # the runtime's own name (Version): "containerd", "cri-o" ...
        self.shared = True  # the runtime's stream may give events to other readers (cri_stream.py)
        self.live = False  # the stream's first message came on this connection
        self._announce = False  # False until the first registry build of this observer

    async def _close(self) -> None:
        await self.client.close()

    async def resync(self) -> None:
        """Rebuild the registry from the runtime's lists (connecting if needed)."""
        await self.client.connect()
        await self._relist(announce=False, rebuild=True)

    # -- one connection --------------------------------------------------------

    async def _connection(self, stop: asyncio.Event) -> AsyncIterator[ContainerLifecycleEvent]:
        version = await self.client.connect()
        self.runtime_name = version.runtime_name[:64]
        # A stream that hands events to other readers too only speeds things up (cri_stream.py).
        self.shared = shared_stream(version.runtime_name, version.runtime_version)
        self.live = False  # a message came: the runtime registered the stream (it says so no other way)
        self._digests.clear()
        self._unreported.clear()
        stream = self.client.container_events()
        pending: asyncio.Future[Any] | None = asyncio.ensure_future(anext(stream))
        stopper: asyncio.Future[Any] | None = None
        self.mode = "events"
        await asyncio.sleep(0)  # the stream is requested before the list is read
        try:
            first = await self._relist(announce=self._announce, rebuild=True)
            if pending is not None:  # see SETTLE_SECONDS: list again once the stream is live
                await asyncio.wait((pending,), timeout=self.settle_seconds)
                failed = pending.exception() if pending.done() else None
                if self._no_stream(failed):
                    pending = None
                elif failed is not None:
                    # never live: what started since the first list may be on neither; not in sync
                    raise ConnectionError(f"the CRI event stream failed at once: {type(failed).__name__}")
                else:
                    self.live = pending.done()
                    first += await self._relist(announce=self._announce, rebuild=False)
            self._synced()
            self._announce = True
            for ev in first:
                yield ev
            stopper = asyncio.ensure_future(stop.wait())
            clock = asyncio.get_running_loop().time
            next_list = clock() + self._interval(pending)  # a deadline: events do not put it off
            while True:
                waiting = {stopper} if pending is None else {stopper, pending}
                due = self._unreported.wait(clock())
                timeout = max(0.0, next_list - clock()) if due is None else min(due, next_list - clock())
                done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if stopper in done and (pending is None or pending not in done):
                    return
                self._check_unreported(clock())
                if clock() >= next_list:
                    found = await self._relist(announce=True, rebuild=False)
                    if self._trusted(pending):  # a live stream of its own should have said it
                        ids, at = self._unsaid(found), self._listed_at
                        self._unreported.found(ids, clock(), self._list_before, _ns(at))
                    for ev in found:
                        yield ev
                    next_list = clock() + self._interval(pending)
                if pending is None or pending not in done:
                    continue
                try:
                    raw = pending.result()
                except (StopAsyncIteration, rpc.RpcError) as e:
                    # Before its first message, OK and empty (or UNIMPLEMENTED) is CRI-O's "no stream",
                    # answered late by a loaded CRI-O; the lists are the watch until then anyway, so
                    # relisting loses nothing, where a reconnect was a hole and two more lists each
                    # time. A live stream that ends: the runtime closed it.
                    if self.live or not self._no_stream(e):
                        raise ConnectionError(f"the CRI event stream ended: {why(e)}") from None
                    pending, next_list = None, clock() + self.relist_seconds
                    continue
                if not self.live:  # registered now: list what changed since the last list, before it
                    self.live = True
                    for ev in await self._relist(announce=True, rebuild=False):
                        yield ev
                    next_list = clock() + self._interval(pending)
                for ev in await self._handle(raw):
                    yield ev
                pending = asyncio.ensure_future(anext(stream))
        finally:
            self.mode = ""
            for fut in (pending, stopper):
                if fut is not None and not fut.done():
                    fut.cancel()
                    with contextlib.suppress(BaseException):
                        await fut
            await stream.aclose()

    def _check_unreported(self, now: float) -> None:
        lost, since = self._unreported.lost(now)
        if lost:
            log.warning(
                "%s's event stream did not report a change the list found: events since %s may be "
                "lost (a hole; lifecycle_missed_events_total)",
                self.runtime_name or "the CRI runtime", since.isoformat() if since else "?",
            )  # fmt: skip
            self._missed_events(since)

    def _trusted(self, pending: object) -> bool:
        """Whether the stream is the watch: live (a message came) and the runtime's own (not shared)."""
        return pending is not None and self.live and not self.shared

    def _interval(self, pending: object) -> float:
        """Until the stream shows it is live, or while it is shared, the lists are the watch."""
        return self.resync_seconds if self._trusted(pending) else self.relist_seconds

    def _no_stream(self, failed: BaseException | None) -> bool:
        """Whether the stream's end says the runtime has none (cri_stream.py): relisted instead."""
        if not stream_absent(failed):
            return False
        self.mode = "relist"
        log.info(
            "%s at %s has no GetContainerEvents stream (%s); relisting every %.1fs",
            self.runtime_name or "the CRI runtime", self.address, why(failed), self.relist_seconds,
        )  # fmt: skip
        return True
