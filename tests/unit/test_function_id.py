"""Function IDs (canonical.function_id): format, the inverse parse, and hostile symbols."""

from __future__ import annotations

import random

import pytest

from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.canonical.function_id import (
    FunctionId,
    format_function_id,
    function_entry_id,
    parse_function_id,
    unresolved_function_id,
)

GNU_BUILD_ID = "2e2f1d7a0b9c4f5e8a6d3c1b0f9e8d7c6b5a4f3e"  # 20-byte GNU build-id, hex
GO_BUILD_ID = "pcvyEC8mJQ8s0jzLzqhz/JtQfkSd7W4J1lB-yfO4Q/bVb3Zq6p1dB4b0iG2qUu/vN8yr0JbS1a2B3c4D5e6"


def test_format_examples() -> None:
    assert format_function_id(GNU_BUILD_ID, "std::runtime_error::runtime_error(char const*)", 0x1A) == (
        f"{GNU_BUILD_ID}:std::runtime_error::runtime_error(char const*)+0x1a"
    )
    assert (
        format_function_id(GO_BUILD_ID, "main.(*List[...]).Push", 0)
        == f"{GO_BUILD_ID}:main.(*List[...]).Push+0x0"
    )
    assert function_entry_id("abc", "tcp_connect") == "abc:tcp_connect+0x0"
    assert unresolved_function_id("abc", 0x4F2A0) == "abc:+0x4f2a0"


def test_demangled_symbol_in_an_id() -> None:
    symbol = demangle("_ZNSt13runtime_errorC1EPKc")
    text = format_function_id(GNU_BUILD_ID, symbol, 12)
    assert parse_function_id(text) == FunctionId(GNU_BUILD_ID, symbol, 12)


HOSTILE = [
    "operator+(A const&, A const&)",
    "a::operator+=(int)",
    "std::basic_ostream<char, std::char_traits<char>>& std::operator<<<char>(std::ostream&, char const*)",
    "<alloc::vec::Vec<u8> as core::fmt::Debug>::fmt",
    "a::b+0x10",  # the symbol itself looks like an offset
    "x+0x",
    "+0x+0x+0x",
    ":::",
    "main.(*List[...]).Push-fm",
    "f() (.cold)",
    "name with spaces",
    "ünïcödé::函数",
    "tab\there",
    "",
]


@pytest.mark.parametrize("symbol", HOSTILE)
@pytest.mark.parametrize("offset", [0, 1, 0xDEADBEEF, 2**64 - 1])
def test_round_trip_hostile_symbols(symbol: str, offset: int) -> None:
    text = format_function_id(GNU_BUILD_ID, symbol, offset)
    parsed = parse_function_id(text)
    assert parsed == FunctionId(GNU_BUILD_ID, symbol, offset)
    assert str(parsed) == text
    assert parsed.resolved == bool(symbol)


def test_round_trip_random_symbols() -> None:
    rng = random.Random(3)
    alphabet = "ab:+0x<>()[]*&, ._-~/\\\"'"
    for _ in range(2000):
        symbol = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        offset = rng.randrange(0, 1 << 48)
        build_id = rng.choice([GNU_BUILD_ID, GO_BUILD_ID, "path-sha256-0123abcd"])
        assert parse_function_id(format_function_id(build_id, symbol, offset)) == FunctionId(
            build_id, symbol, offset
        )


@pytest.mark.parametrize(
    ("build_id", "offset", "message"),
    [
        ("", 0, "build-id"),
        ("ab:cd", 0, "build-id"),
        ("abc", -1, "negative"),
    ],
)
def test_format_rejects(build_id: str, offset: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_function_id(build_id, "f", offset)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no ':'"),
        ("abcdef", "no ':'"),
        (":f+0x0", "empty build-id"),
        ("abc:f", r"no '\+0x<offset>'"),
        ("abc:f+0x", "not lower-case hex"),
        ("abc:f+0x1A", "not lower-case hex"),
        ("abc:f+0xg", "not lower-case hex"),
        ("abc:f+0x1_0", "not lower-case hex"),
        ("abc:f+0x 1", "not lower-case hex"),
        ("abc:f+0x-1", "not lower-case hex"),
        ("abc:f+0x010", "leading zeros"),
        ("abc+0x10", "no ':'"),
        ("abc+0x10:f", r"no '\+0x<offset>'"),
    ],
)
def test_parse_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_function_id(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_function_id(b"abc:f+0x0")  # type: ignore[arg-type]


def test_parse_splits_build_id_at_first_colon_and_offset_at_last_plus0x() -> None:
    parsed = parse_function_id("bid:a::operator+(x)+0x10+0x20")
    assert parsed == FunctionId("bid", "a::operator+(x)+0x10", 0x20)


def test_function_id_is_a_frozen_slotted_record() -> None:
    fid = FunctionId("abc", "f", 1)
    with pytest.raises(AttributeError):
        fid.offset = 2  # type: ignore[misc]
    assert not hasattr(fid, "__dict__")
    assert {fid, FunctionId("abc", "f", 1)} == {fid}
