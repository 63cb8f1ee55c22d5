"""A ``Retry-After`` header is read safely: numbers, dates, and hostile values (kube.throttle).

The header comes from the network (an API server, or whatever stands in front
of it): a value that is not a number or a date, negative, not finite, huge,
or with a NUL byte must give None or a capped wait, never an exception or a
sleep of years. tests/integration/test_operator_throttled.py drives the
client and the operator with it.
"""

from __future__ import annotations

import asyncio

import pytest

from stellaops_runtime.controller.scheduler import Scheduler
from stellaops_runtime.kube.errors import ApiError
from stellaops_runtime.kube.throttle import retry_after_seconds


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("99999999999999999999", 600.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: now
        ("Fri, 31 Dec 9999 23:59:59 GMT", 600.0),
        ("3\x00", None),
    ],
)
def test_retry_after_values(header: str, expected: float | None) -> None:
    assert retry_after_seconds(header, cap=600.0) == expected


async def test_the_scheduler_retries_no_sooner_than_the_server_asked() -> None:
    """A reconcile that gave up on a throttled request is retried after its Retry-After, not its backoff."""
    runs: list[float] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def reconcile(key: object) -> None:
        runs.append(loop.time())
        if len(runs) == 1:
            raise ApiError(
                status=429, reason="TooManyRequests", message="", method="GET", path="/x", retry_after=0.5
            )
        done.set()

    scheduler = Scheduler(reconcile, retry_initial=0.01, retry_max=0.02)
    scheduler.trigger(("k",))
    await asyncio.wait_for(done.wait(), 5)
    await scheduler.close()
    assert runs[1] - runs[0] >= 0.5


async def test_events_do_not_bring_a_throttled_retry_forward() -> None:
    """Triggers arriving while the server's Retry-After runs (heartbeats, pod events) wait for it too."""
    runs: list[float] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    first_running = asyncio.Event()
    release = asyncio.Event()

    async def reconcile(key: object) -> None:
        runs.append(loop.time())
        if len(runs) == 1:
            first_running.set()
            await release.wait()
            raise ApiError(
                status=429, reason="TooManyRequests", message="", method="GET", path="/x", retry_after=0.5
            )
        done.set()

    scheduler = Scheduler(reconcile, retry_initial=0.01, retry_max=0.02)
    scheduler.trigger(("k",))
    await first_running.wait()
    scheduler.trigger(("k",))  # an event while the throttled run is in flight
    release.set()
    for _ in range(5):  # and events while it waits
        await asyncio.sleep(0.05)
        scheduler.trigger(("k",))
    await asyncio.wait_for(done.wait(), 5)
    await scheduler.close()
    assert runs[1] - runs[0] >= 0.5, runs
