"""A node whose agent died and did not come back: its open time runs past midnight to the question.

node-a's agent was killed (SIGKILL, an OOM kill) three days ago while its node and its workloads
ran on; node-b watched the image every day since. Before, node-a's open span stopped at the
midnight after its watched end, so a question about a later day took nothing out for node-a:
``query observed`` over the next day said ``not_observed`` (exit 1) and ``vex --until`` that day
said ``not_affected``, resting on days node-a ran the image unwatched. Seen failing before the fix
(the tree of ab0cba4d): exit 1 and ``not_affected``, and ``open_days`` only the kill's day. Now
every UTC day from the watched end to the question is open for the images node-a watched on its
last day; a newer proof of node-a closes the span there. SQLite and PostgreSQL, the real CLI in
process.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.coverage_live import store_now
from stellaops_runtime.store.coverage_open import open_days, open_gaps
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns, node_liveness
from tests.cli_run import cli_in_process
from tests.integration.test_vex import ZLIB

IMG = "sha256:" + "e" * 64
OTHER = "sha256:" + "f" * 64  # an image node-a ran before its last day only
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"
FN = "inflateGetHeader"
D = dt.timedelta(days=1)
M = dt.timedelta(minutes=1)


def window(image: str, node: str, t: dt.datetime) -> ObservationWindow:
    return ObservationWindow(image, node, datetime_to_ns(t), 5, Posture.EBPF_DEEP, 60, "tetragon")


def loaded(t: dt.datetime) -> HotSymbolDelta:
    ns = datetime_to_ns(t)
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, ZLIB, "", EvidenceKind.LOADED), window_start_ns=ns, invocation_count=1,
        first_seen_ns=ns, last_seen_ns=ns, purl=PURL, node_name="node-b",
    )  # fmt: skip


def proof(url: str, node: str, *, started: dt.datetime, alive: dt.datetime, written: dt.datetime) -> None:
    """A proof of life as the agent writes it (store/node_liveness.py), at the given store-clock
    moments (a proof written days ago, by an agent killed since); node and store clocks agree."""
    row = {
        "node_name": node, "agent_id": f"{node}/x", "started_at": started, "started_node": started,
        "alive_through": alive, "alive_node": alive, "written_at": written, "flush_seconds": 10.0,
        "window_seconds": 60,
    }  # fmt: skip
    with open_store(url) as s, s.engine.begin() as c:
        c.execute(sa.delete(node_liveness).where(node_liveness.c.node_name == node))
        c.execute(sa.insert(node_liveness).values(**row))


def killed_days_ago(url: str) -> dt.datetime:
    """node-a killed at noon four days ago (its last proof then), node-b alive and watching the image
    every day since (a window at each noon and one now)."""
    with open_store(url) as s, s.engine.connect() as c:
        now = store_now(c)
    kill = dt.datetime.combine((now - 4 * D).date(), dt.time(12), dt.UTC)
    windows = [window(IMG, "node-a", kill - 2 * M), window(IMG, "node-a", kill - M)]
    windows.append(window(OTHER, "node-a", kill - D))  # not on its last day: not open
    windows += [window(IMG, "node-b", kill - D + i * D) for i in range(4)]
    windows += [window(IMG, "node-b", now - 2 * M), window(OTHER, "node-b", kill - D)]
    with open_store(url) as s:
        s.write([loaded(kill - D)], windows)
    proof(url, "node-a", started=kill - 2 * D, alive=kill, written=kill)
    proof(url, "node-b", started=kill - 2 * D, alive=now, written=now)
    return kill


def days(url: str, image: str, asked: dt.datetime) -> set[dt.date]:
    with open_store(url) as s, s.engine.connect() as c:
        return open_days(c, image, asked)


def observed(url: str, since: dt.datetime, until: dt.datetime) -> tuple[int, str]:
    r = cli_in_process("query", "observed", "--store", url, "--image", IMG, "--function", FN, "--json",
                       "--since", since.isoformat(), "--until", until.isoformat())  # fmt: skip
    assert r.returncode in (1, 3), r.stderr
    return r.returncode, json.loads(r.stdout)["answer"]


def vex_status(tmp: Path, url: str, until: dt.date) -> tuple[str, str]:
    vulns = {"vulnerabilities": [{"id": "CVE-X", "affected": [{"purl": "pkg:deb/debian/zlib1g",
                                                               "functions": [FN]}]}]}  # fmt: skip
    (tmp / "vulns.json").write_text(json.dumps(vulns))
    key = tmp / "w.key"
    if not key.exists():
        r = cli_in_process("witness", "keygen", "--private", str(key), "--public", str(tmp / "w.pub"))
        assert r.returncode == 0, r.stderr
    r = cli_in_process("vex", "--store", url, "--image", IMG, "--vulns", str(tmp / "vulns.json"),
                       "--key", str(key), "--witness-dir", str(tmp / "w"), "--until", until.isoformat(),
                       "--window-days", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    (st,) = json.loads(r.stdout)["statements"]
    return st["status"], st["status_notes"]


def test_open_time_runs_over_every_day_to_the_question(url: str) -> None:
    kill = killed_days_ago(url)
    first = kill.date()
    assert days(url, IMG, kill + D) == {first, first + D}  # was: the kill's day only
    assert days(url, IMG, kill + 3 * D) == {first + i * D for i in range(4)}
    assert days(url, OTHER, kill + 3 * D) == set()  # not watched on node-a's last day
    with open_store(url) as s, s.engine.connect() as c:
        (gap,) = open_gaps(c, image=IMG, asked=kill + D)
    assert (gap.node_name, gap.start, gap.end) == ("node-a", kill, kill + D)


def test_a_later_day_reads_unknown_in_query_and_vex(tmp_path: Path, url: str) -> None:
    kill = killed_days_ago(url)
    for later in (1, 3):
        day = dt.datetime.combine(kill.date() + later * D, dt.time(), dt.UTC)
        since, until = day + M, day + D - M
        assert observed(url, since, until) == (3, "unknown")  # was (1, "not_observed")
        status, notes = vex_status(tmp_path, url, day.date())
        assert status == "under_investigation", notes  # was not_affected
        assert "the store holds no record of the node since" in notes and "node-a" in notes, notes


def test_a_newer_proof_of_the_node_closes_its_span_there(tmp_path: Path, url: str) -> None:
    kill = killed_days_ago(url)
    back = kill + 2 * D  # a new agent on node-a two days later (alive now), and its restart gap row
    with open_store(url) as s, s.engine.connect() as c:
        now = store_now(c)
    proof(url, "node-a", started=back, alive=now, written=now)
    gap = {"gap_start_ns": datetime_to_ns(kill), "gap_end_ns": datetime_to_ns(back)}
    with open_store(url) as s:
        s.write([], [dataclasses.replace(window(IMG, "node-a", back), **gap)])  # type: ignore[arg-type]
    with open_store(url) as s, s.engine.connect() as c:
        assert open_gaps(c, image=IMG) == [] and open_days(c, IMG) == set()  # asked now
    # the day between reads unknown by the gap the new agent recorded, not by an open one
    day = dt.datetime.combine(kill.date() + D, dt.time(), dt.UTC)
    assert observed(url, day + M, day + D - M) == (3, "unknown")


def test_retention_removing_the_node_s_rows_ends_its_open_days(url: str) -> None:
    kill = killed_days_ago(url)
    later = kill + 33 * D  # past the shortest retention (31 days) of node-a's rows
    with open_store(url) as s:
        s.write([], [window(IMG, "node-b", later - M)])
    proof(url, "node-b", started=kill - 2 * D, alive=later, written=later)  # node-b's agent ran on
    assert len(days(url, IMG, later)) == 34  # the kill's day to the question's: a node gone for good
    with open_store(url, retention_days=31) as s:
        s.maintain(now=later)
    assert days(url, IMG, later) == set()  # no row of node-a left: nothing says it ran the image


def test_an_agent_killed_just_after_midnight_leaves_the_images_of_the_day_before_open(url: str) -> None:
    """Killed 30 s into a UTC day: no row of the new day stored yet for the image that ran on across
    midnight. Seen failing before (its images looked up on the kill's day only): nothing open, and
    the days after read as watched by node-b."""
    with open_store(url) as s, s.engine.connect() as c:
        now = store_now(c)
    kill = dt.datetime.combine((now - 3 * D).date(), dt.time(), dt.UTC) + dt.timedelta(seconds=30)
    with open_store(url) as s:
        s.write([], [window(IMG, "node-a", kill - 2 * M), window(IMG, "node-a", kill - M)])
    proof(url, "node-a", started=kill - D, alive=kill, written=kill)
    first = kill.date()
    assert days(url, IMG, kill + 2 * D) == {first, first + D, first + 2 * D}
    # an image whose last row on the node is hours before the kill, on the day before: not open
    with open_store(url) as s:
        s.write([], [window(OTHER, "node-a", kill - 5 * 60 * M)])
    assert days(url, OTHER, kill + 2 * D) == set()
