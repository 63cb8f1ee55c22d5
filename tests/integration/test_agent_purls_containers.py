"""A row's package is the one every live container of its image gives, never the last one seen.

A hot-symbol row counts the calls of every container of an image on the node, and each container
can rewrite its own package databases. The agent used to read the image's files through the root
of whichever container sent the last event: one compromised container (a forged dpkg status
claiming zlib1g 1:1.3.1-1) decided the package version of the row, so a VEX question about the
real, vulnerable 1:1.2.13 answered "not observed". Now the agent asks the image's last few
containers (attribution/agreement.py): the answer when they agree, unknown when they disagree.

Real root filesystems in tmp dirs (the victim's dpkg database checked against dpkg-query by
tests/integration/test_attribution_per_root.py), a procfs of symlinks, the agent's own
HotSymbolAttribution.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stellaops_runtime.agent.purls import HotSymbolAttribution
from stellaops_runtime.contracts.config import AttributionConfig
from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from tests.integration.test_attribution_per_root import LIBZ, image_root

DIGEST = "sha256:" + "ab" * 32
TRUTH = "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12"


def procfs(tmp: Path, roots: dict[int, Path]) -> Path:
    proc = tmp / "proc"
    for pid, root in roots.items():
        (proc / str(pid)).mkdir(parents=True)
        os.symlink(root, proc / str(pid) / "root")
    return proc


def event(pid: int) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=EventKind.EXEC, timestamp_ns=1, node_name="n1", process=ProcessInfo(pid=pid),
        container=ContainerInfo(id=f"c{pid}", image_digest=DIGEST),
    )  # fmt: skip


def stored_purl(proc: Path, pids: list[int]) -> str:
    att = HotSymbolAttribution(AttributionConfig(), proc_root=str(proc), node_name="n1")
    for pid in pids:
        att.note(event(pid))
    d = HotSymbolDelta(
        key=HotSymbolKey(DIGEST, LIBZ, "", EvidenceKind.LOADED), window_start_ns=0,
        invocation_count=len(pids), first_seen_ns=1, last_seen_ns=1,
    )  # fmt: skip
    att.fill([d])
    return d.purl


@pytest.mark.parametrize(
    "order", [[100, 100, 100, 200], [200, 100, 100]], ids=["attacker-last", "attacker-first"]
)
def test_a_forged_container_makes_the_row_unknown_never_its_version(tmp_path: Path, order: list[int]) -> None:
    proc = procfs(tmp_path, {100: image_root(tmp_path / "victim", "1:1.2.13.dfsg-1", "2.25.0"),
                             200: image_root(tmp_path / "attacker", "1:1.3.1-1", "2.99.0")})  # fmt: skip
    assert stored_purl(proc, order) == ""


def test_containers_that_agree_give_the_package(tmp_path: Path) -> None:
    proc = procfs(tmp_path, {100: image_root(tmp_path / "one", "1:1.2.13.dfsg-1", "2.25.0"),
                             101: image_root(tmp_path / "two", "1:1.2.13.dfsg-1", "2.25.0")})  # fmt: skip
    assert stored_purl(proc, [100, 101, 100]) == TRUTH
