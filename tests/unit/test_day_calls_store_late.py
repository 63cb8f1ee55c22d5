"""A day the agent before watched is marked even when the store answers after the agent forgot it.

The last moment an agent before this one watched comes partly from the store (agent/history_days.py:
the node's latest window, the spool file's), read when the store first opens. With no usable watch
record, the node's clock stepped back across midnight between the two agents (A watched until
00:00:30 of day D+1, B starts at 23:59:50 of day D) and the store down for the first days of B, B
judged D+1 on its own calls and forgot that day (day_calls.py keeps the newest day and the one
before) before the store told it A watched D+1: a silent container's first window of D+1 stayed
unmarked, and D+1 read watched beside calls only A saw. The days after the agent's start are now
kept until the store's moment is known and judged (``DayCalls.await_history``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from stellaops_runtime.agent.history_days import attach_history_days
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.day_calls import DAY_NS, UNWATCHED, DayCalls

S = 1_000_000_000
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
PASSIVE = Posture.PASSIVE.rank
T2 = "2e" * 32
D = 20_000  # a UTC day number
B_START = (D + 1) * DAY_NS - 10 * S  # agent B's clock at its start: 23:59:50 of day D
A_LAST = (D + 1) * DAY_NS + 30 * S  # agent A's last window: 00:00:30 of day D+1 (the spool file's)
WIN = (D + 1) * DAY_NS + 60 * S  # a window of day D+1 B writes


def _exec(t: int, image: str, cid: str) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=t,
        node_name="n1",
        process=ProcessInfo(exec_id="e-" + cid[:4], pid=1, binary="/bin/app"),
        container=ContainerInfo(id=cid, image_digest=image),
    )


class _Conn:
    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *a: object) -> None:
        return None

    def execute(self, sql: str, args: tuple[str]) -> Any:
        return SimpleNamespace(scalar=lambda: None)  # the store holds no window of the node


def test_a_day_forgotten_before_the_store_answers_is_marked_once_it_does(tmp_path: Any) -> None:
    spool = tmp_path / "spool"  # no watch record beside it
    config = parse_config({"store": {"spoolPath": str(spool)}, "symbols": {"procRoot": str(tmp_path)}})
    pipe = Pipeline(config, node_name="n1", fast_path=False, started_ns=B_START)
    flusher = SimpleNamespace(on_open=None, spool=SimpleNamespace(window_ns=A_LAST))
    agent = SimpleNamespace(pipeline=pipe, node_name="n1", config=config, flusher=flusher)
    h = attach_history_days(agent)
    assert h.told is None  # no record: the store's answer is awaited
    agg = pipe.aggregator
    agg.observe(_exec(WIN, A, T2))  # D+1: a container of A, silent; nobody seen calling to B
    _, rows = agg.drain()
    assert [(r.window_start_ns, r.evidenced) for r in rows] == [(WIN, Posture.PASSIVE)]
    for day in (2, 3, 4):  # the store stays down for days: B watches on (another image's windows)
        agg.observe(_exec((D + day) * DAY_NS + 60 * S, B, "3c" * 32))
        agg.drain()
    flusher.on_open(SimpleNamespace(db=SimpleNamespace(dialect="sqlite", connect=_Conn)))
    assert h.told == A_LAST
    _, rows = agg.drain()
    marked = [(r.image_digest, r.window_start_ns, r.event_count, r.evidenced) for r in rows]
    assert marked == [(A, WIN, 0, Posture.NONE)]  # a restate row marks it: A may have seen a caller
    _, rows = agg.drain()
    assert rows == []  # once


def test_the_days_are_forgotten_as_before_once_the_store_answered() -> None:
    d = DayCalls(started_ns=B_START)
    d.await_history()
    assert d.judge(A, "n1", WIN, PASSIVE, [T2]) == PASSIVE
    d.judge(B, "n1", (D + 4) * DAY_NS, PASSIVE, [T2])
    d.prune()
    assert not d.forgot(WIN)  # kept while the store's moment may still name D+1
    d.blind_through(B_START)  # the store's moment: nothing after B's start
    d.history_known()
    assert list(d.restated(set())) == []  # D+1 was B's whole day
    d.prune()
    assert d.forgot(WIN)
    assert d.judge(A, "n1", WIN, PASSIVE, [T2]) == UNWATCHED  # a forgotten day, as before


def test_without_awaiting_the_days_are_forgotten_as_before() -> None:
    d = DayCalls(started_ns=B_START)
    d.judge(A, "n1", WIN, PASSIVE, [T2])
    d.judge(B, "n1", (D + 4) * DAY_NS, PASSIVE, [T2])
    d.prune()
    assert d.forgot(WIN)
