"""A RuntimeObserver with an invalid spec keeps the agents' probe ConfigMap current, and says why.

While a RuntimeObserver's spec is invalid (Stalled), the agents keep their
last valid configuration: the DaemonSet and the agent ConfigMap are left as
they are. The native probes' ConfigMap is not part of that configuration: it
carries every policy's probe entry and the pods opted out by their
annotation, which every agent drops the events of. It used to be frozen with
the rest, so, until someone fixed the observer:

- a pod opted out meanwhile never reached the agents' list (its events kept
  being counted wherever the pod label does not reach the agent);
- deleting a policy hung in Terminating: its finalizer waits for its entry to
  leave the probe ConfigMap, which nothing rewrote.

And a regular expression that passes the CRD schema but that Python's ``re``
refuses with OverflowError (``a{4294967296}``) or RecursionError (deep
nesting) rather than ``re.error`` made the observer's reconcile raise on
every retry: no status, no Event, nothing rendered, the same traceback forever.

Through the real operator against kmock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import (
    API_VERSION,
    OBSERVE_LEVEL_ANNOTATION,
    OBSERVER_KIND,
    POLICY_KIND,
    SpecError,
    parse_observer_spec,
)
from stellaops_runtime.controller.render_agent import agent_resource_name, probe_configmap_name
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, probe_entry_key
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, APP_NS, NAME = "stellaops-agent", "shop", "fleet"
SPEC: dict[str, Any] = {
    "agentNamespace": NS,
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}
POLICY = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "EbpfDeep", "syscalls": ["execve"]}
# Valid under the CRD schema (a string of 1 to 1024 characters), refused by re.compile with
# something other than re.error.
OVERFLOW = "a{4294967296}"
DEEP = "(" * 500 + ")" * 500


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        for ns in (NS, APP_NS):
            await c.create(obj("v1", "Namespace", ns))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        await cluster.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
        await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=APP_NS, spec=POLICY))
        await op.settle()
        yield op


def _probes(cluster: Cluster) -> dict[str, Any]:
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(NAME), NS) or {}
    return json.loads((cm.get("data") or {}).get(PROBE_CONFIG_KEY) or "{}")


def _stalled(cluster: Cluster) -> tuple[str, str]:
    c = condition(cluster.stored(r.RUNTIME_OBSERVERS, NAME), "Stalled")
    return (str(c.get("reason")), str(c.get("message"))) if c.get("status") == "True" else ("", "")


@pytest.mark.parametrize("pattern", [OVERFLOW, DEEP], ids=["overflow", "recursion"])
async def test_a_pattern_re_refuses_without_re_error_is_invalid_regex(pattern: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_observer_spec(SPEC | {"privacy": {"extraPatterns": ["ok", pattern]}})
    assert e.value.reason == "InvalidRegex" and "extraPatterns[1]" in e.value.message


async def test_an_invalid_observer_still_updates_the_probe_configmap(
    cluster: Cluster, operator: OperatorRun
) -> None:
    key = probe_entry_key(kind=POLICY_KIND, namespace=APP_NS, name="web")
    assert key in _probes(cluster)["policies"]
    agent_cm = cluster.stored(r.CONFIGMAPS, agent_resource_name(NAME), NS)
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"privacy": {"extraPatterns": ["("]}}})
    await wait_for(lambda: _stalled(cluster)[0] == "InvalidRegex", limit_s=60, what="the observer stalled")

    # A pod opts out while the observer is invalid: the agents' list has it.
    pod = obj(
        "v1",
        "Pod",
        "secret-job",
        namespace=APP_NS,
        labels={"app": "web"},
        annotations={OBSERVE_LEVEL_ANNOTATION: "None"},
        spec={"containers": [{"name": "c", "image": "busybox"}]},
    )
    created = await cluster.create(pod)
    uid = created["metadata"]["uid"]
    await wait_for(
        lambda: any(p.get("uid") == uid for p in _probes(cluster).get("optedOut") or ()),
        limit_s=60,
        what="the opted-out pod in the probe ConfigMap",
    )

    # A policy deleted while the observer is invalid is released, its entry gone.
    await cluster.delete(r.OBSERVATION_POLICIES, "web", namespace=APP_NS)
    await wait_for(
        lambda: cluster.stored(r.OBSERVATION_POLICIES, "web", APP_NS) is None,
        limit_s=60,
        what="the policy released",
    )
    assert key not in _probes(cluster)["policies"]
    # ... and the agents' own configuration is still the last valid one.
    assert cluster.stored(r.CONFIGMAPS, agent_resource_name(NAME), NS) == agent_cm
    assert _stalled(cluster)[0] == "InvalidRegex"


async def test_a_regex_re_cannot_compile_is_stalled_not_a_crash_loop(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"privacy": {"extraPatterns": [OVERFLOW]}}})
    await wait_for(
        lambda: OVERFLOW in _stalled(cluster)[1], limit_s=60, what="the observer stalled on the pattern"
    )
    assert _stalled(cluster)[0] == "InvalidRegex"

    def events() -> list[dict]:
        return [
            e
            for e in cluster.listed(r.EVENTS, "default")
            if e["involvedObject"]["name"] == NAME and OVERFLOW in e["message"]
        ]

    # The Event is posted after the status write the test just saw: wait for it, then for quiet.
    await wait_for(events, limit_s=60, what="the InvalidRegex Event")
    await operator.settle(timeout=60)
    assert len(events()) == 1 and events()[0]["reason"] == "InvalidRegex"
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"privacy": {"extraPatterns": None}}})
    await wait_for(lambda: _stalled(cluster) == ("", ""), limit_s=60, what="the observer valid again")


async def test_a_probe_configmap_deleted_while_the_observer_is_invalid_is_made_again(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """It was kept current only where it still was: deleted (by hand, a cleanup, a GitOps prune)
    while the observer's spec was invalid, it was not made again, so the agents' native probes lost
    every policy's entry and a restarted agent the list of pods opted out of observation."""
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"privacy": {"extraPatterns": ["("]}}})
    await wait_for(lambda: _stalled(cluster)[0] == "InvalidRegex", limit_s=60, what="the observer stalled")
    await operator.settle()
    before = cluster.stored(r.CONFIGMAPS, probe_configmap_name(NAME), NS)
    assert before is not None
    await cluster.delete(r.CONFIGMAPS, probe_configmap_name(NAME), namespace=NS)
    again = await wait_for(
        lambda: (cluster.stored(r.CONFIGMAPS, probe_configmap_name(NAME), NS) or {}).get("metadata"),
        limit_s=20,
        what="the probe ConfigMap made again",
    )
    assert again["uid"] != before["metadata"]["uid"]
    assert any(p.get("name") == "secret-job" for p in _probes(cluster).get("optedOut") or ())
    assert _stalled(cluster)[0] == "InvalidRegex"
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"privacy": {"extraPatterns": None}}})
    await wait_for(lambda: _stalled(cluster) == ("", ""), limit_s=60, what="the observer valid again")
