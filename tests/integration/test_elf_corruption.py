"""Corrupt copies of a real g++ binary: the canonicalizer may refuse a frame, never misname it.

A seeded, deterministic fuzzer of our own writes copies of a ``g++ -O1 -g``
build (tests/native/stella_cpp.cpp, built here) with one field of the ELF
header, of a section header or of a program header set to a value that
breaks assumptions (0, 1, all ones, the file's size, the old value ± 1, ...)
and resolves the same file offsets in each copy (with file:line and inlined
functions asked for, so DWARF is read too, when a DWARF section's header or
the ELF or a program header was damaged). For every copy: nothing raises, and
every frame resolved under the original's build-id names a function the
original's symbol tables have (an unresolved frame is fine; a wrong name is
not). A header cannot change a function's name without changing where names
are read from, so a name the original does not have is a defect of ours.

Found by it (2026-12-04): a ``.symtab`` whose ``sh_link`` names a section that
is not a string table (itself, ``.text``), or a ``.strtab`` whose
``sh_offset`` is off by one, gave every function a name made of the bytes it
then read (``\\x02+0x3d``, ``RKS4_+0x6``): they are now ``bad_elf``.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.canonical.symbolizer import Symbolizer
from tests.integration import test_hostile_elf_builder as eb

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "native" / "stella_cpp.cpp"
SEED = 20261204
MUTANTS = 150

SH_FIELDS = [  # ELF64 section header: (name, offset, width)
    ("name", 0, 4),
    ("type", 4, 4),
    ("flags", 8, 8),
    ("addr", 16, 8),
    ("offset", 24, 8),
    ("size", 32, 8),
    ("link", 40, 4),
    ("info", 44, 4),
    ("addralign", 48, 8),
    ("entsize", 56, 8),
]
PH_FIELDS = [("type", 0, 4), ("offset", 8, 8), ("vaddr", 16, 8), ("filesz", 32, 8), ("memsz", 40, 8)]
EH_FIELDS = [("phoff", 0x20, 8), ("shoff", 0x28, 8), ("phnum", 0x38, 2), ("shentsize", 0x3A, 2)]
EH_FIELDS += [("shnum", 0x3C, 2), ("shstrndx", 0x3E, 2)]


class Original:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.names: set[str] = set()
        self.fields: list[tuple[str, int, int]] = []
        self.sections: dict[str, tuple[int, int]] = {}  # name -> (index, header offset)
        funcs: list[tuple[int, int]] = []
        with path.open("rb") as f:
            elf = ELFFile(f)
            eh = elf.header
            for name, off, width in EH_FIELDS:
                self.fields.append((f"ehdr.{name}", off, width))
            for i, sec in enumerate(elf.iter_sections()):
                at = eh.e_shoff + i * eh.e_shentsize
                self.sections[sec.name] = (i, at)
                for name, off, width in SH_FIELDS:
                    self.fields.append((f"{sec.name}.{name}", at + off, width))
            for i in range(eh.e_phnum):
                at = eh.e_phoff + i * eh.e_phentsize
                for name, off, width in PH_FIELDS:
                    self.fields.append((f"ph{i}.{name}", at + off, width))
            for table in (".symtab", ".dynsym"):
                symsec = elf.get_section_by_name(table)
                assert isinstance(symsec, SymbolTableSection), table
                for sym in symsec.iter_symbols():
                    if sym.name:
                        self.names.update((sym.name, demangle(sym.name)))
                    if table == ".symtab" and sym["st_info"]["type"] == "STT_FUNC" and sym["st_size"]:
                        funcs.append((sym["st_value"], sym["st_size"]))
            loads = [s.header for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        rng = random.Random(SEED)
        self.offsets = []
        for start, size in sorted(rng.sample(sorted(funcs), min(24, len(funcs)))):
            vaddr = start + rng.randrange(size)
            seg = next(h for h in loads if h.p_vaddr <= vaddr < h.p_vaddr + h.p_filesz)
            self.offsets.append(vaddr - seg.p_vaddr + seg.p_offset)
        self.results = Symbolizer(file_lines=True).resolve_file_many(str(path), self.offsets)
        assert all(r.resolved for r in self.results), [r for r in self.results if not r.resolved]
        self.build_id = self.results[0].build_id

    def copy(self, dst: Path, edits: list[tuple[int, int, int]]) -> Path:
        data = bytearray(self.data)
        for off, width, value in edits:
            data[off : off + width] = value.to_bytes(width, "little")
        dst.write_bytes(bytes(data))
        return dst

    def field(self, label: str) -> tuple[int, int]:
        return next((off, width) for name, off, width in self.fields if name == label)

    def value(self, label: str) -> int:
        off, width = self.field(label)
        return int.from_bytes(self.data[off : off + width], "little")

    def misnamed(self, path: Path, *, file_lines: bool = True) -> list[str]:
        """Frames of ``path`` resolved under the original's build-id to a name the original lacks,
        or to the original's function at another offset (a file offset read at a wrong address).

        ``file_lines`` also reads DWARF (file:line, inlined functions): ~0.3 s a copy here.
        """
        got = Symbolizer(file_lines=file_lines).resolve_file_many(str(path), self.offsets)
        known = self.names | {n for was in self.results for n in was.inlined}
        return [
            f"{r.file_offset:#x}: {r.function_id[:120]!r} ({r.source}) inlined {r.inlined}"
            for r, was in zip(got, self.results, strict=True)
            if r.resolved
            and r.build_id == self.build_id
            and (
                r.symbol not in self.names
                or (r.symbol == was.symbol and r.offset != was.offset)
                or not set(r.inlined) <= known
            )
        ]


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Original:
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    out = tmp_path_factory.mktemp("corrupt") / "cpp_O1g"
    subprocess.run(["g++", "-O1", "-g", "-o", str(out), str(SOURCE)], check=True, capture_output=True)
    return Original(out)


def test_symbol_names_read_from_the_wrong_place_are_refused(original: Original, tmp_path: Path) -> None:
    symtab_index, _ = original.sections[".symtab"]
    text_index, _ = original.sections[".text"]
    strtab_offset = original.value(".strtab.offset")
    text_offset = original.value(".text.offset")
    link, link_width = original.field(".symtab.link")
    offset, offset_width = original.field(".strtab.offset")
    cases = {
        "link to itself": (link, link_width, symtab_index),
        "link to .text": (link, link_width, text_index),
        "strtab offset + 1": (offset, offset_width, strtab_offset + 1),
        "strtab offset at .text": (offset, offset_width, text_offset),
    }
    for label, edit in cases.items():
        path = original.copy(tmp_path / label.replace(" ", "_"), [edit])
        sym = Symbolizer()
        got = sym.resolve_file_many(str(path), original.offsets)
        assert original.misnamed(path) == [], label
        assert {r.error for r in got} == {"bad_elf"}, (label, got[0])
        assert "string table" in got[0].detail or "overlaps" in got[0].detail, got[0].detail
        assert sym.stats()["bad_elf"] == len(original.offsets)


def test_dwarf_read_from_another_sections_bytes_is_refused(original: Original, tmp_path: Path) -> None:
    """A DWARF-only copy (no ``.symtab``) whose ``.debug_str`` offset points at other bytes gave
    names such as ``e\\x07``: sections that overlap each other or the headers are ``bad_elf``;
    one whose ``.debug_str`` is empty gave the name ``None``: such names are no names."""
    if shutil.which("strip") is None:
        pytest.skip("binutils' strip not installed")
    dwarf_only = tmp_path / "dwarf_only"
    keep = ["--strip-all", "--wildcard", "--keep-section=.debug_*"]
    subprocess.run(["strip", *keep, "-o", str(dwarf_only), str(original.path)], check=True)
    copy = Original.__new__(Original)
    copy.__dict__.update(original.__dict__)
    copy.path, copy.data = dwarf_only, dwarf_only.read_bytes()
    with dwarf_only.open("rb") as f:
        elf = ELFFile(f)
        shoff, shentsize = elf.header.e_shoff, elf.header.e_shentsize
        index = {s.name: i for i, s in enumerate(elf.iter_sections())}
        text = elf.get_section_by_name(".text")
        assert text is not None
        text_offset = int(text["sh_offset"])
    dwarf_names = [r.source for r in Symbolizer().resolve_file_many(str(dwarf_only), original.offsets)]
    assert dwarf_names.count("dwarf") >= len(original.offsets) // 2, dwarf_names
    at = shoff + index[".debug_str"] * shentsize + 24  # sh_offset
    for value in (0, text_offset, 64):
        path = copy.copy(tmp_path / f"str{value}", [(at, 8, value)])
        assert copy.misnamed(path) == [], value
        r = Symbolizer().resolve_file(str(path), original.offsets[0])
        assert r.error == "bad_elf" and "overlaps" in r.detail, r
    # An empty .debug_str: pyelftools gives None for every name in it (they were named "None"),
    # and a plain DW_AT_name stood in for the unreadable linkage name ("run" for a member function),
    # also among the functions inlined at an address.
    path = copy.copy(tmp_path / "str_empty", [(at + 8, 8, 0)])
    assert copy.misnamed(path) == []
    step = range(text_offset, text_offset + 0x1000, 5)
    inlined = [
        r for r in Symbolizer(file_lines=True).resolve_file_many(str(dwarf_only), list(step)) if r.inlined
    ]
    assert len(inlined) > 20
    known = {n for r in inlined for n in r.inlined}
    offsets = [r.file_offset or 0 for r in inlined]
    got = Symbolizer(file_lines=True).resolve_file_many(str(path), offsets)
    assert [r.inlined for r in got if not set(r.inlined) <= known] == []


def test_a_segment_no_kernel_could_map_is_refused(original: Original, tmp_path: Path) -> None:
    """A PT_LOAD whose address and file offset differ modulo the page size (the kernel and ld.so
    refuse to map it) read every offset at a shifted address: the same names, wrong offsets."""
    loads = [label[: -len(".type")] for label, _, _ in original.fields if label.endswith(".type")]
    loads = [ph for ph in loads if ph.startswith("ph") and original.value(f"{ph}.type") == 1]
    text = next(
        ph
        for ph in loads
        if original.value(f"{ph}.offset")
        <= original.offsets[0]
        < (original.value(f"{ph}.offset") + original.value(f"{ph}.filesz"))
    )
    for delta in (1, -1, 0x800):
        off, width = original.field(f"{text}.vaddr")
        path = original.copy(
            tmp_path / f"shift{delta}", [(off, width, original.value(f"{text}.vaddr") + delta)]
        )
        assert original.misnamed(path, file_lines=False) == [], delta
        r = Symbolizer().resolve_file(str(path), original.offsets[0])
        assert r.error == "bad_elf" and "not mappable" in r.detail, r


def _interesting(width: int, old: int, size: int, rng: random.Random) -> int:
    top = (1 << (8 * width)) - 1
    values = [0, 1, top, top >> 1, size, size + 1, old + 1, old - 1, old * 2, rng.randrange(top + 1)]
    return rng.choice(values) & top


def test_seeded_header_fuzzing_never_misnames_a_frame(original: Original, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    size = len(original.data)
    misnamed: dict[str, list[str]] = {}
    outcomes: dict[str, int] = {}
    # Half the picks among the headers of the sections names are read from and of the ELF header.
    named_from = (".symtab", ".strtab", ".dynsym", ".dynstr", "ehdr")
    naming = [f for f in original.fields if f[0].startswith(named_from)]
    for i in range(MUTANTS):
        label, off, width = rng.choice(naming if i % 2 else original.fields)
        value = _interesting(width, original.value(label), size, rng)
        path = original.copy(tmp_path / f"m{i}", [(off, width, value)])
        # Raises on any exception: the test fails with it. DWARF is read for copies whose DWARF
        # sections' headers were damaged (reading it for every copy would take a minute).
        bad = original.misnamed(path, file_lines=label.startswith((".debug", "ehdr", "ph")))
        if bad:
            misnamed[f"{label}={value:#x}"] = bad[:3]
        r = Symbolizer().resolve_file(str(path), original.offsets[0])
        outcomes[r.error or "resolved"] = outcomes.get(r.error or "resolved", 0) + 1
        path.unlink()
    assert misnamed == {}
    # Not vacuous: some copies still resolve, some are refused for what was damaged.
    assert outcomes.get("resolved", 0) > MUTANTS // 4, outcomes
    assert outcomes.keys() - {"resolved"}, outcomes


def test_truncated_copies_are_refused_or_resolve_as_the_original(original: Original, tmp_path: Path) -> None:
    """Cut at every 1/64th of the file and at each header boundary: a cut file is never misread."""
    size = len(original.data)
    shoff = original.value("ehdr.shoff")
    cuts = sorted({size * k // 64 for k in range(64)} | {16, 63, 64, 65, shoff, shoff + 64, size - 1})
    for cut in cuts:
        path = tmp_path / f"cut{cut}"
        path.write_bytes(original.data[:cut])
        assert original.misnamed(path) == [], cut
        errors = {r.error for r in Symbolizer().resolve_file_many(str(path), original.offsets)}
        assert errors <= {"truncated_elf", "not_elf", "bad_elf"}, (cut, errors)


def _with_note(path: Path, desc: bytes, *, go: bool = False) -> int:
    """Write a crafted ELF whose one note holds ``desc`` (GNU type 3, or patched into Go's
    type 4); the file offset of its function."""
    offset = eb.write(path, eb.Elf(build_id=desc, functions=["noted_function"]))["noted_function"]
    if go:
        data = bytearray(path.read_bytes())
        at = data.index(b"GNU\0") - 12  # namesz, descsz, type, then the name
        data[at + 8 : at + 16] = (4).to_bytes(4, "little") + b"Go\0\0"
        path.write_bytes(bytes(data))
    return offset


@pytest.mark.parametrize(
    ("size", "go", "kept"),
    [
        *[
            (1, False, True),
            (20, False, True),
            (64, False, True),
            (65, False, False),
            (1 << 19, False, False),
        ],
        *[(83, True, True), (256, True, True), (257, True, False), (1 << 19, True, False)],
    ],
)
def test_build_id_notes_of_odd_sizes(tmp_path: Path, size: int, go: bool, kept: bool) -> None:
    """A build-id is the prefix of every function ID of its file: one longer than any real one
    (a hostile 512 KiB note gave 1 MB IDs) is skipped and the file gets the content-hash one."""
    desc = (b"abcdefgh" * (size // 8 + 1))[:size]
    path = tmp_path / "noted.so"
    offset = _with_note(path, desc, go=go)
    sym = Symbolizer()
    r = sym.resolve_file(str(path), offset)
    assert r.symbol == "noted_function", r
    if kept:
        assert r.build_id == (desc.decode() if go else desc.hex())
        assert "build_id_notes_oversized" not in sym.stats()
    else:
        assert r.build_id.startswith("sha256-") and len(r.build_id) == 47, r.build_id[:80]
        assert sym.stats()["build_id_notes_oversized"] == 1
    assert len(r.function_id) < 600


def test_names_are_cut_at_16_kib(tmp_path: Path) -> None:
    """docs/symbolization.md: "Names are cut at 16 KiB" (a symbol table's name with no end in sight)."""
    long_name = "f" * 40_000
    path = tmp_path / "long.so"
    offsets = eb.write(path, eb.Elf(functions=[long_name, "short_one"]))
    sym = Symbolizer()
    r = sym.resolve_file(str(path), offsets[long_name] + 1)
    assert (r.symbol, r.offset, r.source) == ("f" * 16_384, 1, "symtab")
    assert sym.resolve_file(str(path), offsets["short_one"]).symbol == "short_one"
