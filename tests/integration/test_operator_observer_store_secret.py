"""RuntimeObserver through the real operator against kmock: the store Secret rolls the agents.

Why this module exists: split from tests/integration/test_operator_observer.py (past 400 lines).
The store Secret's data reaches the agents' pod template as a token (controller/render_agent.py
``store_secret_token``), so a new password rolls the DaemonSet while a read, or a metadata-only
write, rolls nothing. Its own cluster (the Secret resource registered with kmock), not the
module-scoped fleet of test_operator_observer.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import kmock
import pytest

from stellaops_runtime.contracts.crds import API_VERSION, CONFIG_HASH_ANNOTATION, OBSERVER_KIND
from stellaops_runtime.controller.reconcile_observers import SECRETS
from stellaops_runtime.controller.render_agent import STORE_SECRET_ANNOTATION
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import (
    TEST_AGENT,
    VERBS,
    Cluster,
    OperatorRun,
    _key,
    fast_config,
    obj,
    wait_for,
)
from tests.integration.test_operator_observer import NAME, NS, RES, SPEC

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _periodic_reads_of_the_secret(c: Cluster, mark: int, n: int) -> None:
    """Until the operator has read the store Secret ``n`` times since request ``mark``: the
    periodic reconciles read it (it is not watched), so ``n`` reads mean ``n - 1`` whole ones."""

    def reads() -> bool:
        got = [
            req
            for req in c.requests()[mark:]
            if req.method.value == "GET"
            and req.url.path.endswith("/secrets/stellaops-store")
            and not req.headers.get("User-Agent", "").startswith(TEST_AGENT)
        ]
        return len(got) >= n

    await wait_for(reads, limit_s=60, what=f"{n} reads of the store Secret by the operator")


async def test_a_store_secret_change_rolls_the_agents(tmp_path: Path) -> None:
    """Secret created, changed, deleted: each changes the pod template; reads only in between."""
    async with Cluster(tmp_path) as c:
        c.api.resources[_key(SECRETS)] = kmock.ResourceInfo(
            kind="Secret", namespaced=True, verbs=VERBS, subresources=set()
        )
        await c.create(obj("v1", "Namespace", NS))
        async with OperatorRun(c, config=fast_config(c, rollout_refresh_seconds=0.5)) as op:
            await c.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
            await op.settle()

            def template() -> dict[str, str]:
                ds = c.stored(r.DAEMONSETS, RES, NS) or {}
                return dict(ds["spec"]["template"]["metadata"]["annotations"])

            absent = template()
            assert STORE_SECRET_ANNOTATION in absent  # no Secret yet: the pods wait for it
            secret = obj("v1", "Secret", "stellaops-store", namespace=NS, data={"url": "c3FsaXRlOi8vL2E="})
            await c.kube.create(SECRETS, secret)
            created = await wait_for(
                lambda: template() != absent and template(),
                limit_s=60,
                what="the roll on the Secret's creation",
            )
            assert (
                created[CONFIG_HASH_ANNOTATION] == absent[CONFIG_HASH_ANNOTATION]
            )  # only the Secret changed
            generation = (c.stored(r.DAEMONSETS, RES, NS) or {})["metadata"]["generation"]
            # nothing changes: the periodic reconciles read the Secret and write nothing
            await op.settle()
            mark = c.mark()
            await _periodic_reads_of_the_secret(c, mark, 3)  # two whole periodic reconciles
            assert c.writes(mark) == []
            # a metadata-only write (a label; `kubectl apply --server-side` taking over
            # managedFields) bumps the Secret's resourceVersion but not its data: no roll
            before = (await c.kube.get(SECRETS, name="stellaops-store", namespace=NS))["metadata"]
            await c.kube.patch(
                SECRETS, name="stellaops-store", namespace=NS, patch={"metadata": {"labels": {"team": "x"}}}
            )
            after = (await c.kube.get(SECRETS, name="stellaops-store", namespace=NS))["metadata"]
            assert after["resourceVersion"] != before["resourceVersion"]
            mark = c.mark()
            await _periodic_reads_of_the_secret(c, mark, 3)  # two whole reconciles read the relabelled Secret
            assert c.writes(mark) == []
            assert template() == created
            # a new password: the template changes, the DaemonSet rolls (a new generation)
            await c.kube.patch(
                SECRETS, name="stellaops-store", namespace=NS, patch={"data": {"url": "b3RoZXI="}}
            )
            changed = await wait_for(
                lambda: template() != created and template(),
                limit_s=60,
                what="the roll on the Secret's change",
            )
            ds = c.stored(r.DAEMONSETS, RES, NS) or {}
            assert ds["metadata"]["generation"] > generation
            assert changed[STORE_SECRET_ANNOTATION] != created[STORE_SECRET_ANNOTATION]
            # the template says nothing about the content
            assert "b3RoZXI=" not in json.dumps(ds) and "c3FsaXRlOi8vL2E=" not in json.dumps(ds)
