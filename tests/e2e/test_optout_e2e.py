"""End to end: a pod that opted out leaves only its image's gaps, through the real agent CLI.

The synthetic stream (3,144 events, four images on three nodes) is changed so
that every pod of one image carries the annotation
``stellaops.io/observe-level: none`` (as Tetragon v1.5+ sends it with
``--enable-pod-annotations``: Pod field 8, next to kubectl's
last-applied-configuration) and every pod of another image carries the
operator's label ``stellaops.io/observe-off: "true"`` (as Tetragon sends it
without annotations). Both images' events also carry a marker in their
arguments. The real agent (``stella-runtime agent``) reads the stream once
over gRPC from the replay server and once from a Tetragon JSON export file,
into SQLite. Then:

- no hot-symbol row or window row names either image; their only trace is
  a gap-only observation window (no events, no posture, source
  ``opted_out``, gap over the whole window) for exactly each (image, node,
  aggregation window) in which the stream had their events (tests/e2e/optout_store.py);
  the digests are in no other byte of the database, nor in the agent's
  output or /metrics; neither marker, the last-applied secret nor a pod name
  is anywhere in the database file, the agent's output or /metrics;
- every other image's counts are exactly the ground truth;
- ``stellaops_runtime_events_opted_out_total`` counts every dropped event,
  by reason (annotation, label), and every event was still received and adapted.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.crds import OBSERVE_LEVEL_ANNOTATION, OBSERVE_OFF_LABEL
from stellaops_runtime.replay.events import load_events
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h
from tests.e2e import optout_store as store

pytestmark = [pytest.mark.e2e]

OBJS = h.stream_objects()
BY_ANNOTATION = h.EXPECTED["images"][0]["digest"]  # billing-70
BY_LABEL = h.EXPECTED["images"][1]["digest"]  # worker-71
OPTED_OUT = (BY_ANNOTATION, BY_LABEL)
MARKER = "--opted-out-marker-7f3a9c"
SECRET = "opted-out-secret-5be1d0"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _pod_and_process(o: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    for key, body in o.items():
        if key.startswith("process_") and isinstance(body, dict) and "process" in body:
            proc = body["process"]
            return proc.get("pod"), proc
    return None, None


def _digest(pod: dict[str, Any]) -> str:
    return str(pod["container"]["image"]["id"]).split("@")[1]


def opted_out_stream() -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The stream with two images' pods opted out; returns it and the events of each reason."""
    out: list[dict[str, Any]] = []
    counts = {"annotation": 0, "label": 0}
    for original in OBJS:
        o = json.loads(json.dumps(original))
        pod, proc = _pod_and_process(o)
        if pod is not None and proc is not None and _digest(pod) in OPTED_OUT:
            proc["arguments"] = f"{proc.get('arguments', '')} {MARKER}".strip()
            if _digest(pod) == BY_ANNOTATION:
                pod["pod_annotations"] = {
                    OBSERVE_LEVEL_ANNOTATION: "none",
                    LAST_APPLIED: json.dumps({"env": [{"name": "API_KEY", "value": SECRET}]}),
                }
                counts["annotation"] += 1
            else:
                pod.setdefault("pod_labels", {})[OBSERVE_OFF_LABEL] = "true"
                counts["label"] += 1
        out.append(o)
    return out, counts


STREAM, COUNTS = opted_out_stream()


def _expected_invoked() -> dict[str, int]:
    return {k: v for k, v in h.EXPECTED["uprobe_counts"].items() if k.split("|")[0] not in OPTED_OUT}


def _expected_on_stack() -> dict[str, int]:
    return {k: v for k, v in h.expected_stack_counts(OBJS).items() if k.split("|")[0] not in OPTED_OUT}


def _stored(db: Path) -> tuple[list[dict[str, Any]], set[str], set[str]]:
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(sa.text("SELECT * FROM hot_symbols"))]
        window_images = {i for (i,) in c.execute(sa.text("SELECT image_digest FROM hot_symbol_windows"))}
        observed = {i for (i,) in c.execute(sa.text("SELECT image_digest FROM observation_windows"))}
    eng.dispose()
    return rows, window_images, observed


async def _run(tmp: Path, tetragon: dict[str, Any], source: str, url: str) -> tuple[dict, str, str]:
    cfg, port = h.write_config(tmp, tetragon=tetragon, store={"url": url})
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port), "stellaops_runtime_events_received_total", source=source)
                == len(STREAM)
            ),
            what="every event received",
            timeout=90,
        )
        await h.wait_for(
            lambda: (
                h.metric_sum(h.scrape(port), "stellaops_runtime_event_processing_latency_seconds_count")
                == len(STREAM)
            ),
            what="every event processed",
            timeout=60,
        )
        m = h.scrape(port)
        metrics = await asyncio.to_thread(store.metrics_text, port)
        code, out = await asyncio.to_thread(h.finish, proc, 120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    return m, out, metrics


def _check(tmp: Path, m: dict, out: str, metrics: str) -> None:
    assert "Traceback" not in out
    assert COUNTS["annotation"] > 100 and COUNTS["label"] > 100
    # Dropped on purpose, counted by reason; still received and adapted like every event.
    assert (
        h.metric(m, "stellaops_runtime_events_opted_out_total", reason="annotation") == COUNTS["annotation"]
    )
    assert h.metric(m, "stellaops_runtime_events_opted_out_total", reason="label") == COUNTS["label"]
    assert h.metric_sum(m, "stellaops_runtime_events_total") == len(STREAM)
    assert h.metric_sum(m, "stellaops_runtime_events_malformed_total") == 0

    rows, window_images, observed = _stored(tmp / "hot.db")
    images = {r["image_digest"] for r in rows}
    assert images and not images & set(OPTED_OUT)
    assert not window_images & set(OPTED_OUT)
    # No window claims the opted-out pods were watched: their images' only rows are gap-only,
    # one for each window of the stream in which their events were dropped.
    truth = store.opted_out_windows(STREAM, lambda o: store.image_of(o) in OPTED_OUT)
    assert {img for img, _, _ in truth} == set(OPTED_OUT)
    store.check_gap_only_rows(tmp / "hot.db", OPTED_OUT, truth)
    assert observed & set(OPTED_OUT) == set(OPTED_OUT)
    clean = store.bytes_without_gap_rows(tmp / "hot.db", OPTED_OUT, tmp)
    raw = store.database_bytes(tmp / "hot.db")
    for digest in (d.removeprefix("sha256:") for d in OPTED_OUT):
        assert digest.encode() in raw and digest.encode() not in clean, digest  # in its gap rows only
        assert digest not in out and digest not in metrics, digest
    for needle in (MARKER, SECRET, "billing-70", "worker-71"):
        assert needle.encode() not in raw, needle
        assert needle not in out and needle not in metrics, needle

    # Every other image counts exactly as in the ground truth.
    invoked = {
        f"{r['image_digest']}|{r['module']}|{r['function_name']}": r["invocation_count"]
        for r in rows
        if r["evidence_kind"] == "invoked"
    }
    on_stack = {
        f"{r['image_digest']}|{r['module']}|{r['function_name']}": r["invocation_count"]
        for r in rows
        if r["evidence_kind"] == "on_stack"
    }
    assert invoked == _expected_invoked()
    assert on_stack == _expected_on_stack()


async def test_opted_out_pods_leave_nothing_over_grpc(tmp_path: Path, sqlite_at_head: Any) -> None:
    jsonl = tmp_path / "stream.jsonl"
    jsonl.write_text("".join(json.dumps(o) + "\n" for o in STREAM))
    loaded = load_events(jsonl)
    assert not loaded.errors  # our proto reads pod_annotations (Pod field 8) strictly
    server = ReplayServer(loaded.events)
    addr = await server.start("127.0.0.1:0")
    try:
        # the store at head (tests/conftest.py): the opt-out is tested, not the migrations
        m, out, metrics = await _run(
            tmp_path, {"address": addr}, "tetragon-grpc", sqlite_at_head(tmp_path / "hot.db")
        )
    finally:
        await server.stop()
    _check(tmp_path, m, out, metrics)


async def test_opted_out_pods_leave_nothing_from_the_json_export(tmp_path: Path, sqlite_at_head: Any) -> None:
    export = tmp_path / "tetragon.log"
    export.write_text("".join(json.dumps(o) + "\n" for o in STREAM))
    m, out, metrics = await _run(
        tmp_path,
        {"exportFile": str(export), "exportFromStart": True},
        "tetragon-export",
        sqlite_at_head(tmp_path / "hot.db"),
    )
    _check(tmp_path, m, out, metrics)
