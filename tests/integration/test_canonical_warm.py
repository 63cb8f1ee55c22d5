"""The warm paths give the cold path's answer for every address (canonical/quicklookup.py).

Not a timing test: the warm paths were rewritten for speed (flattened
segments and tables, no ``Hit`` or validated ID per frame, lookups
inlined), so what is checked here is that nobody can tell them apart from
the cold path by their answers. The reference is the full path of a
``Symbolizer`` with ``recheck_seconds=0`` (every call checks the file and
asks its Binary through ``fill``); it is compared with

- a warm ``resolve_file`` (second sight of every offset, no ``stat``),
- one ``resolve_file_many`` call over all offsets,
- the ``FrameCanonicalizer`` the agent runs: first sight of each frame (the
  frame cache misses: the Binary's warm lookup answers) and second sight
  (the frame cache answers),

over every byte of the executable segment of a C++ program built here with
g++ -O2 (GCC's ``.cold`` and ``.isra`` clones, gaps between functions, PLT),
and over every function's first byte, last byte, one byte past its end and
a byte inside it, of this machine's libstdc++ (``.dynsym``) and of Debian's
stripped Go binary runc (the lazily loaded ``.gopclntab``).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from stellaops_runtime.canonical.binary import Binary
from stellaops_runtime.canonical.corpus import build_cxx_sample
from stellaops_runtime.canonical.elflayout import PF_X
from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.resolution import Resolution
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent, StackFrame

LIBSTDCXX = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
RUNC = "/usr/sbin/runc"  # stripped Go: only the lazily loaded .gopclntab names its functions


@pytest.fixture(scope="module")
def cxx_sample(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_cxx_sample(workdir=tmp_path_factory.mktemp("warm-cxx"), opt="-O2"))


def _every_executable_offset(b: Binary) -> list[int]:
    out: list[int] = []
    for s in b.layout.loads:
        if s.flags & PF_X:
            out.extend(range(s.offset, s.offset + s.filesz))
    return out


def _function_edges(b: Binary, path: str) -> list[int]:
    """File offsets of every function's first and last byte, one byte past it, and one inside it."""
    rng = random.Random(path)
    out: set[int] = set()
    for t in b.load_all():
        for start, end in zip(t.starts, t.ends, strict=True):
            for v in (start, end - 1, end, start + rng.randrange(max(1, end - start))):
                off = b.layout.offset_of(v)
                if off is not None:
                    out.add(off)
    return sorted(out)


def _answer(r: Resolution) -> tuple[object, ...]:
    return (r.build_id, r.symbol, r.offset, r.function_id, str(r.source), r.error, r.file_offset)


def _frame_answer(f: StackFrame) -> tuple[object, ...]:
    return (f.build_id, f.symbol, f.symbol_offset, f.function_id, str(f.source))


def _as_frame(r: Resolution) -> tuple[object, ...]:
    """What the frame canonicalizer gives for a frame resolve_file answered ``r`` (no hint)."""
    if r.error:
        return (r.build_id, "", 0, r.function_id, "none")
    return (r.build_id, r.symbol, r.offset, r.function_id, str(r.source))


def _check(path: str, offsets: list[int]) -> None:
    cold = Symbolizer(file_lines=False, recheck_seconds=0)
    warm = Symbolizer(file_lines=False, recheck_seconds=3600)
    fc = FrameCanonicalizer(proc_root=None, host_root="/")
    try:
        reference = [cold.resolve_file(path, o) for o in offsets]
        expected = [_answer(r) for r in reference]
        assert any(not r.error for r in reference)
        # a warm Symbolizer: first sight of each offset (warm file, new offset), then second sight
        for _ in range(2):
            assert [_answer(warm.resolve_file(path, o)) for o in offsets] == expected
        assert [_answer(r) for r in Symbolizer(file_lines=False).resolve_file_many(path, offsets)] == expected
        assert len(cold.recent) == 0 and len(warm.recent) == 1  # the warm one answered without stat

        fc.remember_build_id("proc", path, reference[0].build_id)
        want = [_as_frame(r) for r in reference]
        for sight in ("first", "second"):  # frame cache misses, then hits
            frames = [StackFrame(module=path, offset=o) for o in offsets]
            for i in range(0, len(frames), 64):
                fc.canonicalize(
                    RuntimeCallEvent(
                        EventKind.SYSCALL,
                        0,
                        "n",
                        ProcessInfo(exec_id="proc", pid=0),
                        user_stack=frames[i : i + 64],
                    )
                )
            got = [_frame_answer(f) for f in frames]
            bad = [(hex(o), g, w) for o, g, w in zip(offsets, got, want, strict=True) if g != w]
            assert not bad, f"{sight} sight: {len(bad)} frames differ, first: {bad[:3]}"
        st = fc.stats
        resolved = sum(not r.error for r in reference)
        assert sum(v for k, v in st.items() if k.startswith("resolved_")) == 2 * resolved
        assert st["cache_hits"] == resolved  # the second sight of every resolved frame
        assert st.get("internal_error", 0) == 0
    finally:
        cold.close()
        warm.close()
        fc.symbolizer.close()


def test_every_byte_of_a_cxx_program_built_here(cxx_sample: str) -> None:
    sym = Symbolizer(file_lines=False)
    offsets = _every_executable_offset(sym.binary(cxx_sample))
    sym.close()
    assert len(offsets) > 1000
    _check(cxx_sample, offsets)


@pytest.mark.parametrize("path", [LIBSTDCXX, RUNC])
def test_every_function_edge_of_a_system_binary(path: str) -> None:
    if not Path(path).exists():
        pytest.skip(f"{path} is not installed (scripts/setup.sh installs it)")
    sym = Symbolizer(file_lines=False)
    offsets = _function_edges(sym.binary(path), path)
    sym.close()
    assert len(offsets) > 1000
    _check(path, offsets)


def test_the_index_cache_names_depend_on_the_split_column_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """symcolumns.py (split from addrindex.py) decides what an indexed table holds: another version of
    it must name other cache files, so a restarted agent never reads a table built by other rules."""
    from stellaops_runtime.canonical import indexcache, symcolumns

    before = indexcache.rules_fingerprint()
    other = tmp_path / "symcolumns.py"
    other.write_bytes(Path(symcolumns.__file__ or "").read_bytes() + b"\n# other rules\n")
    monkeypatch.setattr(symcolumns, "__file__", str(other))
    assert indexcache.rules_fingerprint() != before


def test_the_index_cache_names_depend_on_the_native_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C extension (canonical/_symindex.c, built into a shared object) builds the tables when it is
    loaded: another build of it must name other cache files, so a table a faulty build wrote is never
    read back by the build that fixed it; nor is one written by the Python path read as the extension's."""
    import types

    from stellaops_runtime.canonical import indexcache, symnative

    def build(content: bytes) -> types.ModuleType:
        so = tmp_path / f"_symindex-{len(content)}.so"
        so.write_bytes(content)
        module = types.ModuleType("stellaops_runtime.canonical._symindex")
        module.__file__ = str(so)
        return module

    monkeypatch.setattr(symnative, "_NATIVE", build(b"\x7fELF one build"))
    one = indexcache.rules_fingerprint()
    monkeypatch.setattr(symnative, "_NATIVE", build(b"\x7fELF another build"))
    another = indexcache.rules_fingerprint()
    monkeypatch.setattr(symnative, "_NATIVE", None)
    without = indexcache.rules_fingerprint()
    assert len({one, another, without}) == 3
