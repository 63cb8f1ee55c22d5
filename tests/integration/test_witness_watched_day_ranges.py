"""A witness signs which days were watched, not only how many: a VEX window can be checked from it.

A ``not_affected`` statement rests on "every UTC day of the window watched gap-free", but the
witnesses it cites signed ``watched_days``, a count over all time: 39 days of a 40-day record say
nothing about whether the missing day is in the statement's 30-day window, so a policy engine
could not check the statement from what was signed. The predicate now carries
``observation.watched_day_ranges``, the gap-free watched days as ISO 8601 date intervals, oldest
first; past the 64 KiB predicate the oldest go first, counted in ``watched_day_ranges_omitted``.
Read from the payload with a DSSE verifier written from the spec, checked against the schema.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.witness.statement import MAX_PREDICATE_BYTES
from tests.integration.test_vex import DAY, IMG, T0, delta, vex_cli
from tests.node_alive import alive_after
from tests.witness_helpers import key_pair, run_witness, signed_predicate

FIRST = dt.date(2026, 6, 1)  # T0's day


def _windows(days: list[int]) -> list[ObservationWindow]:
    """The image's windows on those days, and a record of node-1 the day after the last (its agent
    ran on: the last day is watched whole, not open, store/coverage_open.py)."""
    windows = [
        ObservationWindow(IMG, "node-1", T0 + d * DAY, 9, Posture.EBPF_DEEP, 60, "tetragon") for d in days
    ]
    return windows + alive_after("node-1", T0 + (max(days) + 1) * DAY)


def _days(ranges: list[str]) -> set[dt.date]:
    out: set[dt.date] = set()
    for r in ranges:
        first, last = (dt.date.fromisoformat(x) for x in r.split("/"))
        out |= {first + dt.timedelta(days=i) for i in range((last - first).days + 1)}
    return out


def test_a_not_affected_window_is_checked_from_its_witness(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hot.db"
    with open_store(url) as s:  # 40 days but day 5: the statement's 30 days (10..39) all watched
        s.write([delta("", 0, 1, EvidenceKind.LOADED)], _windows([d for d in range(40) if d != 5]))
    vulns = {"vulnerabilities": [{"id": "CVE-N", "affected": [{"purl": "pkg:deb/debian/zlib1g",
                                                               "functions": ["inflate"]}]}]}  # fmt: skip
    r = vex_cli(tmp_path, url, vulns)
    assert r.returncode == 0, r.stderr
    [st] = json.loads(r.stdout)["statements"]
    assert st["status"] == "not_affected", st["status_notes"]
    m = re.search(r"window (\d{4}-\d\d-\d\d)\.\.(\d{4}-\d\d-\d\d): all 30 days", st["status_notes"])
    assert m, st["status_notes"]
    first, last = dt.date.fromisoformat(m[1]), dt.date.fromisoformat(m[2])
    [witness] = (tmp_path / "w").iterdir()
    o = signed_predicate(witness, tmp_path / "w.pub")["observation"]
    day = [FIRST + dt.timedelta(days=i) for i in range(40)]
    assert o["watched_day_ranges"] == [f"{day[0]}/{day[4]}", f"{day[6]}/{day[39]}"]
    assert o["watched_day_ranges_omitted"] == 0
    window = {first + dt.timedelta(days=i) for i in range((last - first).days + 1)}
    assert window <= _days(o["watched_day_ranges"])  # what the statement says, from what was signed
    assert o["watched_days"] == len(_days(o["watched_day_ranges"]))


@pytest.mark.parametrize("url", ["sqlite"], indirect=True)
def test_thousands_of_ranges_keep_the_newest_under_the_bound(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every other day for 16 years: 3,000 one-day ranges, more than the 64 KiB hold."""
    days = [-2 * k for k in range(3000)]
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED)], _windows(days))
    private, public = key_pair(tmp_path)
    out = tmp_path / "w.json"
    code, _, err = run_witness(capsys, "sign", "--store", url, "--image", IMG,
                               "--purl", "pkg:deb/debian/zlib1g",
                               "--function", "inflate", "--key", str(private),
                               "--out", str(out))  # fmt: skip
    assert code == 0, err
    p = signed_predicate(out, public)
    assert len(json.dumps(p, sort_keys=True, separators=(",", ":")).encode()) <= MAX_PREDICATE_BYTES
    o = p["observation"]
    kept = o["watched_day_ranges"]
    assert 0 < len(kept) < 3000 and len(kept) + o["watched_day_ranges_omitted"] == 3000
    assert kept[-1] == f"{FIRST}/{FIRST}"  # the newest kept, oldest first
    assert kept == sorted(kept) and o["watched_days"] == 3000
