"""A witness's ``reason`` stays bounded, however many files its doubts name.

``evidence`` and the witness state why a function not seen called may still have run: calls in
files no package was attributed to, rows the store refused, and so on (evidence/doubts.py), each
naming its files. The list was every file: an image whose attribution failed for thousands of
shared objects (a vendored tree, a stripped layer) named them all in ``assessment.reason``, a
witness over 600 KB, past the ~100 KB transparency logs accept and the 64 KiB docs/witnesses.md
promises for the predicate. A doubt now names at most ``MAX_LISTED`` files, each at most
``MAX_NAME_CHARS`` long, and says how many more there are; the witness's reason is cut at
``MAX_REASON_CHARS`` with a marker saying how much was left out. The assessment is unchanged.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.evidence.doubts import MAX_LISTED
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.witness import keys
from stellaops_runtime.witness.statement import MAX_PREDICATE_BYTES
from tests import witness_helpers as helpers
from tests.node_alive import alive_after

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "b" * 64
FILES = 3000


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return helpers.cli(*args, timeout=300)  # 3,000 files to name: a longer bound on a hang


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("reason")
    url = f"sqlite:///{tmp}/hot.db"
    lost = [
        HotSymbolDelta(HotSymbolKey(IMG, f"/opt/vendored/{'deep/' * 30}lib{i:05d}.so", "crc32",
                                    EvidenceKind.INVOKED), T0, 3, T0 + S, T0 + 2 * S, purl="")
        for i in range(FILES)
    ]  # fmt: skip
    loaded = HotSymbolDelta(HotSymbolKey(IMG, "/usr/lib/libz.so.1", "", EvidenceKind.LOADED), T0, 1,
                            T0 + S, T0 + S, purl="pkg:deb/debian/zlib1g@1.2.13")  # fmt: skip
    with open_store(url) as s:
        s.write([loaded, *lost], [ObservationWindow(IMG, "n", T0, 50, Posture.EBPF_DEEP, 60, "tetragon")])
        s.write([], alive_after("n", T0 + 86_400 * S))  # n's agent ran on: T0's day is not open
    keys.generate(tmp / "k", tmp / "k.pub")
    return {"url": url, "tmp": tmp}


def test_a_witness_naming_thousands_of_files_stays_under_its_bound(world: dict[str, Any]) -> None:
    out = world["tmp"] / "w.json"
    r = cli("witness", "sign", "--store", world["url"], "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
            "--function", "crc32", "--key", str(world["tmp"] / "k"), "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    size = out.stat().st_size
    assert size < 100_000, size
    predicate = json.loads(base64.b64decode(json.loads(out.read_text())["payload"]))["predicate"]
    assert len(json.dumps(predicate, separators=(",", ":"), ensure_ascii=False)) <= MAX_PREDICATE_BYTES
    a = predicate["assessment"]
    assert a["reachability_state"] == "PotentiallyReachable" and a["rts"]["score"] == 0.5
    assert f"and {FILES - MAX_LISTED} more files" in a["reason"], a["reason"][-300:]
    assert "lib00000.so" in a["reason"] and "lib02999.so" not in a["reason"]
    r = cli("witness", "verify", str(out), "--key", str(world["tmp"] / "k.pub"), "--image", IMG)
    assert r.returncode == 0, r.stderr


def test_evidence_names_a_bounded_list_and_counts_the_rest(world: dict[str, Any]) -> None:
    r = cli("evidence", "--store", world["url"], "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
            "--function", "crc32", "--json")  # fmt: skip
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["reason"]) < 8_000, len(doc["reason"])
    assert f"the function ran {3 * FILES} times" in doc["reason"]
    assert f"and {FILES - MAX_LISTED} more files" in doc["reason"]
