"""Time nobody watched an image on a node it ran on is never "not observed", through the real CLI.

Three holes, each once a wrong "no" (SQLite and PostgreSQL, stores written by
the store's own write path, questions asked of ``stella-runtime`` through its
own entry point in this process, tests/cli_run.py ``cli_in_process``, the first one
as a real subprocess):

- a node-wide gap (Tetragon's rate limiter, an outage) in a window in which
  the image had no row: the events lost may be exactly the image's events of
  that window, which is why it has no row there. The answers used to apply a
  node-wide gap only to the windows in which the image had events, and said
  "not observed" over the windows around the loss (seen failing: exit 1,
  ``"gaps": []``, evidence ``watched_days`` 1). A node-wide gap now touches
  every image watched on that node that UTC day (store/queries.py
  ``touches_image``); an image of another node or another day keeps its "no".
- an outage used to be told as "it throttled a container it could not
  attribute (0 throttle signals)"; it is named as time nobody watched.
- an opted-out pod of an image (hotsymbols/gaps.py ``opted_out``): each whole
  aggregation window in which its events were dropped is the image's gap
  (when within the window the pod ran is not kept: privacy), so "not
  observed" / VEX ``not_affected`` never rest on a time one of its pods ran
  unwatched, while another image and a period outside those windows keep
  their answers.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    NODE_WIDE,
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols import gaps as gaps_module
from stellaops_runtime.hotsymbols.gaps import GapTracker
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from tests.cli_run import cli_in_process
from tests.node_alive import alive_after

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000
W = 60 * S
DAY = 86_400 * S
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC))
IMG = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64  # the same node, the same day, never opted out
ELSEWHERE = "sha256:" + "c" * 64  # another node
LATER = "sha256:" + "e" * 64  # the same node, the next day
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"


def seen(image: str, window: int, node: str = "n1") -> ObservationWindow:
    return ObservationWindow(image, node, window, 10, Posture.EBPF_DEEP, 60, "tetragon")


def node_gap(
    window: int, start: int, end: int, *, source: str = "tetragon", dropped: int = 0
) -> ObservationWindow:
    return ObservationWindow(NODE_WIDE, "n1", window, 0, None, 60, source, start, end, 0, dropped)


def loaded(image: str, window: int, node: str = "n1") -> HotSymbolDelta:
    """zlib mapped in the image (the package was seen loaded) and crc32 called: never inflate."""
    return HotSymbolDelta(
        key=HotSymbolKey(image, ZLIB, "crc32", EvidenceKind.INVOKED), window_start_ns=window,
        invocation_count=3, first_seen_ns=window + S, last_seen_ns=window + 2 * S, purl=PURL, node_name=node,
    )  # fmt: skip


def fill(url: str, windows: list[ObservationWindow]) -> None:
    """The rows, and a record of each node the day after the last window (tests/node_alive.py): the
    agents ran on, so the time after their last window is watched, not open (store/coverage_open.py);
    the holes asked about are the test's own."""
    images = {(w.image_digest, w.node_name): w.window_start_ns for w in windows if w.event_count}
    last = max(w.window_start_ns for w in windows)
    alive = alive_after(sorted({w.node_name for w in windows}), last - last % DAY + DAY)
    with open_store(url) as s:
        s.write([loaded(img, ws, node) for (img, node), ws in images.items()], windows + alive)


def stella(url: str, *args: str, real: bool = False) -> tuple[int, dict[str, Any], str]:
    """``stella-runtime <args> --store url`` in this process, or ``real``ly as a subprocess."""
    if not real:
        r = cli_in_process(*args, "--store", url)
    else:
        r = subprocess.run(
            [sys.executable, "-m", "stellaops_runtime.cli.main", *args, "--store", url],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
    assert r.returncode in (0, 1, 3), r.stdout + r.stderr
    return r.returncode, json.loads(r.stdout), r.stdout


def observed(url: str, image: str, *period: str, real: bool = False) -> tuple[int, dict[str, Any], str]:
    args = ("query", "observed", "--image", image, "--function", "inflate", "--json", *period)
    return stella(url, *args, real=real)


def evidence(url: str, image: str) -> tuple[int, dict[str, Any], str]:
    return stella(
        url,
        "evidence",
        "--image",
        image,
        "--purl",
        "pkg:deb/debian/zlib1g",
        "--function",
        "inflate",
        "--json",
    )


def at(ns: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)).isoformat()


def test_events_dropped_node_wide_between_the_images_windows_make_its_answers_unknown(url: str) -> None:
    fill(
        url,
        [
            seen(IMG, T0), seen(IMG, T0 + 2 * W),  # nothing of IMG in T0 + W: its events there were dropped
            seen(ELSEWHERE, T0 + 2 * W, node="n2"),
            seen(LATER, T0 + DAY),
            node_gap(T0 + W, T0 + W + S, T0 + W + 59 * S, dropped=25),
        ],
    )  # fmt: skip
    code, doc, _ = observed(url, IMG, real=True)
    assert (code, doc["answer"]) == (3, "unknown"), doc["reason"]
    [gap] = doc["gaps"]
    assert (gap["node"], gap["scope"], gap["dropped_events"]) == (
        "n1",
        "node",
        25,
    ) and "not_watched" not in gap
    assert "events were dropped" in doc["reason"]
    code, doc, _ = evidence(url, IMG)
    assert (code, doc["data"]["watched_days"], doc["defer_to_static_analysis"]) == (3, 0, True)
    # A period after the loss answers from the clean window again.
    assert observed(url, IMG, "--since", at(T0 + 2 * W))[0] == 1
    # Another node, and the same node on another day, were not touched by it.
    for image in (ELSEWHERE, LATER):
        code, doc, _ = observed(url, image)
        assert (code, doc["answer"], doc["gaps"]) == (1, "not_observed", []), image
        assert evidence(url, image)[1]["data"]["watched_days"] == 1


def test_an_outage_is_named_as_time_nobody_watched(url: str) -> None:
    windows = [seen(IMG, T0), seen(IMG, T0 + 5 * W)]
    windows += [
        node_gap(T0 + k * W, T0 + k * W + 30 * S, T0 + (k + 1) * W, source="none") for k in range(1, 4)
    ]
    fill(url, windows)
    code, doc, text = observed(url, IMG)
    assert (code, doc["answer"]) == (3, "unknown"), text
    [gap] = doc["gaps"]
    assert (gap["windows"], gap["not_watched"], gap["throttles"], gap["dropped_events"]) == (
        3,
        ["outage"],
        0,
        0,
    )
    assert "the image was not watched throughout" in doc["reason"]
    assert "no event source watched the node" in doc["reason"] and "throttle" not in doc["reason"]


def test_an_opted_out_pod_keeps_answers_about_its_image_unknown(url: str, tmp_path: Path) -> None:
    tracker = GapTracker(window_seconds=60)
    for ts in (T0 + W + 5 * S, T0 + W + 30 * S, T0 + W + 17 * S):  # its dropped events, out of order
        tracker.opted_out(IMG, "n1", ts)
    # Other pods of the image were watched before, during and after; OTHER ran on the same node.
    windows = tracker.drain([seen(IMG, T0), seen(IMG, T0 + W), seen(IMG, T0 + 3 * W), seen(OTHER, T0 + W)])
    assert tracker.stats.opted_out["n1"] == 3
    fill(url, windows)
    code, doc, text = observed(url, IMG)
    assert (code, doc["answer"]) == (3, "unknown"), text
    [gap] = doc["gaps"]
    # The whole window its events were dropped in, not their span (12:01:05..12:01:30).
    assert (gap["scope"], gap["not_watched"], gap["start"], gap["end"], gap["windows"]) == (
        "image",
        ["opted_out"],
        "2026-06-01T12:01:00Z",
        "2026-06-01T12:02:00Z",
        1,
    )
    assert "opted out of observation" in doc["reason"]
    assert doc["coverage"]["source"] == "tetragon"  # the opt-out is no source of coverage
    # Both edges of the window: the instant before it and its end (exclusive) answer from the
    # other pods' windows; its first and last instants, before and after the pod's events, do not.
    assert observed(url, IMG, "--until", "2026-06-01T12:00:59.999999Z")[0] == 1
    assert observed(url, IMG, "--until", "2026-06-01T12:01:00Z")[0] == 3
    assert observed(url, IMG, "--since", "2026-06-01T12:01:59.999999Z")[0] == 3
    assert observed(url, IMG, "--since", "2026-06-01T12:02:00Z")[0] == 1
    assert observed(url, OTHER)[0] == 1  # a pod of another image opted out of nothing
    code, doc, _ = evidence(url, IMG)
    assert (code, doc["data"]["watched_days"]) == (3, 0)
    assert doc["data"]["gaps"][0]["not_watched"] == ["opted_out"]
    # VEX: never not_affected for that day, and the note says why.
    (tmp_path / "v.json").write_text(
        json.dumps(
            {"vulnerabilities": [{"id": "CVE-X", "affected": [{"purl": PURL, "functions": ["inflate"]}]}]}
        )
    )
    key = [str(tmp_path / "w.key")]
    made = cli_in_process("witness", "keygen", "--private", *key, "--public", str(tmp_path / "w.pub"))
    assert made.returncode == 0, made.stderr
    r = cli_in_process(
        *["vex", "--store", url, "--image", IMG, "--vulns", str(tmp_path / "v.json"), "--key", *key,
         "--witness-dir", str(tmp_path / "w"), "--window-days", "1", "--until", "2026-06-01"]
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    [stmt] = json.loads(r.stdout)["statements"]
    assert stmt["status"] == "under_investigation", stmt
    assert "opted out of observation" in stmt["status_notes"], stmt["status_notes"]


def test_past_the_span_limit_an_opted_out_pod_marks_its_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gaps_module, "MAX_OPTED_WINDOWS", 2)
    tracker = GapTracker(window_seconds=60)
    for k in range(3):
        tracker.opted_out(IMG, "n1", T0 + k * W + S)
    tracker.opted_out(IMG, "n1", 0)  # no time: nothing to place (the caller stamps events first)
    rows = {(w.image_digest, w.window_start_ns): w for w in tracker.drain([])}
    assert set(rows) == {(IMG, T0), (IMG, T0 + W), (NODE_WIDE, T0 + 2 * W)}
    assert {w.source for w in rows.values()} == {"opted_out"} and tracker.stats.opted_out["n1"] == 3


def test_an_opted_out_pod_without_a_digest_marks_its_node_and_keeps_no_name() -> None:
    tracker = GapTracker(window_seconds=60)
    tracker.opted_out("container:" + "f" * 64, "n1", T0 + S)
    tracker.opted_out("registry.example/secret-team/app:1.0", "n1", T0 + 2 * S)
    [row] = tracker.drain([])
    assert (row.image_digest, row.source, row.gap_start_ns, row.gap_end_ns, row.event_count) == (
        NODE_WIDE,
        "opted_out",
        T0,
        T0 + W,
        0,
    )
    assert row.posture is None


def test_a_day_of_one_watched_minute_and_an_outage_is_no_watched_day(url: str, tmp_path: Path) -> None:
    """31 days, each watched for a minute at midnight, then the node's source down: never "likely unused"."""
    day0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    windows = []
    for d in range(31):
        start = day0 + d * DAY
        windows.append(seen(IMG, start))
        windows += [
            node_gap(start + k * W, start + k * W, start + (k + 1) * W, source="none") for k in (2, 3)
        ]
    fill(url, windows)
    code, doc, _ = evidence(url, IMG)
    assert (code, doc["data"]["watched_days"], doc["rts"]["score"]) == (3, 0, 0.5), doc["rts"]
    assert doc["defer_to_static_analysis"] is True
    (tmp_path / "v.json").write_text(
        json.dumps(
            {"vulnerabilities": [{"id": "CVE-X", "affected": [{"purl": PURL, "functions": ["inflate"]}]}]}
        )
    )
    key = [str(tmp_path / "w.key")]
    made = cli_in_process("witness", "keygen", "--private", *key, "--public", str(tmp_path / "w.pub"))
    assert made.returncode == 0, made.stderr
    r = cli_in_process(
        *["vex", "--store", url, "--image", IMG, "--vulns", str(tmp_path / "v.json"), "--key", *key,
         "--witness-dir", str(tmp_path / "w"), "--until", "2026-07-01"]
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    [stmt] = json.loads(r.stdout)["statements"]
    assert stmt["status"] == "under_investigation", stmt
    assert "no event source watched the node" in stmt["status_notes"], stmt["status_notes"]
