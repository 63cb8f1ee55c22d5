"""An answer rests on one snapshot of the store, never on reads from before and after a flush.

Agents flush while ``vex`` reads. On PostgreSQL each statement of a READ COMMITTED transaction
sees what was committed before it, so a flush landing between two of the reads of one answer
mixes them: ``inflateGetHeader`` not called (read before the flush) and its day watched (read
after). Here the image was watched on days 1..29 and a flush adds day 30's window with a call
of ``inflateGetHeader``; the 30-day window then ends on day 30 (the last watched day). Read
before the flush the answer is under_investigation (day 0 not watched); after it, affected. Read
across it, as the old code did when the flush landed between ``observe``'s reads of the calls
and of the watched days, it was ``not_affected``. The flush is made to land exactly there by a
hook on the statement that reads the watched days, through a connection of its own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import IMG, delta, watched

FN = "inflateGetHeader"
VULNS = {
    "vulnerabilities": [{"id": "CVE-S", "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": [FN]}]}]
}


@pytest.fixture
def flush_between_reads(pg_url: str) -> Iterator[list[int]]:
    """Commit day 30 (a window and a call) from another connection just before the first read of
    the watched days; yields the list the hook appends to when it fired."""
    fired: list[int] = []

    def hook(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # the watched-days read: store/watched_sql.py window_level(...) >= EbpfDeep
        if fired or "END >=" not in statement or "hot_symbols" in statement:
            return
        fired.append(1)
        with open_store(pg_url, migrate=False) as s:
            s.write([delta(FN, 30, 3)], watched(range(30, 31)))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", hook)
    try:
        yield fired
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", hook)


@pytest.mark.postgres
def test_a_flush_between_two_reads_never_makes_not_affected(
    tmp_path: Path, pg_url: str, flush_between_reads: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(pg_url) as s:
        s.write([delta("", 1, 1, EvidenceKind.LOADED)], watched(range(1, 30)))
    (tmp_path / "v.json").write_text(json.dumps(VULNS))
    key = tmp_path / "w.key"
    assert main(["witness", "keygen", "--private", str(key), "--public", str(tmp_path / "w.pub")]) == 0
    capsys.readouterr()
    argv = ["vex", "--store", pg_url, "--image", IMG, "--vulns", str(tmp_path / "v.json"), "--key", str(key)]
    assert main([*argv, "--witness-dir", str(tmp_path / "w")]) == 0
    assert flush_between_reads == [1]  # the flush landed while vex was reading
    [statement] = json.loads(capsys.readouterr().out)["statements"]
    assert statement["status"] in ("under_investigation", "affected"), statement["status_notes"]
    # and read again, all of it: the call is there
    assert main([*argv, "--witness-dir", str(tmp_path / "w2")]) == 0
    assert json.loads(capsys.readouterr().out)["statements"][0]["status"] == "affected"


def _assessment(capsys: pytest.CaptureFixture[str]) -> tuple[Any, ...]:
    envelope = json.loads(capsys.readouterr().out)
    predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    a, calls = predicate["assessment"], [r["invocation_count"] for r in predicate["observation"]["functions"]]
    return a["reachability_state"], a["rts"], calls


@pytest.mark.postgres
def test_a_witness_rests_on_one_snapshot(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    # witness sign reads through the same observe() as vex: its claim is the answer of one snapshot,
    # the one before the flush or the one after it, never calls from before and days from after.
    with open_store(pg_url) as s:
        s.write([delta("", 1, 1, EvidenceKind.LOADED)], watched(range(1, 30)))
    key = tmp_path / "w.key"
    assert main(["witness", "keygen", "--private", str(key), "--public", str(tmp_path / "w.pub")]) == 0
    capsys.readouterr()
    argv = ["witness", "sign", "--store", pg_url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
            "--function", FN, "--key", str(key)]  # fmt: skip
    assert main(argv) == 0
    before = _assessment(capsys)
    fired = request.getfixturevalue("flush_between_reads")
    assert main(argv) == 0
    assert fired == [1]
    across = _assessment(capsys)
    assert main(argv) == 0
    after = _assessment(capsys)
    assert before != after and across in (before, after), (before, across, after)
