"""Find a uprobe target's address ourselves, so BCC never reads a symbol table of a file we probe.

Given a symbol *name*, BCC's ``attach_uprobe``/``get_user_addresses`` walk the
file's ``.symtab`` and ``.dynsym`` in C (libbcc's bcc_elf.c): a table whose
``sh_entsize`` is 0 makes that a division by zero, SIGFPE, and the whole agent
(or ``probes run``) dies. The files probed are not all the operator's: a
container's own binary (a PURL target, a ``/proc/<pid>/root`` path, a file
renamed over a probed path) is whatever that container wrote, and it may
rewrite it in place at any moment, so a check before BCC's read can always be
raced. So the symbol tables are read here, in Python, bounded, with the reader
the symbolizer uses (canonical/symtab.py: entry sizes, string-table links and
offsets are checked against the file), and BCC is given the address:
``attach_uprobe(name=path, addr=...)``. With an address, libbcc's
``bcc_resolve_symname`` reads only the ELF header and the program headers
(through libelf, which checks them against the file: tests/integration/
test_native_symaddr.py fuzzes them) to turn the address into a file offset;
no symbol table is read, whatever the file holds at that moment.

The address is the one BCC finds by name (``_find_sym``): the value of the
first symbol of that name, in section order (``.dynsym`` before ``.symtab`` as
linkers lay them out) and in table order, at a non-zero address. Differences,
on purpose: only function symbols (``STT_FUNC``, ``STT_GNU_IFUNC``) defined in a
section are taken (BCC by name takes the first symbol of any type, then refuses
an address outside an executable segment, so a data object is found by neither); a separate debug
file is read only where BCC finds it by the file's GNU build-id
(``/usr/lib/debug/.build-id/``, on the agent's own file system: BCC reads
it first, but its match is overwritten by the file's own, so the file's own
tables come first here), not through ``.gnu_debuglink`` (a name the file gives,
looked up next to it: in a container, the container's choice),
``.gnu_debugdata`` or debuginfod: a symbol present only there is "not found".

No IFUNC is resolved, by BCC (0.26 to today's source) or here: an
``STT_GNU_IFUNC`` symbol (glibc's ``strlen``) is probed at the resolver it
names, which runs when the dynamic linker binds it, not at the implementation
it picks (``__strlen_avx2``: name that to count calls). Versions are not part
of a name: glibc's ``.dynsym`` holds ``memcpy@GLIBC_2.2.5`` (a plain function)
before the ``memcpy@@GLIBC_2.14`` IFUNC, so "memcpy" is the former, for BCC
and here alike (tests/integration/test_native_symaddr.py compares both).
"""

from __future__ import annotations

import os
import stat
from itertools import repeat
from typing import BinaryIO

from stellaops_runtime.canonical.debuglink import build_id_path
from stellaops_runtime.canonical.elflayout import (
    BUILD_ID_GNU,
    ElfError,
    ElfLayout,
    build_id_from_notes,
    read_layout,
    read_notes,
)
from stellaops_runtime.canonical.limits import Limits
from stellaops_runtime.canonical.symtab import function_symbols, read_section_table

# The symbolizer's bounds on bytes read into memory and symbols kept (canonical/limits.py), but
# not its 2 s per file: a lookup runs once per attach, and a busy node must not fail a probe
# on a large binary (libLLVM's 70,000 functions: 40 ms idle) for being slow.
_LIMITS = Limits(parse_seconds=120.0)
_TABLES = {"SHT_DYNSYM": ".dynsym", "SHT_SYMTAB": ".symtab"}
ET_EXEC, ET_DYN, PF_X = 2, 3, 1


class SymbolNotFound(Exception):
    """The file has no function symbol of that name at a non-zero address. ``hint``: where BCC by
    name would have looked too and this lookup does not ('' or "; ..."), for the failed reason."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message + hint)
        self.hint = hint


def find_address(path: str, symbol: str, *, debug_root: str = "/") -> int:
    """The address BCC's ``attach_uprobe(addr=...)`` takes for ``symbol`` in the ELF file at ``path``.

    As BCC does in effect, the file's own tables come first, then the debug file named by its GNU
    build-id under ``debug_root`` (``/usr/lib/debug/.build-id/xx/rest.debug``, on the agent's own
    file system).
    Raises :class:`SymbolNotFound`, ``ElfError`` (a file that is not ELF, or damaged: its
    message says why) or ``OSError`` (the file cannot be opened or read)."""
    try:  # a name from argv keeps its undecodable bytes as surrogates: those bytes are looked for
        want = symbol.encode("utf-8", "surrogateescape") + b"\0"
    except UnicodeEncodeError:  # a lone surrogate from elsewhere (JSON's \ud800): no ELF name is that
        raise SymbolNotFound(f"symbol {symbol!a} not found: not a name a file can hold") from None
    if len(want) < 2 or b"\0" in want[:-1]:
        raise SymbolNotFound(f"symbol {symbol!a} not found: not a name a file can hold")
    hint = ""
    with _open(path) as f:
        layout = read_layout(f)
        found = _first(f, layout, want)
        if not found:
            build_id, kind = build_id_from_notes(read_notes(f, layout))
            debug = build_id_path(build_id) if kind == BUILD_ID_GNU else None
            if debug is not None:
                found = _in_debug_file(os.path.join(debug_root, debug.lstrip("/")), want)
            if not found:
                hint = _unread_debug_info(f, layout, debug, debug_root)
    if not found:
        raise SymbolNotFound(f"symbol {symbol} not found", hint)
    if layout.e_type in (ET_EXEC, ET_DYN) and not any(
        s.flags & PF_X and s.vaddr <= found < s.vaddr + s.memsz for s in layout.loads
    ):  # BCC turns the address into a file offset through these only; say why, not its "could not"
        raise ElfError("not_code", f"its symbol {symbol} is at {found:#x}, in no executable segment")
    return found


def _in_debug_file(path: str, want: bytes) -> int:
    try:
        with _open(path) as d:
            return _first(d, read_layout(d), want)
    except (OSError, ElfError):
        return 0  # no usable debug file: not found, as in BCC


def _unread_debug_info(f: BinaryIO, layout: ElfLayout, debug: str | None, debug_root: str) -> str:
    """Why a symbol may be in debug information BCC by name would read and this lookup does not (and
    where the agent would read the debug file, unless one is there already)."""
    names = {s.name for s in read_section_table(f, layout, _LIMITS.budget("section names"))}
    unread = [n for n in (".gnu_debuglink", ".gnu_debugdata") if n in names]
    if not unread:
        return ""
    there = debug is not None and os.path.exists(os.path.join(debug_root, debug.lstrip("/")))
    linked = debug is not None and ".gnu_debuglink" in unread and not there
    where = f" (install it for the agent as {debug})" if linked else ""
    return f"; the debug information its {' and '.join(unread)} names is not read{where}"


def _open(path: str) -> BinaryIO:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block the agent
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise ElfError("not_regular", "not a regular file")
    return f


def _first(f: BinaryIO, layout: ElfLayout, want: bytes) -> int:
    """The value of the first function symbol named ``want`` (with its NUL) in section order, or 0."""
    budget = _LIMITS.budget("symbol lookup")
    sections = read_section_table(f, layout, budget)
    order = sorted((i, _TABLES[s.type]) for i, s in enumerate(sections) if s.type in _TABLES)
    for _, table in order:
        cols = function_symbols(
            sections,
            f,
            table,
            is64=layout.is64,
            little=layout.little,
            arm=False,  # BCC probes st_value as it is (a Thumb bit included)
            budget=budget,
        )
        strtab: bytes = getattr(cols.names, "strtab", b"")
        offsets: list[int] = getattr(cols.names, "offsets", [])
        # Each kept symbol's name compared where it begins (a name can be the tail of a longer
        # string: linkers share suffixes). Not every place the name appears in the string table:
        # a container's file can repeat it millions of times (614 MiB for 60 MiB of "name\0").
        if want in strtab:
            for i, hit in enumerate(map(strtab.startswith, repeat(want), offsets)):
                if hit and cols.starts[i]:
                    return cols.starts[i]
    return 0
