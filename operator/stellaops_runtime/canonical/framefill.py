"""How the FrameCanonicalizer fills a frame: resolved, unresolved, kernel, or a probed function.

Why this module exists: split from canonical/frames.py, it holds the small
pure rules every frame path shares, so the frame cache, the warm lookup
(canonical/quicklookup.py) and the Binary itself give one frame one answer:
a resolved frame's cached tuple (:data:`WarmAnswer`), what an unresolved frame
keeps (module, file offset, its build-id's ``<build-id>:+0x<file offset>``, the
hint demangled), a kernel frame's cached answer, which function a uprobe or
USDT probe is in, and when Tetragon's hint disagrees with the resolved name.
"""

from __future__ import annotations

from dataclasses import dataclass

from stellaops_runtime.canonical.binary import Binary, Hit
from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.canonical.function_id import format_function_id, unresolved_function_id
from stellaops_runtime.canonical.quicklookup import WarmAnswer
from stellaops_runtime.contracts.events import EventKind, StackFrame

__all__ = [
    "FrameAnswer",
    "KernelHit",
    "WarmAnswer",
    "hint_disagrees",
    "probed_function",
    "resolved_answer",
    "unresolved",
]

# A WarmAnswer and the canonical names of the functions inlined at the frame (canonical/inlines.py):
# what the frame cache keeps per (file identity, file offset).
FrameAnswer = tuple[str, int, str, str, str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class KernelHit:
    module: str
    build_id: str
    symbol: str
    offset: int
    function_id: str
    error: str


def probed_function(binary: Binary, kind: EventKind, name: str) -> Hit | None:
    """The function a uprobe (by name) or USDT probe (``provider:name``, by its note) is in."""
    if kind is EventKind.USDT:
        provider, _, probe = name.partition(":")
        pc = binary.sdt_probe(provider, probe)
        return binary.lookup(pc) if pc is not None else None
    return binary.find_function(name)


def resolved_answer(build_id: str, hit: Hit) -> WarmAnswer:
    return (
        hit.symbol,
        hit.symbol_offset,
        format_function_id(build_id, hit.symbol, hit.symbol_offset),
        str(hit.source),
        f"resolved_{hit.source}",
    )


def unresolved(f: StackFrame, build_id: str, source: str) -> None:
    """A frame nothing resolved: module + file offset kept, hint (if any) kept as the symbol."""
    f.build_id = build_id
    if f.symbol:
        f.symbol = demangle(f.symbol)
    f.symbol_offset = 0
    f.inlined = ()
    if not build_id:
        f.function_id = ""
    elif ":" in build_id or f.offset < 0:  # unfit for an ID: format_function_id says why (ValueError)
        f.function_id = unresolved_function_id(build_id, f.offset)
    else:  # unresolved_function_id's text, without a call and its checks
        f.function_id = f"{build_id}:+{hex(f.offset)}"
    f.source = source


def hint_disagrees(hint: str, resolved: str) -> bool:
    return hint != resolved and demangle(hint) != resolved
