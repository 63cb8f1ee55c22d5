"""``attribute --sbom`` naming a FIFO or a device is exit 2 naming it, never a hang.

docs/attribution.md, "An SBOM is read [...] only from a regular file of at
most 256 MiB (`stella-runtime attribute --sbom` naming a FIFO or a device
such as `/dev/zero` is exit 2 naming it, never a wait or an endless read)".

Before the fix, through the real CLI: the SBOM's size was taken from
``stat`` (0 for a FIFO or ``/dev/zero``) and the file then read whole, so a
FIFO waited for a writer for ever and ``/dev/zero`` was read until memory
ran out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import harness as h


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_an_sbom_that_is_no_regular_file_is_exit_2(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"\x7fELF")
    if kind == "fifo":
        sbom = tmp_path / "sbom.cdx.json"
        os.mkfifo(sbom)
        what = "not a regular file (a FIFO)"
    else:
        sbom, what = Path("/dev/zero"), "not a regular file (a character device)"
    try:
        r = subprocess.run(
            [sys.executable, "-m", "stellaops_runtime.cli.main", "attribute", "--root", str(root),
             "--sbom", str(sbom), "/bin/tool"],
            capture_output=True, text=True, timeout=60, cwd=h.ROOT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise AssertionError(f"attribute --sbom {sbom} did not return in 60 s") from None
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"{sbom}: cannot read: {what}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
