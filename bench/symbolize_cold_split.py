"""Where a cold batch's instructions go, part by part, counted by cachegrind (load does not move counts).

Why it exists: issue 12 asks for libLLVM-14's cold batch at 0.8x llvm-symbolizer, and
``bench/symbolize_ab.py --cold-instructions --batch`` gives only three phases (index, first lookups,
warm). Deciding whether a change can reach the goal needs the first lookups split further: how much
is making 10,000 answers (the same batch once every name is known), and how much naming the distinct
functions the batch reaches (decoding each raw name from the string table, the demangler dispatch,
LLVM's Itanium demangler itself, the names sent to GNU's ``__cxa_demangle``). Each part is one child
under ``valgrind --tool=cachegrind`` minus a child that did the same setup and stopped; setups index
the file, collect the batch's entries and their raw names (alias groups of those entries get settled
by that), freeze the heap and turn the cyclic collector off, so a part counts only its own work.

Parts (millions of instructions):

- ``index``: ``Symbolizer.binary()`` (identity and index), from a child stopped after imports;
- ``first_lookups``: one cold ``resolve_file_many`` over the 10,000 offsets of bench/symbolize_batch.py;
- ``answers_named``: the same call once every reached entry is named: the answers alone;
- ``naming``: ``AddressTable.canonical_name`` of each distinct reached entry (decode, demangle, store);
- ``decode``: the decode of those names alone (canonical_name's inlined decode, in a loop);
- ``demangle``: ``demangle_uncached`` of those raw names (dispatch and demanglers);
- ``llvm``: pycxxfilt's ``itanium_demangle`` called directly on the ``_Z`` names (the binding's call
  and LLVM's work, no dispatch);
- ``gnu``: ``demangle_uncached`` of the names the dispatch sends to GNU's demangler (their markers).

Usage: ``.venv/bin/python bench/symbolize_cold_split.py [FILE ...]`` (default: libLLVM-14; about
ten valgrind runs per file, ~1 min). ``PYTHONPATH`` chooses the tree (default: this checkout's).
Prints one JSON object per file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cachegrind import instructions as instructions_of
from symbolize_batch import LIBLLVM, pick_addresses

_CHILD = r"""
import gc, json, os, sys
path, offsets, part = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
from stellaops_runtime.canonical import demangle as dm
from stellaops_runtime.canonical.symbolizer import Symbolizer
sym = Symbolizer(file_lines=False, recheck_seconds=3600)
dm.clear_cache()
gc.collect()
if part == "imports":
    os._exit(0)
b = sym.binary(path)
if part in ("indexed", "first_lookups"):
    if part == "first_lookups":
        answers = sym.resolve_file_many(path, offsets)
    os._exit(0)
q, t = b.quick, b.tables[0]
entries = {}
for o in offsets:
    v = q.vaddr(o)
    i = -1 if v is None else t.find(v)
    if i >= 0:
        entries.setdefault(i, None)
entries = list(entries)
raws = [t.names[i] for i in entries]  # settles the reached alias groups, for every part alike
cxx = [n for n in raws if n[:2] == "_Z"]
gnu = [n for n in cxx if ("C" in n and "CI" in n) or ("D" in n and ("Dt" in n or "DT" in n))
       or n.rfind("Z") > 1 or (n[2:3] == "T" and n[3:4] in ("H", "W"))]
st = t._strtab
def decode(i):
    strtab, offs, picks, max_bytes = st
    off = offs[picks[i]]
    end = strtab.find(b"\0", off, off + max_bytes)
    if end < 0:
        end = min(len(strtab), off + max_bytes)
    try:
        return strtab[off:end].decode()
    except UnicodeDecodeError:
        return strtab[off:end].decode("utf-8", "replace")
dm.load_bindings()  # the bindings load with the first mangled name: the direct call, not that
def llvm(n, f=dm._llvm_itanium):
    try:
        return f(n)
    except ValueError:
        return None
def same(n):
    return n
if part == "named" or part == "answers_named":
    for i in entries:
        t.canonical_name(i)
gc.collect()
gc.freeze()
gc.disable()
if part == "answers_named":
    answers = sym.resolve_file_many(path, offsets)
elif part == "naming":
    out = [t.canonical_name(i) for i in entries]
elif part == "decode":
    out = [decode(i) for i in entries]
elif part == "calls":  # the loop and a call per name: subtracted from decode
    out = [same(i) for i in entries]
elif part == "demangle":
    out = [dm.demangle_uncached(n) for n in raws]
elif part == "llvm":
    out = [llvm(n) for n in cxx]
elif part == "llvm_calls":  # the loop and a call per _Z name: subtracted from llvm
    out = [same(n) for n in cxx]
elif part == "gnu":
    out = [dm.demangle_uncached(n) for n in gnu]
os._exit(0)
"""

# part -> (counted child, baseline child)
_PARTS = {
    "index": ("indexed", "imports"),
    "first_lookups": ("first_lookups", "indexed"),
    "answers_named": ("answers_named", "named"),
    "naming": ("naming", "none"),
    "decode": ("decode", "calls"),
    "demangle": ("demangle", "none"),
    "llvm": ("llvm", "llvm_calls"),
    "gnu": ("gnu", "none"),
}


def split(path: str, offsets_file: str) -> dict[str, float]:
    """Millions of instructions of each part (see the module docstring)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parent.parent / "operator"))
    counts: dict[str, int] = {}

    def count(child: str) -> int:
        if child not in counts:
            cmd = [sys.executable, "-c", _CHILD, path, offsets_file, child]
            counts[child] = instructions_of(cmd, env)
        return counts[child]

    return {part: round((count(a) - count(b)) / 1e6, 1) for part, (a, b) in _PARTS.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="*")
    args = ap.parse_args()
    for path in args.targets or [LIBLLVM]:
        if not Path(path).exists():
            print(json.dumps({path: "missing"}))
            continue
        _, offsets = pick_addresses(path)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(offsets, f)
        try:
            print(json.dumps({path: split(path, f.name)}), flush=True)
        finally:
            os.unlink(f.name)


if __name__ == "__main__":
    main()
