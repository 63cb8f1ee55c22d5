"""The kernel's symbol table is loaded by the first kernel frame, not at start-up (issue 13).

The table holds ~2.75 MB for the agent's whole life and only kernel frames need
it, so ``Pipeline.warm_up`` (the agent's start-up, agent/pipeline.py) only checks
that kallsyms can be read, logging when it cannot, as the load did. A node whose
policies ask for no kernel stacks never holds it; where the first kernel frame
loads it, every frame comes out as it did with the table loaded at start-up.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config

STREAM = Path(__file__).parents[1] / "fixtures" / "tetragon" / "synthetic" / "stream-a.jsonl.gz"
KALLSYMS = Path("/proc/kallsyms")

pytestmark = pytest.mark.skipif(not KALLSYMS.is_file(), reason="needs /proc/kallsyms")


def _lines() -> list[tuple[bytes, int]]:
    with gzip.open(STREAM) as f:
        return [(line, 1) for line in f if line.strip()]


def _pipeline(kallsyms: str) -> Pipeline:
    cfg = parse_config({"symbols": {"kallsymsPath": kallsyms}})
    return Pipeline(cfg, node_name="n", fast_path=False)


def _kernel_loaded(pipe: Pipeline) -> bool:
    assert pipe.canonicalizer is not None
    return pipe.canonicalizer.symbolizer._kernel is not None


def _rows(pipe: Pipeline) -> list[str]:
    deltas, windows = pipe.drain()
    return sorted(repr(d) for d in deltas) + sorted(repr(w) for w in windows)


def test_warm_up_leaves_the_table_unloaded_and_the_first_kernel_frame_loads_it() -> None:
    pipe = _pipeline(str(KALLSYMS))
    pipe.warm_up()
    assert not _kernel_loaded(pipe)  # idle: no table
    lines = _lines()
    pipe.process_json(lines)
    assert _kernel_loaded(pipe)
    assert pipe.canonicalizer is not None
    assert pipe.canonicalizer.counters["resolved_kallsyms"] > 0

    # The same stream with the table loaded before the first event: the same rows and counters.
    eager = _pipeline(str(KALLSYMS))
    assert eager.canonicalizer is not None
    eager.canonicalizer.symbolizer.kernel()
    eager.process_json(lines)
    assert dict(eager.canonicalizer.counters) == dict(pipe.canonicalizer.counters)
    assert _rows(eager) == _rows(pipe)


def test_an_unreadable_kallsyms_is_logged_at_warm_up_and_counted_at_kernel_frames(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-kallsyms"
    pipe = _pipeline(str(missing))
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.agent.pipeline"):
        pipe.warm_up()
    assert any("kernel symbols unavailable" in r.getMessage() and str(missing) in r.getMessage()
               for r in caplog.records)  # fmt: skip
    pipe.process_json(_lines())
    assert pipe.canonicalizer is not None
    assert pipe.canonicalizer.counters["kernel_kallsyms_unreadable"] > 0
    assert pipe.processed > 0


def test_a_directory_as_kallsyms_is_logged_at_warm_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipe = _pipeline(str(tmp_path))  # opens, but is no file to read symbols from
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.agent.pipeline"):
        pipe.warm_up()
    assert any("kernel symbols unavailable" in r.getMessage() for r in caplog.records)
