"""A node's file upgraded in place, or run only through its tail, by a hostPath container.

The node's agent stores a ``binaryPath`` function's split tail as an ``unprobed`` fact of
``host:<node>`` (native/host_tails.py), with the file's build-id; a container running the node's
file meets that fact by build (store/node_facts.py). Two holes were left (s43 RNU4, RNB4):

- The store keeps one row per (image, path, function, kind), with its first build-id. After the
  node's file was upgraded in place, the new build's fact was merged into the old build's row, so a
  container running the new build met no fact: ``not_observed`` while the new build's tail ran
  unprobed.
- A container that only ever called the tail has no row of the file's build: no call of the probed
  head, and its exec row carries no build-id (hotsymbols/aggregate.py). Its answer was
  ``not_observed`` too.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store import queries
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_in_process, cli_json
from tests.integration.test_answer_replaced_in_place import (
    APP,
    HOST,
    MAIN,
    _build,
    _delta,
    _upgraded,
    _windows,
)
from tests.integration.test_probed_in_part_stripped import PROGRAM
from tests.integration.test_vex import DAY, T0, S

POD = "sha256:" + "ab" * 32  # runs the node's file through a hostPath mount
OWN = "sha256:" + "cd" * 32  # runs its own copy of a program of the same name, another build
ELSE = "sha256:" + "ef" * 32  # runs another program
needs_gcc = pytest.mark.skipif(any(shutil.which(t) is None for t in ("gcc", "nm")), reason="needs gcc")


def _fact(module: str, at: int, bid: str) -> Batch:
    return Batch(f"node-1/{bid[:4]}", 1, [_delta(module, "split_fn.part.0", 0, at, bid)])


def _row(
    image: str, module: str, kind: EvidenceKind, at: int, bid: str = "", name: str = ""
) -> HotSymbolDelta:
    calls = 0 if kind is EvidenceKind.UNPROBED else 3
    return HotSymbolDelta(
        HotSymbolKey(image, module, name, kind), at, calls, at + S, at + S, build_id=bid, node_name="node-1"
    )


def _ask(url: str, image: str, function: str) -> tuple[int, dict[str, object]]:
    r = cli_in_process(
        "query", "observed", "--image", image, "--function", function, "--store", url, "--json"
    )
    assert r.stdout.strip(), r.stderr[-2000:]  # an answer, not an error
    return r.returncode, json.loads(r.stdout)


@needs_gcc
def test_a_node_file_upgraded_in_place_keeps_a_hostpath_container_s_answer_unknown(
    tmp_path: Path, url: str
) -> None:
    """The node's program rebuilt in place: the new build's fact is merged into the old build's row
    of ``host:node-1``. A hostPath container calls the new build's probed head (the node probe names
    the call by the node's path, the fact's). Seen failing before the fix: not_observed (exit 1), by
    name and by the new build's function ID. On SQLite and PostgreSQL."""
    old, new, module = _upgraded(tmp_path)
    before, after = T0 + 2 * DAY, T0 + 20 * DAY
    with open_store(url) as s:
        s.write([], _windows(HOST) + _windows(POD) + _windows(ELSE))
        assert not s.write_batch(_fact(module, before, old)).errors
        assert not s.write_batch(_fact(module, after, new)).errors  # merged into the old build's row
        s.write(
            [
                _row(POD, module, EvidenceKind.INVOKED, after, new, "user"),
                _row(ELSE, "/usr/bin/other", EvidenceKind.INVOKED, after, "0e" * 20, "user"),
            ],
            [],
        )
    code, doc = cli_json(
        "query", "observed", "--image", POD, "--function", "split_fn", "--store", url, "--json"
    )
    assert (code, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in doc["reason"], doc
    code, doc = _ask(url, POD, f"{new}:split_fn+0x0")
    assert (code, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in str(doc["reason"]), doc
    # another program in another image, and a function with no fact, keep their "no"
    assert _ask(url, ELSE, "split_fn")[0] == 1
    assert _ask(url, POD, "static_fn")[0] == 1


@needs_gcc
def test_a_hostpath_container_that_only_called_the_tail_is_unknown(tmp_path: Path, url: str) -> None:
    """A container exec'd the node's program through a hostPath mount (``/host/usr/bin/stella-app``),
    and its process only called the unprobed tail: its only row is the exec row, which has no
    build-id. Seen failing before the fix: not_observed (exit 1). An image that exec'd another
    program, or its own copy of that name whose build is known and another, keeps its "no"."""
    host = tmp_path / "host"
    bid = _build(tmp_path, host, PROGRAM + MAIN)
    module = str(host) + APP
    at = T0 + 3 * DAY
    with open_store(url) as s:
        s.write(
            [
                _row(POD, "/host" + APP, EvidenceKind.EXECUTED, at),
                _row(ELSE, "/usr/bin/other", EvidenceKind.EXECUTED, at),
                _row(OWN, APP, EvidenceKind.EXECUTED, at),
                _row(OWN, APP, EvidenceKind.LOADED, at, "0d" * 20),
            ],
            _windows(HOST) + _windows(POD) + _windows(ELSE) + _windows(OWN),
        )
        assert not s.write_batch(_fact(module, at, bid)).errors
    code, doc = cli_json(
        "query", "observed", "--image", POD, "--function", "split_fn", "--store", url, "--json"
    )
    assert (code, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in doc["reason"], doc
    assert _ask(url, ELSE, "split_fn")[0] == 1
    assert _ask(url, OWN, "split_fn")[0] == 1


def test_a_hostile_node_fact_s_long_file_name_does_not_break_the_answer(url: str) -> None:
    """A fact's path comes from an agent's batch: a last path component of 60,000 characters (no
    file system has one) made the exec-row match a LIKE pattern past SQLite's 50,000-byte limit, and
    the question failed. Such a name is no file's: it is not matched, and the answer is made."""
    at = T0 + 3 * DAY
    module = "/proc/1/root/usr/bin/" + "a" * 60_000
    with open_store(url) as s:
        s.write([_row(POD, "/host/usr/bin/a", EvidenceKind.EXECUTED, at)], _windows(HOST) + _windows(POD))
        assert not s.write_batch(_fact(module, at, "0a" * 20)).errors
    code, doc = _ask(url, POD, "split_fn")
    assert (code, doc["answer"]) == (1, "not_observed"), doc


@needs_gcc
def test_a_fact_asked_by_its_own_function_id_is_unknown(tmp_path: Path, url: str) -> None:
    """The unprobed tail asked by its own function ID (``<bid>:split_fn.part.0+0x0``, as a
    reachability report names it), and a ``binaryPath`` function the file does not define asked by
    ID (its fact is its own name): a fact was met by an ID question only as a clone of the name
    asked, never as the name itself. Seen failing before the fix: not_observed (exit 1) for the host
    image and for the hostPath container, while asked by name both said unknown. On SQLite and
    PostgreSQL (the SQL narrows the facts)."""
    host = tmp_path / "host"
    bid = _build(tmp_path, host, PROGRAM + MAIN)
    module = str(host) + APP
    at = T0 + 2 * DAY
    absent = Batch("node-1/absent", 1, [_delta(module, "no_such_fn", 0, at, bid)])
    with open_store(url) as s:
        calls = [
            _delta(module, "split_fn", 5, at, bid),
            _row(POD, module, EvidenceKind.INVOKED, at, bid, "user"),
        ]
        s.write(calls, _windows(HOST) + _windows(POD))
        assert not s.write_batch(_fact(module, at, bid)).errors
        assert not s.write_batch(absent).errors
    for image in (HOST, POD):
        for name in ("split_fn.part.0", "no_such_fn"):
            code, doc = _ask(url, image, f"{bid}:{name}+0x0")
            assert (code, doc["answer"]) == (3, "unknown") and name in str(doc["reason"]), (image, doc)
        code, doc = _ask(url, image, f"{'0f' * 20}:no_such_fn+0x0")  # another build: not this fact
        assert doc["answer"] != "unknown" or "no_such_fn in" not in str(doc["reason"]), doc


def test_a_node_with_thousands_of_files_of_facts_still_answers(url: str) -> None:
    """A node's facts of 1,500 files (a hostile agent's batch, or years of versioned library paths:
    a fact holds for any period) made the exec-row match one OR of 1,500 LIKE tests, past SQLite's
    expression depth of 1,000: the question failed ("Expression tree is too large"), no answer.
    Seen failing before the fix (review RHF of 03900f1d) on SQLite; the names are read in parts,
    and the one exec row of the last file still meets its fact. The image's rows of those files and
    builds were read with one IN list of them all: past 65,535 facts (a hostile agent) PostgreSQL
    refused it (psycopg's parameter limit; seen with 70,000); no statement binds more than
    queries.KEYS_PER_STATEMENT of them now (seen failing before that fix: 1,503 parameters)."""
    at = T0 + 3 * DAY
    facts = [
        _delta(f"/proc/1/root/usr/bin/app{i}", "split_fn.part.0", 0, at, f"{i:040x}") for i in range(1500)
    ]
    with open_store(url) as s:
        s.write(
            [_row(POD, "/host/usr/bin/app1499", EvidenceKind.EXECUTED, at)], _windows(HOST) + _windows(POD)
        )
        assert not s.write_batch(Batch("node-1/many", 1, facts)).errors
    bound: list[int] = []

    def count(conn: object, cursor: object, sql: str, params: object, *args: object) -> None:
        bound.append(len(params) if isinstance(params, (tuple, list, dict)) else 0)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        code, doc = _ask(url, POD, "split_fn")
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    assert bound and max(bound) <= queries.KEYS_PER_STATEMENT + 10, max(bound)
    assert (code, doc["answer"]) == (3, "unknown") and "app1499" in str(doc["reason"]), doc
    assert "/app1498 " not in str(doc["reason"]), doc  # only the file it ran


def test_an_exec_row_of_another_package_leaves_a_package_question_alone(url: str) -> None:
    """Asked of a package (``query functions``), an exec row of the node file's name meets the
    node's facts only where the row is of that package or of none (docs/native-probes.md): the
    image's own program of that name attributed to its package keeps the other packages' "no";
    one of no package known makes every package's answer unknown (the safe side, review RHF).
    Untested before (review RHF: the package filter of the exec-row read dropped, every node-file
    test passed); seen failing with it dropped in a throwaway copy."""
    at = T0 + 3 * DAY
    ssl, app = "pkg:deb/debian/openssl@3.0.11-1", "pkg:deb/debian/stella-app@1"
    lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3"

    def rows(image: str, purl: str) -> list[HotSymbolDelta]:
        loaded = HotSymbolDelta(
            HotSymbolKey(image, lib, "", EvidenceKind.LOADED),
            at,
            2,
            at + S,
            at + S,
            build_id="5a" * 20,
            purl=ssl,
        )
        return [replace(_row(image, APP, EvidenceKind.EXECUTED, at), purl=purl), loaded]

    with open_store(url) as s:
        s.write(rows(POD, app) + rows(OWN, ""), _windows(HOST) + _windows(POD) + _windows(OWN))
        assert not s.write_batch(_fact("/proc/1/root" + APP, at, "0a" * 20)).errors

    def ask(image: str, purl: str) -> tuple[int, str, str]:
        r = cli_in_process("query", "functions", "--image", image, "--purl", purl, "--store", url, "--json")
        doc = json.loads(r.stdout)
        return r.returncode, doc["answer"], str(doc["reason"])

    assert ask(POD, ssl)[:2] == (1, "not_observed")  # its exec row is another package's file
    for got in (ask(POD, app), ask(OWN, ssl)):  # OWN: its program of no package known, may be any
        assert got[:2] == (3, "unknown") and "split_fn.part.0" in got[2], got
