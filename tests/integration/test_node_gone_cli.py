"""``stella-runtime node-gone``: an operator ends a lost node's open time (cli/node_gone.py).

node-a's agent died four days ago and never came back (no stop record: a node powered off);
node-b watched the image every day since. Without a word from the operator, every later day reads
unknown until retention removes node-a's rows. ``node-gone`` records it gone at the store's now:
the days from node-a's watched end to now stay unknown, a question about time after the record
rests on node-b. Refused, nothing written, for a node that shows life (a recent proof of life or
row) or has no proof of life; a later proof of life on node-a takes the record back. SQLite and
PostgreSQL; the real CLI as a subprocess once, in process otherwise.
"""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from stellaops_runtime.store.coverage_live import store_now
from stellaops_runtime.store.coverage_open import open_days, open_gaps
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import node_liveness
from tests.cli_run import cli_in_process, cli_json
from tests.integration.test_coverage_open_past_midnight import IMG, D, M, killed_days_ago, proof, window


def stop_columns(url: str, node: str) -> tuple[object, ...]:
    c = node_liveness.c
    with open_store(url) as s, s.engine.connect() as conn:
        row = conn.execute(
            sa.select(c.stopped_at, c.stop_agent, c.stop_reason, c.gone).where(c.node_name == node)
        ).one()
    return tuple(row)


def test_a_node_recorded_gone_reads_unknown_to_the_record_and_watched_after(url: str) -> None:
    kill = killed_days_ago(url)
    with open_store(url) as s, s.engine.connect() as c:
        now = store_now(c)
    args = ("node-gone", "--store", url, "--node", "node-a", "--json")
    if url.startswith("sqlite"):  # the real CLI as a subprocess once (seconds under load: not twice)
        code, doc = cli_json(*args)
    else:
        r = cli_in_process(*args)
        code, doc = r.returncode, json.loads(r.stdout)
    assert code == 0 and doc["recorded"] is True and doc["agent_id"] == "node-a/x", doc
    at = dt.datetime.fromisoformat(doc["at"])
    assert now <= at < now + dt.timedelta(minutes=5)  # the store's clock
    assert stop_columns(url, "node-a")[1:] == ("node-a/x", "operator", True)
    with open_store(url) as s, s.engine.connect() as c:
        (gap,) = [g for g in open_gaps(c, image=IMG, asked=at + D) if g.node_name == "node-a"]
        assert (gap.node_name, gap.start, gap.end) == ("node-a", kill, at)  # ends at the record
        # the days between the loss and the record stay unknown; a later day's rest on node-b (node-b's
        # own agent is alive now: asked now, nothing of node-b is open)
        assert open_days(c, IMG) == {kill.date() + i * D for i in range((at.date() - kill.date()).days + 1)}
    # a later proof of life on node-a (the node back, a next agent) takes the record back
    proof(url, "node-a", started=at + D, alive=at + 2 * D, written=at + 2 * D)
    with open_store(url) as s, s.engine.connect() as c:
        mine = [g for g in open_gaps(c, image=IMG, asked=at + 4 * D) if g.node_name == "node-a"]
        assert [g.end for g in mine] == [at + 4 * D]  # open on to the question again


def test_a_node_that_shows_life_or_has_no_proof_is_refused_and_nothing_written(url: str) -> None:
    killed_days_ago(url)
    with open_store(url) as s, s.engine.connect() as c:
        now = store_now(c)
    # node-b proves alive now: refused, exit 1
    r = cli_in_process("node-gone", "--store", url, "--node", "node-b")
    assert r.returncode == 1 and "refused" in r.stderr and "may be alive" in r.stderr, r.stderr
    assert stop_columns(url, "node-b") == (None, None, None, None)
    # node-a: its proof is old, but a row of it starts 5 windows ago (proofs failing, rows stored)
    with open_store(url) as s:
        s.write([], [window(IMG, "node-a", now - 5 * M)])
    r = cli_in_process("node-gone", "--store", url, "--node", "node-a", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["recorded"] is False, r.stdout
    assert "may be alive" in r.stderr and stop_columns(url, "node-a") == (None, None, None, None)
    # with a quiet time shorter than that row's age: recorded
    r = cli_in_process("node-gone", "--store", url, "--node", "node-a", "--quiet-windows", "3")
    assert r.returncode == 0 and "recorded as gone" in r.stdout, r.stderr
    # no proof of life at all, a name that is no name: refused, a usage error
    r = cli_in_process("node-gone", "--store", url, "--node", "node-zz")
    assert r.returncode == 1 and "no proof of life" in r.stderr, r.stderr
    for bad in ("", "a\x00b", " node-a", "x" * 300):
        assert cli_in_process("node-gone", "--store", url, "--node", bad).returncode == 2
    assert cli_in_process("node-gone", "--store", url, "--node", "n", "--quiet-windows", "0").returncode == 2


def test_a_node_gone_ends_its_open_time_under_the_rule_of_its_latest_record_too(url: str) -> None:
    """node-a's last proof of life is of an agent that started long after node-a's latest record (an
    idle node without lifecycle rows, an agent that stored nothing): the proof vouches for no record,
    so the node's open time is its latest record's rule. Seen failing before: ``node-gone`` said
    recorded, and the span ran on to every later question (its stop was read on the proof's rule
    only)."""
    kill = killed_days_ago(url)
    proof(url, "node-a", started=kill + D, alive=kill + D, written=kill + D)  # vouches for no record
    r = cli_in_process("node-gone", "--store", url, "--node", "node-a", "--json")
    assert r.returncode == 0, r.stderr
    at = dt.datetime.fromisoformat(json.loads(r.stdout)["at"])
    with open_store(url) as s, s.engine.connect() as c:
        mine = [g for g in open_gaps(c, image=IMG, asked=at + 3 * D) if g.node_name == "node-a"]
        assert [g.end for g in mine] == [at]
        assert max(open_days(c, IMG)) == at.date()
    # a row of node-a after the record (it was not gone: its proofs failed while its rows were stored)
    with open_store(url) as s:
        s.write([], [window(IMG, "node-a", at + M)])
    with open_store(url) as s, s.engine.connect() as c:
        mine = [g for g in open_gaps(c, image=IMG, asked=at + 3 * D) if g.node_name == "node-a"]
        assert [(g.start, g.end) for g in mine] == [(at + M, at + 3 * D)]  # open again from that row
