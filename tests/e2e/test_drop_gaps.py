"""End to end: Tetragon's own drop signals make "not observed" unknown, through the real agent CLI.

A Tetragon JSON export holds the synthetic stream (3,144 events, four images
on three nodes) with Tetragon's signals between its events, at their time:
a THROTTLE_START / THROTTLE_STOP pair for one container of the billing image
(``cgroup`` only, as Tetragon sends them) and a ``rate_limit_info`` on a node
where one extra image runs. The real agent (``stella-runtime agent``) reads
it into SQLite; then ``stella-runtime query observed`` must answer unknown
(exit 3, naming the gap and its count) for the throttled image and for the
image on the rate-limited node, not observed (exit 1) for images whose
windows have no gap, and not observed again for the throttled image once
the question starts after the gap. Every good count stays exact and the
agent's metrics count the signals per node and pod.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.store.engine import create_store_engine
from stellaops_runtime.store.schema import hot_symbols, observation_windows
from tests.e2e import harness as h
from tests.node_alive import each_node_alive_after

pytestmark = [pytest.mark.e2e]

OBJS = h.stream_objects()
THROTTLED = h.EXPECTED["images"][0]["digest"]  # billing-70: one container throttled on node-7-0
CLEAN = h.EXPECTED["images"][1]["digest"]  # the same nodes and windows, never throttled
CID = "a665a2df673c6342540088f4a4d409898d3a689620a83b8a2f218679b888acd6"  # a billing-70 container
RATE_LIMITED = "sha256:" + "d" * 64  # the only image on the rate-limited node
QUIET = "sha256:" + "e" * 64  # another node, no signal at all
DROPPED = 25


def _retarget(o: dict[str, Any], digest: str, node: str, cid: str) -> dict[str, Any]:
    o = json.loads(json.dumps(o))
    o["node_name"] = node
    c = o["process_kprobe"]["process"]["pod"]["container"]
    c["image"]["id"] = f"registry.example.com/shop/extra@{digest}"
    c["id"] = f"containerd://{cid}"
    return o


def export_lines() -> list[dict[str, Any]]:
    """The stream with Tetragon's drop signals at their time, plus two images on two more nodes."""
    kprobes = [o for o in OBJS if "process_kprobe" in o and o["time"] < "2026-11-24T09:00:30"][:5]
    signals = [
        {"process_throttle": {"type": "THROTTLE_START", "cgroup": f"cri-containerd-{CID}.scope"},
         "node_name": "node-7-0", "time": "2026-11-24T09:00:20Z"},
        {"process_throttle": {"type": "THROTTLE_STOP", "cgroup": f"cri-containerd-{CID}.scope"},
         "node_name": "node-7-0", "time": "2026-11-24T09:00:40Z"},
        {"rate_limit_info": {"number_of_dropped_process_events": str(DROPPED)},
         "node_name": "rl-node", "time": "2026-11-24T09:00:45Z"},
    ]  # fmt: skip
    extra = [_retarget(o, RATE_LIMITED, "rl-node", "d" * 64) for o in kprobes]
    extra += [_retarget(o, QUIET, "quiet-node", "e" * 64) for o in kprobes]
    return sorted([*OBJS, *signals, *extra], key=lambda o: o["time"])


def run_agent(tmp: Path, url: str, lines: list[dict[str, Any]]) -> dict:
    """The real agent over the export file; returns its last metrics scrape."""
    export = tmp / "export.jsonl"
    export.write_text("".join(json.dumps(o) + "\n" for o in lines))
    cfg, port = h.write_config(
        tmp,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": url},
        symbols={"hostRoot": "/"},
        attribution={"hostRoot": "/"},
    )
    # Stopped by SIGTERM once every line is processed (SIGTERM flushes all): the scrape returned
    # holds every line's counters. --exit-when-idle could exit between two scrapes of a starved test.
    proc = h.start_agent(cfg)
    try:
        last = asyncio.run(
            h.wait_processed(port, len(lines), source="tetragon-export", what="every line processed")
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code, out = h.finish(proc, 120)
    assert code == 0, out
    assert h.metric(last, "stellaops_runtime_events_received_total", source="tetragon-export") == len(
        lines
    ), out
    return last


@pytest.fixture(scope="module")
def filled(
    tmp_path_factory: pytest.TempPathFactory, sqlite_at_head: Callable[[Path], str]
) -> tuple[str, dict]:
    tmp = tmp_path_factory.mktemp("gaps")
    url = sqlite_at_head(tmp / "hot.db")  # at head (tests/conftest.py): not a migration test
    out = run_agent(tmp, url, export_lines())
    each_node_alive_after(url)  # the agent exits after the stream: its nodes ran on (tests/node_alive.py)
    return url, out


def observed(url: str, image: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    base = ("query", "observed", "--image", image, "--function", "inflateBack", *extra, "--store", url)
    text = h.cli(*base)
    r = h.cli(*base, "--json")
    assert "Traceback" not in r.stderr + text.stderr, r.stderr + text.stderr
    return r.returncode, json.loads(r.stdout), text.stdout


def test_a_throttled_image_is_unknown_naming_the_throttle(filled: tuple[str, dict]) -> None:
    url, _ = filled
    code, doc, text = observed(url, THROTTLED)
    assert (code, doc["answer"], doc["observed"]) == (3, "unknown", None)
    [gap] = doc["gaps"]
    # The gap ends at the STOP, or at the end of its window when the agent flushed between START and
    # STOP (an unfinished throttle covers the whole window): both are exact, which one is timing.
    end = gap.pop("end")
    assert end in ("2026-11-24T09:00:40Z", "2026-11-24T09:01:00Z")
    assert gap == {
        "node": "node-7-0",
        "scope": "image",
        "start": "2026-11-24T09:00:20Z",
        "interval": f"2026-11-24T09:00:20Z/{end}",
        "windows": 1,
        "throttles": 1,
        "dropped_events": 0,
    }
    assert doc["coverage"] is not None and doc["coverage"]["windows"] > 1  # what it would have rested on
    assert text.startswith(f"unknown: inflateBack in {THROTTLED}: image {THROTTLED} was under observation ")
    assert (
        f"but events were dropped: on node node-7-0 2026-11-24T09:00:20Z/{end} "
        "(1 window): it throttled the image's cgroup (1 throttle signal)"
    ) in text
    # a question about the period after the throttle rests on clean windows again
    code, doc, _ = observed(url, THROTTLED, "--since", "2026-11-24T09:01:00Z")
    assert (code, doc["answer"], doc["gaps"]) == (1, "not_observed", [])


def test_a_rate_limited_node_makes_its_images_unknown_with_the_count(filled: tuple[str, dict]) -> None:
    url, _ = filled
    code, doc, text = observed(url, RATE_LIMITED)
    assert (code, doc["answer"]) == (3, "unknown")
    [gap] = doc["gaps"]
    assert (gap["node"], gap["scope"], gap["dropped_events"], gap["end"]) == (
        "rl-node", "node", DROPPED, "2026-11-24T09:00:45Z",
    )  # fmt: skip
    assert f"{DROPPED} events of the node were dropped (by Tetragon's export rate limiter" in text


def test_images_without_gaps_are_still_not_observed(filled: tuple[str, dict]) -> None:
    url, _ = filled
    for image in (CLEAN, QUIET):
        code, doc, text = observed(url, image)
        assert (code, doc["answer"], doc["gaps"]) == (1, "not_observed", []), text
        assert text.startswith(f"not observed: inflateBack in {image}, under observation ")


def test_good_counts_around_the_signals_are_exact(filled: tuple[str, dict]) -> None:
    url, _ = filled
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            c = hot_symbols.c
            rows = conn.execute(
                sa.select(c.image_digest, c.module, c.function_name, c.invocation_count).where(
                    c.evidence_kind == "invoked"
                )
            )
            got = {f"{i}|{m}|{f}": n for i, m, f, n in rows}
    finally:
        engine.dispose()
    assert got == h.EXPECTED["uprobe_counts"]


def test_the_agent_counts_the_signals_per_node_and_pod(filled: tuple[str, dict]) -> None:
    url, samples = filled
    name = "stellaops_runtime_tetragon_throttle_events_total"
    pod = {"node": "node-7-0", "namespace": "shop", "pod": "billing-70-25165"}
    assert h.metric(samples, name, **pod, type="start") == 1
    assert h.metric(samples, name, **pod, type="stop") == 1
    assert h.metric(samples, "stellaops_runtime_tetragon_rate_limit_reports_total", node="rl-node") == 1
    dropped = h.metric(samples, "stellaops_runtime_tetragon_rate_limit_dropped_events_total", node="rl-node")
    assert dropped == DROPPED
    assert h.metric(samples, "stellaops_runtime_tetragon_throttled_cgroups", node="node-7-0") == 0
    assert (
        h.metric(samples, "stellaops_runtime_events_dropped_total", reason="tetragon_export_ratelimit")
        == DROPPED
    )
    # Gap rows are counted when the aggregator drains; the last scrape can come before the
    # final drain at exit, so the rows themselves are checked in the store.
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            c = observation_windows.c
            scopes = {
                "node" if image == NODE_WIDE else "image"
                for (image,) in conn.execute(sa.select(c.image_digest).where(c.gap_end.is_not(None)))
            }
    finally:
        engine.dispose()
    assert scopes == {"image", "node"}


def test_functions_and_images_follow_the_same_rule(filled: tuple[str, dict]) -> None:
    url, _ = filled
    purl = ("--purl", "pkg:deb/debian/not-installed")
    r = h.cli("query", "functions", "--image", THROTTLED, *purl, "--store", url)
    assert r.returncode == 3 and "but events were dropped" in r.stdout, r.stdout + r.stderr
    # a package of which no row is stored is unknown even where nothing was dropped
    r = h.cli("query", "functions", "--image", CLEAN, *purl, "--store", url)
    assert r.returncode == 3 and "never seen loaded" in r.stdout, r.stdout + r.stderr
    r = h.cli("query", "images", "--json", "--store", url)
    images = [i["image"] for i in json.loads(r.stdout)["images"]]
    assert r.returncode == 0 and "" not in images  # node-wide gap rows are no image
    assert {THROTTLED, CLEAN, RATE_LIMITED, QUIET} <= set(images)
