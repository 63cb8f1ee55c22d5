"""``node_fact_builds`` rows of a node retention left no window of are pruned; no answer changes.

The table (migration 0016, store/fact_builds.py) grew by each node name ever seen: an autoscaled
node replaced under a new name left its rows for ever. A question meets the facts of the nodes its
image was watched on (store/node_facts.py), so a node whose windows retention removed is reached by
no question: its builds go, the other nodes' stay, and a container watched on a kept node still
answers unknown by its build.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.fact_builds import prune_fact_builds, prune_gone_nodes_builds
from stellaops_runtime.store.upsert import write_rows
from tests.integration.test_node_fact_builds import _ask
from tests.integration.test_vex import DAY, T0, S

APP = "/usr/bin/stella-app"
POD = "sha256:" + "ab" * 32  # ran node-2's file through a hostPath mount, build "b2"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC) + dt.timedelta(days=100)  # T0 + 100 days


def _fact(node: str, bid: str, at: int) -> HotSymbolDelta:
    key = HotSymbolKey(f"host:{node}", APP, "split_fn.part.0", EvidenceKind.UNPROBED)
    return HotSymbolDelta(key, at, 0, at, at, confidence=0.0, build_id=bid, node_name=node)


def _windows(image: str, node: str, first_day: int, days: int) -> list[ObservationWindow]:
    return [
        ObservationWindow(image, node, T0 + d * DAY, 9, Posture.EBPF_DEEP, 60, "native")
        for d in range(first_day, first_day + days)
    ]


def _builds(s: object) -> list[tuple[str, str]]:
    with s.db.connect() as conn:  # type: ignore[attr-defined]
        table = "signals.node_fact_builds" if conn.dialect == "postgresql" else "node_fact_builds"
        return sorted(tuple(r) for r in conn.execute(f"SELECT image_digest, build_id FROM {table}").rows)


def test_a_node_retention_left_no_window_of_loses_its_builds_only(url: str) -> None:
    """node-1 was watched 60-100 days before NOW (its windows past the 31-day retention), node-2 in the
    last 40 days. Each stored two builds of its fact. The store's retention pass (store/writer.py
    ``maintain``) deletes node-1's two rows and keeps node-2's (seen failing before its call was
    added: all four kept); POD, watched on node-2 and showing its second build, still answers
    unknown naming the tail; a second prune deletes nothing."""
    early, late = T0 + 2 * DAY, T0 + 70 * DAY
    with open_store(url, retention_days=31) as s:
        s.write([], _windows("host:node-1", "node-1", 0, 40) + _windows("host:node-2", "node-2", 60, 40))
        s.write([], _windows(POD, "node-2", 60, 40))
        for n, (node, bid, at) in enumerate(
            [("node-1", "a1", early), ("node-1", "a2", early), ("node-2", "b1", late), ("node-2", "b2", late)]
        ):
            assert not s.write_batch(Batch(f"{node}/agent", n + 1, [_fact(node, bid, at)])).errors
        load = HotSymbolKey(POD, "/host" + APP, "", EvidenceKind.LOADED)
        s.write([HotSymbolDelta(load, late, 1, late + S, late + S, build_id="b2", node_name="node-2")], [])
        before = _builds(s)
        assert [h for h, _ in before].count("host:node-1") == 2
        assert s.maintain(now=NOW, retention=True).ran  # the retention pass, then its prunes
        assert _builds(s) == [r for r in before if r[0] == "host:node-2"]
        with s.db.begin() as conn:
            assert prune_fact_builds(conn) == 0
    code, doc = _ask(url, POD, "b2:split_fn+0x0")
    assert (code, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in str(doc["reason"]), doc


def test_a_node_back_while_the_prune_runs_keeps_the_build_its_flush_found_stored(pg_url: str) -> None:
    """PostgreSQL's READ COMMITTED: node-1, silent past the retention, is back; its first flush
    writes a window and the fact of build a1, which it finds stored (ON CONFLICT DO NOTHING), and
    has not committed when the prune looks for node-1's windows. Before the fix the prune saw none
    and deleted a1 under the flush: committed, node-1 had a window and no build a1 (its agent hands
    a build over once), so a container showing a1 could say not_observed. Now the flush holds its
    host's lock shared until its commit and the prune waits for it: a1 stays."""
    late = T0 + 70 * DAY
    with open_store(pg_url, retention_days=31) as s:
        assert not s.write_batch(Batch("node-1/old", 1, [_fact("node-1", "a1", T0)])).errors
        assert _builds(s) == [("host:node-1", "a1")]  # no window of node-1 left: a candidate
        prune: threading.Thread | None = None
        with s.db.begin() as flush:  # the back node's first flush, open
            write_rows(flush, [_fact("node-1", "a1", late)], _windows("host:node-1", "node-1", 70, 1))
            prune = threading.Thread(target=prune_gone_nodes_builds, args=(s.db, "test"))
            prune.start()
            with s.db.connect() as watch:  # the prune ended, or waits on the flush's lock
                for _ in range(1000):
                    waiting = watch.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    ).scalar()
                    if waiting or not prune.is_alive():
                        break
                    time.sleep(0.01)
        prune.join(30)
        assert not prune.is_alive()
        assert _builds(s) == [("host:node-1", "a1")]


def test_a_retention_pass_that_removed_no_window_does_not_prune(url: str) -> None:
    """Every agent runs the retention pass hourly (on PostgreSQL whoever takes the maintenance
    lock), and the prune read the whole table's hosts and one statement a node: a fleet of N nodes
    paid N x N statements an hour. A node loses its last window only in a pass that removed
    windows (a day's, once a day), so a pass that removed none does not prune. Seen failing before:
    the table read and one look a node (4 nodes)."""
    nodes = [f"node-{n}" for n in range(4)]
    with open_store(url, retention_days=31) as s:
        s.write([], [w for node in nodes for w in _windows(f"host:{node}", node, 90, 5)])
        for n, node in enumerate(nodes):
            assert not s.write_batch(Batch(f"{node}/agent", n + 1, [_fact(node, "b1", T0 + 90 * DAY)])).errors
        seen: list[str] = []
        s.db.hooks.append(lambda sql, _params, _many: seen.append(str(sql)))
        done = s.maintain(now=NOW, retention=True)
        assert done.ran and not done.deleted_rows
        assert [q for q in seen if "node_fact_builds" in q] == []
        assert len(_builds(s)) == 4
