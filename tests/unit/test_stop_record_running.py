"""The images an agent says still run at its graceful stop (agent/stop_record.py ``running_images``).

The stop record's list ends the open time of every image not in it (store/coverage_live.py
``stop_end``): an image left out while it runs would read watched on the node's later days. So:
with the lifecycle registry in sync, every container not stopped (created, running, paused) names
its image by manifest digest, config digest and aliases; a stopped one and a pod sandbox name none;
a container of no known image, a registry not in sync, or no lifecycle part at all give None (the
reader then keeps every image open). A real registry and its in-sync flag; the agent around them is
only the three attributes the function reads.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from stellaops_runtime.agent.stop_record import running_images
from stellaops_runtime.hotsymbols.container_runs import ContainerRuns
from stellaops_runtime.lifecycle.registry import CRI_KIND_LABEL, ContainerRecord, ContainerRegistry


def digest(c: str) -> str:
    return "sha256:" + c * 64


def agent_with(records: list[ContainerRecord], *, in_sync: bool = True) -> Any:
    reg = ContainerRegistry()
    for r in records:
        reg.put(r)
    runs = ContainerRuns(60)
    runs.known = in_sync
    return SimpleNamespace(lifecycle=SimpleNamespace(observer=SimpleNamespace(registry=reg),
                                                     runs=SimpleNamespace(containers=runs)))  # fmt: skip


def rec(cid: str, image: str, status: str, **kw: Any) -> ContainerRecord:
    return ContainerRecord(cid, "k8s.io", image_digest=image, status=status, **kw)


def test_every_container_not_stopped_names_its_image_by_each_of_its_digests() -> None:
    a, a_cfg, a_alias, b, c, p = (digest(x) for x in "abcdef")
    records = [
        rec("1", a, "running", image_config=a_cfg, image_aliases=(a_alias,)),
        rec("2", b, "stopped"),  # its containers ended before the agent: not running
        rec("3", c, "created"),  # about to run: running
        rec("4", p, "running", labels={CRI_KIND_LABEL: "sandbox"}),  # the pause container
    ]
    assert running_images(agent_with(records)) == tuple(sorted({a, a_cfg, a_alias, c}))
    assert running_images(agent_with([rec("5", a, "paused")])) == (a,)
    assert running_images(agent_with([])) == ()  # in sync and empty: nothing runs


def test_a_registry_not_in_sync_or_a_container_of_no_known_image_names_nothing() -> None:
    a = digest("a")
    assert running_images(agent_with([rec("1", a, "running")], in_sync=False)) is None
    assert running_images(agent_with([rec("1", a, "running"), rec("2", "", "running")])) is None
    assert running_images(agent_with([rec("1", a, "running"), rec("2", "", "stopped")])) == (a,)
    assert running_images(SimpleNamespace(lifecycle=None)) is None
