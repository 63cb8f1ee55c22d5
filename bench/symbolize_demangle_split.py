"""Where the demangling of a cold batch goes: the names symbolize_batch.py's batch reaches, by part.

Why it exists: the first lookups of a large C++ library (libLLVM-14) spend
about a quarter of their time naming functions, and earlier passes split that
only as "LLVM's demangler" and "the rest". This script takes the distinct raw
names the batch's 10,000 offsets reach (the same seeded offsets) and times, in
CPU seconds (``time.process_time``, best of ``--runs``, the cyclic collector
off), per name:

- ``demangle_uncached`` (canonical/demangle.py), what a first lookup calls;
- LLVM's Itanium demangler called directly (pycxxfilt), the work itself;
- the dispatch's tests alone (the GNU markers, the legacy-Rust test, the
  ``" const const"`` check on LLVM's output);
- the names sent to GNU's ``__cxa_demangle``: the whole path, the ctypes
  call and ``free`` alone, and the respelling (``canonicalize_gnu_cxx``).

Usage: ``.venv/bin/python bench/symbolize_demangle_split.py [--runs 15] [FILE]``
(default: libLLVM-14). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import sys
import time
from bisect import bisect_right
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import symbolize_batch as sb

from stellaops_runtime.canonical.cxx_gnu import canonicalize_gnu_cxx, gnu_cxa_demangle
from stellaops_runtime.canonical.demangle import demangle_uncached
from stellaops_runtime.canonical.symbolizer import Symbolizer


def reached_names(path: str) -> list[str]:
    """The distinct raw names of the entries the batch's offsets land in (its first table)."""
    _, offsets = sb.pick_addresses(path)
    s = Symbolizer()
    b = s.binary(path)
    t, q = b.tables[0], b.quick
    assert q is not None
    entries = set()
    for o in offsets:
        v = q.vaddr(o)
        if v is None:
            continue
        i = bisect_right(t.starts, v) - 1
        if i >= 0 and v >= t.ends[i]:
            i = t.find(v)
        if i >= 0:
            entries.add(i)
    names = [t.names[i] for i in sorted(entries)]
    s.close()
    return names


def gnu_bound(name: str) -> bool:
    """demangle_uncached's test for GNU's demangler (a copy: what the dispatch decides)."""
    return (
        ("C" in name and "CI" in name)
        or ("D" in name and ("Dt" in name or "DT" in name))
        or name.rfind("Z") > 1
        or (name[2:3] == "T" and (name[3:4] == "H" or name[3:4] == "W"))
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("file", nargs="?", default=sb.LIBLLVM)
    args = ap.parse_args()
    from pycxxfilt import itanium_demangle

    names = reached_names(args.file)
    cxx = [n for n in names if n.startswith("_Z")]
    gnu = [n for n in cxx if gnu_bound(n)]
    llvm = [n for n in cxx if not gnu_bound(n)]
    outs = []
    for n in llvm:
        try:
            outs.append(itanium_demangle(n) or "")
        except ValueError:
            outs.append("")
    gnu_cxa_demangle("_Z1fv")  # loads the library
    fn, free = gnu_cxa_demangle._fn, gnu_cxa_demangle._free
    assert fn is not None and free is not None
    status = ctypes.c_int(0)
    encoded = [n.encode() for n in gnu]

    def raw_gnu(name: str) -> str:
        ptr = fn(name.encode(), None, None, ctypes.byref(status))
        try:
            return ctypes.string_at(ptr).decode("utf-8", "replace")
        finally:
            free(ptr)

    texts = [raw_gnu(n) for n in gnu]

    def llvm_direct() -> None:
        for n in llvm:
            try:  # noqa: SIM105 (a context manager per name would be timed too)
                itanium_demangle(n)
            except ValueError:
                pass

    def tests() -> None:
        for n in llvm:
            _ = (
                n[-1] == "E" and n[2:3] == "N" and n[-20:-17] == "17h"
            ) or "." in n  # the legacy-Rust test's cheap part
            gnu_bound(n)
        for o in outs:
            _ = " const const" in o

    def call_free() -> None:
        for e in encoded:
            free(fn(e, None, None, ctypes.byref(status)))

    def per_name(f: Callable[[], object], n: int) -> float:
        best = float("inf")
        for _ in range(args.runs):
            t0 = time.process_time()
            f()
            best = min(best, time.process_time() - t0)
        return round(best * 1e6 / max(n, 1), 3)

    gc.disable()
    out = {
        "file": args.file,
        "names": len(names),
        "cxx_names": len(cxx),
        "gnu_bound": len(gnu),
        "us_per_name": {
            "demangle_uncached_all": per_name(lambda: [demangle_uncached(n) for n in names], len(names)),
            "demangle_uncached_llvm_bound": per_name(lambda: [demangle_uncached(n) for n in llvm], len(llvm)),
            "llvm_itanium_direct": per_name(llvm_direct, len(llvm)),
            "dispatch_tests_alone": per_name(tests, len(llvm)),
            "gnu_whole_path": per_name(lambda: [gnu_cxa_demangle(n) for n in gnu], len(gnu)),
            "gnu_ctypes_call_and_free": per_name(call_free, len(gnu)),
            "gnu_respelling": per_name(lambda: [canonicalize_gnu_cxx(t) for t in texts], len(gnu)),
        },
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
