"""Shedding the decode caches after a large flush (Pipeline.shed_caches) changes no stored value.

The agent empties the adapter's frame and process tables and the demangler's cache once a flush
stored ``TRIM_AFTER_ROWS`` rows (agent/draining.py): their entries were made among a window's keys
and would keep its freed memory from going back to the node (docs/benchmarks.md, "Eleventh
pass"). They are pure functions of the bytes and names they hold, so nothing stored may change:
stream-a, twice across windows, runs through a pipeline that sheds every few batches and one that
never does, and every column of every table and every counter is compared.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from unittest import mock

from stellaops_runtime.adapter import proto_parts
from stellaops_runtime.agent import draining, runner
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.canonical import demangle
from stellaops_runtime.contracts.config import parse_config
from tests.integration.test_fastpath import CFG, STREAM_A, S, _lines, _proto, _run, _shifted


def test_shedding_every_few_batches_stores_exactly_what_keeping_stores(tmp_path: Path) -> None:
    base = _lines(STREAM_A)
    items = [_proto(ln) for ln in (*base, *(_shifted(ln, 70 * S) for ln in base))]
    sizes: list[tuple[int, int, int]] = []

    def shed(pipe: Pipeline, n: int) -> None:
        if n and n % 3 == 0:
            before = (len(proto_parts.PARTS.frames), demangle.demangle.cache_info().currsize)
            pipe.shed_caches()
            sizes.append((*before, len(proto_parts.PARTS.frames) + demangle.demangle.cache_info().currsize))

    frozen = time.time_ns()  # events without a time are stamped alike in both runs
    with mock.patch.object(time, "time_ns", lambda: frozen):
        kept = _run(tmp_path, "kept", CFG, items, json_lines=False, fast=True, drain_every=10)
        shed_ = _run(
            tmp_path, "shed", CFG, items, json_lines=False, fast=True, drain_every=10, before_batch=shed
        )
    assert sizes and all(after == 0 for *_, after in sizes)
    assert any(frames and names for frames, names, _ in sizes)  # there was something to shed
    assert shed_.tables == kept.tables
    assert shed_.counters == kept.counters
    assert sum(len(v) for v in kept.tables.values()) > 0


def test_the_agent_sheds_once_a_flush_stored_enough_rows(tmp_path: Path) -> None:
    cfg = parse_config({"store": {"url": f"sqlite:///{tmp_path}/a.db"}})
    agent = runner.Agent(cfg, node_name="n1")
    calls: list[str] = []
    agent.pipeline.shed_caches = lambda: calls.append("shed")  # type: ignore[method-assign]

    async def flushed(rows: int) -> None:
        agent.pending.rows_flushed = rows
        await agent._trim_after_flush()

    async def main() -> None:
        with mock.patch.object(draining, "release_free_memory", lambda: calls.append("release") or True):
            await flushed(draining.TRIM_AFTER_ROWS - 1)
            assert calls == []  # a small flush keeps the caches warm
            await flushed(draining.TRIM_AFTER_ROWS)
            assert calls == ["shed", "release"]  # shed first: what it frees is released
            await flushed(draining.TRIM_AFTER_ROWS + 5)
            assert calls == ["shed", "release"]
            await flushed(2 * draining.TRIM_AFTER_ROWS)
            assert calls == ["shed", "release"] * 2

    try:
        asyncio.run(main())
    finally:
        agent._worker.shutdown(wait=True)
