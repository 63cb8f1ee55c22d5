"""The gaps of pods that ran unwatched are counted on the agent's /metrics (brief TM2 item 2, RG5).

GapTracker counts, per node, the events of opted-out pods, pods outside privacy.allowedNamespaces and
pods no native policy selects whose image's window it marked a gap (GapStats.opted_out,
not_allowed, not_selected), but no family served them: an operator could not tell from /metrics why
an image's answers were unknown. The family is rendered here through the agent's own exposition
(agent/prometheus_core.generate_latest), as /metrics serves it; test_metric_names_in_docs checks
the documented name on a real agent.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from stellaops_runtime.agent.prometheus_core import Collector, Metric, generate_latest
from stellaops_runtime.agent.tetragon_drop_metrics import tetragon_drop_metrics
from stellaops_runtime.hotsymbols.gaps import GapTracker

NAME = "stellaops_runtime_unwatched_pod_gap_events"
IMG = "sha256:" + "a" * 64
T = 1_700_000_000 * 1_000_000_000


class _Gaps(Collector):
    def __init__(self, gaps: GapTracker) -> None:
        self.gaps = gaps

    def collect(self) -> list[Metric]:  # type: ignore[override]
        return list(tetragon_drop_metrics(self.gaps))


def served(gaps: GapTracker) -> dict[tuple[str, str], float]:
    text = generate_latest(_Gaps(gaps)).decode()
    for fam in text_string_to_metric_families(text):
        if fam.name == NAME:
            return {
                (s.labels["source"], s.labels["node"]): s.value
                for s in fam.samples
                if s.name.endswith("_total")
            }
    raise AssertionError(f"{NAME} is not served:\n{text}")


def test_each_unwatched_pod_gap_source_is_counted_by_node() -> None:
    gaps = GapTracker(window_seconds=3600)
    assert served(gaps) == {}  # served before any such gap: an alert on it sees 0, not absent
    gaps.opted_out(IMG, "node-a", T)
    gaps.opted_out(IMG, "node-a", T + 1)
    gaps.not_allowed(IMG, "node-a", T)
    gaps.not_selected(IMG, "node-b", T)
    gaps.not_selected("host:node-b", "node-b", T)  # a host process marks nothing, counts nothing
    gaps.opted_out(IMG, "node-a", 0)  # no time: nothing marked, nothing counted
    assert served(gaps) == {
        ("opted_out", "node-a"): 2.0,
        ("not_allowed", "node-a"): 1.0,
        ("not_selected", "node-b"): 1.0,
    }
