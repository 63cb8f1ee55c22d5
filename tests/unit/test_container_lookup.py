"""The registry snapshot the pipeline reads (lifecycle/lookup.py) and the enrichment of Tetragon events.

Tetragon without Kubernetes information names a container only by the 31
characters of ``process.docker``: the pipeline fills the image digest and pod
from the lifecycle registry, files the counts under the digest, and never
overwrites what Tetragon gave.
"""

from __future__ import annotations

import json
import time

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
)
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import ContainerRecord

CID = "4e42b28eb888925289a486ea172efaf2c959bb6d48519d7294781987ac3540fa"
DIGEST = "sha256:" + "1" * 64
TETRAGONS = "sha256:" + "2" * 64
LABELS = {
    "io.kubernetes.pod.namespace": "shop",
    "io.kubernetes.pod.name": "cart-1",
    "io.kubernetes.container.name": "cart",
}


def record(
    cid: str = CID, *, status: str = "running", cgroup: int = 4242, labels: dict | None = None
) -> ContainerRecord:
    return ContainerRecord(
        container_id=cid, namespace="k8s.io", image_ref="test.local/cart:1", image_digest=DIGEST,
        labels=dict(LABELS if labels is None else labels), status=status, pid=77, cgroup_id=cgroup,
    )  # fmt: skip


def event(container: ContainerInfo | None, pod: PodInfo | None = None) -> RuntimeCallEvent:
    return RuntimeCallEvent(EventKind.SYSCALL, 1, "n1", ProcessInfo(binary="/bin/cart"), container, pod)


def test_by_cgroup_answers_running_containers_with_copies() -> None:
    lk = ContainerLookup([record(), record("f" * 64, status="stopped", cgroup=99)], "containerd")
    got = lk.by_cgroup(4242)
    assert got == ContainerInfo(
        id=CID,
        runtime="containerd",
        name="cart",
        image_ref="test.local/cart:1",
        image_digest=DIGEST,
        cgroup_id=4242,
    )
    got.image_digest = "changed"
    assert lk.by_cgroup(4242).image_digest == DIGEST  # callers get copies
    assert lk.pod_by_cgroup(4242) == PodInfo(namespace="shop", name="cart-1")
    assert lk.by_cgroup(99).id == "f" * 64  # a stopped container's cgroup still names it (late records)
    assert lk.by_container_id(("f" * 64)[:31]).image_digest == DIGEST  # but its id is still known
    assert ContainerLookup().by_cgroup(4242) is None and len(ContainerLookup()) == 0
    assert lk.same_as(
        ContainerLookup([record(), record("f" * 64, status="stopped", cgroup=99)], "containerd")
    )
    assert not lk.same_as(ContainerLookup([record()], "containerd"))


def test_enrich_fills_only_what_is_missing() -> None:
    lk = ContainerLookup([record()], "containerd")
    bare = event(ContainerInfo(id=CID[:31].upper()))
    assert lk.enrich(bare)
    assert (bare.container.image_digest, bare.container.name, bare.container.cgroup_id) == (
        DIGEST,
        "cart",
        4242,
    )
    assert bare.pod == PodInfo(namespace="shop", name="cart-1") and bare.image_key == DIGEST
    # Tetragon's own digest and pod are never overwritten.
    full = event(ContainerInfo(id=CID, image_digest=TETRAGONS), PodInfo(namespace="ns", name="p"))
    assert not lk.enrich(full)
    assert (full.container.image_digest, full.pod.name) == (TETRAGONS, "p")
    half = event(ContainerInfo(id=CID, image_id="registry/cart:1"), PodInfo(namespace="ns", name="p"))
    assert lk.enrich(half) and (half.container.image_digest, half.pod.name) == (DIGEST, "p")
    # Unknown containers, host processes and containers without pod labels stay as they are.
    assert not lk.enrich(event(ContainerInfo(id="0" * 64)))
    assert not lk.enrich(event(None))
    no_pod = ContainerLookup([record(labels={})], "containerd", stats=lk.stats)  # the stats carry over
    plain = event(ContainerInfo(id=CID, image_digest=TETRAGONS))
    assert not no_pod.enrich(plain) and plain.pod is None
    assert lk.stats.fields == {"image_digest": 2, "pod": 1} and lk.stats.events == 2


def test_the_pipeline_files_a_docker_only_event_under_the_registrys_digest() -> None:
    p = Pipeline(
        parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}}), node_name="n1"
    )
    assert p.container_lookup is None
    line = json.dumps({
        "process_kprobe": {
            "process": {"exec_id": "e1", "pid": 7, "binary": "/bin/cart", "docker": CID[:31]},
            "function_name": "__x64_sys_write",
        },
        "node_name": "n1", "time": "2026-12-03T09:00:00Z",
    }).encode()  # fmt: skip
    p.process_json([(line, time.monotonic_ns())])  # without a lookup: filed under the container id
    p.container_lookup = ContainerLookup([record()], "containerd")  # a new snapshot: nothing remembered holds
    p.process_json([(line, time.monotonic_ns())])
    deltas, windows = p.drain()
    assert {(d.key.image_digest, d.key.function_name, d.invocation_count) for d in deltas} == {
        (f"container:{CID[:31]}", "__x64_sys_write", 1),
        (DIGEST, "__x64_sys_write", 1),
    }
    [d] = [d for d in deltas if d.key.image_digest == DIGEST]
    assert (d.sample["namespace"], d.sample["pod"]) == ("shop", "cart-1")
    assert {w.image_digest for w in windows} == {f"container:{CID[:31]}", DIGEST}
