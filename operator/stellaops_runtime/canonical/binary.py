"""One ELF file's symbol sources, opened once per build-id and cached by the Symbolizer.

A :class:`Binary` answers "which function holds this file offset / address"
from its sources in rank order: ``.symtab``, ``.dynsym`` (both read when the
file is opened: milliseconds for an ordinary library), then DWARF and Go's
``.gopclntab``, each loaded the first time the sources before it miss (DWARF
costs seconds on big binaries; the pclntab tens of milliseconds). The file
stays open so that lazy sources can still be read after the path disappeared
(a container stopped, a library was upgraded); :meth:`close` releases it.

A separate debug file found for a stripped binary (canonical/debugfiles.py)
is opened as a Binary of its own and attached (:meth:`attach_debug`): its
``.symtab`` ranks as the binary's own symbol table would, its DWARF stands in
for the DWARF the binary lacks; addresses are the binary's link-time ones.

With an index cache (canonical/indexcache.py; ``Symbolizer(index_cache_dir=...)``)
the ``.symtab``/``.dynsym`` tables of a file with a content identity are
loaded from disk when a valid copy is there, and written there when they
were built; the lazy sources are read as before.

Every read is bounded (canonical/limits.py): opening and indexing a file is
one budget, each lazy source another; section headers and symbol tables are
read with ``struct``, and pyelftools is only built for DWARF, behind a
size check of the sections it would read. Any exception pyelftools or a
decoder raises on a damaged file becomes a ``malformed`` load error: the
frame stays unresolved and the reason is counted.

Every failure is an :class:`~stellaops_runtime.canonical.elflayout.ElfError`
whose ``reason`` is the outcome counted by the caller.

What is read after indexing (DWARF, ``.gopclntab``, inlined functions, and the
check that the kept file is still the one indexed) is in canonical/binarylazy.py.

Lazy sources are loaded through the Binary's parse gate
(canonical/parseworker.py): in the agent, on the parse-worker thread, so a
lookup that needs DWARF or ``.gopclntab`` may raise ``ParsePending`` instead
of decoding it on the pipeline thread. The loaded tables are replaced, never
changed in place, so the pipeline can search them while the worker adds one.
(``file_line`` reads DWARF on the caller's thread: only the CLI asks for it.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from stellaops_runtime.canonical import binarylazy, gopclnfind
from stellaops_runtime.canonical.addrindex import AddressTable
from stellaops_runtime.canonical.buildidclaims import stat_identity
from stellaops_runtime.canonical.elflayout import (
    ElfError,
    ElfLayout,
    file_build_id,
    read_layout,
)
from stellaops_runtime.canonical.indexcache import IndexCache
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS, MALFORMED, Limits
from stellaops_runtime.canonical.parseworker import InlineGate, ParseGate
from stellaops_runtime.canonical.quicklookup import QuickLookup
from stellaops_runtime.canonical.resolution import Source
from stellaops_runtime.canonical.rootopen import open_regular
from stellaops_runtime.canonical.sdtprobe import find_sdt_probe
from stellaops_runtime.canonical.symtab import SectionInfo, index_tables, read_section_table

if TYPE_CHECKING:  # pyelftools and the DWARF reader load only when DWARF is read (issue 13)
    from elftools.elf.elffile import ELFFile

    from stellaops_runtime.canonical.dwarfinfo import DwarfIndex
    from stellaops_runtime.canonical.inlines import Inlines


@dataclass(frozen=True, slots=True)
class Hit:
    """A function found for an address."""

    source: str
    symbol: str  # canonical (demangled) name
    start: int  # the function's entry address
    symbol_offset: int  # address - start


class Binary:
    """The symbol sources of one ELF file."""

    def __init__(
        self,
        *,
        path: str,
        f: BinaryIO,
        layout: ElfLayout,
        build_id: str,
        build_id_kind: str,
        identity: str = "",
        limits: Limits = DEFAULT_LIMITS,
        gate: ParseGate | None = None,
        index_cache: IndexCache | None = None,
    ) -> None:
        self.path = path
        self.gate: ParseGate = gate or InlineGate()
        self.build_id = build_id
        self.build_id_kind = build_id_kind
        self.identity = identity or build_id  # build-id + content digest: the cache key
        self.layout = layout
        self.limits = limits
        self._f = f
        self._sid = stat_identity(os.fstat(f.fileno()))  # as indexed: see binarylazy.unchanged
        self.stale = False  # a lazy read found the file changed since it was indexed
        self._elf: ELFFile | None = None
        self._tables: list[AddressTable] = []
        self._lazy: list[str] = []
        self._dwarf: DwarfIndex | None = None
        self._inlines: Inlines | None = None  # canonical/inlines.py, read once (_inlines_read)
        self._inlines_read = False
        self.load_errors: dict[str, str] = {}
        self.load_reasons: dict[str, str] = {}  # source -> outcome (budget_exceeded, malformed, ...)
        self._text_addr = 0
        self._sections: dict[str, SectionInfo] = {}
        self._section_list: list[SectionInfo] = []
        self.debug: Binary | None = None  # a separate debug file attached (canonical/debugfiles.py)
        self._quick: QuickLookup | bool | None = None  # made on first use; False: build-id unfit for IDs
        self.debug_file = ""  # where it was found, for people
        if layout.has_section_headers:
            budget = limits.budget(path)
            try:
                sections = read_section_table(f, layout, budget)
                # Only a content identity (never a bare build-id) names a cache file.
                cache = index_cache if identity and identity != build_id else None
                cached = cache.load(identity) if cache is not None else None
                if cached is not None:
                    self._tables = cached
                else:
                    self._tables = index_tables(sections, f, layout, budget)
                    if cache is not None:
                        cache.save(identity, self._tables)
            except ElfError:
                raise
            except Exception as e:
                raise ElfError(MALFORMED, f"section table unreadable: {type(e).__name__}: {e}") from None
            self._section_list = sections
            for sec in sections:
                self._sections.setdefault(sec.name, sec)
            text = self._sections.get(".text")
            self._text_addr = text.addr if text is not None else 0
            if ".debug_info" in self._sections or ".zdebug_info" in self._sections:
                self._lazy.append(Source.DWARF)
            if gopclnfind.may_have_table(self._sections):
                self._lazy.append(Source.GOPCLNTAB)
        elif layout.loads:
            # No section headers at all: only a Go table can still be found (in the segments).
            self._lazy.append(Source.GOPCLNTAB)

    # -- opening -----------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str,
        *,
        known_build_id: tuple[str, str] | None = None,
        identity: str = "",
        limits: Limits = DEFAULT_LIMITS,
        fd: int | None = None,
        gate: ParseGate | None = None,
        index_cache: IndexCache | None = None,
    ) -> Binary:
        """Index an open file (``fd``, taken over) or ``path``; OSError / ElfError when not usable."""
        if fd is None:
            fd = open_regular(path)[0]  # never blocks on a FIFO; regular files only
        f = os.fdopen(fd, "rb")  # kept open for lazy sources, closed by close()
        try:
            layout = read_layout(f)
            if known_build_id and known_build_id[0]:
                bid, kind = known_build_id
            else:
                bid, kind = file_build_id(f, layout, max_bytes=limits.max_file_bytes)
            return cls(
                path=path,
                f=f,
                layout=layout,
                build_id=bid,
                build_id_kind=kind,
                identity=identity,
                limits=limits,
                gate=gate,
                index_cache=index_cache,
            )
        except BaseException:
            f.close()
            raise

    def close(self) -> None:
        self._f.close()
        if self.debug is not None:
            self.debug.close()

    def attach_debug(self, debug: Binary, where: str = "") -> None:
        """Use the tables of ``debug``, this binary's separate debug file (same link-time addresses).

        Its ``.symtab`` ranks as this binary's own would (first), and its DWARF
        replaces the DWARF this binary lacks. Called once, before the Binary is shared.
        """
        self.debug = debug
        self.debug_file = where or debug.path
        self._quick = None  # its tables change here
        own = {t.source for t in self._tables}
        if Source.SYMTAB not in own:
            self._tables = [t for t in debug._tables if t.source == Source.SYMTAB] + self._tables
        if Source.DWARF not in self._lazy and Source.DWARF in debug._lazy:
            self._lazy.insert(0, Source.DWARF)

    def _dwarf_owner(self) -> Binary:
        """The file whose DWARF is read: this one when it has DWARF, else the attached debug file."""
        return binarylazy.dwarf_owner(self)

    @property
    def failure_reason(self) -> str:
        """Why a lazy source could not be read (the first one), "" when none failed."""
        return next(iter(self.load_reasons.values()), "")

    # -- lookups -----------------------------------------------------------

    @property
    def quick(self) -> QuickLookup | None:
        """This Binary's warm lookup (canonical/quicklookup.py), made on first use; None when its
        build-id cannot carry a function ID (callers then take :meth:`lookup` and its errors)."""
        q = self._quick
        if q is None:
            try:
                q = self._quick = QuickLookup(self)
            except ValueError:
                q = self._quick = False
        return q if isinstance(q, QuickLookup) else None

    @property
    def tables(self) -> list[AddressTable]:
        """The address tables loaded so far, best source first."""
        return list(self._tables)

    def load_all(self) -> list[AddressTable]:
        """Load every lazy source now (DWARF, gopclntab) and return all tables."""
        while self._lazy:
            self._load_lazy()
        return self.tables

    @property
    def lazy_pending(self) -> bool:
        """Whether some lazy source (DWARF, gopclntab) has not been tried yet."""
        return bool(self._lazy)

    def _load_lazy(self) -> None:
        """Load the next lazy source through the gate (ParsePending while it is read in the background)."""
        self.gate.run(("lazy", self.identity or self.path), lambda: binarylazy.load_next(self))

    @property
    def sources(self) -> list[str]:
        """Sources loaded so far, best first."""
        return [t.source for t in self._tables]

    def lookup(self, address: int) -> Hit | None:
        """The function containing virtual address ``address``, from the best source that has one.

        Loads lazy sources (through the gate) while the loaded ones miss: may raise ParsePending.
        """
        hit = self._lookup_loaded(address)
        while hit is None and self._lazy:
            self._load_lazy()
            hit = self._lookup_loaded(address)
        return hit

    def _lookup_loaded(self, address: int) -> Hit | None:
        for t in self._tables:
            i = t.find(address)
            if i >= 0:
                start = t.starts[i]
                return Hit(t.source, t.canonical_name(i), start, address - start)
        return None

    def lookup_file_offset(self, file_offset: int) -> tuple[int | None, Hit | None]:
        """(virtual address, hit) for a file offset; address None when no PT_LOAD maps it."""
        vaddr = self.layout.vaddr_of(file_offset)
        if vaddr is None:
            return None, None
        return vaddr, self.lookup(vaddr)

    def find_function(self, name: str) -> Hit | None:
        """The function named ``name`` (raw or canonical name), offset 0; may raise ParsePending."""
        hit = self._find_loaded(name)
        while hit is None and self._lazy:
            self._load_lazy()
            hit = self._find_loaded(name)
        return hit

    def _find_loaded(self, name: str) -> Hit | None:
        for t in self._tables:
            i = t.find_name(name)
            if i >= 0:
                return Hit(t.source, t.canonical_name(i), t.starts[i], 0)
        return None

    def inlined_at(self, address: int) -> tuple[str, ...]:
        """Canonical names of the functions inlined at ``address``, innermost first (canonical/inlines.py).

        The inline source is read once, through the gate (may raise ParsePending), and a DWARF
        one is asked through it too (a CU is decoded on first use); an unreadable one answers ()
        with its reason in ``load_errors["inlines"]`` (never a frame's failure reason)."""
        if not self._inlines_read:
            self.gate.run(("inlines", self.identity or self.path), lambda: binarylazy.load_inlines(self))
        src = self._inlines
        if src is None:
            return ()
        if src.kind == "dwarf":
            return self.gate.run(("inlined_at", self.identity or self.path, address), lambda: src.at(address))
        return src.at(address)

    def file_line(self, address: int) -> str:
        """``file:line`` from DWARF when the binary has a line table, else ""."""
        if self._dwarf is None:
            owned = self._dwarf_owner()._sections  # .zdebug_line: GCC's -gz=zlib-gnu
            if (
                ".debug_line" not in owned and ".zdebug_line" not in owned
            ) or "file_line" in self.load_reasons:
                return ""
            try:
                self._dwarf = binarylazy.dwarf_index(self)
            except Exception as e:  # budget, damaged file, pyelftools failure: no line, counted
                binarylazy.failed(self, "file_line", e)
                return ""
        return self._dwarf.file_line(address)

    def sdt_probe(self, provider: str, name: str) -> int | None:
        """Link-time address of USDT probe ``provider:name`` from ``.note.stapsdt``, or None."""
        return find_sdt_probe(self._f, self._sections, self.layout, provider, name)
