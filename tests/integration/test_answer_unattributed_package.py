"""A package-level "no function ran" is never said while functions of the image went unattributed.

``query functions --purl X`` (and ``--prefix``) asks whether any function of package X ran in the
image. A function whose row has no purl (its file's attribution failed for that flush, a Rust
crate with a renamed library, a fat JAR with ambiguous coordinates, a Go function of no module:
docs/attribution.md) may be X's: zlib1g was seen loaded through another row, and
``inflateGetHeader`` ran in ``libz.so.1`` while that file's attribution failed. Before the fix
the answer was "no functions of package ... observed" (exit 1), as if none of zlib1g's code ran;
now it is unknown (exit 3) with the ``unattributed`` doubt the function-level question gives,
naming the file. A file row of no package (no call), a call of another package and a call in
another image change nothing. Real CLI as a subprocess, real writer, SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_unattributed import cli, row
from tests.integration.test_vex import IMG, PURL, ZLIB, watched

ASK = ("query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g")


def loaded(url: str) -> None:
    """40 days watched at EbpfDeep, zlib1g loaded, none of its functions attributed to it."""
    with open_store(url) as s:
        s.write([row("", EvidenceKind.LOADED, PURL, day=0, n=1)], watched())


def test_an_unattributed_call_makes_no_functions_of_a_package_unknown(url: str) -> None:
    loaded(url)
    assert cli(url, *ASK)[0] == 1  # the control: watched, nothing of zlib1g ran
    with open_store(url) as s:  # attribution of libz.so.1 failed for the flush that held the call
        s.write([row("inflateGetHeader", EvidenceKind.INVOKED, "", day=12, n=5)], [])
    code, doc = cli(url, *ASK)
    assert (code, doc["answer"], doc["functions"]) == (3, "unknown", [])
    assert [(u["module"], u["function_name"], u["invocation_count"]) for u in doc["unattributed"]] == [
        (ZLIB, "inflateGetHeader", 5)
    ]
    assert (
        f"1 function of the image ran 5 times in files no package was attributed to: {ZLIB}" in doc["reason"]
    )
    code, doc = cli(url, *ASK[:-1], "pkg:deb/debian/zlib", "--prefix")
    assert (code, doc["answer"], len(doc["unattributed"])) == (3, "unknown", 1)


def test_no_call_of_no_package_in_the_image_changes_nothing(url: str) -> None:
    loaded(url)
    call = row("inflate", EvidenceKind.INVOKED, "")
    elsewhere = dataclasses.replace(
        call, key=dataclasses.replace(call.key, image_digest="sha256:" + "e" * 64)
    )
    with open_store(url) as s:
        s.write(
            [
                row(
                    "", EvidenceKind.LOADED, "", module="/opt/blob.so", day=3
                ),  # a file of no package, no call
                row("deflate", EvidenceKind.INVOKED, "pkg:deb/debian/other@1", module="/usr/lib/libo.so"),
                elsewhere,  # the same call in another image
            ],
            [],
        )
    code, doc = cli(url, *ASK)
    assert (code, doc["answer"], doc.get("unattributed")) == (1, "not_observed", None)
