"""On SQLite too, an answer rests on one snapshot of the store, never on reads across a flush.

As tests/integration/test_answer_snapshot.py on PostgreSQL: the image was watched on days 1..29
and a flush adds day 30's window with a call of ``inflateGetHeader``. The flush is started, from
another connection in another thread (as an agent's), exactly when ``vex`` or ``witness sign``
first reads the watched days, and given up to two seconds. Read across it, the answer mixed calls
from before with days from after: ``not_affected``, and a signed "0 calls in 30 watched days".
Now the answer's read transaction holds the flush off until the answer is read (the flush then
lands, as the second question shows); the answer is the one before the flush.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_snapshot import FN, VULNS, _assessment
from tests.integration.test_vex import IMG, delta, watched

Armed = tuple[str, list[threading.Thread], list[bool]]


@pytest.fixture
def flush_between_reads(tmp_path: Path) -> Iterator[Armed]:
    """(store URL, the flush thread once started, [armed]): append to ``armed`` to arm the hook."""
    url = f"sqlite:///{tmp_path}/hs.db"
    with open_store(url) as s:
        s.write([delta("", 1, 1, EvidenceKind.LOADED)], watched(range(1, 30)))
    started: list[threading.Thread] = []
    armed: list[bool] = []

    def flush() -> None:
        with open_store(url, migrate=False) as s:
            s.write([delta(FN, 30, 3)], watched(range(30, 31)))

    def hook(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # the watched-days read: store/watched_sql.py window_level(...) >= EbpfDeep
        if not armed or started or "END >=" not in statement or "hot_symbols" in statement:
            return
        t = threading.Thread(target=flush)
        started.append(t)
        t.start()
        t.join(2.0)  # an unblocked flush lands now, between the reads; a held-off one waits

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", hook)
    try:
        yield url, started, armed
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", hook)
        for t in started:
            t.join(30)


def test_a_flush_between_two_reads_never_makes_not_affected_on_sqlite(
    tmp_path: Path,
    flush_between_reads: Armed,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, started, armed = flush_between_reads
    armed.append(True)
    (tmp_path / "v.json").write_text(json.dumps(VULNS))
    key = tmp_path / "w.key"
    assert main(["witness", "keygen", "--private", str(key), "--public", str(tmp_path / "w.pub")]) == 0
    capsys.readouterr()
    argv = ["vex", "--store", url, "--image", IMG, "--vulns", str(tmp_path / "v.json"), "--key", str(key)]
    assert main([*argv, "--witness-dir", str(tmp_path / "w")]) == 0
    assert len(started) == 1  # the flush was started while vex was reading
    [statement] = json.loads(capsys.readouterr().out)["statements"]
    assert statement["status"] == "under_investigation", statement["status_notes"]  # before the flush
    started[0].join(30)
    assert not started[0].is_alive()
    assert main([*argv, "--witness-dir", str(tmp_path / "w2")]) == 0  # the flush landed after it
    assert json.loads(capsys.readouterr().out)["statements"][0]["status"] == "affected"


def test_a_witness_rests_on_one_snapshot_on_sqlite(
    tmp_path: Path, flush_between_reads: Armed, capsys: pytest.CaptureFixture[str]
) -> None:
    url, started, armed = flush_between_reads
    key = tmp_path / "w.key"
    assert main(["witness", "keygen", "--private", str(key), "--public", str(tmp_path / "w.pub")]) == 0
    capsys.readouterr()
    argv = ["witness", "sign", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
            "--function", FN, "--key", str(key)]  # fmt: skip
    assert main(argv) == 0
    before = _assessment(capsys)
    armed.append(True)
    # The flush starts while it reads; --save then writes on the same connection (after the
    # agent's held-off write, never failing on it).
    assert main([*argv, "--save"]) == 0
    across = _assessment(capsys)
    started[0].join(30)
    assert main(argv) == 0
    after = _assessment(capsys)
    assert across == before and after != before, (before, across, after)
    assert after[2] == [3]
