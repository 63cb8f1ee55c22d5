"""Canonical names of a real Rust build, for the tests of RustSec's generic-free function paths.

Builds tests/native/rust_advisory.rs (a crate named ``smallvec``) with rustc at
``-C opt-level=0`` (every function and closure keeps its symbol), once with
rustc's default legacy mangling and once with v0, and returns the names the
agent would store: each defined function symbol demangled by
:func:`stellaops_runtime.canonical.demangle.demangle`. Memoized per process;
a missing rustc skips the asking test.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

from stellaops_runtime.canonical.corpus import defined_function_symbols
from stellaops_runtime.canonical.demangle import demangle
from tests.native.build import find_rustc

SOURCE = Path(__file__).resolve().parent / "rust_advisory.rs"
MANGLINGS = {"legacy": (), "v0": ("-C", "symbol-mangling-version=v0")}


@functools.cache
def _build() -> dict[str, tuple[str, ...]] | str:
    rustc = find_rustc()
    if rustc is None:
        return "rustc not found"
    out = Path(tempfile.mkdtemp(prefix="stella-rust-names-"))
    names: dict[str, tuple[str, ...]] = {}
    for mangling, flags in MANGLINGS.items():
        exe = out / mangling
        cmd = [rustc, "-C", "opt-level=0", "--crate-name", "smallvec", *flags, "-o", str(exe), str(SOURCE)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if r.returncode != 0:
            return f"rustc failed: {r.stderr.strip()[:300]}"
        names[mangling] = tuple(sorted({demangle(s) for s in defined_function_symbols(exe)}))
    return names


def crate_names(mangling: str) -> tuple[str, ...]:
    """The stored (canonical) names of the build with ``mangling`` (legacy or v0) that name the
    crate ``smallvec``; skips the test when rustc is missing or fails."""
    import pytest

    built = _build()
    if isinstance(built, str):
        pytest.skip(built)
    return tuple(n for n in built[mangling] if "smallvec::" in n)
