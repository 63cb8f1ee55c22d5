"""The seed design's five metrics ("Monitoring"), scraped from the real agent under exactly their names.

The agent runs as the real CLI against a replay server playing the synthetic
stream, with a namespace allowlist so the privacy filter drops events. Its
``/metrics`` is read over HTTP, parsed with prometheus-client's own parser,
and grepped as raw text: dashboards match sample names, so
``tetragon_events_filtered`` must not come out as ``..._filtered_total``.
"""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e import harness as h

ALLOWED = "shop"
SCALARS = (
    "tetragon_events_total",
    "tetragon_events_filtered",
    "tetragon_hotsymbols_flushed",
    "tetragon_witness_generated",
)


def _settled(port: int, total: int) -> bool:
    """Every event received and processed, and everything counted written to the store."""
    m = h.scrape(port)
    return (
        h.metric(m, "tetragon_events_total") == total
        and h.metric(m, "tetragon_latency_seconds_count") == total
        and h.metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
        and h.metric(m, "stellaops_runtime_hot_symbols_pending") == 0
        and h.metric(m, "tetragon_hotsymbols_flushed") > 0
    )


async def test_seed_metrics_exist_under_their_exact_names_and_agree(tmp_path: Path) -> None:
    events = h.stream_events()
    objs = h.stream_objects()
    filtered = sum(
        1
        for o in objs
        for kind, body in o.items()
        if kind.startswith("process_")
        and ((body.get("process") or {}).get("pod") or {}).get("namespace") != ALLOWED
    )
    assert len(events) == len(objs) == 3144 and filtered == 1549
    code, out, text = await h.scrape_replay_agent(
        tmp_path,
        events,
        lambda port: _settled(port, len(events)),
        tetragon={"connectionTimeout": "2s", "reconnectInitialSeconds": "100ms"},
        hotSymbols={"aggregationWindowSeconds": "1m", "flushIntervalSeconds": "300ms"},
        privacy={"allowedNamespaces": [ALLOWED]},
        store={"url": f"sqlite:///{tmp_path}/hs.db"},
    )
    assert code == 0, out

    # Raw text: each exact sample name, and no renamed variant of it.
    for name in SCALARS:
        assert re.search(rf"^{name} [0-9.e+]+$", text, re.M), name
    for name in SCALARS[1:]:
        assert f"{name}_total" not in text, name
    assert "# TYPE tetragon_latency_seconds histogram\n" in text
    for suffix in ("_bucket{", "_sum ", "_count "):
        assert re.search(rf"^tetragon_latency_seconds{re.escape(suffix)}", text, re.M), suffix
    for name in SCALARS[1:]:
        assert f"# TYPE {name} untyped\n" in text  # monotonic, but not named like a counter

    # Parsed the way Prometheus reads it.
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sample_names = {s.name for f in families.values() for s in f.samples}
    assert set(SCALARS) <= sample_names
    assert families["tetragon_latency_seconds"].type == "histogram"
    assert {s.name for s in families["tetragon_latency_seconds"].samples} == {
        "tetragon_latency_seconds_bucket",
        "tetragon_latency_seconds_sum",
        "tetragon_latency_seconds_count",
    }
    assert families["tetragon_events"].type == "counter"
    assert [s.name for s in families["tetragon_events"].samples] == ["tetragon_events_total"]
    for name in SCALARS[1:]:
        assert families[name].type == "unknown"
        assert [(s.name, s.labels) for s in families[name].samples] == [(name, {})]

    # Values: exact, and equal to the richer stellaops_runtime_* set.
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert h.metric(values, "tetragon_events_total") == len(events)
    assert h.metric_sum(values, "stellaops_runtime_events_received_total") == len(events)
    assert h.metric(values, "tetragon_events_filtered") == filtered
    assert h.metric_sum(values, "stellaops_runtime_events_filtered_total") == filtered
    flushed = h.metric(values, "tetragon_hotsymbols_flushed")
    assert flushed > 0 and flushed == h.metric(values, "stellaops_runtime_hot_symbols_flushed_total")
    assert h.metric(values, "tetragon_witness_generated") == 0
    assert h.metric(values, "stellaops_runtime_witnesses_generated_total") == 0
    ours = "stellaops_runtime_event_processing_latency_seconds"
    seed_hist = {
        (n.removeprefix("tetragon_latency_seconds"), lb): v
        for (n, lb), v in values.items()
        if n.startswith("tetragon_latency_seconds")
    }
    our_hist = {(n.removeprefix(ours), lb): v for (n, lb), v in values.items() if n.startswith(ours)}
    assert seed_hist == our_hist and len(seed_hist) > 3
    assert seed_hist[("_count", ())] == len(events)
