"""A VEX window ends at the last day the image is known to have run, not at its last watched day.

An image watched 40 days at EbpfDeep, then run 5 more days where its calls could not be seen
(Tetragon dropped its events, or the node's policy lost its stack traces: ActiveTracing). The
default window ended at the last *watched* day, so the recorded unwatched days after it fell
outside: ``vex`` on day 45 said ``not_affected`` (window 2026-06-11..2026-07-10 "all 30 days
watched gap-free"), though the vulnerable function may have run on any of those 5 days. Now the
window ends at the last day of any record of the image (a watched day, a gap of it, a run that
could not see calls): under_investigation, naming the first day not watched. ``--until`` still
asks about the window given. The real CLI's own entry point in this process (tests/cli_run.py
``cli_in_process``), real writer, SQLite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import DAY, IMG, OPENVEX, T0, VULNS, S, by_vuln, delta, vex_cli, watched
from tests.node_alive import alive_after


def filled(tmp: Path, after: str) -> str:
    url = f"sqlite:///{tmp}/hot.db"
    windows = watched(range(40))
    for d in range(40, 45):  # 2026-07-11..2026-07-15: the image ran, its calls unseen
        start = T0 + d * DAY
        if after == "gap":
            deep, end = Posture.EBPF_DEEP, start + 50 * S
            w = ObservationWindow(
                IMG, "node-1", start, 9, deep, 60, "tetragon", gap_start_ns=start + S, gap_end_ns=end
            )
            windows.append(w)
        else:
            windows.append(ObservationWindow(IMG, "node-1", start, 9, Posture.ACTIVE_TRACING, 60, "tetragon"))
    # its agent ran on after day 44 (tests/node_alive.py): no open time of the image past it
    windows += alive_after("node-1", T0 + 45 * DAY)
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 3, 12)], windows)
    return url


def never(tmp: Path, url: str, *extra: str) -> dict:  # type: ignore[type-arg]
    r = vex_cli(tmp, url, VULNS, *extra)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    return by_vuln(doc)["CVE-NEVER"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("after", ["gap", "active_tracing"])
def test_days_the_image_ran_unseen_after_its_last_watched_day_are_in_the_window(
    tmp_path: Path, after: str
) -> None:
    url = filled(tmp_path, after)
    st = never(tmp_path, url)
    assert st["status"] == "under_investigation", st["status_notes"]
    notes = st["status_notes"]
    assert "window 2026-06-16..2026-07-15: 5 of 30 days not watched gap-free (first 2026-07-11)" in notes
    assert ("gaps: " in notes) if after == "gap" else ("could not be seen" in notes)
    st = never(tmp_path, url, "--until", "2026-07-10")  # the window asked about was watched
    assert st["status"] == "not_affected", st["status_notes"]
