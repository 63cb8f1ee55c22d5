"""One policy with a NUL in a function's symbol or package URL must not cost every node its native probes.

The agents read the probe ConfigMap with their own parser
(``native/policy_config.py``), which refuses a string holding a NUL, and
with it the whole file: every policy's native probes on every node that
falls back to them. The CRD's patterns let a NUL through in ``symbols`` and
``purl`` (``\\S`` and ``.`` both match it), and so did the operator: one
namespace's ObservationPolicy turned off everyone's native fallback. Now the
operator refuses such a policy (Stalled, ``InvalidFunction`` /
``InvalidPurl``, nothing rendered), and the ConfigMap it writes stays one the
agents read, with the other policies in it. kmock plays a server without our
CRD's schema (as a server with an older CRD installed would).
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
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.policy_config import merge_entries, parse_payload
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, AGENTS_NS, OBSERVER = "tenant", "stellaops-system", "fleet"
GOOD = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "syscalls": ["execve"],
    "functions": [{"binaryPath": "/usr/lib/libssl.so.3", "symbols": ["SSL_read"]}],
}
BAD = {
    "nul-symbol": ("InvalidFunction", {"binaryPath": "/usr/lib/libssl.so.3", "symbols": ["SSL_read\x00x"]}),
    "nul-purl": ("InvalidPurl", {"purl": "pkg:deb/debian/openssl@3.0.11\x00", "symbols": ["SSL_write"]}),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Namespace", AGENTS_NS))
        observer = {
            "agentNamespace": AGENTS_NS,
            "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
            "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
        }
        await c.create(obj(API_VERSION, OBSERVER_KIND, OBSERVER, spec=observer))
        await c.create(obj(API_VERSION, POLICY_KIND, "good", namespace=NS, spec=GOOD))
        for name, (_reason, fn) in BAD.items():
            spec = {**GOOD, "functions": [fn]}
            await c.create(obj(API_VERSION, POLICY_KIND, name, namespace=NS, spec=spec))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        yield op


def _stalled(cluster: Cluster, name: str) -> str | None:
    pol = cluster.stored(r.OBSERVATION_POLICIES, name, NS) or {}
    for c in (pol.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Stalled" and c.get("status") == "True":
            return str(c.get("reason"))
    return None


def _payload(cluster: Cluster) -> bytes:
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(OBSERVER), AGENTS_NS) or {}
    return str((cm.get("data") or {}).get(PROBE_CONFIG_KEY) or "").encode()


async def test_a_nul_in_a_function_stalls_that_policy_and_the_agents_still_read_the_others(
    cluster: Cluster, operator: OperatorRun
) -> None:
    good = probe_entry_key(kind=POLICY_KIND, namespace=NS, name="good")

    def good_listed() -> bool:
        raw = _payload(cluster)
        return bool(raw) and good in (json.loads(raw).get("policies") or {})

    await wait_for(good_listed, limit_s=60, what="the good policy in the probe ConfigMap")
    for name, (reason, _fn) in BAD.items():
        await wait_for(lambda n=name: _stalled(cluster, n), limit_s=60, what=f"{name} Stalled")
        assert _stalled(cluster, name) == reason
    await operator.settle(timeout=60)
    policies = parse_payload(_payload(cluster), source="probes.json")
    assert sorted(policies) == [good]  # the invalid ones render nothing
    merged = merge_entries(policies, NativeConfig(), host_root="")  # the agent's reading: no error
    assert merged.policies == [good]
    assert [(t.binary, t.symbol) for t in merged.config.uprobes] == [("/usr/lib/libssl.so.3", "SSL_read")]
    for name in BAD:
        pol: dict[str, Any] = cluster.stored(r.OBSERVATION_POLICIES, name, NS) or {}
        assert pol["status"]["tetragonPolicies"] == []
        assert "NUL" in next(c["message"] for c in pol["status"]["conditions"] if c["type"] == "Stalled")
