"""What matching RustSec's generic-free paths costs: the parser, ``query observed``, the witness bridge.

A RustSec path (``smallvec::SmallVec::insert_many``) cannot be matched in SQL:
``observed`` narrows an image's rows with ``LIKE '%::<last segment>%'`` and
reads the generics away in Python (store/rust_paths.py); the witness bridge
parses the names of the rows it drains. This measures, on the names of a real
Rust program (the stable toolchain's librustc_driver, every defined function
symbol demangled as the agent does: ~71,000 names, 150 characters on average,
in one image):

- ``parse``: microseconds per name of ``generic_free_paths`` (uncached), and of
  ``matches`` for a name the substring test turns away;
- ``query``: ``queries.observed`` on SQLite and PostgreSQL (tests/pg.py's
  private server) for a Rust path, a C++-style ``a::b`` name and a plain name:
  rows returned and the median of ``--runs`` runs, in milliseconds;
- ``bridge``: ``WitnessBridge.observe`` over every name as a drained row,
  microseconds per row, with one exact claim, and with Rust path claims added.

Runs on the tree it imports (PYTHONPATH): on a tree without rust_paths the
Rust rows are "n/a" and Rust paths are asked as plain names. Usage::

    PYTHONPATH=operator:. .venv/bin/python bench/rust_names_bench.py [--runs 5] [--no-pg]
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stellaops_runtime.canonical.corpus import defined_function_symbols
from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store import queries
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.function_refs import function_query
from stellaops_runtime.witness import keys
from stellaops_runtime.witness.bridge import Claim, WitnessBridge

try:
    from stellaops_runtime.store import rust_paths
except ImportError:  # the tree before the change
    rust_paths = None  # type: ignore[assignment]

IMG = "sha256:" + "b" * 64
PURL = "pkg:cargo/rustc_driver@1.95.0"
S = 1_000_000_000
T0 = 1_740_787_200 * S
SMALLVEC = [
    "smallvec::SmallVec<A>::insert_many",
    "<smallvec::SmallVec<u8>>::insert_many::<core::iter::adapters::map::Map<core::slice::iter::Iter<u8>, f>>",
]
QUERIES = {
    "rust path, 2 names": "smallvec::SmallVec::insert_many",
    "rust path, many instances": "rustc_middle::ty::Ty::super_fold_with",
    "C++-style a::b, none": "foo::bar",
    "plain name, none": "crc32",
}


def corpus() -> list[str]:
    [lib] = glob.glob(str(Path.home() / ".rustup/toolchains/stable-*/lib/librustc_driver-*.so"))[:1]
    return sorted({demangle(s) for s in defined_function_symbols(Path(lib))} | set(SMALLVEC))


def delta(name: str) -> HotSymbolDelta:
    key = HotSymbolKey(IMG, "/usr/lib/librustc_driver.so", name, EvidenceKind.INVOKED)
    return HotSymbolDelta(key, T0, 3, T0 + S, T0 + 2 * S, purl=PURL, node_name="node-1")


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 2)


def bench_parse(names: list[str]) -> dict[str, Any]:
    if rust_paths is None:
        return {"parse_us_per_name": "n/a", "miss_us_per_name": "n/a", "names_with_a_path": "n/a"}
    t = time.perf_counter()
    with_path = sum(bool(rust_paths.generic_free_paths.__wrapped__(n)) for n in names)
    parse = (time.perf_counter() - t) / len(names) * 1e6
    t = time.perf_counter()
    for n in names:
        rust_paths.matches(("smallvec::SmallVec::insert_many",), n)
    miss = (time.perf_counter() - t) / len(names) * 1e6
    return {
        "parse_us_per_name": round(parse, 2),
        "miss_us_per_name": round(miss, 2),
        "names_with_a_path": with_path,
    }


def bench_queries(url: str, names: list[str], runs: int) -> dict[str, Any]:
    with open_store(url) as store:
        store.write([delta(n) for n in names], [])
        out: dict[str, Any] = {}
        with store.engine.connect() as conn:
            for label, text in QUERIES.items():
                fq = function_query(text)
                rows = queries.observed(conn, image=IMG, function=fq)
                ms = median_ms(lambda fq=fq: queries.observed(conn, image=IMG, function=fq), runs)
                out[label] = {"rows": len(rows), "ms": ms}
    return out


def bench_bridge(names: list[str], key: str) -> dict[str, Any]:
    deltas = [delta(n) for n in names]
    exact = Claim(IMG, "pkg:cargo/rustc_driver", "crc32")
    sets = {
        "one exact claim": [exact],
        "+ 1 Rust path claim": [
            exact,
            Claim(IMG, "pkg:cargo/rustc_driver", "smallvec::SmallVec::insert_many"),
        ],
        "+ 3 Rust path claims": [
            exact,
            Claim(IMG, "pkg:cargo/rustc_driver", "smallvec::SmallVec::insert_many"),
            Claim(IMG, "pkg:cargo/rustc_driver", "rustc_middle::ty::Ty::super_fold_with"),
            Claim(IMG, "pkg:cargo/rustc_driver", "core::ptr::drop_in_place"),
        ],
    }
    out: dict[str, Any] = {}
    for label, claims in sets.items():
        if rust_paths is not None:
            rust_paths.generic_free_paths.cache_clear()
        bridge = WitnessBridge(claims, key_file=key)
        t = time.perf_counter()
        bridge.observe(deltas)
        first = (time.perf_counter() - t) / len(deltas) * 1e6
        bridge.stored()
        t = time.perf_counter()
        bridge.observe(deltas)
        again = (time.perf_counter() - t) / len(deltas) * 1e6
        bridge.stored()
        out[label] = {
            "first_us_per_row": round(first, 2),
            "again_us_per_row": round(again, 2),
            "marked": bridge.marked,
        }
    return out


CLAIM_SETS = {
    "one exact claim": ("crc32",),
    "+ 1 Rust path claim": ("crc32", "smallvec::SmallVec::insert_many"),
    "+ 3 Rust path claims": (
        "crc32",
        "smallvec::SmallVec::insert_many",
        "rustc_middle::ty::Ty::super_fold_with",
        "core::ptr::drop_in_place",
    ),
}


def _driver(names_file: str, claim_set: str, observe: bool) -> None:
    """One bridge pass over the names in ``names_file`` (the child cachegrind counts)."""
    names = Path(names_file).read_text().splitlines()
    deltas = [delta(n) for n in names]
    with tempfile.TemporaryDirectory() as tmp:
        keys.generate(Path(tmp) / "k", Path(tmp) / "k.pub")
        claims = [Claim(IMG, "pkg:cargo/rustc_driver", f) for f in CLAIM_SETS[claim_set]]
        bridge = WitnessBridge(claims, key_file=str(Path(tmp) / "k"))
        if observe:
            bridge.observe(deltas)


def bench_instructions(names: list[str]) -> dict[str, Any]:
    """Instructions per drained row of ``WitnessBridge.observe`` (a pass minus the same run without it)."""
    import os

    from bench.cachegrind import instructions

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "names.txt"
        f.write_text("\n".join(names))
        env = dict(os.environ)
        out: dict[str, Any] = {}
        for label in CLAIM_SETS:
            cmd = [sys.executable, __file__, "--driver", str(f), label]
            base = instructions([*cmd, "setup"], env)
            full = instructions([*cmd, "observe"], env)
            out[label] = round((full - base) / len(names))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count the bridge's instructions per row (cachegrind)",
    )
    parser.add_argument("--driver", nargs=3, metavar=("NAMES", "CLAIMS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver:
        _driver(args.driver[0], args.driver[1], args.driver[2] == "observe")
        return 0
    names = corpus()
    result: dict[str, Any] = {"names": len(names), "parse": bench_parse(names)}
    if args.instructions:
        result["bridge_instructions_per_row"] = bench_instructions(names)
    with tempfile.TemporaryDirectory() as tmp:
        keys.generate(Path(tmp) / "k", Path(tmp) / "k.pub")
        result["bridge"] = bench_bridge(names, str(Path(tmp) / "k"))
        result["query_sqlite"] = bench_queries(f"sqlite:///{tmp}/hot.db", names, args.runs)
    if not args.no_pg:
        from tests.pg import make_server

        server = make_server()
        try:
            server.setup()
            result["query_postgres"] = bench_queries(server.fresh_database(), names, args.runs)
        finally:
            server.teardown()
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
