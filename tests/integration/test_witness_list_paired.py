"""``witness list`` by one digest of an image finds the witnesses signed by a digest paired with it.

An image with no repo digest has two digests: its manifest digest and its config digest (kubectl's
``imageID``). A question by either reads the rows of both (store/same_image.py). A claim's id
hashes the digest it names, so a witness signed by the config digest was not found by the
manifest digest: a policy engine asking by the manifest digest got "exit 1: no witness". The
lookup now reads the witnesses of every digest of the same content. Each witness is listed once,
under the digest and claim id it was signed with (what ``verify`` reads from it). An index paired
with several platforms' configs is several contents: one platform's witness is not listed for the
index, nor for another platform.

Real store (SQLite), CLI in-process, real keys and signatures.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
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
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from tests.witness_helpers import run_witness as run

S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
MANIFEST = "sha256:" + "1" * 64
CONFIG = "sha256:" + "c" * 64
INDEX = "sha256:" + "a" * 64  # a multi-platform index, paired with two platforms' configs
AMD64 = "sha256:" + "d" * 64
ARM64 = "sha256:" + "e" * 64
PURL = "pkg:deb/debian/zlib1g"


def claim(image: str) -> str:
    """docs/witnesses.md's formula: image, purl, function, vulnerability joined by newlines."""
    return "sha256:" + hashlib.sha256("\n".join([image, PURL, "crc32", ""]).encode()).hexdigest()


@pytest.fixture
def store(tmp_path: Path, capsys: pytest.CaptureFixture[str], sqlite_at_head: Callable[[Path], str]) -> Any:
    url = sqlite_at_head(tmp_path / "hot.db")
    with open_store(url) as s:
        for image in (CONFIG, AMD64):
            d = HotSymbolDelta(HotSymbolKey(image, "/lib/libz.so.1", "crc32", EvidenceKind.INVOKED), T0, 42,
                               T0 + S, T0 + 2 * S, purl=PURL + "@1.2.13")  # fmt: skip
            s.write([d], [ObservationWindow(image, "n", T0, 50, Posture.EBPF_DEEP, 60, "tetragon")])
        s.record_pairs([(CONFIG, MANIFEST), (AMD64, INDEX), (ARM64, INDEX)])
    priv, pub = tmp_path / "w.key", tmp_path / "w.pub"
    assert run(capsys, "keygen", "--private", str(priv), "--public", str(pub))[0] == 0

    def sign(image: str) -> None:
        code, _, err = run(capsys, "sign", "--store", url, "--image", image, "--purl", PURL, "--function",
                           "crc32", "--key", str(priv), "--save", "--out", str(tmp_path / "w"))  # fmt: skip
        assert code == 0, err

    return url, sign


def listed(capsys: pytest.CaptureFixture[str], url: str, image: str, *args: str) -> tuple[int, list[Any]]:
    code, out, err = run(capsys, "list", "--store", url, "--image", image, *args, "--json")
    assert code in (0, 1), err
    return code, json.loads(out)["witnesses"]


def test_a_witness_signed_by_the_config_digest_is_found_by_the_manifest_digest(
    store: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: exit 1, no witness, by each way of asking."""
    url, sign = store
    sign(CONFIG)
    for how in (("--purl", PURL, "--function", "crc32"), ("--claim", claim(MANIFEST)), ()):
        code, found = listed(capsys, url, MANIFEST, *how)
        assert code == 0, how
        [w] = found  # once: a witness is one claim
        assert (w["image_digest"], w["claim_id"]) == (CONFIG, claim(CONFIG)), how
    code, out, _ = run(capsys, "list", "--store", url, "--image", MANIFEST)
    assert code == 0 and out.count("\n") == 1 and f"signed for {CONFIG}" in out, out


def test_witnesses_by_both_digests_are_each_listed_once(
    store: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url, sign = store
    sign(CONFIG)
    sign(MANIFEST)
    for image in (MANIFEST, CONFIG):
        code, found = listed(capsys, url, image, "--purl", PURL, "--function", "crc32")
        assert code == 0
        assert sorted((w["image_digest"], w["claim_id"]) for w in found) == sorted(
            [(CONFIG, claim(CONFIG)), (MANIFEST, claim(MANIFEST))]
        ), image
    for image in (MANIFEST, CONFIG):  # the claim's id by either digest names the one claim
        for cid in (claim(MANIFEST), claim(CONFIG)):
            code, found = listed(capsys, url, image, "--claim", cid)
            assert code == 0 and sorted(w["image_digest"] for w in found) == [MANIFEST, CONFIG], (image, cid)


def test_one_platforms_witness_is_not_listed_for_the_index_or_another_platform(
    store: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url, sign = store
    sign(AMD64)
    for image in (INDEX, ARM64):
        assert listed(capsys, url, image, "--purl", PURL, "--function", "crc32") == (1, []), image
    code, found = listed(capsys, url, AMD64)
    assert code == 0 and [w["image_digest"] for w in found] == [AMD64]
