"""Wait until containerd delivers a new subscription's events, before the observer lists.

containerd registers an event subscription when the request reaches it and
acknowledges nothing (no header, no first message), so a list read right after
asking can be read before it: a container started in between is in neither the
list nor the stream (a silent run while the agent says in_sync), one that exited
in between stays running in the registry. The observer publishes an event of
its own (``SUBSCRIBED_TOPIC``, a nonce of the connection) until it comes back on
the stream: then every later change is an event it will receive. The events
received before the mark are handed back, to be applied after the list.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

from stellaops_runtime import rpc
from stellaops_runtime.lifecycle.containerd_client import (
    SUBSCRIBED_TOPIC,
    SUBSCRIBED_TYPE,
    ContainerdClient,
    is_subscribed_mark,
)

# The first wait for the mark (doubling up to MARK_MAX_SECONDS between marks), and how many events
# received before it are kept for after the list (beyond: the connection ends, not in sync).
FIRST_MARK_SECONDS = 0.05
MARK_MAX_SECONDS = 1.0
BACKLOG_MAX = 100_000
BACKLOG_MAX_BYTES = 256 << 20  # and their bytes: one event may be as large as a message (64 MiB)


def received(pending: asyncio.Future[Any]) -> bytes:
    """The message of a finished ``anext`` of the event stream; ConnectionError when it ended."""
    try:
        raw: bytes = pending.result()
    except StopAsyncIteration:
        raise ConnectionError("containerd ended the event stream") from None
    except rpc.RpcError as e:
        raise ConnectionError(f"event stream failed: {e.code().name}: {e.details()}") from None
    return raw


async def await_subscribed(
    client: ContainerdClient, stream: AsyncIterator[bytes], pending: asyncio.Future[Any]
) -> tuple[list[bytes], asyncio.Future[Any]]:
    """Publish the mark until it comes back on ``stream`` (``pending``: its ``anext`` under way).

    Returns the events received before it and the ``anext`` then under way. A mark not back within
    the client's timeout, or too many events before it, is a ConnectionError."""
    nonce = secrets.token_hex(16).encode()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + client.timeout
    backlog: list[bytes] = []
    size = 0
    interval, next_mark = FIRST_MARK_SECONDS, 0.0
    while True:
        now = loop.time()
        if now >= deadline:
            raise ConnectionError(
                f"containerd did not deliver this subscription's own event within {client.timeout}s"
            )
        if now >= next_mark:
            await client.publish(SUBSCRIBED_TOPIC, SUBSCRIBED_TYPE, nonce)
            next_mark, interval = loop.time() + interval, min(interval * 2, MARK_MAX_SECONDS)
        done, _ = await asyncio.wait((pending,), timeout=max(0.0, min(next_mark, deadline) - loop.time()))
        if not done:
            continue
        raw = received(pending)
        pending = asyncio.ensure_future(anext(stream))
        if is_subscribed_mark(raw, nonce):
            return backlog, pending
        if len(backlog) >= BACKLOG_MAX:
            raise ConnectionError(f"over {BACKLOG_MAX} events before this subscription's own")
        size += len(raw)
        if size > BACKLOG_MAX_BYTES:
            raise ConnectionError(f"over {BACKLOG_MAX_BYTES} bytes of events before this subscription's own")
        backlog.append(raw)
