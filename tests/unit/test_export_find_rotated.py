"""sources/export_files.py ``find_rotated``: the checkpoint's file rotated beside the path is read
on only when it is certain to be the only rotation since (s33/h3)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from stellaops_runtime.sources.export_checkpoint import path_hash
from stellaops_runtime.sources.export_files import find_rotated


def _checkpoint(path: Path) -> dict:
    data = path.read_bytes()
    st = path.stat()
    return {
        "path_sha256": path_hash(str(path)),
        "dev": st.st_dev,
        "ino": st.st_ino,
        "pos": len(data),
        "head_len": min(len(data), 1024),
        "head_sha256": hashlib.sha256(data[:1024]).hexdigest(),
    }


def _rotate(path: Path, name: str, new: bytes) -> Path:
    rotated = path.with_name(name)
    path.rename(rotated)
    path.write_bytes(new)
    return rotated


def _touch_later(p: Path, than: Path) -> None:
    t = than.stat().st_mtime_ns + 10**9
    os.utime(p, ns=(t, t))


def test_the_only_rotated_file_is_found_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    cp = _checkpoint(path)
    (tmp_path / "tetragon-2026-01-01T00-00-00.000.log").write_bytes(b"older\n")  # an older backup
    os.utime(tmp_path / "tetragon-2026-01-01T00-00-00.000.log", ns=(1, 1))
    (tmp_path / "tetragon-info.json").write_bytes(b"{}")  # not a rotated export file
    rotated = _rotate(path, "tetragon-2026-12-05T05-00-00.000.log", b'{"b":2}\n')
    _touch_later(path, rotated)
    with path.open("rb") as cur:
        g = find_rotated(str(path), cp, cur)
        assert g is not None and os.fstat(g.fileno()).st_ino == cp["ino"]
        g.close()
        # The path was rotated again after it (a newer rotated file): not certain, a gap.
        newer = tmp_path / "tetragon-2026-12-05T06-00-00.000.log.gz"
        newer.write_bytes(b"\x1f\x8b")
        _touch_later(newer, rotated)
        assert find_rotated(str(path), cp, cur) is None
        newer.unlink()
        # Its first bytes changed (the inode reused by another file): not its file.
        assert find_rotated(str(path), {**cp, "head_sha256": "00"}, cur) is None
        # Shorter than the checkpoint's position (truncated): not its file.
        assert find_rotated(str(path), {**cp, "pos": cp["pos"] + 1}, cur) is None


def test_a_rotated_file_compressed_or_a_current_file_older_than_it_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    cp = _checkpoint(path)
    rotated = _rotate(path, "tetragon.log.1", b'{"b":2}\n')
    os.utime(path, ns=(1, 1))  # the file at the path was last written before the rotated one
    with path.open("rb") as cur:
        assert find_rotated(str(path), cp, cur) is None
    _touch_later(path, rotated)
    rotated.unlink()  # compressed and removed (exportFileCompress): gone
    with path.open("rb") as cur:
        assert find_rotated(str(path), cp, cur) is None


def test_a_symlink_named_like_a_rotated_file_is_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    cp = _checkpoint(path)
    rotated = _rotate(path, "tetragon-x.log.real", b"")
    (tmp_path / "tetragon-x.log").symlink_to(rotated)
    rotated.rename(tmp_path / "elsewhere")
    with path.open("rb") as cur:
        assert find_rotated(str(path), cp, cur) is None


def test_a_clock_stepped_back_between_two_rotations_is_not_taken_for_their_order(tmp_path: Path) -> None:
    """Defect (s34/h4): rotated files were ordered by modification time alone. The wall clock
    stepped back between two rotations while no agent ran, so the later rotated file looked older
    than the checkpoint's file: that file was read on, then the current one, and the lines of
    the one between were skipped with no gap. Now another rotated file counts as older only by
    more than the clock's step since the checkpoint (measured on the boot clock), and with the
    step unknown (another boot) only the checkpoint's file and the current one may be there."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(b'{"a":1}\n')
    cp = _checkpoint(path)
    rotated = _rotate(path, "tetragon-2026-12-05T05-00-00.000.log", b'{"b":2}\n')
    t = rotated.stat().st_mtime_ns
    hour = 3600 * 10**9
    with path.open("rb") as cur:  # only its file and the current one: certain, whatever the clock
        for step in (0, hour, None):
            g = find_rotated(str(path), cp, cur, step_ns=step)
            assert g is not None
            g.close()
    between = _rotate(path, "tetragon-2026-12-05T04-30-00.000.log", b'{"c":3}\n')
    os.utime(between, ns=(t - hour // 2, t - hour // 2))  # written after it, the clock an hour back
    os.utime(path, ns=(t + 10**11, t + 10**11))
    with path.open("rb") as cur:
        g = find_rotated(str(path), cp, cur, step_ns=0)  # no step since: half an hour older is older
        assert g is not None
        g.close()
        assert find_rotated(str(path), cp, cur, step_ns=hour) is None  # within the step: not certain
        assert find_rotated(str(path), cp, cur, step_ns=None) is None  # the step unknown
