"""``vex`` reads the input's package URLs and vulnerability ids as the rest of the CLI does.

- Package URLs: the OpenVEX subcomponents are IRIs (the schema's ``format: iri``, checked here
  with a format checker). Before the fix they were the input's text as written: a qualifier with
  a space, a ``"`` or a stray ``%`` gave a document the published schema refuses, and a purl
  with a leading space was "no package URL" while one with a trailing space was taken (and kept
  its space in the document). Now each is written in its canonical, percent-encoded form, and
  surrounding spaces are stripped as ``query`` strips them.
- Vulnerability ids are read as ``witness sign --vuln`` and ``witness verify --vuln`` read them
  (witness/store.py ``vulnerability_id``): stripped, and one holding a control character is the
  input's error. Before the fix ``" CVE-1 "`` was signed into witnesses no ``verify --vuln
  CVE-1`` accepted, and ``"CVE\\n1"`` into witnesses no ``--vuln`` could name.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from packageurl import PackageURL

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_in_process
from tests.integration.test_vex import IMG, OPENVEX_SCHEMA, delta, vex_cli, watched

CHECKED = jsonschema.Draft202012Validator(
    OPENVEX_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def seeded(url: str) -> str:
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 3, 12)], watched(range(40)))
    return url


@pytest.mark.parametrize(
    ("given", "status"),
    [
        ("pkg:deb/debian/zlib1g?arch=a b", "under_investigation"),
        ('pkg:deb/debian/zlib"1g', "under_investigation"),
        ("pkg:deb/debian/zlib%zz", "under_investigation"),
        ("pkg:deb/debian/zlib1g ", "affected"),
        (" pkg:deb/debian/zlib1g", "affected"),
    ],
    ids=["space", "quote", "stray percent", "trailing space", "leading space"],
)
def test_subcomponents_are_canonical_purls(tmp_path: Path, url: str, given: str, status: str) -> None:
    vulns = {"vulnerabilities": [{"id": "CVE-P", "affected": [{"purl": given, "functions": ["crc32"]}]}]}
    r = vex_cli(tmp_path, seeded(url), vulns)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    CHECKED.validate(doc)
    [st] = doc["statements"]
    assert st["status"] == status, st
    [sub] = st["products"][0]["subcomponents"]
    assert PackageURL.from_string(sub["@id"]) == PackageURL.from_string(given.strip()), sub
    cdx = vex_cli(tmp_path, url, vulns, "--format", "cyclonedx")
    [component] = json.loads(cdx.stdout)["components"]
    assert component["purl"] == sub["@id"], component  # the same canonical form


def test_a_vulnerability_id_is_read_as_witness_reads_it(tmp_path: Path, url: str) -> None:
    vulns = {
        "vulnerabilities": [
            {"id": " CVE-1 ", "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": ["crc32"]}]}
        ]
    }
    r = vex_cli(tmp_path, seeded(url), vulns)
    assert r.returncode == 0, r.stderr
    [st] = json.loads(r.stdout)["statements"]
    assert st["vulnerability"]["name"] == "CVE-1"
    [witness] = (tmp_path / "w").iterdir()
    assert witness.name == "CVE-1-1.witness.json"
    v = cli_in_process("witness", "verify", str(witness), "--key", str(tmp_path / "w.pub"), "--image", IMG,
                       "--function", "crc32", "--vuln", "CVE-1")  # fmt: skip
    assert v.returncode == 0, v.stderr


@pytest.mark.parametrize("vid", ["CVE\n1", "CVE-1\x1b[2J", "   "], ids=["newline", "escape", "blank"])
def test_a_vulnerability_id_no_witness_can_name_is_the_inputs_error(
    tmp_path: Path, url: str, vid: str
) -> None:
    vulns = {
        "vulnerabilities": [
            {"id": vid, "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": ["crc32"]}]}
        ]
    }
    r = vex_cli(tmp_path, seeded(url), vulns)
    assert r.returncode == 2 and "vulnerabilities[0]" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").iterdir())


def test_one_vulnerability_in_two_cases_is_one_statement(tmp_path: Path, url: str) -> None:
    """``cve-2022-37434`` and ``CVE-2022-37434`` are one vulnerability (witness/store.py
    ``vulnerability_id``): one statement, named as its database writes it, and its witness verifies
    with ``--vuln`` in either case."""
    vulns = {
        "vulnerabilities": [
            {"id": vid, "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": ["crc32"]}]}
            for vid in ("cve-2022-37434", "CVE-2022-37434")
        ]
    }
    r = vex_cli(tmp_path, seeded(url), vulns)
    assert r.returncode == 0, r.stderr
    [st] = json.loads(r.stdout)["statements"]
    assert st["vulnerability"]["name"] == "CVE-2022-37434"
    [witness] = (tmp_path / "w").iterdir()
    for asked in ("cve-2022-37434", "CVE-2022-37434"):
        key = str(tmp_path / "w.pub")
        v = cli_in_process("witness", "verify", str(witness), "--key", key, "--image", IMG, "--vuln", asked)
        assert v.returncode == 0, v.stderr
