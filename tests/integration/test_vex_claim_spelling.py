"""A VEX document names each package as the witnesses it cites do.

``vex`` wrote its subcomponents (OpenVEX) and components (CycloneDX) in packageurl-python's form
of the input's text, which keeps a Debian package's case and a Cargo name's ``_``, while every
witness it cites signs the claim's canonical spelling (witness/store.py ``canonical_claim``:
``pkg:deb/debian/Zlib1g`` is ``pkg:deb/debian/zlib1g``, as the store matches it). A policy engine
joining a statement's package to its witnesses' claims found none: the statement read as
unbacked, or, matched by the other spelling, as a statement of another package. Now the document
names each package in the claim's spelling, and two spellings of one package are one component.
"""

from __future__ import annotations

import json
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import OPENVEX, delta, vex_cli, watched
from tests.witness_helpers import statement


def test_the_document_spells_each_package_as_its_witnesses_claim_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hot.db"
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 3, 12)], watched(range(40)))
    affected = [
        {"purl": "pkg:deb/debian/Zlib1g", "functions": ["crc32"]},
        {"purl": "pkg:deb/debian/zlib1g", "functions": ["crc32"]},
    ]
    vulns = {"vulnerabilities": [{"id": "CVE-S", "affected": affected}]}
    r = vex_cli(tmp_path, url, vulns)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    [st] = doc["statements"]
    assert st["status"] == "affected", st
    claimed = {statement(w)["predicate"]["claim"]["purl"] for w in (tmp_path / "w").iterdir()}
    assert claimed == {"pkg:deb/debian/zlib1g"}
    assert [sub["@id"] for sub in st["products"][0]["subcomponents"]] == ["pkg:deb/debian/zlib1g"]
    assert "pkg:deb/debian/zlib1g runs in this image" in st["action_statement"]
    cdx = vex_cli(tmp_path, url, vulns, "--format", "cyclonedx")
    assert cdx.returncode == 0, cdx.stderr
    bom = json.loads(cdx.stdout)
    [component] = bom["components"]
    assert (component["purl"], component["name"]) == ("pkg:deb/debian/zlib1g", "zlib1g"), component
    [vuln] = bom["vulnerabilities"]
    assert vuln["affects"] == [{"ref": component["bom-ref"]}], vuln
