"""Issue 16 on the real kube-apiserver (v1.20): a settled operator writes nothing.

The examples of docs/examples/ are applied with the real ``kubectl apply``
(the RuntimeObserver with its store Secret, both policies, the five annotated
pods, bound to a Node whose ObservationNode is written as the agent writes
it: ``agent.node_status.build_status`` plus a heartbeat every 30 s). The
operator runs under its ServiceAccount (the manifests' RBAC). Once
everything has settled, the API server's audit log must show **no write
request** (create/update/patch/delete) by the operator's ServiceAccount
other than kopf's keep-alive patches of the peering object
(``clusterkopfpeerings/stellaops-runtime``):

- over an idle window of ``IDLE_WINDOW_SECONDS`` during which the agent
  keeps heartbeating. The operator's periodic work runs every
  ``--rollout-refresh-seconds`` (30 s by default, 2 s here so the window is
  short): the RuntimeObservers' refresh with its store-Secret read, the
  policies' rollout timer with its stale-heartbeat refold. The window covers
  each of them at least twice and the agent heartbeats every 3 s in it; the
  issue's two minutes at the default interval are measured by hand
  (docs/development.md);
- after a restart: the old process is stopped and a new one started; from
  the new one's start until one periodic cycle later it writes nothing,
  although it reconciles everything again (its read of the store Secret
  shows the RuntimeObserver's reconcile ran);
- after re-applying the unchanged examples with ``kubectl apply`` (nothing
  sent) and ``kubectl apply --server-side`` (managedFields change, so every
  object is MODIFIED and reconciled again).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellaops_runtime.agent.capabilities import Capabilities, TetragonInfo
from stellaops_runtime.agent.node_status import build_status
from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import API_VERSION, CLUSTER_POLICY_KIND, OBSERVER_KIND, POLICY_KIND
from stellaops_runtime.controller.settings import DEFAULT_PEERING, ControllerConfig
from tests.realkube.controlplane import (
    OPERATOR_USER,
    REPO,
    ControlPlane,
    OperatorProcess,
    load_yaml,
    operator_writes,
    start_operator_as_service_account,
    wait_for,
)

pytestmark = pytest.mark.realkube

# Every periodic loop of the operator runs every --rollout-refresh-seconds; the suite shortens
# it to REFRESH_SECONDS and idles two cycles. The two minutes at the default interval, by
# hand: STELLAOPS_IDLE_WINDOW_SECONDS=120 STELLAOPS_IDLE_REFRESH_SECONDS=30 (docs/development.md).
REFRESH_SECONDS = float(os.environ.get("STELLAOPS_IDLE_REFRESH_SECONDS") or 2.0)
assert ControllerConfig().rollout_refresh_seconds >= REFRESH_SECONDS
IDLE_WINDOW_SECONDS = max(
    2 * REFRESH_SECONDS + 5.0, float(os.environ.get("STELLAOPS_IDLE_WINDOW_SECONDS") or 0.0)
)
# An agent with ObservationNodeConfig.heartbeatSeconds 3 (default 30): the idle window (9 s at a 2 s
# refresh) holds at least two of its beats (checked each second, so at most 4 s apart).
HEARTBEAT_SECONDS = 3.0
EXAMPLES = REPO / "docs" / "examples"
NODE = "node-idle"
CILIUM = "cilium.io/v1alpha1"
STORE_SECRET = "stellaops-store"


def _condition(o: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((o or {}).get("status") or {}).get("conditions") or ():
        if c["type"] == type_:
            return dict(c)
    return {}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Scene:
    def __init__(self, cp: ControlPlane, examples: Path, tmp: Path) -> None:
        assert cp.admin is not None
        self.cp, self.admin, self.examples, self.tmp = cp, cp.admin, examples, tmp
        self.kubeconfig = cp.write_kubeconfig(tmp / "admin.kubeconfig", token=None)
        self.op: OperatorProcess | None = None
        self.pods = [
            d["metadata"]["name"] for f in sorted((examples / "pods").glob("*.yaml")) for d in load_yaml(f)
        ]
        self.beat_at = 0.0
        self.listed: list[dict[str, str]] = []  # the Tetragon policies the last report listed

    def kubectl(self, *args: str) -> str:
        done = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def apply(self, *extra: str) -> str:
        return self.kubectl("apply", *extra, "-f", str(self.examples), "--recursive")

    def alive(self) -> None:
        assert self.op is not None and self.op.alive(), (
            f"the operator exited:\n{self.op and self.op.text()[-4000:]}"
        )

    def agent_status(self) -> dict[str, Any]:
        """The status the agent writes for a node with a working Tetragon and every probe kind."""
        tetragon = TetragonInfo(
            address="unix:///var/run/tetragon/tetragon.sock", reachable=True, version="v1.7.0"
        )
        caps = Capabilities(
            kernel_version="6.1.0",
            btf=True,
            bpf_permitted=True,
            tracepoints=True,
            uprobes=True,
            kprobes=True,
            usdt=True,
            ring_buffer=True,
            tetragon=tetragon,
        )
        self.listed = loaded = self.tetragon_list()
        current = self.admin.get(API_VERSION, crds.NODE_KIND, NODE) or {}
        status = build_status(
            capabilities=caps,
            tetragon=tetragon,
            policies=loaded,
            existing_conditions=(current.get("status") or {}).get("conditions"),
            now=_now(),
            containers="no_runtime_socket",  # the observer Degraded (NotObservedBacked): still no write
        )
        return {**status, "heartbeatTime": _now()}

    def tetragon_list(self) -> list[dict[str, str]]:
        """What Tetragon lists as loaded: every Tetragon policy that exists."""
        loaded = [
            {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"], "state": "ENABLED"}
            for o in self.admin.list(CILIUM, "TracingPolicyNamespaced")
        ] + [
            {"name": o["metadata"]["name"], "state": "ENABLED"}
            for o in self.admin.list(CILIUM, "TracingPolicy")
        ]
        return sorted(loaded, key=lambda p: (p.get("namespace", ""), p["name"]))

    def report(self) -> None:
        self.admin.patch(
            API_VERSION, crds.NODE_KIND, NODE, {"status": self.agent_status()}, subresource="status"
        )
        self.beat_at = time.monotonic()

    def heartbeat(self) -> None:
        """What the agent does between status changes: only heartbeatTime, every HEARTBEAT_SECONDS.

        A changed list of Tetragon policies is reported at once, as the agent does (it polls
        Tetragon every third of its heartbeat): the first report may have been made while the
        operator was still creating the rest of a policy's objects.
        """
        if self.tetragon_list() != self.listed:
            self.report()
        elif time.monotonic() - self.beat_at >= HEARTBEAT_SECONDS:
            status = {"heartbeatTime": _now()}
            self.admin.patch(API_VERSION, crds.NODE_KIND, NODE, {"status": status}, subresource="status")
            self.beat_at = time.monotonic()

    def idle(self, seconds: float) -> None:
        """The idle window: nothing but the agent's heartbeats (the only sleep of the module)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.heartbeat()
            time.sleep(min(1.0, left))
        self.alive()

    def writes(self, since: int) -> list[str]:
        return operator_writes(self.cp.audit_events(since=since), peering=DEFAULT_PEERING)

    def quiet(self, seconds: float = 3.0) -> None:
        """Poll until the operator has made no write for ``seconds`` (the end of its settling)."""
        mark, mark_at = self.cp.audit_offset(), time.monotonic()

        def still() -> bool:
            nonlocal mark, mark_at
            self.alive()
            self.heartbeat()
            if self.writes(mark):
                mark, mark_at = self.cp.audit_offset(), time.monotonic()
            return time.monotonic() - mark_at >= seconds

        wait_for(still, what=f"{seconds:.0f} s without a write by the operator", timeout=60, every=0.5)

    def settled(self) -> None:
        """Everything the examples ask for is reported, then the operator goes quiet."""
        self.report()  # the rendered Tetragon policies exist now: the agent lists them loaded

        why = ["not checked yet"]

        def converged() -> bool:
            self.alive()
            self.heartbeat()
            observer = self.admin.get(API_VERSION, OBSERVER_KIND, "default")
            policy = self.admin.get(API_VERSION, POLICY_KIND, "web", "default")
            cluster = self.admin.get(API_VERSION, CLUSTER_POLICY_KIND, "apps-syscalls")
            for kind, o in ((OBSERVER_KIND, observer), (POLICY_KIND, policy), (CLUSTER_POLICY_KIND, cluster)):
                if not o or (o.get("status") or {}).get("observedGeneration") != o["metadata"]["generation"]:
                    why[0] = f"{kind} not observed at its generation"
                    return False
            if _condition(observer, "NotObservedBacked").get("reason") != "NoRuntimeSocket":
                why[0] = f"{OBSERVER_KIND} not folding its node: {_condition(observer, 'NotObservedBacked')}"
                return False
            for kind, o in ((POLICY_KIND, policy), (CLUSTER_POLICY_KIND, cluster)):
                if _condition(o, "Ready").get("status") != "True":
                    why[0] = f"{kind} not Ready: {_condition(o, 'Ready')}"
                    return False
            pods = [self.admin.get("v1", "Pod", name, "default") for name in self.pods]
            unannotated = [p["metadata"]["name"] for p in pods if crds.POSTURE_ANNOTATION not in
                           (p["metadata"].get("annotations") or {})]  # fmt: skip
            why[0] = f"pods without a posture annotation: {unannotated}"
            return not unannotated

        # A loaded machine (two test workers beside other work) has taken over 90 s here.
        try:
            wait_for(converged, what="the examples reconciled and Ready", timeout=180)
        except AssertionError as e:
            raise AssertionError(f"{e}: {why[0]}") from None
        self.quiet()


def _examples_for(tmp: Path) -> Path:
    """docs/examples/ as shipped, the pods bound to NODE (no scheduler here)."""
    out = tmp / "examples"
    (out / "pods").mkdir(parents=True)
    for name in ("runtimeobserver.yaml", "observationpolicy.yaml", "clusterobservationpolicy.yaml"):
        shutil.copy(EXAMPLES / name, out / name)
    for path in sorted((EXAMPLES / "pods").glob("*.yaml")):
        docs = load_yaml(path)
        for d in docs:
            d["spec"]["nodeName"] = NODE
            d["spec"]["automountServiceAccountToken"] = False
        (out / "pods" / path.name).write_text(yaml.safe_dump_all(docs))
    return out


@pytest.fixture(scope="module")
def scene(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    tmp = tmp_path_factory.mktemp("idle")
    s = Scene(control_plane, _examples_for(tmp), tmp)
    admin = s.admin
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        }
    )
    admin.apply(
        {
            "apiVersion": API_VERSION,
            "kind": crds.NODE_KIND,
            "metadata": {"name": NODE},
            "spec": {"nodeName": NODE},
        }
    )
    s.report()
    s.apply()
    setup = control_plane.audit_offset()
    s.op = start_operator_as_service_account(
        control_plane, tmp, name="idle-operator", extra=(f"--rollout-refresh-seconds={REFRESH_SECONDS}",)
    )
    try:
        wait_for(
            lambda: admin.list(CILIUM, "TracingPolicyNamespaced", "default"),
            what="the policy rendered",
            timeout=60,
        )
        wait_for(lambda: admin.list(CILIUM, "TracingPolicy"), what="the cluster policy rendered", timeout=60)
        s.settled()
        # the counter sees the operator's writes: settling took many (objects, statuses, labels)
        assert len(s.writes(setup)) >= 10, s.writes(setup)
        yield s
    finally:
        try:
            if s.op is not None and s.op.alive():
                # Leave the session's cluster as found: the operator finalizes its policies;
                # the pods go at once (no kubelet confirms a graceful end).
                s.kubectl("delete", "-f", str(s.examples / "pods"), "--grace-period=0", "--force")
                for name in (
                    "observationpolicy.yaml",
                    "clusterobservationpolicy.yaml",
                    "runtimeobserver.yaml",
                ):
                    s.kubectl("delete", "-f", str(s.examples / name), "--wait=true", "--timeout=60s")
        finally:
            if s.op is not None:
                s.op.stop()
            admin.delete(API_VERSION, crds.NODE_KIND, NODE)
            admin.delete("v1", "Node", NODE)


def test_no_write_while_idle(scene: Scene) -> None:
    start = scene.cp.audit_offset()
    scene.idle(IDLE_WINDOW_SECONDS)
    events = scene.cp.audit_events(since=start)
    assert scene.writes(start) == []
    mine = [e for e in events if (e.get("user") or {}).get("username") == OPERATOR_USER]
    # The window saw the periodic work: the observer refresh read its store Secret twice,
    # and the agent's heartbeats (each one a status change the operator is told of) went on.
    secret_reads = [
        e for e in mine if e["verb"] == "get" and (e.get("objectRef") or {}).get("name") == STORE_SECRET
    ]
    assert len(secret_reads) >= 2, len(secret_reads)
    beats = [
        e
        for e in events
        if e["verb"] == "patch"
        and e.get("stage") in (None, "ResponseComplete")
        and (e.get("objectRef") or {}).get("resource") == "observationnodes"
        and (e.get("objectRef") or {}).get("subresource") == "status"
    ]
    assert len(beats) >= 2, len(beats)


def test_no_write_after_a_restart(scene: Scene) -> None:
    assert scene.op is not None
    assert scene.op.stop() is not None
    start = scene.cp.audit_offset()
    op = scene.op = start_operator_as_service_account(
        scene.cp, scene.tmp, name="idle-operator-2", extra=(f"--rollout-refresh-seconds={REFRESH_SECONDS}",)
    )
    wait_for(lambda: "stellaops-runtime operator started" in op.text(), what="the new operator started")
    scene.idle(REFRESH_SECONDS + 5)  # its first reconcile of everything, and one cycle of each loop
    assert scene.writes(start) == []
    reads = [
        e
        for e in scene.cp.audit_events(since=start)
        if (e.get("user") or {}).get("username") == OPERATOR_USER
        and e["verb"] == "get"
        and (e.get("objectRef") or {}).get("name") == STORE_SECRET
    ]
    assert len(reads) >= 2  # the start-up reconcile and the first refresh


def test_no_write_after_reapplying_the_unchanged_examples(scene: Scene) -> None:
    start = scene.cp.audit_offset()
    client_side = scene.apply()
    assert all(line.endswith(" unchanged") for line in client_side.strip().splitlines()), client_side
    secret_before = scene.admin.get("v1", "Secret", STORE_SECRET, crds.DEFAULT_AGENT_NAMESPACE)
    applied_at = scene.cp.audit_offset()
    server_side = scene.apply("--server-side")
    assert len(server_side.strip().splitlines()) == 3 + 1 + len(scene.pods), server_side  # Secret + 3 + pods
    # kubectl took the fields over from its client-side apply: every object was written again,
    # with the same data (the store Secret: a new resourceVersion, the same data)
    secret_after = scene.admin.get("v1", "Secret", STORE_SECRET, crds.DEFAULT_AGENT_NAMESPACE)
    assert secret_after["metadata"]["resourceVersion"] != secret_before["metadata"]["resourceVersion"]
    assert secret_after["data"] == secret_before["data"]

    def reconciled() -> bool:
        """The operator reconciled the RuntimeObserver after the apply (it reads the Secret each time)."""
        scene.alive()
        return any(
            (e.get("user") or {}).get("username") == OPERATOR_USER
            and e["verb"] == "get"
            and (e.get("objectRef") or {}).get("name") == STORE_SECRET
            for e in scene.cp.audit_events(since=applied_at)
        )

    wait_for(reconciled, what="the operator's reconcile after the server-side apply", timeout=60)
    scene.quiet()  # the other reconciles the apply triggered (pods, policies) had time to write
    assert scene.writes(start) == []
