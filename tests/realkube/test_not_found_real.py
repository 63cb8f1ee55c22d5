"""What a 404 means, on the real API server (v1.20): a kind not served, or one object missing.

A policy's reconcile reads a 404 from a Tetragon write as "Tetragon's CRDs are not installed"
(``TetragonNotInstalled``) only when the kind itself is not served. The real server tells the two
apart: a kind it does not serve (its CRD not installed, a group or version it does not know) gets
a bare "404 page not found", no Status; a missing object, or a missing namespace, gets a Status
naming it in ``details.name``. ``ApiError.kind_not_served`` is read off those answers here, and
the real ``apply`` of an object deleted since it was read creates it again
(tests/integration/test_policy_child_gone.py runs the policy's reconcile on kmock).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.crds import MANAGED_BY, TETRAGON_API_VERSION, TETRAGON_POLICY_KIND
from stellaops_runtime.controller.patches import for_create
from stellaops_runtime.controller.reconcile import INDEX_OWNED, Reconciler
from stellaops_runtime.controller.state import obj_key
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import Connection, KubeClient
from tests.integration.json_patch_rules import refusal
from tests.realkube.controlplane import ControlPlane

pytestmark = pytest.mark.realkube
NOT_SERVED = r.Resource(TETRAGON_API_VERSION, "NoSuchKind", "nosuchkinds", False)


def _tp(calls: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": TETRAGON_API_VERSION,
        "kind": TETRAGON_POLICY_KIND,
        "metadata": {"name": "stellaops-notfound", "labels": {MANAGED_BY[0]: MANAGED_BY[1]}},
        "spec": {
            "tracepoints": [{"subsystem": "raw_syscalls", "event": "sys_enter", "message": ",".join(calls)}]
        },
    }


async def _run(kubeconfig: Path, seen: dict[str, Any]) -> tuple[list[tuple[bool, bool]], str]:
    conn = await asyncio.to_thread(Connection.load, kubeconfig=str(kubeconfig))
    async with KubeClient(conn) as kube:
        answers = [
            await refusal(
                kube.create(
                    NOT_SERVED,
                    {"apiVersion": TETRAGON_API_VERSION, "kind": "NoSuchKind", "metadata": {"name": "x"}},
                )
            ),
            await refusal(kube.patch(r.TRACING_POLICIES, name="no-such-object", patch={"metadata": {}})),
            await refusal(
                kube.create(
                    r.TRACING_POLICIES_NAMESPACED,
                    {
                        **_tp([]),
                        "kind": "TracingPolicyNamespaced",
                        "metadata": {"name": "x", "namespace": "no-such-namespace"},
                    },
                )
            ),
        ]
        reconciler = Reconciler(kube=kube)
        reconciler.bind({INDEX_OWNED: {obj_key(seen): [seen]}})  # kopf has not seen it go
        outcome = await reconciler.apply(_tp(["connect", "execve"]))
        return [(e.not_found, e.kind_not_served) for e in answers], outcome


def test_a_404_is_a_kind_not_served_only_when_it_names_no_object(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    admin = control_plane.admin
    assert admin is not None
    seen = admin.create(for_create(_tp(["connect"])))
    admin.delete(TETRAGON_API_VERSION, TETRAGON_POLICY_KIND, "stellaops-notfound")
    kubeconfig = control_plane.write_kubeconfig(tmp_path / "kubeconfig", token=None)
    try:
        answers, outcome = asyncio.run(_run(kubeconfig, seen))
        assert answers == [(True, True), (True, False), (True, False)]
        assert outcome == "created"
        live = admin.get(TETRAGON_API_VERSION, TETRAGON_POLICY_KIND, "stellaops-notfound")
        assert live is not None and live["metadata"]["uid"] != seen["metadata"]["uid"]
        assert "execve" in str(live["spec"])
    finally:  # a TracingPolicy of no policy left behind fails test_operator_on_real_apiserver's GC test
        admin.delete(TETRAGON_API_VERSION, TETRAGON_POLICY_KIND, "stellaops-notfound")
