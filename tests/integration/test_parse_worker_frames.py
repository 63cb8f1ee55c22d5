"""The FrameCanonicalizer with a parse worker: a file still being parsed leaves its frames ``parse_pending``.

Crafted ELF files in a container root of our own under a procfs of our own
(as tests/integration/test_hostile_inputs.py does). The worker is kept busy
by a job the test releases, so "the parse is still running" is decided by
the test, not by this machine's speed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.parseworker import ParsePending, ParseWorker
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent, StackFrame
from tests.integration import test_hostile_elf_builder as eb

BID = b"\x42" * 20
PID = 100


def _setup(tmp_path: Path, elf: eb.Elf) -> tuple[Path, dict[str, int]]:
    root = tmp_path / "root"
    offsets = eb.write(root / "usr/lib/libx.so", elf)
    proc = tmp_path / "proc"
    (proc / str(PID)).mkdir(parents=True)
    (proc / str(PID) / "root").symlink_to(root)
    (proc / str(PID) / "maps").write_text("")
    return proc, offsets


def _worker(fc: FrameCanonicalizer) -> ParseWorker:
    assert isinstance(fc.gate, ParseWorker)
    return fc.gate


def _occupy(w: ParseWorker) -> threading.Event:
    """Keep the worker busy (a job that timed out once) until the returned event is set."""
    release = threading.Event()
    wait, w.wait_seconds = w.wait_seconds, 0.01
    try:
        w.run("test-blocker", lambda: release.wait(30))
    except ParsePending:
        return release
    finally:
        w.wait_seconds = wait
    raise AssertionError("the blocker finished at once")


def _idle(w: ParseWorker) -> None:
    deadline = time.monotonic() + 30
    while w.in_flight:
        assert time.monotonic() < deadline
        time.sleep(0.005)


def _event(offset: int) -> tuple[RuntimeCallEvent, StackFrame]:
    f = StackFrame(module="/usr/lib/libx.so", offset=offset, symbol="hint")
    return RuntimeCallEvent(EventKind.SYSCALL, 0, "", ProcessInfo(exec_id="e1", pid=PID), user_stack=[f]), f


def _loader(fc: FrameCanonicalizer, exec_id: str = "e1") -> None:
    info = ProcessInfo(exec_id=exec_id, pid=PID)
    fc.canonicalize(
        RuntimeCallEvent(EventKind.LOADER, 0, "", info, module="/usr/lib/libx.so", build_id=BID.hex())
    )


def test_first_sight_is_pending_then_the_frame_resolves(tmp_path: Path) -> None:
    proc, offsets = _setup(tmp_path, eb.Elf(build_id=BID, functions=["alpha", "beta"]))
    # A wait far longer than any stall of a loaded machine: a call that waited is told from one
    # that did not by 30 s, not by 50 ms (the blocker is abandoned at its own 10 ms wait).
    fc = FrameCanonicalizer(proc_root=str(proc), parse_wait=30)
    w = _worker(fc)
    release = _occupy(w)
    _loader(fc)
    ev, f = _event(offsets["beta"] + 3)
    t0 = time.monotonic()
    fc.canonicalize(ev)
    assert time.monotonic() - t0 < 10  # the worker is busy with a slow parse: not waited for
    # Left as today's unresolvable frames: module + file offset, the loader's build-id, the hint.
    assert (f.module, f.offset, f.build_id, f.source, f.symbol) == (
        "/usr/lib/libx.so",
        offsets["beta"] + 3,
        BID.hex(),
        "hint",
        "hint",
    )
    assert f.function_id == f"{BID.hex()}:+{offsets['beta'] + 3:#x}"
    assert fc.stats["parse_pending"] == 1
    release.set()
    _idle(w)
    ev, f = _event(offsets["beta"] + 3)
    fc.canonicalize(ev)
    assert (f.symbol, f.symbol_offset, f.source) == ("beta", 3, "symtab")
    assert f.function_id == f"{BID.hex()}:beta+0x3"
    st = fc.stats
    assert st["parse_pending"] == 1 and st["resolved_symtab"] == 1
    assert st["symbolizer_parse_jobs_done"] >= 2 and st["symbolizer_binaries_loaded"] == 1


def test_a_lazy_source_is_read_on_the_worker(tmp_path: Path) -> None:
    """DWARF (here: a bomb) is loaded by the worker; while it waits, the frame is parse_pending."""
    bomb = eb.compressed_debug_bomb(ch_size=1 << 40)
    proc, _ = _setup(tmp_path, eb.Elf(build_id=BID, functions=[], extra=[bomb]))
    fc = FrameCanonicalizer(proc_root=str(proc), parse_wait=5.0)
    w = _worker(fc)
    binary = fc.symbolizer.binary("/usr/lib/libx.so", root=str(proc / str(PID) / "root"))
    assert binary.lazy_pending  # indexed: symtab read, DWARF not yet
    release = _occupy(w)
    ev, f = _event(0x200)
    fc.canonicalize(ev)
    assert (f.source, fc.stats["parse_pending"]) == ("hint", 1)
    assert binary.lazy_pending  # not decoded on this thread
    release.set()
    _idle(w)
    assert not binary.lazy_pending and binary.load_reasons == {"dwarf": "budget_exceeded"}
    ev, f = _event(0x200)
    fc.canonicalize(ev)
    assert f.source == "hint" and fc.stats["budget_exceeded"] == 1 and fc.stats["parse_pending"] == 1


def _probe(fc: FrameCanonicalizer, kind: EventKind, name: str) -> str:
    ev = RuntimeCallEvent(
        kind, 0, "", ProcessInfo(exec_id="e1", pid=PID), module="/usr/lib/libx.so", function_name=name
    )
    fc.canonicalize(ev)
    return ev.function_id


def test_a_probed_function_while_its_file_is_parsed(tmp_path: Path) -> None:
    proc, _ = _setup(tmp_path, eb.Elf(build_id=BID, functions=["alpha", "beta"]))
    fc = FrameCanonicalizer(proc_root=str(proc), parse_wait=5.0)
    w = _worker(fc)
    release = _occupy(w)
    _loader(fc)
    # The probe was attached to this symbol name: the ID holds from the loader's build-id alone.
    assert _probe(fc, EventKind.UPROBE, "beta") == f"{BID.hex()}:beta+0x0"
    assert _probe(fc, EventKind.USDT, "prov:beta") == ""  # no name to fall back on
    st = fc.stats
    assert st["events_function_unverified_parse_pending"] == 1 and st["events_function_parse_pending"] == 1
    release.set()
    _idle(w)
    assert _probe(fc, EventKind.UPROBE, "beta") == f"{BID.hex()}:beta+0x0"
    assert fc.stats["events_function_resolved_symtab"] == 1  # verified in the file once parsed


def test_the_name_lookup_of_a_probe_runs_on_the_worker(tmp_path: Path) -> None:
    """The file is indexed already; looking the probe up (name index, USDT notes) is a job too."""
    proc, _ = _setup(tmp_path, eb.Elf(build_id=BID, functions=["alpha", "beta"]))
    fc = FrameCanonicalizer(proc_root=str(proc), parse_wait=5.0)
    w = _worker(fc)
    fc.symbolizer.binary("/usr/lib/libx.so", root=str(proc / str(PID) / "root"))
    _loader(fc)
    release = _occupy(w)
    assert _probe(fc, EventKind.UPROBE, "alpha") == f"{BID.hex()}:alpha+0x0"
    assert _probe(fc, EventKind.USDT, "prov:alpha") == ""
    st = fc.stats
    assert st["events_function_unverified_parse_pending"] == 1 and st["events_function_parse_pending"] == 1
    assert st["symbolizer_binaries_loaded"] == 1
    release.set()
    _idle(w)
    assert _probe(fc, EventKind.UPROBE, "alpha") == f"{BID.hex()}:alpha+0x0"
    assert _probe(fc, EventKind.USDT, "prov:alpha") == ""  # read now: the file has no such probe
    st = fc.stats
    assert st["events_function_resolved_symtab"] == 1 and st["events_function_no_probe"] == 1


def test_without_a_wait_the_canonicalizer_parses_inline(tmp_path: Path) -> None:
    proc, offsets = _setup(tmp_path, eb.Elf(build_id=BID, functions=["alpha"]))
    fc = FrameCanonicalizer(proc_root=str(proc))
    ev, f = _event(offsets["alpha"])
    fc.canonicalize(ev)
    assert f.symbol == "alpha" and "symbolizer_parse_jobs_queued" not in fc.stats
