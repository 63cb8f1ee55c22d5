"""The bridge's ``outputDir`` never holds half a witness.

The bridge wrote ``outputDir/<claim>-<time>.witness.json`` in place: a write
cut short (the agent killed, the disk full, a file size limit) left a
truncated file under the final name, which whatever collects ``*.witness.json``
picks up. The write now goes to a hidden temporary file, fsynced and renamed.

The cut is real: the signer runs in a child process whose ``RLIMIT_FSIZE``
is smaller than the envelope, so the kernel writes part of it and then fails
(EFBIG). The store's save is stubbed in the child (the store is not what is
tested here, and SQLite would hit the same limit); its reads write nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness.statement import check_statement

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"

CHILD = """
import asyncio, json, resource, signal, sys
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.witness import bridge as b

url, key, out, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
b.wstore.save = lambda *a, **k: (1, True)  # the output file is what is tested
engine = open_store(url, migrate=False).engine
w = b.WitnessBridge([b.Claim(sys.argv[5], "pkg:deb/debian/zlib1g", "crc32")], key_file=key, output_dir=out)
w.observe([HotSymbolDelta(HotSymbolKey(sys.argv[5], "/z", "crc32", EvidenceKind.INVOKED), 0, 1, 0, 0)])
w.stored()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
made = asyncio.run(w.flush(engine))
print(json.dumps({"made": made, "marked": w.marked, "error": w.last_error}))
"""


def sign_in_child(tmp: Path, limit: int) -> dict[str, object]:
    r = subprocess.run([sys.executable, "-B", "-c", CHILD, f"sqlite:///{tmp}/hot.db", str(tmp / "k"),
                        str(tmp / "out"), str(limit), IMG],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert r.returncode == 0, r.stderr
    result: dict[str, object] = json.loads(r.stdout)
    return result


def test_a_write_cut_short_leaves_no_truncated_witness_and_the_claim_stays_due(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/hot.db") as s:
        s.write([HotSymbolDelta(HotSymbolKey(IMG, ZLIB, "crc32", EvidenceKind.INVOKED), T0, 9, T0 + 1, T0 + 2,
                                purl="pkg:deb/debian/zlib1g@1.2.13")],
                [ObservationWindow(IMG, "n", T0, 9, Posture.EBPF_DEEP, 60, "tetragon")])  # fmt: skip
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    out = tmp_path / "out"

    cut = sign_in_child(tmp_path, limit=1024)  # the envelope is a few KB: cut after its first 1 KB
    assert (cut["made"], cut["marked"]) == (0, 1) and "File too large" in str(cut["error"]), cut
    assert sorted(p.name for p in out.iterdir()) == []  # neither half a witness nor a temporary file

    whole = sign_in_child(tmp_path, limit=1 << 30)
    assert (whole["made"], whole["marked"]) == (1, 0), whole
    [written] = out.iterdir()
    assert written.name.endswith(".witness.json") and oct(written.stat().st_mode & 0o777) == "0o644"
    stmt = check_statement(
        dsse.verify(json.loads(written.read_bytes()), keys.load_public(tmp_path / "k.pub"))
    )
    assert stmt["predicate"]["observation"]["invocation_count"] == 9
