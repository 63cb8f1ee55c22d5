"""The Docker observer reads the Engine's event stream while it handles an event, and drops what it ignores.

moby gives each subscriber a channel of 1024 events and skips an event, silently, for a subscriber
that has not taken it within 100 ms once that channel is full (``pkg/pubsub/publisher.go``
``sendTopic``). The observer read one line, handled it (an inspect or two), then read the next: a
burst of events filled the channel, and, the stream unfiltered (docker_replay.py), network and
volume events it ignores took slots too. A stand-in Engine here counts the lines the observer has
taken from the stream while the inspect of the first container is held: all of them, now, not one.
What the observer keeps waits in a bounded queue of its own; an event that finds it full is a known
loss: counted, and the time since its stamp is a hole (docker_reader.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle import docker_reader
from stellaops_runtime.lifecycle.docker_client import DockerClient
from stellaops_runtime.lifecycle.docker_observer import DockerObserver

NS = 1_000_000_000
T0 = time.time_ns() + 3600 * NS  # stamped after the stream's first line came: live, no replay


def _line(kind: str, action: str, actor: str, at: int) -> bytes:
    msg = {"Type": kind, "Action": action, "Actor": {"ID": actor, "Attributes": {}}, "timeNano": at}
    return json.dumps(msg).encode()


class _Engine(DockerClient):
    """An Engine whose event stream is ``lines`` (then open, quiet) and whose inspect of a container
    waits for ``release``; ``taken`` counts the lines the observer has read off the stream."""

    def __init__(self, lines: list[bytes]) -> None:
        super().__init__("unix:///nonexistent/docker.sock")
        self.lines = lines
        self.taken = 0
        self.release = asyncio.Event()
        self.inspecting = asyncio.Event()

    async def ping(self) -> None:
        return None

    async def get_json(self, path: str) -> Any:
        return []  # nothing ran before: the first list is empty

    async def get_or_none(self, path: str) -> Any:
        if path.startswith("/containers/"):
            self.inspecting.set()
            await self.release.wait()
            cid = path.split("/")[2]
            return {
                "Id": cid,
                "Image": "",
                "Config": {"Image": "shop/cart:1"},
                "State": {"Status": "created"},
            }
        return None

    async def events(  # type: ignore[override]
        self, filters: dict[str, list[str]], *, since_ns: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        for line in self.lines:
            self.taken += 1
            yield line
        await asyncio.Event().wait()  # open and quiet


async def _until(cond: Any, what: str) -> None:
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"no {what}")


def _engine(wanted: int, ignored: int) -> _Engine:
    # one create held at its inspect, then the Engine's burst: network events, and creates
    lines = [_line("container", "create", "a" * 64, T0 + NS)]
    lines += [_line("network", "connect", "n" * 64, T0 + NS + i) for i in range(ignored)]
    lines += [_line("container", "create", f"{i:064x}", T0 + 2 * NS + i) for i in range(wanted)]
    return _Engine(lines)


def test_the_stream_is_read_while_an_event_is_handled() -> None:
    engine = _engine(wanted=20, ignored=3000)
    obs = DockerObserver(engine, resync_seconds=600)

    async def main() -> tuple[int, list[Any]]:
        stop, seen = asyncio.Event(), []

        async def consume() -> None:
            async for ev in obs.events(stop):
                seen.append(ev)

        task = asyncio.create_task(consume())
        await _until(engine.inspecting.is_set, "inspect of the first container")
        await _until(lambda: engine.taken == len(engine.lines), "read of the whole burst")
        taken = engine.taken  # all of it, while the first event's inspect is still held
        engine.release.set()
        await _until(lambda: len(seen) == 21, "the 21 creates")
        stop.set()
        await asyncio.wait_for(task, 5)
        return taken, seen

    taken, seen = asyncio.run(main())
    assert taken == 3021, taken
    assert [e.event_type for e in seen] == [T.CREATE] * 21
    assert obs.stats.ignored == {"network/connect": 3000}, obs.stats.ignored
    assert obs.stats.missed_events == 0


def test_kept_events_past_the_queue_are_a_known_loss_and_a_hole(monkeypatch: Any) -> None:
    monkeypatch.setattr(docker_reader, "MAX_WAITING", 5)
    engine = _engine(wanted=20, ignored=100)
    obs = DockerObserver(engine, resync_seconds=600)

    async def main() -> list[Any]:
        stop, seen = asyncio.Event(), []

        async def consume() -> None:
            async for ev in obs.events(stop):
                seen.append(ev)

        task = asyncio.create_task(consume())
        await _until(engine.inspecting.is_set, "inspect of the first container")
        await _until(lambda: engine.taken == len(engine.lines), "read of the whole burst")
        engine.release.set()
        await _until(lambda: obs.stats.missed_events == 1, "the loss counted")
        stop.set()
        await asyncio.wait_for(task, 5)
        return seen

    seen = asyncio.run(main())
    # at most 5 waiting (the first create among them, or already taken when its inspect began); the
    # creates after them were dropped, the first of those (create i, stamped T0 + 2 s + i ns) starts the hole
    assert len(seen) in (5, 6), seen
    kept = len(seen) - 1  # creates of the burst handled
    first_dropped = T0 + 2 * NS + kept
    assert first_dropped - 5_000 <= obs.take_unwatched_from() <= first_dropped  # never after it
    assert obs.stats.resyncs >= 2  # the registry rebuilt from a list after the loss


def test_an_event_s_labels_do_not_wait_with_it(monkeypatch: Any) -> None:
    """Every event carries its container's labels, whose size a user picks (a line may be 1 MiB; with
    cri-dockerd a pod's annotations, up to 256 KiB, are among them). The observer uses two attributes
    of an event (an image's ``name``, a container's ``exitCode``); the labels come from the inspect.
    The queue kept the whole parsed event, about 7 times its line's bytes in Python objects for labels
    of small entries, and counted the line against MAX_WAITING_BYTES: 32 MiB of lines held some 220
    MiB, and a burst of 33 containers with 1 MiB of labels each was a loss (a hole). What waits now
    is the event without its labels, and its size is what counts."""
    monkeypatch.setattr(docker_reader, "MAX_WAITING_BYTES", 1 << 20)
    labels = {f"label-{j}": "v" for j in range(8000)}  # 100 KiB of small labels on each event
    lines = [_line("container", "create", "a" * 64, T0 + NS)]
    for i in range(40):  # 4 MiB of creates while the first is held
        msg = {"Type": "container", "Action": "create", "timeNano": T0 + 2 * NS + i,
               "Actor": {"ID": f"{i:064x}", "Attributes": labels}}  # fmt: skip
        lines.append(json.dumps(msg).encode())
    die = {"Type": "container", "Action": "die", "timeNano": T0 + 3 * NS,
           "Actor": {"ID": "a" * 64, "Attributes": {**labels, "exitCode": "137"}}}  # fmt: skip
    lines.append(json.dumps(die).encode())
    engine = _Engine(lines)
    obs = DockerObserver(engine, resync_seconds=600)
    kept: list[int] = []
    read = obs._read

    def _read(line: bytes) -> dict[str, Any] | None:
        msg = read(line)
        kept.append(len(json.dumps(msg)))
        return msg

    monkeypatch.setattr(obs, "_read", _read)

    async def main() -> list[Any]:
        stop, seen = asyncio.Event(), []

        async def consume() -> None:
            async for ev in obs.events(stop):
                seen.append(ev)

        task = asyncio.create_task(consume())
        await _until(engine.inspecting.is_set, "inspect of the first container")
        await _until(lambda: engine.taken == len(engine.lines), "read of the whole burst")
        engine.release.set()
        await _until(lambda: len(seen) == 42, "the 41 creates and the die")
        stop.set()
        await asyncio.wait_for(task, 5)
        return seen

    seen = asyncio.run(main())
    assert obs.stats.missed_events == 0 and obs.take_unwatched_from() == 0
    assert [e.event_type for e in seen] == [T.CREATE] * 41 + [T.DIE], seen
    assert seen[-1].exit_code == 137  # the attribute the observer uses is kept
    assert max(kept) < 1024, kept  # no labels wait in the agent's queue


def test_kept_events_past_the_queue_s_bytes_are_a_known_loss(monkeypatch: Any) -> None:
    """What waits is bounded by its size too (MAX_WAITING_BYTES): an Engine naming its actors with
    100 KiB each (a stand-in's hostile IDs) fills it; past it, as past MAX_WAITING, an event is a
    known loss."""
    monkeypatch.setattr(docker_reader, "MAX_WAITING_BYTES", 1 << 20)
    lines = [_line("container", "create", "a" * 64, T0 + NS)]
    for i in range(40):  # 4 MiB of creates while the first is held
        lines.append(_line("container", "create", f"{i:064x}" * 1600, T0 + 2 * NS + i))
    engine = _Engine(lines)
    obs = DockerObserver(engine, resync_seconds=600)

    async def main() -> None:
        stop = asyncio.Event()

        async def consume() -> None:
            async for _ in obs.events(stop):
                pass

        task = asyncio.create_task(consume())
        await _until(engine.inspecting.is_set, "inspect of the first container")
        await _until(lambda: engine.taken == len(engine.lines), "read of the whole burst")
        engine.release.set()
        await _until(lambda: obs.stats.missed_events == 1, "the loss counted")
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert obs.stats.missed_events == 1
