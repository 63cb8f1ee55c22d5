"""``stella-runtime evidence`` on stores written by the real writer, SQLite and PostgreSQL.

Days come from the recorded observation windows: each case writes windows
day by day and checks the state, the RTS score and the Evidence document the
CLI prints (its own entry point in this process; the table output from a real subprocess), at
the boundaries: exactly 1,000 calls in a day and 1,001 split
over two windows of one day; exactly 30 and 31 watched days without a call;
a gap in the middle of the watch; a posture change (Passive days do not
count); a package never loaded; an image never watched.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from tests.cli_run import cli_in_process
from tests.node_alive import alive_after

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000
DAY = 86_400 * S
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"


def window(
    day: int, *, posture: Posture = Posture.EBPF_DEEP, gap: bool = False, minute: int = 0
) -> ObservationWindow:
    start = T0 + day * DAY + minute * 60 * S
    extra = {"gap_start_ns": start + S, "gap_end_ns": start + 2 * S, "throttles": 1} if gap else {}
    return ObservationWindow(IMG, "node-1", start, 5, posture, 60, "tetragon", **extra)  # type: ignore[arg-type]


def calls(
    fn: str, day: int, count: int, *, minute: int = 0, kind: EvidenceKind = EvidenceKind.INVOKED
) -> HotSymbolDelta:
    start = T0 + day * DAY + minute * 60 * S
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, ZLIB, fn, kind),
        window_start_ns=start,
        invocation_count=count,
        first_seen_ns=start + S,
        last_seen_ns=start + 2 * S,
        purl=PURL,
        function_id=f"{'ab' * 20}:{fn}+0x0" if count else "",
        node_name="node-1",
        sample={"stack": [{"module": ZLIB, "symbol": fn}]},
    )


def loaded(day: int = 0) -> HotSymbolDelta:
    start = T0 + day * DAY
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, ZLIB, "", EvidenceKind.LOADED),
        window_start_ns=start,
        invocation_count=1,
        first_seen_ns=start,
        last_seen_ns=start,
        purl=PURL,
        node_name="node-1",
    )


def fill(url: str, deltas: list[HotSymbolDelta], windows: list[ObservationWindow]) -> None:
    """The rows, and a record of node-1 the day after its last window (tests/node_alive.py): its agent
    ran on, so the last day is watched whole, not open (store/coverage_open.py)."""
    last = max((w.window_start_ns for w in windows), default=T0)
    with open_store(url) as s:
        s.write(deltas, windows + alive_after("node-1", last - last % DAY + DAY))


def evidence(url: str, function: str = "crc32", *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    """``evidence --json`` through the CLI's own entry point in this process (tests/cli_run.py
    ``cli_in_process``: same argv, exit status and output, without a new interpreter per question)."""
    r = cli_in_process("evidence", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
                       "--function", function, "--json", *extra)  # fmt: skip
    assert r.returncode in (0, 1, 3), r.stderr
    return r.returncode, json.loads(r.stdout)


@pytest.mark.parametrize(("split", "score"), [((1000,), 0.80), ((600, 401), 1.00)])
def test_calls_in_one_day_at_the_boundary(url: str, split: tuple[int, ...], score: float) -> None:
    fill(url, [loaded()] + [calls("crc32", 2, n, minute=i) for i, n in enumerate(split)],
         [window(d) for d in range(5)])  # fmt: skip
    code, doc = evidence(url)
    assert code == 0
    assert doc["reachability_state"] == "DynamicReachable" and doc["confidence"] == 0.90
    assert doc["rts"] == {"score": score, "weight": 0.25, "scenario": doc["rts"]["scenario"]}
    d = doc["data"]
    assert d["invocation_count"] == sum(split) and d["max_calls_in_a_day"] == sum(split)
    assert d["observation_window"] == "2026-06-01T00:00:00Z/2026-06-05T00:01:00Z"
    assert d["sample_stack"] == [{"module": ZLIB, "symbol": "crc32"}]
    assert d["function_ids"] == [f"{'ab' * 20}:crc32+0x0"]
    assert (doc["source"], doc["evidence_type"]) == ("signals/hot_symbols", "runtime_observation")
    assert d["purl"] == PURL and d["image_digest"] == IMG


def test_a_call_seen_invoked_and_on_a_stack_counts_once(url: str) -> None:
    fill(
        url,
        [loaded(), calls("crc32", 0, 700), calls("crc32", 0, 650, kind=EvidenceKind.ON_STACK)],
        [window(0)],
    )
    code, doc = evidence(url)
    assert code == 0 and doc["data"]["invocation_count"] == 700 and doc["rts"]["score"] == 0.80


@pytest.mark.parametrize(("days", "score"), [(30, 0.50), (31, 0.20)])
def test_days_watched_without_a_call_at_the_boundary(url: str, days: int, score: float) -> None:
    fill(url, [loaded()], [window(d) for d in range(days)])
    code, doc = evidence(url)
    assert code == 1
    assert (doc["reachability_state"], doc["confidence"], doc["rts"]["score"]) == (
        "PotentiallyReachable",
        0.5,
        score,
    )
    assert doc["data"]["watched_days"] == days == doc["data"]["days_without_calls"]
    assert doc["data"]["invocation_count"] == 0 and doc["data"]["sample_stack"] == []


def test_a_gap_in_the_middle_takes_its_day_out_of_the_watch(url: str) -> None:
    fill(url, [loaded()], [window(d, gap=(d == 15)) for d in range(31)])
    code, doc = evidence(url)
    assert code == 1 and doc["data"]["days_without_calls"] == 30 and doc["rts"]["score"] == 0.50
    [gap] = doc["data"]["gaps"]
    assert gap["throttles"] == 1


def test_passive_days_do_not_count_after_a_posture_change(url: str) -> None:
    fill(
        url,
        [loaded()],
        [window(d, posture=Posture.PASSIVE if d < 5 else Posture.EBPF_DEEP) for d in range(35)],
    )
    code, doc = evidence(url)
    assert code == 1 and doc["data"]["watched_days"] == 30 and doc["rts"]["score"] == 0.50
    assert doc["data"]["coverage"]["posture"] == {"lowest": "EbpfDeep", "highest": "EbpfDeep"}


def test_a_package_never_loaded_defers_to_static_analysis(url: str) -> None:
    fill(url, [], [window(d) for d in range(40)])
    code, doc = evidence(url)
    assert code == 3
    assert doc["reachability_state"] is None and doc["defer_to_static_analysis"] is True
    assert doc["confidence"] is None and "never seen loaded" in doc["reason"]


def test_an_image_only_passively_watched_defers_with_the_no_posture_score(url: str) -> None:
    fill(url, [loaded()], [window(d, posture=Posture.PASSIVE) for d in range(40)])
    code, doc = evidence(url)
    assert code == 3 and doc["rts"]["score"] == 0.50 and doc["data"]["observation_window"] is None


def test_a_confirmed_flow_is_a_live_exploit_path(url: str) -> None:
    fill(url, [loaded(), calls("crc32", 0, 3)], [window(0)])
    code, doc = evidence(url, "crc32", "--exploit-path")
    assert code == 0 and (doc["reachability_state"], doc["confidence"]) == ("LiveExploitPath", 1.0)


def test_the_table_output_states_everything(url: str) -> None:
    fill(url, [loaded()], [window(d) for d in range(3)])
    r = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "evidence", "--store", url, "--image", IMG,
         "--purl", "pkg:deb/debian/zlib1g", "--function", "inflate"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "state: PotentiallyReachable" in r.stdout and "rts: 0.50 (weight 0.25)" in r.stdout
    assert "watched days: 3, without calls: 3" in r.stdout
