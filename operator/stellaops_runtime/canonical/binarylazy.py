"""The lazy sources of a Binary: DWARF, Go's ``.gopclntab`` and inlined functions, read after indexing.

Why this module exists: canonical/binary.py opens a file and indexes its
symbol tables; what it reads *later*, at the first miss of the loaded
tables, is a different job with its own rules, kept here:

- a lazy source is read from the file the Binary keeps open, possibly long
  after it was indexed, so what was read is kept only if the file (and its
  attached debug file) still has the stat identity it was indexed with
  (canonical/buildidclaims.py); otherwise the source is refused as
  ``unreadable_file`` and the Binary marked stale, so its cache drops it;
- DWARF is read from the file itself, or from its separate debug file when
  only that one has it; pyelftools is built only here, behind a size check
  of the sections it would read, and any exception it raises on a damaged
  file is a ``malformed`` load error, never a crash;
- a source that fails keeps its reason (``load_reasons``), the outcome
  counted for frames it could have named.

The functions take the Binary; its methods of the same names call them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, BinaryIO

from stellaops_runtime.canonical import gopclnfind
from stellaops_runtime.canonical.addrindex import AddressTable, RawSymbol
from stellaops_runtime.canonical.buildidclaims import still_same
from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.canonical.limits import MALFORMED
from stellaops_runtime.canonical.resolution import Outcome, Source
from stellaops_runtime.canonical.symtab import SectionInfo

if TYPE_CHECKING:  # pyelftools and the DWARF reader load only when DWARF is read (issue 13)
    from elftools.elf.elffile import ELFFile

    from stellaops_runtime.canonical.binary import Binary
    from stellaops_runtime.canonical.dwarfinfo import DwarfIndex

__all__ = [
    "dwarf_index",
    "dwarf_owner",
    "failed",
    "go_functions",
    "has_dwarf",
    "load_inlines",
    "load_next",
    "pyelftools",
    "unchanged",
]

log = logging.getLogger("stellaops_runtime.canonical.binary")  # the messages' name before the split


def has_dwarf(sections: dict[str, SectionInfo]) -> bool:
    """Whether a file's sections hold DWARF debug information with content."""
    return any(
        n in sections and sections[n].type != "SHT_NOBITS" and sections[n].size
        for n in (".debug_info", ".zdebug_info")
    )


def pyelftools(f: BinaryIO) -> ELFFile:
    """Open the section view; any pyelftools failure is a damaged file, not a crash."""
    from elftools.elf.elffile import ELFFile

    try:
        return ELFFile(f)
    except ElfError:
        raise
    except Exception as e:  # pyelftools raises ELFError, construct errors, struct.error, AssertionError...
        raise ElfError(MALFORMED, f"section headers unreadable: {type(e).__name__}: {e}") from None


def dwarf_owner(b: Binary) -> Binary:
    """The file whose DWARF is read: ``b`` when it has DWARF, else its attached debug file."""
    debug = b.debug
    if debug is not None and not has_dwarf(b._sections) and has_dwarf(debug._sections):
        return debug
    return b


def dwarf_index(b: Binary) -> DwarfIndex:
    """The DWARF reader of ``b`` (or of its debug file), its sections checked against the budget."""
    from stellaops_runtime.canonical.dwarfinfo import DwarfIndex, check_dwarf_sections

    owner = dwarf_owner(b)
    if owner is not b:
        return dwarf_index(owner)
    budget = b.limits.budget(b.path)
    check_dwarf_sections(b._f.fileno(), b._section_list, b.layout, budget)
    if b._elf is None:
        b._elf = pyelftools(b._f)
    return DwarfIndex(b._elf, budget)


def unchanged(b: Binary) -> bool:
    """``b``'s file (and its debug file) as indexed: a lazy source is read later from the kept file,
    which a container may rewrite in place (its ctime changes: canonical/buildidclaims.py)."""
    same = still_same(b._f.fileno(), b._sid) if not b._f.closed else False
    return same and (b.debug is None or unchanged(b.debug))


def failed(b: Binary, source: str, e: BaseException) -> None:
    """Keep why ``source`` could not be read (its outcome and the message)."""
    reason = e.reason if isinstance(e, ElfError) else MALFORMED
    b.load_reasons[source] = reason
    b.load_errors[source] = f"{reason}: {type(e).__name__}: {e}"
    log.debug("%s: %s unreadable: %s", b.path, source, b.load_errors[source])


def load_next(b: Binary) -> AddressTable | None:
    """Read ``b``'s next lazy source into a table appended to its loaded ones (None: nothing kept)."""
    if not b._lazy:  # loaded by a job that finished meanwhile
        return None
    source = b._lazy.pop(0)
    try:
        if source == Source.DWARF:
            b._dwarf = b._dwarf or dwarf_index(b)
            syms = b._dwarf.functions()
        else:
            syms = go_functions(b)
        table = AddressTable(source, syms) if syms else None
    except Exception as e:  # pyelftools and the decoders raise many types on damaged input
        failed(b, source, e)
        return None
    if not unchanged(b):  # what was read may be another content than the one indexed
        b._dwarf = None
        b.stale = True  # the cache drops it: the next lookup identifies and indexes the file again
        changed = ElfError(Outcome.UNREADABLE_FILE, "the file changed after it was indexed")
        failed(b, source, changed)
        failed(b, "file_line", changed)
        return None
    if table is None:
        return None
    b._tables = [*b._tables, table]
    return table


def go_functions(b: Binary) -> list[RawSymbol]:
    """Go's function table of ``b``: its own section, ``.data.rel.ro`` of a PIE, or the segments
    (canonical/gopclnfind.py)."""
    return gopclnfind.function_symbols(b._f, b.layout, b._sections, b.limits.budget(b.path))


def load_inlines(b: Binary) -> None:
    """Read ``b``'s inline source once (canonical/inlines.py); an unreadable one leaves none, its
    reason in ``load_errors["inlines"]``."""
    if b._inlines_read:
        return
    from stellaops_runtime.canonical.inlines import load_for

    try:
        b._inlines = load_for(b)
    except Exception as e:  # budget, damaged tables, pyelftools: no inlines, the reason kept
        b.load_errors["inlines"] = f"{type(e).__name__}: {e}"
    if b._inlines is not None and not unchanged(b):
        b._inlines, b.load_errors["inlines"] = None, "the file changed after it was indexed"
    b._inlines_read = True
