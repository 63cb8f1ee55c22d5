"""The agent's first proof of life, at its first store open: it claims nothing (store/node_liveness.py).

Defect (RLV's report, session 45, "Left alone" 1): an agent killed after its first flush stored rows
but before that flush's proof of life left the node with no ``node_liveness`` row, so the node kept
the rule of its latest record; with the node's clock ten minutes ahead, a question one window after
the kill said "not observed" over the time after it (the e2e test that met it waits for the proof
now). The agent now writes, before its first rows, a row that claims nothing: watched up to its
start less two windows (before any record the row can vouch for) and written then, so it reads as
down from there until the agent's first real proof. A node that has a row (an earlier agent's) keeps
its claim and write (where the hole since it starts); only its agent and start become the new one's.
Real Flusher, real SQLite and PostgreSQL, the question's own reader (store/coverage_open.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.agent.node_history import survivor_ns
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.store.coverage_live import liveness, store_now
from stellaops_runtime.store.coverage_open import open_gaps
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.node_liveness import Liveness, write_liveness
from stellaops_runtime.store.schema import datetime_to_ns

IMG = "sha256:" + "e" * 64
NODE = "node-start"
M = dt.timedelta(minutes=1)
TICK = dt.timedelta(microseconds=1)
S = 1_000_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        put: Callable[[Path], str] = request.getfixturevalue("sqlite_at_head")
        return put(tmp_path / "hot.db")
    return str(request.getfixturevalue("pg_url"))


def flusher(url: str, agent: str = "a1") -> Flusher:
    async def no_drain() -> None:
        return None

    cfg = AgentConfig(store={"url": url, "flushTimeout": "5s"}, hotSymbols={"aggregationWindowSeconds": 60})
    return Flusher(cfg, agent_id=f"{NODE}/{agent}", drain=no_drain, stop=lambda _r: None, node=NODE)


def now_of(url: str) -> dt.datetime:
    with open_store(url) as s, s.engine.connect() as c:
        return store_now(c)


def read(url: str) -> Any:
    with open_store(url) as s, s.engine.connect() as c:
        return liveness(c, [NODE]).get(NODE)


def rows_at(t: dt.datetime) -> tuple[list[HotSymbolDelta], list[ObservationWindow]]:
    ns = datetime_to_ns(t)
    key = HotSymbolKey(IMG, "/lib/libz.so.1", "inflate", EvidenceKind.INVOKED)
    d = HotSymbolDelta(key=key, window_start_ns=ns, invocation_count=3, first_seen_ns=ns, last_seen_ns=ns + 1)
    return [d], [ObservationWindow(IMG, NODE, ns, 3, Posture.EBPF_DEEP, 60, "tetragon")]


async def test_an_agent_killed_before_its_first_proof_is_judged_by_the_proof_rule(url: str) -> None:
    ahead = dt.timedelta(minutes=10)
    f = flusher(url)
    f.pending.add(*rows_at(now_of(url) + ahead))  # the node's clock is ten minutes ahead
    assert await f.flush() is True, f.pending.last_error  # the agent's first rows are stored
    kill = now_of(url)  # SIGKILL: the flush's proof of life is never written
    await f.close()
    live = read(url)
    assert live is not None and live.agent_id == f"{NODE}/a1"  # before: no row (the record's rule)
    assert not live.alive_at(kill)  # it claims nothing: down from its moment on
    assert not live.vouches_for(live.watched_end - TICK)  # no record it vouches for is before it
    with open_store(url) as s, s.engine.connect() as c:
        (gap,) = open_gaps(c, image=IMG, asked=kill + M)  # one window on (was: none, "not observed")
    assert gap.start == live.watched_end and gap.end == kill + M
    assert kill - 2 * M - dt.timedelta(seconds=5) <= gap.start <= kill - 2 * M  # its start less 2 windows


async def test_the_start_row_never_replaces_a_proof_and_the_agent_s_own_proof_replaces_it(url: str) -> None:
    f = flusher(url)
    assert await f.open() is True  # an open alone writes no row: this agent stored nothing yet, and a
    with open_store(url) as s:  # row tells the next agent that one ran on the node (node_history)
        assert survivor_ns(s.db, NODE) is None
    wall, boot = now_pair()
    earlier = Liveness(NODE, f"{NODE}/a0", 600.0, wall - 600 * S, 30.0, wall - 30 * S, 10.0, 60)
    with open_store(url) as s:  # the node's earlier agent, stopped thirty seconds ago
        write_liveness(s.db, earlier)
    before = read(url)
    f.pending.add(*rows_at(now_of(url)))
    assert await f.flush() is True  # the restart: this agent's first rows
    after = read(url)  # the earlier agent's claim and write (where the hole since it starts) are kept;
    assert (after.alive_through, after.alive_node, after.written_at) == (  # the row is this agent's:
        before.alive_through, before.alive_node, before.written_at,  # an earlier agent's stop record
    )  # fmt: skip
    assert after.agent_id == f"{NODE}/a1" and after.started_at > before.started_at  # is not its word
    assert f.liveness_failures == 0
    assert await f.prove_alive(NODE, (wall, boot)) is True  # this agent's first proof replaces it
    mine = read(url)
    assert mine.agent_id == f"{NODE}/a1" and mine.alive_node > before.alive_node
    f.pending.add(*rows_at(now_of(url) + M))
    assert await f.flush() is True  # a later flush writes no start row again
    assert read(url) == mine
    await f.close()
