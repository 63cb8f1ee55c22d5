"""The operator's opted-out list, end to end through the real agent CLI (issue 14).

The fixture stream's events carry neither the ``stellaops.io/observe-level``
annotation nor the ``stellaops.io/observe-off`` label, as from a Tetragon
without ``--enable-pod-annotations`` before the operator labelled the pods.
The probe ConfigMap file the operator renders (its own function) names the
pods of one image; the agent, started as a subprocess with that file as
``native.probeConfigFile``, must drop all their events (counted as
``reason="operator"``) and count every other image exactly as in the ground
truth. Of that image it may store only a gap-only observation window for
each (node, aggregation window) in which the stream had its events
(tests/e2e/optout_store.py); its digest is in no other byte of the database,
nor in the agent's output or /metrics, and no pod name of the list is in any
of them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.controller.opted_out import OptedOutPod
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, render_probe_configmap
from tests.e2e import harness as h
from tests.e2e import optout_store as store

pytestmark = [pytest.mark.e2e]

OBJS = h.stream_objects()
DIGEST = h.EXPECTED["images"][0]["digest"]


def _pod(o: dict[str, Any]) -> dict[str, Any] | None:
    for key, body in o.items():
        if key.startswith("process_") and isinstance(body, dict) and "process" in body:
            return body["process"].get("pod")
    return None


def _of_image(o: dict[str, Any]) -> bool:
    pod = _pod(o)
    return pod is not None and str(pod["container"]["image"]["id"]).endswith(DIGEST)


async def test_pods_on_the_operators_list_leave_nothing(tmp_path: Path, sqlite_at_head: Any) -> None:
    pods = {(p["namespace"], p["name"]) for o in OBJS if _of_image(o) and (p := _pod(o)) is not None}
    dropped = sum(1 for o in OBJS if _of_image(o))
    assert pods and dropped > 100
    cm = render_probe_configmap(
        name="stellaops-probes-fleet", namespace="stellaops", entries={}, owner=None,
        opted_out=[OptedOutPod(ns, name, f"uid-{name}") for ns, name in pods],
    )  # fmt: skip
    probes = tmp_path / PROBE_CONFIG_KEY
    probes.write_text(cm["data"][PROBE_CONFIG_KEY])
    export = tmp_path / "tetragon.log"
    export.write_text("".join(json.dumps(o) + "\n" for o in OBJS))
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": sqlite_at_head(tmp_path / "hot.db")},  # at head (tests/conftest.py)
        native={"enabled": False, "probeConfigFile": str(probes)},
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        await h.wait_for(
            lambda: (
                h.metric_sum(h.scrape(port), "stellaops_runtime_event_processing_latency_seconds_count")
                == len(OBJS)
            ),
            what="every event processed",
            timeout=90,
        )
        m = h.scrape(port)
        metrics = await asyncio.to_thread(store.metrics_text, port)
        code, out = await asyncio.to_thread(h.finish, proc, 120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    assert "Traceback" not in out
    assert h.metric(m, "stellaops_runtime_events_opted_out_total", reason="operator") == dropped
    assert h.metric(m, "stellaops_runtime_events_opted_out_total", reason="annotation") == 0
    assert h.metric(m, "stellaops_runtime_optout_operator_pods") == len(pods)
    assert h.metric(m, "stellaops_runtime_optout_list_errors_total") == 0

    eng = sa.create_engine(f"sqlite:///{tmp_path}/hot.db")
    with eng.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(sa.text("SELECT * FROM hot_symbols"))]
        observed = {i for (i,) in c.execute(sa.text("SELECT image_digest FROM observation_windows"))}
    eng.dispose()
    assert rows and DIGEST not in {r["image_digest"] for r in rows} and DIGEST in observed
    truth = store.opted_out_windows(OBJS, _of_image)
    assert truth and {img for img, _, _ in truth} == {DIGEST}
    store.check_gap_only_rows(tmp_path / "hot.db", [DIGEST], truth)
    hexdigest = DIGEST.removeprefix("sha256:").encode()
    raw = store.database_bytes(tmp_path / "hot.db")
    assert hexdigest in raw and hexdigest not in store.bytes_without_gap_rows(
        tmp_path / "hot.db", [DIGEST], tmp_path
    )
    assert hexdigest.decode() not in out and hexdigest.decode() not in metrics
    for _, name in pods:
        assert name.encode() not in raw and name not in out and name not in metrics, name
    invoked = {
        f"{r['image_digest']}|{r['module']}|{r['function_name']}": r["invocation_count"]
        for r in rows
        if r["evidence_kind"] == "invoked"
    }
    expected = {k: v for k, v in h.EXPECTED["uprobe_counts"].items() if not k.startswith(DIGEST)}
    assert invoked == expected
