"""A vulnerability listed twice in the input gets one statement, decided on all its entries.

Before the fix ``vex`` made one statement per entry: an input listing CVE-1 once with crc32
(which ran) and once with inflateGetHeader (which never ran in a fully watched window) gave
two statements of CVE-1 in one document, ``affected`` and ``not_affected``, and a CycloneDX
document with two vulnerabilities of one ``bom-ref``. A policy engine reading the second would
call the image not affected by a vulnerability whose code runs there. Now the entries of one id
are read as one vulnerability (its affected packages and functions together, aliases joined,
the first description): one statement, ``affected``.
"""

from __future__ import annotations

import json
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.evidence.vex_input import parse
from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import OPENVEX, delta, vex_cli, watched

ZLIB = "pkg:deb/debian/zlib1g"
TWICE = {
    "vulnerabilities": [
        {"id": "CVE-1", "description": "first", "aliases": ["GHSA-a"],
         "affected": [{"purl": ZLIB, "functions": ["inflateGetHeader"]}]},
        {"id": "CVE-2", "affected": [{"purl": ZLIB, "functions": ["deflate"]}]},
        {"id": "CVE-1", "description": "second", "aliases": ["GHSA-b", "GHSA-a"],
         "affected": [{"purl": ZLIB, "functions": ["crc32"]},
                      {"purl": ZLIB, "functions": ["inflateGetHeader"]}]},
    ]
}  # fmt: skip


def seeded(url: str) -> str:
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 3, 12)], watched(range(40)))
    return url


def test_one_statement_per_vulnerability_decided_on_all_its_entries(tmp_path: Path, url: str) -> None:
    r = vex_cli(tmp_path, seeded(url), TWICE)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    names = [s["vulnerability"]["name"] for s in doc["statements"]]
    assert names == ["CVE-1", "CVE-2"], names
    cve1 = doc["statements"][0]
    assert cve1["status"] == "affected" and "crc32 (12 calls)" in cve1["status_notes"], cve1
    assert cve1["vulnerability"]["aliases"] == ["GHSA-a", "GHSA-b"]
    assert cve1["vulnerability"]["description"] == "first"
    assert doc["statements"][1]["status"] == "not_affected"
    assert len(list((tmp_path / "w").iterdir())) == 3  # inflateGetHeader once, crc32, deflate


def test_cyclonedx_has_one_vulnerability_per_id(tmp_path: Path, url: str) -> None:
    r = vex_cli(tmp_path, seeded(url), TWICE, "--format", "cyclonedx")
    assert r.returncode == 0, r.stderr
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(r.stdout) is None
    vulns = json.loads(r.stdout)["vulnerabilities"]
    assert [(v["bom-ref"], v["analysis"]["state"]) for v in vulns] == [
        ("vuln:CVE-1", "exploitable"),
        ("vuln:CVE-2", "not_affected"),
    ]


def test_osv_records_of_one_id_are_one_vulnerability() -> None:
    rec = {"id": "GO-1", "affected": [{"package": {"ecosystem": "Go", "name": "golang.org/x/net"}}]}
    [v] = parse({"vulns": [rec, rec]})
    assert v.id == "GO-1" and len(v.targets) == 1
