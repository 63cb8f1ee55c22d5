"""End to end: a store written by an agent of the old posture rule, read and then written by today's.

Agents before store migration 0009 recorded uprobe events as EbpfDeep, and
such windows backed "not observed" and VEX ``not_affected`` for every function
the uprobes did not probe. The store is the real old agent's
(tests/fixtures/store_0008_old_posture: commit 0b6af2d~1, schema 0008, the
uprobe image ``UPROBED`` at posture_level 3). The real CLI, without migrating
(readers never do), answers unknown (exit 3) for it, saying why, ``query
images`` shows it at ActiveTracing, and VEX says under_investigation. Then
today's real agent migrates the store and writes the same export: the image
whose kprobes carried user stacks is not observed (EbpfDeep, exit 1), the
uprobe image stays unknown.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness as h
from tests.e2e.test_posture_evidence_e2e import STACKED, UPROBED, _vex, export_lines, observed
from tests.node_alive import each_node_alive_after

pytestmark = [pytest.mark.e2e]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_0008_old_posture" / "store.sql"
OLD_RULE = (
    "6 windows recorded at posture EbpfDeep by agents before store migration 0009 read as ActiveTracing"
)
NOT_RECORDED = "whether the events carried user stacks was not recorded"


def old_store(tmp: Path) -> str:
    db = tmp / "hot.db"
    conn = sqlite3.connect(db)
    try:
        conn.executescript(FIXTURE.read_text())
    finally:
        conn.close()
    return f"sqlite:///{db}"


def revision(url: str) -> str:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])
    finally:
        conn.close()


def test_old_uprobe_windows_back_no_absence_before_or_after_the_new_agent(tmp_path: Path) -> None:
    url = old_store(tmp_path)
    assert revision(url) == "0008"
    code, doc = observed(url, UPROBED)
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert doc["coverage"]["posture"]["highest"] == "ActiveTracing"
    assert OLD_RULE in doc["reason"] and NOT_RECORDED in doc["reason"], doc["reason"]
    st: dict[str, Any] = _vex(tmp_path, url, UPROBED)
    assert st["status"] == "under_investigation", st
    assert "never watched at a posture that can see calls" in st["status_notes"], st["status_notes"]
    r = h.cli("query", "images", "--json", "--store", url)
    assert r.returncode == 0, r.stderr
    (img,) = [i for i in json.loads(r.stdout)["images"] if i["image"] == UPROBED]
    assert img["coverage"]["posture"] == {"lowest": "ActiveTracing", "highest": "ActiveTracing"}, img
    assert revision(url) == "0008"  # reading did not migrate

    h.run_export_agent(tmp_path, url, export_lines())
    # its agent exits after the stream: the nodes' agents ran on (tests/node_alive.py)
    each_node_alive_after(url)
    assert revision(url) != "0008"  # today's agent migrated the store

    code, doc = observed(url, STACKED)  # its windows now carry counted user stacks
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    assert doc["coverage"]["posture"]["highest"] == "EbpfDeep"
    code, doc = observed(url, UPROBED)  # old windows and new: uprobes show only their functions
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert "6 windows had events at posture EbpfDeep" in doc["reason"], doc["reason"]
    assert "agents before store migration 0009 recorded for uprobe and USDT events" in doc["reason"]
    assert _vex(tmp_path, url, UPROBED)["status"] == "under_investigation"
