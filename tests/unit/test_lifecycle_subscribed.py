"""The events kept before containerd delivers the observer's own mark are bounded (lifecycle/subscribed.py).

Beyond the bound the connection fails (ConnectionError: not in sync, a reconnect), never an event
silently dropped; by count and by bytes, as one event can be as large as a gRPC message (64 MiB).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stellaops_runtime.lifecycle import subscribed
from stellaops_runtime.wire.containerd import types_pb2


class _Client:
    timeout = 5.0

    async def publish(self, topic: str, type_url: str, value: bytes) -> None:
        return None  # the mark never comes back: only the stream's events do


def _event(size: int) -> bytes:
    env = types_pb2.Envelope(namespace="k8s.io", topic="/images/update")
    env.event.type_url = "containerd.events.ImageUpdate"
    env.event.value = b"x" * size
    return env.SerializeToString()


async def _wait(events: list[bytes]) -> None:
    async def stream() -> AsyncIterator[bytes]:
        for e in events:
            yield e
        await asyncio.sleep(60)
        yield b""

    s = stream()
    pending: asyncio.Future[Any] = asyncio.ensure_future(anext(s))
    await subscribed.await_subscribed(_Client(), s, pending)  # type: ignore[arg-type]


def test_more_bytes_before_the_mark_than_kept_fail_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscribed, "BACKLOG_MAX_BYTES", 10_000)
    with pytest.raises(ConnectionError, match="bytes"):
        asyncio.run(asyncio.wait_for(_wait([_event(4_000)] * 4), 5))


def test_more_events_before_the_mark_than_kept_fail_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscribed, "BACKLOG_MAX", 3)
    with pytest.raises(ConnectionError, match="events before"):
        asyncio.run(asyncio.wait_for(_wait([_event(10)] * 5), 5))
