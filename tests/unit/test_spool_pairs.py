"""The pairings kept beside a spool file (agent/spool_pairs.py): merged, and hostile files refused.

A file there may be another agent's (merged, never replaced) or anything at all (a FIFO, a
symlink, garbage, a digest with a NUL byte): nothing but well-formed image digests is noted, and
nothing blocks or raises at the agent's start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stellaops_runtime.agent.spool_pairs import MAX_BYTES, pairs_path, read_pairs, remove_pairs, write_pairs

A = ("sha256:" + "a" * 64, "sha256:" + "1" * 64)
B = ("sha512:" + "b" * 128, "sha256:" + "2" * 64)


def test_pairings_are_merged_with_those_kept_and_removed(tmp_path: Path) -> None:
    spool = str(tmp_path / "spool.jsonl")
    assert read_pairs(spool) == [] and write_pairs(spool, []) == 0 and not os.path.exists(pairs_path(spool))
    assert write_pairs(spool, [A]) == 1
    assert write_pairs(spool, [B, A]) == 2  # another agent's kept, not replaced
    assert sorted(read_pairs(spool)) == sorted([A, B])
    remove_pairs(spool)
    remove_pairs(spool)  # gone already: no error
    assert read_pairs(spool) == []


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"\x00" * 10,
        json.dumps({"format": "other", "pairs": [list(A)]}).encode(),
        json.dumps({"format": "stellaops-runtime-spool-pairs", "pairs": "x"}).encode(),
        json.dumps(
            {
                "format": "stellaops-runtime-spool-pairs",
                "pairs": [
                    [1, 2],
                    [A[0]],
                    None,
                    [A[0] + "\x00", A[1]],
                    ["sha256:" + "A" * 64, A[1]],
                    [A[0], A[0]],
                    list(B),
                ],
            }
        ).encode(),
        b" " * (MAX_BYTES + 1),
    ],
    ids=["garbage", "nul", "format", "pairs-type", "bad-entries", "huge"],
)
def test_a_hostile_file_notes_nothing_but_well_formed_pairings(tmp_path: Path, content: bytes) -> None:
    spool = str(tmp_path / "spool.jsonl")
    Path(pairs_path(spool)).write_bytes(content)
    assert read_pairs(spool) == ([B] if b"sha512" in content else [])


def test_a_fifo_or_a_symlink_is_not_read(tmp_path: Path) -> None:
    spool = str(tmp_path / "spool.jsonl")
    os.mkfifo(pairs_path(spool))  # nobody writes to it: must not block
    assert read_pairs(spool) == []
    os.unlink(pairs_path(spool))
    target = tmp_path / "elsewhere"
    target.write_text(json.dumps({"format": "stellaops-runtime-spool-pairs", "pairs": [list(A)]}))
    os.symlink(target, pairs_path(spool))
    assert read_pairs(spool) == []
