"""Issue 14 against a real containerd: a pod that opted out is not counted where the BCC probes observe.

A private containerd (tests/containerd_harness.py, its CRI plugin off since
no kubelet runs here) gets two pods made the way containerd's CRI plugin
makes them: a sandbox container labelled ``io.cri-containerd.kind: sandbox``
with the pod's labels and, in the ``io.cri-containerd.sandbox.metadata``
extension, the versioned sandbox metadata holding the kubelet's
PodSandboxConfig (the pod's annotations); and an application container,
run by ``ctr``, with the kubelet's ``io.kubernetes.pod.*`` labels. The real
lifecycle observer follows containerd; events shaped as the agent's own BCC
probes emit them (the record structs the kernel side writes, with each
container's real cgroup id) run through the real pipeline:

- the pod annotated ``stellaops.io/observe-level: None`` leaves no count and
  no watched window; its events are counted as ``annotation`` opt-outs and
  leave only their image's gap over the whole window (source ``opted_out``,
  docs/privacy.md), never a claim that the image was watched; none of its
  other annotations (a secret in the last-applied configuration) reaches the
  registry;
- the other pod counts every event;
- once the operator's probe ConfigMap names the other pod (rendered by the
  operator's own function, written where the agent reads it), its next
  events are dropped with reason ``operator``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crds import OBSERVE_LEVEL_ANNOTATION
from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.controller.opted_out import OptedOutPod
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, render_probe_configmap
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient, target_of
from stellaops_runtime.lifecycle.decode import SANDBOX_METADATA_EXTENSION
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from stellaops_runtime.native import records
from stellaops_runtime.native.events import encode_trailer
from stellaops_runtime.wire.containerd import containers_pb2
from tests.containerd_harness import Containerd, Image, Watcher, build_image, running
from tests.wire_bytes import varint as _varint

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SECRET = "optout-sandbox-secret-4e7a"
CREATE = "/containerd.services.containers.v1.Containers/Create"
SANDBOX_TYPE_URL = "github.com/containerd/cri/pkg/store/sandbox/Metadata"  # what containerd's CRI registers
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
NODE = "optout-node"


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir)
    ctd.import_image(img)
    return img


def _pod_labels(ns: str, name: str, uid: str) -> dict[str, str]:
    return {"io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.name": name, "io.kubernetes.pod.uid": uid}


def create_sandbox(
    ctd: Containerd, sandbox_id: str, *, ns: str, name: str, uid: str, annotations: dict
) -> None:
    """A pod sandbox container as containerd's CRI plugin stores it (labels, metadata extension)."""
    config = {
        "metadata": {"name": name, "uid": uid, "namespace": ns, "attempt": 0},
        "labels": {**_pod_labels(ns, name, uid), "app": name},
        "annotations": annotations,
    }
    metadata = {
        "Version": "v1",
        "Metadata": {"ID": sandbox_id, "Name": f"{name}_{ns}_{uid}_0", "Config": config},
    }
    c = containers_pb2.Container(
        id=sandbox_id,
        labels={**_pod_labels(ns, name, uid), "app": name, "io.cri-containerd.kind": "sandbox"},
        image="registry.k8s.io/pause:3.9",
    )
    c.runtime.name = "io.containerd.runc.v2"
    c.spec.type_url = SPEC_TYPE_URL
    c.spec.value = json.dumps({"ociVersion": "1.1.0", "annotations": {}}).encode()
    ext = c.extensions[SANDBOX_METADATA_EXTENSION]
    ext.type_url = SANDBOX_TYPE_URL
    ext.value = json.dumps(metadata).encode()
    body = c.SerializeToString()
    request = b"\x0a" + _varint(len(body)) + body  # CreateContainerRequest{container = 1}
    with grpc.insecure_channel(target_of(ctd.address)) as ch:  # the test's own client (a small reply)
        ch.unary_unary(CREATE, request_serializer=bytes, response_deserializer=bytes)(
            request, metadata=(("containerd-namespace", ctd.namespace),), timeout=10
        )


def run_pod_container(ctd: Containerd, image: Image, cid: str, *, ns: str, name: str, uid: str) -> None:
    labels = {
        **_pod_labels(ns, name, uid),
        "io.kubernetes.container.name": "app",
        "io.cri-containerd.kind": "container",
    }
    args = [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]
    ctd.ctr("run", "-d", *args, image.ref, cid)


def bcc_exec(cgroup_id: int, path: bytes, pid: int) -> bytes:
    """An exec record as the native probes' kernel side writes it, for a process in ``cgroup_id``."""
    head = (records.KIND_EXEC, 0, 0, pid, pid, 0, 5_000_000, cgroup_id, b"app")
    return records.STRUCTS[records.KIND_EXEC].pack(*head, 1, 0, path) + encode_trailer("", 0, [])


def test_an_opted_out_pods_bcc_events_are_dropped_and_the_operator_list_takes_effect(
    ctd: Containerd, image: Image, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    off_uid, on_uid = str(uuid.uuid4()), str(uuid.uuid4())
    off_app, on_app = f"off-{tag}", f"on-{tag}"
    annotations = {OBSERVE_LEVEL_ANNOTATION: " none ", LAST_APPLIED: json.dumps({"env": [{"value": SECRET}]})}
    observer = ContainerdObserver(ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=2.0))
    try:
        with Watcher(observer) as w:
            create_sandbox(
                ctd, f"sb-off-{tag}", ns="shop", name="private-0", uid=off_uid, annotations=annotations
            )
            create_sandbox(ctd, f"sb-on-{tag}", ns="shop", name="web-0", uid=on_uid, annotations={})
            run_pod_container(ctd, image, off_app, ns="shop", name="private-0", uid=off_uid)
            run_pod_container(ctd, image, on_app, ns="shop", name="web-0", uid=on_uid)
            for cid in (f"sb-off-{tag}", f"sb-on-{tag}"):
                w.wait_for(lambda e, cid=cid: e.event_type == T.CREATE and e.container_id == cid)
            for cid in (off_app, on_app):
                w.wait_for(lambda e, cid=cid: e.event_type == T.START and e.container_id == cid)
            recs = w.query(observer.registry.records)
    finally:
        ctd.remove_all()
    by_id = {r.container_id: r for r in recs}
    assert by_id[f"sb-off-{tag}"].pod_annotations == {OBSERVE_LEVEL_ANNOTATION: " none "}
    assert by_id[f"sb-on-{tag}"].pod_annotations == {}
    assert SECRET not in json.dumps([r.to_json() for r in recs])  # only the kept annotation is read
    off_cg, on_cg = by_id[off_app].cgroup_id, by_id[on_app].cgroup_id
    assert off_cg and on_cg and off_cg != on_cg

    probes = tmp_path / PROBE_CONFIG_KEY
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False},
                        "native": {"probeConfigFile": str(probes)}})  # fmt: skip
    pipe = Pipeline(cfg, node_name=NODE)
    assert pipe.optout_watch is not None
    pipe.optout_watch.interval = 0.0  # the 1 s pacing is tested in tests/unit/test_optout_operator.py
    pipe.container_lookup = ContainerLookup(recs, "containerd")
    now = time.monotonic_ns()
    batch = [(bcc_exec(off_cg, b"/app/private", 100 + i), now) for i in range(5)]
    batch += [(bcc_exec(on_cg, b"/app/web", 200 + i), now) for i in range(7)]
    pipe.process_native(batch)
    deltas, windows = pipe.drain()
    assert {(d.key.module, d.invocation_count) for d in deltas} == {("/app/web", 7)}
    assert pipe.optout.counts() == {"annotation": 5, "label": 0, "operator": 0}
    # One window of the image both pods run: the web pod's 7 events, watched; the private pod's time
    # is the image's gap over that whole window, and nothing of it is counted.
    [w] = windows
    wn = cfg.hot_symbols.window_seconds * 1_000_000_000
    assert (w.event_count, w.gap_start_ns, w.gap_end_ns) == (7, w.window_start_ns, w.window_start_ns + wn)
    assert "opted_out" in w.source.split(",") and (w.throttles, w.dropped_events) == (0, 0)

    # The operator lists the web pod (its annotation changed after creation): the agent follows.
    cm = render_probe_configmap(
        name="stellaops-probes-x", namespace="stellaops", entries={}, owner=None,
        opted_out=[OptedOutPod("shop", "web-0", on_uid), OptedOutPod("shop", "private-0", off_uid)],
    )  # fmt: skip
    probes.write_text(cm["data"][PROBE_CONFIG_KEY])
    pipe.process_native([(bcc_exec(on_cg, b"/app/web", 300 + i), now) for i in range(4)])
    pipe.process_native([(bcc_exec(off_cg, b"/app/private", 400), now)])
    deltas, windows = pipe.drain()
    # Nothing counted, no watched window: only the image's gap over each window its pods ran in.
    assert deltas == [] and windows
    for g in windows:
        assert (g.image_digest, g.node_name, g.event_count, g.posture, g.source) == (
            w.image_digest, NODE, 0, None, "opted_out",
        )  # fmt: skip
        assert (g.gap_start_ns, g.gap_end_ns) == (g.window_start_ns, g.window_start_ns + wn)
    assert pipe.optout.counts() == {"annotation": 6, "label": 0, "operator": 4}
