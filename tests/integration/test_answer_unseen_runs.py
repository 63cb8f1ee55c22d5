"""A day or a period in which the image also ran on a node that could not see calls is not "watched".

The evidence counted a UTC day as watched when ANY window of the image that day was at a posture
that can see calls (EbpfDeep or more) and no gap touched it; ``query observed`` over a period
answered "not observed" from the seeing windows alone. When the image also ran that day on a node
none of whose windows could see calls (another node at ActiveTracing, another node where it only
ran: Passive, no container of it sent an event; another node whose windows a silent container of
the image capped: hotsymbols/container_runs.py), a function only that run called was said "not
observed": evidence PotentiallyReachable with the day among the days without calls, VEX
``not_affected`` over a one-day window (seen failing: watched_days 1, exit 1, ``not_affected``).
Now such a day is out of the watch and such a period answers unknown, naming the node and day
(store/coverage_unseen.py). A quiet image is not taken out: a node whose windows that day include
one that saw calls keeps its windows without events (lifecycle rows) and its windows whose only
container showed exec events alone.

Real rows through the store's writer (SQLite and PostgreSQL); the CLI in-process, and once as a
subprocess.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import day_counts
from stellaops_runtime.store.engine import create_store_engine, open_store
from stellaops_runtime.store.schema import datetime_to_ns
from tests.cli_run import cli_json
from tests.node_alive import alive_after

S = 1_000_000_000
IMG = "sha256:" + "7" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"
DEEP, ACTIVE, PASSIVE = Posture.EBPF_DEEP, Posture.ACTIVE_TRACING, Posture.PASSIVE
JUNE1 = ("--since", "2026-06-01T00:00:00Z", "--until", "2026-06-01T23:59:59Z")


def at(day: int, hour: int) -> int:
    return datetime_to_ns(dt.datetime(2026, 6, day, hour, tzinfo=dt.UTC))


def win(
    node: str, day: int, hour: int, events: int, posture: Posture, evidenced: Posture | None = None
) -> ObservationWindow:
    return ObservationWindow(IMG, node, at(day, hour), events, posture, 60, "tetragon", evidenced=evidenced)


def fill(url: str, windows: list[ObservationWindow]) -> None:
    """zlib seen loaded (crc32 called on node a at June 1 10:00), the windows; inflate never called.
    Every node's agent ran on: a record of each on June 3 (tests/node_alive.py), so their last day is
    watched whole, not open (store/coverage_open.py)."""
    w = at(1, 10)
    row = HotSymbolDelta(HotSymbolKey(IMG, ZLIB, "crc32", EvidenceKind.INVOKED), w, 3, w + S, w + 2 * S,
                         purl=PURL, node_name="a")  # fmt: skip
    windows = [win("a", 1, 10, 5, DEEP), *windows]
    with open_store(url) as s:
        s.write([row], windows + alive_after(sorted({x.node_name for x in windows}), at(3, 0)))


def ask(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def evidence(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    return ask(capsys, "evidence", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
               "--function", "inflate", "--json")  # fmt: skip


def observed(url: str, capsys: pytest.CaptureFixture[str], *period: str) -> tuple[int, Any]:
    return ask(capsys, "query", "observed", "--store", url, "--image", IMG, "--function", "inflate",
               "--json", *period)  # fmt: skip


def days_without_calls(url: str) -> int:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return day_counts.observed_days_without_calls(conn, image=IMG, function="inflate")
    finally:
        engine.dispose()


UNSEEN = {
    "another node at ActiveTracing": ([win("b", 1, 11, 4, ACTIVE)], "b", "ActiveTracing"),
    "another node where it only ran": ([win("b", 1, 11, 0, PASSIVE)], "b", "Passive"),
    # the node's windows all capped: a silent container of the image ran beside its traced one there
    "another node with a silent container": ([win("b", 1, 11, 5, DEEP, PASSIVE)], "b", "ActiveTracing"),
}


@pytest.mark.parametrize("case", UNSEEN)
def test_a_run_that_could_not_see_calls_takes_its_day_and_period_out(
    url: str, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    windows, node, posture = UNSEEN[case]
    fill(url, windows)
    code, doc = evidence(url, capsys)
    assert (code, doc["data"]["watched_days"], doc["data"]["days_without_calls"]) == (3, 0, 0), doc["reason"]
    assert days_without_calls(url) == 0  # the store's own count agrees
    assert doc["reachability_state"] is None and doc["defer_to_static_analysis"] is True
    assert "(1 day with a window that could see calls left out: the image also ran where" in doc["reason"]
    for period in ((), JUNE1):
        code, doc = observed(url, capsys, *period)
        assert (code, doc["answer"]) == (3, "unknown"), doc["reason"]
        assert f"on node {node} " in doc["reason"] and posture in doc["reason"], doc["reason"]
        [unseen] = doc["unseen"]
        assert (unseen["node"], unseen["day"], unseen["posture"]) == (node, "2026-06-01", posture)


def test_vex_never_says_not_affected_over_a_day_with_an_unseen_run(url: str, tmp_path: Path) -> None:
    fill(url, [win("b", 1, 11, 4, ACTIVE)])
    (tmp_path / "v.json").write_text(
        json.dumps(
            {"vulnerabilities": [{"id": "CVE-X", "affected": [{"purl": PURL, "functions": ["inflate"]}]}]}
        )
    )
    key = str(tmp_path / "w.key")
    assert main(["witness", "keygen", "--private", key, "--public", str(tmp_path / "w.pub")]) == 0
    vulns = str(tmp_path / "v.json")
    window = ("--window-days", "1", "--until", "2026-06-01")
    code, doc = cli_json("vex", "--store", url, "--image", IMG, "--vulns", vulns, "--key", key,
                         "--witness-dir", str(tmp_path / "w"), *window)  # fmt: skip
    [stmt] = doc["statements"]
    assert (code, stmt["status"]) == (0, "under_investigation"), stmt
    assert (
        "it also ran where its calls could not be seen: on node b on 2026-06-01 only at posture ActiveTracing"
        in (stmt["status_notes"])
    ), stmt["status_notes"]


def test_a_quiet_image_keeps_its_day_and_an_unseen_day_stays_its_own(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(url, [
        win("a", 1, 11, 0, PASSIVE),  # node a, no event: the traced container was quiet (a lifecycle row)
        win("a", 1, 12, 2, PASSIVE),  # node a, its exec events alone (nothing beside it showed more)
        win("c", 1, 9, 3, DEEP), win("c", 1, 10, 2, ACTIVE),  # node c: calls seen at 9, no stacks at 10
        win("b", 2, 11, 4, ACTIVE),  # the next day another node could not see calls
    ])  # fmt: skip
    code, doc = evidence(url, capsys)
    assert (code, doc["data"]["watched_days"], doc["data"]["days_without_calls"]) == (1, 1, 1), doc["reason"]
    assert days_without_calls(url) == 1
    assert doc["reachability_state"] == "PotentiallyReachable"
    code, doc = observed(url, capsys, *JUNE1)
    assert (code, doc["answer"], doc["unseen"]) == (1, "not_observed", []), doc["reason"]
    # A period holding node c's window without stacks but not its window that saw calls: node c's
    # whole day is what counts, as for the watched days.
    code, doc = observed(url, capsys, "--since", "2026-06-01T10:00:00Z", "--until", "2026-06-01T10:00:59Z")
    assert (code, doc["answer"], doc["unseen"]) == (1, "not_observed", []), doc["reason"]
    code, doc = observed(url, capsys)
    assert (code, doc["answer"]) == (3, "unknown"), doc["reason"]
    assert [(u["node"], u["day"]) for u in doc["unseen"]] == [("b", "2026-06-02")]
    assert "--since/--until" in doc["reason"]
