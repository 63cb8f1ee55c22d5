"""``vex`` for a key that is not an image's sha256 digest, or to an ``--out`` that cannot be
written, is exit 2, never a traceback (exit 1).

``stella-runtime query`` takes the agent's keys for host processes and containers without a
digest (``host:<node>``, ``container:<id>``) and sha512 digests; a VEX product and every
witness subject need a sha256 image digest. Before the fix ``vex --image host:node-1`` signed
nothing and ended in a ValueError traceback from the witness statement, exit 1; ``--out`` in a
directory that does not exist, or naming a directory, ended in an OSError traceback after the
witnesses were signed. The document is now written whole or not at all (no ``.part`` left).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_vex import VULNS, store, vex_cli


@pytest.mark.parametrize("image", ["host:node-1", "container:0123abcd", "sha512:" + "a" * 128])
def test_a_key_that_is_no_sha256_image_is_a_usage_error(tmp_path: Path, image: str) -> None:
    url = store(tmp_path, range(3))
    r = vex_cli(tmp_path, url, VULNS, image=image)
    assert r.returncode == 2 and "needs an image's sha256 digest" in r.stderr and "Traceback" not in r.stderr
    assert not list((tmp_path / "w").glob("*.witness.json"))


@pytest.mark.parametrize("where", ["missing/vex.json", "."], ids=["no such directory", "a directory"])
def test_an_out_that_cannot_be_written_is_an_error(tmp_path: Path, where: str) -> None:
    url = store(tmp_path, range(3))
    ok = vex_cli(tmp_path, url, VULNS, "--out", str(tmp_path / "vex.json"))
    assert ok.returncode == 0 and json.loads((tmp_path / "vex.json").read_text())["statements"]
    r = vex_cli(tmp_path, url, VULNS, "--out", str(tmp_path / where))
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not list(tmp_path.rglob("*.part"))
