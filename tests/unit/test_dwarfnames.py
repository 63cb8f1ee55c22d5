"""code_parts: how a subprogram's DWARF ranges become the functions the symbol table has."""

from __future__ import annotations

from stellaops_runtime.canonical.dwarfnames import code_parts


def test_entry_part_first_then_cold_part() -> None:
    # GCC lists the entry part first; the .cold part lies lower, in .text.unlikely
    assert code_parts([(0x1550, 0x1BD5), (0x1180, 0x1240)]) == [(0x1550, 0x1BD5), (0x1180, 0x1240)]


def test_a_cold_part_right_before_its_function_stays_apart() -> None:
    # main.cold ends where main starts (a real g++ -O2 layout): two symbols, two parts
    assert code_parts([(0x2330, 0x23A0), (0x22E7, 0x2330)]) == [(0x2330, 0x23A0), (0x22E7, 0x2330)]


def test_overlapping_ranges_are_one_part() -> None:
    assert code_parts([(0x100, 0x180), (0x150, 0x200), (0x40, 0x60)]) == [(0x100, 0x200), (0x40, 0x60)]


def test_empty_and_inverted_ranges_are_dropped() -> None:
    assert code_parts([(0x100, 0x140), (0x200, 0x200), (0x300, 0x2F0)]) == [(0x100, 0x140)]
    assert code_parts([(0x100, 0x100)]) == []
    # an empty entry range: the remaining parts keep their address order
    assert code_parts([(0x500, 0x500), (0x300, 0x310), (0x100, 0x110)]) == [(0x100, 0x110), (0x300, 0x310)]
