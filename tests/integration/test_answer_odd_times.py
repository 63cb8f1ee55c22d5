"""Times at the edges of the calendar are answers or clear errors, never a traceback read as "no".

A Python traceback exits 1, which ``query observed`` documents as "not observed" (a script
reads it as a "no"). Before the fix ``--since 0001-01-01T00:00:00Z`` (a window's length taken
from it), ``--since 0001-01-01T00:00:00+01:00`` (before year 1 in UTC), ``vex --window-days
1000000000000`` and ``vex --until 0001-01-03`` (a window reaching before year 1) each ended in
an OverflowError traceback, exit 1. Now the first is answered as "since the beginning", the
second is exit 2 naming the range, and the VEX windows are simply not fully watched
(under_investigation). The real CLI through its own entry point in this process (tests/cli_run.py
``cli_in_process``; one question of each time as a real subprocess), the real writer, SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from tests.cli_run import stella
from tests.integration.test_vex import (
    IMG,
    OPENVEX,
    VULNS,
    S,
    by_vuln,
    delta,
    store,
    vex_cli,
    watched,
)


def observed(url: str, function: str, *extra: str, real: bool = False) -> subprocess.CompletedProcess[str]:
    """``query observed --json`` in this process, or ``real``ly as a subprocess (tests/cli_run.py
    ``stella``: a traceback fails the test)."""
    argv = ("query", "observed", "--store", url, "--image", IMG, "--function", function, "--json", *extra)
    return stella(*argv, real=real)


def evidence(url: str) -> subprocess.CompletedProcess[str]:
    return stella("evidence", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
                  "--function", "inflate", "--json")  # fmt: skip


def test_a_period_from_the_first_day_of_the_calendar_is_answered(url: str) -> None:
    with open_store(url) as s:
        s.write([delta("crc32", 3, 12)], watched(range(5)))
    for since in ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000001+00:00"):
        r = observed(url, "crc32", "--since", since)
        assert r.returncode == 0 and json.loads(r.stdout)["records"][0]["invocation_count"] == 12, r.stderr
        r = observed(url, "inflate", "--since", since, "--until", "9999-12-31T23:59:59.999999Z")
        # answered: unknown, as the period starts before the store's first recorded day
        # (tests/integration/test_answer_before_first_record.py)
        assert (r.returncode, json.loads(r.stdout)["coverage"]["windows"]) == (3, 5), r.stderr


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_outside_the_utc_calendar_is_a_usage_error(tmp_path: Path, text: str) -> None:
    url = store(tmp_path, range(3))
    for option in ("--since", "--until"):
        r = observed(url, "crc32", option, text, real=option == "--since")
        assert r.returncode == 2 and "out of range in UTC" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "extra",
    [("--window-days", "1000000000000"), ("--window-days", "1000000"), ("--until", "0001-01-03")],
)
def test_a_vex_window_reaching_before_year_one_is_not_fully_watched(
    tmp_path: Path, extra: tuple[str, str]
) -> None:
    url = store(tmp_path, range(40))
    assert by_vuln(json.loads(vex_cli(tmp_path, url, VULNS).stdout))["CVE-NEVER"]["status"] == "not_affected"
    r = vex_cli(tmp_path, url, VULNS, *extra)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    never = by_vuln(doc)["CVE-NEVER"]
    assert never["status"] == "under_investigation" and "not watched gap-free" in never["status_notes"]


def test_a_window_stamped_on_the_calendar_s_last_day_does_not_block_every_answer(
    url: str, tmp_path: Path
) -> None:
    """One row stamped 9999-12-31T23:59:30 (60 s: it would end past the calendar) made every answer about
    the image (query observed, evidence, witness sign, vex) an internal error, exit 2: its end and the day
    after it overflowed (store/coverage.py ``last_end``, store/coverage_unseen.py). Seen failing before
    the fix (exit 2, OverflowError). Now they are answered; the VEX window
    is the 30 days up to the last day before now, as without that row."""
    end = 253_402_300_770 * S  # 9999-12-31T23:59:30Z
    with open_store(url) as s:
        s.write([delta("crc32", 3, 12)], watched(range(40)))
        s.write([], [ObservationWindow(IMG, "node-1", end, 9, Posture.EBPF_DEEP, 60, "tetragon")])
    r = observed(url, "inflate")
    assert r.returncode in (1, 3) and "Traceback" not in r.stderr, r.stderr
    assert json.loads(r.stdout)["coverage"]["end"] == "9999-12-31T23:59:59.999999Z", r.stdout
    r = vex_cli(tmp_path, url, VULNS)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    never = by_vuln(doc)["CVE-NEVER"]  # its window ends on the last day before now, as without that row
    assert never["status"] == "not_affected" and "window 2026-06-11..2026-07-10" in never["status_notes"]
    r = evidence(url)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr  # 1: not observed, answered
