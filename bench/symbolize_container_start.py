"""What a container start costs the symbolizer in hashing: every process identifies its libraries again.

Why it exists: a file is identified once per (process root, path), so each
new process of a container (its root is ``/proc/<pid>/root``) identifies the
libraries it maps again. A library younger than ``STAT_TRUST_SECONDS`` (2 s
since its ctime: an image layer just unpacked) is hashed at each of those
sightings (canonical/buildidclaims.py), and a separate debug file was hashed
at every identification, young or old (canonical/debugfiles.py). This counts
it, deterministically, for one modelled container start:

- a container root holding copies of this machine's libc (with its
  libc6-dbg debug file under ``/usr/lib/debug/.build-id``), libstdc++ and
  libcrypto, written just now;
- ``--processes`` processes (default 20), one every ``--every`` seconds
  (default 0.2) of the Symbolizer's clock from the files' ctime, so the
  first ones see young files and the later ones old files; each has a root
  of its own (a symbolic link to the container's directory, as
  ``/proc/<pid>/root`` is) and, for each library, does what the agent's
  locator does: identify it, take the indexed file, and the frame
  canonicalizer resolves 8 offsets in it (``QuickLookup.find``).

Printed (one JSON object): files hashed and bytes hashed, main files and
debug files apart (counted where every streamed digest reads its chunks,
``read_chunks``), and the CPU seconds of the whole start. Run it with each
tree's ``operator/`` on ``PYTHONPATH`` to compare code::

    PYTHONPATH=<tree>/operator .venv/bin/python bench/symbolize_container_start.py

``--identify-cost N``: instead, the CPU microseconds (median) of one
identification of each library, already identified and old, under each of
``N`` new roots (what every new process costs the thread that identifies it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from stellaops_runtime.canonical import debugfiles, limits
from stellaops_runtime.canonical.debugfiles import DebugSearch
from stellaops_runtime.canonical.elflayout import read_layout, read_notes
from stellaops_runtime.canonical.symbolizer import Symbolizer

LIBDIR = "/usr/lib/x86_64-linux-gnu"
LIBS = ("libc.so.6", "libstdc++.so.6", "libcrypto.so.3")


def _build_id(path: Path) -> str:
    from stellaops_runtime.canonical.elflayout import build_id_from_notes

    with path.open("rb") as f:
        return build_id_from_notes(read_notes(f, read_layout(f)))[0]


def unpack(dest: Path) -> list[str]:
    """Copy the libraries (and libc's debug file when libc6-dbg is installed) under ``dest``."""
    paths = []
    for name in LIBS:
        src = Path(LIBDIR) / name
        if not src.exists():
            continue
        dst = dest / LIBDIR.lstrip("/") / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src.resolve(), dst)
        paths.append(f"{LIBDIR}/{name}")
        bid = _build_id(src)
        debug = Path(f"/usr/lib/debug/.build-id/{bid[:2]}/{bid[2:]}.debug")
        if bid and debug.exists():
            d = dest / debug.as_posix().lstrip("/")
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(debug.resolve(), d)
    return paths


def identify_cost(n: int) -> None:
    """Median CPU us of identifying each host library, old and known, under ``n`` new roots."""
    tmp = Path(tempfile.mkdtemp(prefix="identify-cost-"))
    try:
        roots = []
        for i in range(n):
            os.symlink("/", tmp / f"proc-{i}-root")
            roots.append(str(tmp / f"proc-{i}-root"))
        s = Symbolizer(file_lines=False, clock=lambda: time.time_ns() + 3_600 * 10**9)  # files old
        out = {}
        for name in LIBS:
            path = f"{LIBDIR}/{name}"
            if not Path(path).exists():
                continue
            s.identify(path)
            times = []
            for r in roots:
                c0 = time.process_time()
                s.identify(path, root=r)
                times.append(time.process_time() - c0)
            out[name] = round(statistics.median(times) * 1e6, 1)
        s.close()
        print(json.dumps({"identify_cpu_us_median": out, "roots": n}, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=20)
    ap.add_argument("--every", type=float, default=0.2, help="seconds between process starts")
    ap.add_argument("--identify-cost", type=int, default=0, metavar="N")
    args = ap.parse_args()
    if args.identify_cost:
        identify_cost(args.identify_cost)
        return
    tmp = Path(tempfile.mkdtemp(prefix="container-start-"))
    try:
        root = tmp / "container"
        paths = unpack(root)
        ctime = max(p.stat().st_ctime_ns for p in root.rglob("*") if p.is_file())
        counted = {"main": [0, 0], "debug": [0, 0]}  # files, bytes

        def counting(kind: str, real: object) -> object:
            def read_chunks(fd: int, size: int, *a: object, **k: object) -> int:
                counted[kind][0] += 1
                counted[kind][1] += size
                return real(fd, size, *a, **k)  # type: ignore[operator]

            return read_chunks

        limits.read_chunks = counting("main", limits.read_chunks)  # type: ignore[assignment]
        debugfiles.read_chunks = counting("debug", debugfiles.read_chunks)  # type: ignore[assignment]
        now = [ctime]
        s = Symbolizer(file_lines=False, clock=lambda: now[0])
        s.set_debug_search(DebugSearch(roots=()))
        offsets = {}
        for p in paths:
            b = s.binary(p, root=str(root))
            t = max(b.tables, key=len)
            step = max(1, len(t) // 8)
            found = (b.layout.offset_of(t.starts[i]) for i in range(0, len(t), step))
            offsets[p] = [o for o in found if o][:8]
        s.close()
        counted = {"main": [0, 0], "debug": [0, 0]}  # the bench's own setup is not counted
        s = Symbolizer(file_lines=False, clock=lambda: now[0])
        s.set_debug_search(DebugSearch(roots=()))
        young = 0
        c0 = time.process_time()
        for i in range(args.processes):
            now[0] = ctime + int(i * args.every * 1e9) + 1_000_000
            young += now[0] - ctime < 2 * 10**9
            proc_root = tmp / f"proc-{i}-root"
            os.symlink(root, proc_root)
            for p in paths:
                fid = s.identify(p, root=str(proc_root))  # the locator's build_id()
                cached = s.cached_binary(fid.identity)  # its find_cached()
                b = cached if cached is not None else s.binary(p, root=str(proc_root))
                q = b.quick  # the frames, as canonical/frames.py resolves them
                assert q is not None
                for o in offsets[p]:
                    assert q.find(o) is not None
        cpu = time.process_time() - c0
        stats = s.stats()
        s.close()
        print(
            json.dumps(
                {
                    "libraries": paths,
                    "processes": args.processes,
                    "processes_seeing_young_files": young,
                    "main_files_hashed": counted["main"][0],
                    "main_bytes_hashed": counted["main"][1],
                    "debug_files_hashed": counted["debug"][0],
                    "debug_bytes_hashed": counted["debug"][1],
                    "cpu_s": round(cpu, 4),
                    "identity_young_reads": stats.get("identity_young_reads", 0),
                    "debug_files_attached": stats.get("debug_files_attached", 0),
                },
                indent=1,
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
