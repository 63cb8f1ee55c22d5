"""A Tetragon ``process_exec`` of a pod as protobuf bytes, for the opt-out tests' real pipelines.

The opt-out tests (test_optout.py, test_observe_level_read.py,
test_optout_registry_window.py) feed the agent's real adapter and pipeline the
events Tetragon sends for a pod: its labels always, its annotations only with
``--enable-pod-annotations``. One builder, so they all send the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping

from stellaops_runtime.wire.tetragon import events_pb2


def process_exec(
    pod: str,
    i: int,
    *,
    container_id: str,
    digest: str,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """Pod ``pod`` in namespace ``shop`` runs ``/usr/bin/app --token=...`` (exec id ``<pod>-<i>``),
    at second ``i`` of a fixed day, in container ``containerd://<container_id>`` of image ``digest``."""
    m = events_pb2.GetEventsResponse(node_name="node-1")
    m.time.seconds = 1_795_510_800 + i
    p = m.process_exec.process
    p.exec_id = f"{pod}-{i}"
    p.pid.value = 100 + i
    p.binary = "/usr/bin/app"
    p.arguments = "--token=s3cr3t-value-xyz"
    p.pod.namespace = "shop"
    p.pod.name = pod
    p.pod.container.id = f"containerd://{container_id}"
    p.pod.container.image.id = f"registry.example.com/shop/{pod}@{digest}"
    p.pod.pod_labels.update(labels if labels is not None else {"app": pod})
    p.pod.pod_annotations.update(annotations or {})
    return m.SerializeToString()
