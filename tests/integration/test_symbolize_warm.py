"""``resolve_file``'s warm path (canonical/recentfiles.py): no ``stat`` per call, same answers.

Bounded staleness. Real files: ELF files written byte by byte (tests/integration/test_hostile_elf_builder.py)
and this machine's libstdc++. What a user would notice is checked: the warm
answers equal the full path's, the counters count every call, a file replaced
at a path is seen once ``recheck_seconds`` have passed (at once with 0), an
evicted (closed) binary is never answered from, a wrong expected build-id is
still refused.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.integration.test_hostile_elf_builder import Elf, write

LIBSTDCXX = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
RUNC = "/usr/sbin/runc"  # stripped Go: the lazily loaded .gopclntab answers


def _offsets(sym: Symbolizer, path: str, n: int) -> list[int]:
    b = sym.binary(path)
    t = max(b.load_all(), key=len)
    rng = random.Random(7)
    out = []
    for _ in range(n):
        i = rng.randrange(len(t))
        off = b.layout.offset_of(t.starts[i] + rng.randrange(max(1, t.ends[i] - t.starts[i])))
        if off is not None:
            out.append(off)
    out += [0, b.layout.size + 10]  # in no function / outside every segment
    return out


@pytest.mark.parametrize("path", [LIBSTDCXX, RUNC])
def test_warm_answers_equal_the_full_path_and_are_counted(path: str) -> None:
    if not Path(path).exists():
        pytest.skip(f"{path} not installed")
    always = Symbolizer(file_lines=False, recheck_seconds=0)
    warm = Symbolizer(file_lines=False)
    offsets = _offsets(always, path, 3000)
    always.close()
    always = Symbolizer(file_lines=False, recheck_seconds=0)  # lazy sources (runc: Go's table) load anew
    for _ in range(2):  # the second pass is all warm
        for off in offsets:
            a = always.resolve_file(path, off)
            w = warm.resolve_file(path, off, input=a.input)
            assert w.to_json() == a.to_json()
    sa, sw = always.stats(), warm.stats()
    keys = {k for k in sa if k.startswith("resolved_") or k in ("no_symbol", "offset_outside_file")}
    assert keys and {k: sw.get(k) for k in keys} == {k: sa[k] for k in keys}
    assert sum(sa[k] for k in keys) == 2 * len(offsets)
    assert len(always.recent) == 0 and len(warm.recent) == 1
    always.close()
    warm.close()


def test_a_replaced_file_is_seen_after_recheck_seconds(tmp_path: Path) -> None:
    path = tmp_path / "lib.so"
    old = write(path, Elf(build_id=b"\x01" * 20, functions=["old_a", "old_b"]))
    new_file = tmp_path / "new.so"
    write(new_file, Elf(build_id=b"\x02" * 20, functions=["new_a", "new_b", "new_c"]))
    at_once = Symbolizer(recheck_seconds=0)
    windowed = Symbolizer(recheck_seconds=0.5)
    for s in (at_once, windowed):
        r = s.resolve_file(str(path), old["old_b"])
        assert (r.symbol, r.build_id) == ("old_b", "01" * 20)
    os.replace(new_file, path)
    off = old["old_b"]
    assert at_once.resolve_file(str(path), off).build_id == "02" * 20  # checked on every call
    deadline = time.monotonic() + 0.5
    seen = windowed.resolve_file(str(path), off)
    if time.monotonic() < deadline:  # within the window the remembered file may still answer
        assert seen.build_id in ("01" * 20, "02" * 20)
    time.sleep(max(0.0, deadline - time.monotonic()) + 0.05)
    r = windowed.resolve_file(str(path), off)
    assert r.build_id == "02" * 20 and r.symbol.startswith("new_")
    at_once.close()
    windowed.close()


def test_an_evicted_binary_is_never_answered_from(tmp_path: Path) -> None:
    a, b = tmp_path / "a.so", tmp_path / "b.so"
    offs_a = write(a, Elf(build_id=b"\x0a" * 20, functions=["in_a"]))
    offs_b = write(b, Elf(build_id=b"\x0b" * 20, functions=["in_b"]))
    s = Symbolizer(max_binaries=1)
    first = s.resolve_file(str(a), offs_a["in_a"] + 1)
    assert s.resolve_file(str(b), offs_b["in_b"]).symbol == "in_b"  # evicts (and closes) a.so
    again = s.resolve_file(str(a), offs_a["in_a"] + 1)
    assert again.to_json() == first.to_json()
    st = s.stats()
    assert st["binaries_evicted"] >= 1 and st["binaries_loaded"] == 3  # a.so indexed again
    s.close()


def test_expected_build_id_is_still_checked_when_warm(tmp_path: Path) -> None:
    path = tmp_path / "lib.so"
    offs = write(path, Elf(build_id=b"\x0c" * 20, functions=["f"]))
    s = Symbolizer()
    assert s.resolve_file(str(path), offs["f"]).symbol == "f"  # remembered
    wrong = s.resolve_file(str(path), offs["f"], expected_build_id="0d" * 20)
    assert wrong.error == "build_id_mismatch" and not wrong.symbol
    right = s.resolve_file(str(path), offs["f"], expected_build_id="0c" * 20)
    assert right.symbol == "f" and not right.error
    s.close()


@pytest.mark.parametrize("path", [LIBSTDCXX, RUNC])
@pytest.mark.parametrize("recheck", [0.0, 1.0])
def test_resolve_file_many_equals_one_call_per_offset(path: str, recheck: float) -> None:
    if not Path(path).exists():
        pytest.skip(f"{path} not installed")
    probe = Symbolizer(file_lines=False)
    offsets = _offsets(probe, path, 2000)
    probe.close()
    one = Symbolizer(file_lines=False, recheck_seconds=0)
    many = Symbolizer(file_lines=False, recheck_seconds=recheck)
    expected = [one.resolve_file(path, o).to_json() for o in offsets]
    assert [r.to_json() for r in many.resolve_file_many(path, offsets)] == expected
    assert [r.to_json() for r in many.resolve_file_many(path, offsets)] == expected  # warm
    s1, s2 = one.stats(), many.stats()
    counted = [k for k in s1 if k.startswith("resolved_") or k in ("no_symbol", "offset_outside_file")]
    assert {k: 2 * s1[k] for k in counted} == {k: s2.get(k) for k in counted}
    assert many.resolve_file_many(path, []) == []
    one.close()
    many.close()
