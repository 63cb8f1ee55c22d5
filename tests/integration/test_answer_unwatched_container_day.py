"""A container of the image that ran unwatched for part of a day takes the day out of the watch.

On node n1 on 2026-06-01 a traced container of image A makes calls seen on user stacks (EbpfDeep)
all day, and a second container of A runs for ten minutes sending nothing (no policy traces it),
beside the first one's events or while the image sent none (lifecycle rows only). A function
only that second container called was seen by nobody, yet the store counted the day watched (one
window of n1 saw A's calls, so n1's other windows were taken as A being quiet) and ``query
observed`` over the day said "not observed" (exit 1) while ``query observed`` over the
second container's windows alone said unknown (seen failing: watched_days 1, not_observed). Now
the agent judges each container over its UTC day (hotsymbols/day_calls.py): the second container
showed no call that day while the first did, so its first window (a row with the first
container's events, or a lifecycle row where neither sent any) carries ``evidenced`` None, the
day is no watched day and ``query observed`` answers unknown, naming n1 and the day.

What stays watched: the traced container alone, quiet in some windows (lifecycle rows) or with its
exec events alone in one; a second traced container whose events in one window had no user stack
while it made calls seen later that day (and the mark its earlier windows got is written away);
a second container that ran only on another day.

The rows are the real aggregator's (hotsymbols/aggregate.py with the lifecycle's run windows, as
the agent's pipeline drains them) written through the real store (SQLite and PostgreSQL); the
CLI in-process, once as a subprocess.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    ProcessInfo,
    RuntimeCallEvent,
    StackFrame,
)
from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator
from stellaops_runtime.hotsymbols.run_windows import Run, RunWindows
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from tests.cli_run import cli_json
from tests.node_alive import alive_after

S = 1_000_000_000
A = "sha256:" + "5a" * 32
TRACED, SECOND = "1f" * 32, "2e" * 32  # the runtime's 64-character ids; events name 31 characters
DAY = ("--since", "2026-06-01T00:00:00Z", "--until", "2026-06-01T23:59:59Z")


def at(hour: int, minute: int = 0, second: int = 0, day: int = 1) -> int:
    return datetime_to_ns(dt.datetime(2026, 6, day, hour, minute, second, tzinfo=dt.UTC))


def event(
    t: int, container: str, *, stack: bool = True, kind: EventKind = EventKind.KPROBE
) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        user_stack=[StackFrame(module="/lib/libz.so.1", symbol="crc32", offset=0x10)] if stack else [],
        kind=kind,
        timestamp_ns=t,
        node_name="n1",
        process=ProcessInfo(exec_id=f"e-{container[:4]}", pid=1, binary="/bin/app"),
        container=ContainerInfo(id=container[:31], image_digest=A),
        function_name="__x64_sys_read",
        module="/lib/libz.so.1",
    )


def run_of(cid: str, start: int, stop: int | None = None) -> Run:
    return Run(A, start, stop or 0, stop is None, cid)


def agent_rows(events: list[RuntimeCallEvent], runs: list[Run], start: int, end: int) -> tuple[list, list]:
    """The aggregator's deltas and windows, sampling the registry every 20 s from ``start`` to ``end``
    (the lifecycle part does once a second) and draining every 10 samples, as the agent does."""
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.0)
    a.runs = RunWindows(window_seconds=60, node_name="n1", settle_ns=0)
    pending = sorted(events, key=lambda e: e.timestamp_ns)
    deltas: list = []
    windows: list = []
    t, n = start, 0
    while t <= end:
        while pending and pending[0].timestamp_ns <= t:
            a.observe(pending.pop(0))
        now = [r if r.running or r.stopped_ns <= t else Run(r.image, r.started_ns, 0, True, r.container_id)
               for r in runs if r.started_ns <= t]  # fmt: skip
        a.runs.tick(t, True, now, True)
        n += 1
        if n % 10 == 0:
            d, w = a.drain()
            deltas += d
            windows += w
        t += 20 * S
    a.runs.final = True
    d, w = a.drain()
    return deltas + d, windows + w


def calls_all_day() -> list[RuntimeCallEvent]:
    """The traced container's calls, seen on stacks, at 10:00:05 and every 20 minutes to 13:40."""
    return [event(at(10, 0, 5) + k * 1200 * S, TRACED) for k in range(12)]


def store_of(url: str, events: list[RuntimeCallEvent], runs: list[Run]) -> None:
    """The agent's rows of 09:59 to 13:50, and a record of n1 the next day (tests/node_alive.py): the
    agent ran on, so the rest of June 1 is watched, not open (store/coverage_open.py)."""
    deltas, windows = agent_rows(events, runs, at(9, 59), at(13, 50))
    with open_store(url) as s:
        s.write(deltas, windows + alive_after("n1", at(0, day=2)))


def ask(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def observed(url: str, capsys: pytest.CaptureFixture[str], *period: str) -> tuple[int, Any]:
    return ask(
        capsys, "query", "observed", "--store", url, "--image", A, "--function", "inflate", "--json", *period
    )


def watched_days(url: str, capsys: pytest.CaptureFixture[str]) -> int:
    _code, doc = ask(capsys, "evidence", "--store", url, "--image", A, "--purl", "pkg:generic/zlib",
                    "--function", "inflate", "--json")  # fmt: skip
    return int(doc["data"]["watched_days"])


UNWATCHED = {
    # the traced container's calls at 12:00:05: the second container's first window has events
    "beside the traced container's events": (at(12), at(12, 10)),
    # the traced container quiet from 12:20:06 to 12:40:05: lifecycle rows only
    "while the image sent no event": (at(12, 21), at(12, 30)),
}


@pytest.mark.parametrize("case", UNWATCHED)
def test_a_container_unwatched_for_part_of_the_day_takes_the_day_out(
    url: str, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    start, stop = UNWATCHED[case]
    store_of(url, calls_all_day(), [run_of(TRACED, at(9)), run_of(SECOND, start, stop)])
    assert watched_days(url, capsys) == 0
    for period in (DAY, ()):
        code, doc = observed(url, capsys, *period)
        assert (code, doc["answer"]) == (3, "unknown"), doc["reason"]
        [unseen] = doc["unseen"]
        assert (unseen["node"], unseen["day"], unseen["posture"]) == ("n1", "2026-06-01", "EbpfDeep"), unseen
        assert unseen["unwatched_windows"] == 1, unseen  # its first window: one is enough
        assert "on node n1 on 2026-06-01 in a container that showed no call all that day" in doc["reason"]
    code, doc = cli_json(
        "query", "observed", "--store", url, "--image", A, "--function", "inflate", "--json", *DAY
    )
    assert (code, doc["answer"]) == (3, "unknown"), doc["reason"]  # the real CLI as a subprocess
    assert "on node n1 on 2026-06-01 " in doc["reason"], doc["reason"]


KEEP = {
    "the traced container alone, quiet or with exec events only at times": (
        [*calls_all_day(), event(at(12, 30, 5), TRACED, stack=False, kind=EventKind.EXEC)],
        [run_of(TRACED, at(9))],
    ),
    "a second traced container without a stack at 12:00, its calls seen at 13:00": (
        [*calls_all_day(), event(at(12, 0, 7), SECOND, stack=False), event(at(13, 0, 9), SECOND)],
        [run_of(TRACED, at(9)), run_of(SECOND, at(11, 50))],
    ),
    "a second container first silent, its calls seen later that day": (
        [*calls_all_day(), event(at(13, 15, 3), SECOND)],
        [run_of(TRACED, at(9)), run_of(SECOND, at(12))],
    ),
}


@pytest.mark.parametrize("case", KEEP)
def test_a_day_of_traced_containers_stays_watched(
    url: str, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    events, runs = KEEP[case]
    store_of(url, events, runs)
    assert watched_days(url, capsys) == 1
    code, doc = observed(url, capsys, *DAY)
    assert (code, doc["answer"], doc["unseen"]) == (1, "not_observed", []), doc["reason"]
