"""Claims left without a witness at shutdown are said, also when no time was left to start signing.

Defect (found by T5 under load, tests/e2e/test_witness_hung_store.py): against a black-holed store the
steps before the last witnesses (the final flush, the export position's final mark) can use the whole
``shutdown.graceSeconds``; the witness step then found no time left and said nothing, so an agent
with a claim due exited 0 logging "0 witnesses" and neither "not made" nor "claims left".
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from stellaops_runtime.agent.shutdown import last_witnesses


class _Witness:
    """The witness part's surface the shutdown uses: ``stored``, ``flush`` and ``marked``."""

    def __init__(self, marked: int, hang: bool = False) -> None:
        self.marked = marked
        self.hang = hang
        self.flushed = 0
        self.stored_calls = 0

    def stored(self) -> None:
        self.stored_calls += 1

    async def flush(self, engine: Any) -> None:
        if self.hang:
            await asyncio.sleep(60)
        self.flushed += 1
        self.marked = 0


async def test_no_time_left_with_a_claim_due_says_so(caplog: pytest.LogCaptureFixture) -> None:
    w = _Witness(marked=1)
    with caplog.at_level(logging.WARNING):
        await last_witnesses(w, lambda: None, time.monotonic() - 1)  # the grace already spent
    assert w.flushed == 0 and w.stored_calls == 1
    assert "1 claims left without a new witness" in caplog.text  # before: nothing logged


async def test_a_signing_cut_by_the_deadline_says_so(caplog: pytest.LogCaptureFixture) -> None:
    w = _Witness(marked=2, hang=True)
    with caplog.at_level(logging.WARNING):
        await last_witnesses(w, lambda: None, time.monotonic() + 0.05)
    assert "2 claims left without a new witness" in caplog.text


async def test_signed_in_time_or_nothing_due_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    w = _Witness(marked=1)
    idle = _Witness(marked=0)
    with caplog.at_level(logging.WARNING):
        await last_witnesses(w, lambda: None, time.monotonic() + 5)
        await last_witnesses(idle, lambda: None, time.monotonic() - 1)
    assert w.flushed == 1 and idle.flushed == 0
    assert "claims left" not in caplog.text
