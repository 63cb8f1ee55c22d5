"""``query functions --prefix`` finds a name's ``/`` in either spelling: no "not observed" of a
function that ran, stored under the spelling the prefix does not use.

Since d94a72f a package name holding ``/`` is stored ``pkg:generic/a%2Fb@1``; rows an earlier
version stored keep ``pkg:generic/a/b@1``, and a row keeps the purl it was first written with
(the writer fills an empty purl only). A store upgraded in place so holds both spellings of one
package: the file's ``loaded`` row under one, a function that ran under the other. A prefix
compared as raw text found the package (its ``loaded`` row) but not the function, and answered
"no functions ... observed, under observation": a function that ran, "not observed". A ``%2F``
is now read as ``/`` on both sides (store/refs.py ``purl_prefixed``), in the listing and in the
doubts (the unprobed split tails of evidence/probed_in_part.py too). SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.native.host_tails import host_tails
from stellaops_runtime.store import queries
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.refs import purl_prefixed
from tests.integration.test_probed_in_part_host import _host_program
from tests.integration.test_vex import DAY, IMG, T0, S, watched

NEW, OLD = "pkg:generic/a%2Fb@1", "pkg:generic/a/b@1"  # one package: as written now, and before d94a72f
ONE, TWO = "/usr/lib/ab/libone.so.1", "/usr/lib/ab/libtwo.so.1"
LOADED, INVOKED, UNPROBED = EvidenceKind.LOADED, EvidenceKind.INVOKED, EvidenceKind.UNPROBED


def _row(module: str, fn: str, kind: EvidenceKind, day: int, purl: str) -> HotSymbolDelta:
    start = T0 + day * DAY
    calls = 4 if kind == INVOKED else 0
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, module, fn, kind), window_start_ns=start, invocation_count=calls,
        first_seen_ns=start + S, last_seen_ns=start + 2 * S, purl=purl, node_name="node-1",
    )  # fmt: skip


def test_a_prefix_reads_a_names_slash_in_either_spelling() -> None:
    for prefix in (
        "pkg:generic/a/b",
        "pkg:generic/a%2Fb",
        "pkg:generic/a%2fb",
        "pkg:generic/a/",
        "pkg:generic/a%2F",
    ):
        assert purl_prefixed(NEW, prefix) and purl_prefixed(OLD, prefix), prefix
    for prefix in ("pkg:generic/a/c", "pkg:generic/a%2Fc", "pkg:npm/a/b", "pkg:generic/b"):
        assert not purl_prefixed(NEW, prefix) and not purl_prefixed(OLD, prefix), prefix
    assert purl_prefixed(NEW, "pkg:generic/a%2")  # raw text still: a prefix ending inside an escape
    assert purl_prefixed("pkg:generic/a%252Fb@1", "pkg:generic/a%25") and not purl_prefixed(
        "pkg:generic/a%252Fb@1", "pkg:generic/a/"
    )  # a name's literal "%2F" (%252F) is no "/"


@pytest.mark.parametrize(
    ("rows", "prefix"),
    [
        # loaded before the upgrade (old spelling), F first ran after it (new), asked as before
        ([_row(ONE, "", LOADED, 3, OLD), _row(ONE, "F", INVOKED, 20, NEW)], "pkg:generic/a/b"),
        # F ran before the upgrade (old), another file of it first loaded after (new), asked as now
        (
            [_row(ONE, "", LOADED, 3, OLD), _row(ONE, "F", INVOKED, 3, OLD), _row(TWO, "", LOADED, 20, NEW)],
            "pkg:generic/a%2Fb",
        ),
    ],
)
def test_a_function_that_ran_under_the_other_spelling_is_listed(
    url: str, rows: list[HotSymbolDelta], prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(url) as s:
        s.write(rows, watched(range(40)))
    ran = next(r.purl for r in rows if r.key.evidence == INVOKED)
    capsys.readouterr()
    code = main(
        ["query", "functions", "--store", url, "--image", IMG, "--purl", prefix, "--prefix", "--json"]
    )
    doc = json.loads(capsys.readouterr().out)
    assert (code, doc["answer"]) == (0, "observed"), doc
    assert [(f["function_name"], f["purl"]) for f in doc["functions"]] == [("F", ran)], doc


def _unknown_by_either_prefix(url: str, capsys: pytest.CaptureFixture[str], tail: str) -> None:
    """``query functions --prefix`` in either spelling answers unknown, naming the unprobed ``tail``."""
    capsys.readouterr()
    for prefix in ("pkg:generic/a%2Fb", "pkg:generic/a/b"):
        code = main(
            ["query", "functions", "--store", url, "--image", IMG, "--purl", prefix, "--prefix", "--json"]
        )
        doc = json.loads(capsys.readouterr().out)
        assert (code, doc["answer"]) == (3, "unknown"), (prefix, doc)
        assert tail in doc["reason"], (prefix, doc["reason"])


def test_an_unprobed_tail_under_the_other_spelling_is_no_not_observed(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # before the upgrade: libone loaded, F's split tail left unprobed (a fact); after: libtwo loaded
    rows = [
        _row(ONE, "", LOADED, 3, OLD),
        _row(ONE, "F.part.0", UNPROBED, 3, OLD),
        _row(TWO, "", LOADED, 20, NEW),
    ]
    with open_store(url) as s:
        s.write(rows, watched(range(40)))
    _unknown_by_either_prefix(url, capsys, "F.part.0")


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None, reason="needs gcc")
def test_a_node_files_tail_under_the_other_spelling_is_no_not_observed(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The image's own copy of a node file's build (store/node_facts.py): loaded before the upgrade
    under the old spelling, so the node's unprobed fact of that build is of the package; another
    file of it loaded after, under the new. Asked by the new spelling's prefix, the fact was not
    counted (the image's row of the build is of another prefix) and the answer was not_observed."""
    target = _host_program(tmp_path)  # gcc -O2: split_fn + split_fn.part.0 (tests/integration)
    ((key, (bid, _purl)),) = host_tails([target], node_name="node-1").items()
    start = T0 + 3 * DAY
    loaded: list[HotSymbolDelta] = []
    for path, build, purl, day in (("/usr/bin/stella-app", bid, OLD, 3), (TWO, "0e" * 20, NEW, 20)):
        at = T0 + day * DAY
        loaded.append(HotSymbolDelta(
            HotSymbolKey(IMG, path, "", LOADED), at, 1, at + S, at + S, build_id=build, purl=purl,
            node_name="node-1",
        ))  # fmt: skip
    with open_store(url) as s:
        s.write(loaded, watched(range(40)))
        fact = HotSymbolDelta(
            HotSymbolKey("host:node-1", key[1], key[2], UNPROBED), start, 0, start, start,
            confidence=0.0, build_id=bid, node_name="node-1",
        )  # fmt: skip
        assert not s.write_batch(Batch("node-1/agent", 1, [fact])).errors
    _unknown_by_either_prefix(url, capsys, "split_fn.part.0")


class _Counted(str):
    """A prefix that counts how often its text is rewritten (``%2F`` read as ``/``)."""

    rewrites = 0

    def replace(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        type(self).rewrites += 1
        return super().replace(*args, **kwargs)


def test_a_long_prefix_is_read_once_not_once_per_stored_purl(tmp_path: Path) -> None:
    """A prefix is as long as an argument may be (128 KiB); read again for each stored purl of the
    image, one question took 24 s of CPU over 10,000 purls, and a question reads the purls up to
    seven times (listing, doubts). Read once, it is one pass over the prefix whatever the purls."""
    url = f"sqlite:///{tmp_path}/hot.db"
    rows = [_row(f"/usr/lib/ab/lib{i}.so", "", LOADED, 3, f"pkg:generic/a%2Fb{i}@1") for i in range(40)]
    with open_store(url) as s:
        s.write(rows, watched(range(5)))
        with s.engine.connect() as conn:
            prefix = _Counted("pkg:generic/a/b1")
            found = queries.prefixed_purls(conn, image=IMG, prefix=prefix)
    assert found == sorted(f"pkg:generic/a%2Fb{i}@1" for i in (1, *range(10, 20))), found
    assert _Counted.rewrites <= 2, _Counted.rewrites  # %2F and %2f, once
