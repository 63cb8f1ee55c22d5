"""``vex`` and ``evidence`` over a node whose agent may be down: its last day is open, not watched.

A node's watched time ends at its latest record (store/coverage_open.py): 40 days of windows of
an image on node-1 and nothing of node-1 after them is what the store holds while node-1's agent
is down (SIGKILL, an OOM kill, a node lost) since its last window. ``vex`` then said
``not_affected`` of a function nobody was known to watch on that last day ("all 30 days watched
gap-free"), and ``evidence`` counted the day (seen failing before the wiring, 088180bf:
not_affected, watched_days 40). Now the last day is out of the window: under_investigation,
the note naming the open gap, evidence 39 days and the gap of kind ``open``. The open gap runs on
to the question (node-1 may run the image still, unwatched: session 46), and vex's default window
ends at the last day the image is known to have run (vex.last_known_day reads the gap): the
question's day, 30 of 30 days not watched; it cannot slide back to before the crash; ``--until``
the last day names the one day. A newer record of node-1 closes it: not_affected, 40 days. The
real CLI's own entry point in this process (tests/cli_run.py ``cli_in_process``), SQLite and
PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_unattributed import cli
from tests.integration.test_vex import DAY, IMG, OPENVEX, T0, by_vuln, delta, vex_cli, watched
from tests.node_alive import ALIVE_IMAGE, alive_after

VULNS = {
    "vulnerabilities": [
        {
            "id": "CVE-NEVER",
            "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": ["inflateGetHeader"]}],
        }
    ]
}
ASK = ("--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "inflateGetHeader")


def _statement(tmp: Path, url: str, *extra: str) -> dict[str, str]:
    r = vex_cli(tmp, url, VULNS, *extra)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    return by_vuln(doc)["CVE-NEVER"]


def test_a_node_s_last_day_is_open_until_a_newer_record_of_it(tmp_path: Path, url: str) -> None:
    windows = [w for w in watched(range(40)) if w.image_digest != ALIVE_IMAGE]  # June 1 to July 10
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 3, 12)], windows)
    st = _statement(tmp_path, url, "--until", "2026-07-10")
    assert (st["status"], st.get("justification")) == ("under_investigation", None), st
    notes = st["status_notes"]
    assert "window 2026-06-11..2026-07-10: 1 of 30 days not watched gap-free (first 2026-07-10)" in notes
    assert "on node node-1 " in notes and "the store holds no record of the node since" in notes, notes
    asked = dt.datetime.now(dt.UTC).date().isoformat()
    code, ev = cli(url, "evidence", *ASK)
    assert (code, ev["data"]["watched_days"]) == (1, 39), ev["data"]
    [gap] = ev["data"]["gaps"]
    assert (gap["node"], gap["scope"], gap["not_watched"]) == ("node-1", "node", ["open"]), gap
    # open from its last record on to the question (the store's now), over every day between
    assert gap["start"] == "2026-07-10T00:00:00Z" and gap["end"][:10] >= asked, gap
    # by default the window ends at the last day the image is known to have run: the question's
    st = _statement(tmp_path, url)
    assert st["status"] == "under_investigation", st
    assert f"..{gap['end'][:10]}: 30 of 30 days not watched gap-free" in st["status_notes"], st

    with open_store(url) as s:  # node-1's agent ran on: a record of it the next day closes the day
        s.write([], alive_after("node-1", T0 + 40 * DAY))
    st = _statement(tmp_path, url)
    assert (st["status"], st["justification"]) == ("not_affected", "vulnerable_code_not_in_execute_path")
    assert "window 2026-06-11..2026-07-10: all 30 days watched gap-free" in st["status_notes"]
    code, ev = cli(url, "evidence", *ASK)
    assert (code, ev["data"]["watched_days"], ev["data"]["gaps"]) == (1, 40, []), ev["data"]
