"""A probed function's calls from a container that stopped (or was removed) before the decode.

A short-lived job (a JVM container running a PURL-probed JNI library) may exit before the agent
decodes its probes' records: the lifecycle lookup keeps a stopped container's cgroup, and a removed
one's through the registry's departed containers (lifecycle/lookup.py). Through the real Pipeline,
each container's uprobe calls must be counted under its own image, exactly: none lost, none filed
under the running container's image or under the node.
"""

from __future__ import annotations

from collections import Counter

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.native import records
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.events import encode_trailer

LIB = "/usr/lib/x86_64-linux-gnu/libstellajni.so.1"
JOB, WEB, GONE = ("sha256:" + c * 64 for c in "abc")


def _container(cid: str, digest: str, status: str, cgroup: int) -> ContainerRecord:
    labels = {"io.kubernetes.pod.namespace": "batch", "io.kubernetes.pod.name": cid,
              "io.kubernetes.pod.uid": f"uid-{cid}", "io.kubernetes.container.name": "app"}  # fmt: skip
    return ContainerRecord(cid, "k8s.io", image_ref="img", image_digest=digest, labels=labels,
                           status=status, pid=100 + cgroup, cgroup_id=cgroup)  # fmt: skip


def _call(cgroup: int, pid: int) -> tuple[bytes, int]:
    head = (records.KIND_UPROBE, 0, 0, pid, pid, 0, 5_000_000, cgroup, b"java")
    rec = records.STRUCTS[records.KIND_UPROBE].pack(*head, 0, 0, 1_000)
    return rec + encode_trailer("/usr/bin/java", 4_000_000, []), 1


def test_calls_of_stopped_and_removed_containers_are_counted_under_their_own_images() -> None:
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    p = Pipeline(cfg, node_name="node-1")
    p.container_lookup = ContainerLookup(
        [_container("job", JOB, "stopped", 601), _container("web", WEB, "running", 602)],
        "containerd",
        departed=[_container("gone", GONE, "stopped", 603)],  # docker run --rm: removed at its exit
    )
    native = NativeConfig(uprobes=[UprobeTarget(LIB, "jni_fn")])
    p.process_native([_call(601, 701)] * 5 + [_call(602, 702)] * 3 + [_call(603, 703)] * 2, native)
    p.release_native_held(everything=True)
    deltas, _ = p.drain()
    calls: Counter[tuple[str, str, str]] = Counter()
    for d in deltas:
        if d.key.evidence == EvidenceKind.INVOKED:
            calls[(d.key.image_digest, d.key.module, d.key.function_name)] += d.invocation_count
    assert calls == {(JOB, LIB, "jni_fn"): 5, (WEB, LIB, "jni_fn"): 3, (GONE, LIB, "jni_fn"): 2}, calls
