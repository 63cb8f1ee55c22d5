"""The agent watches a CRI runtime: containerd's real CRI plugin, a real pod, the real agent CLI.

``stella-runtime agent`` with ``lifecycle.runtime: cri`` pointed at a private
containerd with its CRI plugin on (tests/cri_harness.py) must find the pod's
container through the CRI (relisting: containerd 1.6 has no
GetContainerEvents), and file Tetragon events that name that container only
by ``process.docker`` (no pod, no image) under the image digest from the CRI,
with the pod's namespace and name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellaops_runtime.store.engine import create_store_engine
from stellaops_runtime.store.schema import hot_symbols
from tests.cri_harness import CriSetup, running
from tests.e2e import harness as h
from tests.e2e.lifecycle_export import FUNCTION, ExportWriter, lifecycle_agent_config
from tests.e2e.test_agent_lifecycle_containers import run_agent

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def cri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CriSetup]:
    yield from running(tmp_path_factory.mktemp("cri-e2e-images"))


def test_the_agent_enriches_events_from_the_cri_registry(
    cri: CriSetup, tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    d = cri.driver
    pod = d.run_pod("cart-1", "shop")
    cid = d.create(pod, "cart", cri.image.ref, ["sleep", "600"])
    d.start(cid)
    config, port, export, url = lifecycle_agent_config(
        tmp_path,
        url=sqlite_at_head(tmp_path / "hot.db"),
        window_seconds=1,
        lifecycle={
            "enabled": True,
            "runtime": "cri",
            # The first CRI socket that exists is watched: the absent one is passed over.
            "criAddresses": [str(tmp_path / "no-crio.sock"), cri.containerd.socket],
            "criRelistSeconds": 0.5,
            "windowSettleSeconds": 0,
        },
    )
    writers: list[ExportWriter] = []
    try:

        def enriched(samples: dict) -> bool:
            pod_filled = h.metric(samples, "stellaops_runtime_lifecycle_enriched_total", field="pod") > 0
            return pod_filled and any(r.function_name == FUNCTION for r in _rows(url))

        out, m = run_agent(
            config,
            port,
            enriched,
            "events enriched from the CRI registry",
            on_sync=lambda: writers.append(ExportWriter(export, [cid[:31]])),
        )
        assert "container lifecycle observer: cri at " + cri.containerd.socket in out
        assert h.metric(m, "stellaops_runtime_lifecycle_connected") == 1
        assert (
            h.metric(m, "stellaops_runtime_lifecycle_containers") == 2
        )  # the pod's sandbox and its container
        assert h.metric(m, "stellaops_runtime_lifecycle_cgroups") == 2
        assert h.metric(m, "stellaops_runtime_lifecycle_enriched_total", field="image_digest") > 0
        rows = _rows(url)
        assert {r.image_digest for r in rows} == {cri.image.manifest_digest}, rows
        [row] = [r for r in rows if r.function_name == FUNCTION]
        sample = row.sample if isinstance(row.sample, dict) else json.loads(row.sample)
        assert row.invocation_count > 0 and (sample["namespace"], sample["pod"]) == ("shop", "cart-1")
    finally:
        for w in writers:
            w.close()
        d.stop_pod(pod.sandbox_id)
        d.remove_pod(pod.sandbox_id)


def _rows(url: str) -> list[sa.Row]:
    eng = create_store_engine(url)
    try:
        with eng.connect() as conn:
            c = hot_symbols.c
            return list(
                conn.execute(sa.select(c.image_digest, c.function_name, c.invocation_count, c.sample))
            )
    except sa.exc.OperationalError:  # the agent has not created its tables yet
        return []
    finally:
        eng.dispose()
