"""Each statement of ``vex`` cites a witness file that holds its own claim.

Witness files are named ``<vulnerability>-<n>.witness.json`` with the id's characters outside
``[A-Za-z0-9._-]`` written ``_``. Before the fix two vulnerabilities whose ids read the same
so (``CVE/1`` and ``CVE_1``) were both numbered from 1: the second's witness overwrote the
first's, and the ``affected`` statement of CVE/1 cited ``CVE_1-1.witness.json``, which then
held the witness of another function (``witness verify --function crc32`` failed on it). Now
the numbering runs on across every vulnerability that shares a file stem, so no witness file
of a run is written twice, and every cited file holds the envelope its digest names.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import IMG, ROOT, delta, vex_cli, watched

ZLIB = "pkg:deb/debian/zlib1g"


def test_ids_that_share_a_file_stem_get_their_own_witness_files(tmp_path: Path, url: str) -> None:
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 3, 12)], watched(range(40)))
    vulns = {
        "vulnerabilities": [
            {"id": "CVE/1", "affected": [{"purl": ZLIB, "functions": ["crc32"]}]},
            {"id": "CVE_1", "affected": [{"purl": ZLIB, "functions": ["inflateGetHeader", "adler32"]}]},
            {"id": "CVE:1", "affected": [{"purl": ZLIB, "functions": ["deflate"]}]},
        ]
    }
    r = vex_cli(tmp_path, url, vulns)
    assert r.returncode == 0, r.stderr
    statements = {s["vulnerability"]["name"]: s for s in json.loads(r.stdout)["statements"]}
    assert statements["CVE/1"]["status"] == "affected"
    cited: list[tuple[str, str, str]] = []  # (vulnerability, digest, file)
    for vuln, st in statements.items():
        for digest, name in re.findall(r"witness (sha256:[0-9a-f]{64}) \(([^)]+)\)", st["status_notes"]):
            cited.append((vuln, digest, name))
    files = [name for _, _, name in cited]
    assert len(files) == 4 == len(set(files)), cited  # one witness per function, each its own file
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == sorted(files)
    for vuln, digest, name in cited:
        data = (tmp_path / "w" / name).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, (vuln, name)
    [(_, _, crc32_file)] = [c for c in cited if c[0] == "CVE/1"]
    envelope = str(tmp_path / "w" / crc32_file)
    v = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "witness", "verify", envelope,
         "--key", str(tmp_path / "w.pub"), "--image", IMG, "--function", "crc32", "--vuln", "CVE/1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert v.returncode == 0, v.stderr
