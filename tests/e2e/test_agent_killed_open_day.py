"""An agent killed and not back: the time after the node's last record is unwatched, never "not observed".

The time between two agents is recorded as a gap when the next agent starts (agent/watch_record.py).
While none has started, nothing in the store said the node went unwatched: the day of the killed
agent's last window, one EbpfDeep window of the image and no gap, was a watched day, so ``query
observed`` over time after the kill said "not observed" (exit 1) and ``vex`` said ``not_affected``
about calls nobody watched. Now the time after a node's latest record is open
(store/coverage_open.py): unknown (exit 3) and ``under_investigation``, naming it.

The real agent (gRPC from the replay server, a SQLite store, its spool, five-second windows, a flush
every 0.2 s) stores the synthetic stream and is killed with SIGKILL; then the real CLI is asked
about the time from the end of the agent's own start gap to now. Seen failing before the fix (the
tree of d65c0f1b, before the wiring 088180bf): exit 1 ``not_observed``. Events are stamped ten
minutes past the next UTC midnight (a node clock ahead) so that their window starts after that start
gap, on the store's next UTC day (the clean-clone run of 41b6f50a at 23:50). The question comes one
five-second window after the kill: the node's proof of life (migration 0015, the store's clock,
flushes every 0.2 s) opens the gap then; by the node's windows (before it) nothing was open until
ten minutes and three windows after the kill (seen failing on the tree of 75b0b9e8: exit 1
``not_observed``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h
from tests.e2e.test_agent_restart_gap import all_stored, received, retimed

pytestmark = [pytest.mark.e2e]

OBJS = h.stream_objects()
IMAGE = h.EXPECTED["images"][0]["digest"]  # billing-70: kprobes with user stacks (EbpfDeep), zlib loaded
FUNCTION = "inflateGetHeader"  # a zlib function the stream never calls
ZLIB = "pkg:deb/debian/zlib1g"


def past_midnight() -> dt.timedelta:
    """Ten minutes past the next UTC midnight, from now: the node's windows on the store's next day."""
    now = dt.datetime.now(dt.UTC)
    return (
        dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
        - now
        + dt.timedelta(minutes=10)
    )


async def test_the_time_after_a_killed_agent_s_last_window_is_unknown(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = sqlite_at_head(tmp_path / "hot.db")
    # stamped at least ten minutes ahead (a node clock ahead): after the agent's own start gap (the
    # node's first agent: Tetragon's cache hold before its stream opened,
    # tests/e2e/test_first_agent_window.py), which a period must miss; and past the next UTC midnight:
    # the node's windows on a later UTC day than the store's clock and the agent's proof of life (the
    # clean-clone run at 23:50, ten minutes ahead, read the image as not running on the day its
    # watched time ended: exit 1 "not_observed"); a clock ahead within the day is
    # tests/integration/test_coverage_open_liveness.py's
    ahead = past_midnight()
    server = ReplayServer(retimed(tmp_path, OBJS, "ahead", ahead=ahead))
    addr = await server.start("127.0.0.1:0")
    conf = {"store": {"url": url, "spoolPath": str(tmp_path / "spool.jsonl")}, "native": {"enabled": False}}
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr},
        # five-second windows, flushes every 0.2 s: the proof of life's grace is 3 x 0.2 s + 2 s
        hotSymbols={"aggregationWindowSeconds": 5, "flushIntervalSeconds": 0.2},
        symbols={"hostRoot": "/"},  # frames and files resolved against this host (harness.run_export_agent)
        attribution={"hostRoot": "/"},
        **conf,
    )
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: received(port) == len(OBJS), what="the agent received the stream")
        await h.wait_for(lambda: all_stored(port, len(OBJS)), what="the agent stored every count")
        # and wrote its proof of life (after the flush that stored them; an agent killed before it is
        # judged by the row it wrote before its first rows: tests/integration/test_node_liveness_start.py)
        await h.wait_for(lambda: proofs(url) > 0, what="the agent's proof of life")
        proc.send_signal(signal.SIGKILL)
        killed = dt.datetime.now(dt.UTC)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
        assert code == -signal.SIGKILL, out
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop(grace=0)
    # from the end of the agent's start gap to now, past the node's last window
    since = read_time(url, "max(gap_end)", "gap_end IS NOT NULL") + dt.timedelta(milliseconds=1)
    # one window after the kill (the node's windows are stamped ten minutes ahead: by them, not
    # before ten minutes and three windows on; the proof of life is on the store's clock)
    await h.wait_for(lambda: dt.datetime.now(dt.UTC) > killed + dt.timedelta(seconds=5), what="a window on")
    r = h.cli("query", "observed", "--store", url, "--image", IMAGE, "--function", FUNCTION, "--purl", ZLIB,
              "--since", since.isoformat(), "--json")  # fmt: skip
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["answer"]) == (3, "unknown"), (r.returncode, r.stdout, r.stderr)  # was 1
    opened = [g for g in doc["gaps"] if g.get("not_watched") == ["open"]]
    assert len(opened) == 1, r.stdout
    assert (opened[0]["node"], opened[0]["scope"]) == ("e2e-node", "node"), opened
    assert "no record of the node since" in doc["reason"], doc["reason"]
    # vex names it too (the day is out already: the agent's start gap is on it)
    vulns = {"vulnerabilities": [{"id": "CVE-OPEN", "affected": [{"purl": ZLIB, "functions": [FUNCTION]}]}]}
    (tmp_path / "vulns.json").write_text(json.dumps(vulns))
    key = tmp_path / "w.key"
    r = h.cli("witness", "keygen", "--private", str(key), "--public", str(tmp_path / "w.pub"))
    assert r.returncode == 0, r.stderr
    r = h.cli("vex", "--store", url, "--image", IMAGE, "--vulns", str(tmp_path / "vulns.json"),
              "--key", str(key), "--witness-dir", str(tmp_path / "w"), "--window-days", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    (st,) = json.loads(r.stdout)["statements"]
    assert st["status"] == "under_investigation", st
    assert "no record of the node since" in st["status_notes"], st["status_notes"]
    # a function that ran still answers "observed"
    r = h.cli("query", "observed", "--store", url, "--image", IMAGE, "--function", "crc32")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


def proofs(url: str) -> int:
    """Rows of ``node_liveness`` (store/node_liveness.py) in the store."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return int(c.execute(sa.text("SELECT count(*) FROM node_liveness")).scalar_one())
    finally:
        eng.dispose()


def read_time(url: str, what: str, where: str = "1 = 1") -> dt.datetime:
    """One moment read from the store's ``observation_windows`` (SQLite: no schema)."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            value = c.execute(sa.text(f"SELECT {what} FROM observation_windows WHERE {where}")).scalar()
    finally:
        eng.dispose()
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)
