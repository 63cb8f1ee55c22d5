"""``stella-runtime vex``: never not_affected while the package's code ran under no name.

A frame in the affected package's file that no symbol named (a stripped library without its
debug file) is stored as ``0x<offset>`` (store/unnamed.py). The vulnerable function may be that
code, so the statement is under_investigation, naming the file, where the same store without
that row gives not_affected; a function found by name still makes it affected. The real CLI (its
own entry point in this process) over a store written by the real writer (tests/integration/
test_vex.py's helpers).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import VULNS, ZLIB, by_vuln, delta, run_vex, store


def test_code_under_no_name_is_never_not_affected(tmp_path: Path) -> None:
    url = store(tmp_path, range(40))
    assert by_vuln(run_vex(tmp_path, url))["CVE-NEVER"]["status"] == "not_affected"  # the control
    with open_store(url) as s:
        s.write([delta("0x1a2b0", 20, 37, EvidenceKind.ON_STACK)], [])
    s = by_vuln(run_vex(tmp_path, url))
    never = s["CVE-NEVER"]
    assert never["status"] == "under_investigation" and "justification" not in never
    assert "no call of inflateGetHeader found by name" in never["status_notes"]
    assert f"ran under no name in {ZLIB}" in never["status_notes"]
    assert s["CVE-RAN"]["status"] == "affected"  # crc32 was found by name
    assert len(VULNS["vulnerabilities"]) == len(s)


def test_unnamed_code_of_another_package_changes_nothing(tmp_path: Path) -> None:
    url = store(tmp_path, range(40))
    other = delta("0x99", 20, 5, EvidenceKind.ON_STACK)
    key = dataclasses.replace(other.key, module="/usr/lib/libother.so")
    with open_store(url) as s:
        s.write([dataclasses.replace(other, key=key, purl="pkg:deb/debian/other@1")], [])
    assert by_vuln(run_vex(tmp_path, url))["CVE-NEVER"]["status"] == "not_affected"


def test_evidence_keeps_the_neutral_score_and_answers_unknown(tmp_path: Path) -> None:
    """``stella-runtime evidence`` for a function not found by name while the package's code ran
    under no name: PotentiallyReachable at RTS 0.50 (never the 0.20 of a long watch), exit 3."""
    from tests.integration.test_evidence_store import calls, evidence, fill, loaded, window

    url = f"sqlite:///{tmp_path}/hot.db"
    fill(url, [loaded()], [window(d) for d in range(40)])
    code, doc = evidence(url, "inflateGetHeader")
    assert (code, doc["rts"]["score"]) == (1, 0.20)  # the control: 40 days watched, no call
    fill(url, [calls("0x1a2b0", 12, 9, kind=EvidenceKind.ON_STACK)], [])
    code, doc = evidence(url, "inflateGetHeader")
    assert code == 3
    assert (doc["reachability_state"], doc["confidence"], doc["rts"]["score"]) == (
        "PotentiallyReachable",
        0.5,
        0.5,
    )
    assert "ran 9 times under no name" in doc["rts"]["scenario"] and "cannot be ruled out" in doc["reason"]
