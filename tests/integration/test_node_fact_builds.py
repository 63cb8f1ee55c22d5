"""The node's file upgraded in place, then run by a hostPath container that shows the new build.

The store keeps one ``hot_symbols`` row per (image, path, function, kind) with its first build-id,
so the new build's ``unprobed`` fact of ``host:<node>`` lies in the old build's row. A container
started after the upgrade has rows of the new build only, under its own path (``/host/usr/bin/app``,
a frame or load event): before migration 0016 it met no fact and answered ``not_observed`` while the
new build's tail ran unprobed (the s44 known limit, review RHF). Each build of a node's fact is kept
now (``node_fact_builds``), and a question meets the facts of the build its rows show.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_in_process
from tests.integration.test_answer_replaced_in_place import APP, HOST, _delta, _upgraded, _windows
from tests.integration.test_vex import DAY, T0, S

POD = "sha256:" + "ab" * 32  # runs the node's file through a hostPath mount, after the upgrade
OLDPOD = "sha256:" + "a0" * 32  # ran it before the upgrade, and never since
OWN = "sha256:" + "cd" * 32  # runs its own program of the same name, a third build
needs_gcc = pytest.mark.skipif(any(shutil.which(t) is None for t in ("gcc", "nm")), reason="needs gcc")


def _row(image: str, module: str, kind: EvidenceKind, at: int, bid: str = "") -> HotSymbolDelta:
    return HotSymbolDelta(
        HotSymbolKey(image, module, "", kind), at, 3, at + S, at + S, build_id=bid, node_name="node-1"
    )


def _ask(url: str, image: str, function: str) -> tuple[int, dict[str, object]]:
    r = cli_in_process(
        "query", "observed", "--image", image, "--function", function, "--store", url, "--json"
    )
    assert r.stdout.strip(), r.stderr[-2000:]  # an answer, not an error
    return r.returncode, json.loads(r.stdout)


def _store(url: str, module: str, old: str, new: str, *, new_fact: bool = True) -> None:
    before, after = T0 + 2 * DAY, T0 + 20 * DAY
    with open_store(url) as s:
        s.write([], _windows(HOST) + _windows(POD) + _windows(OLDPOD) + _windows(OWN))
        fact = Batch("node-1/old", 1, [_delta(module, "split_fn.part.0", 0, before, old)])
        assert not s.write_batch(fact).errors
        if new_fact:  # the agent read the rebuilt file: its tail is a fact of the new build
            fact = Batch("node-1/new", 1, [_delta(module, "split_fn.part.0", 0, after, new)])
            assert not s.write_batch(fact).errors  # into the old build's row of hot_symbols
        s.write(
            [
                _row(POD, "/host" + APP, EvidenceKind.EXECUTED, after),  # an exec row has no build-id
                _row(POD, "/host" + APP, EvidenceKind.LOADED, after, new),  # its load event does
                _row(OLDPOD, "/host" + APP, EvidenceKind.EXECUTED, before),
                _row(OLDPOD, "/host" + APP, EvidenceKind.LOADED, before, old),
                _row(OWN, APP, EvidenceKind.EXECUTED, after),
                _row(OWN, APP, EvidenceKind.LOADED, after, "0d" * 20),
            ],
            [],
        )


@needs_gcc
def test_a_container_showing_the_upgraded_build_meets_that_build_s_fact(tmp_path: Path, url: str) -> None:
    """Seen failing before the fix: POD answered not_observed (exit 1) by name, by the new build's
    function ID and by a file offset of the new build, while the new build's tail ran unprobed. The
    container of the old build still meets the old build's fact; an image's own program of that
    name, of a third build, keeps its "no". On SQLite and PostgreSQL."""
    old, new, module = _upgraded(tmp_path)
    _store(url, module, old, new)
    for image, bid in ((POD, new), (OLDPOD, old)):
        for asked in ("split_fn", f"{bid}:split_fn+0x0", f"{bid}:+0x10"):
            code, doc = _ask(url, image, asked)
            assert (code, doc["answer"]) == (3, "unknown"), (image, asked, doc)
            assert "split_fn.part.0" in str(doc["reason"]), (image, asked, doc)
    assert _ask(url, OWN, "split_fn")[0] == 1
    assert _ask(url, POD, "static_fn")[0] == 1  # a function with no fact keeps its "no"


@needs_gcc
def test_a_build_with_no_fact_of_the_function_keeps_its_no(tmp_path: Path, url: str) -> None:
    """Only the old build's fact was stored (the node's agent read the new build and found no such
    tail): a container showing only the new build at its own path meets no fact of it,
    by name and by the new build's function ID; the container of the old build still meets it."""
    old, new, module = _upgraded(tmp_path)
    _store(url, module, old, new, new_fact=False)
    assert _ask(url, POD, f"{new}:split_fn+0x0")[0] == 1
    assert _ask(url, POD, "split_fn")[0] == 1  # by name: its rows show no build of a fact
    code, doc = _ask(url, OLDPOD, f"{old}:split_fn+0x0")
    assert (code, doc["answer"]) == (3, "unknown"), doc
