"""Issue 16 on the real kube-apiserver (v1.20): the status subresource and observedGeneration.

The operator runs under its ServiceAccount (the manifests' RBAC) with one
object of each of our reconciled kinds: an ObservationPolicy, a
ClusterObservationPolicy and a RuntimeObserver.

- A spec change bumps ``metadata.generation`` (the server's doing) and the
  operator's ``status.observedGeneration`` follows, for each kind.
- Every status the operator writes goes through ``/status``: the audit log
  (our kinds are logged at Request level, with the body) shows
  ``subresource: status`` on each write, a JSON patch that tests the object's
  uid and then writes under ``/status`` only (controller/status_write.py), and
  no write of the operator to the main resource carries a ``status``.
- A user's ``kubectl edit`` of the status through the main resource is
  ignored by the server (status is a subresource of our CRDs): kubectl sends
  it and the server answers 200, but the stored status and generation stay
  as they were; the same change through ``/status`` does change the status,
  and the operator puts it right again.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import API_VERSION, CLUSTER_POLICY_KIND, OBSERVER_KIND, POLICY_KIND
from tests.realkube.controlplane import (
    OPERATOR_USER,
    WRITE_VERBS,
    ControlPlane,
    OperatorProcess,
    start_operator_as_service_account,
    wait_for,
)

pytestmark = pytest.mark.realkube

NS = "status-sub"
CLUSTER_POLICY = "status-sub-cluster"
OBSERVER = "status-sub"
PLURALS = {
    POLICY_KIND: crds.POLICY_PLURAL,
    CLUSTER_POLICY_KIND: crds.CLUSTER_POLICY_PLURAL,
    OBSERVER_KIND: crds.OBSERVER_PLURAL,
}
# kind -> (name, namespace, the spec, a spec change)
OBJECTS: dict[str, tuple[str, str | None, dict[str, Any], dict[str, Any]]] = {
    POLICY_KIND: (
        "gen",
        NS,
        {"podSelector": {"matchLabels": {"app": "gen"}}, "maxLevel": "ActiveTracing", "syscalls": ["execve"]},
        {"syscalls": ["execve", "connect"]},
    ),
    CLUSTER_POLICY_KIND: (
        CLUSTER_POLICY,
        None,
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
            "podSelector": {"matchLabels": {"app": "gen"}},
            "maxLevel": "ActiveTracing",
            "syscalls": ["execve"],
        },
        {"rateLimit": "2m"},
    ),
    OBSERVER_KIND: (
        OBSERVER,
        None,
        {
            "agentNamespace": crds.DEFAULT_AGENT_NAMESPACE,
            "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
        },
        {"hotSymbols": {"windowSeconds": 120}},
    ),
}
# `kubectl edit` with this as the editor: it rewrites the status of the object in the file
EDITOR = """
import sys, yaml
path = sys.argv[-1]
doc = yaml.safe_load(open(path))
doc["status"] = {"observedGeneration": 4242, "conditions": [{"type": "Ready", "status": "True",
    "reason": "EditedByHand", "message": "x", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
open(path, "w").write(yaml.safe_dump(doc))
"""


def _get(admin: Any, kind: str) -> dict[str, Any] | None:
    name, ns, _, _ = OBJECTS[kind]
    return admin.get(API_VERSION, kind, name, ns)  # type: ignore[no-any-return]


def _gone(admin: Any, kind: str) -> bool:
    return _get(admin, kind) is None


def _observed(admin: Any, kind: str) -> int | None:
    """The generation when the operator's status has caught up with it, else None."""
    o = _get(admin, kind)
    if not o or (o.get("status") or {}).get("observedGeneration") != o["metadata"]["generation"]:
        return None
    return int(o["metadata"]["generation"])


class Run:
    def __init__(self, cp: ControlPlane, op: OperatorProcess, tmp: Path) -> None:
        assert cp.admin is not None
        self.cp, self.op, self.tmp, self.admin = cp, op, tmp, cp.admin
        self.start = 0

    def alive(self) -> None:
        assert self.op.alive(), f"the operator exited:\n{self.op.text()[-4000:]}"

    def observed(self, kind: str) -> int | None:
        self.alive()
        return _observed(self.admin, kind)


@pytest.fixture(scope="module")
def run(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    cp = control_plane
    admin = cp.admin
    assert admin is not None
    tmp = tmp_path_factory.mktemp("status")
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    start = cp.audit_offset()
    op = start_operator_as_service_account(cp, tmp, name="status-operator")
    r = Run(cp, op, tmp)
    r.start = start
    try:
        for kind, (name, ns, spec, _) in OBJECTS.items():
            meta: dict[str, Any] = {"name": name, **({"namespace": ns} if ns else {})}
            admin.create({"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec})
        for kind in OBJECTS:
            wait_for(functools.partial(r.observed, kind), what=f"{kind} observed", timeout=60)
        yield r
    finally:
        try:
            for kind, (name, ns, _, _) in OBJECTS.items():
                admin.delete(API_VERSION, kind, name, ns)
            for kind in OBJECTS:  # the policies' finalizers, removed by the running operator
                wait_for(functools.partial(_gone, admin, kind), what=f"{kind} deleted", timeout=60)
        finally:
            op.stop()


def test_observed_generation_follows_a_spec_change_of_each_kind(run: Run) -> None:
    admin = run.admin
    for kind, (name, ns, _, change) in OBJECTS.items():
        before = _get(admin, kind)
        assert before is not None
        generation = before["metadata"]["generation"]
        after = admin.patch(API_VERSION, kind, name, {"spec": change}, ns)
        assert after["metadata"]["generation"] == generation + 1, kind  # the server counts spec changes
        assert after["status"]["observedGeneration"] == generation, kind  # not yet seen
        wait_for(
            functools.partial(lambda k, g: run.observed(k) == g, kind, generation + 1),
            what=f"{kind}'s observedGeneration at {generation + 1}",
            timeout=60,
        )
        # a metadata-only change is no new generation
        relabelled = admin.patch(API_VERSION, kind, name, {"metadata": {"labels": {"touched": "yes"}}}, ns)
        assert relabelled["metadata"]["generation"] == generation + 1, kind


def test_every_status_write_of_the_operator_goes_through_the_subresource(run: Run) -> None:
    mine = [
        e
        for e in run.cp.audit_events(since=run.start)
        if (e.get("user") or {}).get("username") == OPERATOR_USER
        and e.get("stage") == "ResponseComplete"
        and e.get("verb") in WRITE_VERBS
        and (e.get("objectRef") or {}).get("apiGroup") == crds.GROUP
    ]
    status_writes: dict[str, int] = {}
    for e in mine:
        ref = e["objectRef"]
        body = e.get("requestObject")
        if ref.get("subresource") == "status":
            status_writes[ref["resource"]] = status_writes.get(ref["resource"], 0) + 1
            # a JSON patch: a test of the uid it was computed for, then status operations only
            assert isinstance(body, list) and body[0]["op"] == "test", e
            assert body[0]["path"] == "/metadata/uid", e
            assert body[1:] and all(str(op["path"]).startswith("/status") for op in body[1:]), e
        else:
            # kopf's finalizer and last-handled annotation: metadata only
            assert ref.get("subresource") in (None, ""), e
            assert not (isinstance(body, dict) and "status" in body), e
            assert not (isinstance(body, list) and any("/status" in str(op.get("path")) for op in body)), e
    # every kind got its status, twice (created, then the spec change)
    for plural in PLURALS.values():
        assert status_writes.get(plural, 0) >= 2, (plural, status_writes)


def test_kubectl_edit_of_the_status_through_the_main_resource_is_ignored(run: Run) -> None:
    admin = run.admin
    kubeconfig = run.cp.write_kubeconfig(run.tmp / "admin.kubeconfig", token=None)
    editor = run.tmp / "edit_status.py"
    editor.write_text(EDITOR)
    env = {**os.environ, "KUBE_EDITOR": f"{sys.executable} {editor}"}
    mark = run.cp.audit_offset()
    for kind, (name, ns, _, _) in OBJECTS.items():
        before = _get(admin, kind)
        assert before is not None
        target = f"{PLURALS[kind]}.{crds.GROUP}/{name}"
        argv = ["kubectl", f"--kubeconfig={kubeconfig}", "edit", target, *(["-n", ns] if ns else [])]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        # kubectl sends the edit (it saw a change); the server keeps the status as it was
        assert done.returncode == 0, done.stderr
        after = _get(admin, kind)
        assert after is not None
        assert after["status"] == before["status"], kind
        assert after["metadata"]["generation"] == before["metadata"]["generation"], kind
        assert after["status"]["observedGeneration"] != 4242
    # kubectl did send each edit, status included, to the main resource (the server dropped it)
    sent = [
        e
        for e in run.cp.audit_events(since=mark)
        if e.get("stage") == "ResponseComplete"
        and e.get("verb") == "patch"
        and not (e.get("objectRef") or {}).get("subresource")
        and (e.get("objectRef") or {}).get("apiGroup") == crds.GROUP
        and "status" in (e.get("requestObject") or {})
        and (e.get("responseStatus") or {}).get("code") == 200
    ]
    assert sorted(e["objectRef"]["resource"] for e in sent) == sorted(PLURALS.values()), sent
    # the same edit through /status is what changes a status
    name, ns, _, _ = OBJECTS[POLICY_KIND]
    path = admin.path(API_VERSION, POLICY_KIND, name, ns) + "/status"
    patched = admin.request(
        "PATCH",
        path,
        {"status": {"observedGeneration": 4242}},
        content_type="application/merge-patch+json",
    )
    # The server's answer, not a later read: the operator may already have put it right again
    # (it owns the status, and a loaded machine may have it reconciling at this very moment).
    assert patched["status"]["observedGeneration"] == 4242
    # and the operator puts it right again on its next reconcile of the policy
    wait_for(
        functools.partial(run.observed, POLICY_KIND),
        what="the operator's observedGeneration restored",
        timeout=60,
    )
