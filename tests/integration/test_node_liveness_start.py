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
import sqlalchemy as sa

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
from stellaops_runtime.store.schema import datetime_to_ns, node_liveness

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
    assert after.agent_id == f"{NODE}/a1"  # is not its word; the start its claim vouches from is kept
    assert (after.started_at, after.started_node) == (before.started_at, before.started_node)
    assert f.liveness_failures == 0
    assert await f.prove_alive(NODE, (wall, boot)) is True  # this agent's first proof replaces it
    mine = read(url)
    assert mine.agent_id == f"{NODE}/a1" and mine.alive_node > before.alive_node
    f.pending.add(*rows_at(now_of(url) + M))
    assert await f.flush() is True  # a later flush writes no start row again
    assert read(url) == mine
    await f.close()


def drop_pairs_table(url: str) -> None:
    """The pairing table gone: the flush's pairing write, after the start row and before the rows,
    fails (as test_image_pairs_first does), so the start row is in and the rows are not."""
    with open_store(url) as s, s.engine.begin() as c:
        c.execute(sa.text(f"DROP TABLE {'signals.' if c.dialect.name == 'postgresql' else ''}image_pairs"))


async def test_a_restart_whose_first_rows_fail_keeps_the_earlier_proof_vouching(url: str) -> None:
    """Defect (review of 751b5016): the start row on a node with a row took the new agent's start, so
    the earlier agent's records, older than that start less two windows, were no longer vouched for:
    until the new agent's rows were stored the node fell back to its latest record's rule (three
    windows, the node clock's skew on top), and a question a minute after the restart found no open
    gap ('not observed' over the time since the earlier agent's kill; before the start row, and now:
    open from that agent's claim). The node's clock is ten minutes ahead; the earlier agent was killed
    three minutes before the restart, whose first flush fails after its start row (pairing write)."""
    ahead, now = 10 * M, now_of(url)
    killed = now - 3 * M
    if killed.date() != (now + ahead + M).date():  # the open time would end at a midnight between
        pytest.skip("within a quarter of an hour of midnight UTC")
    earlier = {  # its last proof, written as it was killed, claiming then
        "node_name": NODE, "agent_id": f"{NODE}/a0", "started_at": killed - 60 * M,
        "started_node": killed - 60 * M + ahead, "alive_through": killed, "alive_node": killed + ahead,
        "written_at": killed, "flush_seconds": 10.0, "window_seconds": 60,
    }  # fmt: skip
    with open_store(url) as s:
        s.write(*rows_at(killed + ahead))  # its last rows, stamped by the node's clock
        with s.engine.begin() as c:
            c.execute(sa.insert(node_liveness), [earlier])
    drop_pairs_table(url)
    f = flusher(url)
    f.proof.started = (datetime_to_ns(now + ahead), f.proof.started[1])  # its start on the node's clock
    f.pairs.note("sha256:" + "c" * 64, IMG)
    f.pending.add(*rows_at(now + ahead))
    assert await f.flush() is False and f.pending.pending_rows > 0  # its rows wait; its start row is in
    await f.close()
    live = read(url)
    assert live.agent_id == f"{NODE}/a1"  # an earlier agent's stop record is not this row's word
    with open_store(url) as s, s.engine.connect() as c:
        gaps = open_gaps(c, image=IMG, asked=now + M)
    assert [(g.start, g.end) for g in gaps] == [(killed, now + M)], gaps  # before the fix: []


async def test_a_start_row_alone_does_not_tell_the_next_agent_that_one_ran(url: str) -> None:
    """Defect (review of d417a73b): a first agent whose start row went in but whose rows did not (its
    first flush failed; an OOM kill in a big exportFromStart replay's first flush) left a row that
    node_history.survivor_ns read as "an agent ran": the next agent with no usable watch record then
    read the export file from its end, and every line the first one had read was lost. A start row
    its agent never replaced claims nothing and says no agent ran; an earlier agent's proof under a
    later start row still does."""
    drop_pairs_table(url)
    f = flusher(url)
    f.pairs.note("sha256:" + "c" * 64, IMG)
    f.pending.add(*rows_at(now_of(url)))
    assert await f.flush() is False and read(url) is not None  # the start row alone is in
    await f.close()
    with open_store(url) as s:
        assert survivor_ns(s.db, NODE) is None
    wall, _boot = now_pair()
    earlier = Liveness(NODE, f"{NODE}/a0", 600.0, wall - 600 * S, 30.0, wall - 30 * S, 10.0, 60)
    with open_store(url) as s:  # an agent that proved, then a next one's start row over its proof
        write_liveness(s.db, earlier)
        claimed = survivor_ns(s.db, NODE)
    g = flusher(url, "a2")
    g.pairs.note("sha256:" + "c" * 64, IMG)
    g.pending.add(*rows_at(now_of(url)))
    assert await g.flush() is False and read(url).agent_id == f"{NODE}/a2"
    await g.close()
    with open_store(url) as s:
        assert claimed is not None and survivor_ns(s.db, NODE) == claimed


async def test_a_start_row_the_database_refuses_fails_no_flush(url: str) -> None:
    """A start row refused as a statement (here: no ``node_liveness`` table) is counted and fails no
    flush: the rows' write may still succeed. On SQLite that refusal is an OperationalError, which
    store/errors.py ``is_unavailable`` reads as "down": taken for a store out of reach (fc0fd08e),
    it failed every flush of the agent, and its counts were never stored (seen on SQLite)."""
    with open_store(url) as s, s.engine.begin() as c:
        schema = "signals." if c.dialect.name == "postgresql" else ""
        c.execute(sa.text(f"DROP TABLE {schema}node_liveness"))
    f = flusher(url)
    f.pending.add(*rows_at(now_of(url)))
    assert await f.flush(proof_follows=True) is True, f.pending.last_error
    assert f.pending.pending_rows == 0 and f.liveness_failures == 1 and not f.unreachable
    await f.close()
