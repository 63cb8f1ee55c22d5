"""A function whose code ran in a GCC clone of it is a function that ran.

The agent keeps compiler clone suffixes (docs/function-ids.md: a clone is separate code with
its own start), so a sampled stack in ``deflate_stored.isra.0`` (a specialised copy GCC calls
instead of the function), ``inflateGetHeader.part.0`` (its outlined tail) or
``inflateGetHeader.cold`` (its cold path) is stored under that name. Asked by name, the function
matched none of them: an image whose only calls of it ran in a clone answered "not observed"
(exit 1) and ``vex`` said not_affected. A name now also matches its clones (``.cold``,
``.part.N``, ``.isra.N``, ``.constprop.N``, ``.lto_priv.N``, ``.clone.N``, ``.hot``, ``.warm``,
C++ ``f(int) (.isra.0)``), and a numbered copy alone (``hash.1``: LLVM's rename of a second
static ``hash`` when modules are linked, GCC's nested functions ``inner.0``: a function named so
in the source, as GCC's LTO rename ``hash.lto_priv.1`` is; tests/integration/
test_clone_names_compiled.py reads the names from real builds). The real CLI's own entry point in
this process (tests/cli_run.py ``cli_in_process``), SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_unattributed import cli
from tests.integration.test_vex import DAY, IMG, OPENVEX, PURL, T0, ZLIB, S, by_vuln, vex_cli, watched

POCO = "/usr/lib/x86_64-linux-gnu/libPocoNet.so.80"
POCO_PURL = "pkg:deb/debian/libpoconet80@1.12.4-1?arch=amd64"


def row(module: str, fn: str, purl: str, n: int) -> HotSymbolDelta:
    start = T0 + 3 * DAY
    key = HotSymbolKey(IMG, module, fn, EvidenceKind.ON_STACK)
    return HotSymbolDelta(key, start, n, start + S, start + 2 * S, purl=purl, node_name="node-1")


def test_a_call_in_a_clone_is_a_call_of_the_function(tmp_path: Path, url: str) -> None:
    with open_store(url) as s:
        s.write(
            [
                row(ZLIB, "deflate_stored.isra.0", PURL, 4),
                row(ZLIB, "inflateGetHeader.part.0", PURL, 2),
                row(ZLIB, "inflateGetHeader.cold", PURL, 1),
                row(ZLIB, "hash.1", PURL, 9),
                row(POCO, "Poco::Net::HTTPRequest::read(std::istream&) (.isra.0)", POCO_PURL, 6),
            ],
            watched(),  # 40 days at EbpfDeep, gap-free
        )
    for fn, n in (
        ("deflate_stored", 4),
        ("inflateGetHeader", 2),  # on a stack: the busiest kind's count, one call seen per clone row
        ("hash", 9),  # before the fix "not observed" (exit 1)
        ("Poco::Net::HTTPRequest::read(std::istream&)", 6),
    ):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", fn)
        assert (code, doc["answer"]) == (0, "observed"), (fn, doc)
        assert sum(r["invocation_count"] for r in doc["records"]) >= n, doc
    code, doc = cli(
        url, "evidence", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "deflate_stored"
    )
    assert (code, doc["reachability_state"], doc["data"]["invocation_count"]) == (0, "DynamicReachable", 4)
    vulns = {"vulnerabilities": [{"id": "CVE-C", "affected": [
        {"purl": "pkg:deb/debian/zlib1g", "functions": ["inflateGetHeader"]}]}]}  # fmt: skip
    r = vex_cli(tmp_path, url, vulns)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    OPENVEX.validate(doc)
    assert by_vuln(doc)["CVE-C"]["status"] == "affected"
    # A longer name that starts the same, or a clone's name cut short, is not matched.
    for fn in ("deflate_store", "inflateGetHeader.part", "has"):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", fn)
        assert (code, doc["answer"]) == (1, "not_observed"), (fn, doc)


BID = "1f95d5498d283b79505861523e20b3db2afdf518"


def test_a_function_asked_by_its_id_ran_in_its_clones_of_that_build(tmp_path: Path, url: str) -> None:
    """A function ID ``<build-id>:crc32+0x0`` (static analysis names the source function so, the clone
    suffix stripped: docs/function-ids.md) while its body ran only as ``crc32.part.0`` and
    ``crc32.isra.0.cold`` of that build, stored under their own IDs or by name and build: "not
    observed" (exit 1) and PotentiallyReachable before the fix. Another build's clone, a longer
    name, or a clone's name cut short are not the function."""

    def clone(fn: str, n: int, build: str = BID, with_id: bool = True, module: str = ZLIB) -> HotSymbolDelta:
        fid = f"{build}:{fn}+0x0" if with_id else ""
        return dataclasses.replace(row(module, fn, PURL, n), build_id=build, function_id=fid)

    with open_store(url) as s:
        s.write(
            [
                clone("crc32.part.0", 5),
                clone("crc32.isra.0.cold", 2, with_id=False),
                # another build's, at another path (one path holding two builds is a file replaced
                # in place, whose rows may hold either's calls: test_answer_replaced_in_place.py)
                clone("adler32.constprop.0", 7, build="ab" * 20, module="/opt/z/libz.so.1"),
                clone("inflate_fastx.part.0", 3),  # another name
                clone("inflate_fast.resolver", 3),  # an ifunc resolver runs no code of inflate_fast
            ],
            watched(),
        )
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", f"{BID.upper()}:crc32+0x0")
    assert (code, doc["answer"]) == (0, "observed"), doc
    assert sorted((r["function_name"], r["invocation_count"]) for r in doc["records"]) == [
        ("crc32.isra.0.cold", 2),
        ("crc32.part.0", 5),
    ]
    code, doc = cli(
        url, "evidence", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", f"{BID}:crc32+0x0"
    )
    assert (code, doc["reachability_state"]) == (0, "DynamicReachable"), doc
    for fn in (f"{BID}:adler32+0x0", f"{BID}:inflate_fast+0x0", f"{BID}:crc3+0x0", f"{BID}:crc32.part+0x0"):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", fn)
        assert (code, doc["answer"]) == (1, "not_observed"), (fn, doc)
