"""What naming a file by its content costs, and what the alternatives would cost (issue 12).

Why it exists: a file without a build-id is named by the SHA-256 of all its
bytes (the fallback build-id, docs/function-ids.md), and on the Rust
toolchain's 154 MB librustc_driver that hash alone took about as long as
llvm-symbolizer's whole cold batch. docs/function-ids.md ("Why the whole file
is hashed") says why no cheaper identity is as safe; this measures the
figures it quotes, on one core, CPU seconds (``time.process_time``, medians):

- ``file_digest``: the code's own path (canonical/limits.py: 1 MiB ``preadv``
  chunks into one reused buffer, fed to ``hashlib.sha256``);
- ``sha256, no read``: the same number of bytes hashed from memory (the
  hash's own floor);
- ``read, no hash``: the reads alone;
- ``sha256 of an mmap``: the file mapped instead of read (not used: a file
  truncated while mapped kills the reader with SIGBUS);
- the other hashes of ``hashlib``, from memory.

Usage: ``.venv/bin/python bench/identity_hash_bench.py [FILE] [--runs 7]``
(default: the stable Rust toolchain's librustc_driver when rustup installed it).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import mmap
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from stellaops_runtime.canonical.elflayout import read_chunks
from stellaops_runtime.canonical.limits import DEFAULT_LIMITS, Limits, file_digest

_RUST = ".rustup/toolchains/stable-*/lib/librustc_driver-*.so"
_CHUNK = 1 << 20


def cpu(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", nargs="?", default=next(iter(sorted(glob.glob(str(Path.home() / _RUST)))), ""))
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    path: str = args.file
    size = os.path.getsize(path)
    limits = Limits(max_file_bytes=max(size, DEFAULT_LIMITS.max_file_bytes), parse_seconds=600)
    block = os.urandom(_CHUNK)

    def from_memory(name: str) -> Callable[[], object]:
        def run() -> object:
            h = hashlib.new(name)
            for _ in range(size // _CHUNK):
                h.update(block)
            return h.hexdigest()

        return run

    def with_fd(fn: Callable[[int], object]) -> Callable[[], object]:
        def run() -> object:
            fd = os.open(path, os.O_RDONLY)
            try:
                return fn(fd)
            finally:
                os.close(fd)

        return run

    def mapped(fd: int) -> object:
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
            return hashlib.sha256(m).hexdigest()

    cases: list[tuple[str, Callable[[], object]]] = [
        ("file_digest (SHA-256, the code's path)", with_fd(lambda fd: file_digest(fd, size, limits))),
        ("sha256, no read", from_memory("sha256")),
        ("read, no hash", with_fd(lambda fd: read_chunks(fd, size, len))),
        ("sha256 of an mmap (not used: SIGBUS)", with_fd(mapped)),
        *[(f"{n}, no read", from_memory(n)) for n in ("sha1", "blake2b", "sha512", "md5", "sha3_256")],
    ]
    print(f"{path}: {size:,} bytes; CPU seconds, median of {args.runs}")
    for label, fn in cases:
        s = cpu(fn, args.runs)
        print(f"  {label:42s} {s:7.4f} s  {size / s / 1e9:5.2f} GB/s")


if __name__ == "__main__":
    main()
