"""A separate debug file is hashed once per content, not once per process (canonical/debugfiles.py).

A binary is identified once per (process root, path), so every new process of
a container identifies its libraries again, and each identification checks
the binary's separate debug file. The check hashed the whole debug file
(SHA-256 and CRC-32) every time: a node with libc6-dbg hashed libc's 4 MB
debug file for every process that started, and a stripped library's debug
file of hundreds of MB for each process mapping it.

What a check read is now remembered by the debug file's stat identity, once
a read started ``STAT_TRUST_SECONDS`` after its ctime (then its content
cannot change without that identity changing); a young debug file is hashed
at every check until such a read, and a replaced one is read again.

Roots are symbolic links to one directory: each is a distinct root (as
``/proc/<pid>/root`` of two processes of one container are) over the same
files (the same stat identities).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.canonical import debugfiles
from stellaops_runtime.canonical.buildidclaims import STAT_TRUST_NS
from stellaops_runtime.canonical.debugfiles import DebugSearch
from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.integration.split_container import PROG, container, other_split, split
from tests.integration.test_debug_files import assert_same_ids_as_original, file_offset, functions
from tests.native import debuglink as dl

__all__ = ["other_split", "split"]  # the fixtures, used here


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The size of every debug file hashed, in order (counted apart from the code's own counter)."""
    seen: list[str] = []
    real = debugfiles._digest_and_crc

    def counted(fd: int, size: int, limits: object) -> tuple[str, int]:
        seen.append(str(size))
        return real(fd, size, limits)  # type: ignore[arg-type]

    monkeypatch.setattr(debugfiles, "_digest_and_crc", counted)
    return seen


def symbolizer(clock: Callable[[], int]) -> Symbolizer:
    s = Symbolizer(clock=clock)
    s.set_debug_search(DebugSearch(roots=()))
    return s


def test_a_debug_file_is_hashed_once_for_every_process_mapping_its_binary(
    split: dl.Split, tmp_path: Path, hashes: list[str]
) -> None:
    root, roots = container(tmp_path, split, 6)
    debug = root / f"opt/app/bin/{split.debug.name}"
    s = symbolizer(lambda: os.stat(debug).st_ctime_ns + STAT_TRUST_NS + 10**9)  # both files old
    ids = {s.identify(PROG, root=r).identity for r in roots}
    assert len(ids) == 1 and "+debug@" in next(iter(ids))
    assert len(hashes) == 1, hashes  # once, not once per process root
    assert s.stats()["debug_files_hashed"] == 1 and s.stats()["debug_files_found_debuglink"] == 6
    # and every process's frames still get the unstripped program's IDs through the debug file
    assert assert_same_ids_as_original(s, split, PROG, roots[-1]) >= 10
    s.close()


def test_a_young_debug_file_is_hashed_at_each_check_until_a_read_after_the_margin(
    split: dl.Split, tmp_path: Path, hashes: list[str]
) -> None:
    root, roots = container(tmp_path, split, 6)
    ctime = max(os.stat(p).st_ctime_ns for p in (root / PROG.lstrip("/"), root / "opt/app/bin"))
    ctime = max(ctime, os.stat(root / f"opt/app/bin/{split.debug.name}").st_ctime_ns)
    now = [ctime + 1_000_000]  # 1 ms after the last write: young
    s = symbolizer(lambda: now[0])
    young = [s.identify(PROG, root=r).identity for r in roots[:3]]
    assert len(hashes) == 3  # a young read proves nothing about the content after it
    now[0] = ctime + STAT_TRUST_NS  # the margin has passed
    old = [s.identify(PROG, root=r).identity for r in roots[3:]]
    assert len(hashes) == 4, hashes  # one more hash, after the margin; the later roots reuse it
    assert len(set(young + old)) == 1
    s.close()


def test_a_replaced_debug_file_is_read_again(
    split: dl.Split, other_split: dl.Split, tmp_path: Path, hashes: list[str]
) -> None:
    root, roots = container(tmp_path, split, 3)
    debug = root / f"opt/app/bin/{split.debug.name}"
    s = symbolizer(lambda: os.stat(debug).st_ctime_ns + STAT_TRUST_NS + 10**9)
    addr = next(a for a, (_, names, _) in functions(split.full).items() if "stella_return_address" in names)
    off = file_offset(split.full, addr)
    assert s.resolve_file(PROG, off, root=roots[0]).symbol == "stella_return_address"
    assert len(hashes) == 1
    first = s.identify(PROG, root=roots[0]).identity
    tmp = debug.with_name("replacement")
    tmp.write_bytes(split.debug.read_bytes())  # the same bytes, written again: another stat identity
    tmp.replace(debug)
    assert s.identify(PROG, root=roots[1]).identity == first  # the same content: the same identity
    assert len(hashes) == 2, hashes  # but read again: its new identity vouches for nothing yet
    tmp.write_bytes(other_split.debug.read_bytes())  # another build's debug file under the same name
    tmp.replace(debug)
    assert s.identify(PROG, root=roots[2]).debug is None  # read again, and refused
    assert s.stats()["debug_files_rejected_build_id_mismatch"] == 1
    assert s.resolve_file(PROG, off, root=roots[2]).error == "no_symbol"  # its own tables only
    s.close()
