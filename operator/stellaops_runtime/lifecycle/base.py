"""What every runtime's lifecycle observer shares: registry, counters, reconnect loop.

A runtime observer (containerd, Docker) implements ``_connection``: connect,
open its event stream, rebuild the registry (then call ``_synced``), and yield
ContainerLifecycleEvents until the stream fails or ``stop`` is set. This
class runs that forever: a failure is counted (``stream_errors``) and logged,
the registry stays as it was (``by_cgroup`` keeps answering), and the next
connection follows a jittered, capped exponential backoff. It also resolves a
record's cgroup id from its init pid and indexes it.

An init pid named by an event handled late (a backlog, a rebuild) may by
then belong to another process (the init exited and the kernel reused its
pid): its cgroup, the host's or another container's, must not become this
container's. A cgroup path naming the container's id is the container's
(containerd, Docker, the CRI runtimes all name the container's cgroup after
it); otherwise a process that started after the event (or after the start
the runtime reports) is not the one the runtime meant, and the cgroup is
left unresolved, counted in ``cgroup_unresolved``. When the init is gone
(or refused so), the cgroup the container's spec names (``cgroup_path``,
containerd's and the CRI's ``linux.cgroupsPath``) is taken while its
directory still exists: a container that exited before the observer handled
its task events still gets the cgroup id its processes' records carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.lifecycle import ContainerLifecycleEvent
from stellaops_runtime.contracts.redact import redact_error
from stellaops_runtime.lifecycle.cgroups import CgroupResolver, directory_of
from stellaops_runtime.lifecycle.metrics import LifecycleCollector, LifecycleStats
from stellaops_runtime.lifecycle.oom_watch import OomWatch
from stellaops_runtime.lifecycle.registry import ContainerRecord, ContainerRegistry
from stellaops_runtime.privacy.filter import PrivacyFilter
from stellaops_runtime.sources.tetragon_grpc import Backoff

log = logging.getLogger(__name__)

# How much later than the runtime's event (or reported start) an init pid's process may seem to
# have started: the runtimes' and the kernel's readings of one wall clock, and clock slew.
START_SLACK_SECONDS = 0.5


class _ConsumerError(Exception):
    """An exception of the ``on_sync`` callback: the consumer's, so it ends ``events``, never retried."""


class LifecycleObserver:
    """The shared part; subclasses set ``runtime`` and ``address`` and implement the connection."""

    runtime = ""

    def __init__(
        self,
        *,
        address: str,
        namespace: str,
        privacy: PrivacyFilter | None = None,
        resolver: CgroupResolver | None = None,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        on_sync: Callable[[ContainerRegistry], None] | None = None,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.privacy = privacy or PrivacyFilter(PrivacyConfig.model_validate({}))
        self.resolver = resolver or CgroupResolver()
        self.registry = ContainerRegistry()
        self.oom_watch = OomWatch(str(getattr(self.resolver, "proc", "/proc")))
        self.stats = LifecycleStats()
        self.backoff = Backoff(initial=reconnect_initial, maximum=reconnect_max)
        self.synced = asyncio.Event()  # set after each rebuild, cleared on disconnect
        # Containers whose task runs where the registry does not follow them (another containerd
        # namespace): while there is one, a silent container of any image may be running.
        self.unwatched: set[tuple[str, str]] = set()
        self.on_sync = on_sync  # called after each rebuild, before that connection's first event
        # The earliest start (ns) of a run counted in ``stats.unwatched_starts`` since the agent's
        # last sample took it (0: none): the time the registry missed reaches back to it.
        self._unwatched_from = 0

    # -- the API ---------------------------------------------------------------

    def take_unwatched_from(self) -> int:
        """The earliest start (ns since the epoch) of a run the registry could not name, since the last
        call (0: none, or none with a known start). The agent's sample makes the time from there a
        hole (agent/lifecycle_part.py): that container may have run before the sample in sync."""
        took, self._unwatched_from = self._unwatched_from, 0
        return took

    def by_cgroup(self, cgroup_id: int) -> ContainerRecord | None:
        """The running container in cgroup ``cgroup_id`` (a copy), or ``None``."""
        return self.registry.by_cgroup(cgroup_id)

    def collector(self) -> LifecycleCollector:
        return LifecycleCollector(
            self.stats, lambda: (len(self.registry), len(self.registry.cgroup_ids())), self.oom_watch.counts
        )

    async def events(self, stop: asyncio.Event | None = None) -> AsyncIterator[ContainerLifecycleEvent]:
        """Lifecycle events until ``stop`` is set, reconnecting (with backoff) whenever the stream fails."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                async for ev in self._connection(stop):
                    yield ev
            except asyncio.CancelledError:
                raise
            except _ConsumerError as e:
                raise e.__cause__ or e from None
            except Exception as e:  # every failure is retried; count it and say why
                self.stats.stream_errors += 1
                self.stats.last_error = redact_error(e)
                log.warning("%s event stream at %s: %s", self.runtime, self.address, self.stats.last_error)
            finally:
                self.stats.connected = False
                self.synced.clear()
                await self._close()
            if stop.is_set():
                self.oom_watch.close()
                break
            delay = self.backoff.next_delay()
            log.info("reconnecting to %s at %s in %.2fs", self.runtime, self.address, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def resync(self) -> None:
        """Rebuild the registry from the runtime's lists (connecting if needed)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close what a ``resync`` outside ``events`` left open."""
        await self._close()

    # -- for subclasses ----------------------------------------------------------

    def _connection(self, stop: asyncio.Event) -> AsyncIterator[ContainerLifecycleEvent]:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    def _unwatched_start(self, started: datetime | None) -> None:
        """A container ran that the registry cannot name (another namespace's, or gone before it
        could be read): the agent's next sample is not in sync, and, when its start is known, the
        time since then is a hole (``take_unwatched_from``)."""
        self.stats.unwatched_starts += 1
        self._hole_since(started)

    def _missed_events(self, since: datetime | None) -> None:
        """The event stream may have lost events since ``since`` that no list makes up for (a container
        created, run and removed there is named by nothing): counted (``missed_events``), the agent's
        next sample is not in sync, and the time since ``since`` is a hole (``take_unwatched_from``)."""
        self.stats.missed_events += 1
        self._hole_since(since)

    def _hole_since(self, since: datetime | None) -> None:
        """The time since ``since`` (when known) is a hole: the earliest such time until it is taken."""
        ns = int(since.timestamp() * 1_000_000_000) if since is not None else 0
        if ns > 0 and (self._unwatched_from == 0 or ns < self._unwatched_from):
            self._unwatched_from = ns

    def _synced(self) -> None:
        """Call after the rebuild of a new connection, before its first event."""
        if self.stats.connects:
            self.stats.reconnects += 1
        self.stats.connects += 1
        self.stats.connected = True
        self.synced.set()
        self.backoff.reset()
        self._notify()

    def _notify(self) -> None:
        """Tell ``on_sync`` the registry was rebuilt (after each connection's rebuild, and a rebuild on
        a connection, which yields no event to refresh the consumer's view by)."""
        if self.on_sync is not None:
            try:
                self.on_sync(self.registry)
            except Exception as e:
                raise _ConsumerError() from e

    def _rebuilt(self, records: list[ContainerRecord]) -> None:
        _, removed = self.registry.replace_all(self.namespace, records)
        self.stats.resyncs += 1
        self.stats.resync_removed += removed
        self.oom_watch.retain({(self.namespace, r.container_id) for r in records})

    def _find_cgroup(self, rec: ContainerRecord, at: datetime | None = None) -> None:
        """Resolve and index the cgroup of a record whose task runs (counted when not found).

        ``at``: when the runtime said the task had this pid (its event's time); the
        record's ``started_at`` when not given. See the module docstring."""
        if rec.status not in ("created", "running", "paused") or not rec.pid:
            return
        info, from_pid = self.resolver.resolve(rec.pid), True
        if info is not None and info.cgroup_id and not self._same_process(rec, info.path, at):
            log.warning(
                "container %s: pid %d is now another process's (in %s): its cgroup is not the container's",
                rec.container_id[:12], rec.pid, info.path,
            )  # fmt: skip
            info = None
        if info is None or not info.cgroup_id:
            # The init is gone (or its pid another's): the spec's cgroup, while its directory lasts.
            resolve_spec = getattr(self.resolver, "resolve_spec", None)
            spec = resolve_spec(rec.cgroup_path) if resolve_spec is not None and rec.cgroup_path else None
            if spec is not None and spec.cgroup_id and rec.container_id and rec.container_id in spec.path:
                info, from_pid = spec, False  # named after the container (never a shared one a spec names)
        if info is None or not info.cgroup_id:
            self.stats.cgroup_unresolved += 1
            if info is not None:
                rec.cgroup_path = info.path
            return
        self.registry.set_cgroup(rec, info.path, info.cgroup_id)
        self._watch_oom(rec, from_pid=from_pid)

    def _watch_oom(self, rec: ContainerRecord, *, from_pid: bool) -> None:
        """Keep the OOM-kill count of the container's own cgroup while it exists (oom_watch.py)."""
        if not rec.container_id:
            return
        mounts = getattr(self.resolver, "mounts", None)
        v2_dir = directory_of(rec.cgroup_path, mounts()) if mounts is not None else None
        found = self.oom_watch.counter_file(rec.pid if from_pid else 0, v2_dir, rec.container_id)
        if found is not None:
            self.oom_watch.watch((rec.namespace, rec.container_id), rec.cgroup_id, *found)

    def _oom_at_exit(self, rec: ContainerRecord) -> bool | None:
        """Whether the kernel OOM-killed a process in the container's own cgroup during this run:
        the watched count (oom_watch.py), else the cgroup's count if its directory is still there;
        None when its cgroup came and went before its counter could be opened, or (v1) an ancestor's
        OOM was notified and the cgroup went before its victim was known (not known)."""
        key = (rec.namespace, rec.container_id)
        kills = self.oom_watch.final(key)
        if kills is None:
            return None if self.oom_watch.missed(key) else self._oom_counted(rec)
        if kills:
            self.stats.oom_from_cgroup += 1
        return True if kills else None if self.oom_watch.unsure(key) else False

    def _oom_of_exit(self, said: bool | None, rec: ContainerRecord) -> bool | None:
        """The ``oom_killed`` of an exit: True when the runtime (``said``) or the kernel's count says
        so; None (not known) when either could not tell; else False."""
        if said:
            return True
        found = self._oom_at_exit(rec)
        return True if found else None if found is None or said is None else False

    def _oom_counted(self, rec: ContainerRecord) -> bool:
        """Whether the kernel counted an OOM kill in the container's own cgroup (see ``cgroups``).

        Only a cgroup named after the container: a shared one counts its neighbours' kills."""
        oom_kills = getattr(self.resolver, "oom_kills", None)
        if oom_kills is None or not rec.cgroup_path or not rec.container_id:
            return False
        if rec.container_id not in rec.cgroup_path:
            return False
        kills = oom_kills(rec.cgroup_path)
        if kills:
            self.stats.oom_from_cgroup += 1
        return bool(kills)

    def _same_process(self, rec: ContainerRecord, path: str, at: datetime | None) -> bool:
        """Whether the process now at ``rec.pid`` (in cgroup ``path``) can be the one the runtime named."""
        if rec.container_id and rec.container_id in path:
            return True
        at = at or rec.started_at
        started = getattr(self.resolver, "started", None)
        since = started(rec.pid) if at is not None and started is not None else None
        return since is None or at is None or since <= at.timestamp() + START_SLACK_SECONDS
