"""A policy whose probe entry does not fit in the probe ConfigMap says so in its status, and stops saying it.

The probe ConfigMap holds every policy's entry under 1 MiB
(``render_policy.MAX_PROBE_CONFIG_BYTES``); what does not fit is left out,
largest first (tests/unit/test_probe_configmap_bound.py). The user reads the
policy, not the ConfigMap: its ``status.notes`` must say that the native
probes do not cover it, and drop that once room is made. Policy deletions
must still finish while the ConfigMap is full.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, OBSERVER_KIND, POLICY_KIND
from stellaops_runtime.controller.render_agent import probe_configmap_name
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, probe_entry_key
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for
from tests.integration.posture_cluster import BIG, MEDIUM, add_past_full_policies, observer_spec

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, AGENTS_NS, OBSERVER = "scan", "stellaops-system", "fleet"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Namespace", AGENTS_NS))
        await c.create(obj(API_VERSION, OBSERVER_KIND, OBSERVER, spec=observer_spec(AGENTS_NS)))
        await add_past_full_policies(c, NS)
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        yield op


def _doc(cluster: Cluster) -> dict[str, Any]:
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(OBSERVER), AGENTS_NS) or {}
    raw = (cm.get("data") or {}).get(PROBE_CONFIG_KEY)
    return json.loads(raw) if raw else {}


def _notes(cluster: Cluster, name: str) -> list[str]:
    pol = cluster.stored(r.OBSERVATION_POLICIES, name, NS) or {}
    return list((pol.get("status") or {}).get("notes") or [])


def _says_left_out(cluster: Cluster, name: str) -> bool:
    return any("probe ConfigMap" in n and "native probes do not cover" in n for n in _notes(cluster, name))


async def test_the_policy_left_out_says_so_until_room_is_made(
    cluster: Cluster, operator: OperatorRun
) -> None:
    key = probe_entry_key(kind=POLICY_KIND, namespace=NS, name=BIG)
    medium = sorted(probe_entry_key(kind=POLICY_KIND, namespace=NS, name=n) for n in MEDIUM)
    await wait_for(
        lambda: sorted(_doc(cluster).get("policies") or {}) == medium,
        limit_s=60,
        what="the medium ones listed",
    )
    assert _doc(cluster)["policiesOmitted"] == [key]
    await wait_for(lambda: _says_left_out(cluster, BIG), limit_s=60, what="the big policy's note")
    assert not any(_says_left_out(cluster, n) for n in MEDIUM)

    # A deletion finishes while the ConfigMap is full, and makes room: the big one gets in.
    for name in MEDIUM[:2]:
        await cluster.delete(r.OBSERVATION_POLICIES, name, namespace=NS)
    await wait_for(
        lambda: all(cluster.stored(r.OBSERVATION_POLICIES, n, NS) is None for n in MEDIUM[:2]),
        limit_s=60,
        what="the deleted policies released",
    )
    await wait_for(
        lambda: key in (_doc(cluster).get("policies") or {}), limit_s=60, what="the big one listed"
    )
    assert "policiesOmitted" not in _doc(cluster)
    await wait_for(lambda: not _says_left_out(cluster, BIG), limit_s=60, what="the note gone")
    await operator.settle(timeout=60)
