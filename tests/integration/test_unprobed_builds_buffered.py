"""Two builds' facts of one tail, drained into one window of the outage buffer, both reach the store.

agent/unprobed.py hands a node file's tail fact over once per build (a file upgraded in place while
the agent runs: agent/tetragon_facts.py reads it again), and a build replaced before any drain is
still handed over. But the buffer (store/pending_buffer.py) kept one row per (key, window), and the
build-id is not in the key: the second build's fact merged into the first's row and kept its
build-id, so the store never heard of the new build (store/fact_builds.py) and, the agent having
marked it sent, never would. That happened whenever both builds fell in one aggregation window
before a flush stored the first: two upgrades between drains, or one during a store outage. A
container showing the new build then said not_observed about a tail nobody probed.
"""

from __future__ import annotations

import datetime as dt
import json

from stellaops_runtime.agent.unprobed import UnprobedTails
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.pending import PendingWrites
from tests.cli_run import cli_in_process
from tests.integration.test_fact_builds_prune import APP, POD, _builds, _windows
from tests.integration.test_vex import DAY, T0, S

KEY = ("host:node-2", APP, "split_fn.part.0")


def test_a_build_upgraded_within_one_buffered_window_keeps_its_fact(url: str) -> None:
    """node-2's file went b1 -> b2 (its agent read both) with no flush stored in between: both
    builds are stored, and POD, which ran b2 through a hostPath mount, answers unknown naming the
    tail. Seen failing before the fix: only b1 stored, POD's answer not_observed (exit 1)."""
    late = T0 + 70 * DAY
    tails = UnprobedTails()
    pending = PendingWrites(agent_id="node-2/agent", window_seconds=60)
    tails.replace({KEY: ("b1", "")})
    pending.add(tails.deltas(node_name="node-2", now_ns=late, window_seconds=60), [], owned=True)
    tails.replace({KEY: ("b2", "")})  # the store was out of reach: b1's row still buffered
    pending.add(tails.deltas(node_name="node-2", now_ns=late + S, window_seconds=60), [], owned=True)
    with open_store(url) as s:
        s.write([], _windows("host:node-2", "node-2", 60, 40) + _windows(POD, "node-2", 60, 40))
        load = HotSymbolKey(POD, "/host" + APP, "", EvidenceKind.LOADED)
        s.write([HotSymbolDelta(load, late, 1, late + S, late + S, build_id="b2", node_name="node-2")], [])
        for batch in pending.take_all():
            assert not s.write_batch(batch).errors
        assert _builds(s) == [("host:node-2", "b1"), ("host:node-2", "b2")]
    r = cli_in_process(
        "query", "observed", "--image", POD, "--function", "b2:split_fn+0x0", "--store", url, "--json",
        "--since", _iso(T0 + 61 * DAY), "--until", _iso(T0 + 90 * DAY),
    )  # fmt: skip  # a closed period of POD's windows: no open day of node-2 stands in for the fact
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in str(doc["reason"]), doc


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_live_agent_s_build_pruned_while_its_node_had_no_window_is_handed_over_again(url: str) -> None:
    """node-1's agent stored its file's facts of b1 and, after an upgrade in place, b2, then wrote
    no window for longer than the retention (its store out of reach, or nothing to watch): the
    retention pass left node-1 no window and pruned both builds (store/fact_builds.py). The agent,
    alive all along, had each build marked sent for its whole life, so b2 never came back, and POD,
    started on node-1 afterwards with b2 through a hostPath mount, said not_observed. Facts are now
    handed over again once a day. Seen failing before the fix: the later drain gave nothing."""
    tails = UnprobedTails()
    tails.replace({KEY: ("b1", "")})
    tails.replace({KEY: ("b2", "")})
    early, back = T0 + 2 * DAY, T0 + 100 * DAY
    with open_store(url, retention_days=31) as s:
        s.write([], _windows("host:node-2", "node-2", 0, 40))
        sent = tails.deltas(node_name="node-2", now_ns=early, window_seconds=60)
        assert not s.write_batch(Batch("node-2/agent", 1, sent)).errors
        assert s.maintain(now=dt.datetime.fromtimestamp(back / 1e9, dt.UTC), retention=True).ran
        assert _builds(s) == []  # no window of node-2 left: its builds pruned
        again = tails.deltas(node_name="node-2", now_ns=back, window_seconds=60)
        assert ("split_fn.part.0", "b2") in [(d.key.function_name, d.build_id) for d in again]
        assert not s.write_batch(Batch("node-2/agent", 2, again)).errors
        s.write([], _windows("host:node-2", "node-2", 100, 2) + _windows(POD, "node-2", 100, 2))
        load = HotSymbolKey(POD, "/host" + APP, "", EvidenceKind.LOADED)
        s.write([HotSymbolDelta(load, back, 1, back + S, back + S, build_id="b2", node_name="node-2")], [])
    r = cli_in_process(
        "query", "observed", "--image", POD, "--function", "b2:split_fn+0x0", "--store", url, "--json",
        "--since", _iso(T0 + 100 * DAY), "--until", _iso(T0 + 101 * DAY),
    )  # fmt: skip
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in str(doc["reason"]), doc
