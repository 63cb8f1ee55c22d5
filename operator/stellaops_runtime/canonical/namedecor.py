"""Symbol decorations every demangling rule removes first: ELF versions, LTO hashes, Mach-O's underscore.

Why it exists: these rules apply to every language before its demangler is
chosen (canonical/demangle.py) and also before a Go package path is read
(canonical/gonames.py), so they live below both. Pure string functions.
"""

from __future__ import annotations

import re

__all__ = ["HEX", "LLVM_SUFFIX", "drop_llvm_suffix", "is_legacy_rust", "strip_symbol_decorations"]

HEX = "0123456789abcdef"
LLVM_SUFFIX = ".llvm."
# LTO's ".llvm.<decimal hash>" as a whole suffix (then the end or another ".suffix"), never the name
_LLVM_HASH = re.compile(r"(?<=.)\.llvm\.[0-9]+(?=\.|\Z)", re.DOTALL)


def is_legacy_rust(name: str) -> bool:
    """True when a ``_ZN`` symbol is legacy Rust: its last path element is ``17h<16 hex>`` + ``E``.

    A ``.suffix`` after the final ``E`` (``.llvm.123``, ``.cold``) is allowed.
    """
    if not name.startswith("_ZN"):
        return False
    end = len(name) - 1
    if name[end] != "E":
        end = name.find("E.", 3)
        while end != -1 and not _legacy_hash_before(name, end):
            end = name.find("E.", end + 1)
        return end != -1
    return _legacy_hash_before(name, end)


def _legacy_hash_before(name: str, end: int) -> bool:
    # name[end] == "E"; the 20 characters before it must be "17h" + 16 lower-case hex digits
    # and at least one path element ("1a") must come between "_ZN" and the hash element
    return end >= 24 and name[end - 19 : end - 16] == "17h" and not name[end - 16 : end].strip(HEX)


def strip_symbol_decorations(name: str) -> str:
    """Drop an ELF symbol version (``@VER``/``@@VER``), every LTO ``.llvm.<digits>`` suffix and
    Mach-O's extra leading underscore (``__Z``/``__R`` -> ``_Z``/``_R``)."""
    at = name.find("@")
    if at > 0:
        name = name[:at]
    if LLVM_SUFFIX in name:
        name = drop_llvm_suffix(name)
    if name[:2] == "__" and (name[2:3] == "Z" or name[2:3] == "R"):
        name = name[1:]
    return name


def drop_llvm_suffix(name: str) -> str:
    # wherever it is among the suffixes: "f.llvm.123", "f.llvm.123.cold", "f.llvm.1.llvm.2.warm"
    return _LLVM_HASH.sub("", name)
