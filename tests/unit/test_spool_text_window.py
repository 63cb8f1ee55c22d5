"""store/spool.py text_window_ns: the earliest window a spool file set aside whole names, read in chunks.

It is read at the shutdown merge (agent/spool_keeper.py) while the agent's own pending rows are
still only in memory: reading a file of up to MAX_SPOOL_BYTES whole (and decoding it) took twice its
size, past the agent's memory limit, and an OOM kill there loses those rows.
"""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import pytest

from stellaops_runtime.store import spool


def _line(ns: int, blanks: str = "") -> str:
    return '{"rows": [{"window_start_ns"' + f'{blanks}:{blanks}{ns}, "x": 1}}]}}\n'


def test_a_large_file_is_read_in_chunks_not_whole(tmp_path: Path) -> None:
    p = tmp_path / "spool.jsonl"
    filler = "x" * 1023 + "\n"
    with p.open("w") as f:
        f.write(_line(2_000_000_000_000_000_000))
        for _ in range(32 * 1024):  # 32 MiB
            f.write(filler)
        f.write(_line(1_500_000_000_000_000_000))
    tracemalloc.start()
    try:
        found = spool.text_window_ns(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == 1_500_000_000_000_000_000
    assert peak < 8 << 20, peak  # whole: 64 MiB and more (the bytes and their text)


@pytest.mark.parametrize("seed", range(20))
def test_a_number_cut_by_a_chunk_end_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rnd = random.Random(seed)
    monkeypatch.setattr(spool, "_CHUNK", rnd.randint(1, 300))
    times = [rnd.randint(10**17, 10**19 - 1) for _ in range(rnd.randint(1, 30))]
    text = "".join(_line(t, " " * rnd.randint(0, 40)) + "y" * rnd.randint(0, 500) for t in times)
    p = tmp_path / "spool.jsonl"
    p.write_text(text)
    expected = min(t for t in times if t < 1 << 63) if any(t < 1 << 63 for t in times) else None
    assert spool.text_window_ns(p) == expected
    assert spool.unread_window_ns(spool.Unread([text], 0)) == expected  # the same as read whole
