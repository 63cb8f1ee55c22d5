"""A new process's libraries, already identified for another process, answer while the worker is busy.

A file is identified once per (process root, path), so every new process of
a container (its root is ``/proc/<pid>/root``) identifies the libraries the
first process already did. That read went through the parse gate: with the
parse worker busy (indexing another file, reading DWARF for seconds) the
new process's frames in libraries indexed long before were ``parse_pending``,
names lost for its events. A file whose stat identity was identified before
by a trusted read that hashed nothing is now read again on the caller's
thread (its build-id note, its debug file's remembered check, its claim);
anything that would need a hash still goes to the worker.

Roots are symbolic links to one directory: distinct roots over the same files.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.canonical import debuglink, filecache
from stellaops_runtime.canonical.debugfiles import DebugSearch
from stellaops_runtime.canonical.parseworker import ParsePending, ParseWorker
from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.integration.split_container import PROG, container, place, split
from tests.integration.test_file_identity import aged
from tests.native import debuglink as dl

OTHER = "/opt/app/bin/other"

__all__ = ["split"]  # the fixtures, used here


@pytest.fixture
def worker() -> Iterator[ParseWorker]:
    w = ParseWorker(0.01)  # a daemon thread; every test leaves it idle (Busy waits for its job)
    yield w
    assert not w.in_flight


def roots(tmp_path: Path, split: dl.Split, n: int) -> list[str]:
    root, out = container(tmp_path, split, n)
    place(root, OTHER, split.full)
    return out


def wait_done(f: object, deadline: float) -> object:
    while True:
        try:
            return f()  # type: ignore[operator]
        except ParsePending:
            assert time.monotonic() < deadline, "the worker never answered"
            time.sleep(0.01)


def identified_once(
    tmp_path: Path, split: dl.Split, worker: ParseWorker
) -> tuple[list[str], Symbolizer, float, Any]:
    """Three roots of the container, a symbolizer whose reads go to ``worker``, the waits' deadline,
    and the program identified through the first root."""
    r = roots(tmp_path, split, 3)
    s = Symbolizer(gate=worker, clock=aged)
    s.set_debug_search(DebugSearch(roots=()))
    deadline = time.monotonic() + 60
    first = wait_done(lambda: s.identify(PROG, root=r[0]), deadline)
    return r, s, deadline, first


class Busy:
    """The worker busy with a job until the block ends."""

    def __init__(self, worker: ParseWorker) -> None:
        self.worker = worker
        self.release = threading.Event()

    def __enter__(self) -> Busy:
        with pytest.raises(ParsePending):
            self.worker.run(("blocker", id(self)), lambda: self.release.wait(60))
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        deadline = time.monotonic() + 60
        while self.worker.in_flight:
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_a_library_known_from_another_process_answers_while_the_worker_is_busy(
    split: dl.Split, tmp_path: Path, worker: ParseWorker
) -> None:
    r, s, deadline, first = identified_once(tmp_path, split, worker)
    indexed = wait_done(lambda: s.binary(PROG, root=r[0]), deadline)
    with Busy(worker):
        fid = s.identify(PROG, root=r[1])  # a new process: no parse_pending
        assert fid.identity == first.identity and fid.debug is not None  # type: ignore[attr-defined]
        assert s.binary(PROG, root=r[2]) is indexed
        with pytest.raises(ParsePending):  # a file never read still goes to the worker
            s.identify(OTHER, root=r[1])
    s.close()


def test_a_read_that_would_hash_still_goes_to_the_worker(
    split: dl.Split, tmp_path: Path, worker: ParseWorker
) -> None:
    r, s, deadline, first = identified_once(tmp_path, split, worker)
    s.set_debug_search(DebugSearch(roots=()))  # its debug file's check is no longer remembered
    with Busy(worker), pytest.raises(ParsePending):  # so it would be hashed: never on this thread
        s.identify(PROG, root=r[1])
    again = wait_done(lambda: s.identify(PROG, root=r[1]), deadline)
    assert again.identity == first.identity  # type: ignore[attr-defined]
    s.close()


def test_a_young_library_read_before_is_read_again_on_the_callers_thread_for_a_new_process(
    split: dl.Split, tmp_path: Path, worker: ParseWorker
) -> None:
    """Young: hashed at each sighting, on the caller's thread up to 16 MiB (YOUNG_INLINE_BYTES) under
    any root, as under the root that read it first: not ``parse_pending`` behind a busy worker."""
    r = roots(tmp_path, split, 2)
    s = Symbolizer(gate=worker, clock=lambda: time.time_ns() - 10**9)  # every file young
    s.set_debug_search(DebugSearch(roots=()))
    deadline = time.monotonic() + 60
    first = wait_done(lambda: s.identify(PROG, root=r[0]), deadline)
    reads = s.stats()["identity_young_reads"]
    with Busy(worker):
        fid = s.identify(PROG, root=r[1])
        assert fid.identity == first.identity and fid.young_digest  # type: ignore[attr-defined]
        assert s.stats()["identity_young_reads"] == reads + 1  # hashed again: a young read proves nothing
    s.close()


def test_a_young_debug_file_over_the_bound_is_hashed_on_the_worker(
    split: dl.Split, tmp_path: Path, worker: ParseWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = roots(tmp_path, split, 2)
    debug = tmp_path / "container" / f"opt/app/bin/{split.debug.name}"
    bid = dl.readelf_build_id(split.stripped)
    by_id = tmp_path / "container" / f"usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
    by_id.parent.mkdir(parents=True)
    by_id.write_bytes(debug.read_bytes() + bytes(64 << 10))  # found by build-id (no CRC): 64 KiB more
    monkeypatch.setattr(
        filecache, "YOUNG_INLINE_BYTES", 48 << 10
    )  # the program under it, its debug file over
    assert (tmp_path / "container" / PROG.lstrip("/")).stat().st_size < 48 << 10
    s = Symbolizer(gate=worker, clock=lambda: time.time_ns() - 10**9)  # every file young
    s.set_debug_search(DebugSearch(roots=()))
    deadline = time.monotonic() + 60
    first = wait_done(lambda: s.identify(PROG, root=r[0]), deadline)
    assert first.debug is not None and first.debug.path.endswith(".build-id/" + f"{bid[:2]}/{bid[2:]}.debug")  # type: ignore[attr-defined]
    with Busy(worker):  # its debug file would be hashed: not on this thread, under no root
        for root in r:
            with pytest.raises(ParsePending):
                s.identify(PROG, root=root)
    s.close()


@pytest.mark.parametrize("young", [False, True])
def test_a_known_librarys_headers_are_read_once_per_stat_identity(
    split: dl.Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, young: bool
) -> None:
    """Its ELF header, build-id note and section table (whether it needs a debug file, its
    .gnu_debuglink) are content: read once for a stat identity that vouches for it, at each read
    while young (a young read proves nothing after it)."""
    reads: list[str] = []
    for module, name in ((filecache, "read_layout"), (debuglink, "read_section_table")):
        real = getattr(module, name)

        def counted(*a: object, _real: object = real, _name: str = name, **k: object) -> object:
            reads.append(_name)
            return _real(*a, **k)  # type: ignore[operator]

        monkeypatch.setattr(module, name, counted)
    r = roots(tmp_path, split, 4)
    s = Symbolizer(clock=(lambda: time.time_ns() - 10**9) if young else aged)
    s.set_debug_search(DebugSearch(roots=()))
    ids = {s.identify(PROG, root=root).identity for root in r}
    assert len(ids) == 1
    n = 4 if young else 1
    assert reads.count("read_layout") == n and reads.count("read_section_table") == n, reads
    s.close()
