"""Where a file has code: DWARF ranges of code the linker threw away must name no address.

Why this module exists: ``--gc-sections`` (and COMDAT and LTO partitions) drops the sections of
functions nothing calls but keeps their DWARF. The linker resolves the dropped code's addresses
to a tombstone: GNU ld and gold write 0, so the dropped function's ``DW_AT_low_pc``/
``DW_AT_high_pc`` say ``[0, size)``, and so do the DIEs of everything inlined into it; lld writes
-1 or -2. In a position-independent executable ``[0, size)`` holds ``.init``, ``.plt`` and the start
of ``.text``: a PLT stub resolved as the dropped function, and (its inlined DIEs being deeper
than any real function's) every frame of a real function there carried the dropped function's
inlined callees (tests/integration/test_dwarf_discarded_code.py). A DWARF range is therefore
kept only when it starts inside an allocated, executable section of the file (a separate debug
file keeps those sections' headers, as ``SHT_NOBITS``, with their addresses and flags).
"""

from __future__ import annotations

from bisect import bisect_right

from elftools.elf.elffile import ELFFile

__all__ = ["CodeRanges"]

_SHF_ALLOC = 0x2
_SHF_EXECINSTR = 0x4


class CodeRanges:
    """The address ranges of a file's executable sections; ``unknown`` when it names none."""

    __slots__ = ("_ends", "_starts", "unknown")

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        spans = sorted((lo, hi) for lo, hi in spans if hi > lo)
        self._starts = [lo for lo, _ in spans]
        self._ends = [hi for _, hi in spans]
        # No executable section at all (section headers damaged or unusual): nothing to judge by,
        # every range is kept as before.
        self.unknown = not spans

    @classmethod
    def of(cls, elf: ELFFile) -> CodeRanges:
        spans: list[tuple[int, int]] = []
        try:
            for sec in elf.iter_sections():
                flags = int(sec["sh_flags"])
                if flags & _SHF_ALLOC and flags & _SHF_EXECINSTR:
                    addr = int(sec["sh_addr"])
                    spans.append((addr, addr + int(sec["sh_size"])))
        except Exception:  # damaged section headers: pyelftools raises anything
            spans = []
        return cls(spans)

    def holds(self, low: int, high: int) -> bool:
        """Whether ``[low, high)`` is code: non-empty and starting inside an executable section."""
        if high <= low:
            return False
        if self.unknown:
            return True
        i = bisect_right(self._starts, low) - 1
        return i >= 0 and low < self._ends[i]

    def holds_all(self, ranges: list[tuple[int, int]]) -> bool:
        """Whether a function's ranges are code: each non-empty one starts inside a section.

        An empty range (start == end, which GCC writes in range lists) is no code at all, kept or
        dropped, and judges nothing (``code_parts`` skips it); counting it as outside left a real
        function without its DWARF name (tests/integration/test_dwarf_empty_range.py).
        """
        return all(self.holds(low, high) for low, high in ranges if high > low)
