"""A real agent stopped with SIGTERM writes its stop record: what ran on, and whether its Node goes.

Without it, a node whose agent stopped reads open from its watched end to every later question
(store/coverage_open.py): a node scaled away left its images unknown until retention removed its
rows. The real agent (export file source, a SQLite store, lifecycle off, the ObservationNode writer
on the Kubernetes API emulator) stores a third of the synthetic stream, is sent SIGTERM, and after
its final flush and proof of life writes the record (agent/stop_record.py, store/node_stop.py):
lifecycle off, so the images of its last two windows, marked uncertain. When its Node is being
deleted (a ``metadata.deletionTimestamp``; it also carries the cluster autoscaler's removal taint,
which alone is not taken as gone) it reads the Node at the stop and says ``gone``: a question days
later finds nothing open after the stop's day (seen failing before the stop record: the two days
after it open). One agent only (the suite's time): a plain stop's
reading is tests/integration/test_node_stop.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.store.coverage_live import store_now
from stellaops_runtime.store.coverage_open import open_days
from stellaops_runtime.store.engine import open_store
from tests.e2e import export_agents as x
from tests.e2e import harness as h
from tests.e2e.test_agent_killed_open_day import proofs
from tests.integration.kubeharness import Cluster, obj

pytestmark = [pytest.mark.e2e]

IMAGE = h.EXPECTED["images"][0]["digest"]
TAINT = {"key": "ToBeDeletedByClusterAutoscaler", "value": "1733500000", "effect": "NoSchedule"}


async def test_a_stopped_agent_says_what_ran_on_and_that_its_node_goes(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = sqlite_at_head(tmp_path / "hot.db")
    export = tmp_path / "tetragon.log"
    await asyncio.to_thread(export.write_bytes, b"")
    await asyncio.to_thread((tmp_path / "kube").mkdir)
    async with Cluster(tmp_path / "kube") as cluster:
        node = obj("v1", "Node", x.NODE, spec={"taints": [TAINT]})
        node["metadata"].update(deletionTimestamp="2026-12-06T20:00:00Z", finalizers=["example.com/hold"])
        cluster.put(node)  # stored as a Node being deleted is (a create would drop the timestamp)
        conf = {
            **x.conf(url, str(tmp_path / "spool.jsonl"), export),
            "observationNode": {"enabled": True, "kubeconfig": str(cluster.kubeconfig)},
            "hotSymbols": {"flushIntervalSeconds": 0.5},
        }
        cfg, port = h.write_config(tmp_path, **conf)
        proc = h.start_agent(cfg)
        try:
            await asyncio.to_thread(x.append, export, x.lines(x.OBJS[: x.THIRD]))
            await h.wait_for(lambda: x.settled(port, x.THIRD), what="a third stored", timeout=60)
            await h.wait_for(lambda: proofs(url) > 0, what="the agent's proof of life")
            code, out = await x.stop(proc)
        finally:
            x.kill_all([proc])
    assert code == 0, out
    row = stop_row(url)
    assert (row["stop_reason"], bool(row["gone"])) == ("deleting", True), row
    assert row["stop_agent"] == row["agent_id"] and row["stopped_at"] >= row["written_at"], row
    assert bool(row["images_uncertain"]) and IMAGE in json.loads(row["running_images"]), row  # lifecycle off
    with open_store(url) as s, s.engine.connect() as c:
        today = store_now(c).date()
        later = open_days(c, IMAGE, store_now(c) + dt.timedelta(days=2))
    assert later <= {today}, later  # the node is gone: nothing of the image open after the stop's day


def stop_row(url: str) -> dict[str, Any]:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return dict(c.execute(sa.text("SELECT * FROM node_liveness")).mappings().one())
    finally:
        eng.dispose()
