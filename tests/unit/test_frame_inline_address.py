"""Where the canonicalizer asks for the functions inlined at a frame (canonical/frames.py ``_inlined``).

A stack frame's offset is a return address: the call was the instruction
before it, so inlined functions are asked for one byte earlier; and a return
address at a function's entry (offset 0 from its symbol) belongs to a call at
the end of the function before it, so that frame gets none. The Binary is a
recorder of the addresses it is asked about (the rule under test is the
address arithmetic, not the reading of inline tables, which
tests/integration/test_go_inline_tree.py and test_dwarf_inline_chain.py check
on real binaries).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from stellaops_runtime.canonical.frames import FrameCanonicalizer
from stellaops_runtime.canonical.parseworker import ParsePending


class Recorder:
    def __init__(self, answer: Any = ("inl",)) -> None:
        self.asked: list[int] = []
        self.answer = answer
        self.path = "/app/server"
        self.layout = SimpleNamespace(vaddr_of=lambda off: off + 0x400000 if off < 0x10000 else None)

    def inlined_at(self, vaddr: int) -> tuple[str, ...]:
        self.asked.append(vaddr)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def canonicalizer() -> FrameCanonicalizer:
    return FrameCanonicalizer(proc_root=None, kallsyms_path="/nonexistent")


def test_asked_one_byte_before_the_return_address() -> None:
    fc, b = canonicalizer(), Recorder()
    assert fc._inlined(b, 0x1234, 0x34) == ("inl",)  # type: ignore[arg-type]
    assert b.asked == [0x401233]


def test_a_return_address_at_a_functions_entry_gets_none() -> None:
    fc, b = canonicalizer(), Recorder()
    assert fc._inlined(b, 0x1234, 0) == ()  # type: ignore[arg-type]
    assert b.asked == []


def test_an_offset_in_no_segment_gets_none() -> None:
    fc, b = canonicalizer(), Recorder()
    assert fc._inlined(b, 0x20000, 8) == ()  # type: ignore[arg-type]
    assert b.asked == []


def test_pending_is_none_and_counted_a_bug_is_empty_and_counted() -> None:
    fc = canonicalizer()
    assert fc._inlined(Recorder(ParsePending("reading")), 0x10, 4) is None  # type: ignore[arg-type]
    assert fc._inlined(Recorder(RuntimeError("decoder bug")), 0x10, 4) == ()  # type: ignore[arg-type]
    assert (fc.counters["inline_parse_pending"], fc.counters["inline_internal_error"]) == (1, 1)
