"""Filling a Resolution: from a Binary at a file offset, or from kallsyms (the answer's one shape).

Why this module exists: split from canonical/symbolizer.py (which re-exports
it), it holds the one place that turns what a symbol source found into the
fields every answer carries (symbol, offset from the symbol, function ID,
source) or into the outcome saying why nothing was found, so the cold path,
the warm path (canonical/recentfiles.py) and the kernel path give the same
answer for the same frame. Pure apart from the lazy sources a Binary may load.
"""

from __future__ import annotations

from stellaops_runtime.canonical.binary import Binary, Hit
from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.canonical.function_id import format_function_id, unresolved_function_id
from stellaops_runtime.canonical.kallsyms import KernelSymbols
from stellaops_runtime.canonical.resolution import Outcome, Resolution, Source

__all__ = ["KERNEL_MODULE", "apply_hit", "fill", "kernel_hit", "module_label"]

KERNEL_MODULE = "[kernel]"


def module_label(module: str) -> str:
    """How a kernel object is named in a frame's ``module``: ``[kernel]`` or ``[<module>]``."""
    return f"[{module}]" if module else KERNEL_MODULE


def kernel_hit(res: Resolution, ks: KernelSymbols, i: int, offset: int, *, symbol: str = "") -> Resolution:
    module = ks.modules[i]
    res.module = module_label(module)
    res.symbol = demangle(symbol or ks.names[i])
    res.offset = offset
    res.source = Source.KALLSYMS
    res.build_id = ks.build_id(module)
    if res.build_id:
        res.function_id = format_function_id(res.build_id, res.symbol, offset)
    return res


def fill(res: Resolution, b: Binary, file_offset: int, *, file_lines: bool = False) -> Resolution:
    """Complete ``res`` from Binary ``b`` at ``file_offset`` (symbol, offset, ID, source or error)."""
    vaddr = b.layout.vaddr_of(file_offset)
    if vaddr is None:
        res.error = Outcome.OFFSET_OUTSIDE_FILE
        res.detail = f"file offset {file_offset:#x} is in no loadable segment"
        res.offset = file_offset
        # a negative offset (typed or damaged) has no ID: function IDs carry no negative offset
        res.function_id = unresolved_function_id(b.build_id, file_offset) if file_offset >= 0 else ""
        return res
    for t in b.tables:  # the loaded sources, best first: the warm path, without building a Hit
        i = t.find(vaddr)
        if i >= 0:
            start = t.starts[i]
            res.symbol = symbol = t.canonical_name(i)
            res.offset = offset = vaddr - start
            res.source = t.source
            res.function_id = format_function_id(b.build_id, symbol, offset)
            if file_lines:
                _details(res, b, vaddr)
            return res
    hit = b.lookup(vaddr)  # loads the lazy sources (DWARF, .gopclntab) while they miss
    if hit is None:
        res.error = b.failure_reason or Outcome.NO_SYMBOL
        res.detail = f"no function covers address {vaddr:#x} (sources: {', '.join(b.sources) or 'none'})"
        if b.load_errors:
            res.detail += "; not read: " + "; ".join(f"{k}: {v}" for k, v in b.load_errors.items())
        res.offset = file_offset
        res.function_id = unresolved_function_id(b.build_id, file_offset)
    else:
        apply_hit(res, b.build_id, hit)
        if file_lines:
            res.inlined = b.inlined_at(vaddr)
    if file_lines:
        res.file_line = b.file_line(vaddr)
    return res


def _details(res: Resolution, b: Binary, vaddr: int) -> None:
    """What the CLI adds to a resolved frame: file:line and the functions inlined at the address
    itself (as ``llvm-symbolizer --inlines`` reads an address: not a return address)."""
    res.file_line = b.file_line(vaddr)
    res.inlined = b.inlined_at(vaddr)


def apply_hit(res: Resolution, build_id: str, hit: Hit) -> None:
    res.symbol = hit.symbol
    res.offset = hit.symbol_offset
    res.source = hit.source
    res.function_id = format_function_id(build_id, hit.symbol, hit.symbol_offset)
