"""The streamed file hashes (canonical/elflayout.read_chunks) give what the reference tools give.

A file without a build-id is named by the SHA-256 of its bytes (the fallback build-id in every
function ID), content identities and debug files by their SHA-256 and CRC-32. All three stream
the file through one reused buffer; these tests hold each digest to ``sha256sum`` and to a
one-shot hash of the whole file, at sizes around the buffer's, and check the edges: a file shorter
than the size asked for, the file position left alone, the budget check after every chunk.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import random
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.canonical import debugfiles
from stellaops_runtime.canonical.elflayout import READ_CHUNK_BYTES, ElfError, fallback_build_id, read_chunks
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS, file_digest

SIZES = [0, 1, 4095, READ_CHUNK_BYTES - 1, READ_CHUNK_BYTES, READ_CHUNK_BYTES + 1, 3 * READ_CHUNK_BYTES + 7]


def _file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = random.Random(size).randbytes(size)
    path = tmp_path / f"f{size}"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("size", SIZES)
def test_every_digest_is_the_one_shot_digest(tmp_path: Path, size: int) -> None:
    path, data = _file(tmp_path, size)
    want = hashlib.sha256(data).hexdigest()
    fd = os.open(path, os.O_RDONLY)
    try:
        assert file_digest(fd, size, DEFAULT_LIMITS) == want
        assert debugfiles._digest_and_crc(fd, size, DEFAULT_LIMITS) == (want, binascii.crc32(data))
        with os.fdopen(os.dup(fd), "rb") as f:
            assert fallback_build_id(f) == "sha256-" + want[:40]
    finally:
        os.close(fd)


def test_the_digest_is_sha256sums(tmp_path: Path) -> None:
    path, _ = _file(tmp_path, 2 * READ_CHUNK_BYTES + 12345)
    ref = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert file_digest(fd, path.stat().st_size, DEFAULT_LIMITS) == ref.stdout.split()[0]
    finally:
        os.close(fd)


def test_chunks_are_read_at_their_offsets_and_the_position_is_kept(tmp_path: Path) -> None:
    path, data = _file(tmp_path, 2 * READ_CHUNK_BYTES + 5)
    with path.open("rb") as f:
        f.seek(17)
        seen: list[bytes] = []
        checks: list[int] = []
        n = read_chunks(f.fileno(), len(data), lambda v: seen.append(bytes(v)), lambda: checks.append(1))
        assert f.tell() == 17  # positional reads: a reader sharing the file is not disturbed
    assert n == len(data) and b"".join(seen) == data
    assert [len(c) for c in seen] == [READ_CHUNK_BYTES, READ_CHUNK_BYTES, 5] and len(checks) == 3


def test_a_file_shorter_than_asked_gives_what_it_has(tmp_path: Path) -> None:
    path, data = _file(tmp_path, READ_CHUNK_BYTES + 10)
    fd = os.open(path, os.O_RDONLY)
    try:
        seen = bytearray()
        assert read_chunks(fd, len(data) + 999, seen.extend) == len(data)
        assert bytes(seen) == data
        # A debug file that shrank while it was read is refused, not named by half its bytes.
        with pytest.raises(debugfiles.Rejected):
            debugfiles._digest_and_crc(fd, len(data) + 999, DEFAULT_LIMITS)
    finally:
        os.close(fd)


def test_the_time_budget_stops_the_hash(tmp_path: Path) -> None:
    path, data = _file(tmp_path, 3 * READ_CHUNK_BYTES)
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ElfError("budget_exceeded", "too slow")

    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ElfError):
            read_chunks(fd, len(data), lambda v: None, check)
    finally:
        os.close(fd)
    assert len(calls) == 2  # stopped after the second chunk, the third never read
