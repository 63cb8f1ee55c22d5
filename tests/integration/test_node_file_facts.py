"""A container running the node's file (a hostPath mount): the file's unprobed facts follow it by build-id.

The BCC probes sit on the node's file (a ``binaryPath`` function): a uprobe fires for every process
mapping the inode, so a container that runs that file through a hostPath mount has its calls
counted, stored under its own image. The file's split tail (``split_fn.part.0``, called directly
by callers that inlined the head) is stored as an ``unprobed`` fact of ``host:<node>`` only
(native/host_tails.py), so a question about the container's image said "not observed" while the
tail ran there. Now an image that has any row of that build (a call in the file, a frame, its
load) meets the node's facts of that build too (store/node_facts.py); an image without one does
not.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.host_tails import host_tails
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_json
from tests.integration.test_probed_in_part_host import _host_program
from tests.integration.test_vex import DAY, T0, S
from tests.node_alive import alive_after

POD = "sha256:" + "ab" * 32  # the container running the node's file through a hostPath mount
OTHER = "sha256:" + "cd" * 32  # a container of another build of the program


def answer(*args: str, real: bool = False) -> tuple[int, Any]:
    """``stella-runtime <args>``'s exit code and JSON, asked in this process (tests/cli_run.py
    ``cli_json``), or ``real``ly as a subprocess."""
    return cli_json(*args, real=real)


def _node_fact(module: str, tail: str, bid: str) -> HotSymbolDelta:
    """The ``unprobed`` fact of ``tail`` the node's agent stores under ``host:node-1``."""
    at = T0 + 3 * DAY
    key = HotSymbolKey("host:node-1", module, tail, EvidenceKind.UNPROBED)
    return HotSymbolDelta(key, at, 0, at, at, confidence=0.0, build_id=bid, node_name="node-1")


def _watched(image: str, days: int = 40) -> list[ObservationWindow]:
    """EbpfDeep windows of ``image`` on node-1, a day each from T0."""
    return [
        ObservationWindow(image, "node-1", T0 + d * DAY, 9, Posture.EBPF_DEEP, 60, "bcc") for d in range(days)
    ]


def _stored(
    url: str, rows: list[HotSymbolDelta], windows: list[ObservationWindow], fact: HotSymbolDelta
) -> None:
    last = max(w.window_start_ns for w in windows)  # node-1's agent ran on: its last day is not open
    with open_store(url) as s:
        s.write(rows, windows + alive_after("node-1", last - last % DAY + DAY))
        assert not s.write_batch(Batch("node-1/agent", 1, [fact])).errors


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None, reason="needs gcc")
def test_a_container_running_the_node_s_file_meets_its_facts(tmp_path: Path, url: str) -> None:
    """Seen failing before the fix: the hostPath container's answer was not_observed (exit 1). On
    SQLite and PostgreSQL (``url``)."""
    target = _host_program(tmp_path)  # gcc -O2: split_fn + split_fn.part.0, main calls the tail
    facts = host_tails([target], node_name="node-1")
    ((key, (bid, _purl)),) = facts.items()
    start = T0 + 3 * DAY
    rows, windows = [], []
    for image, build in ((POD, bid), (OTHER, "0f" * 20)):  # a call of user() in the file, its build
        rows.append(HotSymbolDelta(
            HotSymbolKey(image, "/host/usr/bin/stella-app", "user", EvidenceKind.INVOKED), start, 5,
            start + S, start + S, build_id=build, node_name="node-1",
        ))  # fmt: skip
        windows += _watched(image)
    _stored(url, rows, windows, _node_fact(key[1], key[2], bid))
    code, doc = answer(
        "query", "observed", "--image", POD, "--function", "split_fn", "--store", url, "--json", real=True
    )
    assert (code, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in doc["reason"], doc
    code, doc = answer(
        "query", "observed", "--image", POD, "--function", f"{bid}:split_fn+0x0", "--store", url, "--json"
    )
    assert (code, doc["answer"]) == (3, "unknown"), doc
    # another build of the program in another image: the node's file's fact is not its own
    code, doc = answer(
        "query", "observed", "--image", OTHER, "--function", "split_fn", "--store", url, "--json"
    )
    assert (code, doc["answer"]) == (1, "not_observed"), doc


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None, reason="needs gcc")
def test_a_call_stored_under_the_node_s_path_without_a_build_id_meets_the_facts(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """The BCC probe names a container's call of the node's file by the node's path (the target's
    module); an agent with ``symbols.enabled: false`` stores no build-id with it. That row shows the
    image ran the node's file as surely. Seen failing before the fix: not_observed (exit 1)."""
    target = _host_program(tmp_path)
    ((key, (bid, _purl)),) = host_tails([target], node_name="node-1").items()
    start = T0 + 3 * DAY
    call = HotSymbolDelta(
        HotSymbolKey(POD, key[1], "user", EvidenceKind.INVOKED), start, 5, start + S, start + S,
        node_name="node-1",
    )  # fmt: skip
    url = sqlite_at_head(tmp_path / "hot.db")
    _stored(url, [call], _watched(POD), _node_fact(key[1], key[2], bid))
    code, doc = answer(
        "query", "observed", "--image", POD, "--function", "split_fn", "--store", url, "--json"
    )
    assert (code, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in doc["reason"], doc


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None, reason="needs gcc")
def test_an_image_s_own_copy_of_the_build_brings_the_facts_to_its_package_only(
    tmp_path: Path, url: str
) -> None:
    """The node's file and an image's own copy of the same build (the node's libssl3 and an image of
    the same distribution release; one build-id in every such image): the image's rows of that
    build are attributed to the package of its copy. A node fact has no package, so it made every
    package question of such an image unknown, zlib1g's too: 'no function of zlib1g ran' could
    never be said of any image sharing one build with a node's probed file. Now a package question
    counts the node's facts only where the image's rows of that build are of that package or of
    none (as an image's own fact of no package counts, store/queries.py ``unprobed``). Seen failing
    before the fix: unknown (exit 3) naming split_fn.part.0 for zlib1g. On SQLite and PostgreSQL."""
    target = _host_program(tmp_path)
    ((key, (bid, _purl)),) = host_tails([target], node_name="node-1").items()
    start = T0 + 3 * DAY
    own, zlib = "pkg:deb/debian/stella-app@1.0", "pkg:deb/debian/zlib1g@1.2.13"
    files = (
        ("/usr/bin/stella-app", bid, own),  # its own copy, the node file's build
        ("/usr/lib/x86_64-linux-gnu/libz.so.1", "0e" * 20, zlib),
    )
    loaded = []
    for path, build, purl in files:
        loaded.append(HotSymbolDelta(
            HotSymbolKey(OTHER, path, "", EvidenceKind.LOADED), start, 1, start + S, start + S,
            build_id=build, purl=purl, node_name="node-1",
        ))  # fmt: skip
    _stored(url, loaded, _watched(OTHER), _node_fact(key[1], key[2], bid))
    for ask in (("--purl", zlib), ("--purl", "pkg:deb/debian/zlib", "--prefix")):
        code, doc = answer("query", "functions", "--image", OTHER, *ask, "--store", url, "--json")
        assert (code, doc["answer"]) == (1, "not_observed"), (ask, doc.get("reason"))
    asked = ("query", "observed", "--image", OTHER, "--function", "split_fn", "--purl", zlib)
    code, doc = answer(*asked, "--store", url, "--json")
    assert "split_fn.part.0" not in doc.get("reason", ""), doc
    # its own package, and the function asked of no package: the fact may be theirs, still unknown
    code, doc = answer("query", "functions", "--image", OTHER, "--purl", own, "--store", url, "--json")
    assert (code, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in doc["reason"], doc
    code, doc = answer(
        "query", "observed", "--image", OTHER, "--function", "split_fn", "--store", url, "--json"
    )
    assert (code, doc["answer"]) == (3, "unknown") and "split_fn.part.0" in doc["reason"], doc


def test_the_node_facts_are_read_through_indexes_not_a_scan_of_every_image(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """Every question about a container image (``query observed``, ``functions``, ``evidence``, each
    symbol of ``vex``) reads the node facts. They were found by ``substr(image_digest, 1, 5) =
    'host:'``, which no index serves: a scan of every row of every image (0.6 s a question on a
    SQLite store of a million rows; on PostgreSQL/Citus every shard, growing with the cluster).
    The host images to look in are those of the nodes the image was watched on (its observation
    windows, their primary key): a container runs a node's file only on that node, whose agent
    stores the file's facts under ``host:<node>``. Seen failing before the fix: 'SCAN hot_symbols'
    in the plan. The facts' builds (migration 0016) are read by their table's key too. The answers
    stay as the tests above check."""
    import sqlalchemy as sa

    from stellaops_runtime.store.function_refs import function_query
    from stellaops_runtime.store.node_facts import node_file_unprobed

    start = T0 + 3 * DAY
    call = HotSymbolDelta(
        HotSymbolKey(POD, "/proc/1/root/usr/bin/app", "user", EvidenceKind.INVOKED), start, 5, start + S,
        start + S, build_id="ab" * 20, node_name="node-1",
    )  # fmt: skip
    executed = HotSymbolDelta(  # an exec row of the node file's name: its reads are planned too
        HotSymbolKey(POD, "/host/usr/bin/app", "", EvidenceKind.EXECUTED), start, 1, start + S, start + S,
        node_name="node-1",
    )  # fmt: skip
    url = sqlite_at_head(tmp_path / "hot.db")
    fact = _node_fact("/proc/1/root/usr/bin/app", "f.part.0", "ab" * 20)
    _stored(url, [call, executed], _watched(POD, days=4), fact)
    with open_store(url) as s:
        statements: list[tuple[str, object]] = []

        def grab(
            _c: object, _cur: object, statement: str, params: object, _ctx: object, _many: object
        ) -> None:
            statements.append((statement, params))

        sa.event.listen(s.engine, "before_cursor_execute", grab)
        with s.engine.connect() as conn:
            for function in (function_query("f"), None):
                got = node_file_unprobed(conn, image=POD, function=function)
                assert [r.function_name for r in got] == ["f.part.0"], (function, got)
            sa.event.remove(s.engine, "before_cursor_execute", grab)
            read = [st for st, _ in statements]
            assert any("node_fact_builds" in st for st in read), read  # its builds (0016), planned too
            for statement, params in statements:
                plan = [r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]  # type: ignore[arg-type]
                scans = [
                    p for p in plan if p.startswith("SCAN") and ("hot_symbols" in p or "fact_builds" in p)
                ]
                assert not scans, (statement, plan)
