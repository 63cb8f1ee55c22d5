"""Every metric name the docs give is served by a real agent under exactly that name.

The docs name our metrics mostly without their ``stellaops_runtime_`` prefix
(docs/operations.md says so above its table), and the code builds the names
from that prefix (agent/metric_families.py), so a grep of operator/ for a doc
name finds nothing and a renamed family would go unnoticed. Here the real CLI
runs with every part that can run on a CI machine switched on (the lifecycle
observer with its socket absent, the native source and its pod selection, the
ObservationNode writer with its API server away) against the replay server;
its ``/metrics`` is scraped and every name the docs give must be served.

What counts as a doc's metric name: a backticked name with the
``stellaops_runtime_`` prefix, or ending in ``_total``, anywhere in docs/*.md
and README.md, and every backticked name in the "metric" (or "same as")
column of a docs table, outside parentheses (where label values are listed;
one the agent serves as a label value is taken as one).
The only names the scrape cannot show are listed below with the test that
scrapes them from a real agent, and Tetragon's own metrics, which the agent
reads from Tetragon's endpoint under the names the docs give.

docs/operations.md also says the docstring of agent/metrics.py lists every
metric: every family served is checked to be named there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families

from stellaops_runtime.agent import metrics as agent_metrics
from stellaops_runtime.agent import native_selection_metrics
from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.sources.tetragon_metrics import WATCHED
from stellaops_runtime.wire.tetragon import events_pb2
from tests.e2e import harness as h
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
P = "stellaops_runtime_"
NAME = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+"
TOKEN = re.compile(rf"`({NAME})(\{{[^`}}]*\}})?`")

# Served only while the agent's own BCC probes are attached (root and BCC): scraped there.
NEEDS_BCC = {
    "native_kernel_events_total": "tests/e2e/test_agent_source_switch.py",
}
# Tetragon's own counters, which the agent reads from tetragon.metricsUrl (sources/tetragon_metrics.py).
TETRAGONS_OWN = {
    "tetragon_notify_overflowed_events_total",
    "tetragon_observer_ringbuf_events_lost_total",
    "tetragon_observer_ringbuf_queue_events_lost_total",
    "tetragon_bpf_missed_events_total",
    "tetragon_missed_prog_probes_total",
    "tetragon_missed_link_probes_total",
}
# What docs/operations.md says the seed's name would become as a counter, and why it is not one.
NEVER_SERVED = {"tetragon_events_filtered_total"}


def _outside_parentheses(cell: str) -> str:
    """The cell without what is in parentheses (label values, remarks); backticked text kept whole."""
    out, depth, quoted = [], 0, False
    for ch in cell:
        if ch == "`":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
            continue
        elif not quoted and ch == ")" and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(ch)
    return "".join(out)


def _cells(line: str) -> list[str]:
    """A markdown table row's cells, split on ``|`` outside backticks."""
    cells, cur, quoted = [], [], False
    for ch in line.strip().strip("|"):
        if ch == "`":
            quoted = not quoted
        if ch == "|" and not quoted:
            cells.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    cells.append("".join(cur))
    return [c.strip() for c in cells]


def doc_metric_names(text: str) -> dict[str, set[tuple[str, ...]]]:
    """Metric names a doc gives, each with the label sets it gives for it (``{a,b}``)."""
    names: dict[str, set[tuple[str, ...]]] = {}

    def add(m: re.Match[str]) -> None:
        labels = names.setdefault(m.group(1), set())
        if m.group(2) and re.fullmatch(r"\{[a-z_]+(,[a-z_]+)*\}", m.group(2)):
            labels.add(tuple(sorted(m.group(2)[1:-1].split(","))))

    for m in TOKEN.finditer(text):
        if m.group(1).startswith(P) or m.group(1).endswith("_total"):
            add(m)
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if not line.startswith("|") or not re.fullmatch(r"\|[-:| ]+\|?", lines[i + 1].strip()):
            continue
        if i and lines[i - 1].startswith("|"):
            continue  # a row, not a header
        columns = [j for j, c in enumerate(_cells(line)) if c.lower() in ("metric", "same as")]
        for row in lines[i + 2 :]:
            if not row.startswith("|"):
                break
            cells = _cells(row)
            for j in columns:
                if j < len(cells):
                    for m in TOKEN.finditer(_outside_parentheses(cells[j])):
                        add(m)
    return names


def all_doc_names() -> dict[str, dict[str, set[tuple[str, ...]]]]:
    """name -> {doc file: label sets}, over docs/*.md and README.md."""
    out: dict[str, dict[str, set[tuple[str, ...]]]] = {}
    for path in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        for name, labels in doc_metric_names(path.read_text()).items():
            out.setdefault(name, {})[path.name] = labels
    return out


def test_the_extractor_finds_table_names_prose_names_and_not_label_values() -> None:
    table = (
        "| symptom | metric |\n|---|---|\n"
        "| slow | `queue_depth` near `queue_capacity`; `events_dropped_total{reason}` (`queue_full`,"
        " `build_id_mismatch`) |\n"
        "| x | `a|b` `foo_bar{x,y}` |\n\n"
        "Prose: `stellaops_runtime_native_probes{state}`, `some_total`, `some_gauge`, `parse_seconds`.\n"
    )
    assert doc_metric_names(table) == {
        "queue_depth": set(),
        "queue_capacity": set(),
        "events_dropped_total": {("reason",)},
        "foo_bar": {("x", "y")},
        "stellaops_runtime_native_probes": {("state",)},
        "some_total": set(),
    }
    found = all_doc_names()
    # The docs' tables and prose: the seed's five, gauges only tables name, the lifecycle tables.
    for name in ("tetragon_latency_seconds", "queue_depth", "lifecycle_watching", "native_pod_view_pods"):
        assert name in found, name
    assert len(found) > 120


def _served(text: str) -> tuple[set[str], dict[str, set[tuple[str, ...]]]]:
    """Names served (family, sample, and a counter family's ``_total``) and each sample's label sets."""
    names: set[str] = set()
    labels: dict[str, set[tuple[str, ...]]] = {}
    for f in text_string_to_metric_families(text):
        names.add(f.name)
        if f.type == "counter":
            names.add(f.name + "_total")
        for s in f.samples:
            names.add(s.name)
            labels.setdefault(s.name, set()).add(tuple(sorted(k for k in s.labels if k != "le")))
    return names, labels


def _settled(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], n: int) -> bool:
    """Every event received, and the signals and the undecodable one handled (none is "processed")."""
    return (
        h.metric(m, "tetragon_events_total") == n
        and h.metric_sum(m, P + "events_malformed_total") == 1
        and h.metric(m, P + "tetragon_rate_limit_reports_total", node="docs-node") == 1
        and h.metric_sum(m, P + "tetragon_throttle_events_total") == 1
    )


def _docstring_names() -> set[str]:
    doc = (agent_metrics.__doc__ or "") + (native_selection_metrics.__doc__ or "")
    return set(re.findall(NAME, doc))


async def test_every_metric_name_in_the_docs_is_served_by_a_real_agent(tmp_path: Path) -> None:
    # Tetragon's drop signals and an undecodable message: their families then have samples, whose
    # label names are checked against the docs' (``tetragon_throttle_events_total{node,...}``).
    signals = [
        {"process_throttle": {"type": "THROTTLE_START", "cgroup": "cri-containerd-" + "c" * 64 + ".scope"}},
        {"rate_limit_info": {"number_of_dropped_process_events": "3"}},
    ]
    events = [
        *h.stream_events(),
        *(
            ReplayEvent.from_message(
                json_format.ParseDict(
                    {**o, "node_name": "docs-node", "time": "2026-11-24T09:00:20Z"},
                    events_pb2.GetEventsResponse(),
                )
            )
            for o in signals
        ),
        ReplayEvent(payload=b"\xff\xff\xff"),
    ]
    (tmp_path / "probes.json").write_text("{}")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    code, out, text = await h.scrape_replay_agent(
        tmp_path,
        events,
        lambda port: _settled(h.scrape(port), len(events)),
        store={"url": f"sqlite:///{tmp_path}/hs.db"},
        lifecycle={"enabled": True, "runtime": "containerd", "containerdAddress": str(tmp_path / "no.sock")},
        native={"enabled": True, "probeConfigFile": str(tmp_path / "probes.json")},
        observationNode={"enabled": True, "kubeconfig": str(kubeconfig)},
    )
    assert code == 0, out
    served, labels = _served(text)
    values = {v for f in text_string_to_metric_families(text) for s in f.samples for v in s.labels.values()}

    missing, wrong_labels = [], []
    for name, where in sorted(all_doc_names().items()):
        if name in NEVER_SERVED:
            assert name not in served, name
            continue
        if name in TETRAGONS_OWN:
            assert name.removesuffix("_total") in WATCHED, name  # the agent reads it under that name
            continue
        if (short := name.removeprefix(P)) in NEEDS_BCC:
            assert short in (ROOT / NEEDS_BCC[short]).read_text(), name
            continue
        if name in values:
            continue  # a label value a table lists after its metric (`lifecycle_state{state}`: `in_sync`)
        full = name if name in served else P + name
        if full not in served:
            missing.append(f"{name} ({', '.join(sorted(where))})")
            continue
        for doc, label_sets in where.items():
            for ls in label_sets:
                if full in labels and ls not in labels[full]:
                    wrong_labels.append(f"{name}{{{','.join(ls)}}} ({doc}): served {sorted(labels[full])}")
    for name in (
        "tetragon_throttle_events_total",
        "tetragon_rate_limit_reports_total",
        "events_malformed_total",
    ):
        assert P + name in labels, name  # sampled: their documented label names were compared
    assert not missing, "doc metric names not served:\n" + "\n".join(missing)
    assert not wrong_labels, "\n".join(wrong_labels)

    # agent/metrics.py's docstring names every family served (docs/operations.md promises it lists every one).
    listed = _docstring_names()
    unlisted = sorted(
        n
        for f in text_string_to_metric_families(text)
        for n in [f.name + "_total" if f.type == "counter" else f.name]
        if n.removeprefix(P) not in listed and n not in listed
    )
    assert not unlisted, "served but not in agent/metrics.py's list:\n" + "\n".join(unlisted)
