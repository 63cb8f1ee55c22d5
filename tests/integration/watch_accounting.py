"""Watch accounting for the operator tests: has kopf consumed every watch event the emulator sent?

``OperatorRun.settle()`` used to return once nothing was queued in the reconciler and no request
had come for a quiet moment. A starved operator that has not yet *read* the test's last write
satisfies that too, so ``patch(); settle(); assert`` failed on a loaded machine. This module
closes the gap from both ends of each watch stream:

- the emulator side (``WatchAccounting``, mixed into ``kubeharness.ApiServer``) numbers every
  watch stream kopf opens, opens it with a BOOKMARK event naming its number (kopf asks for
  bookmarks, reads them and hands them to nobody), and counts the events it sends on it;
- the kopf side (``KopfProbe``, one per ``OperatorRun``, found through a context variable that
  every task of the operator's loop inherits) counts, per stream number, the events kopf's watcher
  has taken from it, how many events it queued for its per-object workers and how many the workers
  have processed. A worker asleep in kopf's own delay for a retry due soon (a handler's
  TemporaryError: our finalizer retries after 2 s) is still reacting and is waited for; one asleep
  for longer (a peer's lease, a long backoff) waits on a timer, not on input, and counts as done.

``behind()`` lists the open streams kopf has not read to the end, ``KopfProbe.busy()`` the events
read but not processed. Streams whose connection is gone no longer count (kopf lists and watches
again). Outside an ``OperatorRun`` the kopf hooks do nothing.

The emulator side also closes a gap of kmock's own watch: it listed the objects, sent them, and
only then began to follow the event bus, so a write made while a new watch sent its first objects
was never delivered on it. The bus position is now taken under the same lock as the listing.
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import Any

import kopf._cogs.aiokits.aiotime as _aiotime
import kopf._cogs.clients.watching as _watching
import kopf._core.reactor.queueing as _queueing

WATCH_ID = "watch-accounting.stellaops.test/stream"
_ids = itertools.count(1)
RECEIVED: dict[int, int] = {}  # stream number -> events kopf's watcher has taken from it


@dataclass
class ServerStream:
    id: int
    resource: str
    raw: Any  # the aiohttp request: its transport is None once the connection is gone
    sent: int = 0
    ended: bool = False

    def open(self) -> bool:
        return not self.ended and self.raw is not None and self.raw.transport is not None


class WatchAccounting:
    """A replacement for kmock's ``_serve_watch`` that numbers and counts kopf's streams."""

    _lock: Any
    _buses: Any
    _objects: Any
    _rv: int
    _watch_streams: dict[int, ServerStream]  # set by the class that mixes this in

    def behind(self) -> list[str]:
        """The open kopf streams with events kopf's watcher has not taken yet."""
        out = []
        for sid, stream in list(self._watch_streams.items()):
            if not stream.open():
                self._watch_streams.pop(sid, None)
                continue
            got = RECEIVED.get(sid, 0)
            if got < stream.sent:
                out.append(f"stream {sid} ({stream.resource}): {got} of {stream.sent} read")
        return out

    async def _serve_watch(self, request: Any) -> AsyncGenerator[Any, None]:
        yield b""  # the headers go out now, even when nothing happens
        resource = request.resource
        assert resource is not None
        raw = request._raw_request
        counted = (
            raw is not None
            and request.params.get("allowWatchBookmarks") == "true"
            and str(raw.headers.get("User-Agent", "")).startswith("kopf/")
        )
        bus = self._buses[resource]
        async with self._lock:
            events = [
                {"type": "ADDED", "object": obj.raw}
                for (res, ns, name), obj in self._objects.items()
                if _matches(request, res, ns, name) and not obj.deleted
            ]
            marker = await bus.mark()  # what is written from now on reaches this stream
        name = f"{resource.group}/{resource.version}" if resource.group else resource.version
        stream = ServerStream(next(_ids), f"{name}/{resource.plural}", raw)
        try:
            if counted:
                self._watch_streams[stream.id] = stream
                yield _bookmark(request, stream.id, str(self._rv))
            for event in events:
                stream.sent += 1
                yield event
            async for event in bus.stream(since=marker):
                meta = event.get("object", {}).get("metadata", {})
                if _matches(request, resource, meta.get("namespace"), meta.get("name")):
                    stream.sent += 1
                    yield event
        finally:
            stream.ended = True
            self._watch_streams.pop(stream.id, None)
            await bus.unmark(marker)


def _matches(request: Any, resource: Any, namespace: str | None, name: str | None) -> bool:
    return bool(
        resource == request.resource
        and (request.namespace is None or namespace == request.namespace)
        and (request.name is None or name == request.name)
    )


def _bookmark(request: Any, sid: int, rv: str) -> dict[str, Any]:
    res = request.resource
    api_version = f"{res.group}/{res.version}" if res.group else res.version
    return {
        "type": "BOOKMARK",
        "object": {
            "apiVersion": api_version,
            "kind": "",
            "metadata": {"resourceVersion": rv, "annotations": {WATCH_ID: str(sid)}},
        },
    }


# -- the kopf side ----------------------------------------------------------------------------


class KopfProbe:
    """What one operator's kopf has listed, queued for its workers, processed, and sleeps on."""

    def __init__(self) -> None:
        self.handed = 0  # events the watchers queued for the per-object workers
        self.processed = 0  # events the workers' processors are done with
        self.sleeping = 0  # processors asleep in one of kopf's long delays
        self.paused: dict[Any, Any] = {}  # (resource, namespace) watched -> kopf's pause toggles
        self.listed: set[Any] = set()  # (resource, namespace) whose first listing is done

    def busy(self) -> int:
        return self.handed - self.processed - self.sleeping

    def unstarted(self, insights: Any) -> list[str]:
        """What kopf has yet to start: its scan of the API, or a watched resource's first listing
        (a watch kopf holds paused, e.g. for a peer of higher priority, is not waited for)."""
        if not (insights.ready_resources.is_set() and insights.ready_namespaces.is_set()):
            return ["the scan of the API's resources"]
        out = []
        namespaces = list(insights.namespaces)
        for resource in list(insights.watched_resources):
            for ns in namespaces if resource.namespaced else [None]:
                key = (resource, ns)
                paused = self.paused.get(key)
                if key not in self.listed and not (paused is not None and paused.is_on()):
                    out.append(f"{resource.plural}@{ns}")
        return out


PROBE: contextvars.ContextVar[KopfProbe | None] = contextvars.ContextVar("kopf_probe", default=None)
_IN_PROCESSOR: contextvars.ContextVar[bool] = contextvars.ContextVar("kopf_in_processor", default=False)
# A worker's sleep this short is part of its reaction (a handler's retry: our finalizer's 2 s, kopf's
# 1 s wait for its own patch to come back): waited for. A longer one (a peer's lease, a long
# backoff) is a timer: the operator is quiet meanwhile.
RETRY_SOON_S = 10.0

_orig_infinite_watch = _watching.infinite_watch
_orig_watcher = _queueing.watcher
_orig_sleep = _aiotime.sleep


async def _infinite_watch(**kwargs: Any) -> AsyncIterator[Any]:
    probe = PROBE.get()
    current: int | None = None
    key = (kwargs.get("resource"), kwargs.get("namespace"))
    if probe is not None:
        probe.paused[key] = kwargs.get("operator_paused")
    async for raw_event in _orig_infinite_watch(**kwargs):
        if probe is not None and raw_event is _watching.Bookmark.LISTED:
            probe.listed.add(key)
        if probe is not None and isinstance(raw_event, dict):
            meta = (raw_event.get("object") or {}).get("metadata") or {}
            sid = (meta.get("annotations") or {}).get(WATCH_ID)
            if raw_event.get("type") == "BOOKMARK" and sid is not None:
                current = int(sid)
                RECEIVED.setdefault(current, 0)
                continue  # ours alone: kopf's watcher would skip it anyway
            if current is not None:
                RECEIVED[current] += 1
            if raw_event.get("type") != "BOOKMARK":
                probe.handed += 1
        yield raw_event


def _counting(probe: KopfProbe, processor: Callable[..., Any]) -> Callable[..., Any]:
    async def process(**kwargs: Any) -> Any:
        token = _IN_PROCESSOR.set(True)
        try:
            return await processor(**kwargs)
        finally:
            _IN_PROCESSOR.reset(token)
            probe.processed += 1

    return process


async def _watcher(*, processor: Callable[..., Any], **kwargs: Any) -> None:
    probe = PROBE.get()
    await _orig_watcher(processor=processor if probe is None else _counting(probe, processor), **kwargs)


async def _sleep(delays: Any, *args: Any, **kwargs: Any) -> Any:
    probe = PROBE.get()
    if probe is None or not _IN_PROCESSOR.get() or _shortest(delays) <= RETRY_SOON_S:
        return await _orig_sleep(delays, *args, **kwargs)
    probe.sleeping += 1
    try:
        return await _orig_sleep(delays, *args, **kwargs)
    finally:
        probe.sleeping -= 1


def _shortest(delays: Any) -> float:
    """The time kopf's sleep() will sleep at most (it takes a number or a collection of them)."""
    values = delays if isinstance(delays, Collection) else [delays]
    return min((float(d) for d in values if d is not None), default=0.0)


_watching.infinite_watch = _infinite_watch  # type: ignore[assignment]
_queueing.watcher = _watcher  # type: ignore[assignment]
_aiotime.sleep = _sleep
