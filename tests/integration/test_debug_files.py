"""Separate debug files: Debian's libc6-dbg and programs split with objcopy in the test.

What is proven here, on real files:

- this machine's stripped libc (only ``.dynsym``) resolves its static and
  local functions through ``/usr/lib/debug/.build-id/xx/rest.debug`` from
  ``libc6-dbg``, which it misses without it; the debug file is found under
  the file's own (container) root and under the host root;
- a debug file planted in one container names only that container's copy;
- a program split with ``objcopy --only-keep-debug`` / ``strip`` /
  ``objcopy --add-gnu-debuglink`` gives, stripped, the very function IDs of
  its unstripped original, with the debug file next to it, in ``.debug/``,
  under ``/usr/lib/debug/<dir>/`` or in a debuginfod-style cache;
- a CRC mismatch, another build's debug file, a link that is a path, and
  corrupt files (truncated, not ELF, empty, a FIFO, damaged DWARF) are
  refused and counted; the binary keeps its own tables; nothing raises or hangs;
- the agent's config keys ``symbols.debugFiles`` / ``symbols.debuginfodCacheDir``
  and the ``symbolize`` CLI behave as documented.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.agent.canonicalizer_setup import make_canonicalizer
from stellaops_runtime.canonical.debugfiles import DebugSearch
from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.canonical.symbolizer import Symbolizer
from stellaops_runtime.contracts.config import AgentConfig
from tests.integration.split_container import other_split, place, split
from tests.integration.test_file_identity import aged  # the files written here count as old
from tests.native import debuglink as dl

LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")

__all__ = ["other_split", "split"]  # the fixtures, used here


# -- independent readers (pyelftools), not the canonicalizer's ----------------------------


def functions(path: Path, section: str = ".symtab") -> dict[int, tuple[int, set[str], set[str]]]:
    """start -> (size, names, bindings) of the sized FUNC symbols of ``section``."""
    out: dict[int, tuple[int, set[str], set[str]]] = {}
    with path.open("rb") as f:
        sec = ELFFile(f).get_section_by_name(section)
        if sec is None:
            return out
        for s in sec.iter_symbols():
            kind = s["st_info"]["type"]  # pyelftools names STT_GNU_IFUNC (10) STT_LOOS
            if kind not in ("STT_FUNC", "STT_GNU_IFUNC", "STT_LOOS") or not s["st_value"] or not s.name:
                continue
            if s["st_shndx"] == "SHN_UNDEF":
                continue
            size, names, binds = out.get(s["st_value"], (0, set(), set()))
            names.add(s.name)
            binds.add(s["st_info"]["bind"])
            out[s["st_value"]] = (max(size, s["st_size"]), names, binds)
    return out


def file_offset(path: Path, vaddr: int) -> int:
    with path.open("rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= vaddr < seg["p_vaddr"] + seg["p_filesz"]:
                return vaddr - seg["p_vaddr"] + seg["p_offset"]
    raise AssertionError(f"{vaddr:#x} is in no loadable segment of {path}")


def symbolizer(**search: object) -> Symbolizer:
    s = Symbolizer(clock=aged)
    s.set_debug_search(DebugSearch(**{"roots": (), **search}))  # type: ignore[arg-type]
    return s


def libc_debug_file() -> tuple[str, Path]:
    bid = dl.readelf_build_id(LIBC)
    debug = Path(f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug")
    assert debug.is_file(), f"{debug} missing: install Debian's libc6-dbg (scripts/setup.sh)"
    return bid, debug


@functools.cache
def _libc_hidden() -> tuple[tuple[int, int, frozenset[str]], ...]:
    """Functions the debug file's .symtab has and libc's .dynsym does not cover (read once)."""
    _, debug = libc_debug_file()
    covered = sorted((a, a + size) for a, (size, _, _) in functions(LIBC, ".dynsym").items())
    starts = [lo for lo, _ in covered]

    def in_dynsym(a: int) -> bool:
        i = bisect.bisect_right(starts, a)
        return any(lo <= a < hi for lo, hi in covered[max(0, i - 64) : i])

    full = functions(debug)
    return tuple(
        (a, size, frozenset(names))
        for a, (size, names, _) in sorted(full.items())
        if size > 1 and not in_dynsym(a)
    )


def libc_locals(n: int) -> list[tuple[int, int, frozenset[str]]]:
    """``n`` (seeded) functions the debug file's .symtab has and libc's .dynsym does not cover."""
    hidden = _libc_hidden()
    assert len(hidden) > n
    return sorted(random.Random(12).sample(hidden, n))


# -- Debian's libc6-dbg ------------------------------------------------------------------------


def test_libc6_dbg_names_libc_functions_dynsym_misses() -> None:
    bid, debug = libc_debug_file()
    picks = libc_locals(200)
    offsets = [file_offset(LIBC, a + size // 2) for a, size, _ in picks]
    plain, with_debug = symbolizer(enabled=False), symbolizer(roots=("/",))
    try:
        for (start, size, names), off in zip(picks, offsets, strict=True):
            r = plain.resolve_file(str(LIBC), off)
            assert r.symbol not in {demangle(n) for n in names}, (hex(start), r.to_json())
            r = with_debug.resolve_file(str(LIBC), off)
            assert not r.error, r.to_json()
            assert r.source == "symtab" and r.symbol in {demangle(n) for n in names}, (names, r.to_json())
            assert r.offset == size // 2 and r.build_id == bid
        stats = with_debug.stats()
        assert stats["debug_files_found_build_id"] == 1 and stats["debug_files_attached"] == 1
        assert stats["resolved_symtab"] == len(picks)
        assert with_debug.binary(str(LIBC)).debug_file == f"{debug} (build_id)"
        assert "debug_files_found_build_id" not in plain.stats()
    finally:
        plain.close()
        with_debug.close()


def test_debug_file_under_container_root_and_under_host_root(tmp_path: Path) -> None:
    bid, debug = libc_debug_file()
    (start, size, names) = libc_locals(1)[0]
    off = file_offset(LIBC, start + size // 2)
    bid_path = f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
    lib = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    with_dbg, without, host = tmp_path / "with", tmp_path / "without", tmp_path / "host"
    place(with_dbg, lib, LIBC)
    place(with_dbg, bid_path, debug)
    place(without, lib, LIBC)
    place(host, bid_path, debug)
    own = symbolizer()
    assert own.resolve_file(lib, off, root=str(with_dbg)).symbol in names
    assert own.resolve_file(lib, off, root=str(without)).symbol not in names
    assert own.stats()["debug_files_found_build_id"] == 1
    via_host = symbolizer(roots=(str(host),))
    r = via_host.resolve_file(lib, off, root=str(without))
    assert r.symbol in names and r.source == "symtab", r.to_json()
    assert via_host.binary(lib, root=str(without)).debug_file.startswith(f"{host}/usr/lib/debug/.build-id/")
    own.close()
    via_host.close()


def test_debug_file_planted_in_one_container_names_only_that_containers_copy(tmp_path: Path) -> None:
    bid, debug = libc_debug_file()
    (start, size, names) = libc_locals(1)[0]
    name = min(names, key=len)
    forged_name = name[:-1] + ("X" if name[-1] != "X" else "Y")
    data = debug.read_bytes()
    assert data.count(name.encode() + b"\0") >= 1
    forged = data.replace(b"\0" + name.encode() + b"\0", b"\0" + forged_name.encode() + b"\0")
    bid_path = f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
    lib = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    hostile, honest, bare = tmp_path / "hostile", tmp_path / "honest", tmp_path / "bare"
    for root in (hostile, honest, bare):
        place(root, lib, LIBC)
    place(honest, bid_path, debug)
    (hostile / bid_path.lstrip("/")).parent.mkdir(parents=True)
    (hostile / bid_path.lstrip("/")).write_bytes(forged)  # same build-id, other names
    off = file_offset(LIBC, start + size // 2)
    s = symbolizer()
    assert s.resolve_file(lib, off, root=str(hostile)).symbol == forged_name
    assert s.resolve_file(lib, off, root=str(honest)).symbol in names
    r = s.resolve_file(lib, off, root=str(bare))
    assert r.symbol != forged_name and r.symbol not in names
    ids = {s.identify(lib, root=str(root)).identity for root in (hostile, honest, bare)}
    assert len(ids) == 3 and all(i.startswith(f"{bid}@") for i in ids)
    assert s.stats()["binaries_loaded"] == 3
    s.close()


# -- programs split in the test: .gnu_debuglink -----------------------------------------------------


def assert_same_ids_as_original(s: Symbolizer, sp: dl.Split, path: str, root: str = "/") -> int:
    """Every function of the unstripped original, at its start and its middle: the same function ID."""
    orig = Symbolizer(clock=aged)
    n = 0
    for start, (size, _names, _) in functions(sp.full).items():
        for delta in {0, size // 2}:
            off = file_offset(sp.full, start + delta)
            want = orig.resolve_file(str(sp.full), off)
            got = s.resolve_file(path, off, root=root)
            assert want.function_id and got.function_id == want.function_id, (want.to_json(), got.to_json())
            n += 1
    orig.close()
    return n


@pytest.mark.parametrize(
    "where",
    ["{dir}/{name}", "{dir}/.debug/{name}", "/usr/lib/debug{dir}/{name}"],
    ids=["next_to_binary", "dot_debug_dir", "usr_lib_debug_dir"],
)
def test_debuglink_gives_the_unstripped_ids(split: dl.Split, tmp_path: Path, where: str) -> None:
    prog = "/opt/app/bin/prog"
    place(tmp_path, prog, split.stripped)
    place(tmp_path, where.format(dir="/opt/app/bin", name=split.debug.name), split.debug)
    s = symbolizer()
    bare = symbolizer(enabled=False)
    static_fn = functions(split.full)
    (addr,) = [a for a, (_, names, _) in static_fn.items() if "stella_return_address" in names]
    off = file_offset(split.full, addr)
    assert bare.resolve_file(str(split.stripped), off).error == "no_symbol"
    assert s.resolve_file(prog, off, root=str(tmp_path)).symbol == "stella_return_address"
    assert assert_same_ids_as_original(s, split, prog, str(tmp_path)) >= 10
    assert s.stats()["debug_files_found_debuglink"] == 1
    s.close()
    bare.close()


def test_debuginfod_cache_dir(split: dl.Split, tmp_path: Path) -> None:
    nolink = tmp_path / "prog"
    subprocess.run(
        ["objcopy", "--remove-section=.gnu_debuglink", str(split.stripped), str(nolink)], check=True
    )
    bid = dl.readelf_build_id(nolink)
    cache = tmp_path / "debuginfod"
    place(cache, f"{bid}/debuginfo", split.debug)
    s = symbolizer(debuginfod_dirs=(str(cache),))
    assert assert_same_ids_as_original(s, split, str(nolink)) >= 10
    assert s.stats()["debug_files_found_debuginfod"] == 1
    s.close()


def agent_symbolizer(symbols: dict[str, object]) -> Symbolizer:
    fc = make_canonicalizer(AgentConfig.model_validate({"symbols": symbols}), node_name="n")
    assert fc is not None
    return fc.symbolizer


def test_agent_config_keys(split: dl.Split, tmp_path: Path) -> None:
    nolink = tmp_path / "prog"
    subprocess.run(
        ["objcopy", "--remove-section=.gnu_debuglink", str(split.stripped), str(nolink)], check=True
    )
    bid = dl.readelf_build_id(nolink)
    place(tmp_path / "cache", f"{bid}/debuginfo", split.debug)
    place(tmp_path, "/opt/x/prog", split.stripped)
    place(tmp_path, "/opt/x/prog.debug", split.debug)
    (addr,) = [a for a, (_, n, _) in functions(split.full).items() if "stella_add" in n]
    off = file_offset(split.full, addr)
    on = agent_symbolizer({"debuginfodCacheDir": str(tmp_path / "cache")})
    assert on.resolve_file(str(nolink), off).symbol == "stella_add"
    assert on.resolve_file("/opt/x/prog", off, root=str(tmp_path)).symbol == "stella_add"
    off_ = agent_symbolizer({"debugFiles": False, "debuginfodCacheDir": str(tmp_path / "cache")})
    assert off_.resolve_file(str(nolink), off).error == "no_symbol"
    assert off_.resolve_file("/opt/x/prog", off, root=str(tmp_path)).error == "no_symbol"
    # hostRoot is searched too: the debug file in the host root, the binary in a container root
    ctr, host = tmp_path / "ctr", tmp_path / "host"
    place(ctr, "/usr/bin/prog", nolink)
    place(host, f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug", split.debug)
    assert agent_symbolizer({"hostRoot": str(host)}).resolve_file(
        "/usr/bin/prog", off, root=str(ctr)
    ).symbol == ("stella_add")
    assert agent_symbolizer({}).resolve_file("/usr/bin/prog", off, root=str(ctr)).error == "no_symbol"


# -- refused debug files -----------------------------------------------------------------------------


def test_crc_mismatch_is_refused_and_counted(split: dl.Split, tmp_path: Path) -> None:
    place(tmp_path, "/app/prog", split.stripped)
    dbg = place(tmp_path, f"/app/{split.debug.name}", split.debug)
    with dbg.open("ab") as f:
        f.write(b"\0")  # still a valid ELF file with the right build-id, but not the file linked
    (addr,) = [a for a, (_, n, _) in functions(split.full).items() if "stella_add" in n]
    s = symbolizer()
    r = s.resolve_file("/app/prog", file_offset(split.full, addr), root=str(tmp_path))
    assert r.error == "no_symbol" and r.build_id == dl.readelf_build_id(split.full)
    stats = s.stats()
    assert stats["debug_files_rejected_crc_mismatch"] == 1 and "debug_files_attached" not in stats
    s.close()


def test_debuglink_to_another_build_is_refused(
    split: dl.Split, other_split: dl.Split, tmp_path: Path
) -> None:
    assert dl.readelf_build_id(split.full) != dl.readelf_build_id(other_split.full)
    other_dbg = place(tmp_path, "/app/prog.debug", other_split.debug)
    link = dl.debuglink_section(b"prog.debug", dl.crc32_of(other_dbg))  # the CRC is right
    dl.with_debuglink(split.stripped, tmp_path / "app" / "prog", link)
    s = symbolizer()
    (addr,) = [a for a, (_, n, _) in functions(split.full).items() if "stella_add" in n]
    assert s.resolve_file("/app/prog", file_offset(split.full, addr), root=str(tmp_path)).error == "no_symbol"
    assert s.stats()["debug_files_rejected_build_id_mismatch"] == 1
    # and under the build-id path
    bid = dl.readelf_build_id(split.full)
    place(tmp_path, f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug", other_split.debug)
    place(tmp_path, "/app2/prog", split.stripped)
    s2 = symbolizer()
    assert (
        s2.resolve_file("/app2/prog", file_offset(split.full, addr), root=str(tmp_path)).error == "no_symbol"
    )
    assert s2.stats()["debug_files_rejected_build_id_mismatch"] == 1
    s.close()
    s2.close()


@pytest.mark.parametrize("link", [b"../../../etc/passwd", b"a/b.debug", b"..", b"\xff\xfe.debug", b""])
def test_debuglink_that_is_not_a_file_name_is_refused(split: dl.Split, tmp_path: Path, link: bytes) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_bytes(split.debug.read_bytes())  # would match, if it were followed
    dl.with_debuglink(split.stripped, tmp_path / "prog", dl.debuglink_section(link, dl.crc32_of(split.debug)))
    place(tmp_path, "/a/b.debug", split.debug)
    s = symbolizer()
    (addr,) = [a for a, (_, n, _) in functions(split.full).items() if "stella_add" in n]
    assert s.resolve_file("/prog", file_offset(split.full, addr), root=str(tmp_path)).error == "no_symbol"
    assert s.stats()["debug_files_rejected_bad_debuglink"] == 1
    s.close()


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncated, "truncated_elf"),
        (lambda d: os.urandom(4096), "not_elf"),
        (lambda d: b"", "not_elf"),
        (lambda d: d[:64], "truncated_elf"),
        ("fifo", "not_regular"),
        ("dir", "not_regular"),
        ("sparse", "budget_exceeded"),
    ],
    ids=["truncated", "random_bytes", "empty", "header_only", "fifo", "directory", "sparse_2gib"],
)
def test_corrupt_debug_file_is_refused_and_libc_keeps_its_own_tables(
    tmp_path: Path, damage: object, reason: str
) -> None:
    bid, debug = libc_debug_file()
    lib = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    place(tmp_path, lib, LIBC)
    target = tmp_path / f"usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug"
    target.parent.mkdir(parents=True)
    if damage == "fifo":
        os.mkfifo(target)  # must never block the open
    elif damage == "dir":
        target.mkdir()
    elif damage == "sparse":  # a valid debug file grown to 2 GiB of holes: over the 1 GiB file budget
        shutil.copyfile(debug, target)
        os.truncate(target, 2 << 30)
    else:
        assert callable(damage)
        target.write_bytes(damage(debug.read_bytes()))
    exported = next(a for a, (_, n, _) in functions(LIBC, ".dynsym").items() if "getaddrinfo" in n)
    s = symbolizer()
    r = s.resolve_file(lib, file_offset(LIBC, exported + 3), root=str(tmp_path))
    assert r.symbol == "getaddrinfo" and r.source == "dynsym" and r.offset == 3, r.to_json()
    stats = s.stats()
    assert stats[f"debug_files_rejected_{reason}"] == 1, stats
    assert "debug_files_attached" not in stats
    s.close()


def test_damaged_dwarf_in_debug_file_costs_only_file_lines(split: dl.Split, tmp_path: Path) -> None:
    """.debug_info overwritten: the debug file's .symtab still names functions; no file:line, no crash."""
    data = bytearray(split.debug.read_bytes())
    with split.debug.open("rb") as f:
        sec = ELFFile(f).get_section_by_name(".debug_info")
        start, size = sec["sh_offset"], sec["sh_size"]
    data[start : start + size] = b"\xff" * size
    place(tmp_path, "/app/prog", split.stripped)
    dbg = tmp_path / "app" / split.debug.name
    dbg.write_bytes(bytes(data))
    dl.with_debuglink(
        split.stripped, tmp_path / "app" / "prog", dl.debuglink_section(dbg.name.encode(), dl.crc32_of(dbg))
    )
    (addr,) = [a for a, (_, n, _) in functions(split.full).items() if "stella_add" in n]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "stellaops_runtime.cli.main",
            "symbolize",
            "--file",
            "/app/prog",
            "--root",
            str(tmp_path),
            hex(file_offset(split.full, addr) + 1),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["symbol"] == "stella_add" and row["offset"] == 1 and row["source"] == "symtab"
    assert not row.get("file_line")


def test_cli_resolves_a_stripped_program_through_its_debuglink(split: dl.Split) -> None:
    (addr,) = [a for a, (_, n, _) in functions(split.full).items() if "stella_return_address" in n]
    argv = [sys.executable, "-m", "stellaops_runtime.cli.main", "symbolize", "--file", str(split.stripped)]
    out = subprocess.run(
        [*argv, hex(file_offset(split.full, addr))], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["symbol"] == "stella_return_address" and row["source"] == "symtab"
    assert row["function_id"] == f"{dl.readelf_build_id(split.full)}:stella_return_address+0x0"
    assert row["file_line"].startswith(str(dl.HERE / "stella_c.c") + ":") or "stella_c.c:" in row["file_line"]


def test_build_id_path_wins_over_debuglink_and_complete_files_are_not_searched(
    split: dl.Split, tmp_path: Path
) -> None:
    bid = dl.readelf_build_id(split.full)
    place(tmp_path, "/app/prog", split.stripped)
    place(tmp_path, f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug", split.debug)
    bad = place(tmp_path, f"/app/{split.debug.name}", split.debug)
    with bad.open("ab") as f:
        f.write(b"x")  # the debuglink candidate would be refused, were it ever read
    s = symbolizer()
    assert s.binary("/app/prog", root=str(tmp_path)).debug_file.endswith(f"{bid[2:]}.debug (build_id)")
    stats = s.stats()
    assert stats["debug_files_found_build_id"] == 1
    assert not any(k.startswith("debug_files_rejected") for k in stats), stats
    # A file with both .symtab and DWARF is complete: nothing is looked for (nothing counted).
    place(tmp_path, "/app/full", split.full)
    b = s.binary("/app/full", root=str(tmp_path))
    assert b.debug is None and s.stats()["debug_files_found_build_id"] == 1
    s.close()


def test_debug_file_without_symbols_is_refused(split: dl.Split, tmp_path: Path) -> None:
    """The stripped copy itself has the right build-id, but neither .symtab nor DWARF."""
    bid = dl.readelf_build_id(split.full)
    nolink = tmp_path / "prog"
    subprocess.run(
        ["objcopy", "--remove-section=.gnu_debuglink", str(split.stripped), str(nolink)], check=True
    )
    place(tmp_path, f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug", split.stripped)
    s = symbolizer()
    (addr,) = [a for a, (_, n, _) in functions(split.full).items() if "stella_add" in n]
    assert s.resolve_file("/prog", file_offset(split.full, addr), root=str(tmp_path)).error == "no_symbol"
    assert s.stats()["debug_files_rejected_no_symbols"] == 1
    s.close()


def test_debug_files_are_looked_for_when_a_file_is_identified(split: dl.Split, tmp_path: Path) -> None:
    """Installed later: not seen until the file is identified again; replaced meanwhile: looked for again."""
    place(tmp_path, "/app/prog", split.stripped)
    (addr,) = [a for a, (_, n, _) in functions(split.full).items() if "stella_add" in n]
    off = file_offset(split.full, addr)
    s = symbolizer()
    assert s.resolve_file("/app/prog", off, root=str(tmp_path)).error == "no_symbol"
    dbg = place(tmp_path, f"/app/{split.debug.name}", split.debug)
    assert s.resolve_file("/app/prog", off, root=str(tmp_path)).error == "no_symbol"  # identified before
    s.close()
    s = symbolizer()
    fid = s.identify("/app/prog", root=str(tmp_path))
    assert fid.debug is not None and len(fid.debug.digest) == 64  # the whole SHA-256 (docs/function-ids.md)
    assert fid.identity.endswith("+debug@" + fid.debug.digest)
    tmp = dbg.with_suffix(".new")
    shutil.copyfile(split.debug, tmp)
    tmp.rename(dbg)  # the same bytes in a new inode, after the file was identified
    assert s.resolve_file("/app/prog", off, root=str(tmp_path)).symbol == "stella_add"
    stats = s.stats()
    assert stats["debug_files_rejected_changed"] == 1 and stats["debug_files_attached"] == 1
    assert stats["binaries_loaded"] == 1
    s.close()


def test_cli_with_root_also_reads_the_hosts_debug_files(tmp_path: Path) -> None:
    """``symbolize --file PATH --root DIR``: DIR has libc but no debug file; the host's (``/``) is used."""
    libc_debug_file()
    (start, size, names) = libc_locals(1)[0]
    lib = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    place(tmp_path, lib, LIBC)
    off = file_offset(LIBC, start + size // 2)
    argv = [sys.executable, "-m", "stellaops_runtime.cli.main", "symbolize", "--no-lines", "--file", lib]
    out = subprocess.run(
        [*argv, "--root", str(tmp_path), str(off)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["symbol"] in names and row["source"] == "symtab" and row["offset"] == size // 2
