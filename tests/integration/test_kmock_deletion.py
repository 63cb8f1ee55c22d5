"""The emulator marks an object deleted while a finalizer holds it as kube-apiserver v1.20 does
(deletion_rules: generation + 1, still patched, its name taken until it goes)."""

from __future__ import annotations

from pathlib import Path

from tests.integration import deletion_rules
from tests.integration.kubeharness import Cluster, obj


async def test_the_emulator_marks_a_held_object_deleted_as_the_real_server(tmp_path: Path) -> None:
    async with Cluster(tmp_path) as cluster:
        await cluster.create(obj("v1", "Namespace", "held"))
        await deletion_rules.check(cluster.kube, "held")
