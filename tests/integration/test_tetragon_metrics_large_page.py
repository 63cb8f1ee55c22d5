"""Only the lost-event counters of Tetragon's metrics page are parsed.

The page holds every Tetragon metric: on a busy node ``tetragon_events_total`` alone has a series
per binary, pod and event type (20,000 series are 2.5 MB). The whole page went through the
Prometheus text parser on the agent's event loop, every 15 s: about 1.2 s here during which the
gRPC stream was not read (Tetragon drops for a client that stops reading, and a stall of the loop
is a gap), and one line of an unrelated metric the parser refuses failed the whole scrape: no
scrape succeeded, so no loss of Tetragon's ever became a gap. Now the lines of the watched
counters are picked out first (by name), and only they are parsed.
"""

from __future__ import annotations

from stellaops_runtime.sources.tetragon_metrics import TetragonMetricsPoller, parse_series
from tests.integration.test_tetragon_metrics_hostile import Exporter

OVER = "tetragon_notify_overflowed_events_total"


def _page(overflowed: int, *, series: int = 20_000, broken: str = "") -> str:
    lines = ["# HELP tetragon_events_total The total number of Tetragon events",
             "# TYPE tetragon_events_total counter"]  # fmt: skip
    lines += [
        f'tetragon_events_total{{binary="/usr/bin/app{i}",namespace="ns{i % 50}",pod="pod-{i}",'
        f'type="PROCESS_KPROBE",workload="w{i % 300}"}} {i}'
        for i in range(series)
    ]
    if broken:
        lines.append(broken)
    lines += [f"# HELP {OVER[:-6]} Events dropped for slow clients", f"# TYPE {OVER[:-6]} counter"]
    lines += [f"{OVER} {overflowed}", '  tetragon_bpf_missed_events_total{error="ENOSPC",msg_op="5"} 3']
    return "\n".join(lines) + "\n"


def test_a_line_of_another_metric_the_parser_refuses_does_not_fail_the_counters() -> None:
    for broken in ['tetragon_events_total{binary="a} 1', 'tetragon_policy_events_total{p="x"} not-a-number']:
        series = parse_series(_page(5, series=3, broken=broken))
        assert series == {
            ("overflowed", OVER, ()): 5.0,
            ("bpf_missed", "tetragon_bpf_missed_events_total", (("error", "ENOSPC"), ("msg_op", "5"))): 3.0,
        }, broken


async def test_a_large_page_with_a_broken_line_still_makes_a_span() -> None:
    broken = 'tetragon_events_total{binary="/usr/bin/odd\\q} 1'  # a label the parser cannot read
    async with Exporter(_page(5, broken=broken)) as ex:
        poller = TetragonMetricsPoller(ex.url)
        await poller.scrape_once()
        ex.body = _page(12, broken=broken)  # 7 lost
        await poller.scrape_once()
    assert poller.stats.scrape_errors == 0, poller.stats.last_error
    assert poller.stats.overflowed == 12.0
    spans = poller.take()
    assert len(spans) == 1 and spans[0][2] == 7, spans
