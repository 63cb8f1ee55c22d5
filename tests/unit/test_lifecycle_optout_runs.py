"""A container of a pod that opted out is no lifecycle run: only its image's opted-out gap is kept.

The lifecycle observer's registry holds every container on the node, opted-out pods' too. Before,
each became a run: a Passive observation window claimed its image watched (a row that is not
gap-only, against docs/privacy.md), and while the source was away a gap was placed at the
container's own start time within the window (when, within a window, the pod ran: exactly what
the opted-out gap does not keep). Now the agent's lifecycle sample (on the pipeline thread, with
the pipeline's opt-out: the annotation, the label, the operator's list) leaves such containers
out of the runs and gives their image the opted-out gap of each window it runs in, whole.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from stellaops_runtime.agent.lifecycle_part import LifecyclePart, Target
from stellaops_runtime.agent.optout_watch import OptOutWatch
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crds import API_VERSION
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION, Posture
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import ContainerRecord

S = 1_000_000_000
W = 60 * S
T0 = int(dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC).timestamp()) * S
PRIVATE = "sha256:" + "a" * 64
PUBLIC = "sha256:" + "b" * 64
STARTED = dt.datetime(2026, 6, 1, 12, 0, 23, 456000, tzinfo=dt.UTC)  # within the first window


def record(cid: str, image: str, pod: str, uid: str, *, opted: bool) -> ContainerRecord:
    return ContainerRecord(
        container_id=cid * 64, namespace="k8s.io", image_digest=image, status="running", started_at=STARTED,
        labels={"io.kubernetes.pod.name": pod, "io.kubernetes.pod.namespace": "shop",
                "io.kubernetes.pod.uid": uid},
        pod_annotations={OBSERVE_LEVEL_ANNOTATION: "none"} if opted else {},
    )  # fmt: skip


def part() -> tuple[LifecyclePart, list[ContainerRecord]]:
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False},
                        "lifecycle": {"windowSettleSeconds": 0}})  # fmt: skip
    pipe = Pipeline(cfg, node_name="n1")
    lp = LifecyclePart(cfg, Target("containerd", "/nonexistent"), node_name="n1", pipeline=pipe)
    records = [
        record("c", PRIVATE, "private-0", "u1", opted=True),
        record("d", PUBLIC, "public-0", "u2", opted=False),
    ]
    pipe.container_lookup = ContainerLookup(records, "containerd", stats=lp.enrich_stats)
    return lp, records


Row = tuple[int, int, object, str, int, int]


def rows(lp: LifecyclePart) -> dict[str, list[Row]]:
    """The drained observation windows by image: (window, events, posture, source, gap start, end)."""
    _, windows = lp.pipeline.drain()
    out: dict[str, list[Row]] = {PRIVATE: [], PUBLIC: []}
    for o in windows:
        out[o.image_digest].append(
            (o.window_start_ns - T0, o.event_count, o.posture, o.source,
             o.gap_start_ns - T0 if o.gap_start_ns else 0, o.gap_end_ns - T0 if o.gap_end_ns else 0)
        )  # fmt: skip
    return {k: sorted(v) for k, v in out.items()}


def test_an_opted_out_container_watched_gets_only_whole_window_gaps() -> None:
    lp, records = part()
    for k in range(6):  # the source connected: windows 12:01 and 12:02 wholly watched
        lp._tick(T0 + W + k * 30 * S, True, records, True)
    got = rows(lp)
    assert got[PRIVATE] == [
        (W, 0, None, "opted_out", W, 2 * W),
        (2 * W, 0, None, "opted_out", 2 * W, 3 * W),
        (3 * W, 0, None, "opted_out", 3 * W, 4 * W),
    ]  # never a Passive row claiming it watched
    assert [(r[0], r[2].name, r[4]) for r in got[PUBLIC]] == [(W, "PASSIVE", 0), (2 * W, "PASSIVE", 0)]


def test_an_opted_out_container_while_the_source_is_away_keeps_no_time_of_its_own() -> None:
    lp, records = part()
    lp._tick(T0, False, records, True)
    lp._tick(T0 + 50 * S, False, records, True)
    got = rows(lp)
    assert got[PRIVATE] == [(0, 0, None, "opted_out", 0, W)]  # the whole window, not from 23.456 s
    # the watched pod's image: the time it ran unwatched, from its start
    assert [(r[3], r[4], r[5]) for r in got[PUBLIC]] == [("none", 23_456_000_000, 50 * S)]


def test_a_pod_given_a_level_later_is_a_run_from_when_the_agent_reads_the_operator_s_list(
    tmp_path: Path,
) -> None:
    """Created at none, annotated Passive since: the runtime's record keeps none. Once the operator's
    ``optedIn`` (the probe ConfigMap's file, as the agent reads it) names the pod's uid, it is a run
    again: its image's earlier windows stay opted-out gaps, the later ones watched."""
    lp, records = part()
    path = tmp_path / "probes.json"
    watch = OptOutWatch(str(path), lp.pipeline.optout, interval=0.0)
    for k in range(3):
        lp._tick(T0 + W + k * 30 * S, True, records, True)
    doc = {"apiVersion": API_VERSION, "kind": "ProbeConfig", "policies": {}, "optedIn": ["u1"]}
    path.write_text(json.dumps(doc))
    assert watch.poll()
    for k in range(3, 9):
        lp._tick(T0 + W + k * 30 * S, True, records, True)
    got = rows(lp)
    assert got[PRIVATE][0] == (W, 0, None, "opted_out", W, 2 * W)  # before: a gap, never watched
    # the minute it changed in: watched in part, so the whole minute stays a gap
    assert got[PRIVATE][1][0::3] == (2 * W, "opted_out,tetragon") and got[PRIVATE][1][4:] == (2 * W, 3 * W)
    assert [(r[0], r[2], r[3], r[4]) for r in got[PRIVATE][2:]] == [
        (3 * W, Posture.PASSIVE, "tetragon", 0),
        (4 * W, Posture.PASSIVE, "tetragon", 0),
    ]  # from then on: watched, as the pod of the other image
    assert [r[0] for r in got[PUBLIC]] == [W, 2 * W, 3 * W, 4 * W]


def test_the_minute_the_list_is_read_in_stays_a_gap_when_no_sample_fell_in_it_before(tmp_path: Path) -> None:
    """The agent reads ``optedIn`` between two samples (here after 12:01:50), maybe in the next
    minute (12:02:10): until then that minute's events were dropped. The first sample that keeps the
    container (12:02:20) was its image's first word on 12:02, which came out a whole watched
    window; that minute is now an opted-out gap too (docs/operator.md: "the minute it changes in")."""
    lp, records = part()
    path = tmp_path / "probes.json"
    watch = OptOutWatch(str(path), lp.pipeline.optout, interval=0.0)
    for t in (W + 20 * S, W + 50 * S):
        lp._tick(T0 + t, True, records, True)
    doc = {"apiVersion": API_VERSION, "kind": "ProbeConfig", "policies": {}, "optedIn": ["u1"]}
    path.write_text(json.dumps(doc))
    assert watch.poll()
    for k in range(7):
        lp._tick(T0 + 2 * W + 20 * S + k * 30 * S, True, records, True)
    got = rows(lp)
    assert [(r[0], "opted_out" in r[3]) for r in got[PRIVATE]] == [
        (W, True),
        (2 * W, True),  # the minute it may have changed in: never a whole watched window
        (3 * W, False),
        (4 * W, False),
    ]
    assert all(r[4:] == (r[0], r[0] + W) for r in got[PRIVATE][:2])  # the whole minute, nothing of its own
    assert [r[0] for r in got[PUBLIC]] == [2 * W, 3 * W, 4 * W]
