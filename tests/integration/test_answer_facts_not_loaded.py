"""A fact row is no sign that its package was loaded: answers never say so because of one.

An ``unprobed`` tail (agent/unprobed.py: the PURL probes resolved the package's file in the image's
root, where it may never have been loaded) and a ``listed`` JAR (agent/listed_jars.py: a path the
package's database lists) are 0-call rows of a package's purl. Any row of the purl made the package
"seen": in a store whose only row of zlib was such a fact, ``evidence`` of ``inflate`` said
"package loaded, function not observed" (RTS 0.20 after a long window), ``query observed --purl``
said not_observed (exit 1), and ``vex`` said not_affected, where with no row of zlib they said
"never seen loaded" (defer; unknown; under_investigation) (review RNP3, brief F4 item 4). Now only
a row of code (a file mapped, a function seen) makes the package loaded; the facts keep their own
answers (the tail's function is unknown, evidence/probed_in_part.py). Seen failing before the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_unattributed import cli
from tests.integration.test_vex import DAY, IMG, PURL, T0, ZLIB, S, statements, watched

JNI = "pkg:deb/debian/libstella-jni@1.0?arch=amd64"
BID = "0123456789abcdef0123456789abcdef01234567"


def _fact(module: str, fn: str, kind: EvidenceKind, purl: str, n: int = 0) -> HotSymbolDelta:
    start = T0 + 3 * DAY
    return HotSymbolDelta(HotSymbolKey(IMG, module, fn, kind), start, n, start + S, start + S, purl=purl,
                          node_name="node-1")  # fmt: skip


def _filled(url: str, *, loaded: bool = False) -> str:
    """40 gap-free days at EbpfDeep; of zlib only its tail's fact (and, with ``loaded``, its file
    mapped), of the JNI package only its listed JAR."""
    rows = [_fact(ZLIB, "crc32.part.0", EvidenceKind.UNPROBED, PURL)]
    rows.append(_fact("/usr/share/java/stella.jar", "", EvidenceKind.LISTED, JNI))
    with open_store(url) as s:
        s.write([_fact(ZLIB, "", EvidenceKind.LOADED, PURL, 1)] if loaded else [], watched())
        done = s.write_batch(Batch("node-1/agent", 1, rows))  # the facts as the agent writes them
        assert not done.errors and not done.quarantined, done
    return url


def test_a_package_of_facts_only_was_never_seen_loaded(url: str) -> None:
    _filled(url)
    ask = ("--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "inflate")
    code, doc = cli(url, "evidence", *ask)
    assert "package loaded" not in str(doc) and "never seen loaded" in str(doc), doc
    code, doc = cli(url, "query", "observed", *ask)
    assert (code, doc["answer"]) == (3, "unknown") and "never seen loaded" in doc["reason"], doc
    assert "facts" in doc["reason"], doc["reason"]  # says what is stored of it
    code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/libstella-jni")
    assert (code, doc["answer"]) == (3, "unknown") and "never seen loaded" in doc["reason"], doc
    code, doc = cli(url, "query", "observed", *ask[:4], "--function", "crc32")
    assert (code, doc["answer"]) == (3, "unknown") and doc["probed_in_part_count"] == 1, doc  # its own doubt


def test_a_package_seen_loaded_beside_its_facts_keeps_its_answer(url: str) -> None:
    _filled(url, loaded=True)
    ask = ("--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "inflate")
    code, doc = cli(url, "evidence", *ask)
    assert "package loaded" in str(doc), doc
    code, doc = cli(url, "query", "observed", *ask)
    assert (code, doc["answer"]) == (1, "not_observed"), doc


@pytest.mark.parametrize("loaded", [False, True])
def test_vex_says_not_affected_only_of_a_package_seen_loaded(tmp_path: Path, loaded: bool) -> None:
    url = _filled(f"sqlite:///{tmp_path}/hot.db", loaded=loaded)
    vulns = {
        "vulnerabilities": [
            {"id": "CVE-Z", "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": ["inflate"]}]}
        ]
    }
    st = statements(tmp_path, url, vulns)["CVE-Z"]
    if loaded:
        assert st["status"] == "not_affected", st
    else:
        assert st["status"] == "under_investigation" and "never seen loaded" in st["status_notes"], st


def test_a_build_known_only_by_a_fact_was_never_seen_loaded(url: str) -> None:
    """A function ID of the build an ``unprobed`` fact carries (the PURL probes resolved the file in
    the image's root): the build is in the image, but no file of it was seen mapped, so "not
    observed" about a function of it said nothing the fact supports (review RNP3: ``file_not_seen``
    read any row's build-id). Seen failing before the fix: not_observed, exit 1."""
    fact = _fact(ZLIB, "crc32.part.0", EvidenceKind.UNPROBED, PURL)
    fact.build_id = BID
    with open_store(url) as s:
        s.write([], watched())
        assert not s.write_batch(Batch("node-1/agent", 1, [fact])).errors
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", f"{BID}:inflate+0x0")
    assert (code, doc["answer"]) == (3, "unknown") and BID in doc["reason"], doc
    loaded = _fact(ZLIB, "", EvidenceKind.LOADED, PURL, 1)
    loaded.build_id = BID
    with open_store(url) as s:
        s.write([loaded], [])
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", f"{BID}:inflate+0x0")
    assert (code, doc["answer"]) == (1, "not_observed"), doc  # the build seen mapped: the windows decide
