"""An answer that sums stored counts past int8 gives the exact sum, on SQLite as on PostgreSQL.

Each stored count fits int8 (the upserts refuse a sum past it: test_store_count_overflow.py),
but an answer sums many rows: the events of every window of an image, the dropped events of
its gaps, the calls of every unnamed frame of a file, a function's calls in every file on a
day. PostgreSQL's sum(bigint) is numeric; SQLite's sum() raised "integer overflow" and every
``query`` about the image failed ("cannot query store ...: integer overflow", exit 2) where
PostgreSQL answered. Now both give the same exact numbers (store/exact_sum.py).
"""

from __future__ import annotations

import datetime as dt
import json

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.day_counts import calls_per_day
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.store.unnamed import unnamed_code
from tests.cli_run import cli_in_process, cli_json
from tests.node_alive import alive_now

S = 1_000_000_000
IMG = "sha256:" + "d" * 64
BIG = 2**62 + 12_345  # three of them pass 2^63 - 1
HOUR = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
START = datetime_to_ns(HOUR)


def units() -> list[object]:
    out: list[object] = []
    for i in range(3):
        t = START + i * 60 * S
        gap = (t + S, t + 2 * S) if i else (0, 0)  # two gaps, each with BIG dropped events
        out.append(
            ObservationWindow(IMG, "n1", t, BIG, Posture.EBPF_DEEP, 60, "tetragon", *gap,
                              dropped_events=BIG if i else 0)
        )  # fmt: skip
        frames = [("/lib/a.so", f"0x{16 * (i + 1):x}", EvidenceKind.ON_STACK)]  # unnamed frames
        if i == 0:  # crc32 in two files, on one day
            frames += [(m, "crc32", EvidenceKind.INVOKED) for m in ("/lib/a.so", "/lib/b.so")]
        for module, function, kind in frames:
            key = HotSymbolKey(IMG, module, function, kind)
            out.append(HotSymbolDelta(key, t, BIG, t + S, t + 2 * S, node_name="n1"))
    return out


def test_sums_past_int8_are_exact_in_every_answer(url: str) -> None:
    with open_store(url) as s:
        assert s.write_batch(Batch("n1/a", 1, units())).quarantined == 0  # type: ignore[arg-type]
        s.write([], alive_now("n1"))  # n1's agent is running as the questions come: not open, any hour
        with s.engine.connect() as conn:  # one day, two files: crc32's calls summed by the database
            assert calls_per_day(conn, image=IMG, function="crc32", days=2, until=HOUR.date()) == [
                (HOUR.date(), 2 * BIG)
            ]
            found = unnamed_code(conn, image=IMG)  # the unnamed frames of one file, 3 * BIG calls
            assert [(u.module, u.offsets, u.calls) for u in found] == [("/lib/a.so", 3, 3 * BIG)]
            since = HOUR - dt.timedelta(hours=1)  # asked of a period: summed from its windows
            found = unnamed_code(conn, image=IMG, since=since, until=HOUR + dt.timedelta(hours=1))
            assert [(u.module, u.offsets, u.calls) for u in found] == [("/lib/a.so", 3, 3 * BIG)]

    p = cli_in_process("query", "images", "--store", url, "--json")
    assert p.returncode == 0, p.stderr
    (image,) = [i for i in json.loads(p.stdout)["images"] if i["image"] == IMG]  # and alive_now's image
    assert (image["coverage"]["windows"], image["coverage"]["event_count"]) == (3, 3 * BIG)

    # a function never seen: unknown, with the sums of the coverage and of the gaps' dropped events
    p = cli_in_process("query", "observed", "--image", IMG, "--function", "adler32", "--store", url, "--json")
    assert p.returncode == 3, p.stderr
    answer = json.loads(p.stdout)
    assert answer["coverage"]["event_count"] == 3 * BIG
    assert [(g["node"], g["dropped_events"]) for g in answer["gaps"]] == [("n1", 2 * BIG)]

    # the real CLI process: the answer, not "integer overflow" with exit 2
    code, got = cli_json("query", "observed", "--image", IMG, "--function", "crc32", "--store", url, "--json")
    assert (code, got["answer"], got["coverage"]["event_count"]) == (0, "observed", 3 * BIG)


def test_the_evidence_of_a_function_called_past_int8_in_two_files_of_its_package_is_exact(url: str) -> None:
    """evidence/store_facts sums a day's calls over the package's files: past int8 on SQLite too."""
    purl = "pkg:deb/debian/zlib1g@1.2.13"
    out: list[object] = [ObservationWindow(IMG, "n1", START, BIG, Posture.EBPF_DEEP, 60, "tetragon")]
    for module in ("/lib/libz.so.1", "/usr/lib/libz.so.1"):  # one package, two files, one day
        key = HotSymbolKey(IMG, module, "crc32", EvidenceKind.INVOKED)
        out.append(HotSymbolDelta(key, START, BIG, START + S, START + 2 * S, purl=purl, node_name="n1"))
    with open_store(url) as s:
        assert s.write_batch(Batch("n1/a", 1, out)).quarantined == 0  # type: ignore[arg-type]
    p = cli_in_process("evidence", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
                       "--function", "crc32", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)["data"]
    assert (data["invocation_count"], data["max_calls_in_a_day"]) == (2 * BIG, 2 * BIG)
