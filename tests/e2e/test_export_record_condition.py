"""The ObservationNode says when the export file's position cannot be recorded, not only ``/readyz``.

Defect (s35/h2), reproduced with a real agent as a subprocess, a real PostgreSQL and the
Kubernetes API emulator the operator tests use (tests/integration/kubeharness.py): while the
node's watch record could not be written (its hostPath directory gone), the agent held its
export drains and stored nothing; its log, ``export_drains_held_total`` and ``/readyz`` said so,
but its ObservationNode, what the cluster reads, showed nothing. Now the status carries the
condition ``ExportPositionRecorded``: False (``WatchRecordUnwritable``) while drains are held,
True again once the record is written. The stream is the synthetic one
(tests/fixtures/tetragon/synthetic, copied from /work/shared/fixtures/tetragon).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.kube import resources as r
from tests.e2e import export_agents as x
from tests.e2e import harness as h
from tests.integration.kubeharness import Cluster, obj

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

HELD = "stellaops_runtime_export_drains_held_total"


def _condition(cluster: Cluster) -> dict[str, Any]:
    on = cluster.stored(r.OBSERVATION_NODES, x.NODE) or {}
    for c in (on.get("status") or {}).get("conditions") or ():
        if c.get("type") == "ExportPositionRecorded":
            return dict(c)
    return {}


async def test_the_observation_node_says_the_export_position_is_unrecorded(
    tmp_path: Path, pg_url: str
) -> None:
    node_dir, away = tmp_path / "node", tmp_path / "node-away"
    await asyncio.to_thread(node_dir.mkdir)
    spool, export = str(node_dir / "spool.jsonl"), tmp_path / "tetragon.log"
    await asyncio.to_thread(export.write_bytes, b"")
    await asyncio.to_thread((tmp_path / "kube").mkdir)
    async with Cluster(tmp_path / "kube") as cluster:
        await cluster.create(obj("v1", "Node", x.NODE))
        conf = {
            **x.conf(pg_url, spool, export),
            "observationNode": {
                "enabled": True,
                "heartbeatSeconds": 1,
                "kubeconfig": str(cluster.kubeconfig),
            },
        }
        await asyncio.to_thread((tmp_path / "a").mkdir)
        cfg, port = h.write_config(tmp_path / "a", **conf)
        proc = h.start_agent(cfg)
        try:
            await asyncio.to_thread(x.append, export, x.lines(x.OBJS[: x.THIRD]))
            await h.wait_for(lambda: x.settled(port, x.THIRD), what="the first third stored", timeout=60)
            await h.wait_for(lambda: _condition(cluster).get("status") == "True", what="recorded", timeout=60)
            assert _condition(cluster)["reason"] == "Recorded"
            await asyncio.to_thread(node_dir.rename, away)  # the record cannot be written
            await asyncio.to_thread(x.append, export, x.lines(x.OBJS[x.THIRD : 2 * x.THIRD]))
            await h.wait_for(lambda: h.metric(h.scrape(port), HELD) > 0, what="a drain held", timeout=60)
            await h.wait_for(
                lambda: _condition(cluster).get("status") == "False", what="unrecorded", timeout=60
            )
            held = _condition(cluster)
            assert held["reason"] == "WatchRecordUnwritable", held
            assert "cannot be written" in held["message"] and "held, not stored" in held["message"], held
            await asyncio.to_thread(away.rename, node_dir)  # writable again: the held counts are stored
            want = x.truth(x.OBJS[: 2 * x.THIRD])
            await h.wait_for(lambda: x.stored(pg_url) == want, what="the held counts stored", timeout=60)
            await h.wait_for(
                lambda: _condition(cluster).get("status") == "True", what="recorded again", timeout=60
            )
            code, out = await x.stop(proc)
        finally:
            x.kill_all([proc])
    assert code == 0, out
    assert x.stored(pg_url) == want
