"""The real Kubernetes v1.20 control plane for tests marked ``realkube``.

``control_plane`` (package) starts etcd + kube-apiserver + kube-controller-manager
(tests/realkube/controlplane.py) once, and installs what ``kubectl apply -k
manifests/`` would, minus the operator Deployment: the namespaces, our CRDs
(without their CEL rules, which 1.20 does not know), kopf's peering CRDs, the
operator's and the agents' RBAC, and Tetragon's two policy CRDs (v1.7.0, as
the rendering tests use). Not manifests/admission/: ValidatingAdmissionPolicy
needs Kubernetes 1.30.

Under ``make test`` (``-n 2 --dist loadfile``) this directory is one work unit (tests/xdist_scopes.py):
one worker runs all its files in a row, under one control plane, stopped once the last of them
ends (package scope; __init__.py makes the directory a package) rather than left idle through the rest
of the session. Under a --dist that mixes its files with others on a worker (load, loadscope,
worksteal) the fixture is session-scoped, one control plane a worker, as before.

Without the binaries the fixture fails (it does not skip) and names the make
target that builds them: ``make kube``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.realkube.controlplane import REPO, ControlPlane, SetupError, load_yaml, wait_for
from tests.xdist_scopes import one_worker_scope

MANIFESTS = REPO / "manifests"
TETRAGON_CRDS = REPO / "tests" / "fixtures" / "tetragon" / "crds" / "v1.7.0"
CRD_FILES = [
    *sorted((MANIFESTS / "crds").glob("*.yaml")),
    MANIFESTS / "peering" / "kopf-peering.yaml",
    TETRAGON_CRDS / "cilium.io_tracingpolicies.yaml",
    TETRAGON_CRDS / "cilium.io_tracingpoliciesnamespaced.yaml",
]
RBAC_FILES = [MANIFESTS / "operator" / "rbac.yaml", MANIFESTS / "agent" / "rbac.yaml"]


@pytest.fixture(scope=one_worker_scope)
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    tmp = tmp_path_factory.mktemp("realkube")
    try:
        cp = ControlPlane(tmp)
    except SetupError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        try:
            cp.start(crds=CRD_FILES)  # before kube-controller-manager: its garbage collector sees them
        except SetupError as e:
            pytest.fail(f"the control plane did not start: {e}", pytrace=False)
        admin = cp.admin
        assert admin is not None
        for doc in load_yaml(MANIFESTS / "namespace.yaml") + [d for f in RBAC_FILES for d in load_yaml(f)]:
            admin.apply(doc)
        # Pods are admitted only once their namespace's default ServiceAccount
        # (and, on 1.20, its token Secret) exists: kube-controller-manager's job.
        wait_for(
            lambda: (admin.get("v1", "ServiceAccount", "default", "default") or {}).get("secrets"),
            what="the default ServiceAccount's token (kube-controller-manager)",
        )
        yield cp
    finally:
        cp.stop()
