"""Tetragon's own drop counters rising are gaps, not only metrics (brief s39/G).

With ``tetragon.metricsUrl`` set the agent reads Tetragon's lost-event counters
(``tetragon_notify_overflowed_events_total``: events Tetragon threw away for a
slow gRPC client; ``tetragon_observer_ringbuf_events_lost_total``,
``tetragon_bpf_missed_events_total``, the ring buffer queue and missed-probe counters: lost in the
kernel or on the way to its handlers). Before, a rise was
only shown on /metrics: no gap covered the time, so the windows in which
Tetragon said it lost events could answer "not observed". Now each rise
between two good scrapes is a node-wide gap over that span, carrying the
count, through the agent's outage marker (agent/outages.py). The poller's span
logic is checked alone below (pure); the wiring with the real agent object, a
real HTTP exporter and the pipeline's gap tracker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.sources.tetragon_metrics import TetragonMetricsPoller, parse_drops
from tests.integration.test_tetragon_metrics_hostile import Exporter

S = 1_000_000_000
OVER = "tetragon_notify_overflowed_events_total"
RING = "tetragon_observer_ringbuf_events_lost_total"


def _drops(overflowed: float = 0, ringbuf: float = 0, missed: float = 0) -> dict[str, float]:
    return {"overflowed": overflowed, "ringbuf_lost": ringbuf, "bpf_missed": missed}


def test_a_rise_between_two_scrapes_is_a_span_the_first_scrape_only_a_baseline() -> None:
    p = TetragonMetricsPoller("http://unused")
    p.note(_drops(overflowed=40), 100 * S)  # counted before this agent: cannot be placed in time
    assert p.take() == []
    p.note(_drops(overflowed=40), 115 * S)  # unchanged
    assert p.take() == []
    p.note(_drops(overflowed=47, ringbuf=3), 130 * S)
    p.note(_drops(overflowed=47, ringbuf=3, missed=2), 145 * S)  # joins the span before it
    assert p.take() == [(115 * S, 145 * S, 12)]
    assert p.take() == []
    assert p.stats.drop_spans == 2


def test_a_counter_that_went_down_is_tetragon_started_over() -> None:
    p = TetragonMetricsPoller("http://unused")
    p.note(_drops(overflowed=500), 10 * S)
    p.note(_drops(overflowed=0), 25 * S)  # restarted, nothing lost since: no span
    assert p.take() == []
    p.note(_drops(overflowed=900), 40 * S)
    p.note(_drops(overflowed=4), 55 * S)  # restarted and lost 4 since
    assert p.take() == [(25 * S, 55 * S, 904)]  # the two spans touch: joined


def test_a_restart_with_nothing_counted_since_leaves_the_time_before_it_unknown() -> None:
    """Review RTM: Tetragon overloaded (its ring buffer overflowing) then restarted (OOM-killed): the
    losses it counted after the earlier scrape died with its counters, and a restarted Tetragon that
    lost nothing since reads 0. That span was no gap, so a call it dropped just before dying could
    read as watched. Now a counter that went down makes the span unknown (a node-wide gap with no
    count, handed out by take_unknown), also when nothing was lost since the restart."""
    p = TetragonMetricsPoller("http://unused")
    p.note(_drops(overflowed=500), 10 * S)
    p.note(_drops(overflowed=0), 25 * S, 24 * S)
    assert p.take() == []  # no count to carry
    assert p.take_unknown(26 * S) == (10 * S, 25 * S)
    assert p.take_unknown(27 * S) is None
    p.note(_drops(overflowed=0), 40 * S)  # nothing went down: no span
    assert p.take_unknown(41 * S) is None


def test_spans_given_back_come_first_and_the_list_is_bounded(monkeypatch) -> None:
    from stellaops_runtime.sources import tetragon_metrics

    monkeypatch.setattr(tetragon_metrics, "MAX_SPANS", 2)
    p = TetragonMetricsPoller("http://unused")
    t = 0
    for i in range(6):  # a rise every other scrape: spans that do not touch
        t += 15 * S
        p.note(_drops(overflowed=i // 2 + (i % 2)), t)
    spans = p.take()
    assert len(spans) <= 2 and sum(n for _, _, n in spans) == 3
    assert min(a for a, _, _ in spans) == 15 * S and max(b for _, b, _ in spans) == 90 * S
    p.give_back(spans)
    p.note(_drops(overflowed=9), t + 15 * S)
    again = p.take()
    assert again[0] == spans[0] and sum(n for _, _, n in again) == 9  # none lost


async def test_the_agent_marks_tetragons_drops_as_node_wide_gaps(tmp_path: Path) -> None:
    async with Exporter(f"{OVER} 5\n{RING} 0\n") as ex:
        doc: dict[str, Any] = {
            "tetragon": {"exportFile": str(tmp_path / "tetragon.log"), "metricsUrl": ex.url},
            "symbols": {"enabled": False},
            "attribution": {"enabled": False},
            "lifecycle": {"enabled": False},
            "store": {"url": f"sqlite:///{tmp_path / 'hot.db'}", "spoolPath": str(tmp_path / "spool")},
        }
        agent = Agent(parse_config(doc), node_name="n1")
        poller = agent._poller
        assert poller is not None
        await poller.scrape_once()
        await agent.outages.mark()
        ex.body = f"{OVER} 12\n{RING} 2\n"
        await poller.scrape_once()
        await agent.outages.mark()
        rows = await agent.in_pipeline(agent.pipeline.gaps.drain, [])
    gaps = [r for r in rows if r.gap_start_ns]
    assert gaps, "no gap marked for Tetragon's drops"
    assert {(r.image_digest, r.node_name) for r in gaps} == {(NODE_WIDE, "n1")}
    assert sum(r.dropped_events for r in gaps) == 9
    assert poller.take() == []  # handed over


def test_every_lost_event_counter_of_tetragon_is_read() -> None:
    """The ring buffer's queue to the handlers and the probes the kernel skipped lose events too
    (Tetragon's metrics: ``tetragon_observer_ringbuf_queue_events_lost_total``,
    ``tetragon_missed_prog_probes_total``, ``tetragon_missed_link_probes_total``)."""
    base = parse_drops(
        "tetragon_observer_ringbuf_queue_events_lost_total 1\n"
        'tetragon_missed_prog_probes_total{policy="p",attach="a"} 2\n'
        'tetragon_missed_link_probes_total{policy="p",attach="b"} 3\n'
    )
    p = TetragonMetricsPoller("http://unused")
    p.note(base, 1 * S)
    for name, n in (
        ("tetragon_observer_ringbuf_queue_events_lost_total 4", 3),
        ('tetragon_missed_prog_probes_total{policy="p",attach="a"} 7', 5),
        ('tetragon_missed_link_probes_total{policy="p",attach="b"} 10', 7),
    ):
        lines = [ln for ln in ("tetragon_observer_ringbuf_queue_events_lost_total 1",
                               'tetragon_missed_prog_probes_total{policy="p",attach="a"} 2',
                               'tetragon_missed_link_probes_total{policy="p",attach="b"} 3')
                 if ln.split(" ")[0].split("{")[0] != name.split(" ")[0].split("{")[0]]  # fmt: skip
        p._last = (1 * S, base)
        p.note(parse_drops("\n".join([*lines, name]) + "\n"), 2 * S)
        assert p.take() == [(1 * S, 2 * S, n)], name
