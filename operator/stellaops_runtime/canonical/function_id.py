"""Function IDs: ``<build-id>:<symbol>+0x<offset>``, the key runtime evidence and static analysis share.

* ``build-id``: the hex GNU build-id of the mapped file, or its Go build-id, or the documented
  fallback; never empty and never containing ``:``, so the ID splits at its first ``:``.
* ``symbol``: the canonical demangled name (canonical.demangle). It may contain ``:`` and ``+``
  (``a::operator+(A const&)``, ``<a as b>::c``), so the offset splits at the LAST ``+0x``.
  It is empty for an unresolved frame, whose offset is then the file offset in the mapped file.
* ``offset``: from the symbol's start (0 for a function's entry), lower-case hex without leading
  zeros, so one frame has exactly one ID text and ``format(parse(text)) == text``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FunctionId",
    "format_function_id",
    "function_entry_id",
    "parse_function_id",
    "unresolved_function_id",
]

_HEX_DIGITS = "0123456789abcdef"


@dataclass(frozen=True, slots=True)
class FunctionId:
    """A parsed function ID; ``str()`` gives the canonical text back."""

    build_id: str
    symbol: str
    offset: int

    @property
    def resolved(self) -> bool:
        """False for an unresolved frame (no symbol; ``offset`` is a file offset)."""
        return bool(self.symbol)

    def __str__(self) -> str:
        return format_function_id(self.build_id, self.symbol, self.offset)


def format_function_id(build_id: str, symbol: str, offset: int) -> str:
    """``<build-id>:<symbol>+0x<offset>``; ``symbol`` "" for an unresolved frame (file offset)."""
    if not build_id or ":" in build_id:
        raise ValueError(f"function ID build-id must be non-empty and contain no ':': {build_id!r}")
    if offset < 0:
        raise ValueError(f"function ID offset must not be negative: {offset}")
    return f"{build_id}:{symbol}+{offset:#x}"


def function_entry_id(build_id: str, symbol: str) -> str:
    """The ID of a function's entry point (offset 0), as static analysis lists functions."""
    return format_function_id(build_id, symbol, 0)


def unresolved_function_id(build_id: str, file_offset: int) -> str:
    """The ID of a frame no symbol covers: ``<build-id>:+0x<file offset>``."""
    return format_function_id(build_id, "", file_offset)


def parse_function_id(text: str) -> FunctionId:
    """Inverse of :func:`format_function_id`; ValueError saying what is wrong on bad text."""
    if not isinstance(text, str):
        raise ValueError(f"function ID must be a string, not {type(text).__name__}")
    colon = text.find(":")
    if colon < 0:
        raise ValueError(f"function ID has no ':' after the build-id: {text[:200]!r}")
    if colon == 0:
        raise ValueError(f"function ID has an empty build-id: {text[:200]!r}")
    plus = text.rfind("+0x")
    if plus < colon:
        raise ValueError(f"function ID has no '+0x<offset>' after the symbol: {text[:200]!r}")
    digits = text[plus + 3 :]
    if not digits or digits.strip(_HEX_DIGITS):
        raise ValueError(f"function ID offset is not lower-case hex: {digits[:40]!r} in {text[:200]!r}")
    if len(digits) > 1 and digits[0] == "0":
        raise ValueError(f"function ID offset has leading zeros: {digits[:40]!r} in {text[:200]!r}")
    return FunctionId(text[:colon], text[colon + 1 : plus], int(digits, 16))
