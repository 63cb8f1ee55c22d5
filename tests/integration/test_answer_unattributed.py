"""A function that ran in a file no package was attributed to is never "not called" of a package.

The agent stores a row without a purl when attribution failed for its file (no source claims
it, or no live process of the image to read it through: docs/operations.md, "rows without a
purl"). The function asked about may be exactly that row: ``inflateGetHeader`` ran in
``libz.so.1`` while zlib1g's attribution of that file failed, and zlib1g was seen loaded through
another row. Before the fix ``vex`` wrote ``not_affected`` (vulnerable_code_not_in_execute_path),
``query observed --purl`` answered "not observed" (exit 1) and ``evidence`` exit 1; now they say
under_investigation / unknown (exit 3), naming the file. The same function in a file attributed
to another package changes nothing. Real CLI (``vex``, ``query`` and ``evidence`` through its own
entry point in this process, tests/cli_run.py ``cli_in_process``), real writer, SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_in_process
from tests.integration.test_vex import (
    DAY,
    IMG,
    OPENVEX,
    PURL,
    T0,
    ZLIB,
    S,
    by_vuln,
    vex_cli,
    watched,
)

FN = "inflateGetHeader"
VULNS = {
    "vulnerabilities": [{"id": "CVE-H", "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": [FN]}]}]
}


def row(
    fn: str, kind: EvidenceKind, purl: str, *, module: str = ZLIB, day: int = 3, n: int = 7
) -> HotSymbolDelta:
    start = T0 + day * DAY
    key = HotSymbolKey(IMG, module, fn, kind)
    return HotSymbolDelta(key, start, n, start + S, start + 2 * S, purl=purl, node_name="node-1")


def filled(url: str) -> str:
    """40 days watched at EbpfDeep, zlib1g loaded, crc32 called: inflateGetHeader not_affected."""
    with open_store(url) as s:
        s.write(
            [row("", EvidenceKind.LOADED, PURL, day=0, n=1), row("crc32", EvidenceKind.INVOKED, PURL)],
            watched(),
        )
    return url


def cli(url: str, *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = cli_in_process(*argv, "--store", url, "--json")
    assert r.returncode in (0, 1, 3), r.stderr
    return r.returncode, json.loads(r.stdout)


def answers(tmp: Path, url: str) -> tuple[str, int, int]:
    """(vex status, query observed --purl exit, evidence exit) for inflateGetHeader of zlib1g."""
    r = vex_cli(tmp, url, VULNS)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    ask = ("--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", FN)
    q, _ = cli(url, "query", "observed", *ask)
    e, _ = cli(url, "evidence", *ask)
    return by_vuln(doc)["CVE-H"]["status"], q, e


def test_a_call_in_an_unattributed_file_is_never_not_affected(tmp_path: Path, url: str) -> None:
    filled(url)
    assert answers(tmp_path, url) == ("not_affected", 1, 1)  # the control
    with open_store(url) as s:  # attribution of libz.so.1 failed for the flush that held the call
        s.write([row(FN, EvidenceKind.INVOKED, "", day=12, n=5)], [])
    assert answers(tmp_path, url) == ("under_investigation", 3, 3)
    statement = by_vuln(json.loads(vex_cli(tmp_path, url, VULNS).stdout))["CVE-H"]
    assert (
        "justification" not in statement
        and f"no package was attributed to: {ZLIB}" in statement["status_notes"]
    )
    ask = ("--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", FN)
    _, q = cli(url, "query", "observed", *ask)
    assert q["answer"] == "unknown" and q["observed"] is None and q["records"] == []
    assert [(u["module"], u["invocation_count"], u["purl"]) for u in q["unattributed"]] == [(ZLIB, 5, "")]
    assert "no package was attributed to" in q["reason"]
    _, e = cli(url, "evidence", *ask)
    assert (e["reachability_state"], e["confidence"], e["rts"]["score"]) == ("PotentiallyReachable", 0.5, 0.5)
    assert "ran 5 times in files no package was attributed to" in e["reason"]
    # without --purl the question is the function in any file: observed
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", FN)
    assert (code, doc["answer"]) == (0, "observed")


def test_the_same_name_in_another_package_changes_nothing(tmp_path: Path, url: str) -> None:
    filled(url)
    with open_store(url) as s:  # a vendored copy in another package's file: not zlib1g's code
        s.write([row(FN, EvidenceKind.INVOKED, "pkg:deb/debian/other@1", module="/usr/lib/libother.so")], [])
    assert answers(tmp_path, url) == ("not_affected", 1, 1)


def test_an_unattributed_call_outside_the_period_asked_about_changes_nothing(url: str) -> None:
    filled(url)
    with open_store(url) as s:
        s.write([row(FN, EvidenceKind.INVOKED, "", day=12, n=5)], [])
    ask = ("--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", FN)
    code, doc = cli(url, "query", "observed", *ask, "--since", "2026-06-20T00:00:00Z")
    assert (code, doc["answer"], doc.get("unattributed")) == (1, "not_observed", None)
    code, doc = cli(url, "query", "observed", *ask, "--since", "2026-06-13T00:00:00Z")  # day 12 is June 13
    assert (code, doc["answer"]) == (3, "unknown")
