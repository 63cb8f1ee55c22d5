"""Read Docker's event stream as fast as the Engine sends it, keeping only what the observer uses.

The Engine gives each subscriber a channel of 1024 events (moby ``daemon/events/events.go``
``bufferSize``, ``pkg/pubsub/publisher.go``) and, once it is full, waits 100 ms per event before
skipping it for that subscriber, silently (``sendTopic``). The observer handled each line before
it read the next (an inspect or two per container event), so a burst filled that channel; and with
the stream unfiltered (docker_replay.py needs every type) network and volume events, which the
observer ignores, took its slots too. A task now reads every line as it arrives: ``keep`` sees it
(the replay check, the counts) and returns the message the observer wants, or None for one of no
interest, dropped at once. The kept ones wait here as :func:`kept` trims them: the fields the
observer uses, without the container's labels an event carries (of a size a user picks; a parsed
label costs several times its bytes), at most ``limit`` of them and ``max_bytes`` of their size
(:func:`size_of`). One that finds no room is dropped as well, but knowingly: a :class:`Lost`
marker takes its place in the order, holding the stamp of the first event dropped there, and the
observer makes the time since then a hole (docker_observer.py). Pure asyncio; no I/O of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

MAX_WAITING = 4096  # kept events waiting for the observer: 4 x the Engine's own channel
# ... and at most this size of them (size_of). A line carries its container's labels, of a size a
# user picks (up to 1 MiB, docker_client.MAX_EVENT_BYTES); trimmed (kept), an event is a few hundred
# bytes, so this bounds what an Engine's odd actor names could hold, not a burst of labels
MAX_WAITING_BYTES = 32 << 20
# the attributes the observer reads of an event (an image's name, a container's exit code); the
# others are its container's labels, which the observer takes from the inspect instead
USED_ATTRIBUTES = ("name", "exitCode")


@dataclass(slots=True)
class Lost:
    """Events dropped here for want of room, in their place in the stream; ``since_ns``: the stamp
    of the first of them (this host's clock when it had none)."""

    since_ns: int
    count: int = 1


def stamp_of(msg: Any) -> int | None:
    """An event's ``timeNano`` when it is a usable time (None otherwise)."""
    nano = msg.get("timeNano") if isinstance(msg, dict) else None
    return nano if isinstance(nano, int) and not isinstance(nano, bool) and 0 < nano < 2**62 else None


def kept(msg: dict[str, Any]) -> dict[str, Any]:
    """An event as it waits: its type, action, stamp, actor and the attributes the observer uses
    (strings, as Docker writes them); not its labels. ``msg["Actor"]["ID"]`` is a string."""
    actor = msg["Actor"]
    attrs = actor.get("Attributes")
    used = {k: attrs[k] for k in USED_ATTRIBUTES if isinstance(attrs, dict) and isinstance(attrs.get(k), str)}
    out = {"Type": msg.get("Type"), "Action": msg.get("Action"), "timeNano": msg.get("timeNano")}
    return {**out, "Actor": {"ID": actor["ID"], "Attributes": used}}


def size_of(msg: dict[str, Any]) -> int:
    """What a waiting message counts against ``max_bytes``: its size as JSON (a trimmed message is
    small: its texts are its size)."""
    return len(json.dumps(msg))


class EagerLines:
    """The kept messages of an event stream, read ahead by a task of its own (module docstring)."""

    def __init__(
        self,
        lines: AsyncGenerator[bytes, None],
        keep: Callable[[bytes], dict[str, Any] | None],
        *,
        limit: int = MAX_WAITING,
        max_bytes: int = MAX_WAITING_BYTES,
    ) -> None:
        self._lines = lines
        self._keep = keep
        self.limit = limit
        self.max_bytes = max_bytes
        self._bytes = 0  # the size of the kept messages waiting (size_of)
        self._waiting: deque[tuple[dict[str, Any], int] | Lost] = deque()
        self._ready = asyncio.Event()
        self._error: BaseException | None = None
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for line in self._lines:
                msg = self._keep(line)
                if msg is None:
                    continue
                size = size_of(msg)
                if len(self._waiting) < self.limit and self._bytes + size <= self.max_bytes:
                    self._waiting.append((msg, size))
                    self._bytes += size
                elif self._waiting and isinstance(last := self._waiting[-1], Lost):
                    last.count += 1  # the first one dropped there holds the earliest stamp
                else:  # one past the limit: the marker's own slot
                    self._waiting.append(Lost(stamp_of(msg) or time.time_ns()))
                self._ready.set()
            self._error = ConnectionError("docker ended the event stream")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the stream ended or broke: said after what waits
            self._error = e
        self._ready.set()

    def __aiter__(self) -> EagerLines:
        return self

    async def __anext__(self) -> dict[str, Any] | Lost:
        while not self._waiting:
            if self._error is not None:
                raise self._error
            self._ready.clear()
            await self._ready.wait()
        item = self._waiting.popleft()
        if isinstance(item, Lost):
            return item
        self._bytes -= item[1]
        return item[0]

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        await self._lines.aclose()
