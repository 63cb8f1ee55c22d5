"""A ``binaryPath`` function the node's file does not define: never probed, so never "not observed".

The probe ConfigMap names a function of a node's file by ``binaryPath`` (ObservationPolicy
``functions``) that the file does not have: inlined into every caller, renamed, or of another
version of the program. BCC's attach fails ("symbol not found": a warning and the probe's
``failed`` list only) and Tetragon's TracingPolicy names a symbol that is not there. Nothing told
the store, so ``query observed --image host:<node> --function <it>`` answered not_observed over
watched days about a function no probe ever watched. Now the node's agent, which reads the file
for its split tails anyway (native/host_tails.py), stores the absent function as an ``unprobed``
fact of ``host:<node>``, under BCC and under Tetragon alike, and the answer is unknown, saying the
file has no such function. A function compiled into its entry clone only (``crc32`` as
``crc32.isra.0``) is not absent: the clone is probed (BCC) or is the fact (Tetragon).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_json
from tests.integration.test_binary_path_clones import (
    NEEDS,
    _configured,
    _native_cfg,
    _node_root,
    _probe_file,
    _switch,
)
from tests.integration.test_vex import DAY, T0


@NEEDS
def test_an_absent_binary_path_function_is_a_fact_under_bcc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BCC: seen failing before the fix: the facts held the split tail only."""
    _host, binary, module = _node_root(tmp_path)
    targets = tuple(UprobeTarget(binary, s, module) for s in ("adler32", "crc32", "no_such_fn"))
    cfg, facts = _configured(monkeypatch, NativeConfig(uprobes=targets))
    assert UprobeTarget(binary, "crc32.isra.0", module) in cfg.uprobes  # crc32's clone is probed
    path = module or binary
    assert sorted(facts) == [("host:node-1", path, t) for t in ("adler32.part.0", "no_such_fn")]
    assert all(len(bid) == 40 for bid, _purl in facts.values())


@NEEDS
def test_an_absent_binary_path_function_is_unknown_under_tetragon(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """Tetragon is the source. Seen failing before the fix: no fact of no_such_fn, and the CLI said
    not_observed (exit 1) over 40 days of EbpfDeep windows of the host image."""
    from stellaops_runtime.agent.pipeline import Pipeline

    host, binary, module = _node_root(tmp_path)
    cfg = _native_cfg(_probe_file(tmp_path, ["adler32", "no_such_fn"], maxLevel="EbpfDeep"))
    pipeline = Pipeline(cfg, node_name="node-1")

    async def tick() -> None:
        sw = _switch(cfg, pipeline)
        sw.host_root = str(host)
        await sw._tick_tetragon(time.monotonic())
        await asyncio.sleep(0)

    asyncio.run(tick())
    rows = pipeline.unprobed.deltas(node_name="node-1", now_ns=T0 + 3 * DAY, window_seconds=60)
    path = module or binary
    got = sorted((r.key.module, r.key.function_name, r.key.evidence) for r in rows)
    assert got == [(path, n, EvidenceKind.UNPROBED) for n in ("adler32.part.0", "no_such_fn")], got
    url = sqlite_at_head(tmp_path / "hot.db")
    windows = [
        ObservationWindow("host:node-1", "node-1", T0 + d * DAY, 9, Posture.EBPF_DEEP, 60, "tetragon")
        for d in range(40)
    ]
    with open_store(url) as s:
        s.write([], windows)
        assert not s.write_batch(Batch("node-1/agent", 1, rows)).errors
    ask = ("query", "observed", "--image", "host:node-1", "--store", url, "--json", "--function")
    code, doc = cli_json(*ask, "no_such_fn")
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert "no_such_fn" in doc["reason"] and "does not define" in doc["reason"], doc["reason"]
    assert "never probed" in doc["reason"] and "a copy gcc made" not in doc["reason"], doc[
        "reason"
    ]  # no clone


@NEEDS
def test_an_absent_function_of_a_file_past_the_symbol_budget_is_still_a_fact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node file past the symbolizer's per-file budget for its tables (500,000 functions, 64 MiB,
    2 s: a large C++ program, or a loaded node) gave no fact at all, while the probes' own lookup
    (native/symaddr.py: streamed, 1 GiB, 120 s) still failed on the function ("symbol not found"):
    the answer was not_observed about a function no probe watched. Seen failing before the fix
    (review RHF of 5eb70f75: no fact). The function the lookup finds is no fact (its tails, past
    the budget, are not known)."""
    from stellaops_runtime.native import func_offsets
    from stellaops_runtime.native.host_tails import host_functions

    _host, binary, module = _node_root(tmp_path)
    targets = [UprobeTarget(binary, s, module) for s in ("adler32", "no_such_fn")]
    small = dataclasses.replace(func_offsets.DEFAULT_LIMITS, max_symbols=3)
    monkeypatch.setattr(func_offsets, "DEFAULT_LIMITS", small)
    facts = host_functions(targets, node_name="node-1", room=0).facts
    assert sorted(facts) == [("host:node-1", module or binary, "no_such_fn")], facts
    assert all(len(bid) == 40 for bid, _purl in facts.values())
