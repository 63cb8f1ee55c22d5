"""A big policy, applied the way ``kubectl apply`` does, on the real kube-apiserver (v1.20).

A custom resource's annotations share one 256 KiB limit. ``kubectl apply``
keeps a copy of the object in ``kubectl.kubernetes.io/last-applied-configuration``,
and kopf kept another (the spec, as its "last handled" record) in
``operator.stellaops.io/last-handled-configuration``: a policy of about 150 KB
(here 20 functions of 400 symbols, what a scanner lists for one library) made
kopf's annotation patch 422 "Too long" on every event, with a traceback at
ERROR and kopf's growing throttling (up to 10 minutes) between attempts.

Now kopf's record is a digest (controller/diffbase.py): no refused write,
a spec change stores a new digest, an idle policy gets no write, and the
policy is released on deletion with its Tetragon objects removed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.controller.diffbase import DIGEST_FIELD
from stellaops_runtime.controller.settings import ANNOTATION_PREFIX, DIFFBASE_KEY
from tests.realkube.controlplane import (
    ControlPlane,
    OperatorProcess,
    start_operator_as_service_account,
    wait_for,
)

pytestmark = pytest.mark.realkube

NS = "big-policy"
CILIUM = "cilium.io/v1alpha1"
RECORD = f"{ANNOTATION_PREFIX}/{DIFFBASE_KEY}"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _policy(symbols: int) -> dict[str, Any]:
    functions = [
        {
            "binaryPath": f"/usr/lib/x86_64-linux-gnu/lib{i}.so.3",
            "symbols": [f"lib{i}_fn_{j:05d}" for j in range(symbols)],
        }
        for i in range(20)
    ]
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": POLICY_KIND,
        "metadata": {"name": "big", "namespace": NS},
        "spec": {"maxLevel": "EbpfDeep", "syscalls": ["execve"], "functions": functions},
    }
    body["metadata"]["annotations"] = {
        LAST_APPLIED: json.dumps(body, separators=(",", ":"))
    }  # as kubectl apply
    return body


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    admin = control_plane.admin
    assert admin is not None
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    op = start_operator_as_service_account(
        control_plane, Path(tmp_path_factory.mktemp("big-op")), name="big-operator"
    )
    try:
        yield op
    finally:
        op.stop()
        if admin.get(API_VERSION, POLICY_KIND, "big", NS) is not None:
            admin.patch(API_VERSION, POLICY_KIND, "big", {"metadata": {"finalizers": None}}, namespace=NS)
            admin.delete(API_VERSION, POLICY_KIND, "big", NS)


def test_a_big_applied_policy_is_handled_without_a_refused_write(
    control_plane: ControlPlane, operator: OperatorProcess
) -> None:
    admin = control_plane.admin
    assert admin is not None
    body = _policy(400)
    assert 128_000 < len(json.dumps(body["spec"])) < 200_000
    admin.create(body)

    def record() -> str:
        meta = (admin.get(API_VERSION, POLICY_KIND, "big", NS) or {}).get("metadata") or {}
        return str((meta.get("annotations") or {}).get(RECORD) or "")

    first = wait_for(record, what="kopf's record of the policy", timeout=60)
    assert set(json.loads(first)) == {DIGEST_FIELD}
    wait_for(
        lambda: admin.get(CILIUM, "TracingPolicyNamespaced", "stellaops-big-uprobes", NS), what="uprobes"
    )

    # A spec change: a new digest.
    admin.patch(API_VERSION, POLICY_KIND, "big", {"spec": {"syscalls": ["execve", "openat"]}}, namespace=NS)
    wait_for(lambda: record() not in ("", first), what="a new record after the spec change", timeout=60)
    assert operator.alive(), operator.text()[-3000:]
    assert "Too long" not in operator.text()

    # Deleted: released, its Tetragon objects gone.
    admin.delete(API_VERSION, POLICY_KIND, "big", NS)
    wait_for(
        lambda: admin.get(API_VERSION, POLICY_KIND, "big", NS) is None, what="the policy released", timeout=60
    )
    assert admin.get(CILIUM, "TracingPolicyNamespaced", "stellaops-big-uprobes", NS) is None
    assert admin.get(CILIUM, "TracingPolicyNamespaced", "stellaops-big", NS) is None
    assert "Too long" not in operator.text()
