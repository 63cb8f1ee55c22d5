"""Where a span of Tetragon's lost events starts (review of s39/G fcdb6b3).

The poller places a rise of Tetragon's lost-event counters between two scrapes. Two edges were open:

- The first good scrape was a baseline only, also when scrapes before it had failed. At a node
  reboot or a Tetragon restart the agent's scrapes fail until Tetragon's metrics server is up, and
  the start-up flood (its /proc walk, every pod starting) is when its ring buffer overflows: events
  lost after the agent's first (failed) try were counted in the baseline and no gap covered them.
  Now the first good scrape after failed ones is a span from the first try.
- A span started when the previous scrape's answer had arrived, but Tetragon had rendered its
  counters before that: events lost in between (up to the scrape's timeout on a slow answer) were
  counted in the next rise and placed in no span. A span now starts when the previous scrape asked.

Both against a real HTTP exporter, through ``scrape_once``.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from stellaops_runtime.sources.tetragon_metrics import TetragonMetricsPoller
from tests.integration.test_tetragon_metrics_hostile import Exporter

OVER = "tetragon_notify_overflowed_events_total"


class SlowExporter(Exporter):
    """Tetragon's /metrics: ``fail_first`` 503 answers (then 200s), ``delay`` s between rendering and
    sending."""

    def __init__(self, body: str, *, fail_first: int = 0, delay: float = 0.0) -> None:
        super().__init__(body)
        self.fail_first = fail_first
        self.delay = delay
        self.rendered: list[int] = []  # wall ns at which each good page's counters were read

    async def _serve(self, _: web.Request) -> web.Response:
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503, text="starting")
        body = self.body
        self.rendered.append(time.time_ns())
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(text=body)


async def test_losses_counted_before_the_first_good_scrape_after_failed_ones_are_a_span() -> None:
    async with SlowExporter(f"{OVER} 7\n", fail_first=2) as ex:
        p = TetragonMetricsPoller(ex.url)
        before = time.time_ns()
        await p.scrape_once()  # Tetragon not up yet
        tried = time.time_ns()
        await p.scrape_once()
        await p.scrape_once()  # up: 7 lost at some time since the agent's first try
        after = time.time_ns()
    assert p.stats.scrape_errors == 2
    spans = p.take()
    assert len(spans) == 1, spans
    start, end, count = spans[0]
    assert before <= start <= tried and ex.rendered[0] <= end <= after
    assert count == 7  # at most that many fell in it: all Tetragon counted
    assert p.stats.drop_spans == 1


async def test_a_first_scrape_that_answers_is_still_a_baseline_only() -> None:
    async with SlowExporter(f"{OVER} 7\n") as ex:
        p = TetragonMetricsPoller(ex.url)
        await p.scrape_once()  # counted before this agent: cannot be placed in time
        await p.scrape_once()
    assert p.take() == [] and p.stats.drop_spans == 0


async def test_a_span_starts_when_the_previous_scrape_asked_not_when_its_answer_came() -> None:
    async with SlowExporter(f"{OVER} 1\n", delay=0.1) as ex:
        p = TetragonMetricsPoller(ex.url)
        await p.scrape_once()
        ex.body = f"{OVER} 4\n"  # lost after the first page was rendered, maybe before it arrived
        await p.scrape_once()
    spans = p.take()
    assert len(spans) == 1 and spans[0][2] == 3
    assert spans[0][0] <= ex.rendered[0], "the losses after the first render are outside the span"
    assert spans[0][1] >= ex.rendered[1]


async def test_a_rise_of_one_probe_is_a_span_while_another_policys_series_goes_away() -> None:
    """The missed-probe counters are one series per policy and probe; a policy unloaded takes its
    series away. Summed over their labels, the rise of one (20 runs skipped) and the loss of another
    (20 before) cancelled: no span. Each series is compared with itself now."""
    prog = "tetragon_missed_prog_probes_total"
    async with SlowExporter(
        f'{prog}{{policy="a",attach="x"}} 20\n{prog}{{policy="b",attach="y"}} 50\n'
    ) as ex:
        p = TetragonMetricsPoller(ex.url)
        await p.scrape_once()
        ex.body = f'{prog}{{policy="b",attach="y"}} 70\n'  # policy a unloaded; b skipped 20 runs
        await p.scrape_once()
    assert p.stats.missed_probes == 70.0  # the metric shown is still the sum
    spans = p.take()
    assert len(spans) == 1, spans
    assert spans[0][2] == 20


async def test_losses_since_the_last_scrape_are_read_at_shutdown(tmp_path, sqlite_at_head) -> None:
    """Tetragon's counters are read every 15 s; the agent stopped without reading them again, so what
    Tetragon lost since the last scrape (watched time of this agent) was in the next agent's baseline
    and in no gap. The shutdown now scrapes once more before it marks the last gaps."""
    import sqlite3

    from stellaops_runtime.agent.runner import Agent
    from stellaops_runtime.contracts.config import parse_config
    from tests.e2e import harness as h

    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    db = tmp_path / "hs.db"
    async with SlowExporter(f"{OVER} 5\n") as ex:
        cfg = parse_config(
            {
                "tetragon": {"exportFile": str(export), "metricsUrl": ex.url},
                "symbols": {"enabled": False},
                "attribution": {"enabled": False},
                "lifecycle": {"enabled": False},
                "store": {"url": sqlite_at_head(db), "spoolPath": str(tmp_path / "spool")},
                "shutdown": {"graceSeconds": 5},
                "metrics": {"port": 0},  # a free port: 8080 may be taken on a shared machine
            }
        )
        agent = Agent(cfg, node_name="n1")
        task = asyncio.create_task(agent.run())
        try:
            await h.wait_for(lambda: len(ex.rendered) >= 1, what="the first scrape (baseline)", timeout=20)
            ex.body = f"{OVER} 12\n"  # 7 lost after it; the next scrape would be 15 s on
            agent.stop("test: stop between two scrapes")
            assert await asyncio.wait_for(task, 30) == 0
        finally:
            agent.stop("test done")
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
    con = sqlite3.connect(db)
    try:
        (dropped,) = con.execute(
            "SELECT COALESCE(SUM(dropped_events), 0) FROM observation_windows WHERE node_name = 'n1'"
        ).fetchone()
    finally:
        con.close()
    assert dropped == 7
