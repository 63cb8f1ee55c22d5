"""What resolving one frame gave: the record the Symbolizer returns and the CLI prints.

Plain data, no I/O. ``source`` says where the symbol came from, best first:
``symtab``, ``dynsym``, ``dwarf``, ``gopclntab``, ``kallsyms``, then ``hint``
(the event source's own guess, kept only when nothing better resolved) and
``none``. ``error`` is empty when a symbol was found, else one of the
:class:`Outcome` values, which are also the names of the counters the agent
exports.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Source(enum.StrEnum):
    SYMTAB = "symtab"
    DYNSYM = "dynsym"
    DWARF = "dwarf"
    GOPCLNTAB = "gopclntab"
    KALLSYMS = "kallsyms"
    HINT = "hint"
    NONE = "none"


class Outcome(enum.StrEnum):
    """Why a frame has no symbol of its own (or how it was found)."""

    RESOLVED = "resolved"
    NO_SYMBOL = "no_symbol"  # file read fine, no function covers the offset
    OFFSET_OUTSIDE_FILE = "offset_outside_file"  # no loadable segment holds that file offset
    NOT_MAPPED = "not_mapped"  # the address is in no mapping of the process
    NOT_FILE_BACKED = "not_file_backed"  # anonymous memory, [vdso], [stack], JIT code
    NO_SUCH_PROCESS = "no_such_process"
    PROCESS_EXITED = "process_exited"  # vanished before (or while) its files were read
    UNREADABLE_FILE = "unreadable_file"  # missing, permission denied, I/O error
    DELETED_FILE = "deleted_file"  # maps says "(deleted)" and the file cannot be reached any more
    NOT_ELF = "not_elf"
    TRUNCATED_ELF = "truncated_elf"
    BAD_ELF = "bad_elf"
    NOT_REGULAR = "not_regular"  # a FIFO, device, socket or directory where a file was expected: refused
    BUDGET_EXCEEDED = "budget_exceeded"  # the file needs more bytes, symbols or time than its budget
    MALFORMED = "malformed"  # a symbol source is damaged (its decoder failed); the frame stays unresolved
    PARSE_PENDING = "parse_pending"  # the file is still being parsed in the background (agent parse worker)
    BUILD_ID_MISMATCH = "build_id_mismatch"  # the file found is not the one the process mapped
    NO_FILE = "no_file"  # no place to read the module from (process gone, no host-root match)
    UNKNOWN_KERNEL_SYMBOL = "unknown_kernel_symbol"
    KERNEL_ADDRESSES_HIDDEN = "kernel_addresses_hidden"
    KALLSYMS_UNREADABLE = "kallsyms_unreadable"
    BAD_INPUT = "bad_input"


RESOLVED_SOURCES = frozenset({Source.SYMTAB, Source.DYNSYM, Source.DWARF, Source.GOPCLNTAB, Source.KALLSYMS})


@dataclass(slots=True)
class Resolution:
    """One resolved (or not) frame."""

    input: str
    module: str = ""
    build_id: str = ""
    symbol: str = ""
    offset: int = 0  # from the symbol's start when resolved, else the file offset
    function_id: str = ""
    source: str = Source.NONE
    file_offset: int | None = None
    file_line: str = ""
    inlined: tuple[str, ...] = ()  # functions inlined at the address, innermost first (canonical/inlines.py)
    error: str = ""  # an Outcome value when no symbol was resolved
    detail: str = ""  # a human-readable reason to go with ``error``

    @property
    def resolved(self) -> bool:
        return self.source in RESOLVED_SOURCES

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input": self.input,
            "module": self.module,
            "build_id": self.build_id,
            "symbol": self.symbol,
            "offset": self.offset,
            "function_id": self.function_id,
            "source": str(self.source),
        }
        if self.file_offset is not None:
            out["file_offset"] = self.file_offset
        if self.file_line:
            out["file_line"] = self.file_line
        if self.inlined:
            out["inlined"] = list(self.inlined)
        if self.error:
            out["error"] = self.error
            if self.detail:
                out["detail"] = self.detail
        return out
