"""A stat identity vouches for a file's content only once its ctime is old (canonical/buildidclaims.py).

Before Linux 6.13 file times advance once per clock tick (1-10 ms), so two
same-size writes in place within one tick leave (device, inode, size, mtime,
ctime) unchanged. This machine's kernel has fine-grained times, so the tests
model such a kernel: ``one_tick`` makes every stat of a file report the
identity it had when first seen (every write of the test falls in one tick),
and the symbolizer's clock is set either inside that tick (a young read) or
past ``STAT_TRUST_SECONDS`` after it (a trusted one).

Before the fix a file read between the two writes kept the first content's
names for good: ``beta`` for a frame of a file whose function there is ``zeta``.
"""

from __future__ import annotations

import errno
import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.canonical import buildidclaims, debugfiles, filecache, indexcheck
from stellaops_runtime.canonical.buildidclaims import STAT_TRUST_NS, stat_trusted
from stellaops_runtime.canonical.filecache import FileId
from stellaops_runtime.canonical.parseworker import ParsePending, ParseWorker
from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.integration import test_hostile_elf_builder as eb

BID = b"\x42" * 20
A = eb.Elf(build_id=BID, functions=["alpha", "beta"])
B = eb.Elf(build_id=BID, functions=["omega", "zeta"])  # same size and layout: another content
LIB = "/usr/lib/libx.so"
Tick = dict[tuple[int, int], buildidclaims.StatId]  # (device, inode) -> the stat identity first seen


@pytest.fixture
def one_tick(monkeypatch: pytest.MonkeyPatch) -> Tick:
    """Every stat of a file reports the identity it had when first seen: all writes in one tick."""
    first: Tick = {}
    real = buildidclaims.stat_identity

    def frozen(st: object) -> buildidclaims.StatId:
        sid = real(st)  # type: ignore[arg-type]
        return first.setdefault((sid[0], sid[1]), sid)

    for module in (buildidclaims, filecache, debugfiles):
        monkeypatch.setattr(module, "stat_identity", frozen, raising=False)
    for module in (filecache, indexcheck):  # the parsed file's checks (canonical/indexcheck.py) too
        monkeypatch.setattr(module, "file_key", lambda st: frozen(st)[:4])
    return first


def _root(tmp_path: Path, elf: eb.Elf) -> tuple[Path, Path, dict[str, int]]:
    root = tmp_path / "root"
    path = root / LIB.lstrip("/")
    return root, path, eb.write(path, elf)


def _at(first: Tick, path: Path, after_ctime: int) -> Callable[[], int]:
    """A clock ``after_ctime`` ns after the (frozen) ctime of ``path``."""
    st = path.stat()
    return lambda: first[(st.st_dev, st.st_ino)][4] + after_ctime


def _resolve(s: Symbolizer, root: Path, off: int) -> str:
    r = s.resolve_file(LIB, off, root=str(root))
    return r.symbol if r.resolved else f"<{r.error}>"


def test_the_margin() -> None:
    sid = (1, 2, 3, 4, 10**18)
    assert not stat_trusted(sid, 10**18 + STAT_TRUST_NS - 1)
    assert stat_trusted(sid, 10**18 + STAT_TRUST_NS)
    assert not stat_trusted(sid, 10**18 - 1)  # a ctime in the future (a clock stepped back): young
    assert STAT_TRUST_NS == 2 * 10**9  # the documented 2 s (docs/symbolization.md, "Cache identity")


def test_two_writes_in_one_tick_around_a_young_read_give_the_second_contents_names(
    tmp_path: Path, one_tick: Tick
) -> None:
    root, path, offsets = _root(tmp_path, A)
    s = Symbolizer(recheck_seconds=0)
    s.clock = _at(one_tick, path, 5_000_000)  # read 5 ms after the write: inside its tick
    assert _resolve(s, root, offsets["beta"]) == "beta"
    eb.write(path, B)  # the same inode, size, mtime and ctime (one tick)
    assert _resolve(s, root, offsets["beta"]) == "zeta"
    fid = s.identify(LIB, root=str(root))
    assert fid.identity == f"{BID.hex()}@{hashlib.sha256(path.read_bytes()).hexdigest()}"
    st = s.stats()
    assert st["identity_young_reads"] >= 3 and st["identity_young_files_changed"] == 1
    s.close()


def test_an_old_file_keeps_its_unhashed_stat_identity(tmp_path: Path, one_tick: Tick) -> None:
    root, path, offsets = _root(tmp_path, A)
    s = Symbolizer(recheck_seconds=0)
    s.clock = _at(one_tick, path, STAT_TRUST_NS)
    assert _resolve(s, root, offsets["beta"]) == "beta"
    fid = s.identify(LIB, root=str(root))
    assert "@file-" in fid.identity
    st = s.stats()
    assert st.get("identity_files_hashed", 0) == 0 and st.get("identity_young_reads", 0) == 0
    s.close()


@pytest.mark.parametrize("rewritten", [False, True])
def test_a_young_claim_is_hashed_again_until_a_trusted_read(
    tmp_path: Path, one_tick: Tick, rewritten: bool
) -> None:
    root, path, offsets = _root(tmp_path, A)
    s = Symbolizer(recheck_seconds=0)
    s.clock = _at(one_tick, path, 1_000_000)
    young = s.identify(LIB, root=str(root))
    assert s.identify(LIB, root=str(root)).identity == young.identity  # hashed again, same content
    assert s.stats()["identity_files_hashed"] == 2
    if rewritten:
        eb.write(path, B)  # within the tick, after the young reads
    s.clock = _at(one_tick, path, STAT_TRUST_NS + 1)
    trusted = s.identify(LIB, root=str(root))  # hashed once more: the young read proves nothing now
    assert s.stats()["identity_files_hashed"] == 3
    assert (trusted.identity == young.identity) is not rewritten
    assert s.identify(LIB, root=str(root)) is trusted  # from now on cached under its stat identity
    assert s.stats()["identity_files_hashed"] == 3
    assert _resolve(s, root, offsets["beta"]) == ("zeta" if rewritten else "beta")
    s.close()


def test_a_file_rewritten_between_its_young_hash_and_its_parse_is_not_kept(
    tmp_path: Path, one_tick: Tick, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, path, offsets = _root(tmp_path, A)
    s = Symbolizer(recheck_seconds=0)
    s.clock = _at(one_tick, path, 1_000_000)
    read_identity = s._read_identity

    def then_rewrite(*args: object) -> FileId:
        fid = read_identity(*args)  # type: ignore[arg-type]
        eb.write(path, B)  # after the hash, before the parse: same stat identity
        return fid

    monkeypatch.setattr(s, "_read_identity", then_rewrite)
    with pytest.raises(OSError) as e:
        s.binary(LIB, root=str(root))
    assert e.value.errno == errno.ESTALE
    a_identity = f"{BID.hex()}@{hashlib.sha256(eb.build(A)[0]).hexdigest()}"
    assert s.cached_binary(a_identity) is None  # B's tables never named A's content
    assert s.stats()["files_changed_while_indexed"] == 1
    monkeypatch.setattr(s, "_read_identity", read_identity)
    assert _resolve(s, root, offsets["beta"]) == "zeta"
    s.close()


def test_a_young_files_refusal_is_checked_again_after_the_margin(tmp_path: Path, one_tick: Tick) -> None:
    data, offsets = eb.build(A)
    root = tmp_path / "root"
    path = root / LIB.lstrip("/")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0" * len(data))  # not an ELF yet (a file being written)
    s = Symbolizer(recheck_seconds=0)
    s.clock = _at(one_tick, path, 1_000_000)
    assert _resolve(s, root, offsets["beta"]) == "<not_elf>"
    path.write_bytes(data)  # the same size, within the tick
    assert _resolve(s, root, offsets["beta"]) == "<not_elf>"  # remembered while young
    assert s.stats()["files_refused_remembered"] >= 1
    s.clock = _at(one_tick, path, STAT_TRUST_NS)
    assert _resolve(s, root, offsets["beta"]) == "beta"  # read once more, then trusted
    assert s.stats()["refusals_rechecked"] == 1
    s.close()


def test_a_young_file_seen_again_is_read_on_the_callers_thread(tmp_path: Path) -> None:
    """Up to 16 MiB: not queued behind a busy parse worker (no ``parse_pending`` for a file read before)."""
    root, path, _ = _root(tmp_path, A)
    worker = ParseWorker(0.01)
    s = Symbolizer(recheck_seconds=0, gate=worker)
    s.clock = lambda: path.stat().st_ctime_ns + 1_000_000  # young at every read
    deadline = time.monotonic() + 60
    while True:  # the first read goes through the worker: wait for it
        try:
            first = s.identify(LIB, root=str(root))
            break
        except ParsePending:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    while worker.in_flight:  # a read whose wait ran out finishes all the same
        assert time.monotonic() < deadline
        time.sleep(0.01)
    reads = s.stats()["identity_young_reads"]
    release = threading.Event()
    with pytest.raises(ParsePending):
        worker.run("blocker", lambda: release.wait(60))
    try:
        assert s.identify(LIB, root=str(root)).identity == first.identity  # the worker is busy
        assert s.stats()["identity_young_reads"] == reads + 1
    finally:
        release.set()
    while worker.in_flight:  # the blocker ends: nothing of this test is left running
        assert time.monotonic() < deadline + 60
        time.sleep(0.01)
    s.close()


def test_a_file_changed_while_it_was_parsed_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old file (its stat identity trusted) written to during its parse: its ctime says so."""
    root, path, offsets = _root(tmp_path, A)
    s = Symbolizer(recheck_seconds=0)
    s.clock = lambda: time.time_ns() + 3_600 * 10**9
    opened = filecache.Binary.open

    def open_then_write(*args: object, **kw: object) -> filecache.Binary:
        b = opened(*args, **kw)  # type: ignore[arg-type]
        before = path.stat().st_ctime_ns
        while path.stat().st_ctime_ns == before:  # one write is enough past the filesystem's tick
            eb.write(path, B)
        return b

    monkeypatch.setattr(filecache.Binary, "open", open_then_write)
    with pytest.raises(OSError) as e:
        s.binary(LIB, root=str(root))
    assert e.value.errno == errno.ESTALE and s.stats()["files_changed_while_indexed"] == 1
    monkeypatch.setattr(filecache.Binary, "open", opened)
    assert _resolve(s, root, offsets["beta"]) == "zeta"
    s.close()
