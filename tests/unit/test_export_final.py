"""When an agent's shutdown marks the node's export position final (agent/export_final.py, s38/x).

Only a final row of another agent is resumed at (sources/export_store.py), so the mark must
never be made when a count of the export file may sit in the spool file or be lost: a reader
resuming there would count those lines again once the spool is replayed.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from stellaops_runtime.agent.export_final import all_stored, mark_final


class _Db:
    """A store whose transaction fails (``up`` False) or records the row written."""

    dialect = "sqlite"

    def __init__(self, up: bool) -> None:
        self.up = up
        self.written: list[tuple[Any, ...]] = []

    def begin(self) -> Any:
        if not self.up:
            raise OSError("connection refused")
        db = self

        class _Conn:
            dialect = "sqlite"

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: Any) -> None:
                return None

            def execute(self, sql: str, params: tuple[Any, ...]) -> None:
                db.written.append(params)

        return _Conn()


def _agent(**kw: Any) -> Any:
    spool = SimpleNamespace(spooled_rows=kw.get("spooled", 0))
    pending = SimpleNamespace(pending_rows=kw.get("pending", 0))
    store = SimpleNamespace(db=_Db(kw["store_up"])) if "store_up" in kw else None
    flusher = SimpleNamespace(spool=spool, pending=pending, store=store)
    export = SimpleNamespace(store_position=lambda node, agent: kw.get("position"))
    watch = SimpleNamespace(unrecorded=kw.get("unrecorded", False), export=export)
    return SimpleNamespace(
        dropped_at_shutdown=kw.get("dropped", 0), flusher=flusher, watch=watch, node_name="n", agent_id="n/a"
    )


def test_only_a_shutdown_that_stored_every_count_is_final() -> None:
    assert all_stored(_agent(), True)
    assert not all_stored(_agent(), False)  # something neither stored nor spooled
    assert not all_stored(_agent(spooled=3), True)  # spooled: stored or spooled is "ok", not final
    assert not all_stored(_agent(pending=1), True)
    assert not all_stored(_agent(dropped=2), True)  # queued lines not processed at the deadline
    assert not all_stored(_agent(unrecorded=True), True)  # drains held: their counts never stored


def test_the_mark_is_written_only_with_a_position_and_an_open_store(caplog: pytest.LogCaptureFixture) -> None:
    pos = {"node": "n", "agent_id": "n/a", "checkpoint": {"pos": 5}, "at_ns": 1, "at_boot": 2, "boot_id": "b"}
    assert asyncio.run(mark_final(_agent(position=None, store_up=True), time.monotonic() + 5)) is False
    assert asyncio.run(mark_final(_agent(position=pos), time.monotonic() + 5)) is False  # never opened
    assert asyncio.run(mark_final(_agent(position=pos, store_up=True), time.monotonic() - 1)) is False
    down = _agent(position=pos, store_up=False)
    assert asyncio.run(mark_final(down, time.monotonic() + 5)) is False
    assert "not marked final" in caplog.text
    up = _agent(position=pos, store_up=True)
    assert asyncio.run(mark_final(up, time.monotonic() + 5)) is True
    ((node, agent, doc, at),) = up.flusher.store.db.written  # ``at``: a later row is left alone
    assert (node, agent, at) == ("n", "n/a", 1) and '"final": true' in doc and '"pos": 5' in doc
