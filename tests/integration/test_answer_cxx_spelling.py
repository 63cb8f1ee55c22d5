"""A C++ function asked with its parameter list spelled with other spaces is the same function.

The agent stores the demangler's spelling, ``Poco::Net::HTTPRequest::read(std::istream&)``;
advisories and people write ``read(std::istream &)`` or ``read( std::istream& )``. Matched
exactly, such a name matched nothing, and an image that called the function every day answered
"not observed" (exit 1) and ``vex`` said not_affected. Spaces are now read away on both sides for
a name with a parameter list (never inside a name: ``unsigned int`` stays two words on both
sides, so no other function matches). The real CLI's own entry point in this process
(tests/cli_run.py ``cli_in_process``), SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_unattributed import cli
from tests.integration.test_vex import DAY, IMG, OPENVEX, T0, S, by_vuln, vex_cli, watched

POCO = "/usr/lib/x86_64-linux-gnu/libPocoNet.so.80"
PURL = "pkg:deb/debian/libpoconet80@1.12.4-1?arch=amd64"
STORED = "Poco::Net::HTTPRequest::read(std::istream&)"


def filled(url: str) -> str:
    start = T0 + 3 * DAY
    key = HotSymbolKey(IMG, POCO, STORED, EvidenceKind.ON_STACK)
    row = HotSymbolDelta(key, start, 5, start + S, start + 2 * S, purl=PURL, node_name="node-1")
    with open_store(url) as s:
        s.write([row], watched())  # 40 days at EbpfDeep, gap-free
    return url


def test_spaces_in_a_parameter_list_name_the_same_function(tmp_path: Path, url: str) -> None:
    filled(url)
    for spelled in (
        "Poco::Net::HTTPRequest::read(std::istream &)",
        "Poco::Net::HTTPRequest::read( std::istream& )",
    ):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", spelled)
        assert (code, doc["answer"], [r["function_name"] for r in doc["records"]]) == (
            0,
            "observed",
            [STORED],
        )
        code, doc = cli(url, "evidence", "--image", IMG, "--purl", PURL, "--function", spelled)
        assert (code, doc["reachability_state"], doc["data"]["invocation_count"]) == (
            0,
            "DynamicReachable",
            5,
        )
    vulns = {"vulnerabilities": [{"id": "CVE-S", "affected": [
        {"purl": "pkg:deb/debian/libpoconet80", "functions": ["Poco::Net::HTTPRequest::read(std::istream &)"]}
    ]}]}  # fmt: skip
    r = vex_cli(tmp_path, url, vulns)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    assert by_vuln(doc)["CVE-S"]["status"] == "affected"
    # Another parameter list is another overload: still not observed.
    code, doc = cli(
        url, "query", "observed", "--image", IMG, "--function", "Poco::Net::HTTPRequest::read(int &)"
    )
    assert (code, doc["answer"]) == (1, "not_observed")
