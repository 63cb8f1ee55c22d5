"""The pipeline's lookup names the container of a stopped task's cgroup (lifecycle/lookup.py).

Native records are decoded after the runtime reported the exit of the
container that wrote them; the lookup must still file them under that
container's image and pod (the opt-out reads the pod). The real sequence,
with containerd and BCC, is in tests/integration/test_lifecycle_late_native.py;
here the rules of the index: a container that runs wins over a stopped one
claiming the same id, and a container the runtime removed is named only
through the registry's departed containers, below every one it still has.
"""

from __future__ import annotations

from stellaops_runtime.contracts.events import PodInfo
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import DEPARTED_MAX, ContainerRecord, ContainerRegistry

OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def rec(cid: str, status: str, cgroup: int, digest: str = OLD, pod: str = "job-1") -> ContainerRecord:
    return ContainerRecord(
        container_id=cid, namespace="k8s.io", image_digest=digest, status=status, pid=41, cgroup_id=cgroup,
        labels={"io.kubernetes.pod.namespace": "batch", "io.kubernetes.pod.name": pod,
                "io.kubernetes.pod.uid": f"uid-{pod}"},
        annotations={OBSERVE_LEVEL_ANNOTATION: "off"},
    )  # fmt: skip


def test_a_stopped_container_keeps_its_cgroup_its_image_and_its_pod() -> None:
    lk = ContainerLookup([rec("c" * 64, "stopped", 99)], "containerd")
    got = lk.by_cgroup(99)
    assert got is not None and (got.id, got.image_digest, got.cgroup_id) == ("c" * 64, OLD, 99)
    assert lk.pod_by_cgroup(99) == PodInfo(
        namespace="batch", name="job-1", uid="uid-job-1", annotations={OBSERVE_LEVEL_ANNOTATION: "off"}
    )  # so the late records of a pod that opted out are dropped, not kept as node events
    assert ContainerLookup([rec("c" * 64, "stopped", 0)]).by_cgroup(0) is None  # never resolved
    assert ContainerLookup([]).by_cgroup(99) is None  # removed by the runtime: nothing


def test_a_running_container_wins_over_a_stopped_one_claiming_its_cgroup() -> None:
    stopped, running = rec("a" * 64, "stopped", 7), rec("b" * 64, "running", 7, NEW, "web-1")
    for order in ([stopped, running], [running, stopped]):
        lk = ContainerLookup(order, "containerd")
        assert lk.by_cgroup(7).image_digest == NEW  # type: ignore[union-attr]
        assert lk.pod_by_cgroup(7).name == "web-1"  # type: ignore[union-attr]


def test_removed_containers_are_named_through_departed_below_the_current_ones() -> None:
    reg = ContainerRegistry()
    reg.put(rec("d" * 64, "stopped", 55))
    reg.put(rec("e" * 64, "stopped", 0))  # never had a cgroup: nothing to remember
    reg.put(rec("f" * 64, "running", 66, NEW, "web-1"))
    reg.remove("k8s.io", "d" * 64)
    reg.remove("k8s.io", "e" * 64)
    assert [r.container_id for r in reg.departed()] == ["d" * 64]
    assert ContainerLookup(reg.records()).by_cgroup(55) is None  # without departed: as before
    lk = ContainerLookup(reg.records(), "containerd", departed=reg.departed())
    assert lk.by_cgroup(55).image_digest == OLD  # type: ignore[union-attr]
    assert lk.by_container_id("d" * 31).image_digest == OLD  # type: ignore[union-attr]
    assert lk.pod_by_cgroup(55).name == "job-1"  # type: ignore[union-attr]
    # A departed record never outranks a container the runtime has, whatever it claims.
    ghost = rec("f" * 64, "stopped", 66)
    lk = ContainerLookup(reg.records(), "containerd", departed=[ghost])
    assert lk.by_cgroup(66).image_digest == NEW and lk.by_container_id("f" * 31).image_digest == NEW  # type: ignore[union-attr]
    for n in range(DEPARTED_MAX + 1):  # bounded: the oldest are forgotten
        reg.put(rec(f"{n:064x}", "stopped", 1000 + n))
        reg.remove("k8s.io", f"{n:064x}")
    assert len(reg.departed()) == DEPARTED_MAX and reg.departed()[0].cgroup_id == 1001
