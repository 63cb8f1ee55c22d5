"""Records of one vulnerability under two ids (OSV ``aliases``) get one statement, decided on both.

Before the fix ``vex`` merged only entries of the same ``id``. A GitHub advisory and the Go (or
RustSec) record of the same CVE name each other in ``aliases`` and often list different
vulnerable functions: an input holding CVE-2022-1 with ``inflateGetHeader`` (never called in a
fully watched window) and its alias GHSA-jm6m-4w2v-3mmr with ``crc32`` (called 12 times) gave one
document saying ``not_affected`` of CVE-2022-1 and ``affected`` of GHSA-jm6m-4w2v-3mmr: a policy
engine that looks the CVE up calls the image not affected by a vulnerability whose code runs
there. Now records linked by an alias (either way, or through a third) are one vulnerability,
under the first id, the other ids among its aliases.
"""

from __future__ import annotations

import json
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.evidence import vex
from stellaops_runtime.evidence.vex_input import parse
from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import IMG, OPENVEX, delta, vex_cli, watched

ZLIB = "pkg:deb/debian/zlib1g"
GHSA = "GHSA-jm6m-4w2v-3mmr"
ALIASED = {
    "vulnerabilities": [
        {"id": "CVE-2022-1", "aliases": [GHSA],
         "affected": [{"purl": ZLIB, "functions": ["inflateGetHeader"]}]},
        {"id": "CVE-2022-2", "affected": [{"purl": ZLIB, "functions": ["deflate"]}]},
        {"id": GHSA.upper(), "aliases": ["cve-2022-1", "GO-2022-9"],
         "affected": [{"purl": ZLIB, "functions": ["crc32"]}]},
    ]
}  # fmt: skip


def test_records_naming_each_other_as_aliases_get_one_statement_decided_on_both(
    tmp_path: Path, url: str
) -> None:
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 3, 12)], watched(range(40)))
    r = vex_cli(tmp_path, url, ALIASED)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    status = {s["vulnerability"]["name"]: s["status"] for s in doc["statements"]}
    assert status == {"CVE-2022-1": "affected", "CVE-2022-2": "not_affected"}, status
    cve = doc["statements"][0]
    assert "crc32 (12 calls)" in cve["status_notes"], cve
    assert cve["vulnerability"]["aliases"] == [GHSA, "GO-2022-9"]


def test_an_alias_chain_is_one_vulnerability_and_unrelated_ids_stay_apart() -> None:
    chain = [
        {"id": "GO-2022-9", "affected": [{"purl": ZLIB, "functions": ["a"]}]},
        {"id": "CVE-2022-3", "affected": [{"purl": ZLIB, "functions": ["b"]}]},
        {"id": "CVE-2022-1", "aliases": ["GO-2022-9"], "affected": [{"purl": ZLIB, "functions": ["c"]}]},
        {"id": GHSA, "aliases": ["CVE-2022-1"], "affected": [{"purl": ZLIB, "functions": ["d"]}]},
    ]
    first, other = parse(chain)
    assert first.id == "GO-2022-9" and other.id == "CVE-2022-3"
    assert first.aliases == ("CVE-2022-1", GHSA)
    assert [f for t in first.targets for f in t.functions] == ["a", "c", "d"]


def test_cyclonedx_names_the_other_ids_as_references() -> None:
    """CycloneDX has no ``aliases``: the ids joined under the first one (a GitHub advisory
    looked up by its own id) are its ``references``, or the document would not name them."""
    [v] = parse(ALIASED["vulnerabilities"][:1] + ALIASED["vulnerabilities"][2:])
    doc = vex.cyclonedx(IMG, [vex.Decision(v, vex.UNDER_INVESTIGATION, "n", ())])
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc)) is None
    [entry] = doc["vulnerabilities"]
    assert entry["id"] == "CVE-2022-1"
    assert [r["id"] for r in entry["references"]] == [GHSA, "GO-2022-9"]
