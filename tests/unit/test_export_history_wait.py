"""``tetragon.exportHistoryWaitSeconds``: how long an ``exportFromStart`` replay waits for the store.

With no usable watch record, the export source asks the store whether an agent ran on the node
before, and replays the file only if none did (sources/export_restart.py). A store that does
not answer within the wait makes the file read from its end, never replayed. The wait was a
fixed 10 s; where the store is slow when agents start (a failover during a rollout) a user
wants it longer, to keep the replay. tests/e2e/test_export_history_late.py runs it end to end.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from stellaops_runtime.agent.optional_parts import make_source
from stellaops_runtime.contracts.config import ConfigError, parse_config
from stellaops_runtime.sources.export_restart import HISTORY_WAIT_SECONDS
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_export import TetragonExportSource


def test_the_key_is_read_with_its_bounds_and_its_default() -> None:
    assert parse_config({}).tetragon.export_history_wait_seconds == HISTORY_WAIT_SECONDS == 10.0
    assert (
        parse_config({"tetragon": {"exportHistoryWaitSeconds": "90s"}}).tetragon.export_history_wait_seconds
        == 90
    )
    for bad in (0, -1, "601s", "soon", True, "\x00"):
        with pytest.raises(ConfigError, match="exportHistoryWaitSeconds"):
            parse_config({"tetragon": {"exportHistoryWaitSeconds": bad}})


def test_the_agent_hands_the_wait_to_its_export_source(tmp_path: Path) -> None:
    config = parse_config(
        {"tetragon": {"exportFile": str(tmp_path / "tetragon.log"), "exportHistoryWaitSeconds": 0.05}}
    )
    source, _ = make_source(config, EventQueue(10), pipeline=SimpleNamespace(process_json=None))  # type: ignore[arg-type]
    assert isinstance(source, TetragonExportSource) and source.history_wait == 0.05


async def test_a_store_silent_past_the_wait_means_no_replay(tmp_path: Path) -> None:
    source = TetragonExportSource(
        str(tmp_path / "tetragon.log"), queue=EventQueue(10), from_start=True, poll_interval=0.01,
        history_wait=0.05,
    )  # fmt: skip
    source.history_unknown()  # no watch record: the store is asked, and never answers
    assert await asyncio.wait_for(source._replays(asyncio.Event()), timeout=5) is False
    assert source._history_late
