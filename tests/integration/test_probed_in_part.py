"""A function the PURL probes watch in part (its split tail unprobed) is never answered "not observed".

The agent's half: the resolution reports each split tail (``adler32.part.0``) a probed file defines
beside the function, with the file's build-id (native/purl_targets.py), and the pipeline hands each
(image, file, tail) to the store once as a 0-call ``unprobed`` row (agent/unprobed.py). The
answers' half: ``query observed`` by name or by function ID of that build says unknown naming the
tail (evidence/probed_in_part.py), and no listing shows the row as a call. The whole path, real
agent and BPF probes, is tests/integration/test_agent_purl_part_clone.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.agent.unprobed import UnprobedTails
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.native import purl_targets as pt
from stellaops_runtime.native.purl_wiring import PurlWiring
from stellaops_runtime.store.batches import Batch, batch_from_json, batch_to_json
from stellaops_runtime.store.engine import open_store
from tests.integration.test_answer_unattributed import cli
from tests.integration.test_native_purl_clones import PURL as ZPURL
from tests.integration.test_native_purl_clones import _root
from tests.integration.test_vex import DAY, IMG, PURL, T0, ZLIB, S, watched
from tests.node_alive import ALIVE_IMAGE

BID = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("stored", "tail"),
    [
        ("crc32.part.0", True),
        ("crc32.part.1", True),
        ("crc32.isra.0.part.0", True),
        ("crc32.part.0.isra.0", True),
        ("crc32(int) (.part.0)", False),  # a C++ name's tail is of ``crc32(int)``, not ``crc32``
        ("crc32.part.0.cold", False),  # no call enters a cold part
        ("crc32.cold", False),
        ("crc32.isra.0", False),  # an entry clone: probed itself
        ("crc32x.part.0", False),
        ("crc32", False),
    ],
)
def test_which_clones_are_split_tails(stored: str, tail: bool) -> None:
    assert pt.split_tail_of(stored, "crc32") is tail
    assert pt.split_tail_of("f(int) (.part.0)", "f(int)")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_the_resolution_reports_the_unprobed_tail_with_its_file_s_build_id(tmp_path: Path) -> None:
    proc, funcs = _root(tmp_path)
    assert {"adler32", "adler32.part.0", "crc32.isra.0"} <= set(funcs), funcs  # gcc -O2's split (premise)
    lib = "/usr/lib/x86_64-linux-gnu/libz.so.1"
    with open(f"{proc}/1/root{lib}", "rb") as f:
        note = ELFFile(f).get_section_by_name(".note.gnu.build-id")
        bid = next(iter(note.iter_notes()))["n_desc"]  # type: ignore[union-attr]
    plan = pt.PurlProbePlan(proc_root=proc)
    try:
        reports = {r.symbol: r for r in plan.add("c1", 1, ZPURL, ["crc32", "adler32"])}
        assert reports["adler32"].unprobed == [pt.UnprobedTail(lib, "adler32.part.0", bid)]
        assert reports["crc32"].unprobed == []  # its entry clone is probed; it has no tail
        wiring = PurlWiring.__new__(PurlWiring)
        wiring._reports = {("p", ZPURL, s): [r] for s, r in reports.items()}
        installed = reports["adler32"].packages[0]
        assert wiring.unprobed({"c1": IMG}) == {(IMG, lib, "adler32.part.0"): (bid, installed)}
        assert wiring.unprobed({}) == {}  # a container of no known image: no fact
    finally:
        plan.close()


SPLIT_ONLY = r"""
#include <stdio.h>
#include <string.h>
static unsigned only_fn(unsigned crc, const char *p) { if (!p) return crc;
  for (size_t i = 0; i < strlen(p); ++i) { crc = crc * 31 + p[i];
    if (crc == 0xdeadbeefu) { fprintf(stderr, "big %u\n", crc); crc = 0; } }
  if (crc == 7u) fprintf(stderr, "seven\n"); return crc; }
unsigned use_only(int argc, char **argv) { return only_fn(1, argv[0]) + only_fn(2, argc > 3 ? argv[1] : 0); }
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_function_left_only_as_its_split_tail_is_a_fact_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gcc -O2 inlines a static function's head into every caller and keeps only ``only_fn.part.0``:
    nothing is probed (not_in_package) while every call but an early return runs the tail. Seen
    failing before the fix: no fact, so the answer said not_observed."""
    import tests.integration.test_native_purl_clones as clones

    monkeypatch.setattr(clones, "PROGRAM", clones.PROGRAM + SPLIT_ONLY)
    proc, funcs = _root(tmp_path)
    assert "only_fn.part.0" in funcs and "only_fn" not in funcs, funcs  # the premise
    plan = pt.PurlProbePlan(proc_root=proc)
    try:
        (r,) = plan.add("c1", 1, ZPURL, ["only_fn"])
        assert r.status == pt.NOT_IN_PACKAGE and not plan.targets()
        assert [t.symbol for t in r.unprobed] == ["only_fn.part.0"]
        wiring = PurlWiring.__new__(PurlWiring)
        wiring._reports = {("p", ZPURL, "only_fn"): [r]}
        assert list(wiring.unprobed({"c1": IMG})) == [
            (IMG, "/usr/lib/x86_64-linux-gnu/libz.so.1", "only_fn.part.0")
        ]
    finally:
        plan.close()


def test_each_fact_is_handed_over_once_as_a_row_of_no_calls() -> None:
    tails = UnprobedTails()
    assert tails.deltas(node_name="n1", now_ns=T0 + 90 * S, window_seconds=60) == []
    tails.current = {(IMG, ZLIB, "crc32.part.0"): (BID, PURL)}
    (d,) = tails.deltas(node_name="n1", now_ns=T0 + 90 * S, window_seconds=60)
    assert d.key == HotSymbolKey(IMG, ZLIB, "crc32.part.0", EvidenceKind.UNPROBED)
    assert (d.invocation_count, d.window_start_ns, d.build_id, d.purl, d.node_name) == (
        0,
        T0 + 60 * S,
        BID,
        PURL,
        "n1",
    )
    assert tails.deltas(node_name="n1", now_ns=T0 + 200 * S, window_seconds=60) == []  # sent already
    tails.current = {**tails.current, (IMG, ZLIB, "inflate.part.0"): (BID, PURL)}  # a reload adds one
    assert [x.key.function_name for x in tails.deltas(node_name="n1", now_ns=T0, window_seconds=60)] == [
        "inflate.part.0"
    ]
    # the spool's JSON keeps the kind (an agent restarted replays it)
    again = batch_from_json(batch_to_json(Batch("a/1", 1, [d])))
    assert again.units == [d]


def _row(fn: str, kind: EvidenceKind, n: int, *, bid: str = BID) -> HotSymbolDelta:
    start = T0 + 3 * DAY
    key = HotSymbolKey(IMG, ZLIB, fn, kind)
    return HotSymbolDelta(key, start, n, start + S, start + S, build_id=bid, purl=PURL, node_name="node-1")


def test_an_answer_about_a_function_probed_in_part_is_unknown(tmp_path: Path, url: str) -> None:
    """Seen failing before the fix: ``crc32`` (and its function ID) answered not_observed, exit 1."""
    with open_store(url) as s:
        s.write([_row("adler32", EvidenceKind.INVOKED, 5)], watched())  # 40 days at EbpfDeep, gap-free
        # the fact as the agent writes it: a frozen batch through the flush ledger
        done = s.write_batch(Batch("node-1/agent", 1, [_row("crc32.part.0", EvidenceKind.UNPROBED, 0)]))
        assert not done.errors, done
    for fn in ("crc32", f"{BID}:crc32+0x0"):
        for purl in ((), ("--purl", "pkg:deb/debian/zlib1g")):
            code, doc = cli(url, "query", "observed", "--image", IMG, "--function", fn, *purl)
            assert (code, doc["answer"]) == (3, "unknown"), (fn, doc)
            assert "probed in part" in doc["reason"] and "crc32.part.0 in " + ZLIB in doc["reason"], doc
            assert [r["function_name"] for r in doc["probed_in_part"]] == ["crc32.part.0"]
    # the Evidence document keeps the neutral score and exits 3 on it too (evidence/doubts.py)
    code, doc = cli(url, "evidence", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "crc32")
    assert code == 3 and "crc32.part.0" in str(doc), doc
    # another function, another build of the file, another package: the fact is not theirs
    for fn, purl in (
        ("crc3", ()),
        ("inflate", ()),
        (f"{'f' * 40}:crc32+0x0", ()),
        ("crc32", ("--purl", "pkg:deb/debian/libpng16-16")),
    ):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", fn, *purl)
        assert "probed_in_part" not in doc or not doc["probed_in_part"], (fn, doc)
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "inflate")
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    # a fact of no package (attribution could not tell the tail's file's) may be any package's
    with open_store(url) as s:
        nopkg = _row("inflate.part.0", EvidenceKind.UNPROBED, 0)
        nopkg.purl = ""
        assert not s.write_batch(Batch("node-1/agent", 2, [nopkg])).errors
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "inflate", "--purl", PURL)
    assert (code, doc["answer"]) == (3, "unknown") and "inflate.part.0" in doc["reason"], doc
    # no listing takes the fact for a call
    code, doc = cli(url, "query", "hot", "--image", IMG)
    assert "crc32.part.0" not in str(doc), doc
    code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g")
    assert "crc32.part.0" not in str(doc) and "adler32" in str(doc), doc


def test_no_function_of_a_package_probed_in_part_is_not_a_no(tmp_path: Path, url: str) -> None:
    """``query functions`` (and ``hot``) with nothing to list: "no function of the package ran" is
    as false as "crc32 did not run" when crc32's tail ran unprobed. Seen failing before the fix:
    not_observed, exit 1 (the fact row made the package seen)."""
    with open_store(url) as s:
        s.write([], watched())
        done = s.write_batch(Batch("node-1/agent", 1, [_row("crc32.part.0", EvidenceKind.UNPROBED, 0)]))
        assert not done.errors, done
    for ask in (
        ("functions", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g"),
        ("functions", "--image", IMG, "--purl", "pkg:deb/debian/zlib", "--prefix"),
        ("hot", "--image", IMG),
    ):
        code, doc = cli(url, "query", *ask)
        assert (code, doc["answer"]) == (3, "unknown"), (ask, doc)
        assert "crc32.part.0" in doc["reason"] and doc["probed_in_part_count"] == 1, (ask, doc)
    code, doc = cli(url, "query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/libpng", "--prefix")
    assert "probed_in_part" not in doc, doc  # another package's prefix: not this fact


def test_a_fact_the_store_refused_still_forbids_a_no(tmp_path: Path, url: str) -> None:
    """A fact whose row the database refuses (its file's path not UTF-8, as the agent decodes it;
    quarantined_rows) is the only record of the tail: the ``refused`` doubt skipped it for its 0
    calls, and for any period after the moment it was sent. Seen failing before the fix:
    not_observed, exit 1."""
    with open_store(url) as s:
        s.write([_row("adler32", EvidenceKind.INVOKED, 5)], watched())
        fact = _row("crc32.part.0", EvidenceKind.UNPROBED, 0)
        fact.key = HotSymbolKey(IMG, "/usr/lib/libz\udcff.so.1", "crc32.part.0", EvidenceKind.UNPROBED)
        assert s.write_batch(Batch("node-1/agent", 1, [fact])).quarantined == 1
    for period in ((), ("--since", "2026-07-01T00:00:00Z", "--until", "2026-07-09T00:00:00Z")):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "crc32", *period)
        assert (code, doc["answer"]) == (3, "unknown") and "crc32.part.0" in str(doc["refused"]), doc
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "inflate")
    assert (code, doc["answer"]) == (1, "not_observed"), doc  # another function: not its fact


def test_query_images_takes_no_fact_for_an_observation(url: str) -> None:
    """An image whose only rows are facts is watched with nothing observed (or known by its gaps
    alone), its ROWS and FUNCTIONS 0. Seen failing before the fix: "observed", 1 function row, and
    the gaps of an image known only by them were not named."""
    gapped = "sha256:" + "b" * 64
    start = T0 + DAY
    gap = ObservationWindow(gapped, "node-1", start, 0, None, 60, "tetragon", start, start + 60 * S, 2)
    other = _row("crc32.part.0", EvidenceKind.UNPROBED, 0)
    other.key = HotSymbolKey(gapped, ZLIB, "crc32.part.0", EvidenceKind.UNPROBED)
    with open_store(url) as s:
        s.write([], [*watched(), gap])
        facts = [_row("crc32.part.0", EvidenceKind.UNPROBED, 0), other]
        assert not s.write_batch(Batch("node-1/agent", 1, facts)).errors
    code, doc = cli(url, "query", "images")
    assert code == 0, doc
    by_image = {i["image"]: i for i in doc["images"]}
    seen = {k: (v["state"], v["hot_symbol_rows"], v["function_rows"]) for k, v in by_image.items()}
    assert seen == {
        IMG: ("watched_nothing_observed", 0, 0),
        gapped: ("gaps_only", 0, 0),
        ALIVE_IMAGE: ("watched_nothing_observed", 0, 0),  # watched()'s later record of node-1
    }, doc
    assert by_image[gapped]["gaps"], doc
    with open_store(url) as s:
        s.write([_row("adler32", EvidenceKind.INVOKED, 5)], [])
    _, doc = cli(url, "query", "images")
    mine = next(i for i in doc["images"] if i["image"] == IMG)
    assert (mine["state"], mine["hot_symbol_rows"], mine["function_rows"]) == ("observed", 1, 1), doc


def test_a_cxx_function_s_fact_is_stored_under_its_canonical_name(url: str) -> None:
    """The resolution reads the tail's symbol as the file spells it (``_Z5crc32i.part.0``); calls are
    stored under the canonical name (``crc32(int)``, its clone ``crc32(int) (.isra.0)``: the
    canonicalizer's function IDs), and the questions match that. Seen failing before the fix: the
    fact stored mangled, ``crc32(int)`` and ``crc32`` answered not_observed (exit 1)."""
    tails = UnprobedTails()
    tails.current = {(IMG, ZLIB, "_Z5crc32i.part.0"): (BID, PURL)}
    (d,) = tails.deltas(node_name="node-1", now_ns=T0 + 3 * DAY, window_seconds=60)
    with open_store(url) as s:
        s.write([_row("adler32", EvidenceKind.INVOKED, 5)], watched())
        assert not s.write_batch(Batch("node-1/agent", 1, [d])).errors
    for fn in ("crc32(int)", "crc32", "_Z5crc32i", f"{BID}:crc32(int)+0x0"):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", fn, "--purl", PURL)
        assert (code, doc["answer"]) == (3, "unknown"), (fn, doc)
        assert "crc32(int) (.part.0)" in doc["reason"], (fn, doc)
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "crc32(long)")
    assert (code, doc["answer"]) == (1, "not_observed"), doc  # another overload: not its tail
