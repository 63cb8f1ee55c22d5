"""atomic_file.write_atomically: whole or not at all, its own mode, no temporary left, no link followed.

Every file the project replaces goes through it (spool, watch record, witnesses, VEX documents,
the index cache, the header shim), so what it promises is tested here once, with a real file
size limit for the write that stops half-way.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_runtime import atomic_file
from stellaops_runtime.atomic_file import stale_temporaries, temporary_name, write_atomically


def test_replaces_whole_with_its_own_mode_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    target.write_bytes(b"old")
    old_umask = os.umask(0o077)
    try:
        write_atomically(target, b"new" * 100_000, mode=0o644)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new" * 100_000
    assert target.stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["doc.json"]


def test_a_write_stopped_half_way_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    """A file size limit (RLIMIT_FSIZE, EFBIG) stops the write after 64 KiB: the old content stays."""
    target = tmp_path / "spool"
    target.write_bytes(b"old content\n")
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "from stellaops_runtime.atomic_file import write_atomically\n"
        "try:\n"
        "    write_atomically(sys.argv[1], b'x' * 1_000_000)\n"
        "except OSError as e:\n"
        "    print(e.errno)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == str(errno.EFBIG), r.stderr
    assert target.read_bytes() == b"old content\n"
    assert os.listdir(tmp_path) == ["spool"]


def test_no_link_is_followed_and_a_link_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    target = tmp_path / "out"
    target.symlink_to(victim)
    write_atomically(target, b"doc")
    assert victim.read_text() == "precious"
    assert not target.is_symlink() and target.read_bytes() == b"doc"


def test_temporaries_are_hidden_fresh_and_found_for_cleaning(tmp_path: Path) -> None:
    target = tmp_path / "w.witness.json"
    names = {temporary_name(target) for _ in range(50)}
    assert len(names) == 50
    for n in names:
        base = os.path.basename(n)
        assert base.startswith(".w.witness.json.tmp-") and not base.endswith(".witness.json")
    left = Path(next(iter(names)))
    left.write_bytes(b"half")  # what a writer killed between create and rename leaves
    assert stale_temporaries(target) == [left]


def test_a_directory_that_cannot_be_synced_is_no_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some FUSE and network file systems answer EINVAL to fsync of a directory; an EIO is raised."""
    real_fsync = os.fsync

    def fsync(fd: int, err: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(err, os.strerror(err))
        real_fsync(fd)

    target = tmp_path / "record"
    monkeypatch.setattr(atomic_file.os, "fsync", lambda fd: fsync(fd, errno.EINVAL))
    write_atomically(target, b"one")
    assert target.read_bytes() == b"one"
    monkeypatch.setattr(atomic_file.os, "fsync", lambda fd: fsync(fd, errno.EIO))
    with pytest.raises(OSError) as e:
        write_atomically(target, b"two")
    assert e.value.errno == errno.EIO
    assert target.read_bytes() == b"two" and os.listdir(tmp_path) == ["record"]  # renamed, not synced
