"""What tests/integration/json_patch_rules.py asserts of the emulator is what kube-apiserver v1.20 does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stellaops_runtime.kube.client import Connection, KubeClient
from tests.integration import json_patch_rules
from tests.realkube.controlplane import ControlPlane

pytestmark = pytest.mark.realkube
NS = "json-patch"


async def _check(kubeconfig: Path) -> None:
    conn = await asyncio.to_thread(Connection.load, kubeconfig=str(kubeconfig))
    async with KubeClient(conn) as kube:
        await json_patch_rules.check(kube, NS)


def test_the_real_server_answers_json_patches_and_unserved_kinds_as_the_emulator_is_told(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    admin = control_plane.admin
    assert admin is not None
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    asyncio.run(_check(control_plane.write_kubeconfig(tmp_path / "kubeconfig", token=None)))
