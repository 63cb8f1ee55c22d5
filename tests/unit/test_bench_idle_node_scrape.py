"""bench/agent_idle_ab.py's ``node`` run gives the agent a Tetragon metrics page it can read, as a node does.

The idle figure of issue 13 is taken so (docs/benchmarks.md). The operator renders the metrics URL
as ``http://$(NODE_IP):2112/metrics`` and the pod's ``NODE_IP`` from the downward API; the bench set
no ``NODE_IP``, so the agent looked the name ``$(NODE_IP)`` up (loading the IDNA codec,
``stringprep`` and ``unicodedata``) and failed every scrape, which no node does. Here the URL the
bench writes is expanded with the environment it gives the agent, by the agent's own code, fetched,
and parsed as the agent parses it. Seen failing before the fix (the URL kept ``$(NODE_IP)``).
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from stellaops_runtime.sources.tetragon_metrics_text import WATCHED, expand_url, parse_series

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import agent_idle_ab  # a bench script, found on the path above


def test_the_node_run_scrapes_a_tetragon_page_at_the_node_address(tmp_path: Path) -> None:
    doc = agent_idle_ab.node_config(tmp_path)
    for in_cluster in (False, True):  # both environments agent_idle_ab.in_pod gives the agent
        url = expand_url(doc["tetragon"]["metricsUrl"], agent_idle_ab.pod_env(in_cluster=in_cluster))
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), url
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    series = parse_series(text)
    assert {field for field, _, _ in series} == set(WATCHED.values())
    assert set(series.values()) == {0.0}
