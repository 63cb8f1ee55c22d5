"""Benchmark of demangling and function IDs (issue #3) against GNU c++filt measured in the same run.

The corpus is real: symbols read from binaries on this machine (canonical.corpus): C++ from
libstdc++ and the Rust toolchain's libLLVM, Rust v0 from librustc_driver/libstd, Rust legacy from a
small rustc-built program and rustup, Go from Debian's containerd. The mixed corpus samples
6,000 C++ + 6,000 v0 + 2,000 legacy + 6,000 Go names (the research baseline's mix), shuffled.

Methods, interleaved round-robin in every run, on one pinned core:

- ``demangle_cold``: :func:`canonical.demangle.demangle` over the mixed corpus right after
  ``clear_cache()``: every name is a cache miss (the issue's goal: > 700,000 symbols/s);
- ``demangle_warm``: the same loop again, every name a cache hit;
- ``cold_<language>``: cold demangling of up to 20,000 names of one language;
- ``cxxfilt``: the baseline: ``c++filt -i`` as one process over the whole mixed corpus (spawn, pipe
  in, read all lines out), as the research measured it; ``fallback_batch``: our c++filt fallback
  (the same process plus mapping to canonical text);
- ``format_id`` / ``parse_id``: ``format_function_id`` and ``parse_function_id`` per call over the
  demangled mixed corpus (goal: < 5 µs per ID).

Machines here are shared and noisy: compare the ratios to c++filt, not absolute numbers across runs.
Usage::

    .venv/bin/python bench/demangle_bench.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stellaops_runtime.canonical import demangle as dm
from stellaops_runtime.canonical.corpus import (
    cxx_corpus,
    go_corpus,
    mixed_corpus,
    rust_legacy_corpus,
    rust_v0_corpus,
)
from stellaops_runtime.canonical.cxxfilt import CxxfiltDemangler
from stellaops_runtime.canonical.function_id import format_function_id, parse_function_id

MIX = {"cxx": 6_000, "rust_v0": 6_000, "rust_legacy": 2_000, "go": 6_000}
PER_LANGUAGE = 20_000
BUILD_ID = "4c1d6e3e0f2b9a7d5c8e1f0a3b6d9c2e5f8a1b4c"


def pin_one_core() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {cpu})
    return cpu


def load_corpora(workdir: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Symbols per language and where they came from (missing sources are an error here)."""
    corpora = [cxx_corpus(), rust_v0_corpus(), rust_legacy_corpus(workdir=workdir), go_corpus()]
    missing = [m for c in corpora for m in c.missing]
    if missing:
        raise SystemExit(f"benchmark corpus incomplete, missing: {missing}")
    return {c.name: c.symbols for c in corpora}, {c.name: c.sources for c in corpora}


def _loop(fn: Callable[[str], object], names: list[str]) -> float:
    t = time.perf_counter()
    for n in names:
        fn(n)
    return time.perf_counter() - t


def _cold(names: list[str]) -> float:
    dm.clear_cache()
    return _loop(dm.demangle, names)


def _cxxfilt(names: list[str]) -> float:
    text = "".join(n + "\n" for n in names)
    t = time.perf_counter()
    proc = subprocess.run(["c++filt", "-i"], input=text, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - t
    if proc.stdout.count("\n") != len(names):
        raise AssertionError("c++filt answered a different number of lines")
    return elapsed


def run(*, runs: int = 7) -> dict[str, Any]:
    """Time each method ``runs`` times, interleaved; medians, rates and ratios to c++filt."""
    cpu = pin_one_core()
    with tempfile.TemporaryDirectory(prefix="stella-demangle-bench-") as tmp:
        corpora, sources = load_corpora(Path(tmp))
    mixed = mixed_corpus(corpora, counts=MIX, seed=1)
    per_lang = {k: v[:PER_LANGUAGE] for k, v in corpora.items()}
    dm.clear_cache()
    ids = [(BUILD_ID, dm.demangle(n), i * 7 % 4096) for i, n in enumerate(mixed)]
    texts = [format_function_id(b, s, o) for b, s, o in ids]
    fallback = CxxfiltDemangler()

    def fmt_all() -> float:
        f = format_function_id
        t = time.perf_counter()
        for b, s, o in ids:
            f(b, s, o)
        return time.perf_counter() - t

    methods: dict[str, tuple[Callable[[], float], int]] = {
        "demangle_cold": (lambda: _cold(mixed), len(mixed)),
        "demangle_warm": (lambda: _loop(dm.demangle, mixed), len(mixed)),
        "cxxfilt": (lambda: _cxxfilt(mixed), len(mixed)),
        "fallback_batch": (lambda: _timed(lambda: fallback.demangle_many(mixed)), len(mixed)),
        "format_id": (fmt_all, len(ids)),
        "parse_id": (lambda: _loop(parse_function_id, texts), len(texts)),
    }
    for lang, names in per_lang.items():
        methods[f"cold_{lang}"] = (functools.partial(_cold, names), len(names))

    timings: dict[str, list[float]] = {m: [] for m in methods}
    for fn, _ in methods.values():  # warm-up: imports, page cache, the c++filt binary
        fn()
    for _ in range(runs):
        for name, (fn, _) in methods.items():
            gc.collect()
            gc.disable()
            try:
                if name == "demangle_warm":
                    _loop(dm.demangle, mixed)  # make sure every mixed name is cached
                timings[name].append(fn())
            finally:
                gc.enable()

    medians = {m: statistics.median(ts) for m, ts in timings.items()}
    rates = {m: methods[m][1] / medians[m] for m in methods}
    baseline = rates["cxxfilt"]
    demangle_methods = [m for m in methods if m not in ("format_id", "parse_id")]
    return {
        "runs": runs,
        "cpu": cpu,
        "corpus": {
            "mixed": len(mixed),
            "mix": MIX,
            "sizes": {k: len(v) for k, v in corpora.items()},
            "sources": sources,
        },
        "symbols_per_second": {m: round(rates[m]) for m in demangle_methods},
        "ratio_to_cxxfilt": {m: round(rates[m] / baseline, 3) for m in demangle_methods},
        "us_per_call": {
            "format_id": round(medians["format_id"] / len(ids) * 1e6, 3),
            "parse_id": round(medians["parse_id"] / len(texts) * 1e6, 3),
            "demangle_cold": round(medians["demangle_cold"] / len(mixed) * 1e6, 3),
            "demangle_warm": round(medians["demangle_warm"] / len(mixed) * 1e6, 3),
        },
        "goals": {
            "demangle_cold_over_700k_per_s": rates["demangle_cold"] > 700_000,
            "function_id_under_5us": medians["format_id"] / len(ids) < 5e-6
            and medians["parse_id"] / len(texts) < 5e-6,
        },
    }


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"demangle benchmark: mixed corpus of {result['corpus']['mixed']:,} real symbols "
        f"({', '.join(f'{k} {v:,}' for k, v in result['corpus']['mix'].items())}), "
        f"{result['runs']} interleaved runs, medians, CPU {result['cpu']}",
        f"{'method':<18} {'symbols/s':>12} {'vs c++filt':>11}",
    ]
    for m, rate in result["symbols_per_second"].items():
        lines.append(f"{m:<18} {rate:>12,} {result['ratio_to_cxxfilt'][m]:>11.2f}")
    lines.append(f"{'per call':<18} {'µs':>12}")
    for m, us in result["us_per_call"].items():
        lines.append(f"{m:<18} {us:>12.3f}")
    lines.append("goals: " + ", ".join(f"{k}={v}" for k, v in result["goals"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    args = parser.parse_args(argv)
    result = run(runs=args.runs)
    print(format_table(result))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
