"""Which source covers a function named by PURL: agents' ObservationNodes folded into the policy, on kmock.

Two nodes, each reported by the real agent-side ObservationNode writer:

- ``node-native``: Tetragon does not answer there and the agent's own BCC
  probes deliver; its source switch's stats (here a plain object with the
  same fields the switch fills, see agent/source_switch_stats.py; the agent
  filling them from real probes is tests/integration/test_agent_purl_functions.py)
  say the policy's function is attached in 2 containers and another
  symbol is not in the package;
- ``node-tetragon``: Tetragon (the replay server) answers: it is the source,
  and cannot trace functions named by PURL.

The real operator folds them into the ObservationPolicy's ``status.purlFunctions``:
``native`` on the node where it is attached, ``none`` on the Tetragon node and
where the symbol is missing; the status validates against the CRD schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.controller.purl_coverage import TETRAGON_CANNOT
from stellaops_runtime.kube import resources as r
from stellaops_runtime.replay.server import ReplayServer
from tests.crd_schema import errors, load_crd, validator_for
from tests.e2e import harness as h
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_source_down import make_writer, report

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "shop"
CRDS = Path(__file__).resolve().parents[2] / "manifests" / "crds"
PURL = "pkg:deb/debian/openssl@3.0.11?arch=amd64"
KEY = f"{POLICY_KIND}/{NS}/tls"
SPEC = {
    "podSelector": {"matchLabels": {"app": "tls"}},
    "maxLevel": "EbpfDeep",
    "functions": [{"purl": PURL, "symbols": ["SSL_read", "SSL_nope"]}],
}


@dataclass
class SwitchView:
    """The fields of the source switch's stats the ObservationNode writer reads (BCC delivering)."""

    purl_functions: list[dict[str, Any]]
    active: str = "bcc"
    connected: bool = True
    tetragon_connected: bool = False
    native_posture: Posture = Posture.EBPF_DEEP
    native_why: str = ""
    purl_functions_omitted: int = 0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        for n in ("node-native", "node-tetragon"):
            await c.create(obj("v1", "Node", n))
        await c.create(obj(API_VERSION, POLICY_KIND, "tls", namespace=NS, spec=SPEC))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster, fast_config(cluster, rollout_refresh_seconds=0.3)) as op:
        await op.settle()
        yield op


def entry(symbol: str, state: str, reason: str, containers: int) -> dict[str, Any]:
    return {
        "policy": KEY, "purl": PURL, "symbol": symbol, "source": "native", "state": state,
        "reason": reason, "containers": containers,
    }  # fmt: skip


async def test_policy_status_says_which_source_covers_each_purl_function(
    cluster: Cluster, operator: OperatorRun
) -> None:
    def unresolved() -> list[str]:
        status = (cluster.stored(r.OBSERVATION_POLICIES, "tls", NS) or {}).get("status") or {}
        return [u["purl"] for u in status.get("unresolvedFunctions") or []]

    # The operator's first status write (a loaded machine may still be on it after the settle).
    assert await wait_for(unresolved, limit_s=60, what="the policy's unresolved functions") == [PURL]
    missing = "none of the 1 ELF file(s) of openssl defines SSL_nope"
    view = SwitchView([entry("SSL_read", "attached", "", 2), entry("SSL_nope", "not_in_package", missing, 2)])
    native = make_writer(cluster, f"127.0.0.1:{h.free_port()}", view)  # type: ignore[arg-type]
    native.node_name = "node-native"
    await report(native)
    node = cluster.stored(r.OBSERVATION_NODES, "node-native")
    assert node is not None and node["status"]["source"] == "native"
    # an empty text is left out of the status patch (agent/status_patch.py: the API server refuses it)
    sent = [{k: v for k, v in e.items() if v != ""} for e in view.purl_functions]
    assert node["status"]["purlFunctions"] == sent
    assert errors(validator_for(load_crd(CRDS / "observationnodes.yaml")), node) == []
    tetragon = ReplayServer([], version="v1.7.0")
    addr = await tetragon.start("127.0.0.1:0")
    try:
        w = make_writer(cluster, addr)
        w.node_name = "node-tetragon"
        await report(w)
    finally:
        await tetragon.stop(grace=0)
    assert (cluster.stored(r.OBSERVATION_NODES, "node-tetragon") or {})["status"]["source"] == "tetragon"
    assert "purlFunctions" not in (cluster.stored(r.OBSERVATION_NODES, "node-tetragon") or {})["status"]

    def folded() -> list[dict[str, Any]]:
        p = cluster.stored(r.OBSERVATION_POLICIES, "tls", NS) or {}
        got = (p.get("status") or {}).get("purlFunctions") or []
        return got if got and sum(e["nodesNative"] + e["nodesNone"] for e in got) == 4 else []

    got = await wait_for(folded, limit_s=60, what="the policy's purlFunctions folded over both nodes")
    assert got == [
        {
            "purl": PURL, "symbol": "SSL_nope", "source": "none", "nodesNative": 0, "nodesNone": 2,
            "nodes": [
                {"node": "node-native", "source": "none", "state": "not_in_package", "reason": missing},
                {"node": "node-tetragon", "source": "none", "state": "tetragon", "reason": TETRAGON_CANNOT},
            ],
        },
        {
            "purl": PURL, "symbol": "SSL_read", "source": "partial", "nodesNative": 1, "nodesNone": 1,
            "nodes": [
                {"node": "node-tetragon", "source": "none", "state": "tetragon", "reason": TETRAGON_CANNOT},
                {"node": "node-native", "source": "native", "state": "attached", "reason": ""},
            ],
        },
    ]  # fmt: skip
    pol = cluster.stored(r.OBSERVATION_POLICIES, "tls", NS)
    assert errors(validator_for(load_crd(CRDS / "observationpolicies.yaml")), pol) == []
