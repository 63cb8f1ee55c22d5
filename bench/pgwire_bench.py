"""pgwire vs psycopg, in one run (issue 13): a flush's binary COPY time and a connection's memory.

- ``copy``: ``--rows`` (100,000) staging rows of store/pg_write.py's STAGE_TYPES through each
  driver's ``cursor.copy`` into a temporary table like the agent's ``_stage_hot``, then COMMIT;
  the drivers alternate (A B A B ...), ``--runs`` each; medians and their ratio.
- ``rss``: a fresh interpreter (the agent's allocator: jemalloc preloaded when installed, as
  agent/jemalloc.py chooses) holding one connection after ``SELECT 1``: VmRSS before the import and
  after; medians of ``--runs``.

Usage::

    .venv/bin/python bench/pgwire_bench.py [--url postgresql://...] [--rows 100000] [--runs 5]

Without ``--url`` a private cluster is started (tests/pg.py) and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
HOLD = """
import sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
before = rss()
kw = {kw!r}
if sys.argv[1] == "psycopg":
    import psycopg
    conn = psycopg.connect(**kw)
    conn.execute("SELECT 1").fetchone()
else:
    from stellaops_runtime import pgwire
    conn = pgwire.connect(**kw)
    conn.cursor().execute("SELECT 1")
print(before, rss())
"""


def _rows(n: int) -> list[tuple[Any, ...]]:
    from stellaops_runtime.store.pg_write import STAGE_TYPES

    assert len(STAGE_TYPES) == 17
    out = []
    for i in range(n):
        out.append(
            (
                "sha256:" + f"{i % 50:064x}",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                f"EVP_DigestUpdate_{i % 2000}",
                "executed",
                1_733_500_000_000_000 + i,
                "a1b2c3d4e5f6",
                "pkg:deb/debian/openssl@3.0.15",
                f"fn-{i % 2000}",
                i * 3,
                i % 1000,
                i * 1_000,
                i * 10,
                0.95,
                1_733_500_000_000_000 + i,
                1_733_500_000_000_999 + i,
                "node-a",
                {"args": ["x", i]} if i % 10 == 0 else None,
            )
        )
    return out


def _copy_once(driver: str, kw: dict[str, Any], rows: list[tuple[Any, ...]]) -> float:
    from stellaops_runtime.store.pg_write import STAGE_COLS, STAGE_HOT_DDL, STAGE_TYPES

    if driver == "psycopg":
        import psycopg

        conn: Any = psycopg.connect(**kw)
    else:
        from stellaops_runtime import pgwire

        conn = pgwire.connect(**kw)
    try:
        cur = conn.cursor()
        cur.execute(STAGE_HOT_DDL)
        conn.commit()
        start = time.perf_counter()
        with cur.copy(f"COPY pg_temp._stage_hot ({', '.join(STAGE_COLS)}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(list(STAGE_TYPES))
            for r in rows:
                cp.write_row(r)
        conn.commit()
        return time.perf_counter() - start
    finally:
        conn.close()


def _rss_once(driver: str, kw: dict[str, Any]) -> int:
    env = dict(os.environ)
    if Path(JEMALLOC).exists():
        env["LD_PRELOAD"] = JEMALLOC
    out = subprocess.run(
        [sys.executable, "-c", HOLD.format(kw=kw), driver],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    before, after = map(int, out.stdout.split())
    return after - before


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", help="libpq URL of a server to use (default: a private cluster)")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    server = None
    if args.url:
        from urllib.parse import urlsplit

        u = urlsplit(args.url)
        kw = {"host": u.hostname, "port": u.port or 5432, "user": u.username, "dbname": u.path.lstrip("/")}
        if u.password:
            kw["password"] = u.password
    else:
        from pg import make_server
        from pgwire_support import keywords

        server = make_server()
        server.setup()
        kw = keywords(server.url)
    try:
        rows = _rows(args.rows)
        times: dict[str, list[float]] = {"psycopg": [], "pgwire": []}
        rss: dict[str, list[int]] = {"psycopg": [], "pgwire": []}
        for _ in range(args.runs):
            for driver in ("psycopg", "pgwire"):
                times[driver].append(_copy_once(driver, kw, rows))
                rss[driver].append(_rss_once(driver, kw))
        result = {
            "rows": args.rows,
            "runs": args.runs,
            "load": os.getloadavg(),
            "copy_s_median": {d: round(statistics.median(v), 3) for d, v in times.items()},
            "copy_s_all": {d: [round(x, 3) for x in v] for d, v in times.items()},
            "copy_ratio_pgwire_over_psycopg": round(
                statistics.median(times["pgwire"]) / statistics.median(times["psycopg"]), 2
            ),
            "rss_added_kb_median": {d: statistics.median(v) for d, v in rss.items()},
        }
        print(json.dumps(result, indent=2))
    finally:
        if server is not None:
            server.teardown()


if __name__ == "__main__":
    main()
