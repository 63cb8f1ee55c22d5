"""Time while Tetragon has not loaded our policy yet is a gap, never a watched time.

After a Tetragon start (or a reload of our TracingPolicy) the event stream is
back before Tetragon traces the policy: ListTracingPolicies lists it ``LOADING``
(or not at all) for Tetragon's own delay. Nothing of what the policy traces is
seen then, so the agent must record that time as a node-wide gap (source
``none``), or a day holding it could be counted as watched and give "not
observed" for calls nobody could see. The real agent runs in this process
against the replay server (which serves the policy states) and the emulated
API server (its ObservationNode writer polls ListTracingPolicies); the gap is
read from the SQLite store the agent wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.replay.server import PolicyStatus, ReplayServer
from tests.integration.kubeharness import Cluster, obj, wait_for

NODE = "node-load"


def none_gaps(db: Path) -> list[tuple[int, int]]:
    """The node-wide gaps with source ``none`` the agent stored, as (start, end) wall ns."""
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.connect() as c:
        rows = c.execute(
            sa.text(
                "SELECT gap_start, gap_end FROM observation_windows WHERE image_digest = '' "
                "AND gap_end IS NOT NULL AND source = 'none' AND node_name = :n"
            ),
            {"n": NODE},
        ).all()
    eng.dispose()
    return [(_ns(a), _ns(b)) for a, b in rows]


def _ns(v: object) -> int:
    import datetime as dt

    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v)
    assert isinstance(v, dt.datetime), v
    if v.tzinfo is None:
        v = v.replace(tzinfo=dt.UTC)
    return int(v.timestamp() * 1_000_000) * 1000


def loaded(state: str) -> PolicyStatus:
    return PolicyStatus(name="stellaops-web", namespace="shop", state=state)


@contextlib.asynccontextmanager
async def running_agent(
    tmp_path: Path, address: str, *, extra: dict | None = None, setup: Callable[[Agent], None] | None = None
) -> AsyncIterator[tuple[Agent, list[int]]]:
    """The real agent on ``address`` with its ObservationNode writer polling every 0.05 s against
    the emulated API server (``extra`` more configuration, ``setup`` called before it runs); yields
    it and its count of polls. Stopped (exit 0) on the way out."""
    (tmp_path / "kube").mkdir()
    async with Cluster(tmp_path / "kube") as cluster:
        await cluster.create(obj("v1", "Node", NODE))
        config = parse_config(
            {
                "nodeName": NODE,
                "tetragon": {"address": address, "connectionTimeout": 1, "reconnectInitialSeconds": 0.05},
                "store": {"url": f"sqlite:///{tmp_path / 'hot.db'}"},
                "hotSymbols": {"flushIntervalSeconds": 3600},  # the shutdown's flush stores it all
                "metrics": {"address": "127.0.0.1", "port": 0},
                "observationNode": {
                    "enabled": True,
                    "heartbeatSeconds": 3600,
                    "kubeconfig": str(cluster.kubeconfig),
                },
                **(extra or {}),
            }
        )
        agent = Agent(config)
        if setup is not None:
            setup(agent)
        assert agent.node_status is not None
        writer = agent.node_status
        writer.poll_seconds = 0.05
        ticks = [0]
        tick = writer.tick

        async def counted() -> bool:  # every poll of Tetragon, written or not
            out = await tick()
            ticks[0] += 1
            return out

        writer.tick = counted  # type: ignore[method-assign]
        task = asyncio.create_task(agent.run())
        try:
            await wait_for(
                lambda: agent.source_stats.connected and agent.store is not None, what="stream and store"
            )
            yield agent, ticks
        finally:
            agent.stop("test")
            assert await asyncio.wait_for(task, 30) == 0


async def polled(ticks: list[int], what: str) -> None:
    """Two more polls: one that began after the caller's change saw it."""
    polls = ticks[0]
    await wait_for(lambda: ticks[0] > polls + 1, what=what)


@pytest.mark.asyncio
async def test_the_time_our_policy_is_listed_loading_is_a_gap(tmp_path: Path) -> None:
    tetragon = ReplayServer([], policies=[loaded("LOADING")], version="v1.7.0")  # holds the stream open
    address = await tetragon.start("127.0.0.1:0")
    try:
        async with running_agent(tmp_path, address) as (_, ticks):
            await polled(ticks, "a poll that listed the policy LOADING")
            loading_seen = time.time_ns()
            tetragon.policies = [loaded("ENABLED")]
            enabled_at = time.time_ns()
            await polled(ticks, "a poll that listed the policy ENABLED")
    finally:
        await tetragon.stop(grace=0)
    gaps = none_gaps(tmp_path / "hot.db")
    # The LOADING time, from before the poll that saw it to the moment it was enabled, is unwatched.
    assert any(a <= loading_seen and b >= enabled_at for a, b in gaps), (loading_seen, enabled_at, gaps)


@pytest.mark.asyncio
async def test_after_tetragon_restarts_the_time_before_it_lists_our_policy_is_a_gap(tmp_path: Path) -> None:
    """Tetragon answers (the stream reconnects) before it loads our policy: it lists nothing at
    first. The outage is a gap up to the reconnection; the time until the policy is listed must
    be one too."""
    first = ReplayServer([], policies=[loaded("ENABLED")], version="v1.7.0")
    address = await first.start("127.0.0.1:0")
    second = ReplayServer([], policies=[], version="v1.7.0")
    try:
        async with running_agent(tmp_path, address) as (agent, ticks):
            await polled(ticks, "a poll that listed the policy ENABLED")
            connects = agent.source_stats.connects
            stopped = time.time_ns()
            await first.stop(grace=0)
            await second.start(address)  # Tetragon back on its address, nothing loaded yet
            await wait_for(
                lambda: second.streams_active and agent.source_stats.connected, what="the stream reconnected"
            )
            assert agent.source_stats.connects > connects
            while True:  # a stream that reconnects again meanwhile would end the outage later
                connects = agent.source_stats.connects
                await polled(ticks, "polls that listed nothing")
                if agent.source_stats.connected and agent.source_stats.connects == connects:
                    break
            second.policies = [loaded("ENABLED")]
            listed_at = time.time_ns()
            await polled(ticks, "a poll that listed the policy ENABLED again")
            # The gaps marked by now, taken before the shutdown (whose own outage marks, a silent
            # stream's last sign of life on, would merge into the same node-wide rows in the store).
            await agent.outages.mark()
            _, windows = await agent.in_pipeline(agent.pipeline.drain)
    finally:
        await first.stop(grace=0)
        await second.stop(grace=0)
    gaps = sorted((w.gap_start_ns, w.gap_end_ns) for w in windows if w.gap_end_ns and w.image_digest == "")
    at = stopped  # the union of the gaps covers the outage and the time until the policy was listed
    for a, b in gaps:
        if a <= at < b:
            at = b
    assert at >= listed_at, (stopped, listed_at, gaps)


@pytest.mark.asyncio
async def test_tetragon_and_the_api_server_both_down_log_each_error_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer reads Tetragon before the API server (for the policy watch); with both down it
    must not log their two errors by turns on every poll (one warning per change of error)."""
    from stellaops_runtime.agent.node_status import ObservationNodeWriter
    from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig

    writer = ObservationNodeWriter(
        node_name=NODE,
        config=ObservationNodeConfig(enabled=True, kubeconfig=str(tmp_path / "absent.yaml")),
        tetragon=TetragonConfig(address=f"unix://{tmp_path}/no-tetragon.sock", connectionTimeout=0.2),
        try_bpf=False,
    )
    caplog.set_level("WARNING", logger="stellaops_runtime.agent.node_status")
    for _ in range(4):
        assert await writer.tick() is False
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and r.name.endswith("node_status")]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


class NoPolicyList(ReplayServer):
    """Tetragon whose event stream delivers while ListTracingPolicies fails for good (a
    ``connectionTimeout`` too short for a node of thousands of policies, a broken sensor manager)."""

    async def _list_policies(self, request: object, context: object) -> object:  # type: ignore[override]
        await context.abort(grpc.StatusCode.UNAVAILABLE, "sensor manager not ready")  # type: ignore[attr-defined]


def _sample(agent: Agent, name: str) -> float:
    from stellaops_runtime.agent.metrics import AgentCollector

    found = [s.value for m in AgentCollector(agent).collect() for s in m.samples if s.name == name]
    assert len(found) == 1, (name, found)
    return float(found[0])


@pytest.mark.asyncio
async def test_a_policy_list_that_never_answers_is_a_gap_for_good_and_a_metric_says_since_when(
    tmp_path: Path,
) -> None:
    """The gap the stream's connection opens stays open while Tetragon never says what it traces:
    every moment of the run is a node-wide gap (no day of it reads watched), and
    ``stellaops_runtime_policy_load_gap_open_seconds`` tells the operator how long it has been open
    (without it, a node in a gap for hours was seen only in the ObservationNode's Tetragon error)."""
    tetragon = NoPolicyList([], version="v1.7.0")
    address = await tetragon.start("127.0.0.1:0")
    try:
        async with running_agent(tmp_path, address) as (agent, ticks):
            started = time.time_ns()
            await polled(ticks, "polls whose ListTracingPolicies failed")
            await polled(ticks, "more of them")
            open_for = _sample(agent, "stellaops_runtime_policy_load_gap_open_seconds")
            assert open_for > 0, open_for
            assert (time.time_ns() - started) / 1e9 < open_for + 3600  # seconds, not ns
            assert agent.outages.policies is not None and agent.outages.policies.open
            last = time.time_ns()
    finally:
        await tetragon.stop(grace=0)
    gaps = sorted(none_gaps(tmp_path / "hot.db"))
    at = gaps[0][0] if gaps else last
    for a, b in gaps:
        if a <= at <= b:
            at = max(at, b)
    assert gaps and gaps[0][0] <= started and at >= last, (started, last, gaps)
