"""``query images`` never says "watched, nothing observed" of a digest whose image's calls are filed
under a paired digest.

An image with no repo digest is filed under its manifest digest by lifecycle agents and under its
config digest by the others (store/image_pairs.py); a question by either digest reads both
(store/same_image.py). The listing has one line per digest: before, the manifest digest's line
read ``watched_nothing_observed`` while ``query observed`` by that digest answered ``observed``
(the calls under the config digest): a "no" in the listing that the store contradicts. Now such
a line is ``observed`` and names the digests the calls are under (``observed_under``); its own
row counts stay its own (nothing counted twice across lines).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns

S = 1_000_000_000
MANIFEST = "sha256:" + "1" * 64
CONFIG = "sha256:" + "c" * 64
ALONE = "sha256:" + "9" * 64  # watched, of no pairing, nothing of it stored
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
T = datetime_to_ns(dt.datetime(2026, 6, 1, 10, tzinfo=dt.UTC))


def images(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, str]:
    code = main(["query", "images", "--store", url, *extra])
    return code, capsys.readouterr().out


def test_a_digest_whose_calls_are_under_its_paired_digest_is_listed_observed(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    call = HotSymbolDelta(HotSymbolKey(CONFIG, ZLIB, "inflate", EvidenceKind.ON_STACK), T, 4, T + S, T + S,
                          node_name="node-2")  # fmt: skip
    windows = [
        ObservationWindow(image, node, T, 9, Posture.EBPF_DEEP, 60, "tetragon")
        for image, node in ((MANIFEST, "node-1"), (CONFIG, "node-2"), (ALONE, "node-1"))
    ]
    with open_store(url) as s:
        s.write([call], windows)
        s.record_pairs([(CONFIG, MANIFEST)])
    code, out = images(capsys, url, "--json")
    by: dict[str, Any] = {i["image"]: i for i in json.loads(out)["images"]}
    assert code == 0, out
    state = {d: (by[d]["state"], by[d]["hot_symbol_rows"], by[d]["observed_under"]) for d in by}
    assert state[MANIFEST] == ("observed", 0, [CONFIG]), by[MANIFEST]  # its own counts stay its own
    assert state[CONFIG] == ("observed", 1, []), by[CONFIG]
    assert state[ALONE] == ("watched_nothing_observed", 0, []), by[ALONE]
    _, text = images(capsys, url)
    line = next(x for x in text.splitlines() if x.startswith(MANIFEST))
    assert f"observed (under {CONFIG})" in line, text
