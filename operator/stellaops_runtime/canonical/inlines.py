"""Which functions a compiler inlined at an address: the frames a stack's return address hides.

Why this module exists: a function inlined into its caller leaves no frame of
its own on any stack; its code runs inside the caller's. Counting only the
physical frames would make ``query observed`` answer "not observed" for a
function that ran on every request, because a compiler chose to inline it.
Go inlines small functions by default, and C, C++ and Rust at ``-O2``. Where a
binary says what it inlined, the agent reads it, the way Go's own runtime
(``runtime.CallersFrames``) and ``llvm-symbolizer --inlines`` do:

- Go binaries, stripped or not: the inline tree of Go's function table
  (canonical/goinline.py);
- other binaries with DWARF, their own or a separate debug file
  (canonical/debugfiles.py): ``DW_TAG_inlined_subroutine`` entries
  (canonical/dwarfinline.py).

A binary with neither (a stripped C, C++ or Rust release build) cannot tell;
docs/symbolization.md says what a "not observed" is then worth.

Names are made canonical by :func:`~stellaops_runtime.canonical.demangle.demangle`,
the rule the symbol tables' names follow, so an inlined copy of a function
is counted under the name its out-of-line copy has (docs/function-ids.md).
The source answers for an ELF virtual address; the caller passes a return
address minus one, the call instruction's last byte (a return address may be
the first byte of the code after the inlined range).
"""

from __future__ import annotations

import logging
import os
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol, cast

from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.canonical.elflayout import ElfError, ElfLayout
from stellaops_runtime.canonical.limits import MALFORMED, Budget
from stellaops_runtime.canonical.symtab import SectionInfo

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

    from stellaops_runtime.canonical.binary import Binary

log = logging.getLogger(__name__)

# Longest chain kept: deeper nesting than this is damage or a loop, not code.
MAX_DEPTH = 64


class InlineSource(Protocol):
    """What canonical/goinline.py and canonical/dwarfinline.py provide (each counts its refusals in
    its own ``stats``)."""

    def inlined_at(self, vaddr: int) -> tuple[str, ...]: ...


class Inlines:
    """A binary's inline source with canonical names (cached per raw name)."""

    __slots__ = ("_names", "kind", "source")

    def __init__(self, kind: str, source: InlineSource) -> None:
        self.kind = kind  # "gopclntab" or "dwarf", as the frames' ``source`` spells them
        self.source = source
        self._names: dict[str, str] = {}

    def at(self, vaddr: int) -> tuple[str, ...]:
        """Canonical names of the functions inlined at ``vaddr``, innermost first; () when none."""
        raw = self.source.inlined_at(vaddr)
        if not raw:
            return ()
        names = self._names
        out = []
        for r in raw[:MAX_DEPTH]:
            n = names.get(r)
            if n is None:
                if len(names) >= 65_536:
                    names.clear()
                n = names[r] = demangle(r)
            out.append(n)
        return tuple(out)


def load_go(
    f: BinaryIO, layout: ElfLayout, sections: dict[str, SectionInfo], budget: Budget
) -> Inlines | None:
    """The Go inline tree of an open Go binary, or None when it has none we can read."""
    from stellaops_runtime.canonical.goinline import load_go_inlines

    src = load_go_inlines(f, layout, sections, budget)
    return Inlines("gopclntab", src) if src is not None else None


def load_dwarf(elf: ELFFile, budget: Budget) -> Inlines | None:
    """The DWARF inlined subroutines of a file with ``.debug_info`` (a pyelftools view of its own)."""
    from stellaops_runtime.canonical.dwarfinline import dwarf_inlines

    src = dwarf_inlines(elf, budget)
    return Inlines("dwarf", src) if src is not None else None


class PreadFile:
    """A read-only file object over a descriptor, reading with ``pread``: its position is its own.

    The Binary's file object is read by the parse worker (lazy symbol
    sources) while the pipeline thread asks the inline source about a frame;
    ``seek`` + ``read`` on one shared file object would interleave. Reads go
    through ``os.pread`` on the same descriptor, which never moves the
    descriptor's offset, so the two never disturb each other.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pos = 0

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self._pos = pos
        elif whence == os.SEEK_CUR:
            self._pos += pos
        else:
            self._pos = os.fstat(self._fd).st_size + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = max(0, os.fstat(self._fd).st_size - self._pos)
        data = os.pread(self._fd, n, self._pos)
        self._pos += len(data)
        return data

    def fileno(self) -> int:
        return self._fd

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


def load_for(b: Binary) -> Inlines | None:
    """The inline source of Binary ``b``: Go's inline tree for a Go file, else the DWARF of the file
    or of its attached debug file; None when it has neither. Raises ElfError (budget, damage)."""
    from stellaops_runtime.canonical import gopclnfind

    budget = b.limits.budget(b.path)
    sections = b._sections
    if gopclnfind.may_have_table(sections) or (not sections and b.layout.loads):
        go = load_go(b._f, b.layout, sections, budget)
        if go is not None:
            return go
    from stellaops_runtime.canonical.binarylazy import dwarf_owner, has_dwarf

    owner = dwarf_owner(b)
    if not has_dwarf(owner._sections):
        return None
    from elftools.elf.elffile import ELFFile

    from stellaops_runtime.canonical.dwarfinfo import check_dwarf_sections

    fd = owner._f.fileno()
    budget = owner.limits.budget(owner.path)
    check_dwarf_sections(fd, owner._section_list, owner.layout, budget)
    try:
        elf = ELFFile(cast("IO[bytes]", PreadFile(fd)))  # its own position: see PreadFile (duck-typed)
    except Exception as e:  # pyelftools raises many types on a damaged file
        raise ElfError(MALFORMED, f"section headers unreadable: {type(e).__name__}: {e}") from None
    return load_dwarf(elf, budget)
