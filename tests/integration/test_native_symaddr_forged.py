"""A debug file a container wrote must not put a shared uprobe in the middle of an instruction.

Containers of one image share the image layer's file, and the kernel puts a
uprobe on that real file: the probe sits in the code of every process mapping
it (every container of the image; the host too when the file is shared with
it). native/symaddr.py read the address of a function only a separate debug
file names from a debug file found under the target's own root (the
container's) and trusted it once its build-id matched (a note anyone copies)
or, through ``.gnu_debuglink``, its CRC-32 (forced with four appended bytes).
A container could so move the probe mid-instruction (corrupting the code of
every process of the image) or onto another function.

Now (native/symdebug.py, native/symstart.py): the node's debug files are
looked for before the container's, and an address from a debug file under
the target's root is taken only where the binary's own tables say a function
starts (``.eh_frame_hdr``, ``.dynsym``, Go's ``gopclntab``). Debug files are
forged here the way a container would: the honest debug file with one
symbol's value changed, at the build-id path, or at the ``.gnu_debuglink``
name with its CRC-32 forced to the link's.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from stellaops_runtime.canonical.elflayout import read_layout
from stellaops_runtime.canonical.limits import Limits
from stellaops_runtime.canonical.symtab import read_section_table
from stellaops_runtime.native.symaddr import SymbolNotFound, find_address
from stellaops_runtime.native.symstart import confirmed_start
from tests.native import debuglink as dl

SYMBOL = "stella_add"  # not exported: in the stripped program, only its debug file names it
APP = "/opt/app/prog"


@pytest.fixture(scope="module")
def split() -> dl.Split:
    if dl.tools_missing() or shutil.which("nm") is None:
        pytest.skip(f"{dl.tools_missing() or 'nm'} is not installed")
    return dl.build_split("symdbg")


def _nm(path: Path, symbol: str) -> int:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    rows = (line.split() for line in out.splitlines())
    return next(int(row[0], 16) for row in rows if len(row) == 3 and row[2] == symbol)


def _place(dst: Path, src: Path | bytes) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(src, bytes):
        dst.write_bytes(src)
    else:
        shutil.copyfile(src, dst)
    return dst


def _with_value(debug: Path, symbol: str, value: int) -> bytes:
    """The bytes of ``debug`` with ``symbol``'s ``st_value`` in ``.symtab`` set to ``value``."""
    data = bytearray(debug.read_bytes())
    with debug.open("rb") as f:
        elf = ELFFile(f)
        tab = elf.get_section_by_name(".symtab")
        index = next(i for i, s in enumerate(tab.iter_symbols()) if s.name == symbol)
        at = tab["sh_offset"] + index * tab["sh_entsize"] + 8  # Elf64_Sym: st_value after 8 bytes
    struct.pack_into("<Q", data, at, value)
    return bytes(data)


def _force_crc(data: bytes, want: int) -> bytes:
    """``data`` with four bytes appended so that its CRC-32 is ``want`` (CRC-32 is affine over GF(2)
    in those bytes: solve the 32 x 32 system)."""
    base = zlib.crc32(data + bytes(4))
    cols = [zlib.crc32(data + (1 << i).to_bytes(4, "little")) ^ base for i in range(32)]
    rows: list[tuple[int, int]] = []  # (column combination as a bit mask, its CRC difference)
    for i, c in enumerate(cols):
        mask = 1 << i
        for m, v in rows:  # reduce by the pivots found so far (highest bit of v)
            if c ^ v < c:
                c, mask = c ^ v, mask ^ m
        if c:
            rows.append((mask, c))
            rows.sort(key=lambda r: -r[1])
    target, mask = want ^ base, 0
    for m, v in rows:
        if target ^ v < target:
            target, mask = target ^ v, mask ^ m
    assert target == 0
    forged = data + mask.to_bytes(4, "little")
    assert zlib.crc32(forged) == want
    return forged


def _bid_path(root: Path, split: dl.Split) -> Path:
    bid = dl.readelf_build_id(split.stripped)
    return root / "usr/lib/debug/.build-id" / bid[:2] / f"{bid[2:]}.debug"


def _lookup(app: Path, root: Path, roots: tuple[str, ...] = ()) -> int:
    fd = os.open(app, os.O_RDONLY)  # held by a descriptor, as every attach is
    try:
        return find_address(f"/proc/self/fd/{fd}", SYMBOL, where=(str(root), APP), debug_roots=roots)
    finally:
        os.close(fd)


def test_a_forged_build_id_debug_file_in_the_container_root_cannot_move_the_probe_mid_instruction(
    split: dl.Split, tmp_path: Path
) -> None:
    """Seen failing before the fix: the lookup returned the forged address (stella_add + 1)."""
    right = _nm(split.full, SYMBOL)
    root = tmp_path / "container"
    app = _place(root / APP.lstrip("/"), split.stripped)
    _place(_bid_path(root, split), split.debug)  # the honest file (a -dbgsym in the image): found
    assert _lookup(app, root) == right
    _place(_bid_path(root, split), _with_value(split.debug, SYMBOL, right + 1))
    with pytest.raises(SymbolNotFound) as e:
        _lookup(app, root)
    assert f"names it at {right + 1:#x}, where the file's own tables" in e.value.hint, e.value.hint
    assert "show no function start" in e.value.hint


def test_a_forged_debuglink_file_with_the_link_s_crc_cannot_move_the_probe(
    split: dl.Split, tmp_path: Path
) -> None:
    """The link's CRC-32 forced with four appended bytes: it passes the CRC check, and its address is
    still refused (seen failing before the fix: the forged address was returned)."""
    right = _nm(split.full, SYMBOL)
    root = tmp_path / "container"
    app = _place(root / APP.lstrip("/"), split.stripped)
    link = dl.crc32_of(split.debug)  # what the stripped program's .gnu_debuglink records
    forged = _force_crc(_with_value(split.debug, SYMBOL, right + 3), link)
    _place(root / "opt/app" / split.debug.name, forged)
    with pytest.raises(SymbolNotFound) as e:
        _lookup(app, root)
    assert f"({split.debug.name}" not in e.value.hint  # not refused by the CRC: by the function start
    assert f"names it at {right + 3:#x}" in e.value.hint, e.value.hint


def test_the_node_s_debug_file_is_preferred_over_the_container_s(split: dl.Split, tmp_path: Path) -> None:
    """A container's debug file naming another real function's start passes the start check (the
    binary's tables cannot tell names apart: docs/native-probes.md); the node's own debug file of the
    build, where there is one, is read first and wins."""
    right = _nm(split.full, SYMBOL)
    other = _nm(split.full, "stella_caller")
    root, node = tmp_path / "container", tmp_path / "node"
    app = _place(root / APP.lstrip("/"), split.stripped)
    _place(_bid_path(root, split), _with_value(split.debug, SYMBOL, other))
    assert _lookup(app, root) == other  # the limit of the rule: a real function start
    # the node's file at the debuglink place (/usr/lib/debug/<dir>/<name>) wins over the container's
    # build-id file too: root by root (seen failing before: the container's build-id file came first)
    linked = _place(node / "usr/lib/debug/opt/app" / split.debug.name, split.debug)
    assert _lookup(app, root, (str(node),)) == right
    linked.unlink()
    _place(_bid_path(node, split), split.debug)
    assert _lookup(app, root, (str(node),)) == right
    # the node's file is the node administrator's word: not asked for a function start
    _place(_bid_path(node, split), _with_value(split.debug, SYMBOL, right + 1))
    assert _lookup(app, root, (str(node),)) == right + 1


def test_function_starts_come_from_the_binary_s_own_tables(split: dl.Split, tmp_path: Path) -> None:
    """``.eh_frame_hdr`` confirms every function's start and nothing inside one; ``.dynsym`` confirms an
    exported function of a program built without unwind tables; a static function of that program is
    not confirmed (its debug file under a container's root gives no probe)."""
    limits = Limits()

    def starts(path: Path, addr: int) -> str:
        with path.open("rb") as f:
            layout = read_layout(f)
            sections = read_section_table(f, layout, limits.budget())
            return confirmed_start(f, layout, sections, addr, limits.budget())

    for name in ("stella_add", "stella_caller", "stella_return_address", "main"):
        at = _nm(split.full, name)
        assert starts(split.stripped, at) == ".eh_frame_hdr", name
        assert starts(split.stripped, at + 1) == "", name
    src = Path(dl.__file__).with_name("stella_c.c")
    bare = tmp_path / "bare"
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-fno-asynchronous-unwind-tables",
            "-fno-unwind-tables",
            "-rdynamic",
            "-o",
            str(bare),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    assert starts(bare, _nm(bare, "stella_add")) == ".dynsym"  # exported by -rdynamic
    assert starts(bare, _nm(bare, "stella_add") + 1) == ""
    assert starts(bare, _nm(bare, "stella_return_address")) == ""  # static, no FDE: not confirmed


def test_a_go_binary_s_function_starts_come_from_its_gopclntab(tmp_path: Path) -> None:
    """Go code has no ``.eh_frame``: a stripped Go program's function starts are its function table's
    entries, and nothing inside a function is one."""
    from tests.native import build

    go = build.find_go()
    if go is None or shutil.which("strip") is None or shutil.which("nm") is None:
        pytest.skip("go, strip or nm is not installed")
    build.GO_CACHE.mkdir(parents=True, exist_ok=True)
    env = {**build._env(tmp_path), "GOCACHE": str(build.GO_CACHE), "CGO_ENABLED": "0"}
    full, stripped = tmp_path / "go_full", tmp_path / "go_stripped"
    src = str(build.HERE / "stella_go.go")
    subprocess.run(
        [go, "build", "-o", str(full), src], cwd=tmp_path, env=env, check=True, capture_output=True
    )
    subprocess.run(["strip", "-o", str(stripped), str(full)], check=True, capture_output=True)
    limits = Limits()
    at = _nm(full, "main.main")
    with stripped.open("rb") as f:
        layout = read_layout(f)
        sections = read_section_table(f, layout, limits.budget())
        assert not any(s.name == ".eh_frame_hdr" for s in sections)
        assert confirmed_start(f, layout, sections, at, limits.budget()) == "gopclntab"
        assert confirmed_start(f, layout, sections, at + 1, limits.budget()) == ""


def test_a_damaged_eh_frame_hdr_or_dynsym_confirms_nothing_and_raises_nothing(
    split: dl.Split, tmp_path: Path
) -> None:
    """The probed file is a container's choice too: its search table and ``.dynsym`` bytes changed at
    random (seeded) give a confirmation or none, never an exception."""
    import random

    limits = Limits()
    at = _nm(split.full, SYMBOL)
    data = split.stripped.read_bytes()
    with split.stripped.open("rb") as f:
        layout = read_layout(f)
        sections = read_section_table(f, layout, limits.budget())
    spans = [(s.offset, s.size) for s in sections if s.name in (".eh_frame_hdr", ".dynsym") and s.size]
    assert len(spans) == 2
    rng = random.Random(37)
    path = tmp_path / "damaged"
    for _ in range(200):
        buf = bytearray(data)
        off, size = rng.choice(spans)
        for _ in range(rng.randint(1, 8)):
            buf[off + rng.randrange(min(size, 64) if rng.random() < 0.5 else size)] = rng.randrange(256)
        path.write_bytes(bytes(buf))
        with path.open("rb") as f:
            got = confirmed_start(f, layout, sections, at + rng.choice((0, 1)), limits.budget())
        assert got in ("", ".eh_frame_hdr", ".dynsym")


def test_libc6_dbg_s_functions_are_function_starts_of_the_stripped_libc() -> None:
    """The honest case the start check must keep: with Debian's libc6-dbg, the functions its debug file
    names are function starts the stripped libc's own tables confirm (all but a handful: the signal
    trampoline ``__restore_rt`` has no ordinary FDE), so libc6-dbg installed in an image still gives
    probes (where libc6-dbg is installed; CI installs it)."""
    from elftools.elf.elffile import ELFFile as Elf

    libc = Path("/lib/x86_64-linux-gnu/libc.so.6")
    bid = dl.readelf_build_id(libc) if libc.exists() and not dl.tools_missing() else ""
    debug = Path(f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug")
    if not bid or not debug.exists():
        pytest.skip("libc6-dbg (or readelf) is not installed")
    with debug.open("rb") as f:
        tab = Elf(f).get_section_by_name(".symtab")
        funcs = {
            s["st_value"]: s.name
            for s in tab.iter_symbols()
            if s["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC") and s["st_shndx"] != "SHN_UNDEF"
        }
    funcs.pop(0, None)
    limits = Limits()
    with libc.open("rb") as f:
        layout = read_layout(f)
        sections = read_section_table(f, layout, limits.budget())
        refused = sorted(
            n for a, n in funcs.items() if not confirmed_start(f, layout, sections, a, limits.budget())
        )
    assert len(funcs) > 1000
    assert len(refused) <= 5, refused
    assert "_int_malloc" not in refused and "_IO_new_file_overflow" not in refused


def test_an_eh_frame_hdr_pointer_of_an_unknown_encoding_confirms_nothing(
    split: dl.Split, tmp_path: Path
) -> None:
    """A search table whose ``eh_frame_ptr`` encoding no DWARF consumer knows cannot be read at the
    right place: it confirms nothing (it used to be read one byte off)."""
    limits = Limits()
    at = _nm(split.full, SYMBOL)
    with split.stripped.open("rb") as f:
        layout = read_layout(f)
        sections = read_section_table(f, layout, limits.budget())
    (hdr,) = [s for s in sections if s.name == ".eh_frame_hdr"]
    buf = bytearray(split.stripped.read_bytes())
    buf[hdr.offset + 1] = (buf[hdr.offset + 1] & 0xF0) | 0x05  # a low nibble no encoding uses
    path = tmp_path / "unknown_enc"
    path.write_bytes(bytes(buf))
    with path.open("rb") as f:
        assert confirmed_start(f, layout, sections, at, limits.budget()) != ".eh_frame_hdr"
