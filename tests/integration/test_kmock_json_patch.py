"""The emulator answers JSON patches and unserved kinds as kube-apiserver v1.20 does (json_patch_rules)."""

from __future__ import annotations

from pathlib import Path

from tests.integration import json_patch_rules
from tests.integration.kubeharness import Cluster, obj


async def test_the_emulator_answers_json_patches_and_unserved_kinds_as_the_real_server(
    tmp_path: Path,
) -> None:
    async with Cluster(tmp_path) as cluster:
        await cluster.create(obj("v1", "Namespace", "jp"))
        await json_patch_rules.check(cluster.kube, "jp")
